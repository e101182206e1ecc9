//! Leading signals read from healthy answers (SPEC §13): rate-limit headroom. Pure: an
//! observation and the thresholds give a reading for the detector and the words for the
//! incident.

use crate::config::Detection;
use crate::detect::Signal;
use crate::domain::Category;
use crate::probe::Observation;

/// A reading of the headroom signal, and what the incident should say about it.
#[derive(Debug, Clone)]
pub struct Reading {
    pub signal: Signal,
    /// e.g. "gpt-4o-mini: 95% of the requests limit used (25 of 500 left, resets in 1s)".
    pub message: String,
}

/// The headroom reading of an answer that carries `x-ratelimit-*` headers: the larger of
/// the requests and tokens shares used, against `[detection] headroom_warn`. `None` when the
/// answer carries no limit.
pub fn headroom(o: &Observation, cfg: &Detection) -> Option<Reading> {
    let rl = &o.rate_limits;
    let share = |limit: Option<i64>, remaining: Option<i64>| match (limit, remaining) {
        (Some(limit), Some(remaining)) if limit > 0 => {
            Some(1.0 - remaining.clamp(0, limit) as f64 / limit as f64)
        }
        _ => None,
    };
    let requests = share(rl.limit_requests, rl.remaining_requests).map(|s| {
        (
            s,
            "requests",
            rl.limit_requests,
            rl.remaining_requests,
            &rl.reset_requests,
        )
    });
    let tokens = share(rl.limit_tokens, rl.remaining_tokens).map(|s| {
        (
            s,
            "tokens",
            rl.limit_tokens,
            rl.remaining_tokens,
            &rl.reset_tokens,
        )
    });
    let (used, limit_name, limit, remaining, reset) = match (requests, tokens) {
        (Some(r), Some(t)) => {
            if t.0 > r.0 {
                t
            } else {
                r
            }
        }
        (Some(r), None) => r,
        (None, Some(t)) => t,
        (None, None) => return None,
    };
    let model = if o.model.is_empty() {
        o.kind.as_str().to_string()
    } else {
        o.model.clone()
    };
    let reset = reset
        .as_deref()
        .map_or(String::new(), |r| format!(", resets in {r}"));
    Some(Reading {
        message: format!(
            "{model}: {:.0}% of the {limit_name} limit used ({} of {} left{reset})",
            used * 100.0,
            remaining.unwrap_or(0),
            limit.unwrap_or(0),
        ),
        signal: Signal {
            at_ms: o.at_ms,
            category: Category::Headroom,
            key: model,
            above: used >= cfg.headroom_warn,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::RateLimits;

    fn observed(remaining_requests: i64, remaining_tokens: i64) -> Observation {
        Observation {
            at_ms: 1,
            target: crate::config::TargetName::parse("prod").unwrap(),
            kind: crate::domain::ProbeKind::Chat,
            model: "gpt-4o-mini".into(),
            latency_ms: 1,
            http_status: Some(200),
            transport_error: None,
            entry: &crate::catalog::OK,
            message: None,
            request_id: None,
            rate_limits: RateLimits {
                limit_requests: Some(500),
                remaining_requests: Some(remaining_requests),
                limit_tokens: Some(200_000),
                remaining_tokens: Some(remaining_tokens),
                reset_requests: Some("1s".into()),
                reset_tokens: Some("6m0s".into()),
            },
            retry_after: None,
            ttft_ms: None,
            local_failure: false,
        }
    }

    #[test]
    fn the_tighter_of_the_two_limits_counts_and_is_named() {
        let cfg = Detection::default();
        let r = headroom(&observed(25, 150_000), &cfg).unwrap();
        assert!(r.signal.above);
        assert_eq!(r.signal.key, "gpt-4o-mini");
        assert_eq!(
            r.message,
            "gpt-4o-mini: 95% of the requests limit used (25 of 500 left, resets in 1s)"
        );
        let r = headroom(&observed(400, 10_000), &cfg).unwrap();
        assert!(r.signal.above);
        assert!(
            r.message.contains("95% of the tokens limit"),
            "{}",
            r.message
        );
        let r = headroom(&observed(250, 100_000), &cfg).unwrap();
        assert!(!r.signal.above, "50% used");
        let mut none = observed(1, 1);
        none.rate_limits = RateLimits::default();
        assert!(headroom(&none, &cfg).is_none());
    }
}
