//! The service manager's notify protocol (sd_notify(3)), through the
//! `sd-notify` crate: `READY=1` once the agent runs (and again after a
//! reload, which `RELOADING=1` opens), `STATUS=` lines a
//! person reads in `systemctl status`, `STOPPING=1` at shutdown, and
//! `WATCHDOG=1` pings while the pipeline is alive. Outside systemd
//! (`NOTIFY_SOCKET` unset) every call does nothing. A failed send is
//! logged once and otherwise ignored: the agent's work does not depend on
//! the service manager hearing it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::warn;

static FAILED: AtomicBool = AtomicBool::new(false);

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states)
        && !FAILED.swap(true, Ordering::Relaxed)
    {
        warn!(error = %e, "NotifyFailed: the service manager's socket did not take a message");
    }
}

/// Startup is finished: the queue is open and every source started.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload has begun; [`ready`] ends it. systemd 253 and later want the
/// monotonic time with it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// A status line for `systemctl status`.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// Shutdown has begun.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// The pipeline is alive.
pub fn ping() {
    send(&[NotifyState::Watchdog]);
}

/// How often to ping, when the service manager asked for pings
/// (`WatchdogSec=`): twice per period, as sd_watchdog_enabled(3) advises.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|period| !period.is_zero())
        .map(|period| period / 2)
}
