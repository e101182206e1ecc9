//! One writer per database: the daemon holds an exclusive lock on `<database>.lock` for as
//! long as it runs. Migrations run under a lock of their own, `<database>.migrate.lock`,
//! held only while they run: a command that migrates a new file for a moment (`check`
//! started beside a daemon that is starting too) must not look like a second daemon. The
//! locks are the kernel's (`flock`): they go away with the process, however it ends, so a
//! crashed daemon never leaves one behind. A separate file, because closing any descriptor of the database file
//! itself would drop SQLite's own locks on it.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// The exclusive lock of a database's writer, held until dropped.
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another openai-watch daemon is already running on {db} (it holds {lock}): stop it first, or give this one its own [storage] path"
    )]
    Held { db: String, lock: String },
    #[error(
        "another live agent already uses the location {location:?} on this database: give each agent its own [agent] location (the default is the host name)"
    )]
    LocationTaken { location: String },
    #[error("cannot use the lock file {lock}: {source}")]
    Io {
        lock: String,
        source: std::io::Error,
    },
}

/// The lock file of a database: `<database>.lock` beside it.
pub fn lock_path(db: &Path) -> PathBuf {
    beside(db, ".lock")
}

/// The migration lock file of a database: `<database>.migrate.lock` beside it.
pub fn migration_lock_path(db: &Path) -> PathBuf {
    beside(db, ".migrate.lock")
}

/// `db` with `suffix` added to its file name.
fn beside(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

impl WriterLock {
    /// Takes the lock now, or says who holds it.
    pub fn try_acquire(db: &Path) -> Result<WriterLock, LockError> {
        let path = lock_path(db);
        match try_lock(&path)? {
            Some(file) => Ok(WriterLock { _file: file }),
            None => Err(LockError::Held {
                db: db.display().to_string(),
                lock: path.display().to_string(),
            }),
        }
    }
}

/// The lock under which migrations run, held only for as long as they take.
#[derive(Debug)]
pub struct MigrationLock {
    _file: File,
}

impl MigrationLock {
    /// Takes the lock now, or `None` while another process migrates.
    pub fn try_acquire(db: &Path) -> Result<Option<MigrationLock>, LockError> {
        let file = try_lock(&migration_lock_path(db))?;
        Ok(file.map(|file| MigrationLock { _file: file }))
    }
}

/// The lock file at `path`, locked; `None` while another process holds it.
fn try_lock(path: &Path) -> Result<Option<File>, LockError> {
    let file = open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(source)) => Err(LockError::Io {
            lock: path.display().to_string(),
            source,
        }),
    }
}

fn open(path: &Path) -> Result<File, LockError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|source| LockError::Io {
            lock: path.display().to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_and_the_lock_goes_with_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.db");
        let first = WriterLock::try_acquire(&db).unwrap();
        let err = WriterLock::try_acquire(&db).unwrap_err();
        assert!(err.to_string().contains("already running"), "{err}");
        drop(first);
        WriterLock::try_acquire(&db).unwrap();
        assert_eq!(lock_path(&db), dir.path().join("w.db.lock"));
    }

    #[test]
    fn migrating_does_not_hold_the_daemon_lock_and_one_process_migrates_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.db");
        let migrating = MigrationLock::try_acquire(&db).unwrap().unwrap();
        let daemon = WriterLock::try_acquire(&db).unwrap();
        assert!(MigrationLock::try_acquire(&db).unwrap().is_none());
        drop(migrating);
        assert!(MigrationLock::try_acquire(&db).unwrap().is_some());
        drop(daemon);
        assert_eq!(
            migration_lock_path(&db),
            dir.path().join("w.db.migrate.lock")
        );
    }
}
