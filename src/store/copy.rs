//! `migrate --to`: copies a SQLite history into a PostgreSQL database (SPEC §14), table by
//! table in batches, keeping every id so that the rows still point at one another. Run
//! again, it adds what is new, brings rows changed since (a resolved incident, an expired
//! silence) up to date, and reports the rows it could not copy because another row (one an
//! agent wrote into the database meanwhile) holds their key: never a duplicate, never a
//! silent loss.

use super::engine::Pool;
use super::{Store, StoreError};
use sqlx::{Postgres, QueryBuilder, Row};

/// The type of a column, as both schemas store it.
#[derive(Clone, Copy)]
enum Kind {
    Int,
    Text,
    Real,
}

/// A table to copy: its name, its columns, whether it has an identity `id` whose sequence
/// must move past the copied ids, and its primary key (which also orders and pages it).
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    identity: bool,
    /// The primary key.
    key: &'static [&'static str],
    /// The columns that make a row under that key the same row as the source's (beside the
    /// key): when they differ, another row took the key, and the source row is skipped.
    same: &'static [&'static str],
}

use Kind::{Int, Real, Text};

/// Parents before children (the foreign keys hold at every step).
const TABLES: &[Table] = &[
    Table {
        name: "probes",
        columns: &[
            ("id", Int),
            ("at_ms", Int),
            ("location", Text),
            ("target", Text),
            ("probe", Text),
            ("latency_ms", Int),
            ("http_status", Int),
            ("transport_error", Text),
            ("category", Text),
            ("error_id", Text),
            ("message", Text),
            ("request_id", Text),
            ("ratelimit_limit_requests", Int),
            ("ratelimit_limit_tokens", Int),
            ("ratelimit_remaining_requests", Int),
            ("ratelimit_remaining_tokens", Int),
            ("ratelimit_reset_requests", Text),
            ("ratelimit_reset_tokens", Text),
            ("ttft_ms", Int),
        ],
        key: &["id"],
        same: &["at_ms", "location", "target", "probe"],
        identity: true,
    },
    Table {
        name: "rollups",
        columns: &[
            ("target", Text),
            ("probe", Text),
            ("category", Text),
            ("hour_ms", Int),
            ("count", Int),
            ("latency_sum_ms", Int),
            ("latency_max_ms", Int),
            ("used_max", Real),
        ],
        key: &["target", "hour_ms", "probe", "category"],
        same: &[],
        identity: false,
    },
    Table {
        name: "incidents",
        columns: &[
            ("id", Int),
            ("target", Text),
            ("category", Text),
            ("location", Text),
            ("probe", Text),
            ("first_error_id", Text),
            ("last_error_id", Text),
            ("http_status", Int),
            ("opened_at_ms", Int),
            ("last_seen_at_ms", Int),
            ("resolved_at_ms", Int),
            ("probe_count", Int),
            ("last_message", Text),
            ("request_id", Text),
            ("acked_at_ms", Int),
            ("acked_by", Text),
            ("ack_comment", Text),
        ],
        key: &["id"],
        same: &["target", "category", "opened_at_ms"],
        identity: true,
    },
    Table {
        name: "incident_locations",
        columns: &[
            ("incident_id", Int),
            ("location", Text),
            ("since_ms", Int),
            ("until_ms", Int),
        ],
        key: &["incident_id", "location"],
        same: &[],
        identity: false,
    },
    Table {
        name: "alert_events",
        columns: &[
            ("id", Int),
            ("incident_id", Int),
            ("kind", Text),
            ("category", Text),
            ("created_at_ms", Int),
            ("due_at_ms", Int),
        ],
        key: &["id"],
        same: &["incident_id", "kind", "created_at_ms"],
        identity: true,
    },
    Table {
        name: "silences",
        columns: &[
            ("id", Int),
            ("target", Text),
            ("category", Text),
            ("error_id", Text),
            ("location", Text),
            ("starts_at_ms", Int),
            ("ends_at_ms", Int),
            ("comment", Text),
            ("created_by", Text),
            ("created_at_ms", Int),
            ("expired_at_ms", Int),
        ],
        key: &["id"],
        same: &["created_at_ms", "created_by"],
        identity: true,
    },
    Table {
        name: "alert_deliveries",
        columns: &[
            ("id", Int),
            ("event_id", Int),
            ("channel", Text),
            ("state", Text),
            ("attempts", Int),
            ("next_attempt_at_ms", Int),
            ("last_error", Text),
            ("sent_at_ms", Int),
            ("message_id", Text),
            ("silence_id", Int),
            ("maintenance", Text),
            ("lease_owner", Text),
            ("lease_until_ms", Int),
        ],
        key: &["id"],
        same: &["event_id", "channel"],
        identity: true,
    },
    Table {
        name: "audit_log",
        columns: &[
            ("id", Int),
            ("at_ms", Int),
            ("actor", Text),
            ("action", Text),
            ("detail", Text),
        ],
        key: &["id"],
        same: &["at_ms", "actor", "action"],
        identity: true,
    },
    Table {
        name: "detector_states",
        columns: &[("location", Text), ("target", Text), ("state", Text)],
        key: &["location", "target"],
        same: &[],
        identity: false,
    },
    Table {
        name: "probe_holds",
        columns: &[("target", Text), ("probe", Text), ("until_ms", Int)],
        key: &["target", "probe"],
        same: &[],
        identity: false,
    },
    Table {
        name: "upstream_status",
        columns: &[
            ("source", Text),
            ("state", Text),
            ("etag", Text),
            ("last_modified", Text),
        ],
        key: &["source"],
        same: &[],
        identity: false,
    },
    Table {
        name: "agents",
        columns: &[
            ("location", Text),
            ("seen_at_ms", Int),
            ("silent_after_ms", Int),
            ("started_at_ms", Int),
            ("version", Text),
        ],
        key: &["location"],
        same: &[],
        identity: false,
    },
];

/// Rows per batch: 19 columns × 2 000 stays under PostgreSQL's 65 535 parameters.
const BATCH: i64 = 2_000;

/// What a copy did with the rows of one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableCopy {
    pub table: &'static str,
    /// Rows in the source.
    pub rows: i64,
    pub new: i64,
    /// Rows that were there and had changed in the source since.
    pub updated: i64,
    pub unchanged: i64,
    /// Rows not copied: another row holds their key in the target.
    pub skipped: i64,
}

/// How far a copy has come, for a progress line.
#[derive(Debug, Clone)]
pub struct CopyProgress {
    pub table: &'static str,
    pub done: i64,
    pub total: i64,
}

/// Why a history cannot be copied.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("migrate copies from a SQLite database into a PostgreSQL one")]
    Engines,
    #[error(
        "{0} already holds another history (another installation's probes): migrate into a new, empty database"
    )]
    Foreign(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for CopyError {
    fn from(e: sqlx::Error) -> Self {
        CopyError::Store(StoreError::Sql(e))
    }
}

/// One value of a row, as read from SQLite and bound for PostgreSQL.
enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Real(Option<f64>),
}

/// How many of the source `rows` of `table` have their key taken in the target by a row
/// that is not the same row: one query for the batch.
async fn conflicting(
    into: &sqlx::PgPool,
    table: &Table,
    rows: &[sqlx::sqlite::SqliteRow],
) -> Result<i64, CopyError> {
    let wanted: Vec<(usize, &str, Kind)> = table
        .key
        .iter()
        .chain(table.same)
        .filter_map(|c| {
            let i = table.columns.iter().position(|(name, _)| name == c)?;
            Some((i, *c, table.columns[i].1))
        })
        .collect();
    let names: Vec<&str> = wanted.iter().map(|w| w.1).collect();
    let mut check: QueryBuilder<Postgres> = QueryBuilder::new("select count(*) from (");
    check.push_values(rows, |mut b, row| {
        for (i, _, kind) in &wanted {
            match kind {
                Int => b.push_bind(row.try_get::<Option<i64>, _>(*i).ok().flatten()),
                Text => b.push_bind(row.try_get::<Option<String>, _>(*i).ok().flatten()),
                Real => b.push_bind(row.try_get::<Option<f64>, _>(*i).ok().flatten()),
            };
        }
    });
    let on: Vec<String> = table.key.iter().map(|k| format!("t.{k} = v.{k}")).collect();
    let tuple = |prefix: &str| {
        table
            .same
            .iter()
            .map(|c| format!("{prefix}.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    check.push(format!(
        ") as v ({}) join {} t on {} where ({}) is distinct from ({})",
        names.join(", "),
        table.name,
        on.join(" and "),
        tuple("t"),
        tuple("v")
    ));
    Ok(check.build_query_scalar().fetch_one(into).await?)
}

impl Store {
    /// Copies every row of this SQLite store into `to` (a PostgreSQL store whose schema is
    /// current), calling `progress` after each batch. Returns (table, rows in the source)
    /// for every table.
    pub async fn copy_into(
        &self,
        to: &Store,
        mut progress: impl FnMut(&CopyProgress),
    ) -> Result<Vec<TableCopy>, CopyError> {
        let (Pool::Sqlite(from), Pool::Postgres(into)) = (&self.pool, &to.pool) else {
            return Err(CopyError::Engines);
        };
        // The installation id goes along (alert threads continue); a database that already
        // holds probes of another installation is refused rather than mixed.
        let id: String = sqlx::query_scalar("select id from installation limit 1")
            .fetch_one(from)
            .await?;
        let theirs: String = sqlx::query_scalar("select id from installation limit 1")
            .fetch_one(into)
            .await?;
        let probes: bool = sqlx::query_scalar("select exists (select 1 from probes)")
            .fetch_one(into)
            .await?;
        if theirs != id && probes {
            return Err(CopyError::Foreign(to.name().to_string()));
        }
        sqlx::query("update installation set id = $1")
            .bind(&id)
            .execute(into)
            .await?;
        let mut counts = Vec::new();
        for table in TABLES {
            let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "select count(*) from {}",
                table.name
            )))
            .fetch_one(from)
            .await?;
            let columns: Vec<&str> = table.columns.iter().map(|c| c.0).collect();
            let select = format!(
                "select {} from {} order by {} limit $1 offset $2",
                columns.join(", "),
                table.name,
                table.key.join(", ")
            );
            let mut done = 0;
            let mut copy = TableCopy {
                table: table.name,
                rows: total,
                ..TableCopy::default()
            };
            progress(&CopyProgress {
                table: table.name,
                done,
                total,
            });
            while done < total {
                let rows = sqlx::query(sqlx::AssertSqlSafe(select.clone()))
                    .bind(BATCH)
                    .bind(done)
                    .fetch_all(from)
                    .await?;
                if rows.is_empty() {
                    break;
                }
                let mut values = Vec::with_capacity(rows.len());
                for row in &rows {
                    let mut one = Vec::with_capacity(columns.len());
                    for (i, (_, kind)) in table.columns.iter().enumerate() {
                        one.push(match kind {
                            Int => Value::Int(row.try_get(i)?),
                            Text => Value::Text(row.try_get(i)?),
                            Real => Value::Real(row.try_get(i)?),
                        });
                    }
                    values.push(one);
                }
                let mut insert: QueryBuilder<Postgres> = QueryBuilder::new(format!(
                    "insert into {} ({}) ",
                    table.name,
                    columns.join(", ")
                ));
                insert.push_values(values, |mut b, row| {
                    for v in row {
                        match v {
                            Value::Int(v) => b.push_bind(v),
                            Value::Text(v) => b.push_bind(v),
                            Value::Real(v) => b.push_bind(v),
                        };
                    }
                });
                // A row already there is brought up to date when it is the same row and
                // changed; one whose key another row holds is left alone (and counted).
                let updatable: Vec<&str> = columns
                    .iter()
                    .copied()
                    .filter(|c| !table.key.contains(c))
                    .collect();
                let tuple = |prefix: &str, cols: &[&str]| {
                    format!(
                        "({})",
                        cols.iter()
                            .map(|c| format!("{prefix}.{c}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                insert.push(format!(" on conflict ({}) ", table.key.join(", ")));
                if updatable.is_empty() {
                    insert.push("do nothing");
                } else {
                    insert.push(format!(
                        "do update set {} where {} is distinct from {}",
                        updatable
                            .iter()
                            .map(|c| format!("{c} = excluded.{c}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        tuple(table.name, &updatable),
                        tuple("excluded", &updatable),
                    ));
                    if !table.same.is_empty() {
                        insert.push(format!(
                            " and {} is not distinct from {}",
                            tuple(table.name, table.same),
                            tuple("excluded", table.same)
                        ));
                    }
                }
                insert.push(" returning (xmax = 0)");
                let written: Vec<bool> = insert.build_query_scalar().fetch_all(into).await?;
                let new = written.iter().filter(|n| **n).count() as i64;
                copy.new += new;
                copy.updated += written.len() as i64 - new;
                let skipped = if table.same.is_empty() || written.len() == rows.len() {
                    0
                } else {
                    conflicting(into, table, &rows).await?
                };
                copy.skipped += skipped;
                copy.unchanged += rows.len() as i64 - written.len() as i64 - skipped;
                done += rows.len() as i64;
                progress(&CopyProgress {
                    table: table.name,
                    done,
                    total,
                });
            }
            if table.identity {
                // New rows written by the agents get ids after the copied ones.
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "select setval(pg_get_serial_sequence('{0}', 'id'), \
                     greatest((select max(id) from {0}), 1))",
                    table.name
                )))
                .execute(into)
                .await?;
            }
            counts.push(copy);
        }
        Ok(counts)
    }

    /// How many rows a table holds (for `migrate`'s report and its tests).
    pub async fn count_rows(&self, table: &str) -> Result<i64, StoreError> {
        if !TABLES.iter().any(|t| t.name == table) {
            return Err(StoreError::Sql(sqlx::Error::Protocol(format!(
                "no table {table}"
            ))));
        }
        let sql = format!("select count(*) from {table}");
        Ok(
            on!(self.pool, c => sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
            .fetch_one(c)
            .await)?,
        )
    }

    /// The tables `migrate` copies, in order.
    pub fn copied_tables() -> impl Iterator<Item = &'static str> {
        TABLES.iter().map(|t| t.name)
    }
}
