//! The maintenance loop of `run`: prunes raw probes and rollups past their retention in small
//! batches, and now and then asks SQLite to refresh its statistics. Never VACUUMs: freed pages
//! are reused.

use crate::config::Config;
use crate::store::Store;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often retention runs; the first pass comes shortly after start.
const MAINTENANCE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
const FIRST_MAINTENANCE: std::time::Duration = std::time::Duration::from_secs(2);
/// How often `PRAGMA optimize` runs.
const OPTIMIZE_EVERY: std::time::Duration = std::time::Duration::from_secs(6 * 3600);
/// Pause between two delete batches, leaving the write lock to the recorder.
const BATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Prunes raw probes and rollups past their retention, in small batches; now and then asks
/// SQLite to refresh its statistics. Never VACUUMs: freed pages are reused.
pub async fn run(
    store: Store,
    config: watch::Receiver<Arc<Config>>,
    leadership: Arc<super::fleet::Leadership>,
    cancel: CancellationToken,
) {
    let mut next_optimize = tokio::time::Instant::now() + OPTIMIZE_EVERY;
    let mut wait = FIRST_MAINTENANCE;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = MAINTENANCE_EVERY;
        if !leadership.is_leader() {
            // Another agent of the fleet prunes the shared database.
            continue;
        }
        let storage = config.borrow().storage.clone();
        let now = crate::clock::now_ms();
        let raw_cutoff = now.saturating_sub(crate::clock::millis(storage.raw_retention.0));
        let rollup_cutoff = now.saturating_sub(crate::clock::millis(storage.rollup_retention.0));
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
        let mut incidents = 0;
        while !cancel.is_cancelled() {
            match store.prune_incidents_batch(rollup_cutoff).await {
                Ok(0) => break,
                Ok(n) => incidents += n,
                Err(e) => {
                    tracing::warn!(error = %e, "pruning old incidents failed; will retry");
                    break;
                }
            }
            tokio::time::sleep(BATCH_PAUSE).await;
        }
        if pruned != (0, 0) || incidents > 0 {
            tracing::info!(
                probes = pruned.0,
                rollups = pruned.1,
                incidents,
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
