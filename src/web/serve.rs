//! The dashboard's HTTP server: an accept loop of its own, so that idle and slow clients
//! cannot take the daemon's file descriptors from the probes.
//!
//! - A connection that has not sent a complete request head within `HEADER_TIMEOUT` is
//!   closed; hyper arms the same timer while a keep-alive connection waits for its next
//!   request, so idle connections go too.
//! - At most `connection_cap` at once: beyond, a new connection is closed at once (refused,
//!   not queued), and probing keeps its descriptors.
//! - Accept errors (out of descriptors) are logged once a second at most, with a short pause
//!   instead of a busy loop.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a client has to send a request head, and how long an idle keep-alive connection
/// stays open.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Dashboard connections open at once, at most: a quarter of the descriptors the process may
/// open, between 16 and 256, so that the probes (64 in flight), the database and the
/// listeners always keep the rest.
pub fn connection_cap(nofile: u64) -> usize {
    usize::try_from(nofile / 4)
        .unwrap_or(usize::MAX)
        .clamp(16, 256)
}

/// Raises the soft limit of open descriptors to the hard one (what `LimitNOFILE=` sets) and
/// returns it.
pub fn raise_nofile_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX)
        .or_else(|_| rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft))
        .unwrap_or(1024)
}
/// How long connections in progress may finish once shutdown is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Serves `app` on `listener` until `cancel`, with at most `max_connections` at once.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    max_connections: usize,
    cancel: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(max_connections));
    let connections = TaskTracker::new();
    let mut last_warning: Option<tokio::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors (or another transient error): pause, do not spin.
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(error = %e, "dashboard cannot accept a connection");
                    last_warning = Some(tokio::time::Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                tracing::warn!(
                    limit = max_connections,
                    "dashboard connection limit reached; new connections are closed"
                );
                last_warning = Some(tokio::time::Instant::now());
            }
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let cancel = cancel.clone();
        connections.spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
                }
            }
        });
    }
    connections.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, connections.wait()).await;
}
