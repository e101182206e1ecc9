//! The `probes` table: one row per probe.

use super::engine::{Pool, Tx};
use super::{Store, StoreError};
use crate::domain::{Category, ProbeKind, TransportErrorKind};
use crate::probe::Observation;
use serde::Serialize;

/// The columns of `ProbeRow`.
const PROBE_COLUMNS: &str = "id, at_ms, location, target, probe, latency_ms, http_status, transport_error, \
     category, error_id, message, request_id, ratelimit_remaining_requests, ratelimit_remaining_tokens, ttft_ms";

/// The latest probe of each target named in the list `$1` (a JSON array for SQLite's
/// `json_each`, an array for PostgreSQL's `unnest`), optionally from one location only (`$2`):
/// each target's latest row is one step down the `(target, at_ms)` index.
macro_rules! latest_probes_sql {
    ($list:literal, $filter:literal) => {
        concat!(
            "select p.id, p.at_ms, p.location, p.target, p.probe, p.latency_ms, p.http_status, \
             p.transport_error, p.category, p.error_id, p.message, p.request_id, \
             p.ratelimit_remaining_requests, p.ratelimit_remaining_tokens, p.ttft_ms from ",
            $list,
            " join probes p on p.id = (select id from probes where target = t.value",
            $filter,
            " order by at_ms desc, id desc limit 1)"
        )
    };
}
const LATEST_PROBES_SQL: &str = latest_probes_sql!("json_each($1) t", "");
const LATEST_PROBES_PG_SQL: &str = latest_probes_sql!("unnest($1::text[]) t(value)", "");
const LATEST_AT_SQL: &str = latest_probes_sql!("json_each($1) t", " and location = $2");
const LATEST_AT_PG_SQL: &str =
    latest_probes_sql!("unnest($1::text[]) t(value)", " and location = $2");

/// The larger of the stored and the new maximum (a null `used_max` is no reading), in SQL
/// both engines accept (SQLite's two-argument `max` is PostgreSQL's `greatest`).
macro_rules! rollup_maxima {
    () => {
        "latency_max_ms = case when excluded.latency_max_ms > rollups.latency_max_ms \
         then excluded.latency_max_ms else rollups.latency_max_ms end, \
         used_max = case when rollups.used_max is null or excluded.used_max > rollups.used_max \
         then excluded.used_max else rollups.used_max end"
    };
}

/// Adds `(target, rollup)` rows to the rollups, counts adding up with those already there.
/// The rows must differ in (target, probe, category, hour).
async fn add_rollups_on(tx: &mut Tx, rows: &[(&str, RollupRow)]) -> Result<(), StoreError> {
    for chunk in row_chunks(rows) {
        write_on!(tx, q = "insert into rollups (target, probe, category, hour_ms, count, latency_sum_ms, latency_max_ms, used_max) " => {
            q.push_values(chunk, |mut row, (target, r)| {
                row.push_bind(*target)
                    .push_bind(r.probe)
                    .push_bind(r.category)
                    .push_bind(r.hour_ms)
                    .push_bind(r.count)
                    .push_bind(r.latency_sum_ms)
                    .push_bind(r.latency_max_ms)
                    .push_bind(r.used_max);
            });
            q.push(concat!(
                " on conflict (target, hour_ms, probe, category) do update set \
                 count = rollups.count + excluded.count, \
                 latency_sum_ms = rollups.latency_sum_ms + excluded.latency_sum_ms, ",
                rollup_maxima!()
            ));
        })?;
    }
    Ok(())
}

/// Most rows in one multi-row statement.
const MAX_ROWS_PER_STATEMENT: usize = 32;

/// Up to this many rows go into one statement of exactly their number.
const EXACT_ROWS: usize = 16;

/// `items` in chunks for multi-row statements: up to `EXACT_ROWS` in one, else chunks of
/// `MAX_ROWS_PER_STATEMENT`, then of the powers of two the rest is made of. Some twenty
/// statement shapes serve every batch size, each prepared once and kept in the statement
/// cache; a wave of a few targets is one statement, not one per power of two.
pub(super) fn row_chunks<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = if rest.len() <= EXACT_ROWS {
            rest.len()
        } else {
            MAX_ROWS_PER_STATEMENT.min(1 << rest.len().ilog2())
        };
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    })
}

/// One hour in milliseconds: the rollup granularity.
pub const HOUR_MS: i64 = 3_600_000;

/// A stored probe, as the API and the commands read it back.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ProbeRow {
    pub id: i64,
    pub at_ms: i64,
    pub location: String,
    pub target: String,
    pub probe: ProbeKind,
    pub latency_ms: i64,
    pub http_status: Option<i64>,
    pub transport_error: Option<TransportErrorKind>,
    pub category: Category,
    pub error_id: String,
    pub message: Option<String>,
    pub request_id: Option<String>,
    pub ratelimit_remaining_requests: Option<i64>,
    pub ratelimit_remaining_tokens: Option<i64>,
    /// `chat_stream`: time to the first token.
    pub ttft_ms: Option<i64>,
}

impl Store {
    /// Inserts a batch of observations in one transaction.
    pub async fn insert_probes(
        &self,
        location: &str,
        batch: &[Observation],
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        Store::insert_probes_on(&mut tx, location, batch).await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// Inserts observations inside a caller's transaction, and adds them to their hourly
    /// rollups: a few multi-row statements per batch, not two per probe.
    pub(super) async fn insert_probes_on(
        tx: &mut Tx,
        location: &str,
        batch: &[Observation],
    ) -> Result<(), StoreError> {
        for chunk in row_chunks(batch) {
            write_on!(tx, q = "insert into probes (at_ms, location, target, probe, latency_ms, http_status, \
                     transport_error, category, error_id, message, request_id, \
                     ratelimit_limit_requests, ratelimit_limit_tokens, ratelimit_remaining_requests, \
                     ratelimit_remaining_tokens, ratelimit_reset_requests, ratelimit_reset_tokens, ttft_ms) " => {
                q.push_values(chunk, |mut row, o| {
                    row.push_bind(o.at_ms)
                        .push_bind(location)
                        .push_bind(o.target.as_str())
                        .push_bind(o.kind)
                        .push_bind(o.latency_ms)
                        .push_bind(o.http_status.map(i64::from))
                        .push_bind(o.transport_error)
                        .push_bind(o.entry.category)
                        .push_bind(o.entry.id)
                        .push_bind(o.message.as_deref())
                        // The request id of a failing answer is what a support ticket needs;
                        // that of a healthy one serves nobody, and would be a third of the row.
                        .push_bind(o.request_id.as_deref().filter(|_| !o.entry.is_ok()))
                        .push_bind(o.rate_limits.limit_requests)
                        .push_bind(o.rate_limits.limit_tokens)
                        .push_bind(o.rate_limits.remaining_requests)
                        .push_bind(o.rate_limits.remaining_tokens)
                        .push_bind(o.rate_limits.reset_requests.as_deref())
                        .push_bind(o.rate_limits.reset_tokens.as_deref())
                        .push_bind(o.ttft_ms);
                });
            })?;
        }
        // One row per (target, probe kind, category, hour) of the batch: a statement may not
        // update the same row twice (PostgreSQL refuses it).
        let mut hours: std::collections::BTreeMap<(&str, ProbeKind, Category, i64), RollupRow> =
            std::collections::BTreeMap::new();
        for o in batch {
            let hour_ms = o.at_ms - o.at_ms.rem_euclid(HOUR_MS);
            let used = crate::leading::used_share(o).map(|u| u.share);
            let r = hours
                .entry((o.target.as_str(), o.kind, o.entry.category, hour_ms))
                .or_insert(RollupRow {
                    probe: Some(o.kind),
                    category: o.entry.category,
                    hour_ms,
                    count: 0,
                    latency_sum_ms: 0,
                    latency_max_ms: o.latency_ms,
                    used_max: None,
                });
            r.count += 1;
            r.latency_sum_ms += o.latency_ms;
            r.latency_max_ms = r.latency_max_ms.max(o.latency_ms);
            r.used_max = match (r.used_max, used) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        let rows: Vec<(&str, RollupRow)> = hours
            .into_iter()
            .map(|((target, ..), r)| (target, r))
            .collect();
        add_rollups_on(tx, &rows).await
    }

    /// The latest probes of a target, newest first.
    pub async fn recent_probes(
        &self,
        target: &str,
        limit: i64,
    ) -> Result<Vec<ProbeRow>, StoreError> {
        Ok(on!(self.pool, c => sqlx::query_as::<_, ProbeRow>(
            sqlx::AssertSqlSafe(format!("select {PROBE_COLUMNS} from probes where target = $1 order by at_ms desc, id desc limit $2")),
        )
        .bind(target)
        .bind(limit)
        .fetch_all(c).await)?)
    }
}

/// Probes of one target, probe kind and category within one hour.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RollupRow {
    /// `None` in the per-day sums of `daily_rollups`, which add up every probe kind.
    pub probe: Option<ProbeKind>,
    pub category: Category,
    pub hour_ms: i64,
    pub count: i64,
    pub latency_sum_ms: i64,
    pub latency_max_ms: i64,
    /// The largest share of a rate limit used in the hour, when the answers said.
    pub used_max: Option<f64>,
}

/// A rollup and the target it belongs to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TargetRollup {
    pub target: String,
    #[sqlx(flatten)]
    pub rollup: RollupRow,
}

/// Probes of one category on one day (UTC), counted from raw rows.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DayCount {
    /// Days since 1970-01-01.
    pub day: i64,
    pub category: Category,
    pub count: i64,
}

impl Store {
    /// A target's rollups from `since_ms` on, oldest first.
    pub async fn rollups(&self, target: &str, since_ms: i64) -> Result<Vec<RollupRow>, StoreError> {
        Ok(on!(self.pool, c => sqlx::query_as::<_, RollupRow>(
            "select probe, category, hour_ms, count, latency_sum_ms, latency_max_ms, used_max from rollups \
             where target = $1 and hour_ms >= $2 order by hour_ms",
        )
        .bind(target)
        .bind(since_ms)
        .fetch_all(c).await)?)
    }

    /// A target's probes from `since_ms` on, newest first, at most `limit`.
    pub async fn probes_since(
        &self,
        target: &str,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<ProbeRow>, StoreError> {
        Ok(on!(self.pool, c => sqlx::query_as::<_, ProbeRow>(
            sqlx::AssertSqlSafe(format!("select {PROBE_COLUMNS} from probes where target = $1 and at_ms >= $2 order by at_ms desc, id desc limit $3")),
        )
        .bind(target)
        .bind(since_ms)
        .bind(limit)
        .fetch_all(c).await)?)
    }

    /// A target's probes between two times, oldest first, at most `limit`.
    pub async fn probes_between(
        &self,
        target: &str,
        from_ms: i64,
        to_ms: i64,
        limit: i64,
    ) -> Result<Vec<ProbeRow>, StoreError> {
        Ok(on!(self.pool, c => sqlx::query_as::<_, ProbeRow>(
            sqlx::AssertSqlSafe(format!("select {PROBE_COLUMNS} from probes where target = $1 and at_ms >= $2 and at_ms <= $3 order by at_ms, id limit $4")),
        )
        .bind(target)
        .bind(from_ms)
        .bind(to_ms)
        .bind(limit)
        .fetch_all(c).await)?)
    }
}

impl Store {
    /// Adds hourly rollups of a target (imports and benchmark fixtures); counts add up with
    /// rollups already there.
    pub async fn add_rollups(&self, target: &str, rows: &[RollupRow]) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let rows: Vec<(&str, RollupRow)> = rows.iter().map(|r| (target, r.clone())).collect();
        add_rollups_on(&mut tx, &rows).await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// Inserts each observation in a transaction of its own: the naive design the benchmark
    /// compares batching against. Not used by the daemon.
    pub async fn insert_probes_one_by_one(
        &self,
        location: &str,
        batch: &[Observation],
    ) -> Result<(), StoreError> {
        for o in batch {
            self.insert_probes(location, std::slice::from_ref(o))
                .await?;
        }
        Ok(())
    }

    /// The 90-day bar computed from raw probes (the naive design the benchmark compares the
    /// rollups against): probe count per day and category.
    pub async fn daily_counts_from_raw(
        &self,
        target: &str,
        since_ms: i64,
    ) -> Result<Vec<DayCount>, StoreError> {
        Ok(on!(self.pool, c => sqlx::query_as::<_, DayCount>(
            "select at_ms / 86400000 as day, category, count(*) as count from probes where target = $1 and at_ms >= $2 \
             group by day, category order by day",
        )
        .bind(target)
        .bind(since_ms)
        .fetch_all(c).await)?)
    }
}

impl Store {
    /// A target's rollups summed per day (UTC) over [from_ms, until_ms): one row per day and
    /// category, `hour_ms` holding the day's start and `probe` none.
    pub async fn daily_rollups(
        &self,
        target: &str,
        from_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<RollupRow>, StoreError> {
        Ok(on!(self.pool, c => sqlx::query_as::<_, RollupRow>(
            "select null as probe, category, (hour_ms / 86400000) * 86400000 as hour_ms, cast(sum(count) as bigint) as count, \
             cast(sum(latency_sum_ms) as bigint) as latency_sum_ms, max(latency_max_ms) as latency_max_ms, max(used_max) as used_max \
             from rollups where target = $1 and hour_ms >= $2 and hour_ms < $3 group by 3, category order by 3",
        )
        .bind(target)
        .bind(from_ms)
        .bind(until_ms)
        .fetch_all(c).await)?)
    }
}

/// The rollups of the targets named in the list `$1` from hour `$2` on, oldest first: one
/// range of the primary key per target.
macro_rules! rollups_since_sql {
    ($list:literal) => {
        concat!(
            "select r.target, r.probe, r.category, r.hour_ms, r.count, r.latency_sum_ms, \
             r.latency_max_ms, r.used_max from ",
            $list,
            " join rollups r on r.target = t.value and r.hour_ms >= $2 order by r.hour_ms"
        )
    };
}
const ROLLUPS_SINCE_SQL: &str = rollups_since_sql!("json_each($1) t");
const ROLLUPS_SINCE_PG_SQL: &str = rollups_since_sql!("unnest($1::text[]) t(value)");

impl Store {
    /// The rollups of `targets` from `since_ms` on, oldest first.
    pub async fn rollups_since(
        &self,
        targets: &[&str],
        since_ms: i64,
    ) -> Result<Vec<TargetRollup>, StoreError> {
        Ok(match &self.pool {
            Pool::Sqlite(pool) => {
                let names = serde_json::to_string(targets)
                    .map_err(|e| StoreError::Sql(sqlx::Error::Encode(Box::new(e))))?;
                sqlx::query_as(ROLLUPS_SINCE_SQL)
                    .bind(names)
                    .bind(since_ms)
                    .fetch_all(pool)
                    .await?
            }
            Pool::Postgres(pool) => {
                sqlx::query_as(ROLLUPS_SINCE_PG_SQL)
                    .bind(targets)
                    .bind(since_ms)
                    .fetch_all(pool)
                    .await?
            }
        })
    }
}

impl Store {
    /// The latest probe of each of `targets` that has one, in one query whatever the number
    /// of targets: the names go in as one JSON array, and each target's latest row is one
    /// step down the `(target, at_ms)` index.
    pub async fn latest_probes(&self, targets: &[&str]) -> Result<Vec<ProbeRow>, StoreError> {
        self.latest_probes_from(targets, None).await
    }

    /// Like `latest_probes`, of the probes made from `location` only.
    pub async fn latest_probes_at(
        &self,
        location: &str,
        targets: &[&str],
    ) -> Result<Vec<ProbeRow>, StoreError> {
        self.latest_probes_from(targets, Some(location)).await
    }

    async fn latest_probes_from(
        &self,
        targets: &[&str],
        location: Option<&str>,
    ) -> Result<Vec<ProbeRow>, StoreError> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        Ok(match &self.pool {
            Pool::Sqlite(pool) => {
                let names = serde_json::to_string(targets)
                    .map_err(|e| StoreError::Sql(sqlx::Error::Encode(Box::new(e))))?;
                let sql = if location.is_some() {
                    LATEST_AT_SQL
                } else {
                    LATEST_PROBES_SQL
                };
                let mut q = sqlx::query_as::<_, ProbeRow>(sqlx::AssertSqlSafe(sql)).bind(names);
                if let Some(l) = location {
                    q = q.bind(l);
                }
                q.fetch_all(pool).await?
            }
            Pool::Postgres(pool) => {
                let sql = if location.is_some() {
                    LATEST_AT_PG_SQL
                } else {
                    LATEST_PROBES_PG_SQL
                };
                let mut q = sqlx::query_as::<_, ProbeRow>(sqlx::AssertSqlSafe(sql)).bind(targets);
                if let Some(l) = location {
                    q = q.bind(l);
                }
                q.fetch_all(pool).await?
            }
        })
    }

    /// SQLite's plan for `latest_probes`, one line per step (for tests that keep it indexed).
    pub async fn latest_probes_plan(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(i64, i64, i64, String)> = on!(self.pool, c => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "explain query plan {LATEST_PROBES_SQL}"
        )))
        .bind("[]")
        .fetch_all(c).await)?;
        Ok(rows.into_iter().map(|r| r.3).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_go_out_in_a_few_statement_shapes_keeping_every_row_in_order() {
        let sizes = |n: usize| {
            let items: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = row_chunks(&items).collect();
            assert_eq!(chunks.concat(), items, "every row once, in order");
            chunks.iter().map(|c| c.len()).collect::<Vec<_>>()
        };
        assert!(sizes(0).is_empty());
        assert_eq!(sizes(1), [1]);
        assert_eq!(sizes(7), [7]);
        assert_eq!(sizes(16), [16]);
        assert_eq!(sizes(17), [16, 1]);
        assert_eq!(sizes(32), [32]);
        assert_eq!(sizes(75), [32, 32, 11]);
        // Every shape: 1 to 16 rows, and 32.
        let mut shapes: Vec<usize> = (0..600).flat_map(sizes).collect();
        shapes.sort_unstable();
        shapes.dedup();
        assert_eq!(shapes, (1..=16).chain([32]).collect::<Vec<_>>());
    }
}
