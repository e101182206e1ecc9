//! The agent's part in a fleet (SPEC §14): its heartbeat in the database (and the `monitor`
//! incidents about agents that stopped writing theirs), the work one agent does for all
//! (retention, the status-page poller) under an advisory lock, and the optional dead-man's
//! switch `[agent] heartbeat_url`.

use crate::config::Config;
use crate::health::Health;
use crate::store::{AgentRow, Continuity, SessionLock, Store};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

/// The longest pause between two heartbeats.
const BEAT_AT_MOST_EVERY: Duration = Duration::from_secs(10);
/// How often the dead-man's switch is called.
const SWITCH_EVERY: Duration = Duration::from_secs(60);
/// How often an agent without the housekeeping lock tries to take it.
const LEADER_RETRY: Duration = Duration::from_secs(15);
/// How often the agent that holds it checks that it still does: after a database restart
/// its connection is gone and another agent may take the lock, so two agents lead for at
/// most this long.
const LEADER_CHECK: Duration = Duration::from_secs(2);

/// How often this agent writes its heartbeat: a third of the silence it allows, at most 10 s.
pub fn beat_every(silent_after: Duration) -> Duration {
    (silent_after / 3).clamp(Duration::from_millis(500), BEAT_AT_MOST_EVERY)
}

/// A clock this far off the database's is warned about: agents compare times by the
/// database's clock, but the probes' times are each agent's own.
const CLOCK_OFF_WARN_MS: i64 = 2_000;

/// Writes this agent's heartbeat while its scheduler is healthy, opening and resolving
/// `monitor` incidents; wakes the notifier when that wrote an alert. Holds `location_lock`
/// (the proof that no other live agent uses this location), taking it again when its
/// connection was lost.
pub async fn heartbeat(
    store: Store,
    config: watch::Receiver<Arc<Config>>,
    health: Arc<Health>,
    wake: Arc<Notify>,
    location_lock: SessionLock,
    cancel: CancellationToken,
) {
    let started_at_ms = crate::clock::now_ms();
    let client = switch_client();
    let mut last_switch: Option<tokio::time::Instant> = None;
    let mut continuity: Option<Continuity> = None;
    let mut clock_off = false;
    let mut location_lock = Some((config.borrow().location.clone(), location_lock));
    loop {
        let current = config.borrow().clone();
        let every = beat_every(current.silent_after);
        let now = crate::clock::now_ms();
        keep_location(&store, &current.location, &mut location_lock).await;
        // The first heartbeat goes out as the agent starts (its scheduler is starting with
        // it), so that its first alerts already say where they are seen from.
        if continuity.is_none() || health.scheduler_ok(now) {
            let me = AgentRow {
                location: current.location.clone(),
                seen_at_ms: now,
                silent_after_ms: crate::clock::millis(current.silent_after),
                started_at_ms,
                version: crate::cli::version().to_string(),
            };
            // Two beats missed, and a margin, make a gap.
            let max_gap_ms = 2 * crate::clock::millis(every) + 2_000;
            let seen = continuity.get_or_insert_with(|| Continuity::new(max_gap_ms));
            match store
                .heartbeat(&me, seen, &crate::notify::routing(&current))
                .await
            {
                Ok(beat) => {
                    health.db_written();
                    seen.beat(beat.at_ms);
                    let off = now.saturating_sub(beat.at_ms);
                    if (off.abs() > CLOCK_OFF_WARN_MS) != clock_off {
                        clock_off = !clock_off;
                        if clock_off {
                            tracing::warn!(
                                off_ms = off,
                                "this machine's clock is off the database's; agents compare times by the database's clock, but probe times are this machine's: run NTP (systemd-timesyncd, chrony)"
                            );
                        } else {
                            tracing::info!("this machine's clock agrees with the database's again");
                        }
                    }
                    for c in &beat.recorded.changes {
                        tracing::warn!(agent = %c.target, incident = c.incident_id, transition = ?c.transition, "monitor incident");
                    }
                    if beat.recorded.events > 0 {
                        wake.notify_one();
                    }
                }
                Err(e) => {
                    health.db_failed(format!("cannot write the heartbeat: {e}"));
                    tracing::warn!(error = %e, "cannot write the heartbeat; will retry");
                }
            }
            if let (Some(url), Some(client)) = (&current.heartbeat_url, &client)
                && last_switch.is_none_or(|t| t.elapsed() >= SWITCH_EVERY)
            {
                last_switch = Some(tokio::time::Instant::now());
                ping(client, url).await;
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Takes the location lock again when its connection was lost (a database restart) or the
/// location changed on reload.
async fn keep_location(store: &Store, location: &str, lock: &mut Option<(String, SessionLock)>) {
    if let Some((held, l)) = lock.as_mut()
        && held == location
        && l.alive().await
    {
        return;
    }
    if lock.take().is_some() {
        tracing::info!(%location, "taking the lock on this agent's location again");
    }
    match store.try_location_lock(location).await {
        Ok(Some(l)) => *lock = Some((location.to_string(), l)),
        Ok(None) => {
            tracing::error!(%location, "another live agent now uses this location: give each agent its own [agent] location")
        }
        Err(e) => tracing::warn!(error = %e, "cannot take the location lock; will retry"),
    }
}

fn switch_client() -> Option<reqwest::Client> {
    crate::tls::install_crypto_provider();
    reqwest::Client::builder()
        .user_agent(concat!("openai-watch/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(10))
        .build()
        .inspect_err(|e| tracing::error!(error = %e, "cannot build the heartbeat_url client"))
        .ok()
}

/// Calls the dead-man's switch; a failure is logged (the switch itself raises the alarm when
/// the calls stop).
async fn ping(client: &reqwest::Client, url: &reqwest::Url) {
    match client.get(url.clone()).send().await {
        Ok(answer) if answer.status().is_success() => {
            tracing::debug!(status = %answer.status(), "heartbeat_url called")
        }
        Ok(answer) => {
            tracing::warn!(status = %answer.status(), "heartbeat_url answered with an error")
        }
        Err(e) => tracing::warn!(error = %e.without_url(), "heartbeat_url not reached"),
    }
}

/// Whether this agent does the work one agent does for all: always on SQLite; on
/// PostgreSQL, while it holds the housekeeping advisory lock.
#[derive(Debug)]
pub struct Leadership {
    held: AtomicBool,
}

impl Leadership {
    /// A SQLite daemon leads from the start; an agent of a fleet once it has the lock.
    pub fn new(shared: bool) -> Leadership {
        Leadership {
            held: AtomicBool::new(!shared),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.held.load(Ordering::Relaxed)
    }
}

/// Takes the housekeeping lock when no agent holds it, and keeps it while its connection
/// lives; checks it every `LEADER_RETRY`.
pub async fn lead(store: Store, leadership: Arc<Leadership>, cancel: CancellationToken) {
    let mut lock: Option<SessionLock> = None;
    loop {
        let alive = match lock.as_mut() {
            Some(l) => l.alive().await,
            None => false,
        };
        if !alive {
            if lock.take().is_some() {
                tracing::warn!("lost the housekeeping lock (its connection ended)");
            }
            match store
                .try_session_lock(crate::store::HOUSEKEEPING_LOCK)
                .await
            {
                Ok(Some(l)) => {
                    if store.is_postgres() {
                        tracing::info!(
                            "this agent does retention and status-page polling for the fleet"
                        );
                    }
                    lock = Some(l);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take the housekeeping lock; will retry")
                }
            }
        }
        leadership.held.store(lock.is_some(), Ordering::Relaxed);
        // On SQLite the lock is this process's for good: nothing to check.
        let next = match &lock {
            Some(_) if !store.is_postgres() => Duration::from_secs(3600),
            Some(_) => LEADER_CHECK,
            None => LEADER_RETRY,
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(next) => {}
        }
    }
}
