//! The `file.*` lifecycle observations of `watch = true`: what a file's
//! stat says (path, size, mtime, owner, mode), and the debounced
//! `file.modified` of a file that changed.

use std::fs::{File, Metadata};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::{MODIFIED_DEBOUNCE, State, Tracked};
use crate::observation::Observation;

/// The lifecycle facts last reported for a file.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Stat {
    pub(super) size: u64,
    pub(super) mtime_ns: i128,
}

/// Notes a change of size or mtime, and reports it once the debounce
/// allows.
pub(super) fn modified(
    source: &Arc<str>,
    t: &mut Tracked,
    now: Instant,
    events: &mut Vec<Observation>,
) {
    let Some(file) = t.file() else { return };
    let Ok(meta) = file.metadata() else { return };
    let stat = stat_of(&meta);
    let shrank = t.reported.is_some_and(|before| stat.size < before.size);
    if t.reported != Some(stat) {
        t.reported = Some(stat);
        t.modified_pending = true;
    }
    // A file being read reports its truncation when the reader notices it
    // (after its last lines); a file only watched reports it here.
    if shrank && !matches!(t.state, State::Reading(_)) {
        t.modified_pending = false;
        events.push(lifecycle(source, "file.truncated", &t.path, &meta));
        return;
    }
    if t.modified_pending
        && t.last_modified
            .is_none_or(|last| now.duration_since(last) >= MODIFIED_DEBOUNCE)
    {
        t.modified_pending = false;
        t.last_modified = Some(now);
        events.push(lifecycle(source, "file.modified", &t.path, &meta));
    }
}

pub(super) fn stat_of(meta: &Metadata) -> Stat {
    Stat {
        size: meta.len(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
    }
}

/// A `file.*` observation with the file's path, size, mtime, owner and
/// mode.
pub(super) fn lifecycle(
    source: &Arc<str>,
    kind: &'static str,
    path: &Path,
    meta: &Metadata,
) -> Observation {
    let mtime: Option<DateTime<Utc>> = meta.modified().ok().map(DateTime::from);
    Observation::new(source.clone(), kind)
        .with("path", path.display().to_string())
        .with("size", meta.len())
        .with(
            "mtime",
            mtime.map_or(serde_json::Value::Null, |t| {
                serde_json::Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            }),
        )
        .with("owner", meta.uid())
        .with("mode", format!("{:04o}", meta.mode() & 0o7777))
}

/// Where an open file is now, from the kernel's view of the descriptor.
pub(super) fn where_now(file: &File) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}
