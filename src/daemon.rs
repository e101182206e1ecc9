//! The `run` command: opens the store, starts the scheduler and the recorder, and stops them
//! in order when the shutdown future completes.

use crate::config::Config;
use crate::probe::{Observation, Prober};
use crate::scheduler;
use crate::store::Store;
use anyhow::Context as _;
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

    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (tx, rx) = mpsc::channel(QUEUE);
    tracker.spawn(record(store.clone(), location, rx));
    tracker.spawn(scheduler::run(targets, prober, tx, cancel.clone()));
    tracker.close();

    shutdown.await;
    tracing::info!("stopping: no new probes; writing what was observed");
    cancel.cancel();
    tracker.wait().await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Writes observations in batches. When the database cannot be written, rows wait in memory
/// (up to `MAX_PENDING`) and are written when it can be again; probing never waits for it.
async fn record(store: Store, location: String, mut rx: mpsc::Receiver<Observation>) {
    let mut pending: Vec<Observation> = Vec::new();
    let mut failing = false;
    while let Some(first) = rx.recv().await {
        log_outcome(&first);
        pending.push(first);
        for _ in 1..MAX_BATCH {
            match rx.try_recv() {
                Ok(o) => {
                    log_outcome(&o);
                    pending.push(o);
                }
                Err(_) => break,
            }
        }
        flush(&store, &location, &mut pending, &mut failing).await;
    }
    flush(&store, &location, &mut pending, &mut failing).await;
}

async fn flush(store: &Store, location: &str, pending: &mut Vec<Observation>, failing: &mut bool) {
    if pending.is_empty() {
        return;
    }
    match store.insert_probes(location, pending).await {
        Ok(()) => {
            if *failing {
                tracing::info!(
                    rows = pending.len(),
                    "database writable again; pending probes written"
                );
            }
            *failing = false;
            pending.clear();
        }
        Err(e) => {
            if !*failing {
                tracing::error!(error = %e, "cannot write probes to the database; keeping them in memory");
            }
            *failing = true;
            if pending.len() > MAX_PENDING {
                let drop = pending.len() - MAX_PENDING;
                pending.drain(..drop);
                tracing::warn!(
                    dropped = drop,
                    "database still not writable; oldest unwritten probes dropped"
                );
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
