//! The recorder of `run`: writes observations in batches, advancing the detector and writing
//! the alert events in the same transaction. When the database cannot be written, rows wait
//! in memory (up to `MAX_PENDING`) and are written when it can be again; probing never waits
//! for it. On a new config it resolves the incidents of targets that are no longer watched.

use super::status_line;
use crate::config::{Config, Detection};
use crate::detect::{TargetState, Transition};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::notify;
use crate::probe::Observation;
use crate::scheduler::Outstanding;
use crate::store::{IncidentChange, Recorded, Routing, Store};
use crate::systemd;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{Notify, mpsc, watch};

/// How long the recorder gathers observations into one transaction at the most: a wave is
/// written as soon as the scheduler has handed it over whole, or after this long when some
/// of its probes are slow. A failing one that may open an incident is written at once with
/// whatever is already queued: the budget from a failing answer to the email is 60 ms. One
/// that an open incident already covers gathers like a healthy one (it can only be counted).
const GATHER: std::time::Duration = std::time::Duration::from_millis(50);
/// Most rows written in one transaction.
const MAX_BATCH: usize = 512;
/// Rows kept in memory while the database cannot be written; the oldest are dropped beyond.
const MAX_PENDING: usize = 10_000;

pub struct Recorder {
    store: Store,
    location: String,
    states: HashMap<String, TargetState>,
    config: watch::Receiver<Arc<Config>>,
    detection: Detection,
    routing: Routing,
    wake: Arc<Notify>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    /// Whether the scheduler has more observations of the current wave on their way.
    outstanding: Arc<Outstanding>,
    pending: Vec<Observation>,
    /// A pending observation may open an incident: write without gathering more.
    pending_failure: bool,
    failing: bool,
    /// Targets removed from the config whose incidents are still to be resolved (kept until
    /// the database takes the change).
    removed: Vec<String>,
}

impl Recorder {
    /// A recorder continuing from the detector states stored in the database.
    pub async fn new(
        store: Store,
        config: watch::Receiver<Arc<Config>>,
        wake: Arc<Notify>,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
        outstanding: Arc<Outstanding>,
    ) -> anyhow::Result<Recorder> {
        let current = config.borrow().clone();
        let states = store
            .load_detector_states(
                &current.location,
                &current
                    .targets
                    .iter()
                    .map(|t| t.name().as_str())
                    .collect::<Vec<_>>(),
                crate::clock::now_ms(),
                crate::clock::millis(current.detection.window.0),
            )
            .await?;
        let mut recorder = Recorder {
            store,
            location: current.location.clone(),
            states,
            config,
            detection: current.detection.clone(),
            routing: notify::routing(&current),
            wake,
            health,
            metrics,
            outstanding,
            pending: Vec::new(),
            pending_failure: false,
            failing: false,
            removed: Vec::new(),
        };
        // Targets removed while the daemon was stopped are no longer watched either.
        recorder.removed = recorder.unwatched_with_incidents(&current).await;
        Ok(recorder)
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<Observation>) {
        self.resolve_removed().await;
        loop {
            let first = tokio::select! {
                o = rx.recv() => match o {
                    Some(o) => o,
                    None => break,
                },
                Ok(()) = self.config.changed() => {
                    self.reconfigure().await;
                    continue;
                }
            };
            self.accept(first);
            // Gather the rest of the wave into the same transaction: one commit for many
            // probes instead of one each; but not while a failure waits.
            let until = tokio::time::Instant::now() + GATHER;
            loop {
                // Whatever is already queued goes into the same transaction.
                while self.pending.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(o) => self.accept(o),
                        Err(_) => break,
                    }
                }
                if self.pending.len() >= MAX_BATCH
                    || self.failure_pending()
                    || !self.outstanding.more_coming()
                {
                    break;
                }
                match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some(o)) => self.accept(o),
                    Ok(None) | Err(_) => break,
                }
            }
            self.flush(&mut rx).await;
        }
        self.flush(&mut rx).await;
        if !self.pending.is_empty() {
            tracing::warn!(
                rows = self.pending.len(),
                "probes not written at shutdown (the database could not be written); they are lost"
            );
        }
    }

    /// Takes over a new config: detection settings, routing, and the targets it dropped.
    async fn reconfigure(&mut self) {
        let config = self.config.borrow_and_update().clone();
        self.detection = config.detection.clone();
        self.routing = notify::routing(&config);
        for target in self.unwatched_with_incidents(&config).await {
            if !self.removed.contains(&target) {
                self.removed.push(target);
            }
        }
        self.resolve_removed().await;
    }

    /// Targets with open incidents or detector state that `config` no longer names.
    async fn unwatched_with_incidents(&self, config: &Config) -> Vec<String> {
        let watched = |t: &str| config.targets.iter().any(|c| c.name.as_str() == t);
        let mut out: Vec<String> = self
            .states
            .keys()
            .filter(|t| !watched(t))
            .cloned()
            .collect();
        match self.store.targets_with_open_incidents(&self.location).await {
            Ok(open) => out.extend(open.into_iter().filter(|t| !watched(t))),
            Err(e) => tracing::warn!(error = %e, "cannot list open incidents; will retry"),
        }
        out.sort();
        out.dedup();
        out
    }

    /// Resolves the open incidents of targets no longer in the config. What the database
    /// refuses now is tried again on the next batch.
    async fn resolve_removed(&mut self) {
        let now = crate::clock::now_ms();
        let mut left = Vec::new();
        for target in std::mem::take(&mut self.removed) {
            match self
                .store
                .resolve_removed_target(&self.location, &target, now, &self.routing)
                .await
            {
                Ok(recorded) => {
                    self.states.remove(&target);
                    for c in &recorded.changes {
                        tracing::info!(target = %c.target, incident = c.incident_id, "incident resolved: the target is no longer in the config");
                    }
                    self.after_write(&recorded).await;
                }
                Err(e) => {
                    tracing::warn!(%target, error = %e, "cannot resolve the incidents of a removed target; will retry");
                    left.push(target);
                }
            }
        }
        self.removed = left;
    }

    /// Whether a pending observation is a failure (it may open an incident).
    /// While the database refuses writes, failures gather like the rest.
    fn failure_pending(&self) -> bool {
        self.pending_failure && !self.failing
    }

    fn accept(&mut self, o: Observation) {
        if o.local_failure {
            // The monitor's own problem: shown by /healthz and the log, never as the API's.
            let reason = o.message.clone().unwrap_or_default();
            tracing::warn!(target = %o.target, probe = %o.kind, %reason, "probe not made: a problem of this machine, not of the API; not recorded");
            self.health
                .probe_failed_locally(crate::clock::now_ms(), reason);
            return;
        }
        log_outcome(&o);
        self.metrics.observe(&o);
        self.pending_failure |= self.may_open(&o);
        self.pending.push(o);
    }

    /// Whether `o` is a failure that no open incident of its target covers yet.
    fn may_open(&self, o: &Observation) -> bool {
        !o.entry.is_ok()
            && !self
                .states
                .get(o.target.as_str())
                .is_some_and(|s| s.open.contains_key(&o.entry.category))
    }

    /// Writes what is pending. While the write waits (a database that does not answer can
    /// hold it for seconds), what the scheduler sends is taken off the queue all the same, so
    /// that probing never waits for the database; beyond `MAX_PENDING` the oldest are dropped.
    async fn flush(&mut self, rx: &mut mpsc::Receiver<Observation>) {
        let mut arrived = std::collections::VecDeque::new();
        let mut lost = 0;
        {
            let write = self.write_pending();
            tokio::pin!(write);
            loop {
                tokio::select! {
                    () = &mut write => break,
                    Some(o) = rx.recv() => {
                        arrived.push_back(o);
                        if arrived.len() > MAX_PENDING {
                            arrived.pop_front();
                            lost += 1;
                        }
                    }
                }
            }
        }
        self.dropped(lost);
        for o in arrived {
            self.accept(o);
        }
        self.drop_oldest_beyond_cap();
        self.pending_failure = self.pending.iter().any(|o| self.may_open(o));
    }

    /// Keeps at most `MAX_PENDING` unwritten rows: the oldest go first, counted and logged.
    fn drop_oldest_beyond_cap(&mut self) {
        let drop = self.pending.len().saturating_sub(MAX_PENDING);
        self.pending.drain(..drop);
        self.dropped(drop);
    }

    /// Counts and logs unwritten probes dropped.
    fn dropped(&self, n: usize) {
        if n > 0 {
            self.metrics.probes_dropped(n);
            tracing::warn!(
                dropped = n,
                "database still not writable; oldest unwritten probes dropped"
            );
        }
    }

    async fn write_pending(&mut self) {
        if !self.removed.is_empty() {
            self.resolve_removed().await;
        }
        if self.pending.is_empty() {
            return;
        }
        self.health.write_began(crate::clock::now_ms());
        let written = self
            .store
            .record(
                &self.location,
                &self.pending,
                &mut self.states,
                &self.detection,
                &self.routing,
            )
            .await;
        self.health.write_ended();
        match written {
            Ok(recorded) => {
                if self.failing {
                    tracing::info!(
                        rows = self.pending.len(),
                        "database writable again; pending probes written"
                    );
                }
                self.failing = false;
                self.health.db_written();
                self.pending.clear();
                for c in &recorded.changes {
                    log_change(c);
                }
                self.after_write(&recorded).await;
            }
            Err(e) if !e.is_transient() => {
                tracing::warn!(error = %e, rows = self.pending.len(), "a batch was refused; writing its rows apart to find the one at fault");
                self.write_apart().await;
            }
            Err(e) => {
                self.health.db_failed(e.to_string());
                if !self.failing {
                    tracing::error!(error = %e, "cannot write probes to the database; keeping them in memory");
                }
                self.failing = true;
                self.drop_oldest_beyond_cap();
            }
        }
    }

    /// Writes the pending rows in ever smaller groups after the database refused them as a
    /// batch for a reason that will not pass (a constraint, say): every row that can be
    /// written is, the one at fault is logged and dropped, and the recorder never retries the
    /// same refusal forever. Stops at a transient error, keeping what is left pending.
    async fn write_apart(&mut self) {
        let mut groups = vec![std::mem::take(&mut self.pending)];
        while let Some(group) = groups.pop() {
            match self
                .store
                .record(
                    &self.location,
                    &group,
                    &mut self.states,
                    &self.detection,
                    &self.routing,
                )
                .await
            {
                Ok(recorded) => {
                    self.health.db_written();
                    for c in &recorded.changes {
                        log_change(c);
                    }
                    self.after_write(&recorded).await;
                }
                Err(e) if e.is_transient() => {
                    self.health.db_failed(e.to_string());
                    // Oldest first: this group, then the ones after it.
                    self.pending = group;
                    while let Some(later) = groups.pop() {
                        self.pending.extend(later);
                    }
                    self.failing = true;
                    return;
                }
                Err(e) if group.len() == 1 => {
                    let o = &group[0];
                    tracing::error!(target = %o.target, probe = %o.kind, error_id = o.entry.id, at_ms = o.at_ms, error = %e, "probe row refused by the database; dropped");
                }
                Err(_) => {
                    let mut first = group;
                    let second = first.split_off(first.len() / 2);
                    // A stack: the first half is written first, keeping the order.
                    groups.push(second);
                    groups.push(first);
                }
            }
        }
    }

    /// Wakes the notifier for new events and tells systemd the new count of open incidents.
    async fn after_write(&self, recorded: &Recorded) {
        if recorded.events > 0 {
            self.wake.notify_one();
        }
        if !recorded.changes.is_empty() {
            let open = self.store.count_open_incidents().await.unwrap_or(0);
            systemd::status(&status_line(&self.config.borrow(), open));
        }
    }
}

fn log_change(c: &IncidentChange) {
    match c.transition {
        Transition::Opened { category, .. } if c.joined => {
            tracing::info!(target = %c.target, %category, incident = c.incident_id, "open incident seen from this location too");
        }
        Transition::Opened {
            category,
            probe_count,
            ..
        } => {
            tracing::warn!(target = %c.target, %category, incident = c.incident_id, probes = probe_count, "incident opened");
        }
        Transition::Resolved { category } => {
            tracing::info!(target = %c.target, %category, incident = c.incident_id, "incident resolved")
        }
        Transition::Seen { .. } => {}
    }
}

fn log_outcome(o: &Observation) {
    if o.entry.is_ok() {
        tracing::debug!(target = %o.target, probe = %o.kind, latency_ms = o.latency_ms, "ok");
    } else {
        tracing::info!(
            target = %o.target,
            probe = %o.kind,
            category = %o.entry.category,
            error_id = o.entry.id,
            status = ?o.http_status,
            message = o.message.as_deref().unwrap_or(""),
            "probe failed"
        );
    }
}
