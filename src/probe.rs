//! HTTP probing (SPEC §4): one reused client, one request per probe, no retries. Turns what
//! the wire said into an `Observation`, classified and with its message masked.

use crate::catalog::{self, Entry, Expect};
use crate::config::{self, Probe, ProbeKind, Target, TargetName};
use crate::domain::TransportErrorKind;
use crate::error_chain::error_chain;
use crate::redact;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap};
use secrecy::SecretString;
use std::error::Error as _;
use std::time::{Duration, Instant, SystemTime};

/// Bodies are read up to this many bytes; the rest is discarded unread.
pub const BODY_CAP: usize = 64 * 1024;
/// Connect timeout of the shared client; the per-target `timeout` bounds the whole probe.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest `retry-after` honoured, so that a hostile header cannot stop probing for days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The `x-ratelimit-*` headers of an answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimits {
    pub limit_requests: Option<i64>,
    pub limit_tokens: Option<i64>,
    pub remaining_requests: Option<i64>,
    pub remaining_tokens: Option<i64>,
    /// Durations as the API writes them (`1s`, `6m0s`, `12ms`).
    pub reset_requests: Option<String>,
    pub reset_tokens: Option<String>,
}

/// One probe's result: what was asked, what came back, and what it means.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Start of the probe, Unix milliseconds (UTC).
    pub at_ms: i64,
    pub target: TargetName,
    pub kind: ProbeKind,
    pub latency_ms: i64,
    pub http_status: Option<u16>,
    /// Why no HTTP answer arrived, when none did.
    pub transport_error: Option<TransportErrorKind>,
    pub entry: &'static Entry,
    /// Upstream message, masked and truncated.
    pub message: Option<String>,
    pub request_id: Option<String>,
    pub rate_limits: RateLimits,
    /// How long the answer asked us to wait before the next request.
    pub retry_after: Option<Duration>,
    /// The request could not be made for a reason on this machine (no file descriptors, no
    /// memory, no local address): it says nothing about the API, so it is never stored as a
    /// probe, never opens an incident, never alerts.
    pub local_failure: bool,
}

/// The shared HTTP client and the secrets to mask in anything the wire says.
pub struct Prober {
    client: reqwest::Client,
    secrets: Vec<SecretString>,
}

impl Prober {
    pub fn new(secrets: Vec<SecretString>) -> anyhow::Result<Prober> {
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(concat!("openai-watch/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                // Follow only to the same origin: the key must never travel to another host.
                let first = attempt.previous().first().cloned();
                let same_origin = first.is_some_and(|f| f.origin() == attempt.url().origin());
                if same_origin && attempt.previous().len() < 5 {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            }))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(4)
            .build()?;
        Ok(Prober { client, secrets })
    }

    fn mask(&self, text: &str) -> String {
        let secrets: Vec<&str> = self.secrets.iter().map(config::expose).collect();
        redact::clean_message(text, &secrets)
    }

    /// Probes `kind` of `target` once. Never fails: every outcome is an `Observation`.
    #[tracing::instrument(skip_all, fields(target = %target.name(), probe = %probe.kind))]
    pub async fn probe(&self, target: &Target, probe: &Probe) -> Observation {
        let kind = probe.kind;
        let at_ms = crate::clock::now_ms();
        let started = Instant::now();
        let outcome = tokio::time::timeout(target.timeout(), self.exchange(target, probe)).await;
        let latency_ms = crate::clock::millis(started.elapsed());
        let mut obs = Observation {
            at_ms,
            target: target.name().clone(),
            kind,
            latency_ms,
            http_status: None,
            transport_error: None,
            entry: catalog::classify_transport(TransportErrorKind::Timeout),
            message: None,
            request_id: None,
            rate_limits: RateLimits::default(),
            retry_after: None,
            local_failure: false,
        };
        match outcome {
            Err(_elapsed) => {
                obs.transport_error = Some(TransportErrorKind::Timeout);
                obs.message = Some(format!(
                    "no complete answer within {}",
                    humantime::format_duration(target.timeout())
                ));
            }
            Ok(Err(e)) => {
                let kind = transport_kind(&e);
                obs.local_failure = is_local_failure(&e);
                obs.transport_error = Some(kind);
                obs.entry = catalog::classify_transport(kind);
                obs.message = Some(self.mask(&error_chain(&e)));
            }
            Ok(Ok(answer)) => {
                let expect = match kind {
                    ProbeKind::Models => Expect::List,
                    ProbeKind::Chat => Expect::Chat,
                };
                // A model list longer than the cap (many fine-tuned models) is healthy when
                // its beginning has the shape of one; the rest is never read.
                let verdict = if answer.truncated
                    && expect == Expect::List
                    && (200..300).contains(&answer.status)
                    && catalog::is_list_prefix(&answer.body)
                {
                    catalog::Verdict {
                        entry: &catalog::OK,
                        message: None,
                    }
                } else {
                    catalog::classify(answer.status, &answer.body, expect)
                };
                obs.http_status = Some(answer.status);
                obs.entry = verdict.entry;
                obs.message = match (&answer.redirect_to, verdict.message) {
                    (Some(loc), _) if (300..400).contains(&answer.status) => {
                        Some(self.mask(&format!("redirect to {loc} not followed")))
                    }
                    (_, m) => m.map(|m| self.mask(&m)).filter(|m| !m.is_empty()),
                };
                obs.request_id = header_str(&answer.headers, "x-request-id").map(|v| self.mask(&v));
                obs.rate_limits = rate_limits(&answer.headers);
                obs.retry_after = retry_after(&answer.headers, SystemTime::now());
            }
        }
        tracing::debug!(
            category = %obs.entry.category,
            error_id = obs.entry.id,
            status = ?obs.http_status,
            latency_ms = obs.latency_ms,
            "probe done"
        );
        obs
    }

    async fn exchange(&self, target: &Target, probe: &Probe) -> Result<Answer, reqwest::Error> {
        let request = match probe.kind {
            ProbeKind::Models => self.client.get(target.endpoint("models")),
            ProbeKind::Chat => {
                let mut body = serde_json::json!({
                    "model": probe.model,
                    "messages": [{"role": "user", "content": "ping"}],
                });
                body[probe.max_tokens_field.as_str()] = serde_json::json!(1);
                self.client
                    .post(target.endpoint("chat/completions"))
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.to_string())
            }
        };
        let mut request = request.header("accept", "application/json");
        if let Some(key) = &target.api_key {
            let mut value =
                reqwest::header::HeaderValue::try_from(format!("Bearer {}", config::expose(key)))
                    .unwrap_or_else(|_| {
                        reqwest::header::HeaderValue::from_static("Bearer invalid")
                    });
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        if let Some(org) = &target.organization {
            request = request.header("OpenAI-Organization", org);
        }
        if let Some(project) = &target.project {
            request = request.header("OpenAI-Project", project);
        }
        let mut response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let redirect_to = header_str(&headers, "location");
        let mut body = Vec::with_capacity(1024);
        let mut truncated = false;
        while let Some(chunk) = response.chunk().await? {
            let room = BODY_CAP - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if chunk.len() >= room {
                truncated = chunk.len() > room || response.chunk().await?.is_some();
                break; // dropping `response` closes the connection instead of reading on
            }
        }
        Ok(Answer {
            status,
            headers,
            body,
            truncated,
            redirect_to,
        })
    }
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    /// The first `BODY_CAP` bytes.
    body: Vec<u8>,
    /// More came than `BODY_CAP`; the rest was not read.
    truncated: bool,
    redirect_to: Option<String>,
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .trim()
                .chars()
                .take(256)
                .collect::<String>()
        })
        .filter(|v| !v.is_empty())
}

fn header_int(headers: &HeaderMap, name: &str) -> Option<i64> {
    header_str(headers, name)?.parse().ok()
}

fn rate_limits(h: &HeaderMap) -> RateLimits {
    let short = |name: &str| header_str(h, name).map(|v| v.chars().take(32).collect());
    RateLimits {
        limit_requests: header_int(h, "x-ratelimit-limit-requests"),
        limit_tokens: header_int(h, "x-ratelimit-limit-tokens"),
        remaining_requests: header_int(h, "x-ratelimit-remaining-requests"),
        remaining_tokens: header_int(h, "x-ratelimit-remaining-tokens"),
        reset_requests: short("x-ratelimit-reset-requests"),
        reset_tokens: short("x-ratelimit-reset-tokens"),
    }
}

/// `retry-after-ms` (milliseconds), else `retry-after` (seconds or an HTTP date), capped.
pub fn retry_after(h: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let from_ms = header_str(h, "retry-after-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .map(|ms| Duration::from_secs_f64((ms / 1000.0).min(MAX_RETRY_AFTER.as_secs_f64())));
    let from_header = || {
        let v = header_str(h, "retry-after")?;
        if let Ok(secs) = v.parse::<f64>() {
            return (secs.is_finite() && secs >= 0.0)
                .then(|| Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64())));
        }
        let date = httpdate::parse_http_date(&v).ok()?;
        Some(date.duration_since(now).unwrap_or_default())
    };
    from_ms.or_else(from_header).map(|d| d.min(MAX_RETRY_AFTER))
}

/// Whether a failed request failed on this machine: out of file descriptors (EMFILE,
/// ENFILE), of memory (ENOMEM, ENOBUFS), or of local addresses (EADDRNOTAVAIL).
fn is_local_failure(e: &reqwest::Error) -> bool {
    // Linux errno values.
    const LOCAL: [i32; 5] = [12, 23, 24, 99, 105];
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.raw_os_error().is_some_and(|code| LOCAL.contains(&code))
        {
            return true;
        }
        source = s.source();
    }
    let chain = error_chain(e).to_ascii_lowercase();
    chain.contains("too many open files") || chain.contains("cannot allocate memory")
}

fn transport_kind(e: &reqwest::Error) -> TransportErrorKind {
    if e.is_timeout() {
        return TransportErrorKind::Timeout;
    }
    let mut kind = TransportErrorKind::Connect;
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            kind = match io.kind() {
                std::io::ErrorKind::ConnectionRefused => TransportErrorKind::Refused,
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
                    TransportErrorKind::Reset
                }
                std::io::ErrorKind::TimedOut => TransportErrorKind::Timeout,
                _ => kind,
            };
        }
        source = s.source();
    }
    if kind == TransportErrorKind::Connect {
        let chain = error_chain(e).to_ascii_lowercase();
        if chain.contains("dns")
            || chain.contains("failed to lookup")
            || chain.contains("name or service not known")
        {
            kind = TransportErrorKind::Dns;
        } else if chain.contains("certificate")
            || chain.contains("tls")
            || chain.contains("handshake")
        {
            kind = TransportErrorKind::Tls;
        } else if !e.is_connect() {
            kind = TransportErrorKind::Reset;
        }
    }
    kind
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn retry_after_reads_ms_then_seconds_then_dates() {
        let now = SystemTime::now();
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "1500")]), now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "20")]), now),
            Some(Duration::from_secs(20))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(120));
        let d = retry_after(&headers(&[("retry-after", &later)]), now).unwrap();
        assert!(
            d > Duration::from_secs(118) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "999999999")]), now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-3")]), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn rate_limit_headers_are_parsed_when_present() {
        let h = headers(&[
            ("x-ratelimit-limit-requests", "500"),
            ("x-ratelimit-remaining-requests", "499"),
            ("x-ratelimit-reset-tokens", "6m0s"),
            ("x-ratelimit-limit-tokens", "lots"),
        ]);
        let r = rate_limits(&h);
        assert_eq!(r.limit_requests, Some(500));
        assert_eq!(r.remaining_requests, Some(499));
        assert_eq!(r.reset_tokens.as_deref(), Some("6m0s"));
        assert_eq!(r.limit_tokens, None);
    }
}
