//! `follows` chaining: the last event id herald queued for each resource,
//! so the next event of that resource can name its predecessor, and the
//! small state file that keeps the chain across restarts.
//!
//! An event follows the previous one of its resource when their `occurred`
//! times are at most [`WINDOW`] apart (Prefect's SDK drops `follows`
//! beyond that) and the ids differ (a line re-read after a crash gets the
//! same id as before, and must not follow itself).
//!
//! The state lives in `<data_dir>/state/follows.json`, replaced atomically
//! (temp file, fsync, rename, fsync of the directory; mode 0600) at most
//! once per [`FLUSH_EVERY`] while events flow, and on
//! [`super::Mapper::flush_state`]. A missing or unreadable file starts an
//! empty chain: losing it costs one missing `follows` per resource, never
//! an event. Entries not updated for [`FORGET_AFTER`] are forgotten, and
//! at most [`MAX_RESOURCES`] are kept, so the file stays small whatever
//! the resource ids look like.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// How far apart two events of a resource may be and still chain.
pub const WINDOW: Duration = Duration::from_secs(5 * 60);
/// How often the state file is rewritten while events flow.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Entries not updated for this long (by the observations' clock) are
/// dropped at the next write.
pub const FORGET_AFTER: Duration = Duration::from_secs(10 * 60);
/// Most resources remembered; the least recently seen go first.
pub const MAX_RESOURCES: usize = 100_000;
/// The state file's name under the state directory.
pub const FILE_NAME: &str = "follows.json";

/// Why the state file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the follows state {}: {source}", path.display())]
pub struct StateError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Last {
    id: Uuid,
    /// The event's `occurred`, in microseconds since 1970.
    occurred: i64,
    /// When herald saw it (the observation's time), for forgetting.
    seen: i64,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    resources: HashMap<String, Last>,
}

/// The hashing of [`Follows`]' map: XXH3 with a seed chosen per process.
/// The map is looked up once per event with a resource id of a few dozen
/// bytes, where the default SipHash cost several times as much; the seed
/// keeps crafted ids from piling into one bucket all the same.
#[derive(Clone)]
struct KeyHashing {
    seed: u64,
}

impl Default for KeyHashing {
    fn default() -> Self {
        KeyHashing {
            seed: std::hash::RandomState::new().hash_one(FILE_NAME),
        }
    }
}

impl BuildHasher for KeyHashing {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.seed)
    }
}

struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxh3_64_with_seed(bytes, self.0);
    }

    /// A `str` ends its bytes with one `0xff`: folded in without a second
    /// pass.
    fn write_u8(&mut self, byte: u8) {
        self.0 = self.0.rotate_left(8) ^ u64::from(byte);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The last event of each resource.
pub(crate) struct Follows {
    last: HashMap<Box<str>, Last, KeyHashing>,
    path: Option<PathBuf>,
    dirty: bool,
    flushed: Instant,
}

fn micros(at: &DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

impl Follows {
    /// Loads the chain from `state_dir`, or starts empty (in memory only
    /// when there is no state directory).
    pub fn load(state_dir: Option<&Path>) -> Self {
        let path = state_dir.map(|dir| dir.join(FILE_NAME));
        let mut last = HashMap::default();
        if let Some(path) = &path {
            match fs::read(path) {
                Ok(bytes) => match serde_json::from_slice::<StateFile>(&bytes) {
                    Ok(file) if file.version == 1 => {
                        last = file
                            .resources
                            .into_iter()
                            .map(|(k, v)| (k.into_boxed_str(), v))
                            .collect();
                    }
                    Ok(file) => tracing::warn!(
                        path = %path.display(),
                        version = file.version,
                        "FollowsStateUnknownVersion: starting new chains"
                    ),
                    Err(error) => tracing::warn!(
                        path = %path.display(),
                        error = %error,
                        "FollowsStateCorrupt: starting new chains"
                    ),
                },
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => tracing::warn!(
                    path = %path.display(),
                    error = %error,
                    "FollowsStateUnreadable: starting new chains"
                ),
            }
        }
        Follows {
            last,
            path,
            dirty: false,
            flushed: Instant::now(),
        }
    }

    /// Hands `write` the event that an event `id` of `resource` that
    /// occurred at `occurred` follows, if any; then, when `write` says the
    /// event was kept, records `id` as the newest event of `resource`.
    /// One lookup of the resource, not two, when it is already known.
    pub fn previous_then_record(
        &mut self,
        resource: &str,
        id: Uuid,
        occurred: &DateTime<Utc>,
        seen: &DateTime<Utc>,
        write: impl FnOnce(Option<Uuid>) -> bool,
    ) -> bool {
        let now = Last {
            id,
            occurred: micros(occurred),
            seen: micros(seen),
        };
        let window = WINDOW.as_micros() as i64;
        match self.last.get_mut(resource) {
            Some(last) => {
                let previous = (last.id != id && (now.occurred - last.occurred).abs() <= window)
                    .then_some(last.id);
                if !write(previous) {
                    return false;
                }
                *last = now;
            }
            None => {
                if !write(None) {
                    return false;
                }
                self.last.insert(resource.into(), now);
            }
        }
        self.dirty = true;
        true
    }

    /// The event `id` follows, recording it.
    #[cfg(test)]
    fn chain(
        &mut self,
        resource: &str,
        id: Uuid,
        occurred: &DateTime<Utc>,
        seen: &DateTime<Utc>,
    ) -> Option<Uuid> {
        let mut previous = None;
        self.previous_then_record(resource, id, occurred, seen, |p| {
            previous = p;
            true
        });
        previous
    }

    /// The previous event of a resource, as remembered.
    #[cfg(test)]
    pub fn last(&self, resource: &str) -> Option<Uuid> {
        self.last.get(resource).map(|l| l.id)
    }

    /// Writes the state when it changed and [`FLUSH_EVERY`] has passed.
    pub fn maybe_flush(&mut self) -> Result<(), StateError> {
        if self.dirty && self.flushed.elapsed() >= FLUSH_EVERY {
            self.flush()
        } else {
            Ok(())
        }
    }

    /// Writes the state now, if it changed.
    pub fn flush(&mut self) -> Result<(), StateError> {
        self.flushed = Instant::now();
        let Some(path) = self.path.clone() else {
            self.dirty = false;
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        self.forget();
        let file = StateFile {
            version: 1,
            resources: self.last.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        };
        // Serializing a map of strings cannot fail.
        let bytes = serde_json::to_vec(&file).unwrap_or_default();
        write_atomically(&path, &bytes).map_err(|source| StateError { path, source })?;
        self.dirty = false;
        Ok(())
    }

    /// Drops entries not seen for [`FORGET_AFTER`] (by the newest
    /// observation's clock, so a replay of old logs is judged by its own
    /// time), then the least recently seen beyond [`MAX_RESOURCES`].
    fn forget(&mut self) {
        let Some(newest) = self.last.values().map(|l| l.seen).max() else {
            return;
        };
        let horizon = newest - FORGET_AFTER.as_micros() as i64;
        self.last.retain(|_, l| l.seen >= horizon);
        if self.last.len() > MAX_RESOURCES {
            let mut seen: Vec<i64> = self.last.values().map(|l| l.seen).collect();
            let cut = seen.len() - MAX_RESOURCES;
            let (_, nth, _) = seen.select_nth_unstable(cut);
            let nth = *nth;
            self.last.retain(|_, l| l.seen >= nth);
        }
    }
}

/// Replaces `path` with `bytes` so that a crash leaves the old file or the
/// new one, never a mix: temp file (0600), fsync, rename, fsync directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let temp = path.with_extension("json.tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::os::unix::fs::PermissionsExt;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0)
            .single()
            .expect("valid")
    }

    fn id(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    #[test]
    fn chains_within_five_minutes_and_never_to_itself() {
        let mut f = Follows::load(None);
        assert_eq!(f.chain("r", id(1), &at(0), &at(0)), None);
        assert_eq!(f.chain("r", id(2), &at(300), &at(300)), Some(id(1)));
        assert_eq!(
            f.chain("r", id(3), &at(601), &at(601)),
            None,
            "over 5 minutes"
        );
        assert_eq!(f.chain("r", id(3), &at(601), &at(601)), None, "same id");
        assert_eq!(f.chain("other", id(4), &at(601), &at(601)), None);
        assert_eq!(f.chain("r", id(5), &at(602), &at(602)), Some(id(3)));
    }

    #[test]
    fn survives_a_restart_in_a_private_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut f = Follows::load(Some(dir.path()));
        f.chain("r", id(1), &at(0), &at(0));
        f.flush().expect("written");
        let path = dir.path().join(FILE_NAME);
        let mode = fs::metadata(&path).expect("exists").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.path().join("follows.json.tmp").exists());
        let mut again = Follows::load(Some(dir.path()));
        assert_eq!(again.chain("r", id(2), &at(10), &at(10)), Some(id(1)));
    }

    #[test]
    fn a_corrupt_file_starts_new_chains() {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(dir.path().join(FILE_NAME), b"{not json").expect("write");
        let mut f = Follows::load(Some(dir.path()));
        assert_eq!(f.chain("r", id(1), &at(0), &at(0)), None);
        f.flush().expect("replaced");
        assert!(Follows::load(Some(dir.path())).last("r").is_some());
    }

    #[test]
    fn old_and_excess_entries_are_forgotten() {
        let mut f = Follows::load(None);
        f.chain("old", id(1), &at(0), &at(0));
        f.chain("new", id(2), &at(0), &at(601));
        f.forget();
        assert_eq!(f.last("old"), None);
        assert_eq!(f.last("new"), Some(id(2)));
    }
}
