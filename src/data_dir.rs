//! The agent's data directory: its layout, permissions, and the lock that
//! keeps two agents from sharing it.
//!
//! `<data_dir>/` holds `queue/` (the disk queue), `state/` (checkpoints and
//! known state) and `dead-letter/` (rejected events), all created 0700, and
//! `herald.lock` (0600), which carries an exclusive `flock` for as long as
//! the [`DataDir`] lives and the holder's pid for the error message of the
//! next would-be holder. What goes inside the subdirectories is their
//! owners' business, not this module's.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Name of the lock file inside the data_dir.
pub const LOCK_FILE: &str = "herald.lock";
const QUEUE_DIR: &str = "queue";
const STATE_DIR: &str = "state";
const DEAD_LETTER_DIR: &str = "dead-letter";

/// Why a data_dir could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// Another process holds the lock.
    #[error(
        "data_dir {} is in use by another herald ({}); two agents must not share a data_dir",
        path.display(),
        pid.map_or_else(|| "pid unknown".to_owned(), |p| format!("pid {p}"))
    )]
    InUse {
        /// The data_dir.
        path: PathBuf,
        /// The holder's pid, as it wrote it in the lock file.
        pid: Option<u32>,
    },
    /// A directory or the lock file could not be created, opened or
    /// written.
    #[error("data_dir {op} failed on {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// An open, exclusively locked data_dir. The lock is released when this is
/// dropped (or the process exits, however it exits).
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    /// Holds the `flock`; closing it releases the lock.
    _lock: File,
}

impl DataDir {
    /// Creates the data_dir and its subdirectories if missing, and takes
    /// the lock without waiting.
    ///
    /// # Errors
    /// [`DataDirError::InUse`] if another process (or another `DataDir` in
    /// this one) holds it; [`DataDirError::Io`] if something cannot be
    /// created.
    pub fn open(path: &Path) -> Result<DataDir, DataDirError> {
        let io_err = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| DataDirError::Io { op, path, source }
        };
        let mut dirs = DirBuilder::new();
        dirs.recursive(true).mode(0o700);
        dirs.create(path)
            .map_err(io_err("create directory", path))?;
        let lock_path = path.join(LOCK_FILE);
        // Not truncated on open: until we hold the lock, its content is the
        // holder's pid, which the error message needs.
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err("open lock file", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let pid = lock
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse().ok());
                return Err(DataDirError::InUse {
                    path: path.to_path_buf(),
                    pid,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io_err("lock", &lock_path)(e));
            }
        }
        lock.set_len(0)
            .and_then(|()| lock.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(lock, "{}", std::process::id()))
            .map_err(io_err("write lock file", &lock_path))?;
        for sub in [QUEUE_DIR, STATE_DIR, DEAD_LETTER_DIR] {
            let sub = path.join(sub);
            dirs.create(&sub)
                .map_err(io_err("create directory", &sub))?;
        }
        Ok(DataDir {
            root: path.to_path_buf(),
            _lock: lock,
        })
    }

    /// The data_dir itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Where the disk queue lives.
    pub fn queue_dir(&self) -> PathBuf {
        self.root.join(QUEUE_DIR)
    }

    /// Where checkpoints and known state live.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }

    /// Where rejected events are written.
    pub fn dead_letter_dir(&self) -> PathBuf {
        self.root.join(DEAD_LETTER_DIR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_layout_with_private_permissions() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        let dd = DataDir::open(&root).unwrap();
        assert_eq!(mode(&root), 0o700);
        for sub in [dd.queue_dir(), dd.state_dir(), dd.dead_letter_dir()] {
            assert_eq!(mode(&sub), 0o700, "{}", sub.display());
        }
        let lock = root.join(LOCK_FILE);
        assert_eq!(mode(&lock), 0o600);
        let pid = std::fs::read_to_string(lock).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
    }

    #[test]
    fn second_open_fails_naming_pid_and_path_until_first_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        let first = DataDir::open(&root).unwrap();
        let err = DataDir::open(&root).unwrap_err();
        assert!(matches!(err, DataDirError::InUse { pid: Some(p), .. } if p == std::process::id()));
        assert_eq!(
            err.to_string(),
            format!(
                "data_dir {} is in use by another herald (pid {}); two agents must not share a data_dir",
                root.display(),
                std::process::id()
            )
        );
        drop(first);
        let again = DataDir::open(&root).unwrap();
        assert_eq!(again.path(), root);
    }

    #[test]
    fn stale_pid_from_a_dead_holder_does_not_block() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        std::fs::create_dir_all(&root).unwrap();
        // A crashed agent leaves its pid behind but no lock.
        std::fs::write(root.join(LOCK_FILE), "999999\n").unwrap();
        let dd = DataDir::open(&root).unwrap();
        let pid = std::fs::read_to_string(dd.path().join(LOCK_FILE)).unwrap();
        assert_eq!(pid, format!("{}\n", std::process::id()));
    }
}
