//! A source's known state on disk: what it last announced (processes
//! running, a disk above its threshold, a probe down), so that after a
//! restart it announces only real transitions.
//!
//! One JSON file per source and purpose, `<state_dir>/<source>.<what>.json`,
//! rewritten atomically: a temp file (0600) written and fsynced, renamed
//! over the old one, and the directory fsynced. A crash leaves the old file
//! or the new one, never a mix. A file that cannot be read or parsed is
//! reported once and treated as absent: the source then starts as on its
//! first run, which costs repeated announcements (with the same ids), never
//! lost ones.
//!
//! The protocol the sources follow (the file source's checkpoint protocol):
//! the state saved must never run ahead of what is durably queued. A source
//! emits its transition observations first, with identity bytes that make
//! their ids deterministic, and saves the state that includes them only
//! once the last of them is durable (its `on_durable` fired). A crash in
//! between re-emits the same transitions with the same ids, and the
//! endpoint keeps one copy.
//!
//! [`KnownStateSaver`] implements that protocol for a source whose state is
//! one value: the durable callback hands the state over, the source's loop
//! saves it off the async workers.
//!
//! This module only stores bytes; what a state holds is each source's
//! business.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use tokio::sync::Notify;
use tracing::warn;

use crate::observation::OnDurable;

/// Where one source keeps one kind of known state.
#[derive(Clone, Debug)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// `<state_dir>/<source>.<what>.json`. Source names are restricted to
    /// letters, digits, `-`, `_` and `.` by the config, so the name is a
    /// plain file name.
    pub fn new(state_dir: &Path, source: &str, what: &str) -> Self {
        StateFile {
            path: state_dir.join(format!("{source}.{what}.json")),
        }
    }

    /// The file's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state, or `None` when there is none yet or it cannot be
    /// used (reported, with the reason).
    pub fn load<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(
                    stage = "receiving",
                    path = %self.path.display(),
                    error = %e,
                    "KnownStateUnreadable: starting as on a first run"
                );
                return None;
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(state) => Some(state),
            Err(e) => {
                tracing::warn!(
                    stage = "receiving",
                    path = %self.path.display(),
                    error = %e,
                    "KnownStateCorrupt: starting as on a first run"
                );
                None
            }
        }
    }

    /// Replaces the saved state. Blocking (two fsyncs): call it from
    /// `spawn_blocking` or a thread of its own.
    ///
    /// # Errors
    /// The I/O error; the previous state is then still in place.
    pub fn save<T: serde::Serialize>(&self, value: &T) -> io::Result<()> {
        let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
        let mut temp = self.path.clone().into_os_string();
        temp.push(".tmp");
        let temp = PathBuf::from(temp);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// Saves a source's known state once its announcements are durable: the
/// `on_durable` callback of an announcement hands over the state that
/// includes it, the source's loop saves it off the async workers
/// ([`KnownStateSaver::save_pending`]), and whatever is still pending when
/// the last holder goes (the agent drained at shutdown) is saved then.
pub struct KnownStateSaver<T: Serialize + Send + 'static> {
    file: StateFile,
    /// The newest durable state not yet saved.
    pending: Mutex<Option<T>>,
    /// Woken when `pending` is set.
    ready: Notify,
}

impl<T: Serialize + Send + 'static> KnownStateSaver<T> {
    /// A saver writing to `file`.
    pub fn new(file: StateFile) -> Arc<Self> {
        Arc::new(KnownStateSaver {
            file,
            pending: Mutex::new(None),
            ready: Notify::new(),
        })
    }

    /// The callback for the last observation of a batch: `state` (which
    /// includes the batch) becomes saveable once the batch is durable.
    pub fn on_durable(self: &Arc<Self>, state: T) -> OnDurable {
        let saver = Arc::clone(self);
        OnDurable::new(move || {
            *saver.pending.lock().unwrap_or_else(PoisonError::into_inner) = Some(state);
            saver.ready.notify_one();
        })
    }

    /// Waits until a durable state is pending.
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Saves the pending state, if any, on a blocking thread.
    pub async fn save_pending(self: &Arc<Self>) {
        let saver = Arc::clone(self);
        let saved = tokio::task::spawn_blocking(move || saver.save_now()).await;
        if let Err(e) = saved {
            warn!(stage = "receiving", path = %self.file.path().display(), error = %e, "KnownStateNotSaved");
        }
    }

    /// Saves the pending state, if any, here and now (blocking).
    fn save_now(&self) {
        let state = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(state) = state
            && let Err(e) = self.file.save(&state)
        {
            // The state on disk stays behind: a restart announces again,
            // with the same ids. Never a loss.
            warn!(stage = "receiving", path = %self.file.path().display(), error = %e, "KnownStateNotSaved");
        }
    }
}

impl<T: Serialize + Send + 'static> Drop for KnownStateSaver<T> {
    fn drop(&mut self) {
        // The last callback fired (or was dropped) after the source
        // stopped: keep what became durable meanwhile.
        self.save_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Known {
        pids: Vec<u32>,
    }

    #[test]
    fn saves_and_loads_atomically_with_private_permissions() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = StateFile::new(dir.path(), "procs", "known");
        assert_eq!(file.load::<Known>(), None, "nothing saved yet");
        file.save(&Known { pids: vec![1, 2] }).expect("saved");
        file.save(&Known { pids: vec![3] }).expect("saved again");
        assert_eq!(file.load::<Known>(), Some(Known { pids: vec![3] }));
        let mode = fs::metadata(file.path())
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            file.path().file_name().and_then(|n| n.to_str()),
            Some("procs.known.json")
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("listed")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn a_corrupt_file_is_treated_as_absent() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = StateFile::new(dir.path(), "procs", "known");
        fs::write(file.path(), b"{\"pids\": [1, ").expect("written");
        assert_eq!(file.load::<Known>(), None);
        file.save(&Known { pids: vec![7] }).expect("saved over it");
        assert_eq!(file.load::<Known>(), Some(Known { pids: vec![7] }));
    }
}
