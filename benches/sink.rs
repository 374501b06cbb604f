//! Sink benchmark: how fast the sending stage moves queued events to a
//! local HTTP endpoint that reads every body and discards it, and the
//! latency from append to the endpoint at 1,000 events/s.
//!
//! `cargo bench --bench sink` prints:
//! - throughput: events/s and MB/s from a pre-filled queue, rate limit off,
//!   with the process CPU time per million events;
//! - latency: events appended at 1,000/s with default settings (500/s
//!   rate limit with a 5,000 burst, 500-event batches, 250 ms batch
//!   timeout), p50 and p99 from append to the endpoint having the body.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use herald::config;
use herald::metrics::Stats;
use herald::queue::{Queue, QueueConfig};
use herald::sink::Sink;
use herald::sink::dead_letter::DeadLetters;
use herald::sink::sender::Sender;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

const THROUGHPUT_EVENTS: usize = 1_000_000;
const EVENT_BYTES: usize = 400;
const LATENCY_SECONDS: u64 = 10;
const LATENCY_RATE: u64 = 1000;

/// What the endpoint saw.
#[derive(Default)]
struct Seen {
    /// Whether bodies carry append times to measure (else only counted).
    timed: bool,
    events: AtomicU64,
    bytes: AtomicU64,
    /// Append-to-receipt latencies in microseconds, when events carry
    /// their append time.
    latencies: Mutex<Vec<u64>>,
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A discarding HTTP/1.1 endpoint: reads each request fully, counts the
/// events (commas at the top level are enough for our own bodies), and
/// answers 204.
async fn serve(listener: TcpListener, seen: Arc<Seen>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1 << 20);
            let mut chunk = vec![0u8; 256 * 1024];
            loop {
                // Head.
                let head_end = loop {
                    if let Some(at) = find(&buf, b"\r\n\r\n") {
                        break at + 4;
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + length {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let received = now_micros();
                let body = &buf[head_end..head_end + length];
                let mut events = 0u64;
                let mut latencies = Vec::new();
                let mut rest: &[u8] = if seen.timed { body } else { &[] };
                while let Some(at) = find(rest, b"\"appended_us\":") {
                    rest = &rest[at + 14..];
                    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                    if let Some(t) = std::str::from_utf8(&rest[..digits])
                        .ok()
                        .and_then(|t| t.parse::<u64>().ok())
                    {
                        latencies.push(received.saturating_sub(t));
                    }
                    events += 1;
                }
                if latencies.is_empty() {
                    events = body.iter().filter(|&&b| b == b'\n').count() as u64;
                } else {
                    seen.latencies.lock().await.extend(latencies);
                }
                seen.events.fetch_add(events, Ordering::Relaxed);
                seen.bytes.fetch_add(length as u64, Ordering::Relaxed);
                buf.drain(..head_end + length);
                if stream
                    .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// An event-shaped payload of about `EVENT_BYTES`, ending in a newline
/// marker the endpoint counts (a JSON string may hold `\n` escaped, never
/// a raw newline, so each event carries one raw newline in a key the
/// endpoint can count instead).
fn payload(i: usize, appended_us: Option<u64>) -> Vec<u8> {
    let stamp = appended_us.map_or(String::new(), |t| format!(",\"appended_us\":{t}"));
    let mut event = format!(
        "{{\"occurred\":\"2026-11-27T10:00:00.000000Z\",\"event\":\"herald.log.line\",\"resource\":{{\"prefect.resource.id\":\"herald.file.bench:/var/log/app.log\"}},\"related\":[],\"payload\":{{\"offset\":{i}{stamp},\"line\":\""
    );
    while event.len() < EVENT_BYTES - 60 {
        event.push('x');
    }
    event.push_str(&format!(
        "\"}},\"id\":\"00000000-0000-7000-8000-{i:012}\"}}\n"
    ));
    event.into_bytes()
}

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (100 Hz on Linux).
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let after = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = after.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

fn sink_config(url: &str, extra: &str) -> config::Config {
    let text = format!("[sink]\nurl = \"{url}\"\n{extra}\n");
    match config::parse("bench", &text, &|_| None) {
        Ok(config) => config,
        Err(mistakes) => panic!("bench config: {mistakes}"),
    }
}

async fn throughput() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/api", listener.local_addr().expect("addr"));
    let seen = Arc::new(Seen::default());
    tokio::spawn(serve(listener, seen.clone()));

    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let queue_config = QueueConfig {
        max_bytes: 1 << 30,
        ..QueueConfig::default()
    };
    let (queue, _) = Queue::open(&dir.path().join("queue"), queue_config).expect("queue");
    for chunk in (0..THROUGHPUT_EVENTS).collect::<Vec<_>>().chunks(10_000) {
        let records = chunk.iter().map(|&i| payload(i, None)).collect();
        queue.append(records).await.expect("append");
    }
    let config = sink_config(&url, "max_events_per_second = 0");
    let sink = Sink::from_config(&config.sink).expect("sink");
    let reader = queue.reader().expect("reader");
    let letters = DeadLetters::new(dir.path(), 1 << 20);
    let sender = Sender::new(
        sink,
        config.sink.clone(),
        reader,
        letters,
        Arc::new(Stats::default()),
        CancellationToken::new(),
    );
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let stop = CancellationToken::new();
    let task = tokio::spawn(sender.run(stop.clone()));
    while seen.events.load(Ordering::Relaxed) < THROUGHPUT_EVENTS as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    stop.cancel();
    let _ = task.await;
    let bytes = seen.bytes.load(Ordering::Relaxed) as f64;
    println!(
        "sink throughput: {THROUGHPUT_EVENTS} events of {EVENT_BYTES} B, rate limit off, 500/batch"
    );
    println!(
        "  {:.0} events/s  {:.1} MB/s  {:.2} s  (process CPU {:.2} s, {:.2} CPU-s per million events, endpoint included)",
        THROUGHPUT_EVENTS as f64 / took,
        bytes / took / 1e6,
        took,
        cpu,
        cpu / (THROUGHPUT_EVENTS as f64 / 1e6)
    );
}

async fn latency() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/api", listener.local_addr().expect("addr"));
    let seen = Arc::new(Seen {
        timed: true,
        ..Seen::default()
    });
    tokio::spawn(serve(listener, seen.clone()));
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let (queue, _) = Queue::open(&dir.path().join("queue"), QueueConfig::default()).expect("queue");
    let config = sink_config(&url, "");
    let sink = Sink::from_config(&config.sink).expect("sink");
    let sender = Sender::new(
        sink,
        config.sink.clone(),
        queue.reader().expect("reader"),
        DeadLetters::new(dir.path(), 1 << 20),
        Arc::new(Stats::default()),
        CancellationToken::new(),
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn(sender.run(stop.clone()));
    let total = (LATENCY_SECONDS * LATENCY_RATE) as usize;
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    for i in 0..total {
        ticks.tick().await;
        // One event per append, as a quiet source would.
        queue
            .append(vec![payload(i, Some(now_micros()))])
            .await
            .expect("append");
    }
    while seen.events.load(Ordering::Relaxed) < total as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.cancel();
    let _ = task.await;
    let mut latencies = seen.latencies.lock().await.clone();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "sink latency: {total} events at {LATENCY_RATE}/s, default settings (fdatasync per append)"
    );
    println!(
        "  append -> endpoint: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        at(0.50) as f64 / 1000.0,
        at(0.99) as f64 / 1000.0,
        at(1.0) as f64 / 1000.0
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        throughput().await;
        latency().await;
    });
}
