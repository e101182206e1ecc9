//! The status page and `/api/v1/status` from memory: rendered when what they show has
//! changed (a write through the store, a new config) or is a second old (time moves them too,
//! and the command line and other agents write from other processes), compressed once per
//! render, revalidated by `ETag`.

use crate::config::Config;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The oldest a cached page may be served.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// One rendered page.
pub struct Page {
    generation: u64,
    /// The config it was rendered with (held, so that a new one is never at its address).
    config: Arc<Config>,
    content_type: &'static str,
    /// When its rendering began: a request that arrived before that may be served it.
    started_at: Instant,
    rendered_at: Instant,
    etag: HeaderValue,
    html: axum::body::Bytes,
    gzip: Option<axum::body::Bytes>,
}

/// The last rendering of one page, of one media type.
pub struct PageCache {
    content_type: &'static str,
    page: Mutex<Option<Arc<Page>>>,
    /// One rendering at a time: requests that come during one wait for it and share it,
    /// instead of each rendering the page again.
    rendering: tokio::sync::Mutex<()>,
}

impl PageCache {
    pub fn new(content_type: &'static str) -> PageCache {
        PageCache {
            content_type,
            page: Mutex::new(None),
            rendering: tokio::sync::Mutex::new(()),
        }
    }

    /// The cached page, if it was rendered at `generation` (None: a write is under way) with
    /// `config`, less than `MAX_AGE` ago.
    pub fn fresh(&self, generation: Option<u64>, config: &Arc<Config>) -> Option<Arc<Page>> {
        let generation = generation?;
        let page = self.page.lock().ok()?.clone()?;
        (page.generation == generation
            && Arc::ptr_eq(&page.config, config)
            && page.rendered_at.elapsed() < MAX_AGE)
            .then_some(page)
    }

    /// The page as of now: the cached one while it is fresh, else one rendering by `render`
    /// — at most one at a time, shared by every request that waited for it. A request is
    /// served a page whose rendering began after it arrived, so it sees every change made
    /// before it; whatever the rate of writes, requests never render in parallel.
    pub async fn get_or_render<E, Fut>(
        &self,
        generation: impl Fn() -> Option<u64>,
        config: Arc<Config>,
        render: impl FnOnce() -> Fut,
    ) -> Result<Arc<Page>, E>
    where
        Fut: std::future::Future<Output = Result<String, E>>,
    {
        let arrived = Instant::now();
        if let Some(page) = self.fresh(generation(), &config) {
            return Ok(page);
        }
        let _turn = self.rendering.lock().await;
        if let Some(page) = self
            .fresh(generation(), &config)
            .or_else(|| self.started_after(arrived, &config))
        {
            return Ok(page);
        }
        let before = generation();
        let started = Instant::now();
        let html = render().await?;
        Ok(self.keep_started(before, generation(), config, html, started))
    }

    /// The last page, if its rendering began at or after `instant` with `config`.
    fn started_after(&self, instant: Instant, config: &Arc<Config>) -> Option<Arc<Page>> {
        let page = self.page.lock().ok()?.clone()?;
        (page.started_at >= instant && Arc::ptr_eq(&page.config, config)).then_some(page)
    }

    /// Wraps a rendered page; keeps it fresh for its generation when nothing was written
    /// while it rendered (else only for the requests that waited for it).
    pub fn keep(
        &self,
        before: Option<u64>,
        after: Option<u64>,
        config: Arc<Config>,
        html: String,
    ) -> Arc<Page> {
        self.keep_started(before, after, config, html, Instant::now())
    }

    fn keep_started(
        &self,
        before: Option<u64>,
        after: Option<u64>,
        config: Arc<Config>,
        html: String,
        started_at: Instant,
    ) -> Arc<Page> {
        let html = axum::body::Bytes::from(html);
        let etag = format!("\"{:016x}\"", fingerprint(&html));
        let unchanged = before.is_some() && before == after;
        let page = Arc::new(Page {
            generation: if unchanged {
                before.unwrap_or(u64::MAX)
            } else {
                u64::MAX
            },
            config,
            content_type: self.content_type,
            started_at,
            rendered_at: Instant::now(),
            etag: HeaderValue::from_str(&etag).expect("hex is a valid header value"),
            gzip: gzip(&html),
            html,
        });
        if let Ok(mut slot) = self.page.lock() {
            *slot = Some(page.clone());
        }
        page
    }
}

/// FNV-1a over the page: its ETag (changes when any byte does).
fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn gzip(bytes: &[u8]) -> Option<axum::body::Bytes> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).ok()?;
    encoder.finish().ok().map(axum::body::Bytes::from)
}

/// Whether a comma-separated header lists `token` (`Accept-Encoding: gzip, br`).
fn lists(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.split(';').next().unwrap_or("").trim();
            t == token || t == "*"
        })
}

impl Page {
    /// 304 when the client has this version; else the page, gzipped when it may be.
    pub fn respond(&self, request: &HeaderMap) -> Response {
        let mut response = if lists(
            request,
            header::IF_NONE_MATCH,
            self.etag.to_str().unwrap_or(""),
        ) {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            match &self.gzip {
                Some(gz) if lists(request, header::ACCEPT_ENCODING, "gzip") => {
                    let mut r = gz.clone().into_response();
                    r.headers_mut()
                        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                    r
                }
                _ => self.html.clone().into_response(),
            }
        };
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        h.insert(header::ETAG, self.etag.clone());
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        // Revalidate every time (the ETag makes that cheap); never in a shared cache.
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-cache"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Arc<Config> {
        let text = "[[targets]]\nname = \"prod\"\nbase_url = \"http://127.0.0.1:1/v1\"\n[[targets.probes]]\nkind = \"models\"\ninterval = \"60s\"\n";
        Arc::new(Config::parse(text, std::path::Path::new("t.toml")).expect("a valid config"))
    }

    #[test]
    fn a_page_is_kept_only_when_nothing_was_written_while_it_rendered() {
        let cache = PageCache::new("text/html");
        let config = config();
        cache.keep(Some(1), Some(2), config.clone(), "a".into());
        assert!(cache.fresh(Some(1), &config).is_none() && cache.fresh(Some(2), &config).is_none());
        cache.keep(None, Some(2), config.clone(), "b".into());
        assert!(cache.fresh(Some(2), &config).is_none());
        cache.keep(Some(2), Some(2), config.clone(), "c".into());
        assert!(cache.fresh(Some(2), &config).is_some());
        assert!(cache.fresh(Some(3), &config).is_none(), "a write since");
        assert!(cache.fresh(None, &config).is_none(), "a write under way");
        let reloaded = Arc::new((*config).clone());
        assert!(cache.fresh(Some(2), &reloaded).is_none(), "a new config");
    }

    /// Renders counted: twenty requests at once.
    async fn renders_for_twenty_requests(generation: Option<u64>) -> usize {
        let cache = PageCache::new("text/html");
        let config = config();
        let renders = std::sync::atomic::AtomicUsize::new(0);
        let request = || {
            cache.get_or_render(
                || generation,
                config.clone(),
                || async {
                    renders.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, ()>("<html>page</html>".to_string())
                },
            )
        };
        let pages = futures_util::future::join_all((0..20).map(|_| request())).await;
        assert!(pages.iter().all(Result::is_ok));
        renders.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test(start_paused = true)]
    async fn requests_that_come_during_a_rendering_share_it_instead_of_rendering_again() {
        assert_eq!(renders_for_twenty_requests(Some(7)).await, 1);
        // Writes under way all the time: a request may need a rendering that began after it
        // came, but never one of its own.
        assert!(renders_for_twenty_requests(None).await <= 2);
    }

    #[test]
    fn the_client_gets_304_for_its_version_and_gzip_when_it_asks() {
        let cache = PageCache::new("text/html; charset=utf-8");
        let page = cache.keep(Some(1), Some(1), config(), "<html>hello</html>".repeat(100));
        let etag = page.etag.clone();
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip;q=0.9"),
        );
        let r = page.respond(&h);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        h.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(page.respond(&h).status(), 304);
        let r = page.respond(&HeaderMap::new());
        assert!(r.headers().get(header::CONTENT_ENCODING).is_none());
    }
}
