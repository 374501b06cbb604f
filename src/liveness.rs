//! Whether the pipeline's stages make progress, for the service manager's
//! watchdog: a stage marks the work that must finish on its own (a queue
//! write and its fdatasync, mapping a batch) as busy, and waiting for input
//! or for room downstream is not. A stage busy for longer than the
//! watchdog allows is stuck (a wedged disk write, a mapper that never
//! returns): the agent stops pinging and systemd restarts it. A slow
//! endpoint makes nobody busy: the queue absorbs it.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    // 0 means idle, so times start at 1.
    u64::try_from(EPOCH.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
}

/// One stage's busy mark.
#[derive(Debug, Default)]
pub struct Busy {
    since_ms: AtomicU64,
}

/// Clears the mark when dropped.
pub struct BusyGuard<'a>(&'a Busy);

impl Busy {
    /// Marks the stage busy until the guard is dropped. Sections do not
    /// nest: the caller holds at most one at a time.
    pub fn enter(&self) -> BusyGuard<'_> {
        self.since_ms.store(now_ms(), Ordering::Relaxed);
        BusyGuard(self)
    }

    /// Inside a busy section: waiting (for room downstream, say) is not
    /// being stuck; the stage is busy again, afresh, once the guard drops.
    pub fn idle(&self) -> IdleGuard<'_> {
        self.since_ms.store(0, Ordering::Relaxed);
        IdleGuard(self)
    }

    /// How long the stage has been busy, if it is.
    pub fn busy_for(&self) -> Option<Duration> {
        match self.since_ms.load(Ordering::Relaxed) {
            0 => None,
            since => Some(Duration::from_millis(now_ms().saturating_sub(since))),
        }
    }
}

/// Marks the stage busy again when dropped.
pub struct IdleGuard<'a>(&'a Busy);

impl Drop for IdleGuard<'_> {
    fn drop(&mut self) {
        self.0.since_ms.store(now_ms(), Ordering::Relaxed);
    }
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.0.since_ms.store(0, Ordering::Relaxed);
    }
}

/// Test-only fault injection: `HERALD_TEST_FAULT=<name>` makes the named
/// place misbehave (`hang-queue-writer`, `hang-file-read`), so tests can
/// see the watchdog notice. The variable is read once.
pub fn fault(name: &str) -> bool {
    static FAULT: LazyLock<Option<String>> =
        LazyLock::new(|| std::env::var("HERALD_TEST_FAULT").ok());
    FAULT.as_deref() == Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_lasts_while_its_guard_lives() {
        let busy = Busy::default();
        assert_eq!(busy.busy_for(), None);
        {
            let _guard = busy.enter();
            std::thread::sleep(Duration::from_millis(5));
            assert!(
                busy.busy_for()
                    .is_some_and(|d| d >= Duration::from_millis(4))
            );
        }
        assert_eq!(busy.busy_for(), None);
        let _guard = busy.enter();
        {
            let _waiting = busy.idle();
            assert_eq!(busy.busy_for(), None);
        }
        assert!(busy.busy_for().is_some());
    }
}
