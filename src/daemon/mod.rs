//! The `run` command: opens the store, starts the scheduler, the recorder, the notifier, the
//! maintenance loop and the web server, reloads the config on request, and stops them in
//! order on shutdown.

pub mod fleet;
pub mod maintenance;
pub mod recorder;

use crate::config::Config;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::notify::{self, Notifier};
use crate::probe::{Observation, Prober};
use crate::scheduler;
use crate::store::{Store, WriterLock};
use crate::systemd;
use crate::web;
use anyhow::Context as _;
use recorder::Recorder;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Observations waiting for the recorder; the scheduler waits when this is full.
const QUEUE: usize = 1024;

/// Runs the daemon until `shutdown` completes. Every message on `reload` re-reads the config
/// file; a config that cannot be read, or whose parts cannot be built, is refused and the
/// running one kept. `listener`, when given, replaces binding `[dashboard] listen` (tests use
/// it).
pub async fn run(
    config: Config,
    listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
    mut reload: mpsc::Receiver<()>,
) -> anyhow::Result<()> {
    // One writer per SQLite file, this daemon, for as long as it runs; `check` and `status`
    // work beside it. A PostgreSQL database is shared by the agents of a fleet.
    let writer = writer_lock(&config)?;
    // Most of the store's errors name the database; the others are told which one.
    let store = Store::connect(&config.database).await.map_err(|e| {
        if e.names_the_database() {
            anyhow::Error::new(e)
        } else {
            let described = config.database.describe();
            anyhow::Error::new(e).context(format!("cannot start with the database {described}"))
        }
    })?;
    // A second live agent under the same location would take over the first one's leases
    // and mask its death: refused, as a second writer of a SQLite file is.
    let location_lock = store
        .try_location_lock(&config.location)
        .await?
        .ok_or_else(|| crate::store::LockError::LocationTaken {
            location: config.location.clone(),
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
    tracing::info!(targets = config.targets.len(), location = %config.location, db = %config.database.describe(), "openai-watch started");
    tracing::info!("dashboard listening on http://{addr}");
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let prober = Prober::new(config.secrets()).context("cannot build the HTTP client")?;
    // Pauses asked for before a restart still hold; reloads share them too.
    let holds = Arc::new(scheduler::Holds::new(
        store.holds(crate::clock::now_ms()).await?,
    ));

    let health = Arc::new(Health::new());
    let metrics = Arc::new(Metrics::new());
    let (config_tx, config_rx) = watch::channel(Arc::new(config));
    let config = config_rx.borrow().clone();
    let notifier = Notifier::new(&config, store.clone(), metrics.clone())
        .context("cannot set up the alert channels")?;
    let outstanding = Arc::new(scheduler::Outstanding::default());
    let recorder = Recorder::new(
        store.clone(),
        config_rx.clone(),
        notifier.wake.clone(),
        health.clone(),
        metrics.clone(),
        outstanding.clone(),
    )
    .await?;
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
    let wake_notifier = notifier.wake.clone();
    tracker.spawn(notifier.run(config_rx.clone(), cancel.clone()));
    let leadership = Arc::new(fleet::Leadership::new(store.is_postgres()));
    tracker.spawn(crate::upstream::poll(
        store.clone(),
        config_rx.clone(),
        metrics.clone(),
        leadership.clone(),
        cancel.clone(),
    ));
    tracker.spawn(fleet::lead(
        store.clone(),
        leadership.clone(),
        cancel.clone(),
    ));
    tracker.spawn(fleet::heartbeat(
        store.clone(),
        config_rx.clone(),
        health.clone(),
        wake_notifier,
        location_lock,
        cancel.clone(),
    ));
    tracker.spawn(maintenance::run(
        store.clone(),
        config_rx.clone(),
        leadership.clone(),
        cancel.clone(),
    ));
    // Migrations ran and the listener is bound: ready, before the first watchdog ping.
    systemd::ready(&status_line(
        &config,
        store.count_open_incidents().await.unwrap_or(0),
    ));
    // Probing starts before the dashboard serves, so that `/healthz` never reports a
    // scheduler that was about to start.
    let probes = Wiring {
        tx: tx.clone(),
        health: health.clone(),
        holds: holds.clone(),
        outstanding,
    };
    let mut probing = Probing::start(&config, prober, &probes, &cancel);
    let web_cancel = cancel.clone();
    let nofile = web::serve::raise_nofile_limit();
    let max_connections = web::serve::connection_cap(nofile);
    tracing::info!(
        descriptors = nofile,
        dashboard_connections = max_connections,
        "descriptor limit"
    );
    tracker.spawn(web::serve::serve(
        listener,
        app,
        max_connections,
        web_cancel,
    ));
    // What only starting ran is handed back once started, and what no longer runs every
    // minute.
    tracker.spawn(crate::resident::run(cancel.clone()));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(()) = reload.recv() => {
                let old = config_rx.borrow().clone();
                match prepare_reload(&old) {
                    Ok((new, prober)) => {
                        probing.stop().await;
                        probing = Probing::start(&new, prober, &probes, &cancel);
                        tracing::info!(targets = new.targets.len(), "config reloaded");
                        systemd::status(&status_line(&new, store.count_open_incidents().await.unwrap_or(0)));
                        let _ = config_tx.send(Arc::new(new));
                    }
                    Err(e) => tracing::error!("config reload refused, the running config stays: {}", crate::error_chain::anyhow_chain(&e)),
                }
            }
        }
    }
    systemd::stopping();
    tracing::info!("stopping: no new probes; writing what was observed");
    cancel.cancel();
    probing.stop().await;
    drop(tx);
    drop(probes);
    tracker.close();
    tracker.wait().await;
    store.close().await;
    drop(writer);
    tracing::info!("stopped");
    Ok(())
}

/// `STATUS=` for systemd: "3 targets, 1 open incident".
fn status_line(config: &Config, open: i64) -> String {
    let t = config.targets.len();
    format!(
        "{t} target{}, {open} open incident{}",
        if t == 1 { "" } else { "s" },
        if open == 1 { "" } else { "s" }
    )
}

/// The SQLite file's writer lock (none for PostgreSQL); its directory is made if missing.
fn writer_lock(config: &Config) -> anyhow::Result<Option<WriterLock>> {
    let Some(path) = config.database.sqlite_path() else {
        return Ok(None);
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Best effort: a missing directory is reported with its path just below.
        let _ = std::fs::create_dir_all(dir);
    }
    Ok(Some(WriterLock::try_acquire(path)?))
}

/// Reads the config file again and builds what the new config needs (the HTTP client, the
/// alert channels) before anything is replaced: a reload either takes effect whole or not at
/// all.
fn prepare_reload(current: &Config) -> anyhow::Result<(Config, Prober)> {
    let new = Config::load(&current.source)?;
    if new.database.describe() != current.database.describe() {
        anyhow::bail!("[storage] cannot change on reload; restart the daemon");
    }
    if new.dashboard.listen != current.dashboard.listen {
        tracing::warn!("[dashboard] listen changes only on restart");
    }
    let prober = Prober::new(new.secrets()).context("cannot build the HTTP client")?;
    notify::channels(&new).context("cannot set up the alert channels")?;
    Ok((new, prober))
}

/// What every scheduler of the daemon's life shares with the rest of it.
struct Wiring {
    tx: mpsc::Sender<Observation>,
    health: Arc<Health>,
    holds: Arc<scheduler::Holds>,
    outstanding: Arc<scheduler::Outstanding>,
}

/// The scheduler of the current config; replaced as a whole on reload.
struct Probing {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Probing {
    fn start(
        config: &Config,
        prober: Prober,
        wiring: &Wiring,
        parent: &CancellationToken,
    ) -> Probing {
        let cancel = parent.child_token();
        let targets = Arc::new(config.targets.clone());
        let task = tokio::spawn(scheduler::run(
            targets,
            Arc::new(prober),
            wiring.tx.clone(),
            wiring.health.clone(),
            wiring.holds.clone(),
            wiring.outstanding.clone(),
            cancel.clone(),
        ));
        Probing { cancel, task }
    }

    async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}
