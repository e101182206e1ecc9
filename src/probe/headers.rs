//! What the answer's headers say besides the body: the `x-ratelimit-*` values, the pause
//! asked for (`retry-after`, `retry-after-ms`), and short header strings.

use reqwest::header::HeaderMap;
use std::time::{Duration, SystemTime};

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

pub(super) fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
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

/// A count of the `x-ratelimit-*` headers: a whole number of zero or more. Anything else
/// (a negative remaining, say) makes no sense as a count and is ignored, never clamped: a
/// clamped -1 would read as the whole limit used.
fn header_int(headers: &HeaderMap, name: &str) -> Option<i64> {
    header_str(headers, name)?
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
}

pub(super) fn rate_limits(h: &HeaderMap) -> RateLimits {
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
    fn counts_that_make_no_sense_are_ignored() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-limit-requests", "500".parse().unwrap());
        h.insert("x-ratelimit-remaining-requests", "-1".parse().unwrap());
        h.insert("x-ratelimit-remaining-tokens", "1e3".parse().unwrap());
        let r = rate_limits(&h);
        assert_eq!(r.limit_requests, Some(500));
        assert_eq!(r.remaining_requests, None);
        assert_eq!(r.remaining_tokens, None);
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
