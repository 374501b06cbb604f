//! The file source: turns what applications write to log files into
//! `line` observations, without losing or repeating a line, and (with
//! `watch = true`) reports file lifecycle changes as `file.*` observations.
//!
//! # How it works
//!
//! One thread per source (blocking file I/O does not belong on the async
//! workers) loops over: expand the globs ([`discover`], on every inotify
//! hint from [`watch`] and at least every `rescan_interval`), read every
//! open file one chunk at a time ([`tail`]), emit each chunk's lines as one
//! batch, and wait for the next hint or deadline. Emitting waits while the
//! pipeline is full, so a blocked queue simply stops the reading; memory
//! is bounded by the chunk size, `max_line_bytes` and the batch limits.
//!
//! # Identity, rotation and truncation
//!
//! A file is known by its [`fingerprint`] (a hash of its first
//! `fingerprint_bytes`; a shorter file waits up to `fingerprint_timeout`)
//! and, while open, by device and inode. Its lines are reported under the
//! path it was found at, wherever it goes. Reading goes through the open
//! descriptor, so:
//! - rename rotation: the old file is still read to its end under its old
//!   descriptor; once it stays idle for [`LINGER`] its last line without
//!   a newline is complete, and it is closed after [`DORMANT`] without
//!   growth (a writer that reopens late is still read); the new
//!   file at the path is a new file, read from its beginning, but only
//!   once the old one has nothing unread and was idle for [`LINGER`], so
//!   the path's lines keep their write order;
//! - deletion while open: drained the same way, then closed;
//! - truncation (the file got shorter, or the bytes just before the read
//!   position changed): if a file in its directory begins like it and
//!   holds the bytes just before the read position (the copy of
//!   copytruncate), the rest is read from that copy first, under the
//!   same ids; then the last unfinished line is emitted, and the file is
//!   fingerprinted again and read from 0;
//! - a file that comes back with a known fingerprint (renamed back, a
//!   copy) resumes at its checkpoint; so does every file after a restart,
//!   whatever `start_at` says, unless it was truncated meanwhile.
//!
//! At start-up, before the first scan, [`recover`] takes up the files
//! herald was reading that left their path while it was stopped: renamed
//! (found by inode in the directory they were in, under any name), or
//! copied and truncated (found by content). A rotated file is looked for
//! as long as its checkpoint is kept
//! ([`FORGET_AFTER`](checkpoint::FORGET_AFTER) after it was last read); a
//! file deleted while herald was stopped is gone, and what it held past
//! its checkpoint with it.
//!
//! Copytruncate can still lose what the application wrote between the end
//! of the copy and the truncation (logrotate's own race: those bytes are
//! in neither file), and a truncation with no copy beside it loses what
//! herald had not read. Both are counted (bytes lost, truncations not
//! recovered) in the agent's stats and logged.
//!
//! # Lifecycle events
//!
//! With `watch = true`, every rescan compares what the globs find with
//! the files the source holds open (the files found at start-up are not
//! reported):
//! - `file.created`: a file appears at a path no file left lately;
//! - `file.rotated`: a file appears at a path another file left (renamed
//!   away or deleted) at most [`ROTATION_WINDOW`] or two `rescan_interval`s
//!   earlier, whichever is longer, or by the rescan right after the one
//!   that saw it leave, however late that comes;
//! - `file.renamed`: a held file is found at another path, or leaves the
//!   globs but still exists (`path` is where it is now, `from` where it
//!   was);
//! - `file.deleted`: a held file leaves the globs and has no name left;
//! - `file.modified`: its size or mtime changed, at most once a second;
//! - `file.truncated`: it got shorter, or was rewritten under the reader.
//!
//! A rotation (logrotate's create mode: rename, then create) is the old
//! file's `file.renamed` (or `file.deleted`), then `file.rotated` for the
//! path, in that order, whether one rescan sees both steps or one sees the
//! rename and a later one the new file. Only a new file that comes later
//! than the window is `file.created`.
//!
//! # Checkpoints and ids
//!
//! See [`checkpoint`]: offsets move only once the queue holds the lines
//! before them durably. A line's identity is (fingerprint, start offset,
//! hash of the line), so a line re-read after a crash gets the same event
//! id and the endpoint keeps one copy.

pub mod checkpoint;
pub mod config;
pub mod container;
pub mod discover;
pub mod fingerprint;
mod lifecycle;
mod recover;
mod scan;
pub mod tail;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use super::{Emitter, Starting};
use crate::metrics::Stats;
use crate::observation::Observation;
use checkpoint::Store;
pub use config::{FileConfig, Format, Multiline, StartAt};
use fingerprint::{Fingerprint, TailCheck};
use lifecycle::{Stat, lifecycle, modified};
use scan::Vacated;
use tail::{LineSettings, Outcome, Tail};
use watch::{POLL_INTERVAL, Watch};

/// How long a file that is gone from its path (rotated away, deleted) is
/// still read after its last growth, for writers that have not reopened
/// yet. Then its last unfinished line is emitted and it is closed.
pub const LINGER: Duration = Duration::from_secs(2);
/// How long a file renamed away and drained is still watched for growth
/// (a writer that reopens late) before it is closed. Its last line
/// without a newline is complete after [`LINGER`].
pub const DORMANT: Duration = Duration::from_secs(300);
/// Most often the checkpoint file is rewritten.
const PERSIST_EVERY: Duration = Duration::from_secs(1);
/// Least time between two `file.modified` observations of one file.
const MODIFIED_DEBOUNCE: Duration = Duration::from_secs(1);
/// A file appearing at a path another file left at most this long ago
/// (or two `rescan_interval`s, if longer) is a rotation, not a creation.
pub const ROTATION_WINDOW: Duration = Duration::from_secs(5);

/// Starts the source on its own thread; the tracker waits for it.
pub fn spawn(
    config: FileConfig,
    state_dir: PathBuf,
    stats: Arc<Stats>,
    starting: Starting,
    emitter: Emitter,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    let name: Arc<str> = Arc::from(config.name.as_str());
    let store = Arc::new(match Store::load(&state_dir, &config.name) {
        Ok(store) => store,
        Err(e) => {
            checkpoint::warn_unusable(&e);
            Store::empty(state_dir.join(format!("file-{}.json", config.name)))
        }
    });
    let (wake_tx, wake_rx) = sync_channel(1);
    {
        let cancel = cancel.clone();
        let wake = wake_tx.clone();
        tracker.spawn(async move {
            cancel.cancelled().await;
            let _ = wake.try_send(());
        });
    }
    tracker.spawn(persist_every_second(store.clone(), cancel.clone()));
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let handle = Handle::current();
    let thread_name = format!("herald-file-{name}");
    let spawned = std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            // Dropped when the thread ends, however it ends.
            let _done = done_tx;
            let watch = Watch::start(name.clone(), wake_tx);
            let mut source = Source::new(config, store, stats, emitter, cancel, handle, watch);
            source.run(&wake_rx, starting);
        });
    match spawned {
        Ok(_) => {
            tracker.spawn(async move {
                let _ = done_rx.await;
            });
        }
        Err(e) => {
            error!(stage = "receiving", error = %e, "FileSourceFailed: cannot start its thread")
        }
    }
}

/// Writes the checkpoints when they change, at most once a second. This
/// runs apart from the tailing thread because that thread may be blocked
/// for long in a full pipeline while durability callbacks keep moving
/// offsets; and it writes the first change after a quiet spell at once,
/// so that a crash soon after start does not send the whole file again.
async fn persist_every_second(store: Arc<Store>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = store.changed() => {}
        }
        if store.is_dirty() {
            let store = store.clone();
            let _ = tokio::task::spawn_blocking(move || store.persist()).await;
        }
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(PERSIST_EVERY) => {}
        }
    }
}

/// The source stopped: cancelled, or the pipeline closed.
struct Stop;

type Key = (u64, u64);

/// What is being done with one open file.
enum State {
    /// Waiting for enough bytes (or the timeout) to fingerprint it.
    Waiting {
        file: File,
        /// When it was first seen non-empty.
        since: Option<Instant>,
        /// Where to start if it turns out to be a file never seen.
        start: u64,
    },
    /// Reading lines.
    Reading(Box<Tail>),
    /// Only watched (`tail = false`).
    Watching(File),
    /// Between two of the above, or after a failure.
    Closed,
}

/// One file the source has open.
struct Tracked {
    /// Where it is now, as far as the last scan knows.
    path: PathBuf,
    /// The path its lines are reported under: where it was found.
    report_path: Arc<str>,
    state: State,
    /// Since when the globs no longer find it.
    gone: Option<Instant>,
    /// When it last grew (or was found).
    last_growth: Instant,
    /// A read failed; logged once until a read succeeds.
    failing: bool,
    /// In the order files were taken up: of two files reported under one
    /// path, the older one's lines go first.
    seq: u64,
    /// Since when it is no longer at `report_path` (rotated away, deleted,
    /// or a copy of the file there): while it still grows, a newer file
    /// at that path waits (see `Source::draining`).
    left: Option<Instant>,
    /// The copy of a file that was copied and then truncated: nothing
    /// writes to it, so it is closed as soon as it is read to its end.
    copy: bool,
    /// Gone, drained and idle for [`LINGER`]: its last line was finished,
    /// and it is only watched for growth until [`DORMANT`].
    dormant: bool,
    /// For `file.modified`: what was reported last, whether a change is
    /// waiting for the debounce, and when the last one was reported.
    reported: Option<Stat>,
    modified_pending: bool,
    last_modified: Option<Instant>,
}

impl Tracked {
    fn file(&self) -> Option<&File> {
        match &self.state {
            State::Waiting { file, .. } | State::Watching(file) => Some(file),
            State::Reading(tail) => Some(tail.file()),
            State::Closed => None,
        }
    }
}

struct Source {
    name: Arc<str>,
    config: FileConfig,
    settings: Arc<LineSettings>,
    store: Arc<Store>,
    files: BTreeMap<Key, Tracked>,
    roots: Vec<discover::Root>,
    watch: Watch,
    emitter: Emitter,
    cancel: CancellationToken,
    handle: Handle,
    /// Read buffer shared by every file: reads are sequential.
    buf: Vec<u8>,
    /// Lines in the last chunk read, to size the next batch: growing a
    /// batch by doubling copies every observation in it several times.
    batch_hint: usize,
    head: Vec<u8>,
    last_rescan: Instant,
    /// Rescans done so far, to tell the first one after a departure.
    scans: u64,
    /// Paths files left lately: a new file there is a rotation.
    vacated: HashMap<PathBuf, Vacated>,
    /// The next `Tracked::seq`.
    next_seq: u64,
    /// The agent's counters (streams recovered, bytes lost to truncation).
    stats: Arc<Stats>,
    /// Set while a read or a scan is under way, for the watchdog: a file
    /// system that does not answer (a hung NFS mount) shows here.
    busy: Arc<crate::liveness::Busy>,
}

impl Source {
    fn new(
        config: FileConfig,
        store: Arc<Store>,
        stats: Arc<Stats>,
        emitter: Emitter,
        cancel: CancellationToken,
        handle: Handle,
        watch: Watch,
    ) -> Self {
        let name: Arc<str> = Arc::from(config.name.as_str());
        let settings = Arc::new(LineSettings {
            source: name.clone(),
            max_line_bytes: config.max_line_bytes,
            json: config.json,
            multiline: config.multiline.clone(),
            format: config.format,
            kubernetes: config.kubernetes,
            stats: stats.clone(),
        });
        let roots = config.paths.iter().map(discover::root).collect();
        let busy = stats.source_busy(&name);
        let now = Instant::now();
        Source {
            name,
            settings,
            store,
            files: BTreeMap::new(),
            roots,
            watch,
            emitter,
            cancel,
            handle,
            buf: Vec::new(),
            batch_hint: 0,
            head: Vec::new(),
            last_rescan: now,
            scans: 0,
            vacated: HashMap::new(),
            next_seq: 0,
            busy,
            stats,
            config,
        }
    }

    /// Reads until cancelled; `starting` is let go once the first scan's
    /// files are claimed.
    fn run(&mut self, wake: &Receiver<()>, starting: Starting) {
        // The first scan claims every file found at start-up (at its
        // checkpoint, or per start_at) and saves those claims before any
        // reading, so a crash during a long first read cannot turn a file
        // that was found at start-up into a never-seen one. Before it,
        // the streams left unfinished are taken up where they are now, so
        // that their lines go before those of the files that replaced them.
        self.recover_unfinished();
        let _ = self.rescan(true);
        self.store.persist();
        // Logged after the first scan: files created from now on are new
        // files (read from their beginning), not files found at start-up.
        info!(
            source = %self.name,
            paths = ?self.config.paths.iter().map(glob::Pattern::as_str).collect::<Vec<_>>(),
            files = self.files.len(),
            checkpoints = %self.store.path().display(),
            "FileSourceStarted"
        );
        drop(starting);
        while self.cycle(wake).is_ok() {}
        self.store.persist();
        info!(source = %self.name, "FileSourceStopped");
    }

    /// One turn of the loop: rescan when due, read until nothing is left,
    /// run the timers, and wait for a hint or the next deadline.
    fn cycle(&mut self, wake: &Receiver<()>) -> Result<(), Stop> {
        if self.cancel.is_cancelled() {
            return Err(Stop);
        }
        if self.watch.take_rescan() || self.last_rescan.elapsed() >= self.config.rescan_interval {
            self.rescan(false)?;
        }
        while self.read_round()? {
            if self.cancel.is_cancelled() {
                return Err(Stop);
            }
            if self.watch.take_rescan() || self.last_rescan.elapsed() >= self.config.rescan_interval
            {
                self.rescan(false)?;
            }
            self.timers()?;
        }
        self.timers()?;
        let timeout = self
            .next_deadline()
            .saturating_duration_since(Instant::now());
        match wake.recv_timeout(timeout) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => Ok(()),
            Err(RecvTimeoutError::Disconnected) => Err(Stop),
        }
    }

    /// When the loop must look again even if nothing wakes it.
    fn next_deadline(&mut self) -> Instant {
        let now = Instant::now();
        let mut next = self.last_rescan + self.config.rescan_interval;
        if self.watch.degraded() {
            next = next.min(now + POLL_INTERVAL);
        }
        for t in self.files.values() {
            match &t.state {
                State::Reading(tail) => {
                    if let Some(due) = tail.record_deadline() {
                        next = next.min(due);
                    }
                }
                State::Waiting { since, .. } => {
                    // Past its timeout a file may still wait (a copy of an
                    // open file): look again at the polling pace.
                    let due = since
                        .map(|since| since + self.config.fingerprint_timeout)
                        .filter(|due| *due > now)
                        .unwrap_or(now + POLL_INTERVAL);
                    next = next.min(due);
                }
                State::Watching(_) | State::Closed => {}
            }
            if t.gone.is_some() || recover::draining(t, now, true) {
                next = next.min(now + POLL_INTERVAL);
            }
            if t.modified_pending
                && let Some(last) = t.last_modified
            {
                next = next.min(last + MODIFIED_DEBOUNCE);
            }
        }
        next.max(now)
    }

    /// Sends a batch, waiting while the pipeline is full.
    fn emit(&self, batch: Vec<Observation>) -> Result<(), Stop> {
        if batch.is_empty() {
            return Ok(());
        }
        let emitter = &self.emitter;
        let cancel = &self.cancel;
        self.handle.block_on(async {
            tokio::select! {
                biased;
                () = cancel.cancelled() => Err(Stop),
                sent = emitter.emit_batch_here(batch) => sent.map_err(|_| Stop),
            }
        })
    }

    /// Fingerprints a waiting file when it is long enough (or waited long
    /// enough, or is gone and will not grow), then starts reading it where
    /// its checkpoint says, or at its start position if it was never seen.
    fn fingerprint(&mut self, key: Key) {
        let Some(t) = self.files.get_mut(&key) else {
            return;
        };
        let State::Waiting { file, since, start } = &mut t.state else {
            return;
        };
        let Ok(size) = file.metadata().map(|m| m.len()) else {
            return;
        };
        if size == 0 {
            *since = None;
            return;
        }
        let first_seen = *since.get_or_insert_with(Instant::now);
        let waited = first_seen.elapsed() >= self.config.fingerprint_timeout;
        if size < self.config.fingerprint_bytes as u64 && !waited && t.gone.is_none() {
            return;
        }
        let got = match fingerprint::read_head(file, self.config.fingerprint_bytes, &mut self.head)
        {
            Ok(got) if got > 0 => got,
            Ok(_) => return,
            Err(e) => {
                report_read_error(&self.name, &t.path, &e, &mut t.failing);
                return;
            }
        };
        let full = Fingerprint::of(&self.head[..got]);
        let mut matched = self.store.get(&full).map(|e| (full, e));
        if matched.is_none() {
            // A file first fingerprinted while it was short has grown.
            matched = self
                .store
                .shorter_lengths(full.len)
                .into_iter()
                .find_map(|len| {
                    let short = Fingerprint::of(&self.head[..len as usize]);
                    self.store.get(&short).map(|e| (short, e))
                });
        }
        let (fp, entry) = match matched {
            Some((fp, entry)) if (entry.dev, entry.ino) != key => {
                let mixed = fp.mixed_with(key.0, key.1);
                match self.store.get(&mixed) {
                    // Its own entry from when it first shared its bytes.
                    Some(own) => (mixed, Some(own)),
                    // A copy being made of an open file (copytruncate):
                    // once the original is truncated its entry is free,
                    // and the copy resumes where the original was.
                    None if entry.is_live() && first_seen.elapsed() < LINGER => return,
                    None if entry.is_live() => {
                        warn!(source = %self.name, path = %t.path.display(), other = %entry.path, "FileFingerprintShared: two open files begin with the same bytes; raise fingerprint_bytes if they are different logs");
                        (mixed, None)
                    }
                    // The same content under another inode: a copy, or
                    // the file moved across file systems. Resume.
                    None => (fp, Some(entry)),
                }
            }
            Some((fp, entry)) => (fp, Some(entry)),
            None => (full, None),
        };
        let (offset, resumed) = match &entry {
            Some(entry) => {
                let holds =
                    size >= entry.offset && entry.check.holds(file, entry.offset).unwrap_or(false);
                if holds {
                    (entry.offset, true)
                } else {
                    warn!(source = %self.name, path = %t.path.display(), checkpoint = entry.offset, size, "FileTruncated: it changed while herald was not reading it; reading it from the start");
                    (0, false)
                }
            }
            None => ((*start).min(size), false),
        };
        let check = match TailCheck::read(file, offset) {
            Ok(check) => check,
            Err(e) => {
                report_read_error(&self.name, &t.path, &e, &mut t.failing);
                return;
            }
        };
        let path = t.path.to_string_lossy();
        let epoch = self.store.claim(fp, offset, check, &path, key.0, key.1);
        if entry.is_none() {
            self.store.save_soon();
        }
        let State::Waiting { file, .. } = std::mem::replace(&mut t.state, State::Closed) else {
            return;
        };
        match Tail::new(
            file,
            t.report_path.clone(),
            fp,
            epoch,
            offset,
            self.store.clone(),
            self.settings.clone(),
        ) {
            Ok(tail) => {
                info!(source = %self.name, path = %t.path.display(), offset, resumed, "FileTailStarted");
                t.state = State::Reading(Box::new(tail));
            }
            Err(e) => {
                // Truncated between the check and now: the next scan finds
                // and fingerprints it again.
                report_read_error(&self.name, &t.path, &e, &mut t.failing);
                self.store.release(&fp, epoch);
            }
        }
    }

    /// Reads one chunk of every file that has one; emits each as a batch.
    /// Returns whether anything was read.
    /// A file waits while an older file reported under its path (rotated
    /// away, or the copy of a truncated file) is still drained, so that a
    /// path's lines go out in the order they were written.
    fn read_round(&mut self) -> Result<bool, Stop> {
        let keys: Vec<Key> = self.files.keys().copied().collect();
        let now = Instant::now();
        // The newest file that left each path may still be written to.
        let mut newest: HashMap<&str, u64> = HashMap::new();
        for t in self.files.values().filter(|t| t.left.is_some()) {
            let seq = newest.entry(&t.report_path).or_insert(t.seq);
            *seq = (*seq).max(t.seq);
        }
        let draining: Vec<(Arc<str>, u64)> = self
            .files
            .values()
            .filter(|t| recover::draining(t, now, newest.get(&*t.report_path) == Some(&t.seq)))
            .map(|t| (t.report_path.clone(), t.seq))
            .collect();
        let mut progressed = false;
        for key in keys {
            let Some(t) = self.files.get_mut(&key) else {
                continue;
            };
            let State::Reading(tail) = &mut t.state else {
                continue;
            };
            if draining
                .iter()
                .any(|(path, seq)| *seq < t.seq && *path == t.report_path)
            {
                continue;
            }
            // With a margin: chunks hold a varying number of lines.
            let hint = self.batch_hint + self.batch_hint / 4 + 16;
            let mut out = Vec::with_capacity(hint.min(tail::MAX_BATCH_LINES));
            let read = {
                let _busy = self.busy.enter();
                while crate::liveness::fault("hang-file-read") {
                    // A file system that never answers.
                    std::thread::sleep(Duration::from_secs(3600));
                }
                tail.read(&mut self.buf, &mut out)
            };
            let outcome = match read {
                Ok(outcome) => {
                    t.failing = false;
                    outcome
                }
                Err(e) => {
                    report_read_error(&self.name, &t.path, &e, &mut t.failing);
                    continue;
                }
            };
            if !out.is_empty() {
                self.batch_hint = out.len().min(tail::MAX_BATCH_LINES);
            }
            match outcome {
                Outcome::Data { .. } => {
                    t.last_growth = Instant::now();
                    t.dormant = false;
                    progressed = true;
                    self.emit(out)?;
                }
                Outcome::Eof => self.emit(out)?,
                Outcome::Truncated => {
                    self.emit(out)?;
                    self.truncated(key)?;
                    progressed = true;
                }
            }
        }
        if self.buf.capacity() > 2 * tail::CHUNK_BYTES {
            self.buf = Vec::new();
        }
        Ok(progressed)
    }

    /// A file got shorter or was rewritten under the reader: what was read
    /// of it is complete, and it is a new file from byte 0.
    fn truncated(&mut self, key: Key) -> Result<(), Stop> {
        if self.follow_copy(key)? {
            return Ok(());
        }
        let Some(t) = self.files.get_mut(&key) else {
            return Ok(());
        };
        let State::Reading(mut tail) = std::mem::replace(&mut t.state, State::Closed) else {
            return Ok(());
        };
        let mut out = Vec::new();
        tail.finish(&mut out);
        self.store.release(&tail.fingerprint(), tail.epoch());
        // What the file was seen to hold past the read position is gone,
        // and no copy of it was found.
        let lost = tail.seen_size().saturating_sub(tail.position());
        if lost > 0 {
            self.stats
                .file_truncations_unrecovered
                .fetch_add(1, Ordering::Relaxed);
            self.stats
                .file_truncation_lost_bytes
                .fetch_add(lost, Ordering::Relaxed);
            warn!(source = %self.name, path = %t.path.display(), read_to = tail.position(), lost, "FileTruncated: no copy holds what was not read yet; reading it again from the start");
        } else {
            warn!(source = %self.name, path = %t.path.display(), read_to = tail.position(), "FileTruncated: reading it again from the start");
        }
        let file = tail.into_file();
        if self.config.watch
            && let Ok(meta) = file.metadata()
        {
            out.push(lifecycle(&self.name, "file.truncated", &t.path, &meta));
        }
        t.state = State::Waiting {
            file,
            since: None,
            start: 0,
        };
        self.emit(out)?;
        self.fingerprint(key);
        Ok(())
    }

    /// Everything that happens with time rather than data: multiline
    /// flushes, fingerprint timeouts, closing drained files that are gone,
    /// and debounced `file.modified`.
    fn timers(&mut self) -> Result<(), Stop> {
        let now = Instant::now();
        let keys: Vec<Key> = self.files.keys().copied().collect();
        let mut events = Vec::new();
        let mut closed = Vec::new();
        for key in keys {
            if matches!(
                self.files.get(&key).map(|t| &t.state),
                Some(State::Waiting { .. })
            ) {
                self.fingerprint(key);
            }
            let Some(t) = self.files.get_mut(&key) else {
                continue;
            };
            if let State::Reading(tail) = &mut t.state {
                let mut out = Vec::new();
                tail.flush_due(now, &mut out);
                self.emit(out)?;
            }
            let Some(t) = self.files.get_mut(&key) else {
                continue;
            };
            if self.config.watch {
                modified(&self.name, t, now, &mut events);
            }
            let drained = !matches!(&t.state, State::Reading(tail) if at_eof(tail) == Some(false));
            let Some(gone) = t.gone.filter(|_| drained) else {
                continue;
            };
            let idle = now.duration_since(gone.max(t.last_growth));
            let named = t
                .file()
                .and_then(|f| f.metadata().ok())
                .is_some_and(|m| m.nlink() > 0);
            // Nothing writes to a copy: it is done at its end. A deleted
            // file is done once idle; a renamed one is watched a while
            // longer, for writers that reopen late.
            if t.copy || idle >= DORMANT || (idle >= LINGER && !named) {
                closed.push(key);
            } else if idle >= LINGER && !t.dormant {
                t.dormant = true;
                if let State::Reading(tail) = &mut t.state {
                    let mut out = Vec::new();
                    tail.finish(&mut out);
                    debug!(source = %self.name, path = %t.path.display(), read_to = tail.position(), "FileDormant: drained; still read if it grows");
                    self.emit(out)?;
                }
            }
        }
        self.emit(events)?;
        for key in closed {
            self.close(key)?;
        }
        Ok(())
    }

    /// Closes a gone, drained file: its last line without a newline is
    /// complete now.
    fn close(&mut self, key: Key) -> Result<(), Stop> {
        let Some(mut t) = self.files.remove(&key) else {
            return Ok(());
        };
        if let State::Reading(tail) = &mut t.state {
            let mut out = Vec::new();
            tail.finish(&mut out);
            self.store.release(&tail.fingerprint(), tail.epoch());
            info!(source = %self.name, path = %t.path.display(), read_to = tail.position(), "FileClosed");
            self.emit(out)?;
        }
        Ok(())
    }
}

/// Whether a reader has read all its file holds (`None` when that cannot
/// be told).
fn at_eof(tail: &Tail) -> Option<bool> {
    tail.file()
        .metadata()
        .ok()
        .map(|m| m.len() <= tail.position())
}

/// Logs a failed read once per run of failures.
fn report_read_error(source: &Arc<str>, path: &Path, e: &io::Error, failing: &mut bool) {
    if !*failing {
        error!(source = %source, stage = "receiving", path = %path.display(), error = %e, "FileReadFailed: will retry");
    }
    *failing = true;
}

#[cfg(test)]
mod tests;
