//! Wakes the tailing thread when something changes in a watched
//! directory (inotify, through `notify`), so lines are read as they are
//! written and new files are seen at once.
//!
//! It is only a hint: the thread still rescans the globs every
//! `rescan_interval`, so a missed event costs latency, never a line. When
//! inotify cannot be used (no instance left, the watch limit reached, or
//! its queue overflowed and events were lost) the source says so once and
//! falls back to polling its open files every [`POLL_INTERVAL`].

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use notify::event::{EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tracing::warn;

use super::discover::Root;

/// How often open files are checked for growth without inotify.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// What the event handler (on notify's thread) tells the tailing thread.
#[derive(Default)]
struct Signals {
    /// A file was created, removed or renamed: expand the globs again.
    rescan: AtomicBool,
    /// Why inotify stopped being reliable, once.
    failed: Mutex<Option<String>>,
}

/// The directory watches of one source.
pub struct Watch {
    watcher: Option<RecommendedWatcher>,
    watched: HashSet<Root>,
    signals: Arc<Signals>,
    /// Set once inotify failed; from then on the source polls.
    degraded: bool,
    source: Arc<str>,
}

impl Watch {
    /// Starts an inotify instance whose events wake `wake`. Without one
    /// (the per-user instance limit), the source polls.
    pub fn start(source: Arc<str>, wake: SyncSender<()>) -> Watch {
        let signals = Arc::new(Signals::default());
        let handler_signals = signals.clone();
        let handler = move |event: notify::Result<notify::Event>| {
            match event {
                Ok(event) => {
                    let data_only = matches!(
                        event.kind,
                        EventKind::Modify(ModifyKind::Data(_)) | EventKind::Access(_)
                    );
                    if event.need_rescan() {
                        *handler_signals
                            .failed
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) =
                            Some("the inotify queue overflowed and events were lost".into());
                    }
                    if !data_only {
                        handler_signals.rescan.store(true, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    *handler_signals
                        .failed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
                    handler_signals.rescan.store(true, Ordering::Relaxed);
                }
            }
            // Full means a wake-up is already pending: one is enough.
            let _ = wake.try_send(());
        };
        let mut watch = Watch {
            watcher: None,
            watched: HashSet::new(),
            signals,
            degraded: false,
            source,
        };
        match notify::recommended_watcher(handler) {
            Ok(watcher) => watch.watcher = Some(watcher),
            Err(e) => watch.degrade(&e.to_string()),
        }
        watch
    }

    /// Watches `roots` that exist and are not watched yet; called at every
    /// rescan so that a directory created later is picked up.
    pub fn ensure(&mut self, roots: &[Root]) {
        for root in roots {
            if self.degraded {
                return;
            }
            if self.watched.contains(root) || !root.dir.is_dir() {
                continue;
            }
            let Some(watcher) = self.watcher.as_mut() else {
                return;
            };
            let mode = if root.recursive {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            match watcher.watch(&root.dir, mode) {
                Ok(()) => {
                    self.watched.insert(root.clone());
                }
                Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                    self.degrade(&format!("{e} (fs.inotify.max_user_watches)"));
                }
                Err(e) if matches!(e.kind, notify::ErrorKind::PathNotFound) => {}
                Err(e) => self.degrade(&format!("cannot watch {}: {e}", root.dir.display())),
            }
        }
    }

    /// Forgets a directory that no longer exists, so it is watched again
    /// if it comes back.
    pub fn forget_missing(&mut self) {
        self.watched.retain(|root| Path::new(&root.dir).is_dir());
    }

    /// Whether files must be polled (inotify failed), noticing a failure
    /// the handler reported since the last call.
    pub fn degraded(&mut self) -> bool {
        let failed = self
            .signals
            .failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(reason) = failed {
            self.degrade(&reason);
        }
        self.degraded
    }

    /// Whether an event asked for the globs to be expanded again (and
    /// clears the request).
    pub fn take_rescan(&self) -> bool {
        self.signals.rescan.swap(false, Ordering::Relaxed)
    }

    fn degrade(&mut self, reason: &str) {
        if !self.degraded {
            warn!(
                source = %self.source,
                stage = "receiving",
                reason,
                poll = ?POLL_INTERVAL,
                "FileWatchDegraded: inotify is unavailable; polling instead"
            );
        }
        self.degraded = true;
    }
}
