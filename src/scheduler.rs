//! The probe scheduler: one task that keeps every (target, probe) slot's next due time in a
//! heap, starts due probes under a concurrency bound, and hands observations to the recorder.
//! No task per target: memory stays flat as targets grow.
//!
//! Probes start in waves: first starts are spread over the interval in whole seconds, and a
//! slot keeps its place on that grid, so the probes due in the same second start together.
//! Their answers then arrive together and are written in one transaction, and the daemon
//! wakes once for them instead of once each: at 10 targets every second, one wave a second.
//! The scheduler tells the recorder when a wave has been handed over whole ([`Outstanding`]),
//! so that the wave is written then, not after a timer.
//!
//! Pacing is the loop's own bookkeeping, not a timer or a semaphore per probe: a timer that
//! ends before the next wave wakes the runtime's driver when it is set, and at one wave a
//! second ten such wake-ups cost more than the probes' own work.

use crate::config::{ProbeKind, Target};
use crate::health::Health;
use crate::probe::{Observation, Prober};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Probes in flight at once, across all targets.
pub const MAX_IN_FLIGHT: usize = 64;
/// Probes of a wave started at once. A probe gives its place back when it ends or once it
/// has been on its way for `PACE_HOLD`: against a fast API a wave of 100 probes runs 16 at a
/// time over 16 connections (not 64 connections and 64 buffers for a millisecond each),
/// while slow answers still get up to `MAX_IN_FLIGHT` going at once.
pub const PACE: usize = 16;
/// How long a probe holds its place in the wave's pace.
const PACE_HOLD: Duration = Duration::from_millis(250);
/// Start times are spread over the interval, but never more than this, so that a 15-minute
/// probe still reports soon after start.
const MAX_INITIAL_SPREAD: Duration = Duration::from_secs(60);
/// The grid of start times: probes due within the same step start together.
pub const WAVE: Duration = Duration::from_secs(1);

/// A time far enough to mean "not again in this run", small enough to add to any instant.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 86_400);

/// When the next probe of a slot is due, counted from when this one was due (a probe that
/// waited for a free place in flight does not shift the slot off its wave). A probe never
/// overlaps the previous one of its slot, and when the answer asked for a pause
/// (`retry-after`), the next probe waits at least that long after the answer: the monitor
/// must never be the cause of a rate limit.
pub fn next_due(
    due: Instant,
    finished: Instant,
    interval: Duration,
    retry_after: Option<Duration>,
) -> Instant {
    // Far-future times saturate instead of overflowing: whatever the config says, the
    // scheduler never panics.
    let later = |t: Instant, d: Duration| {
        t.checked_add(d)
            .or_else(|| t.checked_add(FAR_FUTURE))
            .unwrap_or(t)
    };
    let regular = later(due, interval).max(finished);
    match retry_after {
        Some(wait) => regular.max(later(finished, wait)),
        None => regular,
    }
}

/// The first wave at or after `at`, on the grid of `WAVE` steps from `origin`.
pub fn on_wave(origin: Instant, at: Instant) -> Instant {
    let step = WAVE.as_nanos();
    let since = at.saturating_duration_since(origin).as_nanos();
    let waves = since.div_ceil(step);
    let offset = u64::try_from(waves.saturating_mul(step)).unwrap_or(u64::MAX);
    origin
        .checked_add(Duration::from_nanos(offset))
        .unwrap_or(at)
        .max(at)
}

/// First start of a slot: spread over `min(interval, 60s)` by `fraction` in [0, 1), in whole
/// `WAVE` steps (an interval shorter than a step starts at once).
pub fn initial_delay(interval: Duration, fraction: f64) -> Duration {
    let spread = interval.min(MAX_INITIAL_SPREAD);
    let waves = (spread.as_nanos() / WAVE.as_nanos()).max(1);
    let wave = (fraction.clamp(0.0, 1.0) * waves as f64).floor() as u32;
    WAVE * wave.min(u32::try_from(waves - 1).unwrap_or(u32::MAX))
}

/// Pauses the API asked for, by target and probe kind: until when (Unix ms) no probe may be
/// sent. Shared by every scheduler of a daemon's life, so that a reload keeps them; the
/// store keeps them across restarts.
#[derive(Debug, Default)]
pub struct Holds(Mutex<HashMap<(String, ProbeKind), i64>>);

impl Holds {
    pub fn new(held: impl IntoIterator<Item = ((String, ProbeKind), i64)>) -> Holds {
        Holds(Mutex::new(held.into_iter().collect()))
    }

    /// Until when `kind` of `target` is held, if it is.
    pub fn until(&self, target: &str, kind: ProbeKind) -> Option<i64> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(target.to_string(), kind))
            .copied()
    }

    pub fn hold(&self, target: &str, kind: ProbeKind, until_ms: i64) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let at = map.entry((target.to_string(), kind)).or_insert(until_ms);
        *at = (*at).max(until_ms);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Slot {
    target: usize,
    probe: usize,
}

/// Whether the scheduler owes the recorder observations of the current wave: probes in
/// flight, or due and not yet started. Set before each observation is handed over, so that
/// the recorder, having taken every queued observation, knows whether more of the same wave
/// are coming.
#[derive(Debug, Default)]
pub struct Outstanding(AtomicBool);

impl Outstanding {
    /// Whether more observations of the current wave are on their way.
    pub fn more_coming(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self, more: bool) {
        self.0.store(more, Ordering::Release);
    }
}

/// The probes of a wave that hold a place in its pace: started less than `PACE_HOLD` ago
/// and not yet answered, oldest first.
#[derive(Debug, Default)]
struct Pace(VecDeque<(Instant, Slot)>);

impl Pace {
    /// Forgets the places held for `PACE_HOLD` already.
    fn expire(&mut self, now: Instant) {
        while self.0.front().is_some_and(|(at, _)| now >= *at + PACE_HOLD) {
            self.0.pop_front();
        }
    }

    fn full(&self) -> bool {
        self.0.len() >= PACE
    }

    /// When the oldest place is given back at the latest.
    fn next_free(&self) -> Option<Instant> {
        self.0.front().map(|(at, _)| *at + PACE_HOLD)
    }

    fn take(&mut self, at: Instant, slot: Slot) {
        self.0.push_back((at, slot));
    }

    fn give_back(&mut self, slot: Slot) {
        if let Some(i) = self.0.iter().position(|(_, s)| *s == slot) {
            self.0.remove(i);
        }
    }
}

/// Runs until `cancel` fires; in-flight probes are then abandoned (they have recorded nothing).
pub async fn run(
    targets: Arc<Vec<Target>>,
    prober: Arc<Prober>,
    out: mpsc::Sender<Observation>,
    health: Arc<Health>,
    holds: Arc<Holds>,
    outstanding: Arc<Outstanding>,
    cancel: CancellationToken,
) {
    let now = Instant::now();
    let now_ms = crate::clock::now_ms();
    let mut due: BinaryHeap<Reverse<(Instant, Slot)>> = BinaryHeap::new();
    for (ti, t) in targets.iter().enumerate() {
        for (pi, p) in t.probes.iter().enumerate() {
            let mut start = now + initial_delay(p.interval(), fastrand::f64());
            if let Some(until) = holds.until(t.name.as_str(), p.kind) {
                let left = Duration::from_millis(u64::try_from(until - now_ms).unwrap_or(0));
                start = on_wave(now, start.max(now.checked_add(left).unwrap_or(start)));
            }
            due.push(Reverse((
                start,
                Slot {
                    target: ti,
                    probe: pi,
                },
            )));
        }
    }
    let mut pace = Pace::default();
    let mut in_flight: JoinSet<(Slot, Instant, Observation)> = JoinSet::new();
    let origin = now;
    // The loop also turns on this tick, so that its heartbeat shows it is alive even when
    // every probe is minutes away (`/healthz` and the systemd watchdog read it).
    let mut tick = tokio::time::interval(health.beat_every());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // One timer, moved to the next start, rather than a new one each turn.
    let wake = tokio::time::sleep_until(now);
    tokio::pin!(wake);
    loop {
        health.beat(crate::clock::unix_ms(std::time::SystemTime::now()));
        let now = Instant::now();
        pace.expire(now);
        // The next start: the next due slot, once there is a place for it.
        let next = if in_flight.len() >= MAX_IN_FLIGHT {
            None
        } else if pace.full() {
            pace.next_free()
        } else {
            due.peek().map(|Reverse((at, _))| *at)
        };
        if let Some(at) = next
            && at != wake.deadline()
        {
            wake.as_mut().reset(at);
        }
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            _ = tick.tick() => {}
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                let Ok((slot, was_due, obs)) = done else { continue };
                pace.give_back(slot);
                let probe = &targets[slot.target].probes[slot.probe];
                let regular = was_due.checked_add(probe.interval());
                let mut at = next_due(was_due, Instant::now(), probe.interval(), obs.retry_after);
                if Some(at) != regular {
                    // Off its wave after a pause or a slow answer: back onto the next one.
                    at = on_wave(origin, at);
                }
                if let Some(wait) = obs.retry_after {
                    holds.hold(
                        obs.target.as_str(),
                        obs.kind,
                        crate::clock::now_ms().saturating_add(crate::clock::millis(wait)),
                    );
                    tracing::info!(target = %obs.target, probe = %obs.kind, wait = %humantime::format_duration(wait), "upstream asked to wait; next probe delayed");
                }
                due.push(Reverse((at, slot)));
                let now = Instant::now();
                outstanding.set(
                    !in_flight.is_empty() || due.peek().is_some_and(|Reverse((at, _))| *at <= now),
                );
                if out.send(obs).await.is_err() {
                    break;
                }
            }
            () = &mut wake, if next.is_some() => {
                let now = Instant::now();
                pace.expire(now);
                let startable = in_flight.len() < MAX_IN_FLIGHT && !pace.full();
                let Some(Reverse((was_due, slot))) = due.peek().copied() else { continue };
                if !startable || was_due > now {
                    continue;
                }
                due.pop();
                pace.take(now, slot);
                outstanding.set(true);
                let targets = targets.clone();
                let prober = prober.clone();
                in_flight.spawn(async move {
                    let target = &targets[slot.target];
                    let probe = &target.probes[slot.probe];
                    (slot, was_due, prober.probe(target, probe).await)
                });
            }
        }
    }
    in_flight.abort_all();
    outstanding.set(false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_probe_follows_the_interval_when_nothing_asks_for_a_pause() {
        let t0 = Instant::now();
        let done = t0 + Duration::from_millis(200);
        assert_eq!(
            next_due(t0, done, Duration::from_secs(60), None),
            t0 + Duration::from_secs(60)
        );
    }

    #[test]
    fn retry_after_delays_the_next_probe_beyond_the_interval() {
        let t0 = Instant::now();
        let done = t0 + Duration::from_millis(100);
        let at = next_due(
            t0,
            done,
            Duration::from_secs(1),
            Some(Duration::from_secs(20)),
        );
        assert_eq!(at, done + Duration::from_secs(20));
        // A pause shorter than the interval changes nothing.
        let at = next_due(
            t0,
            done,
            Duration::from_secs(60),
            Some(Duration::from_secs(5)),
        );
        assert_eq!(at, t0 + Duration::from_secs(60));
    }

    #[test]
    fn a_slow_probe_is_never_overlapped_by_the_next() {
        let t0 = Instant::now();
        let done = t0 + Duration::from_secs(90);
        assert_eq!(next_due(t0, done, Duration::from_secs(60), None), done);
    }

    #[test]
    fn start_times_spread_over_at_most_a_minute_in_whole_waves() {
        assert_eq!(
            initial_delay(Duration::from_secs(900), 0.5),
            Duration::from_secs(30)
        );
        assert_eq!(
            initial_delay(Duration::from_secs(10), 0.55),
            Duration::from_secs(5)
        );
        assert_eq!(
            initial_delay(Duration::from_secs(10), 0.999),
            Duration::from_secs(9)
        );
        assert_eq!(
            initial_delay(Duration::from_secs(10), 1.0),
            Duration::from_secs(9)
        );
        // Every probe of a second-long interval is in the same wave.
        for f in [0.0, 0.3, 0.999] {
            assert_eq!(initial_delay(Duration::from_secs(1), f), Duration::ZERO);
            assert_eq!(initial_delay(Duration::from_millis(300), f), Duration::ZERO);
        }
    }

    #[test]
    fn a_start_off_its_wave_moves_to_the_next_one_never_earlier() {
        let origin = Instant::now();
        assert_eq!(on_wave(origin, origin), origin);
        assert_eq!(
            on_wave(origin, origin + Duration::from_millis(1)),
            origin + WAVE
        );
        assert_eq!(on_wave(origin, origin + WAVE * 3), origin + WAVE * 3);
        assert_eq!(
            on_wave(origin, origin + WAVE * 3 + Duration::from_millis(400)),
            origin + WAVE * 4
        );
    }

    #[test]
    fn a_place_in_the_pace_is_given_back_when_the_probe_ends_or_after_the_hold() {
        let t0 = Instant::now();
        let slot = |target| Slot { target, probe: 0 };
        let mut pace = Pace::default();
        for i in 0..PACE {
            pace.take(t0 + Duration::from_millis(i as u64), slot(i));
        }
        assert!(pace.full());
        assert_eq!(pace.next_free(), Some(t0 + PACE_HOLD));
        // An answer gives its place back at once.
        pace.give_back(slot(3));
        assert!(!pace.full());
        pace.take(t0 + Duration::from_millis(20), slot(100));
        assert!(pace.full());
        // A slow one holds it for PACE_HOLD at the most: then the oldest places are free.
        pace.expire(t0 + PACE_HOLD - Duration::from_millis(1));
        assert!(pace.full());
        pace.expire(t0 + PACE_HOLD + Duration::from_millis(1));
        assert_eq!(pace.0.len(), PACE - 2);
        assert_eq!(
            pace.next_free(),
            Some(t0 + Duration::from_millis(2) + PACE_HOLD)
        );
    }

    #[test]
    fn a_probe_that_waited_for_a_place_in_flight_keeps_its_slot_on_the_wave() {
        let due = Instant::now();
        let done = due + Duration::from_millis(700);
        assert_eq!(
            next_due(due, done, Duration::from_secs(1), None),
            due + Duration::from_secs(1)
        );
    }
}
