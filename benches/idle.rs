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

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

    let endpoint = Endpoint::start();
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
    let events_before = endpoint.events.load(Ordering::Relaxed);
    let (cpu_before, threads_before) = (cpu_ticks(pid), cpu_by_thread(pid));
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let (cpu_after, threads_after) = (cpu_ticks(pid), cpu_by_thread(pid));
    let elapsed = started.elapsed().as_secs_f64();
    let hz = clock_ticks();
    let (peak_rss_kib, rss_kib) = rss(pid);
    let events = endpoint.events.load(Ordering::Relaxed) - events_before;
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

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime, in clock ticks, from a stat file.
fn stat_ticks(stat: &str) -> f64 {
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<f64>().ok()))
        .sum()
}

fn cpu_ticks(pid: u32) -> f64 {
    stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// CPU ticks of each thread, summed by thread name.
fn cpu_by_thread(pid: u32) -> Vec<(String, f64)> {
    let mut by_name: std::collections::BTreeMap<String, f64> = Default::default();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    for task in tasks.flatten() {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        *by_name.entry(name.trim().to_owned()).or_default() += stat_ticks(&stat);
    }
    by_name.into_iter().collect()
}

/// (VmHWM, VmRSS) in KiB.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// An HTTP/1.1 endpoint that reads each request, counts the events in its
/// body and answers 204.
struct Endpoint {
    addr: std::net::SocketAddr,
    events: Arc<AtomicU64>,
}

impl Endpoint {
    fn start() -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let events = Arc::new(AtomicU64::new(0));
        let counter = events.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counter = counter.clone();
                std::thread::spawn(move || serve(stream, &counter));
            }
        });
        Endpoint { addr, events }
    }
}

fn serve(stream: TcpStream, events: &AtomicU64) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    let mut body = Vec::new();
    loop {
        let mut length = 0usize;
        let mut gzip = false;
        head.clear();
        loop {
            let before = head.len();
            match reader.read_line(&mut head) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = head[before..].trim_end().to_ascii_lowercase();
            if line.is_empty() && before > 0 {
                break;
            }
            if let Some(v) = line.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if line.starts_with("content-encoding:") && line.contains("gzip") {
                gzip = true;
            }
        }
        body.clear();
        body.resize(length, 0);
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if !gzip && let Ok(serde_json::Value::Array(batch)) = serde_json::from_slice(&body) {
            events.fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        if out
            .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}
