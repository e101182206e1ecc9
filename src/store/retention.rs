//! Retention (SPEC §8): raw probes older than `raw_retention` and rollups older than
//! `rollup_retention` are deleted in small batches, each its own short transaction, so that
//! pruning never holds the write lock long enough to stall probing.

use super::{Store, StoreError};

/// Rows deleted per transaction.
pub const PRUNE_BATCH: i64 = 2000;

impl Store {
    /// Deletes one batch of probes older than `cutoff_ms`; returns how many went.
    pub async fn prune_probes_batch(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("delete from probes where id in (select id from probes where at_ms < ? order by at_ms limit ?)")
            .bind(cutoff_ms)
            .bind(PRUNE_BATCH)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Deletes one batch of rollups of hours before `cutoff_ms`; returns how many went.
    pub async fn prune_rollups_batch(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "delete from rollups where (target, hour_ms, probe, category) in \
             (select target, hour_ms, probe, category from rollups where hour_ms < ? order by hour_ms limit ?)",
        )
        .bind(cutoff_ms)
        .bind(PRUNE_BATCH)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Lets SQLite refresh its query planner statistics where they are stale (cheap).
    pub async fn optimize(&self) -> Result<(), StoreError> {
        sqlx::query("pragma optimize").execute(&self.pool).await?;
        Ok(())
    }

    /// How many raw probes there are (for tests and `status`).
    pub async fn probe_count(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = sqlx::query_as("select count(*) from probes")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }
}
