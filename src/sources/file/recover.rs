//! Finishing streams whose file is no longer where herald read it. The
//! globs decide which files to start tailing; a stream herald began is
//! read to its end wherever its bytes went:
//! - a file renamed while herald was stopped is found again at start-up
//!   by its device and inode among the entries of the directory it was in,
//!   under any name, confirmed by its fingerprint and the bytes before its
//!   checkpoint;
//! - a file copied and then truncated (logrotate's `copytruncate`), at
//!   start-up or while herald reads it, is finished from the copy: a file
//!   of that directory that begins like it and holds the same bytes just
//!   before the checkpoint. Its lines keep the stream's ids, so a line
//!   read from both places is one event.
//!
//! A stream is looked for as long as its checkpoint is kept
//! ([`FORGET_AFTER`](super::checkpoint::FORGET_AFTER) after it was last
//! read); a file deleted while herald was stopped is gone. Compressed
//! copies are not read. This module finds and adopts; the loop in the
//! parent module reads, and keeps the lines of one path in order (see
//! [`draining`]).

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use tracing::{info, warn};

use super::checkpoint::Entry;
use super::fingerprint::{self, Fingerprint, TailCheck};
use super::lifecycle::{lifecycle, stat_of};
use super::tail::Tail;
use super::{Key, LINGER, Source, State, Stop, Tracked, at_eof, discover};

/// A renamed file found at start-up with nothing unread is still taken up
/// if it changed this recently: its writer may not have reopened yet.
const RECENT: Duration = Duration::from_secs(60);
/// Longest a file that left its path and still grows holds back the file
/// that replaced it, once it has nothing unread (a writer that never
/// reopens must not starve the new file).
const MAX_HOLD: Duration = Duration::from_secs(60);

/// A regular file in a directory.
struct Candidate {
    path: PathBuf,
    key: Key,
    size: u64,
    mtime: SystemTime,
}

/// The regular files of `dir` (symlinks followed), newest first.
fn list_dir(dir: &Path) -> Vec<Candidate> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<Candidate> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let path = entry.path();
            let meta = fs::metadata(&path).ok()?;
            meta.is_file().then(|| Candidate {
                key: (meta.dev(), meta.ino()),
                size: meta.len(),
                mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                path,
            })
        })
        .collect();
    found.sort_by_key(|c| std::cmp::Reverse(c.mtime));
    found
}

/// The directory a file of `path` lives in: a symlink's target's.
fn dir_of(path: &Path) -> Option<PathBuf> {
    let mut path = path.to_owned();
    // A dangling link (its target rotated away) still names the
    // directory; a few levels are enough for real layouts.
    for _ in 0..8 {
        let Ok(target) = fs::read_link(&path) else {
            break;
        };
        path = match path.parent() {
            Some(dir) if target.is_relative() => dir.join(target),
            _ => target,
        };
    }
    path.parent().map(Path::to_owned)
}

/// Whether `file` begins with the bytes of `fp`: its plain hash, or the
/// one told apart by the device and inode of the file it was taken from.
fn begins_with(file: &File, fp: Fingerprint, origin: Key, buf: &mut Vec<u8>) -> bool {
    let len = fp.len as usize;
    match fingerprint::read_head(file, len, buf) {
        Ok(got) if got == len => {
            let head = Fingerprint::of(&buf[..got]);
            head == fp || head.mixed_with(origin.0, origin.1) == fp
        }
        _ => false,
    }
}

/// Whether `file` is the stream `fp` up to `offset`: it begins like it and
/// holds `check` just before `offset`.
fn continues(
    file: &File,
    fp: Fingerprint,
    origin: Key,
    offset: u64,
    check: TailCheck,
    buf: &mut Vec<u8>,
) -> bool {
    begins_with(file, fp, origin, buf) && check.holds(file, offset).unwrap_or(false)
}

/// The copy of the stream `fp` read up to `offset` among `listing`: not
/// the file `not`, at least `offset` long, the newest that matches.
fn find_copy(
    listing: &[Candidate],
    fp: Fingerprint,
    origin: Key,
    offset: u64,
    check: TailCheck,
    not: Key,
    buf: &mut Vec<u8>,
) -> Option<(File, usize)> {
    listing.iter().enumerate().find_map(|(i, c)| {
        if c.key == not || c.size < offset {
            return None;
        }
        let file = File::open(&c.path).ok()?;
        continues(&file, fp, origin, offset, check, buf).then_some((file, i))
    })
}

/// Whether a file that left its path still holds back a newer file
/// reported under that path: it has unread bytes, or (for a while, and
/// only the newest of the files that left the path: an older one has no
/// writer left) it grew lately. A copy is done once read to its end.
pub(super) fn draining(t: &Tracked, now: Instant, newest: bool) -> bool {
    let Some(left) = t.left else {
        return false;
    };
    if t.failing {
        return false;
    }
    let quiet = now.duration_since(left.max(t.last_growth)) >= LINGER;
    let held_long = now.duration_since(left) >= MAX_HOLD;
    match &t.state {
        State::Reading(tail) => match at_eof(tail) {
            Some(false) => true,
            Some(true) => newest && !t.copy && !quiet && !held_long,
            None => false,
        },
        State::Waiting { .. } => newest && !quiet,
        State::Watching(_) | State::Closed => false,
    }
}

/// How a checkpointed stream was found again.
struct Found {
    file: File,
    path: PathBuf,
    key: Key,
    size: u64,
    copy: bool,
    /// Its last write: files found for one path are read oldest first.
    mtime: SystemTime,
}

impl Source {
    /// At start-up, before the first scan: takes up every stream whose
    /// file is no longer at its path (renamed, or copied and truncated)
    /// and still has lines to read.
    pub(super) fn recover_unfinished(&mut self) {
        if !self.config.tail {
            return;
        }
        let mut listings: Vec<(PathBuf, Vec<Candidate>)> = Vec::new();
        let mut found_all = Vec::new();
        for entry in self.store.idle_entries() {
            let path = Path::new(&entry.path);
            if !discover::matches(&self.config.paths, &self.config.exclude, path) {
                continue;
            }
            let Some(dir) = dir_of(path) else { continue };
            let i = match listings.iter().position(|(d, _)| *d == dir) {
                Some(i) => i,
                None => {
                    let listing = list_dir(&dir);
                    listings.push((dir, listing));
                    listings.len() - 1
                }
            };
            if let Some(found) = self.locate(&entry, path, &listings[i].1) {
                found_all.push((found, entry));
            }
        }
        // In the order they were written: after several rotations while
        // herald was stopped, the oldest rotated file goes first.
        found_all.sort_by_key(|(found, _)| found.mtime);
        for (found, entry) in found_all {
            self.adopt(found, &entry);
        }
    }

    /// Whether `file` is the stream of `entry` up to its checkpoint.
    fn holds(&mut self, file: &File, entry: &Entry) -> bool {
        let origin = (entry.dev, entry.ino);
        continues(
            file,
            entry.fingerprint,
            origin,
            entry.offset,
            entry.check,
            &mut self.head,
        )
    }

    /// Where the stream of `entry` is now, if it is not at `path` and has
    /// something left to read.
    fn locate(&mut self, entry: &Entry, path: &Path, listing: &[Candidate]) -> Option<Found> {
        let origin = (entry.dev, entry.ino);
        let at_path = fs::metadata(path).ok();
        if let Some(meta) = &at_path
            && (meta.dev(), meta.ino()) == origin
        {
            let file = File::open(path).ok()?;
            if meta.len() >= entry.offset && self.holds(&file, entry) {
                // Where it was: the scan resumes it.
                return None;
            }
            // Truncated (and maybe written again) while herald was stopped.
            let copy = find_copy(
                listing,
                entry.fingerprint,
                origin,
                entry.offset,
                entry.check,
                origin,
                &mut self.head,
            );
            let Some((file, i)) = copy else {
                self.stats
                    .file_truncations_unrecovered
                    .fetch_add(1, Ordering::Relaxed);
                warn!(source = %self.name, path = %path.display(), checkpoint = entry.offset, "FileTruncationUnrecovered: it was truncated while herald was stopped and no copy of it was found; what it held past the checkpoint is lost");
                return None;
            };
            let c = &listing[i];
            return (c.size > entry.offset).then(|| Found {
                file,
                path: c.path.clone(),
                key: c.key,
                size: c.size,
                copy: true,
                mtime: c.mtime,
            });
        }
        // Renamed (or moved away and replaced): found by its inode, or, if
        // it was copied and removed, by its content.
        let found = listing
            .iter()
            .enumerate()
            .find(|(_, c)| c.key == origin)
            .and_then(|(i, c)| {
                let file = File::open(&c.path).ok()?;
                (c.size >= entry.offset && self.holds(&file, entry)).then_some((file, i, false))
            })
            .or_else(|| {
                let not = at_path.as_ref().map_or((0, 0), |m| (m.dev(), m.ino()));
                find_copy(
                    listing,
                    entry.fingerprint,
                    origin,
                    entry.offset,
                    entry.check,
                    not,
                    &mut self.head,
                )
                .map(|(file, i)| (file, i, true))
            });
        let (file, i, copy) = found?;
        let c = &listing[i];
        let recent = c.mtime.elapsed().is_ok_and(|age| age < RECENT);
        (c.size > entry.offset || (recent && !copy)).then(|| Found {
            file,
            path: c.path.clone(),
            key: c.key,
            size: c.size,
            copy,
            mtime: c.mtime,
        })
    }

    /// Reads a found stream from its checkpoint, under the path it was
    /// read under, ahead of any newer file at that path.
    fn adopt(&mut self, found: Found, entry: &Entry) {
        if self.files.contains_key(&found.key) {
            return;
        }
        let epoch = self.store.claim(
            entry.fingerprint,
            entry.offset,
            entry.check,
            &entry.path,
            found.key.0,
            found.key.1,
        );
        let report_path: Arc<str> = Arc::from(entry.path.as_str());
        let reported = found.file.metadata().ok().map(|m| stat_of(&m));
        let tail = match Tail::new(
            found.file,
            report_path.clone(),
            entry.fingerprint,
            epoch,
            entry.offset,
            self.store.clone(),
            self.settings.clone(),
        ) {
            Ok(tail) => tail,
            Err(e) => {
                warn!(source = %self.name, path = %found.path.display(), error = %e, "FileRecoveryFailed: cannot read it");
                self.store.release(&entry.fingerprint, epoch);
                return;
            }
        };
        info!(source = %self.name, path = %found.path.display(), was = %entry.path, offset = entry.offset, size = found.size, copy = found.copy, "FileStreamRecovered: reading the rest of a file that left its path");
        self.stats
            .file_streams_recovered
            .fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let seq = self.next_seq();
        self.watch_target(&found.path);
        self.files.insert(
            found.key,
            Tracked {
                path: found.path,
                report_path,
                state: State::Reading(Box::new(tail)),
                gone: Some(now),
                last_growth: now,
                failing: false,
                seq,
                left: Some(now),
                copy: found.copy,
                dormant: false,
                reported,
                modified_pending: false,
                last_modified: None,
            },
        );
    }

    /// A file being read was truncated: if a copy of it holds what was not
    /// read yet, goes on reading the stream there, and the truncated file
    /// waits as a new file until the copy is done. Returns whether it did.
    pub(super) fn follow_copy(&mut self, key: Key) -> Result<bool, Stop> {
        let Some(t) = self.files.get(&key) else {
            return Ok(false);
        };
        let State::Reading(tail) = &t.state else {
            return Ok(false);
        };
        if t.copy {
            return Ok(false);
        }
        let Some(dir) = dir_of(&t.path) else {
            return Ok(false);
        };
        let listing = list_dir(&dir);
        let (fp, position, check) = (tail.fingerprint(), tail.position(), tail.check());
        let Some((file, i)) = find_copy(&listing, fp, key, position, check, key, &mut self.head)
        else {
            return Ok(false);
        };
        let c = &listing[i];
        // A copy the globs matched and that already reads as its own
        // stream is read in full there.
        let existing = self.files.get(&c.key);
        if existing.is_some_and(|e| !matches!(e.state, State::Waiting { .. })) {
            return Ok(false);
        }
        let existing = self.files.remove(&c.key);
        let seq = self.next_seq();
        let now = Instant::now();
        let Some(t) = self.files.get_mut(&key) else {
            return Ok(false);
        };
        let State::Reading(mut tail) = std::mem::replace(&mut t.state, State::Closed) else {
            return Ok(false);
        };
        let lost = tail.seen_size().saturating_sub(c.size);
        let truncated = tail.switch_file(file);
        self.store.moved(&fp, tail.epoch(), c.key.0, c.key.1);
        self.stats
            .file_streams_recovered
            .fetch_add(1, Ordering::Relaxed);
        self.stats
            .file_truncation_lost_bytes
            .fetch_add(lost, Ordering::Relaxed);
        info!(source = %self.name, path = %t.path.display(), copy = %c.path.display(), read_to = position, copy_size = c.size, lost, "FileTruncated: finishing it from its copy, then reading it again from the start");
        let mut events = Vec::new();
        if self.config.watch
            && let Ok(meta) = truncated.metadata()
        {
            events.push(lifecycle(&self.name, "file.truncated", &t.path, &meta));
        }
        let copy = Tracked {
            path: c.path.clone(),
            report_path: t.report_path.clone(),
            state: State::Reading(tail),
            gone: existing.as_ref().map_or(Some(now), |e| e.gone),
            last_growth: now,
            failing: false,
            seq: t.seq,
            left: Some(now),
            copy: true,
            dormant: false,
            reported: existing.as_ref().and_then(|e| e.reported),
            modified_pending: false,
            last_modified: None,
        };
        t.state = State::Waiting {
            file: truncated,
            since: None,
            start: 0,
        };
        t.seq = seq;
        t.left = None;
        t.last_growth = now;
        self.files.insert(c.key, copy);
        self.emit(events)?;
        Ok(true)
    }

    pub(super) fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }
}
