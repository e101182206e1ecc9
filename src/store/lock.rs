//! One writer per database: the daemon holds an exclusive lock on `<database>.lock` for as
//! long as it runs, and migrations run under the same lock. The lock is the kernel's
//! (`flock`): it goes away with the process, however it ends, so a crashed daemon never
//! leaves one behind. A separate file, because closing any descriptor of the database file
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
    #[error("cannot use the lock file {lock}: {source}")]
    Io {
        lock: String,
        source: std::io::Error,
    },
}

/// The lock file of a database: `<database>.lock` beside it.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl WriterLock {
    /// Takes the lock now, or says who holds it.
    pub fn try_acquire(db: &Path) -> Result<WriterLock, LockError> {
        let path = lock_path(db);
        let file = open(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(WriterLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(LockError::Held {
                db: db.display().to_string(),
                lock: path.display().to_string(),
            }),
            Err(TryLockError::Error(source)) => Err(LockError::Io {
                lock: path.display().to_string(),
                source,
            }),
        }
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
}
