//! The SQLite store (SPEC §8). Every SQL statement of the product lives under this module, so
//! that the scheduler, the commands and the dashboard share them (and a PostgreSQL store can
//! follow). One file per table family.

mod incidents;
mod outbox;
mod probes;
mod retention;

pub use incidents::{ChannelRoute, IncidentChange, IncidentRow, Recorded, Routing};
pub use outbox::{DeliveryCounts, DeliveryRow, FailedDelivery, PendingDelivery};
pub use probes::{DayCount, HOUR_MS, ProbeRow, RollupRow, TargetRollup};
pub use retention::PRUNE_BATCH;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::time::Duration;

/// The migrations in `migrations/`, embedded in the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

/// Why the database could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("cannot apply the database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

impl Store {
    /// Opens (creating if missing) the database at `path` and applies the migrations.
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
        let pool = SqlitePoolOptions::new()
            .max_connections(3)
            .min_connections(1)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        MIGRATOR.run(&pool).await?;
        Ok(Store { pool })
    }

    /// Closes every connection, checkpointing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
