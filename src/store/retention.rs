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

    /// Deletes a batch of rollups of hours before `cutoff_ms` of each target, each batch its
    /// own transaction; returns how many went. The rollups have no index by hour (it would
    /// be a third of the database): each target's old hours are the start of its range of
    /// the primary key, and the targets are found by stepping down that key, one step each.
    pub async fn prune_rollups_batch(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        let targets: Vec<(String,)> = on!(self.pool, c => sqlx::query_as(
            "with recursive t(name) as (\
               select min(target) from rollups \
               union all \
               select (select min(target) from rollups where target > t.name) from t where t.name is not null\
             ) select name from t where name is not null",
        )
        .fetch_all(c).await)?;
        let mut done = 0;
        for (target,) in targets {
            done += on!(self.pool, c => sqlx::query(
                "delete from rollups where (target, hour_ms, probe, category) in \
                 (select target, hour_ms, probe, category from rollups \
                  where target = $1 and hour_ms < $2 order by hour_ms limit $3)",
            )
            .bind(&target)
            .bind(cutoff_ms)
            .bind(PRUNE_BATCH)
            .execute(c).await.map(|r| r.rows_affected()))?;
        }
        Ok(done)
    }

    /// Deletes a batch of incidents resolved before `cutoff_ms` (`rollup_retention`: the
    /// history they belong to is gone by then), with their locations, events and deliveries,
    /// in one transaction; returns how many incidents went.
    pub async fn prune_incidents_batch(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        const BATCH: i64 = 200;
        let mut tx = self.write_tx().await?;
        let ids: Vec<i64> = on!(tx, c => sqlx::query_scalar(
            "select id from incidents where resolved_at_ms < $1 order by resolved_at_ms limit $2",
        )
        .bind(cutoff_ms)
        .bind(BATCH)
        .fetch_all(c).await)?;
        for id in &ids {
            for sql in [
                "delete from alert_deliveries where event_id in (select id from alert_events where incident_id = $1)",
                "delete from alert_events where incident_id = $1",
                "delete from incident_locations where incident_id = $1",
                "delete from incidents where id = $1",
            ] {
                on!(tx, c => sqlx::query(sql).bind(id).execute(c).await.map(|r| r.rows_affected()))?;
            }
        }
        self.commit(tx).await?;
        Ok(ids.len() as u64)
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
