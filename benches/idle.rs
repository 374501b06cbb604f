//! What herald costs while little happens: the release binary with the
//! host and process sources at 1 s, one tailed file that gets a line a
//! second, and a heartbeat, posting to a local HTTP endpoint that reads
//! and discards each body.
//!
//! Measures herald's CPU (utime + stime from /proc/<pid>/stat, in percent
//! of one core) over a window after a warm-up, and its resident memory:
//! the peak (VmHWM) and at the end (VmRSS). Then again with 1,000 extra
//! sleeping processes on the machine, which the process source lists at
//! every tick and does not match, and (for information) with 1,000 it does
//! match. Goals on the 2-core reference machine: under 1% of one core and
//! under 20 MiB, without and with the 1,000 unmatched processes.
//!
//! `cargo bench --bench idle`; `HERALD_BENCH_SECONDS` sets the window
//! (default 60), `HERALD_BENCH_WARMUP` the warm-up (default 10) and
//! `HERALD_BENCH_BIN` another herald binary. The sleeping processes are
//! the bench's children, killed when it ends (also on a panic), and each
//! sleeps only a little longer than the bench runs, so none outlives it
//! for long even if the bench itself is killed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;
use common::{Endpoint, clock_ticks, cpu_ticks, rss_kib};

/// Counted in each body: every event has exactly one.
const EVENT_MARKER: &[u8] = b"\"occurred\":";

fn main() {
    let seconds = env_u64("HERALD_BENCH_SECONDS", 60);
    let warmup = env_u64("HERALD_BENCH_WARMUP", 10.min(seconds.max(1)));
    let bin = std::env::var("HERALD_BENCH_BIN")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_herald").to_owned());
    let work = tempfile::tempdir().expect("temp dir");
    // Sleepers live a little longer than the bench, never much longer.
    let lifetime = 3 * (warmup + seconds) + 120;
    let tag = format!("hzidle{}", std::process::id() % 100_000);
    let sleep = ["/bin/sleep", "/usr/bin/sleep"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("a sleep binary");
    let watched = work.path().join(&tag);
    std::fs::copy(sleep, &watched).expect("copy sleep");

    let endpoint = Endpoint::start(EVENT_MARKER);
    let host = host_source_usable(&bin, work.path(), &endpoint);
    println!(
        "idle bench: {seconds} s window after {warmup} s warm-up, herald {bin}\n  sources: {}process (1s), file (a line a second), heartbeat; sink: local HTTP endpoint",
        if host.is_ok() { "host (1s), " } else { "" }
    );
    if let Err(why) = &host {
        println!("  the host source is left out: {why}");
    }

    let mut children = Children::default();
    // What the process source watches at all times: two copies of sleep
    // under the bench's own name.
    for _ in 0..2 {
        children.spawn(&watched, lifetime);
    }
    let scenarios: [(&str, usize, bool); 3] = [
        ("idle", 0, false),
        ("+1000 processes it does not match", 1000, false),
        ("+1000 processes it matches (for information)", 1000, true),
    ];
    let mut results = Vec::new();
    for (what, extra, matched) in scenarios {
        let mut extras = Children::default();
        let program: &Path = if matched { &watched } else { Path::new(sleep) };
        for _ in 0..extra {
            extras.spawn(program, lifetime);
        }
        let result = run(
            &bin,
            work.path(),
            &endpoint,
            &tag,
            host.is_ok(),
            warmup,
            seconds,
        );
        result.print(what);
        results.push((what, result));
        drop(extras);
    }
    println!("summary (goal: < 1% of one core, < 20 MiB):");
    for (what, r) in &results {
        println!(
            "  {what:<46} {:>6.3}% CPU  peak {:>5.1} MiB  end {:>5.1} MiB",
            r.cpu_percent,
            r.peak_rss_kib as f64 / 1024.0,
            r.rss_kib as f64 / 1024.0
        );
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Processes the bench started: killed and reaped when dropped.
#[derive(Default)]
struct Children(Vec<Child>);

impl Children {
    fn spawn(&mut self, program: &Path, seconds: u64) {
        let child = Command::new(program)
            .arg(seconds.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        self.0.push(child);
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

fn config(work: &Path, endpoint: &Endpoint, tag: &str, host: bool) -> PathBuf {
    let data = work.join("data");
    let _ = std::fs::remove_dir_all(&data);
    let logs = work.join("logs");
    std::fs::create_dir_all(&logs).expect("logs dir");
    let host_source = if host {
        "[[sources.host]]\nname = \"host\"\ninterval = \"1s\"\n"
    } else {
        ""
    };
    let path = work.join("herald.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[agent]
hostname = "bench"
data_dir = "{data}"

[sink]
url = "http://{addr}/api"

[[sources.heartbeat]]
name = "heartbeat"

{host_source}
[[sources.process]]
name = "processes"
interval = "1s"
match = {{ name = "{tag}*" }}
cpu = {{ high = 90.0, clear = 70.0, for = "30s" }}
memory = {{ high = "1GiB", clear = "800MiB", for = "30s" }}

[[sources.file]]
name = "app"
paths = ["{logs}/*.log"]
"#,
            data = data.display(),
            addr = endpoint.addr,
            logs = logs.display(),
        ),
    )
    .expect("config");
    path
}

/// Whether this build has a usable `[[sources.host]]`: the config with it
/// validates. The reason when not.
fn host_source_usable(bin: &str, work: &Path, endpoint: &Endpoint) -> Result<(), String> {
    let path = config(work, endpoint, "x", true);
    let out = Command::new(bin)
        .args(["validate", "--config"])
        .arg(&path)
        .env_remove("PREFECT_API_URL")
        .env_remove("HERALD_AGENT_DATA_DIR")
        .output()
        .map_err(|e| format!("cannot run {bin}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    Err(text
        .lines()
        .find(|l| l.contains("error"))
        .unwrap_or("herald validate failed")
        .to_owned())
}

struct Measured {
    cpu_percent: f64,
    peak_rss_kib: u64,
    rss_kib: u64,
    events: u64,
    threads: Vec<(String, f64)>,
}

impl Measured {
    fn print(&self, what: &str) {
        println!("{what}:");
        println!(
            "  CPU            {:>8.3} % of one core (goal < 1)",
            self.cpu_percent
        );
        println!(
            "  RSS peak       {:>8.1} MiB (goal < 20)",
            self.peak_rss_kib as f64 / 1024.0
        );
        println!("  RSS at the end {:>8.1} MiB", self.rss_kib as f64 / 1024.0);
        println!("  events posted in the window: {}", self.events);
        println!("  CPU % by thread:");
        for (name, percent) in &self.threads {
            println!("    {name:<16} {percent:>7.3}");
        }
    }
}

fn run(
    bin: &str,
    work: &Path,
    endpoint: &Endpoint,
    tag: &str,
    host: bool,
    warmup: u64,
    seconds: u64,
) -> Measured {
    let config = config(work, endpoint, tag, host);
    let log = work.join("logs/app.log");
    let mut child = Command::new(bin)
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("PREFECT_API_URL")
        .env_remove("HERALD_AGENT_DATA_DIR")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.join("herald.log")).expect("log"))
        .spawn()
        .expect("start herald");
    let pid = child.id();
    // Stops herald however the measurement ends.
    struct Stop(u32);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.0.to_string())
                .status();
        }
    }
    let stop = Stop(pid);

    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let writing = writing.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while writing.load(Ordering::Relaxed) {
                if let Ok(mut f) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                {
                    let _ = writeln!(
                        f,
                        "2026-01-01T00:00:00Z INFO request {n} served in 12ms path=/api/items"
                    );
                }
                n += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };

    std::thread::sleep(Duration::from_secs(warmup));
    let events_before = endpoint.seen();
    let (cpu_before, threads_before) = (cpu_ticks(pid), common::cpu_ticks_by_thread(pid));
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let (cpu_after, threads_after) = (cpu_ticks(pid), common::cpu_ticks_by_thread(pid));
    let elapsed = started.elapsed().as_secs_f64();
    let hz = clock_ticks();
    let (peak_rss_kib, rss_kib) = rss_kib(pid);
    let events = endpoint.seen() - events_before;
    let percent = |ticks: f64| ticks / hz / elapsed * 100.0;
    let mut threads: Vec<(String, f64)> = threads_after
        .iter()
        .map(|(name, after)| {
            let before = threads_before
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0.0, |(_, t)| *t);
            (name.clone(), percent(after - before))
        })
        .collect();
    threads.sort_by(|a, b| b.1.total_cmp(&a.1));

    writing.store(false, Ordering::Relaxed);
    drop(stop);
    let _ = child.wait();
    let _ = writer.join();
    Measured {
        cpu_percent: percent(cpu_after - cpu_before),
        peak_rss_kib,
        rss_kib,
        events,
        threads,
    }
}
