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
    let used = used_share(o)?;
    let model = model_of(o);
    let reset = used
        .reset
        .as_deref()
        .map_or(String::new(), |r| format!(", resets in {r}"));
    Some(Reading {
        message: format!(
            "{model}: {:.0}% of the {} limit used ({} of {} left{reset})",
            used.share * 100.0,
            used.limit_name,
            used.remaining,
            used.limit,
        ),
        signal: Signal {
            at_ms: o.at_ms,
            category: Category::Headroom,
            key: model,
            above: used.share >= cfg.headroom_warn,
        },
    })
}

/// The tighter of an answer's rate limits: its used share and what the headers said.
#[derive(Debug, Clone, PartialEq)]
pub struct UsedShare {
    /// 0 to 1.
    pub share: f64,
    /// `requests` or `tokens`.
    pub limit_name: &'static str,
    pub limit: i64,
    pub remaining: i64,
    pub reset: Option<String>,
}

/// The model of an observation, or its probe kind for `models` probes.
pub fn model_of(o: &Observation) -> String {
    if o.model.is_empty() {
        o.kind.as_str().to_string()
    } else {
        o.model.clone()
    }
}

/// The larger of the requests and tokens shares used, from the `x-ratelimit-*` headers;
/// `None` when the answer carries no limit.
pub fn used_share(o: &Observation) -> Option<UsedShare> {
    let rl = &o.rate_limits;
    let one =
        |name: &'static str, limit: Option<i64>, remaining: Option<i64>, reset: &Option<String>| {
            match (limit, remaining) {
                (Some(limit), Some(remaining)) if limit > 0 => {
                    let remaining = remaining.clamp(0, limit);
                    Some(UsedShare {
                        share: 1.0 - remaining as f64 / limit as f64,
                        limit_name: name,
                        limit,
                        remaining,
                        reset: reset.clone(),
                    })
                }
                _ => None,
            }
        };
    let requests = one(
        "requests",
        rl.limit_requests,
        rl.remaining_requests,
        &rl.reset_requests,
    );
    let tokens = one(
        "tokens",
        rl.limit_tokens,
        rl.remaining_tokens,
        &rl.reset_tokens,
    );
    match (requests, tokens) {
        (Some(r), Some(t)) => Some(if t.share > r.share { t } else { r }),
        (r, t) => r.or(t),
    }
}

/// The key `slow` is tracked by: the probe kind and its model.
pub fn latency_key(o: &Observation) -> String {
    format!("{} {}", o.kind, o.model).trim_end().to_string()
}

/// The `slow` reading of a healthy answer, from the median of the `recent` latencies (the
/// latest `failure_threshold` healthy probes, this one included) against the probe's
/// `slow_after`, or else against `slow_factor` × `baseline` (the usual latency) and
/// `slow_floor`. `None` while there are too few probes or no baseline to judge by.
pub fn slow(
    o: &Observation,
    recent: &[i64],
    baseline_ms: Option<f64>,
    cfg: &Detection,
) -> Option<Reading> {
    if !o.entry.is_ok() || recent.len() < cfg.failure_threshold.get() as usize {
        return None;
    }
    let median = median(recent.iter().map(|v| *v as f64))?;
    let key = latency_key(o);
    let (above, usual) = match o.slow_after {
        Some(bound) => {
            let bound = crate::clock::millis(bound) as f64;
            (median > bound, format!("slow_after {bound:.0} ms"))
        }
        None => {
            let baseline = baseline_ms?;
            let bound =
                (cfg.slow_factor * baseline).max(crate::clock::millis(cfg.slow_floor.0) as f64);
            (
                median > bound,
                format!("usually {baseline:.0} ms, slow above {bound:.0} ms"),
            )
        }
    };
    Some(Reading {
        message: format!(
            "{key}: median {median:.0} ms over the last {} healthy probes ({usual})",
            recent.len()
        ),
        signal: Signal {
            at_ms: o.at_ms,
            category: Category::Slow,
            key,
            above,
        },
    })
}

/// The median of some values; `None` for none.
pub fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
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
            slow_after: None,
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

    #[test]
    fn slow_is_the_recent_median_against_factor_times_usual_and_the_floor() {
        let cfg = Detection::default(); // factor 3, floor 2 s, 3 probes
        let o = observed(400, 190_000);
        assert!(
            slow(&o, &[50, 60], Some(50.0), &cfg).is_none(),
            "too few probes"
        );
        assert!(
            slow(&o, &[50, 60, 3000], None, &cfg).is_none(),
            "no baseline"
        );
        let r = slow(&o, &[3000, 3100, 50], Some(50.0), &cfg).unwrap();
        assert!(r.signal.above, "median 3000 > max(150, 2000)");
        assert_eq!(r.signal.key, "chat gpt-4o-mini");
        assert!(r.message.contains("median 3000 ms") && r.message.contains("usually 50 ms"));
        // Above 3 × usual but under the floor: not slow.
        assert!(
            !slow(&o, &[900, 950, 1000], Some(100.0), &cfg)
                .unwrap()
                .signal
                .above
        );
        // An absolute bound replaces both.
        let mut bounded = o.clone();
        bounded.slow_after = Some(std::time::Duration::from_millis(500));
        assert!(
            slow(&bounded, &[900, 950, 1000], None, &cfg)
                .unwrap()
                .signal
                .above
        );
        assert_eq!(median([3.0, 1.0, 2.0, 10.0].into_iter()), Some(2.5));
    }
}
