//! Queue throughput against the disk's own ceiling.
//!
//! Appends 400-byte events in batches of 1000 (one fdatasync per batch),
//! then reads and acks them all, and measures in the same run the raw
//! `write + fdatasync` rate of the same bytes in the same batches to a plain
//! file in the same directory. The queue's goal is at least 70% of that
//! ceiling. The directory is under the target dir, not a tmpfs, so syncs
//! are real. Run with `cargo bench --bench queue`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use herald::queue::{Queue, QueueConfig};

const EVENT_BYTES: usize = 400;
const BATCH: usize = 1000;
const BATCHES: usize = 200;
/// Record header size in the queue format (`len | crc | seq`).
const HEADER: usize = 16;
const ROUNDS: usize = 3;

fn event(i: usize) -> Vec<u8> {
    let head = format!("{{\"event\":\"bench.line\",\"id\":{i},\"pad\":\"");
    let mut v = head.into_bytes();
    v.resize(EVENT_BYTES - 2, b'x');
    v.extend_from_slice(b"\"}");
    v
}

fn batches() -> Vec<Vec<Vec<u8>>> {
    (0..BATCHES)
        .map(|b| (0..BATCH).map(|i| event(b * BATCH + i)).collect())
        .collect()
}

/// The ceiling: the same encoded bytes, one `write` and one `fdatasync` per
/// batch, to a fresh file.
fn raw(dir: &Path) -> Duration {
    let path = dir.join("raw.bin");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .expect("create raw file");
    let buf = vec![b'r'; BATCH * (HEADER + EVENT_BYTES)];
    let start = Instant::now();
    for _ in 0..BATCHES {
        file.write_all(&buf).expect("write");
        file.sync_data().expect("fdatasync");
    }
    let took = start.elapsed();
    drop(file);
    std::fs::remove_file(&path).expect("remove raw file");
    took
}

/// Appends every batch, one at a time; then reads and acks everything.
async fn queue(dir: &Path, input: &[Vec<Vec<u8>>]) -> (Duration, Duration, u64) {
    let qdir = dir.join("queue");
    let (queue, _) = Queue::open(&qdir, QueueConfig::default()).expect("open queue");
    let input = input.to_vec(); // copies made before timing: append takes ownership
    let start = Instant::now();
    for batch in input {
        queue.append(batch).await.expect("append");
    }
    let append = start.elapsed();
    let syncs = queue.metrics().syncs_total;

    let mut reader = queue.reader().expect("reader");
    let total = (BATCH * BATCHES) as u64;
    let start = Instant::now();
    let mut last = 0;
    while last < total {
        let batch = reader
            .next_batch(BATCH, BATCH * EVENT_BYTES * 2)
            .await
            .expect("read");
        last = batch.last().expect("non-empty batch").seq;
        reader.ack(last).await.expect("ack");
    }
    let read = start.elapsed();
    drop(reader);
    queue.close().await.expect("close");
    std::fs::remove_dir_all(&qdir).expect("remove queue dir");
    (append, read, syncs)
}

fn rate(d: Duration) -> (f64, f64) {
    let events = (BATCH * BATCHES) as f64;
    let secs = d.as_secs_f64();
    (events / secs, events * EVENT_BYTES as f64 / secs / 1e6)
}

fn main() {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(base).expect("target tmp dir");
    let tmp = tempfile::tempdir_in(base).expect("bench dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let input = batches();
    println!(
        "queue bench: {} events of {EVENT_BYTES} B, batches of {BATCH}, one fdatasync per batch, dir {}",
        BATCH * BATCHES,
        tmp.path().display()
    );
    let (mut raws, mut appends, mut reads) = (Vec::new(), Vec::new(), Vec::new());
    // Round 0 warms the page cache, allocator and file system; not counted.
    for round in 0..=ROUNDS {
        // Alternate, so drift in the disk's speed hits both alike.
        let r = raw(tmp.path());
        let (a, rd, syncs) = rt.block_on(queue(tmp.path(), &input));
        let ((re, _), (ae, _), (rde, _)) = (rate(r), rate(a), rate(rd));
        println!(
            "  round {round}: raw {re:>9.0} ev/s | append {ae:>9.0} ev/s ({syncs} syncs) | read+ack {rde:>9.0} ev/s"
        );
        if round > 0 {
            raws.push(r);
            appends.push(a);
            reads.push(rd);
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (r, a, rd) = (median(&mut raws), median(&mut appends), median(&mut reads));
    let ((re, rm), (ae, am), (rde, rdm)) = (rate(r), rate(a), rate(rd));
    println!("median of {ROUNDS} rounds:");
    println!("  raw write+fdatasync (ceiling): {re:>10.0} events/s {rm:>8.1} MB/s");
    println!("  queue append:                  {ae:>10.0} events/s {am:>8.1} MB/s");
    println!("  queue read+ack:                {rde:>10.0} events/s {rdm:>8.1} MB/s");
    println!(
        "  append / ceiling: {:.0}% (goal >= 70%)",
        100.0 * r.as_secs_f64() / a.as_secs_f64()
    );
}
