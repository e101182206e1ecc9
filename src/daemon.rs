//! The `run` command: opens the store, starts the scheduler, the recorder, the notifier and
//! the web server, reloads the config on request, and stops them in order on shutdown.

use crate::config::{Config, Detection};
use crate::detect::{TargetState, Transition};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::notify::{self, Notifier};
use crate::probe::{Observation, Prober};
use crate::scheduler;
use crate::store::{Routing, Store};
use crate::systemd;
use crate::web;
use anyhow::Context as _;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Observations waiting for the recorder; the scheduler waits when this is full.
const QUEUE: usize = 1024;
/// How long the recorder gathers observations into one transaction (alert latency budget
/// is 250 ms from the failing answer to the email).
const GATHER: std::time::Duration = std::time::Duration::from_millis(50);
/// Most rows written in one transaction.
const MAX_BATCH: usize = 512;
/// Rows kept in memory while the database cannot be written; the oldest are dropped beyond.
const MAX_PENDING: usize = 10_000;

/// Runs the daemon until `shutdown` completes. `config` must have its secrets resolved.
/// Every message on `reload` re-reads the config file; a bad one is refused and the running
/// config kept. `listener`, when given, replaces binding `[dashboard] listen` (tests use it).
pub async fn run(
    config: Config,
    listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
    mut reload: mpsc::Receiver<()>,
) -> anyhow::Result<()> {
    let store = Store::open(&config.storage.path).await.with_context(|| {
        format!(
            "cannot start with the database {}",
            config.storage.path.display()
        )
    })?;
    let listener = match listener {
        Some(l) => l,
        None => TcpListener::bind(config.dashboard.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} ([dashboard] listen)",
                    config.dashboard.listen
                )
            })?,
    };
    let addr = listener.local_addr()?;
    let location = config.location();
    tracing::info!(targets = config.targets.len(), %location, db = %config.storage.path.display(), "openai-watch started");
    tracing::info!("dashboard listening on http://{addr}");
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }

    let health = Arc::new(Health::new());
    let metrics = Arc::new(Metrics::new());
    let (config_tx, config_rx) = watch::channel(Arc::new(config));
    let config = config_rx.borrow().clone();
    let notifier = Notifier::new(&config, store.clone(), metrics.clone())
        .context("cannot set up the alert channels")?;
    let recorder = Recorder {
        store: store.clone(),
        location,
        states: store
            .load_detector_states(
                notify::now_ms(),
                i64::try_from(config.detection.window.0.as_millis()).unwrap_or(i64::MAX),
            )
            .await?,
        config: config_rx.clone(),
        detection: config.detection.clone(),
        routing: notify::routing(&config),
        wake: notifier.wake.clone(),
        health: health.clone(),
        metrics: metrics.clone(),
        pending: Vec::new(),
        failing: false,
    };
    let app = web::router(Arc::new(web::AppState::new(
        store.clone(),
        config_rx.clone(),
        metrics.clone(),
        health.clone(),
    )));

    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (tx, rx) = mpsc::channel(QUEUE);
    tracker.spawn(recorder.run(rx));
    tracker.spawn(notifier.run(config_rx.clone(), cancel.clone()));
    tracker.spawn(maintain(store.clone(), config_rx.clone(), cancel.clone()));
    let web_cancel = cancel.clone();
    tracker.spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(web_cancel.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "dashboard server stopped");
        }
    });
    // Migrations ran and the listener is bound: ready, before the first watchdog ping.
    systemd::ready(&status_line(
        &config,
        store.open_incidents().await.map_or(0, |o| o.len()),
    ));
    let mut probing = Probing::start(&config, tx.clone(), health.clone(), &cancel)?;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(()) = reload.recv() => {
                let old = config_rx.borrow().clone();
                match reload_config(&old) {
                    Ok(new) => {
                        probing.stop().await;
                        probing = Probing::start(&new, tx.clone(), health.clone(), &cancel)?;
                        tracing::info!(targets = new.targets.len(), "config reloaded");
                        systemd::status(&status_line(&new, store.open_incidents().await.map_or(0, |o| o.len())));
                        let _ = config_tx.send(Arc::new(new));
                    }
                    Err(e) => tracing::error!("config reload refused, the running config stays: {e}"),
                }
            }
        }
    }
    systemd::stopping();
    tracing::info!("stopping: no new probes; writing what was observed");
    cancel.cancel();
    probing.stop().await;
    drop(tx);
    tracker.close();
    tracker.wait().await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// `STATUS=` for systemd: "3 targets, 1 open incident".
fn status_line(config: &Config, open: usize) -> String {
    let t = config.targets.len();
    format!(
        "{t} target{}, {open} open incident{}",
        if t == 1 { "" } else { "s" },
        if open == 1 { "" } else { "s" }
    )
}

fn reload_config(current: &Config) -> Result<Config, String> {
    let mut new = Config::load(&current.source).map_err(|e| e.to_string())?;
    new.resolve_secrets().map_err(|e| e.to_string())?;
    if new.storage.path != current.storage.path {
        return Err("[storage] path cannot change on reload; restart the daemon".into());
    }
    if new.dashboard.listen != current.dashboard.listen {
        tracing::warn!("[dashboard] listen changes only on restart");
    }
    Ok(new)
}

/// The scheduler of the current config; replaced as a whole on reload.
struct Probing {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Probing {
    fn start(
        config: &Config,
        tx: mpsc::Sender<Observation>,
        health: Arc<Health>,
        parent: &CancellationToken,
    ) -> anyhow::Result<Probing> {
        let prober =
            Arc::new(Prober::new(config.secrets()).context("cannot build the HTTP client")?);
        let cancel = parent.child_token();
        let targets = Arc::new(config.targets.clone());
        let task = tokio::spawn(scheduler::run(targets, prober, tx, health, cancel.clone()));
        Ok(Probing { cancel, task })
    }

    async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// Writes observations in batches, advancing the detector and writing the alert events in the
/// same transaction. When the database cannot be written, rows wait in memory (up to
/// `MAX_PENDING`) and are written when it can be again; probing never waits for it.
struct Recorder {
    store: Store,
    location: String,
    states: HashMap<String, TargetState>,
    config: watch::Receiver<Arc<Config>>,
    detection: Detection,
    routing: Routing,
    wake: Arc<tokio::sync::Notify>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    pending: Vec<Observation>,
    failing: bool,
}

impl Recorder {
    async fn run(mut self, mut rx: mpsc::Receiver<Observation>) {
        while let Some(first) = rx.recv().await {
            self.accept(first);
            // Gather what arrives in the next moments into the same transaction: one commit
            // for many probes instead of one each.
            let until = tokio::time::Instant::now() + GATHER;
            while self.pending.len() < MAX_BATCH {
                match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some(o)) => self.accept(o),
                    Ok(None) | Err(_) => break,
                }
            }
            self.flush().await;
        }
        self.flush().await;
    }

    fn accept(&mut self, o: Observation) {
        log_outcome(&o);
        self.metrics.observe(&o);
        self.pending.push(o);
    }

    async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        if self.config.has_changed().unwrap_or(false) {
            let config = self.config.borrow_and_update().clone();
            self.detection = config.detection.clone();
            self.routing = notify::routing(&config);
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
                self.health.db_written();
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
                if !recorded.changes.is_empty() {
                    let open = self.store.open_incidents().await.map_or(0, |o| o.len());
                    systemd::status(&status_line(&self.config.borrow(), open));
                }
            }
            Err(e) => {
                self.health.db_failed(e.to_string());
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

/// How often retention runs; the first pass comes shortly after start.
const MAINTENANCE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
const FIRST_MAINTENANCE: std::time::Duration = std::time::Duration::from_secs(2);
/// How often `PRAGMA optimize` runs.
const OPTIMIZE_EVERY: std::time::Duration = std::time::Duration::from_secs(6 * 3600);
/// Pause between two delete batches, leaving the write lock to the recorder.
const BATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Prunes raw probes and rollups past their retention, in small batches; now and then asks
/// SQLite to refresh its statistics. Never VACUUMs: freed pages are reused.
async fn maintain(store: Store, config: watch::Receiver<Arc<Config>>, cancel: CancellationToken) {
    let mut next_optimize = tokio::time::Instant::now() + OPTIMIZE_EVERY;
    let mut wait = FIRST_MAINTENANCE;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = MAINTENANCE_EVERY;
        let storage = config.borrow().storage.clone();
        let now = notify::now_ms();
        let raw_cutoff = now
            .saturating_sub(i64::try_from(storage.raw_retention.0.as_millis()).unwrap_or(i64::MAX));
        let rollup_cutoff = now.saturating_sub(
            i64::try_from(storage.rollup_retention.0.as_millis()).unwrap_or(i64::MAX),
        );
        let mut pruned = (0u64, 0u64);
        loop {
            if cancel.is_cancelled() {
                return;
            }
            let probes = store.prune_probes_batch(raw_cutoff).await;
            let rollups = store.prune_rollups_batch(rollup_cutoff).await;
            match (probes, rollups) {
                (Ok(p), Ok(r)) => {
                    pruned.0 += p;
                    pruned.1 += r;
                    if p < crate::store::PRUNE_BATCH as u64 && r < crate::store::PRUNE_BATCH as u64
                    {
                        break;
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "retention pass failed; will retry");
                    break;
                }
            }
            tokio::time::sleep(BATCH_PAUSE).await;
        }
        if pruned != (0, 0) {
            tracing::info!(
                probes = pruned.0,
                rollups = pruned.1,
                "pruned rows past retention"
            );
        }
        if tokio::time::Instant::now() >= next_optimize {
            next_optimize = tokio::time::Instant::now() + OPTIMIZE_EVERY;
            if let Err(e) = store.optimize().await {
                tracing::warn!(error = %e, "pragma optimize failed");
            }
        }
    }
}
