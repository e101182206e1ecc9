//! Retention (SPEC §8): raw probes older than `raw_retention` and rollups older than
//! `rollup_retention` are deleted in small batches, each its own short transaction, so that
//! pruning never holds the write lock long enough to stall probing.

use super::{Store, StoreError};

/// Rows deleted per transaction.
pub const PRUNE_BATCH: i64 = 2000;

impl Store {
    /// Deletes one batch of probes older than `cutoff_ms`; returns how many went.
    pub async fn prune_probes_batch(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        // The oldest rows by id are the oldest by time (rows are written in time order): one
        // batch looks at the first rows only, and never scans the table for old ones.
        let done = on!(self.pool, c => sqlx::query("delete from probes where id in (select id from probes order by id limit $2) and at_ms < $1")
            .bind(cutoff_ms)
            .bind(PRUNE_BATCH)
            .execute(c).await.map(|r| r.rows_affected()))?;
        Ok(done)
    }

    /// Deletes one batch of rollups of hours before `cutoff_ms`; returns how many went.
    pub async fn prune_rollups_batch(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        let done = on!(self.pool, c => sqlx::query(
            "delete from rollups where (target, hour_ms, probe, category) in \
             (select target, hour_ms, probe, category from rollups where hour_ms < $1 order by hour_ms limit $2)",
        )
        .bind(cutoff_ms)
        .bind(PRUNE_BATCH)
        .execute(c).await.map(|r| r.rows_affected()))?;
        Ok(done)
    }

    /// Lets SQLite refresh its query planner statistics where they are stale (cheap).
    pub async fn optimize(&self) -> Result<(), StoreError> {
        // PostgreSQL's autovacuum keeps its statistics itself.
        if let super::engine::Pool::Sqlite(pool) = &self.pool {
            sqlx::query("pragma optimize").execute(pool).await?;
        }
        Ok(())
    }

    /// How many raw probes there are (for tests and `status`).
    pub async fn probe_count(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = on!(self.pool, c => sqlx::query_as("select count(*) from probes")
            .fetch_one(c).await)?;
        Ok(n)
    }
}
