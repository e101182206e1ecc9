//! The `run` command: opens the store, starts the scheduler and the recorder, and stops them
//! in order when the shutdown future completes.

use crate::config::{Config, Detection};
use crate::detect::{TargetState, Transition};
use crate::notify::{self, Notifier};
use crate::probe::{Observation, Prober};
use crate::scheduler;
use crate::store::{Routing, Store};
use anyhow::Context as _;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Observations waiting for the recorder; the scheduler waits when this is full.
const QUEUE: usize = 1024;
/// Most rows written in one transaction.
const MAX_BATCH: usize = 512;
/// Rows kept in memory while the database cannot be written; the oldest are dropped beyond.
const MAX_PENDING: usize = 10_000;

/// Runs the daemon until `shutdown` completes. `config` must have its secrets resolved.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let store = Store::open(&config.storage.path).await.with_context(|| {
        format!(
            "cannot start with the database {}",
            config.storage.path.display()
        )
    })?;
    let prober = Arc::new(Prober::new(config.secrets()).context("cannot build the HTTP client")?);
    let location = config.location();
    let targets = Arc::new(config.targets.clone());
    let probe_count: usize = targets.iter().map(|t| t.probes.len()).sum();
    tracing::info!(targets = targets.len(), probes = probe_count, %location, db = %config.storage.path.display(), "openai-watch started");
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }

    let notifier =
        Notifier::new(&config, store.clone()).context("cannot set up the alert channels")?;
    let recorder = Recorder {
        store: store.clone(),
        location,
        states: store.load_detector_states().await?,
        detection: config.detection.clone(),
        routing: notify::routing(&config),
        wake: notifier.wake.clone(),
        pending: Vec::new(),
        failing: false,
    };

    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (tx, rx) = mpsc::channel(QUEUE);
    tracker.spawn(recorder.run(rx));
    tracker.spawn(scheduler::run(targets, prober, tx, cancel.clone()));
    tracker.spawn(notifier.run(cancel.clone()));
    tracker.close();

    shutdown.await;
    tracing::info!("stopping: no new probes; writing what was observed");
    cancel.cancel();
    tracker.wait().await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Writes observations in batches, advancing the detector and writing the alert events in the
/// same transaction. When the database cannot be written, rows wait in memory (up to
/// `MAX_PENDING`) and are written when it can be again; probing never waits for it.
struct Recorder {
    store: Store,
    location: String,
    states: HashMap<String, TargetState>,
    detection: Detection,
    routing: Routing,
    wake: std::sync::Arc<tokio::sync::Notify>,
    pending: Vec<Observation>,
    failing: bool,
}

impl Recorder {
    async fn run(mut self, mut rx: mpsc::Receiver<Observation>) {
        while let Some(first) = rx.recv().await {
            log_outcome(&first);
            self.pending.push(first);
            for _ in 1..MAX_BATCH {
                match rx.try_recv() {
                    Ok(o) => {
                        log_outcome(&o);
                        self.pending.push(o);
                    }
                    Err(_) => break,
                }
            }
            self.flush().await;
        }
        self.flush().await;
    }

    async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        match self
            .store
            .record(
                &self.location,
                &self.pending,
                &mut self.states,
                &self.detection,
                &self.routing,
            )
            .await
        {
            Ok(recorded) => {
                if self.failing {
                    tracing::info!(
                        rows = self.pending.len(),
                        "database writable again; pending probes written"
                    );
                }
                self.failing = false;
                self.pending.clear();
                for (target, change, id) in &recorded.changes {
                    match change {
                        Transition::Opened {
                            category,
                            probe_count,
                            ..
                        } => {
                            tracing::warn!(%target, %category, incident = id, probes = probe_count, "incident opened");
                        }
                        Transition::Resolved { category } => {
                            tracing::info!(%target, %category, incident = id, "incident resolved")
                        }
                        Transition::Seen { .. } => {}
                    }
                }
                if recorded.events > 0 {
                    self.wake.notify_one();
                }
            }
            Err(e) => {
                if !self.failing {
                    tracing::error!(error = %e, "cannot write probes to the database; keeping them in memory");
                }
                self.failing = true;
                if self.pending.len() > MAX_PENDING {
                    let drop = self.pending.len() - MAX_PENDING;
                    self.pending.drain(..drop);
                    tracing::warn!(
                        dropped = drop,
                        "database still not writable; oldest unwritten probes dropped"
                    );
                }
            }
        }
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
