//! The upstream status page (SPEC §13): OpenAI's Statuspage v2 `summary.json`, polled with
//! conditional requests by one task, stored, and read from the store when an alert is
//! rendered, so that an unreadable, slow, huge or malformed page never delays an alert.
//! Every alert of category outage, overload, slow or unknown says whether OpenAI reports an
//! incident: the first question of every incident — is it them or us? — answered in it.

use crate::config::UpstreamStatus;
use crate::domain::Category;
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The largest status page read; a larger one counts as unreadable.
const MAX_BYTES: usize = 256 * 1024;
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// One incident the status page reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamIncident {
    pub name: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub impact: String,
    #[serde(default)]
    pub shortlink: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// What the status page last said, and whether it could be read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpstreamState {
    /// `none`, `minor`, `major`, `critical` (Statuspage's `status.indicator`).
    pub indicator: Option<String>,
    pub description: Option<String>,
    /// Incidents not yet resolved (at most `MAX_INCIDENTS`).
    pub incidents: Vec<UpstreamIncident>,
    /// How many more open incidents the page listed.
    #[serde(default)]
    pub more: usize,
    /// When the page was last read successfully (Unix ms).
    pub fetched_at_ms: Option<i64>,
    /// Since when it cannot be read, while it cannot.
    pub unavailable_since_ms: Option<i64>,
    pub error: Option<String>,
}

#[derive(Deserialize)]
struct Summary {
    status: SummaryStatus,
    #[serde(default)]
    incidents: Vec<UpstreamIncident>,
}

#[derive(Deserialize)]
struct SummaryStatus {
    indicator: String,
    #[serde(default)]
    description: String,
}

/// Most open incidents kept from the page; the rest are counted.
pub const MAX_INCIDENTS: usize = 3;
/// Longest incident name kept, in bytes.
const MAX_NAME_BYTES: usize = 120;

/// Reads a `summary.json` body: the open incidents, at most `MAX_INCIDENTS` of them, each
/// field cleaned of control characters and cut, a shortlink kept only when it is an http(s)
/// URL of sensible length; and how many more open incidents the page lists.
pub fn parse(body: &[u8]) -> Result<(String, String, Vec<UpstreamIncident>, usize), String> {
    let s: Summary =
        serde_json::from_slice(body).map_err(|e| format!("not a Statuspage summary: {e}"))?;
    let open: Vec<UpstreamIncident> = s
        .incidents
        .into_iter()
        .filter(|i| !matches!(i.status.as_str(), "resolved" | "postmortem"))
        .collect();
    let more = open.len().saturating_sub(MAX_INCIDENTS);
    let kept = open
        .into_iter()
        .take(MAX_INCIDENTS)
        .map(|i| UpstreamIncident {
            name: clean(&i.name, MAX_NAME_BYTES),
            status: clean(&i.status, 24),
            impact: clean(&i.impact, 24),
            shortlink: i.shortlink.filter(|l| {
                l.len() <= 200
                    && (l.starts_with("https://") || l.starts_with("http://"))
                    && !l.chars().any(|c| c.is_control() || c.is_whitespace())
            }),
            updated_at: i.updated_at.map(|u| clean(&u, 40)),
        })
        .collect();
    Ok((
        clean(&s.status.indicator, 24),
        clean(&s.status.description, MAX_NAME_BYTES),
        kept,
        more,
    ))
}

/// Upstream text without control characters (terminal escapes, OSC-8 links), cut to
/// `max` bytes with a visible "…".
fn clean(text: &str, max: usize) -> String {
    crate::redact::truncate(crate::redact::clean_message(text, &[]), max)
}

/// The sentence an alert of `category` carries, if it carries one: "OpenAI reports: …", the
/// "no incident" sentence, or that the page is unavailable. A state older than `stale_ms`
/// counts as unavailable.
pub fn sentence(
    category: Category,
    state: &UpstreamState,
    now_ms: i64,
    stale_ms: i64,
) -> Option<String> {
    if !matches!(
        category,
        Category::Outage | Category::Overload | Category::Slow | Category::Unknown
    ) {
        return None;
    }
    Some(banner(state, now_ms, stale_ms).unwrap_or_else(|| {
        "OpenAI's status page reports no incident: the problem may be between you and the API (network, proxy, DNS, region)."
            .to_string()
    }))
}

/// What the status page page says worth a banner: "OpenAI reports: …", or that the page is
/// unavailable; `None` when it reports no incident.
pub fn banner(state: &UpstreamState, now_ms: i64, stale_ms: i64) -> Option<String> {
    let fresh = state
        .fetched_at_ms
        .is_some_and(|at| now_ms.saturating_sub(at) <= stale_ms);
    if state.unavailable_since_ms.is_some() || !fresh {
        let since = state
            .unavailable_since_ms
            .or(state.fetched_at_ms)
            .map_or_else(|| "start".to_string(), crate::timefmt::rfc3339);
        return Some(format!(
            "OpenAI's status page is unavailable since {since}: whether OpenAI reports an incident is not known."
        ));
    }
    if state.incidents.is_empty() {
        return None;
    }
    let named: Vec<String> = state
        .incidents
        .iter()
        .map(|i| {
            let link = i
                .shortlink
                .as_deref()
                .map_or(String::new(), |l| format!(" {l}"));
            format!("{} ({}){link}", i.name, i.status)
        })
        .collect();
    let more = match state.more {
        0 => String::new(),
        n => format!("; and {n} more"),
    };
    Some(format!("OpenAI reports: {}{more}", named.join("; ")))
}

/// How old a stored state may be before it counts as unavailable: three missed polls and
/// the time one may take.
pub fn stale_after_ms(interval: Duration) -> i64 {
    crate::clock::millis(interval).saturating_mul(3) + crate::clock::millis(FETCH_TIMEOUT)
}

/// The gauge value of an indicator: 0 none, 1 minor, 2 major, 3 critical, -1 unknown.
pub fn indicator_level(state: &UpstreamState) -> i64 {
    match state.indicator.as_deref() {
        _ if state.unavailable_since_ms.is_some() => -1,
        Some("none") => 0,
        Some("minor") => 1,
        Some("major") => 2,
        Some("critical") => 3,
        _ => -1,
    }
}

/// Polls the status page while `[upstream_status]` says so, until `cancel`.
pub async fn poll(
    store: Store,
    config: watch::Receiver<Arc<crate::config::Config>>,
    metrics: Arc<crate::metrics::Metrics>,
    leadership: Arc<crate::daemon::fleet::Leadership>,
    cancel: CancellationToken,
) {
    crate::tls::install_crypto_provider();
    let client = match reqwest::Client::builder()
        .user_agent(concat!("openai-watch/", env!("CARGO_PKG_VERSION")))
        .timeout(FETCH_TIMEOUT)
        // Like the probes: a redirect is followed only on the page's own origin.
        .redirect(crate::tls::same_origin_redirects())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the status page client; not polling it");
            return;
        }
    };
    loop {
        let settings = config.borrow().upstream_status.clone();
        if settings.enabled && !leadership.is_leader() {
            // Another agent of the fleet polls the page; this one reads what it stored.
            if let Ok(Some((state, _, _))) = store.upstream_state(settings.url.as_str()).await {
                metrics.set_upstream_indicator(indicator_level(&state));
            }
        } else if settings.enabled {
            // A fetch in progress never holds up shutdown.
            tokio::select! {
                () = cancel.cancelled() => return,
                state = fetch_once(&client, &store, &settings) => {
                    metrics.set_upstream_indicator(indicator_level(&state));
                }
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(settings.interval) => {}
        }
    }
}

/// Fetches the page once (conditionally) and stores what it said; returns the new state.
pub async fn fetch_once(
    client: &reqwest::Client,
    store: &Store,
    settings: &UpstreamStatus,
) -> UpstreamState {
    let url = settings.url.as_str();
    let stored = store.upstream_state(url).await.ok().flatten();
    let (mut state, etag, modified) = stored.unwrap_or_default();
    let now = crate::clock::now_ms();
    let mut request = client.get(url);
    if let Some(e) = &etag {
        request = request.header("if-none-match", e);
    }
    if let Some(m) = &modified {
        request = request.header("if-modified-since", m);
    }
    let outcome = async {
        let mut response = request
            .send()
            .await
            .map_err(|e| crate::error_chain::error_chain(&e))?;
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (new_etag, new_modified) = (header("etag"), header("last-modified"));
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        if status.is_redirection() {
            return Err(format!(
                "HTTP {status}: a redirect to another host is not followed"
            ));
        }
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        let mut body = Vec::new();
        let read_error = |e: reqwest::Error| {
            if e.is_timeout() {
                format!(
                    "no complete answer within {}",
                    humantime::format_duration(FETCH_TIMEOUT)
                )
            } else {
                crate::error_chain::error_chain(&e)
            }
        };
        while let Some(chunk) = response.chunk().await.map_err(read_error)? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BYTES {
                return Err(format!("larger than {} KiB", MAX_BYTES / 1024));
            }
        }
        parse(&body).map(|p| Some((p, new_etag, new_modified)))
    }
    .await;
    let (etag, modified) = match outcome {
        Ok(None) => {
            state.fetched_at_ms = Some(now);
            state.unavailable_since_ms = None;
            state.error = None;
            (etag, modified)
        }
        Ok(Some(((indicator, description, incidents, more), e, m))) => {
            state = UpstreamState {
                indicator: Some(indicator),
                description: Some(description),
                incidents,
                more,
                fetched_at_ms: Some(now),
                unavailable_since_ms: None,
                error: None,
            };
            (e, m)
        }
        Err(error) => {
            if state.unavailable_since_ms.is_none() {
                tracing::warn!(%url, %error, "the status page cannot be read");
            }
            state.unavailable_since_ms.get_or_insert(now);
            state.error = Some(error);
            (etag, modified)
        }
    };
    if let Err(e) = store
        .save_upstream_state(url, &state, etag.as_deref(), modified.as_deref())
        .await
    {
        tracing::warn!(error = %e, "cannot store the status page state");
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_gives_its_unresolved_incidents() {
        let body = br#"{"page":{"id":"x"},"status":{"indicator":"major","description":"Partial System Outage"},
            "components":[],"incidents":[
              {"name":"Elevated error rates","status":"investigating","impact":"major","shortlink":"https://stspg.io/abc","updated_at":"2026-11-25T10:00:00Z"},
              {"name":"Old one","status":"resolved","impact":"minor"}]}"#;
        let (indicator, _, incidents, _) = parse(body).unwrap();
        assert_eq!(indicator, "major");
        assert_eq!(incidents.len(), 1);
        assert!(parse(b"<html>").is_err());
    }

    #[test]
    fn the_sentence_says_them_or_us_or_that_nobody_knows() {
        let now = 1_000_000;
        let mut s = UpstreamState {
            indicator: Some("none".into()),
            fetched_at_ms: Some(now - 1000),
            ..Default::default()
        };
        let no = sentence(Category::Outage, &s, now, 60_000).unwrap();
        assert!(
            no.starts_with("OpenAI's status page reports no incident"),
            "{no}"
        );
        assert_eq!(sentence(Category::Quota, &s, now, 60_000), None);
        s.incidents.push(UpstreamIncident {
            name: "Elevated error rates".into(),
            status: "investigating".into(),
            impact: "major".into(),
            shortlink: Some("https://stspg.io/abc".into()),
            updated_at: None,
        });
        assert_eq!(
            sentence(Category::Overload, &s, now, 60_000).unwrap(),
            "OpenAI reports: Elevated error rates (investigating) https://stspg.io/abc"
        );
        let stale = sentence(Category::Outage, &s, now + 120_000, 60_000).unwrap();
        assert!(stale.contains("unavailable since"), "{stale}");
    }
}
