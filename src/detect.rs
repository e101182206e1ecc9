//! Incident detection (SPEC §6) as a pure state machine: the previous state of a target, one
//! probe's verdict and its time give the new state and the transitions. No I/O and no clock:
//! it is tested with timestamps alone, and its state is stored with the probes so that a
//! restart continues where it stopped.

use crate::catalog::Category;
use crate::config::{Detection, ProbeKind};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

mod window;
pub use window::Window;

/// What the detector remembers about one target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetState {
    /// The current run of consecutive probes in one transient category, and its start.
    pub run: Option<Run>,
    /// The target's probes within `[detection] window`: (time, category). Not stored with the
    /// state: the probes table holds them, and the store rebuilds the window from it on load
    /// (writing it with every batch would cost more than everything else together).
    #[serde(skip)]
    pub window: Window,
    /// Open incidents by category.
    pub open: BTreeMap<Category, OpenIncident>,
    /// Leading signals (headroom), each detected on its own: a healthy answer can carry one.
    #[serde(default)]
    pub signals: BTreeMap<Category, SignalState>,
    /// Latest latencies of healthy probes by probe kind and model, newest last, at most
    /// `failure_threshold`: the recent side of `slow`. Stored with the state, so that a
    /// restart keeps them.
    #[serde(default)]
    pub latencies: BTreeMap<String, VecDeque<i64>>,
    /// What was last written to the database, and when (not stored itself).
    #[serde(skip)]
    pub stored: Option<Stored>,
}

/// The part of a state that decides what opens and resolves, as last written, and the time.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    run: Option<Run>,
    open: BTreeMap<Category, OpenIncident>,
    signals: BTreeMap<Category, SignalState>,
    at_ms: i64,
}

impl TargetState {
    /// How old the stored latencies may get: they only judge `slow` for the first probes
    /// after a restart.
    pub const LATENCIES_STORED_EVERY_MS: i64 = 60_000;

    /// Whether the state must be written at `now_ms`: what decides incidents changed since it
    /// was last written (every such change is written in the transaction that made it), or
    /// its latencies were written `LATENCIES_STORED_EVERY_MS` ago or more.
    pub fn needs_storing(&self, now_ms: i64) -> bool {
        self.stored.as_ref().is_none_or(|s| {
            s.run != self.run
                || s.open != self.open
                || s.signals != self.signals
                || now_ms.saturating_sub(s.at_ms) >= Self::LATENCIES_STORED_EVERY_MS
                || now_ms < s.at_ms
        })
    }

    /// Notes that the state as it is now was written at `now_ms`.
    pub fn mark_stored(&mut self, now_ms: i64) {
        self.stored = Some(Stored {
            run: self.run,
            open: self.open.clone(),
            signals: self.signals.clone(),
            at_ms: now_ms,
        });
    }
}

/// What the detector remembers of one leading signal of a target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SignalState {
    /// Per key (the model), the current run of probes at or above the threshold and its
    /// start.
    pub above: BTreeMap<String, (u32, i64)>,
    /// Whether its incident is open.
    pub open: bool,
    /// While open: consecutive probes with no key above the threshold.
    pub below: u32,
}

/// One probe's reading of a leading signal: whether `key` (the model) is at or above the
/// threshold.
#[derive(Debug, Clone)]
pub struct Signal {
    pub at_ms: i64,
    pub category: Category,
    pub key: String,
    pub above: bool,
}

/// Advances a leading signal by one reading. It opens after `open_after` readings of one key
/// in a row at or above the threshold, and resolves after `success_threshold` readings in a
/// row with no key above it.
pub fn step_signal(
    state: &mut TargetState,
    cfg: &Detection,
    s: &Signal,
    open_after: u32,
) -> Option<Transition> {
    let signal = state.signals.entry(s.category).or_default();
    if s.above {
        let run = signal.above.entry(s.key.clone()).or_insert((0, s.at_ms));
        run.0 += 1;
        let run = *run;
        signal.below = 0;
        if signal.open {
            return Some(Transition::Seen {
                category: s.category,
            });
        }
        if run.0 >= open_after {
            signal.open = true;
            return Some(Transition::Opened {
                category: s.category,
                probe_count: run.0,
                since_ms: run.1,
            });
        }
        return None;
    }
    signal.above.remove(&s.key);
    if signal.open && signal.above.is_empty() {
        signal.below += 1;
        if signal.below >= cfg.success_threshold.get() {
            signal.open = false;
            signal.below = 0;
            return Some(Transition::Resolved {
                category: s.category,
            });
        }
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub category: Category,
    pub count: u32,
    pub since_ms: i64,
}

/// What the detector needs of an open incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenIncident {
    /// Probe kinds that saw the problem: only their healthy probes can resolve it.
    pub kinds: Vec<ProbeKind>,
    /// Consecutive healthy probes of those kinds.
    pub healthy: u32,
}

/// One probe's verdict, as the detector sees it.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    pub at_ms: i64,
    pub kind: ProbeKind,
    pub category: Category,
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// A new incident: `probe_count` failing probes since `since_ms` led to it.
    Opened {
        category: Category,
        probe_count: u32,
        since_ms: i64,
    },
    /// An open incident was seen again.
    Seen { category: Category },
    /// An incident resolved.
    Resolved { category: Category },
}

/// Advances `state` by one probe and returns what changed.
pub fn step(state: &mut TargetState, cfg: &Detection, v: Verdict) -> Vec<Transition> {
    let mut out = Vec::new();
    let window_ms = crate::clock::millis(cfg.window.0);
    state.window.push(v.at_ms, v.category);
    state.window.expire(v.at_ms.saturating_sub(window_ms));
    state.run = match state.run {
        Some(r) if r.category == v.category && v.category.is_transient() => Some(Run {
            count: r.count + 1,
            ..r
        }),
        _ if v.category.is_transient() => Some(Run {
            category: v.category,
            count: 1,
            since_ms: v.at_ms,
        }),
        _ => None,
    };

    let mut resolved = Vec::new();
    for (category, incident) in state.open.iter_mut() {
        if *category == v.category {
            incident.healthy = 0;
            if !incident.kinds.contains(&v.kind) {
                incident.kinds.push(v.kind);
            }
            out.push(Transition::Seen {
                category: *category,
            });
        } else if incident.kinds.contains(&v.kind) {
            if v.category == Category::Ok {
                incident.healthy += 1;
                if incident.healthy >= cfg.success_threshold.get() {
                    resolved.push(*category);
                }
            } else {
                incident.healthy = 0;
            }
        }
    }
    for category in resolved {
        state.open.remove(&category);
        // The evidence that opened it must not reopen it on the next blip.
        state.window.forget(category);
        out.push(Transition::Resolved { category });
    }

    if v.category != Category::Ok && !state.open.contains_key(&v.category) {
        let opening = if !v.category.is_transient() {
            Some((1, v.at_ms))
        } else if let Some(run) = state.run.filter(|r| r.count >= cfg.failure_threshold.get()) {
            Some((run.count, run.since_ms))
        } else {
            flapping(state, cfg, v.category)
        };
        if let Some((probe_count, since_ms)) = opening {
            state.open.insert(
                v.category,
                OpenIncident {
                    kinds: vec![v.kind],
                    healthy: 0,
                },
            );
            out.push(Transition::Opened {
                category: v.category,
                probe_count,
                since_ms,
            });
        }
    }
    out
}

/// The flapping rule: enough probes in the window, enough of them failing (in any transient
/// category), and `category` the most frequent failure. Gives the count and first time.
fn flapping(state: &TargetState, cfg: &Detection, category: Category) -> Option<(u32, i64)> {
    let total = state.window.len();
    if total < cfg.min_samples.get() as usize {
        return None;
    }
    let failures = state
        .window
        .iter()
        .filter(|(_, c)| c.is_transient())
        .count();
    if (failures as f64) < cfg.failure_ratio * total as f64 {
        return None;
    }
    let count_of = |cat: Category| state.window.iter().filter(|(_, c)| *c == cat).count();
    let mine = count_of(category);
    let most = Category::ALL
        .iter()
        .filter(|c| c.is_transient())
        .map(|c| count_of(*c))
        .max()
        .unwrap_or(0);
    if mine < most {
        return None;
    }
    let since = state
        .window
        .iter()
        .find(|(_, c)| *c == category)
        .map_or(0, |(t, _)| t);
    Some((u32::try_from(mine).unwrap_or(u32::MAX), since))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Category::*;

    fn step_signal_3(s: &mut TargetState, cfg: &Detection, r: &Signal) -> Option<Transition> {
        step_signal(s, cfg, r, cfg.failure_threshold.get())
    }

    fn reading(at_ms: i64, key: &str, above: bool) -> Signal {
        Signal {
            at_ms,
            category: Headroom,
            key: key.into(),
            above,
        }
    }

    #[test]
    fn headroom_opens_after_the_threshold_in_a_row_for_one_model_and_resolves_below_it() {
        let cfg = cfg();
        let mut s = TargetState::default();
        assert_eq!(step_signal_3(&mut s, &cfg, &reading(1, "m", true)), None);
        assert_eq!(step_signal_3(&mut s, &cfg, &reading(2, "m", true)), None);
        // Another model below the line does not break the run of this one.
        assert_eq!(
            step_signal_3(&mut s, &cfg, &reading(3, "other", false)),
            None
        );
        assert_eq!(
            step_signal_3(&mut s, &cfg, &reading(4, "m", true)),
            Some(Transition::Opened {
                category: Headroom,
                probe_count: 3,
                since_ms: 1
            })
        );
        assert_eq!(
            step_signal_3(&mut s, &cfg, &reading(5, "m", true)),
            Some(Transition::Seen { category: Headroom })
        );
        assert_eq!(step_signal_3(&mut s, &cfg, &reading(6, "m", false)), None);
        assert_eq!(
            step_signal_3(&mut s, &cfg, &reading(7, "m", false)),
            Some(Transition::Resolved { category: Headroom })
        );
        // Healthy availability probes never touch it.
        assert!(s.open.is_empty());
    }

    #[test]
    fn a_broken_run_starts_again() {
        let cfg = cfg();
        let mut s = TargetState::default();
        for (at, above) in [(1, true), (2, true), (3, false), (4, true), (5, true)] {
            assert_eq!(step_signal_3(&mut s, &cfg, &reading(at, "m", above)), None);
        }
    }
    use ProbeKind::*;

    fn cfg() -> Detection {
        Detection::default()
    }

    /// Feeds a timeline (one probe a minute) and returns every transition.
    fn run(state: &mut TargetState, timeline: &[(ProbeKind, Category)]) -> Vec<Transition> {
        let start = 1_700_000_000_000;
        let base = state.window.last_at().map_or(start, |t| t + 60_000);
        timeline
            .iter()
            .enumerate()
            .flat_map(|(i, (kind, category))| {
                step(
                    state,
                    &cfg(),
                    Verdict {
                        at_ms: base + i as i64 * 60_000,
                        kind: *kind,
                        category: *category,
                    },
                )
            })
            .collect()
    }

    fn opened(t: &[Transition]) -> Vec<Category> {
        t.iter()
            .filter_map(|t| {
                if let Transition::Opened { category, .. } = t {
                    Some(*category)
                } else {
                    None
                }
            })
            .collect()
    }

    fn resolved(t: &[Transition]) -> Vec<Category> {
        t.iter()
            .filter_map(|t| {
                if let Transition::Resolved { category } = t {
                    Some(*category)
                } else {
                    None
                }
            })
            .collect()
    }

    #[test]
    fn one_server_error_opens_nothing() {
        let mut s = TargetState::default();
        let t = run(
            &mut s,
            &[(Models, Ok), (Models, Outage), (Models, Ok), (Models, Ok)],
        );
        assert!(t.is_empty(), "{t:?}");
        assert!(s.open.is_empty());
    }

    #[test]
    fn three_overloaded_answers_in_a_row_open_one_overload_incident() {
        let mut s = TargetState::default();
        let t = run(&mut s, &[(Chat, Overload), (Chat, Overload)]);
        assert!(opened(&t).is_empty());
        let t = run(&mut s, &[(Chat, Overload)]);
        assert_eq!(t.len(), 1);
        let Transition::Opened {
            category,
            probe_count,
            since_ms,
        } = t[0]
        else {
            panic!("{t:?}")
        };
        assert_eq!((category, probe_count), (Overload, 3));
        assert_eq!(
            since_ms, 1_700_000_000_000,
            "the incident starts at the first failing probe"
        );
        let t = run(&mut s, &[(Chat, Overload), (Chat, Overload)]);
        assert_eq!(
            t,
            vec![Transition::Seen { category: Overload }; 2],
            "no second incident"
        );
    }

    #[test]
    fn flapping_between_500_and_200_opens_exactly_one_outage() {
        let mut s = TargetState::default();
        let timeline: Vec<_> = (0..20)
            .map(|i| (Models, if i % 2 == 0 { Outage } else { Ok }))
            .collect();
        let t = run(&mut s, &timeline);
        assert_eq!(opened(&t), vec![Outage]);
        assert!(
            resolved(&t).is_empty(),
            "alternating never gives two healthy probes in a row"
        );
        // It resolves after two healthy probes in a row.
        let t = run(&mut s, &[(Models, Ok), (Models, Ok)]);
        assert_eq!(resolved(&t), vec![Outage]);
    }

    #[test]
    fn an_invalid_api_key_opens_an_auth_incident_at_once() {
        let mut s = TargetState::default();
        let t = run(&mut s, &[(Models, Auth)]);
        assert_eq!(opened(&t), vec![Auth]);
    }

    #[test]
    fn quota_seen_by_chat_is_resolved_only_by_healthy_chat_probes() {
        let mut s = TargetState::default();
        let t = run(&mut s, &[(Models, Ok), (Chat, Quota)]);
        assert_eq!(opened(&t), vec![Quota]);
        let t = run(
            &mut s,
            &[(Models, Ok), (Models, Ok), (Models, Ok), (Models, Ok)],
        );
        assert!(
            t.is_empty(),
            "healthy models probes do not resolve a quota problem: {t:?}"
        );
        let t = run(&mut s, &[(Chat, Ok), (Models, Ok)]);
        assert!(
            resolved(&t).is_empty(),
            "one healthy chat probe is not enough"
        );
        let t = run(&mut s, &[(Chat, Ok)]);
        assert_eq!(resolved(&t), vec![Quota]);
        assert!(s.open.is_empty());
    }

    #[test]
    fn a_failing_probe_between_healthy_ones_restarts_the_count() {
        let mut s = TargetState::default();
        run(&mut s, &[(Models, Region)]);
        let t = run(&mut s, &[(Models, Ok), (Models, Region), (Models, Ok)]);
        assert!(resolved(&t).is_empty());
        let t = run(&mut s, &[(Models, Ok)]);
        assert_eq!(resolved(&t), vec![Region]);
    }

    #[test]
    fn rate_limit_and_quota_are_never_confused() {
        let mut s = TargetState::default();
        let t = run(&mut s, &[(Chat, RateLimit), (Chat, RateLimit)]);
        assert!(opened(&t).is_empty(), "a short rate limit pages nobody");
        let t = run(&mut s, &[(Chat, Quota)]);
        assert_eq!(opened(&t), vec![Quota], "quota opens at once");
        let mut s = TargetState::default();
        let t = run(
            &mut s,
            &[(Chat, RateLimit), (Chat, RateLimit), (Chat, RateLimit)],
        );
        assert_eq!(opened(&t), vec![RateLimit]);
        assert!(!s.open.contains_key(&Quota));
    }

    #[test]
    fn incidents_of_different_categories_are_independent() {
        let mut s = TargetState::default();
        let t = run(&mut s, &[(Chat, Quota), (Models, Auth)]);
        assert_eq!(opened(&t), vec![Quota, Auth]);
        let t = run(&mut s, &[(Models, Ok), (Models, Ok)]);
        assert_eq!(resolved(&t), vec![Auth]);
        assert!(s.open.contains_key(&Quota));
    }

    #[test]
    fn only_probes_within_the_window_count_for_the_flapping_rule() {
        let c = cfg();
        let early = [(0, Outage), (1, Ok), (2, Ok), (3, Outage), (4, Ok)];
        let feed = |s: &mut TargetState, items: &[(i64, Category)]| -> Vec<Transition> {
            items
                .iter()
                .flat_map(|(min, category)| {
                    step(
                        s,
                        &c,
                        Verdict {
                            at_ms: min * 60_000,
                            kind: Models,
                            category: *category,
                        },
                    )
                })
                .collect()
        };
        // Two failures soon after: 4 of 7 probes in 10 minutes fail, the rule holds.
        let mut s = TargetState::default();
        assert!(feed(&mut s, &early).is_empty(), "2 of 5 is below the ratio");
        assert_eq!(
            opened(&feed(&mut s, &[(8, Outage), (9, Outage)])),
            vec![Outage]
        );
        // The same two failures 20 minutes later: the early probes have left the window.
        let mut s = TargetState::default();
        feed(&mut s, &early);
        assert!(feed(&mut s, &[(25, Outage), (26, Outage)]).is_empty());
        assert_eq!(s.window.len(), 2);
    }

    #[test]
    fn the_state_but_the_window_survives_a_round_trip_through_json() {
        let mut s = TargetState::default();
        run(&mut s, &[(Chat, Quota), (Models, Outage), (Models, Outage)]);
        let json = serde_json::to_string(&s).unwrap();
        let back: TargetState = serde_json::from_str(&json).unwrap();
        assert_eq!(back.run, s.run);
        assert_eq!(back.open, s.open);
        assert!(
            back.window.is_empty(),
            "the window is rebuilt from the probes table"
        );
    }
}
