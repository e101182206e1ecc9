//! The store (SPEC §8, §14): SQLite, or PostgreSQL for a fleet. Every SQL statement of the product lives under this module, so
//! that the scheduler, the commands and the dashboard share them (and a PostgreSQL store can
//! follow). One file per table family.

#[macro_use]
mod engine;
mod agents;
mod copy;
mod detector;
mod incident_reads;
mod incidents;
mod lock;
mod outbox;
mod probes;
mod retention;
mod silences;

pub use agents::{
    AGENT_SILENT, AgentRow, Continuity, Heartbeat, Retired, SessionLock, monitor_target,
};
pub use copy::{CopyError, CopyProgress, TableCopy};
pub use engine::{HOUSEKEEPING_LOCK, INCIDENTS_LOCK};
pub use incident_reads::IncidentRow;
pub use incidents::{ChannelRoute, IncidentChange, Recorded, Routing};
use lock::MigrationLock;
pub use lock::{LockError, WriterLock, lock_path, migration_lock_path};
pub use outbox::{DeliveryCounts, DeliveryRow, FailedDelivery, PendingDelivery};
pub use probes::{DayCount, HOUR_MS, ProbeRow, RollupRow, TargetRollup};
pub use retention::PRUNE_BATCH;
pub use silences::{Acked, Expired};

pub use engine::{Database, describe_url};

use engine::{Pool, Tx};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::time::Duration;

/// The migrations of each engine, embedded in the binary.
static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl StoreError {
    /// Whether the message already says which database (so that a caller does not say it
    /// again).
    pub fn names_the_database(&self) -> bool {
        matches!(
            self,
            StoreError::Open { .. }
                | StoreError::OpenPostgres { .. }
                | StoreError::Newer { .. }
                | StoreError::Older { .. }
                | StoreError::MigrationStuck { .. }
                | StoreError::Lock(_)
        )
    }

    /// Whether the same write may succeed later unchanged: the database is busy, locked,
    /// read-only, full or unreachable. Anything else (a constraint, a row that cannot be
    /// encoded) fails again every time.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Sql(sqlx::Error::Database(db)) => {
                if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                    // Connection, rollback (serialization, deadlock), resources, operator
                    // intervention (a restart, a statement timeout), system errors, and a lock
                    // not granted within `lock_timeout` (55P03).
                    let class = pg.code().get(..2).unwrap_or("");
                    return matches!(class, "08" | "40" | "53" | "55" | "57" | "58");
                }
                let primary = db
                    .code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .map_or(0, |c| c & 0xff);
                // BUSY, LOCKED, NOMEM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, PROTOCOL
                matches!(primary, 5 | 6 | 7 | 8 | 10 | 11 | 13 | 14 | 15)
            }
            StoreError::Sql(sqlx::Error::Decode(_) | sqlx::Error::Encode(_)) => false,
            StoreError::Sql(_)
            | StoreError::Open { .. }
            | StoreError::OpenPostgres { .. }
            | StoreError::Lock(_)
            | StoreError::MigrationStuck { .. } => true,
            StoreError::Migrate(_)
            | StoreError::Newer { .. }
            | StoreError::Older { .. }
            | StoreError::Limit(_) => false,
        }
    }
}

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

/// Replaces the pool's connections once the database file is writable again after a time
/// it was not. SQLite opens a file (or its write-ahead log) that it may not write read-only,
/// without saying so, and such a connection stays read-only after the file is writable again:
/// the daemon would never write again. So every connection opened before the file became
/// writable is closed when it is next taken from the pool, and the pool opens a fresh one.
/// The files are looked at when a connection opens, and when one is taken at most once a
/// second (every time while they are not writable).
#[derive(Debug)]
struct Reopening {
    files: [std::path::PathBuf; 2],
    state: std::sync::Mutex<Writability>,
}

#[derive(Debug)]
struct Writability {
    writable: bool,
    looked_at: Option<std::time::Instant>,
    /// When the files were last seen to become writable again.
    since: Option<std::time::Instant>,
}

impl Reopening {
    const LOOK_EVERY: Duration = Duration::from_secs(1);

    fn new(path: &Path) -> Reopening {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        Reopening {
            files: [path.to_path_buf(), wal.into()],
            state: std::sync::Mutex::new(Writability {
                writable: true,
                looked_at: None,
                since: None,
            }),
        }
    }

    /// Whether an idle connection that was opened `age` ago may serve.
    fn keep(&self, age: Duration) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !state.writable
            || state
                .looked_at
                .is_none_or(|t| t.elapsed() >= Self::LOOK_EVERY)
        {
            self.look_locked(&mut state);
        }
        state.since.is_none_or(|t| age < t.elapsed())
    }

    /// Looks at the files when a connection is opened (which may happen while they are not
    /// writable without any idle connection being taken).
    fn look(&self) {
        self.look_locked(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn look_locked(&self, state: &mut Writability) {
        // access(2), not open(2): closing a descriptor of the database file would release
        // the locks SQLite holds on it in this process.
        let writable = self.files.iter().all(|f| {
            match rustix::fs::access(f.as_path(), rustix::fs::Access::WRITE_OK) {
                Ok(()) => true,
                Err(e) => e == rustix::io::Errno::NOENT,
            }
        });
        let now = std::time::Instant::now();
        if writable && !state.writable {
            state.since = Some(now);
        }
        state.writable = writable;
        state.looked_at = Some(now);
    }
}

/// How long opening a database waits for another process's migration.
const MIGRATION_WAIT: Duration = Duration::from_secs(10);

/// The highest migration this binary carries for the engine of `pool`.
fn known_schema(pool: &Pool) -> i64 {
    let migrator = match pool {
        Pool::Sqlite(_) => &SQLITE_MIGRATOR,
        Pool::Postgres(_) => &POSTGRES_MIGRATOR,
    };
    migrator.iter().map(|m| m.version).max().unwrap_or(0)
}

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// The database in words (no password), for messages.
    name: std::sync::Arc<str>,
    changes: std::sync::Arc<Changes>,
    /// The latency baseline of each (target, probe kind), with the hour it was read for.
    baselines: std::sync::Arc<std::sync::Mutex<Baselines>>,
    /// Whose turn it is to write (SQLite: one writer at a time).
    writer_turn: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// SQLite: the one connection that write transactions take. Always the same one, so
    /// that its page and statement caches stay warm: a connection that another one wrote
    /// behind must read again every page it had.
    writer: Option<sqlx::SqlitePool>,
}

/// Latency baselines by (target, probe kind): (the hour they are for, the baseline).
type Baselines = std::collections::HashMap<(String, crate::domain::ProbeKind), (i64, Option<f64>)>;

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
    /// A write refused because it would pass a limit; the text says which and what to do.
    #[error("{0}")]
    Limit(String),
    /// A PostgreSQL database could not be opened; `reason` never holds the URL's userinfo.
    #[error("cannot open the database {path}: {reason}")]
    OpenPostgres { path: String, reason: String },
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
    #[error(
        "another process has been migrating the database {path} for over {secs} s (it holds {lock}): let it finish, or stop it"
    )]
    MigrationStuck {
        path: String,
        lock: String,
        secs: u64,
    },
}

impl Store {
    /// Opens (creating if missing) the database at `path` and applies the migrations that
    /// are missing, under the migration lock (waiting briefly for a process that holds it).
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
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
        // Processes open and migrate a file one at a time: two starting at once on a new file
        // must not both migrate it, and SQLite does not wait for the lock that turning a new
        // file to WAL takes (the other process's open fails with "database is locked").
        let turn = Store::migration_turn(path).await?;
        let reopening = std::sync::Arc::new(Reopening::new(path));
        let open_pool = |max: u32| {
            let (on_connect, on_acquire) = (reopening.clone(), reopening.clone());
            SqlitePoolOptions::new()
                .max_connections(max)
                .min_connections(1)
                // A connection to a local file has nothing to ping: `before_acquire` checks
                // what can go wrong with one, without a round trip to its worker thread.
                .test_before_acquire(false)
                .after_connect(move |_, _| {
                    on_connect.look();
                    Box::pin(async { Ok(()) })
                })
                .before_acquire(move |conn, meta| {
                    let keep = on_acquire.keep(meta.age);
                    Box::pin(async move { Ok(keep && healthy(conn).await?) })
                })
                .connect_with(options.clone())
        };
        let opened = async { Ok::<_, sqlx::Error>((open_pool(2).await?, open_pool(1).await?)) };
        let (pool, writer) = opened.await.map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let mut store = Store::new(Pool::Sqlite(pool), path.display().to_string().into());
        store.writer = Some(writer);
        store.refuse_newer_schema().await?;
        if store.schema_version().await? < known_schema(&store.pool) {
            store.migrate().await?;
        }
        drop(turn);
        Ok(store)
    }

    /// The migration lock of the file at `path`, waiting up to `MIGRATION_WAIT` for the
    /// process that holds it.
    async fn migration_turn(path: &Path) -> Result<MigrationLock, StoreError> {
        let started = std::time::Instant::now();
        let mut waited = false;
        loop {
            match MigrationLock::try_acquire(path)? {
                Some(lock) => return Ok(lock),
                None if started.elapsed() < MIGRATION_WAIT => {
                    if !std::mem::replace(&mut waited, true) {
                        tracing::info!(db = %path.display(), "waiting for another process to migrate the database");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                None => {
                    return Err(StoreError::MigrationStuck {
                        path: path.display().to_string(),
                        lock: migration_lock_path(path).display().to_string(),
                        secs: MIGRATION_WAIT.as_secs(),
                    });
                }
            }
        }
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
        let store = Store::new(Pool::Sqlite(pool), path.display().to_string().into());
        store.refuse_newer_schema().await?;
        store.refuse_older_schema().await?;
        Ok(store)
    }

    /// Opens the database a config names: the SQLite file (as `open`), or the PostgreSQL
    /// database, applying its missing migrations. Several agents may start at once: the
    /// migrations run under a PostgreSQL advisory lock, one agent after the other.
    pub async fn connect(database: &Database) -> Result<Store, StoreError> {
        match database {
            Database::Sqlite(path) => Store::open(path).await,
            Database::Postgres(url) => Store::open_postgres(url, true).await,
        }
    }

    /// Opens a PostgreSQL database; with `migrate`, applies the missing migrations first.
    pub async fn open_postgres(
        url: &secrecy::SecretString,
        migrate: bool,
    ) -> Result<Store, StoreError> {
        use secrecy::ExposeSecret;
        use sqlx::ConnectOptions as _;
        let raw = url.expose_secret();
        let name = describe_url(raw);
        let failed = |e: &dyn std::fmt::Display| StoreError::OpenPostgres {
            path: name.clone(),
            reason: engine::scrub_url_secrets(&e.to_string(), raw),
        };
        let options = raw
            .parse::<sqlx::postgres::PgConnectOptions>()
            .map_err(|e| failed(&e))?
            // Every wait and every transaction is bounded on the server: an agent that
            // freezes (SIGSTOP) or drops off the network inside a transaction loses it and
            // its locks, instead of stopping every other agent until TCP gives up.
            .options([
                ("lock_timeout", "5s"),
                ("statement_timeout", "30s"),
                ("idle_in_transaction_session_timeout", "10s"),
                ("tcp_keepalives_idle", "10"),
                ("tcp_keepalives_interval", "5"),
                ("tcp_keepalives_count", "3"),
                // Notices (a migration table that exists already) are not log lines.
                ("client_min_messages", "warning"),
            ])
            // Which process a session is, in pg_stat_activity and pg_locks.
            .application_name(&format!("openai-watch/{}", std::process::id()));
        let pool = match PgPoolOptions::new()
            .max_connections(5)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
        {
            Ok(pool) => pool,
            // The pool says only that it timed out: one connection of our own says why.
            Err(sqlx::Error::PoolTimedOut) => {
                let why =
                    match tokio::time::timeout(Duration::from_secs(10), options.connect()).await {
                        Ok(Err(e)) => crate::error_chain::error_chain(&e),
                        _ => "no answer within 10 s".to_string(),
                    };
                return Err(failed(&why));
            }
            Err(e) => return Err(failed(&crate::error_chain::error_chain(&e))),
        };
        let store = Store::new(Pool::Postgres(pool), name.into());
        store.refuse_newer_schema().await?;
        if migrate {
            store.migrate().await?;
        } else {
            store.refuse_older_schema().await?;
        }
        Ok(store)
    }

    /// Whether this store is PostgreSQL (shared by a fleet of agents).
    pub fn is_postgres(&self) -> bool {
        matches!(self.pool, Pool::Postgres(_))
    }

    /// The database in words, without a password.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Applies the missing migrations one at a time, folding the write-ahead log back into
    /// the database after each, so that the log never holds more than one migration: a
    /// database on a small disk is not filled by its own schema.
    async fn migrate(&self) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Sqlite(pool) => {
                for version in SQLITE_MIGRATOR.iter().map(|m| m.version) {
                    SQLITE_MIGRATOR.run_to(version, pool).await?;
                    sqlx::query("pragma wal_checkpoint(truncate)")
                        .execute(pool)
                        .await?;
                }
            }
            // sqlx takes an advisory lock for the run: agents starting at once wait in turn.
            Pool::Postgres(pool) => POSTGRES_MIGRATOR.run(pool).await?,
        }
        Ok(())
    }

    /// The highest migration applied to the database; 0 for a new one.
    async fn schema_version(&self) -> Result<i64, StoreError> {
        let exists: bool = match &self.pool {
            Pool::Sqlite(pool) => sqlx::query_scalar(
                "select count(*) > 0 from sqlite_master where type = 'table' and name = '_sqlx_migrations'",
            )
            .fetch_one(pool)
            .await?,
            Pool::Postgres(pool) => {
                sqlx::query_scalar("select to_regclass('_sqlx_migrations') is not null")
                    .fetch_one(pool)
                    .await?
            }
        };
        if !exists {
            return Ok(0);
        }
        let version: Option<i64> = on!(self.pool, c => sqlx::query_scalar(
            "select max(version) from _sqlx_migrations where success"
        )
        .fetch_one(c)
        .await)?;
        Ok(version.unwrap_or(0))
    }

    fn new(pool: Pool, name: std::sync::Arc<str>) -> Store {
        Store {
            pool,
            name,
            changes: Default::default(),
            baselines: Default::default(),
            writer_turn: Default::default(),
            writer: None,
        }
    }

    /// A database older than this binary, opened by one that does not migrate it, is refused.
    async fn refuse_older_schema(&self) -> Result<(), StoreError> {
        let found = self.schema_version().await?;
        if found < known_schema(&self.pool) {
            return Err(StoreError::Older {
                path: self.name.to_string(),
                found,
                known: known_schema(&self.pool),
            });
        }
        Ok(())
    }

    /// A database from a newer version would be misread, or broken by an older migration:
    /// refused with words an operator can act on.
    async fn refuse_newer_schema(&self) -> Result<(), StoreError> {
        let found = self.schema_version().await?;
        if found > known_schema(&self.pool) {
            return Err(StoreError::Newer {
                path: self.name.to_string(),
                found,
                known: known_schema(&self.pool),
            });
        }
        Ok(())
    }

    /// A write transaction that takes the write lock at once (`BEGIN IMMEDIATE`). With a
    /// second writer on the file (`silence` and `ack` beside the daemon), a deferred
    /// transaction that read first cannot upgrade once the other committed, and fails at
    /// once instead of waiting for `busy_timeout`.
    /// Writers of this process take turns first, in the order they asked: SQLite's own wait
    /// for a busy file sleeps up to 100 ms between tries, and the notifier's record that an
    /// email was accepted must not sleep behind a stream of probe batches (a crash in that
    /// gap sends the email again).
    /// On PostgreSQL, a plain transaction: its row locks and `on conflict` do the same.
    async fn write_tx(&self) -> Result<Tx, sqlx::Error> {
        Ok(match &self.pool {
            Pool::Sqlite(pool) => {
                let turn = self.writer_turn.clone().lock_owned().await;
                let pool = self.writer.as_ref().unwrap_or(pool);
                Tx::Sqlite(engine::SqliteTx::new(pool.acquire().await?, turn))
            }
            Pool::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// Commits, counting the write for [`Store::generation`].
    async fn commit(&self, tx: Tx) -> Result<(), sqlx::Error> {
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

    /// Closes every connection, checkpointing the WAL.
    pub async fn close(&self) {
        if let Some(writer) = &self.writer {
            writer.close().await;
        }
        self.pool.close().await;
    }
}
