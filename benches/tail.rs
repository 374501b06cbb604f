//! Tail throughput of the real release binary: a pre-written file of
//! nginx-like access lines and JSON lines (~216 bytes on average) is read
//! through the default mapping and the queue (fdatasync per batch) and
//! posted to a local HTTP endpoint that reads each body and discards it.
//! Then the same volume spread over 100 files written while herald tails
//! them.
//!
//! Reports lines/s, MB/s, herald's CPU seconds per GiB (utime + stime from
//! /proc/<pid>/stat) and its peak RSS (VmHWM). Targets on the 2-core
//! reference machine: >= 750,000 lines/s, <= 6 CPU-s/GiB, <= 32 MiB.
//!
//! Then the same lines as a container runtime writes them (CRI, as
//! containerd does: a time, the stream, the P/F tag; stdout and stderr
//! mixed, 1 line in 100 split in two pieces), read with `format = "cri"`,
//! reported beside the plain single file.
//!
//! `cargo bench --bench tail`; `HERALD_BENCH_BYTES` sets the volume
//! (default 1GiB), `HERALD_BENCH_ONLY=single,cri` runs the scenarios named (single, cri, many),
//! `HERALD_BENCH_BIN=a,b` runs other herald binaries in turn and
//! `HERALD_BENCH_ROUNDS=n` repeats (to compare builds in one sitting);
//! `HERALD_BENCH_BATCH` sets the sink's `batch_max_events` (default 500).
//!
//! Each round of the single-file scenario also runs the bare work herald
//! does for a line in one thread (`tail/bare.rs`; `HERALD_BENCH_NO_BARE=1`
//! leaves it out), as the issue states it and with the queue read back:
//! what this machine charges for that work at the time, to read herald's
//! figures against.
//!
//! Self-contained: the lines are generated here and the endpoint is the
//! bench's own.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{Endpoint, clock_ticks, cpu_ticks, rss_kib};
#[path = "tail/bare.rs"]
mod bare;

const GIB: u64 = 1 << 30;
const MARKER: &[u8] = b"\"line\":";

fn main() {
    let bytes: u64 = std::env::var("HERALD_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(GIB);
    let only = std::env::var("HERALD_BENCH_ONLY").unwrap_or_default();
    let rounds: usize = std::env::var("HERALD_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let bins = herald_bins();
    let no_bare = std::env::var("HERALD_BENCH_NO_BARE").is_ok_and(|v| v == "1");
    let work = tempfile::tempdir().expect("temp dir");
    println!(
        "tail bench: {} MiB of lines, herald {}",
        bytes >> 20,
        bins.join(", ")
    );
    let wants = |scenario: &str| only.is_empty() || only.split(',').any(|o| o == scenario);
    if wants("single") {
        let logs = work.path().join("single");
        std::fs::create_dir(&logs).expect("dir");
        let t = Instant::now();
        let lines = generate(&logs.join("access.log"), bytes, 42);
        println!("  generated {lines} lines in {:.1?}", t.elapsed());
        for round in 0..rounds {
            for bin in &bins {
                let result = run(
                    bin,
                    work.path(),
                    &logs,
                    lines,
                    bytes,
                    None,
                    &Scenario::PLAIN,
                );
                result.print(&format!("1 file, pre-written [{bin}, round {}]", round + 1));
            }
            if !no_bare {
                for (read_back, what) in [
                    (false, "as the issue states it"),
                    (true, "and the queue read back"),
                ] {
                    let log = logs.join("access.log");
                    let result = run_bare(work.path(), &log, lines, bytes, read_back);
                    result.print(&format!(
                        "1 file, the bare work in one thread, {what} (see benches/tail/bare.rs) [round {}]",
                        round + 1
                    ));
                }
            }
        }
    }
    if wants("cri") {
        let logs = work.path().join("cri");
        std::fs::create_dir(&logs).expect("dir");
        let plain = work.path().join("plain-for-cri.log");
        let lines = generate(&plain, bytes, 42);
        // Where the kubelet would keep it, so that one file serves both
        // runs: as a CRI file, and as a pod's log (kubernetes = true).
        let dir = logs.join("shop_web-7f9_0b1c2d3e-aaaa-bbbb-cccc-0123456789ab/nginx");
        std::fs::create_dir_all(&dir).expect("dir");
        let cri_bytes = to_cri(&plain, &dir.join("0.log"));
        let _ = std::fs::remove_file(&plain);
        for round in 0..rounds {
            for bin in &bins {
                for (source, what) in [
                    ("format = \"cri\"", "CRI format (the same lines)"),
                    ("kubernetes = true", "a pod's CRI log, kubernetes = true"),
                ] {
                    let scenario = Scenario {
                        glob: "*/*/*.log",
                        source,
                    };
                    let result = run(bin, work.path(), &logs, lines, cri_bytes, None, &scenario);
                    result.print(&format!(
                        "1 file, pre-written, {what} [{bin}, round {}]",
                        round + 1
                    ));
                }
            }
        }
    }
    if wants("many") {
        let logs = work.path().join("many");
        // Lines are generated up front (outside the measurement) and
        // written concurrently while herald runs.
        let staged = work.path().join("staged");
        std::fs::create_dir(&staged).expect("dir");
        let per_file = bytes / 100;
        let mut lines = 0;
        for i in 0..100 {
            lines += generate(&staged.join(format!("app-{i:03}.log")), per_file, 1000 + i);
        }
        let total: u64 = (0..100)
            .map(|i| file_len(&staged.join(format!("app-{i:03}.log"))))
            .sum();
        for round in 0..rounds {
            for bin in &bins {
                std::fs::create_dir(&logs).expect("dir");
                let result = run(
                    bin,
                    work.path(),
                    &logs,
                    lines,
                    total,
                    Some(&staged),
                    &Scenario::PLAIN,
                );
                let _ = std::fs::remove_dir_all(&logs);
                result.print(&format!(
                    "100 files, written concurrently [{bin}, round {}]",
                    round + 1
                ));
            }
        }
    }
}

/// The herald binaries to run: this build's, unless `HERALD_BENCH_BIN`
/// names others (comma-separated; each round runs them in turn, so two
/// builds can be compared under the same conditions).
fn herald_bins() -> Vec<String> {
    match std::env::var("HERALD_BENCH_BIN") {
        Ok(list) if !list.trim().is_empty() => {
            list.split(',').map(|b| b.trim().to_owned()).collect()
        }
        _ => vec![env!("CARGO_BIN_EXE_herald").to_owned()],
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

struct Result {
    lines: u64,
    bytes: u64,
    elapsed: Duration,
    cpu: Duration,
    peak_rss_kib: u64,
    /// CPU time by thread name, to see where it goes.
    threads: Vec<(String, Duration)>,
}

impl Result {
    fn print(&self, what: &str) {
        let secs = self.elapsed.as_secs_f64();
        let gib = self.bytes as f64 / GIB as f64;
        println!("{what}:");
        println!("  lines           {:>12}", self.lines);
        println!("  wall            {:>12.2} s", secs);
        println!(
            "  lines/s         {:>12.0}   (target >= 750000)",
            self.lines as f64 / secs
        );
        println!("  MB/s            {:>12.1}", self.bytes as f64 / 1e6 / secs);
        println!(
            "  CPU-s/GiB       {:>12.2}   (target <= 6; {:.2} CPU-s in all)",
            self.cpu.as_secs_f64() / gib,
            self.cpu.as_secs_f64()
        );
        if self.threads.is_empty() {
            return;
        }
        println!(
            "  peak RSS        {:>12.1} MiB (target <= 32)",
            self.peak_rss_kib as f64 / 1024.0
        );
        println!("  CPU-s/GiB by thread (threads alive at the end):");
        for (name, cpu) in &self.threads {
            println!("    {name:<16} {:>8.2}", cpu.as_secs_f64() / gib);
        }
    }
}

/// Which files of `logs` the source reads, and its further settings.
/// Plain files need no setting, so builds from before container formats
/// can be compared (`HERALD_BENCH_BIN`).
struct Scenario {
    glob: &'static str,
    source: &'static str,
}

impl Scenario {
    const PLAIN: Scenario = Scenario {
        glob: "*.log",
        source: "",
    };
}

/// Runs herald over `logs` until the endpoint has seen `lines` lines.
/// With `staged`, the staged files are copied into `logs` by writer
/// threads while herald runs.
fn run(
    bin: &str,
    work: &Path,
    logs: &Path,
    lines: u64,
    bytes: u64,
    staged: Option<&Path>,
    scenario: &Scenario,
) -> Result {
    let endpoint = Endpoint::start(MARKER);
    let data = work.join(format!(
        "data-{}",
        logs.file_name().map_or("x".into(), |n| n.to_string_lossy())
    ));
    let config = work.join("herald.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[agent]
hostname = "bench"
data_dir = "{data}"

[sink]
url = "http://{addr}/api"
batch_max_events = {batch}
max_events_per_second = 0

[[sources.file]]
name = "bench"
paths = ["{logs}/{glob}"]
start_at = "beginning"
{source}
"#,
            data = data.display(),
            addr = endpoint.addr,
            logs = logs.display(),
            batch = std::env::var("HERALD_BENCH_BATCH").unwrap_or_else(|_| "500".into()),
            glob = scenario.glob,
            source = scenario.source,
        ),
    )
    .expect("config");
    let started = Instant::now();
    let mut child: Child = Command::new(bin)
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("PREFECT_API_URL")
        .env_remove("HERALD_AGENT_DATA_DIR")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.join("herald.log")).expect("log"))
        .spawn()
        .expect("start herald");
    let pid = child.id();
    let writers = staged.map(|staged| write_concurrently(staged, logs));
    let deadline = started + Duration::from_secs(1800);
    while endpoint.seen() < lines {
        assert!(
            Instant::now() < deadline,
            "herald did not deliver every line in 30 minutes"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed();
    let hz = clock_ticks();
    let cpu = Duration::from_secs_f64(cpu_ticks(pid) / hz);
    let mut threads: Vec<(String, Duration)> = common::cpu_ticks_by_thread(pid)
        .into_iter()
        .map(|(name, ticks)| (name, Duration::from_secs_f64(ticks / hz)))
        .collect();
    threads.sort_by_key(|t| std::cmp::Reverse(t.1));
    let (peak_rss_kib, _) = rss_kib(pid);
    if let Some(writers) = writers {
        for w in writers {
            let _ = w.join();
        }
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&data);
    Result {
        lines: endpoint.seen(),
        bytes,
        elapsed,
        cpu,
        peak_rss_kib,
        threads,
    }
}

/// Runs the bare loop (see `bare`) over the same file and endpoint.
fn run_bare(work: &Path, log: &Path, lines: u64, bytes: u64, read_back: bool) -> Result {
    let endpoint = Endpoint::start(MARKER);
    let segments = work.join("bare");
    std::fs::create_dir_all(&segments).expect("dir");
    let measured = bare::run(log, &segments, endpoint.addr, read_back);
    assert_eq!(measured.lines, lines, "the bare loop read every line");
    let deadline = Instant::now() + Duration::from_secs(60);
    while endpoint.seen() < lines {
        assert!(
            Instant::now() < deadline,
            "the endpoint did not count every line"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = std::fs::remove_dir_all(&segments);
    Result {
        lines: endpoint.seen(),
        bytes,
        elapsed: measured.elapsed,
        cpu: Duration::from_secs_f64(measured.cpu_ticks / clock_ticks()),
        peak_rss_kib: 0,
        threads: Vec::new(),
    }
}

/// Four writer threads append the staged files to `logs` in 64KiB pieces,
/// round-robin over their 25 files each, as applications would.
fn write_concurrently(staged: &Path, logs: &Path) -> Vec<std::thread::JoinHandle<()>> {
    (0..4)
        .map(|w| {
            let staged = staged.to_owned();
            let logs = logs.to_owned();
            std::thread::spawn(move || {
                let names: Vec<String> = (0..100)
                    .filter(|i| i % 4 == w)
                    .map(|i| format!("app-{i:03}.log"))
                    .collect();
                let mut sources: Vec<_> = names
                    .iter()
                    .map(|n| std::fs::File::open(staged.join(n)).expect("staged"))
                    .collect();
                let mut sinks: Vec<_> = names
                    .iter()
                    .map(|n| std::fs::File::create(logs.join(n)).expect("log"))
                    .collect();
                let mut buf = vec![0u8; 64 * 1024];
                let mut open: Vec<usize> = (0..names.len()).collect();
                while !open.is_empty() {
                    open.retain(|&i| {
                        let n = sources[i].read(&mut buf).unwrap_or(0);
                        if n == 0 {
                            return false;
                        }
                        sinks[i].write_all(&buf[..n]).expect("append");
                        true
                    });
                }
            })
        })
        .collect()
}

/// Writes the lines of `plain` to `out` as containerd would: each with a
/// time and a stream (stdout, with runs of stderr), one in a hundred in a
/// `P` and an `F` piece. Returns the bytes written.
fn to_cri(plain: &Path, out: &Path) -> u64 {
    use std::io::BufRead;
    let reader =
        std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(plain).expect("plain"));
    let mut writer =
        std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(out).expect("cri"));
    let mut written = 0u64;
    for (i, line) in reader.split(b'\n').enumerate() {
        let line = line.expect("read");
        let micros = i % 1_000_000;
        let stream = if i % 20 < 3 { "stderr" } else { "stdout" };
        let time = format!(
            "2026-12-08T04:{:02}:{:02}.{micros:06}123Z",
            (i / 60_000_000) % 60,
            (i / 1_000_000) % 60
        );
        let mut record = Vec::with_capacity(line.len() + 64);
        if i % 100 == 7 && line.len() > 10 {
            let (head, tail) = line.split_at(line.len() / 2);
            record.extend_from_slice(format!("{time} {stream} P ").as_bytes());
            record.extend_from_slice(head);
            record.push(b'\n');
            record.extend_from_slice(format!("{time} {stream} F ").as_bytes());
            record.extend_from_slice(tail);
        } else {
            record.extend_from_slice(format!("{time} {stream} F ").as_bytes());
            record.extend_from_slice(&line);
        }
        record.push(b'\n');
        writer.write_all(&record).expect("write");
        written += record.len() as u64;
    }
    writer.flush().expect("flush");
    written
}

/// A small xorshift generator: the bench needs variety, not quality.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b"0123456789abcdef"[self.below(16)]))
            .collect()
    }
}

/// Writes lines like the shared bench generator (gen_lines.py) does (~80%
/// nginx combined-format access lines, ~20% JSON application logs, each
/// with a unique sequence number) up to `size` bytes; returns the count.
fn generate(path: &PathBuf, size: u64, seed: u64) -> u64 {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let ips: Vec<String> = (0..500)
        .map(|_| {
            format!(
                "{}.{}.{}.{}",
                1 + rng.below(223),
                rng.below(256),
                rng.below(256),
                1 + rng.below(254)
            )
        })
        .collect();
    let methods = [
        "GET", "GET", "GET", "GET", "GET", "GET", "GET", "GET", "POST", "PUT", "DELETE", "HEAD",
    ];
    let paths = [
        "/api/v1/flows",
        "/api/v1/flow_runs/filter",
        "/api/v2/deployments/{}/runs",
        "/static/js/app.{}.js",
        "/healthz",
        "/api/events/in",
        "/ui/dashboard",
        "/api/task_runs/{}/set_state",
        "/login",
        "/assets/img/logo.png",
        "/api/work_pools/default/get_scheduled_flow_runs",
    ];
    let uas = [
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
        "curl/8.5.0",
        "python-httpx/0.27.0",
        "prefect/3.1.0 (API 0.8.4)",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
        "Go-http-client/1.1",
        "kube-probe/1.29",
    ];
    let refs = [
        "-",
        "https://app.example.com/dashboard",
        "https://app.example.com/flows/flow-run/abc",
    ];
    let statuses = [
        200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 201, 204, 301, 302, 304, 400,
        401, 404, 404, 500, 502,
    ];
    let levels = ["DEBUG", "INFO", "INFO", "INFO", "WARNING", "ERROR"];
    let loggers = [
        "prefect.flow_runs",
        "prefect.task_runs",
        "prefect.workers.process",
        "uvicorn.access",
        "app.etl.extract",
    ];
    let words: Vec<&str> = "the quick brown fox jumps over lazy dog flow run task state completed failed retry scheduled pending running cancelled crashed worker pool queue deployment block result persisted cache hit miss timeout connection reset upstream \"quoted\" tab\\t path C:\\\\tmp\\\\x unicode café naïve ✓"
        .split(' ')
        .collect();
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut out =
        std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("create"));
    let (mut written, mut seq, mut ts) = (0u64, 0u64, 1_700_000_000u64);
    loop {
        seq += 1;
        if seq % 7 == 0 {
            ts += 1;
        }
        let line = if rng.unit() < 0.8 {
            let mut p = rng.pick(&paths).to_owned();
            if p.contains("{}") {
                let n = [8, 12, 32][rng.below(3)];
                p = p.replace("{}", &rng.hex(n));
            }
            let mut q = format!("?seq={seq}");
            if rng.unit() < 0.4 {
                q += &format!(
                    "&limit={}&offset={}&sort={}",
                    1 + rng.below(200),
                    rng.below(10001),
                    ["ID_DESC", "START_TIME_ASC", "NAME"][rng.below(3)]
                );
            }
            let tm = ts % 86400;
            format!(
                "{} - - [{:02}/{}/2024:{:02}:{:02}:{:02} +0000] \"{} {p}{q} HTTP/1.1\" {} {} \"{}\" \"{}\" rt={:.3}",
                ips[rng.below(ips.len())],
                1 + (ts / 86400) % 28,
                months[((ts / 2_592_000) % 12) as usize],
                tm / 3600,
                (tm / 60) % 60,
                tm % 60,
                rng.pick(&methods),
                statuses[rng.below(statuses.len())],
                rng.below(500_001),
                rng.pick(&refs),
                rng.pick(&uas),
                rng.unit() * 2.0
            )
        } else {
            let n = [3, 5, 8, 12, 20, 40][rng.below(6)];
            let msg: Vec<&str> = (0..n).map(|_| words[rng.below(words.len())]).collect();
            let msg = msg.join(" ").replace('\\', "\\\\").replace('"', "\\\"");
            format!(
                "{{\"ts\":\"2024-05-{:02}T{:02}:{:02}:{:02}.{:03}Z\",\"level\":\"{}\",\"logger\":\"{}\",\"seq\":{seq},\"flow_run_id\":\"{}\",\"msg\":\"{msg}\"}}",
                1 + (ts / 86400) % 28,
                (ts / 3600) % 24,
                (ts / 60) % 60,
                ts % 60,
                rng.below(1000),
                rng.pick(&levels),
                rng.pick(&loggers),
                rng.hex(32)
            )
        };
        if written + line.len() as u64 + 1 > size {
            break;
        }
        out.write_all(line.as_bytes()).expect("write");
        out.write_all(b"\n").expect("write");
        written += line.len() as u64 + 1;
    }
    out.flush().expect("flush");
    seq - 1
}
