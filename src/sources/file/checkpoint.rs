//! Where each file's reading stands, by fingerprint, kept in memory and in
//! one small state file per source (`<state_dir>/file-<source>.json`).
//!
//! The one rule: a checkpoint never runs ahead of the queue. The offset of
//! an entry moves only in [`Store::advance`], which the tailer attaches as
//! the `on_durable` callback of the last observation of every batch it
//! emits, so it runs only after the queue append covering that batch was
//! fdatasynced (and in emit order). A crash can therefore only make herald
//! re-read lines, whose derived ids make the repeat harmless; it can never
//! make it skip one.
//!
//! The file is rewritten atomically (temp file 0600, fsync, rename, fsync
//! of the directory) as soon as something changed and then at most once a
//! second, when the source stops, and one last time when the store itself
//! is dropped, which
//! happens after the agent's drain has fired (or dropped) the last callback
//! still holding it. A lost write only means re-reading, never a loss.
//!
//! Entries of files gone for [`FORGET_AFTER`] are pruned when the file is
//! written.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::{error, warn};

use super::fingerprint::{Fingerprint, TailCheck};

/// How long the checkpoint of a file that is no longer found is kept, in
/// case it comes back (renamed back, restored from a copy).
pub const FORGET_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// The state file's format version.
const VERSION: u32 = 1;

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// It could not be read or written.
    #[error("checkpoint file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// It is not a checkpoint file herald can read.
    #[error("checkpoint file {path} is unreadable: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// What is known of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The file's identity.
    pub fingerprint: Fingerprint,
    /// The first byte not yet durable in the queue: reading resumes here.
    pub offset: u64,
    /// The bytes just before `offset`, to tell a rewritten file.
    pub check: TailCheck,
    /// Where it was last seen, for people reading the state file.
    pub path: String,
    /// Device and inode it had, to prefer the same file when two share a
    /// fingerprint.
    pub dev: u64,
    /// See `dev`.
    pub ino: u64,
    /// When it was last seen open (unix seconds).
    pub seen: u64,
    /// Bumped by every claim, so callbacks of batches read by an earlier
    /// reader of this file (before a truncation, say) cannot move the
    /// offset of the current one.
    epoch: u32,
    /// Whether a tailer is reading this file now.
    live: bool,
}

impl Entry {
    /// Whether a tailer is reading this file now.
    pub fn is_live(&self) -> bool {
        self.live
    }
}

#[derive(Default)]
struct Inner {
    entries: HashMap<u128, Entry>,
    dirty: bool,
}

/// The checkpoints of one source.
pub struct Store {
    path: PathBuf,
    inner: Mutex<Inner>,
    /// Held while writing, so two writers (the tailing thread and the last
    /// callback) never interleave on the temp file, and the newer snapshot
    /// is the one left on disk.
    writing: Mutex<()>,
    /// Woken by every change, so the writer can save the first change
    /// after a quiet spell at once instead of on a fixed tick.
    changed: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave an entry half-updated
    // (every update is a few field stores), so the data stays usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    files: Vec<EntryOnDisk>,
}

#[derive(Serialize, Deserialize)]
struct EntryOnDisk {
    /// 32 hex digits.
    fingerprint: String,
    fingerprint_len: u32,
    offset: u64,
    check_len: u8,
    check_hash: u64,
    path: String,
    dev: u64,
    ino: u64,
    seen: u64,
}

impl Store {
    /// The store of the source named `source`, read from `state_dir`.
    /// A missing file is an empty store.
    ///
    /// # Errors
    /// [`CheckpointError`] when the file exists but cannot be read or
    /// parsed; [`Store::empty`] then gives a store that will replace it.
    pub fn load(state_dir: &Path, source: &str) -> Result<Store, CheckpointError> {
        let path = state_dir.join(format!("file-{source}.json"));
        let store = Store::empty(path.clone());
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(store),
            Err(source) => return Err(CheckpointError::Io { path, source }),
        };
        let corrupt = |reason: String| CheckpointError::Corrupt {
            path: path.clone(),
            reason,
        };
        let disk: OnDisk = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
        if disk.version != VERSION {
            return Err(corrupt(format!("unknown version {}", disk.version)));
        }
        {
            let mut inner = lock(&store.inner);
            for e in disk.files {
                let hash = u128::from_str_radix(&e.fingerprint, 16)
                    .map_err(|_| corrupt(format!("bad fingerprint {:?}", e.fingerprint)))?;
                let fingerprint = Fingerprint {
                    hash,
                    len: e.fingerprint_len,
                };
                inner.entries.insert(
                    hash,
                    Entry {
                        fingerprint,
                        offset: e.offset,
                        check: TailCheck {
                            len: e.check_len,
                            hash: e.check_hash,
                        },
                        path: e.path,
                        dev: e.dev,
                        ino: e.ino,
                        seen: e.seen,
                        epoch: 0,
                        live: false,
                    },
                );
            }
        }
        Ok(store)
    }

    /// An empty store that writes to `path`.
    pub fn empty(path: PathBuf) -> Store {
        Store {
            path,
            inner: Mutex::new(Inner::default()),
            writing: Mutex::new(()),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Where the store is written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entry of a fingerprint.
    pub fn get(&self, fingerprint: &Fingerprint) -> Option<Entry> {
        lock(&self.inner)
            .entries
            .get(&fingerprint.hash)
            .filter(|e| e.fingerprint.len == fingerprint.len)
            .cloned()
    }

    /// The distinct lengths of the fingerprints shorter than `len` that
    /// are not being read: a file fingerprinted while it was short has
    /// grown since, and is found again by hashing its first bytes at each
    /// of these lengths.
    pub fn shorter_lengths(&self, len: u32) -> Vec<u32> {
        let mut lens: Vec<u32> = lock(&self.inner)
            .entries
            .values()
            .filter(|e| e.fingerprint.len < len && !e.live)
            .map(|e| e.fingerprint.len)
            .collect();
        lens.sort_unstable();
        lens.dedup();
        lens
    }

    /// Whether some entry was last held by this device and inode: such a
    /// file is matched first at start-up.
    pub fn knows_inode(&self, dev: u64, ino: u64) -> bool {
        lock(&self.inner)
            .entries
            .values()
            .any(|e| e.dev == dev && e.ino == ino)
    }

    /// Whether some entry names `path` (where its file was read): a new
    /// file found there at start-up replaced a file herald was reading
    /// (rotated, or truncated and rewritten while herald was stopped), and
    /// is read from its beginning whatever `start_at` says.
    pub fn knows_path(&self, path: &str) -> bool {
        lock(&self.inner).entries.values().any(|e| e.path == path)
    }

    /// Every entry no reader holds, for the start-up search of streams
    /// left unfinished (see `recover`).
    pub fn idle_entries(&self) -> Vec<Entry> {
        let mut entries: Vec<Entry> = lock(&self.inner)
            .entries
            .values()
            .filter(|e| !e.live)
            .cloned()
            .collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path).then(a.seen.cmp(&b.seen)));
        entries
    }

    /// Starts reading the file `fingerprint` at `offset`: records where it
    /// is, marks it live and returns the epoch its callbacks must carry.
    pub fn claim(
        &self,
        fingerprint: Fingerprint,
        offset: u64,
        check: TailCheck,
        path: &str,
        dev: u64,
        ino: u64,
    ) -> u32 {
        let mut inner = lock(&self.inner);
        inner.dirty = true;
        let entry = inner
            .entries
            .entry(fingerprint.hash)
            .or_insert_with(|| Entry {
                fingerprint,
                offset,
                check,
                path: String::new(),
                dev,
                ino,
                seen: 0,
                epoch: 0,
                live: false,
            });
        entry.fingerprint = fingerprint;
        entry.offset = offset;
        entry.check = check;
        path.clone_into(&mut entry.path);
        entry.dev = dev;
        entry.ino = ino;
        entry.seen = now_secs();
        entry.epoch = entry.epoch.wrapping_add(1);
        entry.live = true;
        // No wake-up for the writer: a claim moves no checkpoint forward,
        // and waking the writer for it would spend its first prompt write
        // on a no-op. The tailing thread writes new files' entries itself.
        entry.epoch
    }

    /// The reader of `fingerprint` is done with it (the file is gone, or
    /// was truncated and is a new file now).
    pub fn release(&self, fingerprint: &Fingerprint, epoch: u32) {
        let mut inner = lock(&self.inner);
        if let Some(entry) = inner.entries.get_mut(&fingerprint.hash)
            && entry.epoch == epoch
        {
            entry.live = false;
            entry.seen = now_secs();
            inner.dirty = true;
            drop(inner);
            self.changed.notify_one();
        }
    }

    /// The reader of `fingerprint` goes on in another file (the copy of a
    /// file that was copied and truncated): a restart looks for that one.
    pub fn moved(&self, fingerprint: &Fingerprint, epoch: u32, dev: u64, ino: u64) {
        let mut inner = lock(&self.inner);
        if let Some(entry) = inner.entries.get_mut(&fingerprint.hash)
            && entry.epoch == epoch
        {
            entry.dev = dev;
            entry.ino = ino;
            inner.dirty = true;
        }
    }

    /// Moves a checkpoint: everything before `offset` is durable. Ignored
    /// when the file has been claimed again since (`epoch` is old).
    pub fn advance(&self, fingerprint: u128, epoch: u32, offset: u64, check: TailCheck) {
        let mut inner = lock(&self.inner);
        if let Some(entry) = inner.entries.get_mut(&fingerprint)
            && entry.epoch == epoch
        {
            entry.offset = offset;
            entry.check = check;
            inner.dirty = true;
            drop(inner);
            self.changed.notify_one();
        }
    }

    /// Asks the writer to save soon: a new file's entry must be on disk
    /// before a restart, or the file would count as never seen and
    /// `start_at = "end"` would skip what it holds.
    pub fn save_soon(&self) {
        self.changed.notify_one();
    }

    /// Resolves once something changed since the last call (at once if it
    /// already did).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Whether something changed since the last write.
    pub fn is_dirty(&self) -> bool {
        lock(&self.inner).dirty
    }

    /// Writes the state file if anything changed, logging a failure
    /// (the next write retries; until then a restart re-reads more).
    pub fn persist(&self) {
        let _writing = lock(&self.writing);
        let snapshot = {
            let mut inner = lock(&self.inner);
            if !inner.dirty {
                return;
            }
            inner.dirty = false;
            let forget_before = now_secs().saturating_sub(FORGET_AFTER.as_secs());
            inner
                .entries
                .retain(|_, e| e.live || e.seen >= forget_before);
            let mut files: Vec<EntryOnDisk> = inner
                .entries
                .values()
                .map(|e| EntryOnDisk {
                    fingerprint: format!("{:032x}", e.fingerprint.hash),
                    fingerprint_len: e.fingerprint.len,
                    offset: e.offset,
                    check_len: e.check.len,
                    check_hash: e.check.hash,
                    path: e.path.clone(),
                    dev: e.dev,
                    ino: e.ino,
                    seen: if e.live { now_secs() } else { e.seen },
                })
                .collect();
            files.sort_by(|a, b| a.path.cmp(&b.path));
            OnDisk {
                version: VERSION,
                files,
            }
        };
        if let Err(e) = self.write(&snapshot) {
            lock(&self.inner).dirty = true;
            error!(stage = "receiving", error = %e, "CheckpointWriteFailed: will retry; a restart may re-read lines");
        }
    }

    fn write(&self, snapshot: &OnDisk) -> Result<(), CheckpointError> {
        let io_error = |source| CheckpointError::Io {
            path: self.path.clone(),
            source,
        };
        let bytes = serde_json::to_vec_pretty(snapshot)
            .map_err(|e| io_error(io::Error::other(e.to_string())))?;
        let mut temp = self.path.clone().into_os_string();
        temp.push(".tmp");
        let temp = PathBuf::from(temp);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io_error)?;
        file.write_all(&bytes).map_err(io_error)?;
        file.sync_all().map_err(io_error)?;
        drop(file);
        fs::rename(&temp, &self.path).map_err(io_error)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_error)?;
        }
        Ok(())
    }
}

impl Drop for Store {
    /// The last holder of the store is the last durability callback of
    /// the drain (or the tailing thread, if nothing was in flight): what
    /// those callbacks recorded is written here, so the agent's drain
    /// after the source stopped is not lost.
    fn drop(&mut self) {
        if lock(&self.inner).dirty {
            self.persist();
        }
    }
}

/// Logs that the state file could not be used and what that means.
pub fn warn_unusable(e: &CheckpointError) {
    warn!(
        stage = "receiving",
        error = %e,
        "CheckpointLoadFailed: starting without checkpoints; files are read as if never seen, and the file is replaced at the next write"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn survives_a_reload_and_ignores_stale_callbacks() {
        let dir = tempfile::tempdir().expect("dir");
        let fp = Fingerprint::of(b"a file");
        {
            let store = Store::load(dir.path(), "app").expect("empty");
            let first = store.claim(fp, 0, TailCheck::default(), "/l/a", 1, 2);
            store.advance(fp.hash, first, 10, TailCheck::of(b"0123456789"));
            let second = store.claim(fp, 0, TailCheck::default(), "/l/a", 1, 2);
            store.advance(fp.hash, first, 99, TailCheck::default());
            assert_eq!(store.get(&fp).expect("entry").offset, 0, "stale epoch");
            store.advance(fp.hash, second, 20, TailCheck::of(b"x"));
            store.persist();
            assert!(!store.is_dirty());
        }
        let path = dir.path().join("file-app.json");
        let mode = fs::metadata(&path).expect("written").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let store = Store::load(dir.path(), "app").expect("reads back");
        let entry = store.get(&fp).expect("entry");
        assert_eq!(entry.offset, 20);
        assert_eq!(entry.check, TailCheck::of(b"x"));
        assert!(!entry.is_live());
        assert_eq!(store.shorter_lengths(1024), vec![6]);
        assert!(store.knows_inode(1, 2));
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("dir");
        fs::write(dir.path().join("file-x.json"), b"{not json").expect("write");
        assert!(matches!(
            Store::load(dir.path(), "x"),
            Err(CheckpointError::Corrupt { .. })
        ));
    }

    #[test]
    fn the_last_holder_writes_what_callbacks_recorded() {
        let dir = tempfile::tempdir().expect("dir");
        let fp = Fingerprint::of(b"b");
        let store = std::sync::Arc::new(Store::load(dir.path(), "s").expect("empty"));
        let epoch = store.claim(fp, 0, TailCheck::default(), "/b", 1, 1);
        store.persist();
        let callback = {
            let store = store.clone();
            crate::observation::OnDurable::new(move || {
                store.advance(fp.hash, epoch, 7, TailCheck::default());
            })
        };
        drop(store);
        // The callback owns the last reference and drops it after running.
        callback.fire();
        let reloaded = Store::load(dir.path(), "s").expect("reads");
        assert_eq!(reloaded.get(&fp).expect("entry").offset, 7);
    }
}
