//! Unix signals: SIGINT/SIGTERM stop, SIGHUP reloads. Handlers are installed when these are
//! called, not when first polled, so that a signal during start-up is not lost.

use std::future::Future;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// Completes on SIGINT or SIGTERM.
pub fn shutdown() -> impl Future<Output = ()> {
    let int = signal(SignalKind::interrupt());
    let term = signal(SignalKind::terminate());
    async move {
        match (int, term) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {},
                    _ = term.recv() => {},
                }
            }
            _ => {
                tracing::error!("cannot install signal handlers; stop with SIGKILL");
                std::future::pending::<()>().await
            }
        }
    }
}

/// A message for every SIGHUP: reload the config.
pub fn reload() -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(1);
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    // A reload already queued covers this one too.
                    let _ = tx.try_send(());
                }
            });
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot install the SIGHUP handler; reload by restarting")
        }
    }
    rx
}
