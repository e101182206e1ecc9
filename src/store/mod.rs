//! The SQLite store (SPEC §8). Every SQL statement of the product lives under this module, so
//! that the scheduler, the commands and the dashboard share them (and a PostgreSQL store can
//! follow). One file per table family.

mod detector;
mod incidents;
mod lock;
mod outbox;
mod probes;
mod retention;
mod silences;

pub use incidents::{ChannelRoute, IncidentChange, IncidentRow, Recorded, Routing};
pub use lock::{LockError, WriterLock, lock_path};
pub use outbox::{DeliveryCounts, DeliveryRow, FailedDelivery, PendingDelivery};
pub use probes::{DayCount, HOUR_MS, ProbeRow, RollupRow, TargetRollup};
pub use retention::PRUNE_BATCH;
pub use silences::{Acked, Expired};

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::time::Duration;

/// The migrations in `migrations/`, embedded in the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl StoreError {
    /// Whether the same write may succeed later unchanged: the database is busy, locked,
    /// read-only, full or unreachable. Anything else (a constraint, a row that cannot be
    /// encoded) fails again every time.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Sql(sqlx::Error::Database(db)) => {
                let primary = db
                    .code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .map_or(0, |c| c & 0xff);
                // BUSY, LOCKED, NOMEM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, PROTOCOL
                matches!(primary, 5 | 6 | 7 | 8 | 10 | 11 | 13 | 14 | 15)
            }
            StoreError::Sql(sqlx::Error::Decode(_) | sqlx::Error::Encode(_)) => false,
            StoreError::Sql(_) | StoreError::Open { .. } | StoreError::Lock(_) => true,
            StoreError::Migrate(_) | StoreError::Newer { .. } | StoreError::Older { .. } => false,
        }
    }
}

/// How long opening a database waits for another process's migration.
/// Whether a pooled connection can start a transaction. After some errors (a full disk,
/// an I/O error) SQLite rolls a transaction back by itself; the rollback sqlx then sends
/// fails, and its transaction count never comes down, so that every later `BEGIN
/// IMMEDIATE` on that connection would be refused. Such a connection is closed (the pool
/// opens a fresh one). A rollback that is merely still queued is let through first.
async fn healthy(conn: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection;
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    sqlx::query("select 1").execute(&mut *conn).await?;
    Ok(!conn.is_in_transaction())
}

const MIGRATION_WAIT: Duration = Duration::from_secs(10);

/// The highest migration this binary carries.
fn known_schema() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    changes: std::sync::Arc<Changes>,
}

/// Writes made through this `Store`, for caches of what they show (the status page): a
/// generation counted up after every commit, and how many commits are under way.
#[derive(Debug, Default)]
pub struct Changes {
    generation: std::sync::atomic::AtomicU64,
    in_flight: std::sync::atomic::AtomicU64,
}

/// Marks a write under way; counts it as done when dropped (committed or not).
struct Writing<'a>(&'a Changes);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::AcqRel;
        self.0.generation.fetch_add(1, AcqRel);
        self.0.in_flight.fetch_sub(1, AcqRel);
    }
}

impl Changes {
    fn writing(&self) -> Writing<'_> {
        self.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Writing(self)
    }
}

/// Why the database could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("cannot apply the database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "the database {path} was written by a newer openai-watch (schema {found}; this one knows up to {known}): upgrade openai-watch"
    )]
    Newer {
        path: String,
        found: i64,
        known: i64,
    },
    #[error(
        "the database {path} has schema {found}, older than this openai-watch's {known}: start the daemon once to upgrade it"
    )]
    Older {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("{0}")]
    Lock(#[from] LockError),
}

impl Store {
    /// Opens (creating if missing) the database at `path` and applies the migrations that
    /// are missing, under the writer lock (waiting briefly for a process that holds it).
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_inner(path, None).await
    }

    /// Like `open`, for the process that holds the database's writer lock (the daemon).
    pub async fn open_as_writer(path: &Path, lock: &WriterLock) -> Result<Store, StoreError> {
        Store::open_inner(path, Some(lock)).await
    }

    async fn open_inner(path: &Path, held: Option<&WriterLock>) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Best effort: a missing directory is reported by the open below with its path.
            let _ = std::fs::create_dir_all(dir);
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            // A small page cache per connection: the daemon's memory budget is tight and the
            // working set (recent probes, open incidents) is small.
            .pragma("cache_size", "-1024")
            .statement_cache_capacity(64);
        let pool = SqlitePoolOptions::new()
            .max_connections(3)
            .min_connections(1)
            .before_acquire(|conn, _| Box::pin(async move { healthy(conn).await }))
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        let store = Store {
            pool,
            changes: Default::default(),
        };
        store.refuse_newer_schema(path).await?;
        if held.is_some() {
            store.migrate().await?;
            return Ok(store);
        }
        // Two processes starting at once on a new file must not both migrate it: migrations
        // run under the writer lock. A daemon holds that lock for as long as it runs, but
        // migrates first, so a process waiting for it finds the schema current soon.
        let started = std::time::Instant::now();
        while store.schema_version().await? < known_schema() {
            match WriterLock::try_acquire(path) {
                Ok(_lock) => {
                    store.migrate().await?;
                    break;
                }
                Err(LockError::Held { .. }) if started.elapsed() < MIGRATION_WAIT => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(store)
    }

    /// Opens an existing database for reading only (`status`): no file is created, nothing
    /// is written, so it works on a read-only file. Its schema must be this version's.
    pub async fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .busy_timeout(Duration::from_secs(5))
            .pragma("cache_size", "-1024");
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        let store = Store {
            pool,
            changes: Default::default(),
        };
        store.refuse_newer_schema(path).await?;
        let found = store.schema_version().await?;
        if found < known_schema() {
            return Err(StoreError::Older {
                path: path.display().to_string(),
                found,
                known: known_schema(),
            });
        }
        Ok(store)
    }

    /// Applies the missing migrations one at a time, folding the write-ahead log back into
    /// the database after each, so that the log never holds more than one migration: a
    /// database on a small disk is not filled by its own schema.
    async fn migrate(&self) -> Result<(), StoreError> {
        for version in MIGRATOR.iter().map(|m| m.version) {
            MIGRATOR.run_to(version, &self.pool).await?;
            sqlx::query("pragma wal_checkpoint(truncate)")
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// The highest migration applied to the database; 0 for a new one.
    async fn schema_version(&self) -> Result<i64, StoreError> {
        let (exists,): (i64,) = sqlx::query_as(
            "select count(*) from sqlite_master where type = 'table' and name = '_sqlx_migrations'",
        )
        .fetch_one(&self.pool)
        .await?;
        if exists == 0 {
            return Ok(0);
        }
        let (version,): (Option<i64>,) =
            sqlx::query_as("select max(version) from _sqlx_migrations where success")
                .fetch_one(&self.pool)
                .await?;
        Ok(version.unwrap_or(0))
    }

    /// A database from a newer version would be misread, or broken by an older migration:
    /// refused with words an operator can act on.
    async fn refuse_newer_schema(&self, path: &Path) -> Result<(), StoreError> {
        let found = self.schema_version().await?;
        if found > known_schema() {
            return Err(StoreError::Newer {
                path: path.display().to_string(),
                found,
                known: known_schema(),
            });
        }
        Ok(())
    }

    /// Closes every connection, checkpointing the WAL.
    /// A write transaction that takes the write lock at once (`BEGIN IMMEDIATE`). With a
    /// second writer on the file (`silence` and `ack` beside the daemon), a deferred
    /// transaction that read first cannot upgrade once the other committed, and fails at
    /// once instead of waiting for `busy_timeout`.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// Commits, counting the write for [`Store::generation`].
    async fn commit(
        &self,
        tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    ) -> Result<(), sqlx::Error> {
        let _writing = self.changes.writing();
        tx.commit().await
    }

    /// The number of writes this `Store` (and its clones) committed, or `None` while one is
    /// under way: what a cache of the data can be keyed by. Writes by other processes (the
    /// command line's `silence`, `ack`) are not counted.
    pub fn generation(&self) -> Option<u64> {
        use std::sync::atomic::Ordering::Acquire;
        if self.changes.in_flight.load(Acquire) > 0 {
            return None;
        }
        let generation = self.changes.generation.load(Acquire);
        (self.changes.in_flight.load(Acquire) == 0).then_some(generation)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
