//! Shared helpers for herald's integration tests: a scripted stand-in for
//! Prefect's events endpoint ([`MockEndpoint`]), a handle on a running herald
//! process ([`Herald`]), and small polling helpers.
//!
//! Every `tests/*.rs` that needs them says `mod support;`. Not every test uses
//! every helper, hence `dead_code` and `unused_imports` (the re-exports below)
//! are allowed for this module.
//!
//! Nothing here sleeps for a fixed time to let something happen: waits poll a
//! condition until a deadline and, when it passes, panic with what was seen.
#![allow(dead_code, unused_imports)]

mod endpoint;
pub mod files;
pub mod prefect_rules;
mod process;
pub mod tls;
pub mod ws;

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

pub use endpoint::{MockEndpoint, Reply, Request, http_date};
pub use process::{Finished, Herald, HeraldCommand, herald};

/// How often the wait helpers look again. Short enough not to slow tests,
/// long enough not to burn a core on a 2-core CI machine.
pub const POLL: Duration = Duration::from_millis(10);

/// Polls `condition` until it holds or `timeout` passes; returns whether it
/// held. The condition is checked one last time at the deadline, so a slow
/// machine that satisfies it exactly then still passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return condition();
        }
        thread::sleep(POLL);
    }
}

/// The `[agent]` and `[sink]` tables most integration tests start from:
/// host name `test-host`, and a sink posting to `url` without delay (20 ms
/// batches, no rate limit). Further `[sink]` keys may follow it directly.
pub fn agent_and_sink(url: &str) -> String {
    format!(
        r#"[agent]
hostname = "test-host"
shutdown_grace = "5s"

[sink]
url = "{url}"
batch_timeout = "20ms"
timeout = "2s"
max_events_per_second = 0
"#
    )
}

/// Writes `toml` to `dir/herald.toml` and returns its path.
///
/// # Panics
/// If the file cannot be written (the test's own temp dir is broken).
pub fn write_config(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join("herald.toml");
    if let Err(e) = std::fs::write(&path, toml) {
        panic!("cannot write test config {}: {e}", path.display());
    }
    path
}

/// How long the agent helpers below wait for herald.
const AGENT_WAIT: Duration = Duration::from_secs(30);

/// Starts `herald run --config CONFIG` with its data_dir at `dir/data`.
pub fn run_agent(dir: &Path, config: &Path) -> Herald {
    herald()
        .args(["run", "--config"])
        .arg(config)
        .env("HERALD_AGENT_DATA_DIR", dir.join("data"))
        .spawn()
}

/// Stops herald with SIGTERM, asserts it exits 0, and hands it back for
/// its output.
///
/// # Panics
/// When herald does not exit 0 in time.
pub fn stop_agent(mut agent: Herald) -> Herald {
    agent.sigterm();
    let status = agent.wait_exit(AGENT_WAIT);
    assert_eq!(status.code(), Some(0), "{}", agent.describe());
    agent
}

/// The dead letters kept in `dir/data`, as `herald dead-letter list --json`
/// prints them.
///
/// # Panics
/// When the command fails or prints something that is not JSON.
pub fn dead_letters(dir: &Path) -> Vec<serde_json::Value> {
    let run = herald()
        .args(["dead-letter", "list", "--json", "--data-dir"])
        .arg(dir.join("data"))
        .run(AGENT_WAIT);
    assert_eq!(run.code(), Some(0), "{}", run.stderr_text());
    run.stdout
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}
