//! What a process source remembers across restarts: the matched processes
//! it announced (with their labels and threshold levels), the exits it saw
//! recently (for restart detection), and the boot they belong to.
//!
//! Saved through [`StateFile`](crate::sources::known_state::StateFile) as
//! `<state_dir>/<source>.processes.json`, only once the observations that
//! brought it about are durable (see the module doc of
//! [`process`](super)). Command lines in here are redacted and cut, as in
//! the events: nothing secret is written to disk.

use serde::{Deserialize, Serialize};

use crate::sources::threshold::Level;

/// The version of the format below; a file of another version is ignored
/// (treated as a first run).
pub const VERSION: u32 = 1;

/// A matched process as announced: its labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Info {
    /// Its pid.
    pub pid: u32,
    /// Its start, in clock ticks since boot: with the pid and the boot
    /// id, what names it.
    pub start_ticks: u64,
    /// Its parent's pid when it was first seen.
    pub ppid: u32,
    /// `comm`.
    pub name: String,
    /// The executable, when readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// The command line, redacted and cut.
    pub cmdline: String,
    /// Its effective uid, when readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The user's name (or the uid, for a uid without a name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Its start, RFC 3339.
    pub start_time: String,
    /// Its start, in Unix seconds.
    pub start_unix: f64,
    /// The container it runs in, when its cgroup names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// The container engine, when the cgroup path tells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_runtime: Option<String>,
    /// The Kubernetes pod's uid, from a `kubepods` cgroup path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// What a restart of it looks like: a hash of its user and redacted
    /// command line.
    pub restart_key: u64,
}

/// A threshold's last announced level and how many transitions it had
/// (the counter is part of each transition's identity).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownLevel {
    /// The level last announced.
    pub level: Level,
    /// Transitions announced so far.
    pub transitions: u64,
}

/// A matched live process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KnownProcess {
    /// Its labels.
    pub info: Info,
    /// The CPU threshold's level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<KnownLevel>,
    /// The memory threshold's level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<KnownLevel>,
}

/// An exit seen as it happened, kept for `restart_window`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecentExit {
    /// [`Info::restart_key`] of the process that exited.
    pub key: u64,
    /// Its pid.
    pub pid: u32,
    /// Its start time, RFC 3339.
    pub start_time: String,
    /// The last time it was seen running (Unix seconds): it exited after.
    pub last_alive: f64,
    /// When herald saw that it had exited (Unix seconds).
    pub noticed: f64,
}

/// The whole state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Known {
    /// [`VERSION`].
    pub version: u32,
    /// The boot the processes below belong to.
    pub boot_id: String,
    /// Matched processes running when it was saved.
    pub processes: Vec<KnownProcess>,
    /// Exits seen within `restart_window`.
    pub recent_exits: Vec<RecentExit>,
}
