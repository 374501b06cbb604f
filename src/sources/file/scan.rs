//! The rescan: expanding the globs into the files the source holds, and
//! telling from one scan to the next which files appeared (created, or a
//! rotation's new file), moved (renamed) or left (renamed away, deleted),
//! with the `file.*` lifecycle observations of `watch = true`. A file that
//! leaves the path its lines are reported under is marked so that a newer
//! file there waits for it (see `recover::draining`).

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::debug;

use super::lifecycle::{lifecycle, stat_of, where_now};
use super::{ROTATION_WINDOW, Source, StartAt, State, Stop, Tracked, discover};

/// A path a tracked file left (renamed away, deleted): when, and in which
/// rescan.
pub(super) struct Vacated {
    pub(super) at: Instant,
    scan: u64,
}

impl Source {
    /// How long after a file left a path a new file there is a rotation.
    pub(super) fn rotation_window(&self) -> Duration {
        (2 * self.config.rescan_interval).max(ROTATION_WINDOW)
    }

    /// Expands the globs, opens new files, notices renamed and vanished
    /// ones. Departures (renamed, deleted) are reported before arrivals
    /// (created, rotated), and whether an arrival is a rotation is decided
    /// only once every departure of this scan is known, whatever order the
    /// scan lists the paths in.
    pub(super) fn rescan(&mut self, startup: bool) -> Result<(), Stop> {
        let now = Instant::now();
        self.last_rescan = now;
        self.scans += 1;
        let scan = self.scans;
        self.watch.forget_missing();
        self.watch.ensure(&self.roots);
        let mut found = {
            let _busy = self.busy.enter();
            discover::scan(&self.config.paths, &self.config.exclude)
        };
        if startup {
            // Files whose inode a checkpoint names claim their fingerprint
            // first, so two files with equal leading bytes get back their
            // own checkpoints.
            found.sort_by_key(|f| !self.store.knows_inode(f.dev, f.ino));
        }
        let mut present = HashSet::with_capacity(found.len());
        let mut events = Vec::new();
        // New files: reported once this scan's departures are known.
        let mut arrivals = Vec::new();
        for f in found {
            let key = (f.dev, f.ino);
            present.insert(key);
            if let Some(t) = self.files.get_mut(&key) {
                t.gone = None;
                if t.path != f.path {
                    debug!(source = %self.name, from = %t.path.display(), to = %f.path.display(), "FileRenamed");
                    if self.config.watch
                        && let Some(Ok(meta)) = t.file().map(File::metadata)
                    {
                        events.push(
                            lifecycle(&self.name, "file.renamed", &f.path, &meta)
                                .with("from", t.path.display().to_string()),
                        );
                    }
                    self.vacated.remove(&f.path);
                    let from = std::mem::replace(&mut t.path, f.path);
                    self.vacated.insert(from, Vacated { at: now, scan });
                    let back = *t.path.to_string_lossy() == *t.report_path;
                    t.left = if back { None } else { t.left.or(Some(now)) };
                }
                continue;
            }
            let file = match File::open(&f.path) {
                Ok(file) => file,
                Err(e) => {
                    // Gone since the scan, or not readable: the next scan
                    // tries again.
                    debug!(source = %self.name, path = %f.path.display(), error = %e, "FileOpenFailed");
                    continue;
                }
            };
            let Ok(meta) = file.metadata() else { continue };
            // The scan and the open race with rotation: the descriptor is
            // the truth.
            let key = (meta.dev(), meta.ino());
            if self.files.contains_key(&key) {
                present.insert(key);
                continue;
            }
            present.insert(key);
            if self.config.watch && !startup {
                arrivals.push((f.path.clone(), meta.clone()));
            }
            // A new file where herald read another one before it stopped
            // replaced that one (rotated, rewritten): read it whole.
            let start = if startup
                && self.config.start_at == StartAt::End
                && !self.store.knows_path(&f.path.to_string_lossy())
            {
                meta.len()
            } else {
                0
            };
            let state = if self.config.tail {
                State::Waiting {
                    file,
                    since: None,
                    start,
                }
            } else {
                State::Watching(file)
            };
            self.watch_target(&f.path);
            let report_path: Arc<str> = Arc::from(f.path.to_string_lossy().as_ref());
            let seq = self.next_seq();
            self.files.insert(
                key,
                Tracked {
                    path: f.path,
                    report_path,
                    state,
                    gone: None,
                    last_growth: Instant::now(),
                    failing: false,
                    seq,
                    left: None,
                    copy: false,
                    dormant: false,
                    reported: Some(stat_of(&meta)),
                    modified_pending: false,
                    last_modified: None,
                },
            );
            self.fingerprint(key);
        }
        for (key, t) in &mut self.files {
            if present.contains(key) || t.gone.is_some() {
                continue;
            }
            t.gone = Some(now);
            t.left.get_or_insert(now);
            self.vacated
                .insert(t.path.clone(), Vacated { at: now, scan });
            let meta = t.file().and_then(|f| f.metadata().ok());
            let deleted = meta.as_ref().is_none_or(|m| m.nlink() == 0);
            debug!(source = %self.name, path = %t.path.display(), deleted, "FileGone");
            if self.config.watch
                && let Some(meta) = meta
            {
                let observation = if deleted {
                    lifecycle(&self.name, "file.deleted", &t.path, &meta)
                } else {
                    let to = t.file().and_then(where_now).unwrap_or_default();
                    lifecycle(&self.name, "file.renamed", &to, &meta)
                        .with("from", t.path.display().to_string())
                };
                events.push(observation);
            }
        }
        // A departure stays a rotation's first half for the window, and
        // until the scan after the one that saw it, however late that
        // comes (the loop may have waited on a full pipeline meanwhile).
        let window = self.rotation_window();
        self.vacated
            .retain(|_, v| now.duration_since(v.at) <= window || v.scan + 1 >= scan);
        for (path, meta) in arrivals {
            let kind = if self.vacated.remove(&path).is_some() {
                "file.rotated"
            } else {
                "file.created"
            };
            events.push(lifecycle(&self.name, kind, &path, &meta));
        }
        self.emit(events)
    }

    /// Watches the directory of a symlink's target too: writes to it
    /// show up there, not beside the link.
    pub(super) fn watch_target(&mut self, path: &Path) {
        let Ok(target) = std::fs::canonicalize(path) else {
            return;
        };
        if let Some(dir) = target.parent()
            && Some(dir) != path.parent()
        {
            let root = discover::Root {
                dir: dir.to_owned(),
                recursive: false,
            };
            if !self.roots.contains(&root) {
                self.roots.push(root);
                self.watch.ensure(&self.roots);
            }
        }
    }
}
