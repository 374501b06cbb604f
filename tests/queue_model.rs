//! Model test: random appends, reads, acks, crashes and power cuts against
//! a plain in-memory model of what the queue must hold.
//!
//! After every reopen the queue must yield exactly the unacked records, in
//! order, with the seqs and bytes they were appended with. With
//! `every_batch`, every append that resolved is durable, so a power cut
//! (forgetting all unsynced writes and directory changes) must lose none of
//! them either. Acks reach the ledger lazily (at most every 200 ms, when the
//! reader idles, or on `flush`), so after a crash the records acked since the
//! last flush may come back too: a suffix of them, never a gap, never a
//! record acked before a flush.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use herald::queue::storage::MemStorage;
use herald::queue::{Queue, QueueConfig, Reader, WhenFull};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Append a batch with these payload lengths.
    Append(Vec<usize>),
    /// Read up to this many records.
    Read(usize),
    /// Ack the records read so far, up to this fraction (0..=4 quarters).
    Ack(u8),
    /// Drop everything without closing, then reopen (process crash).
    Crash,
    /// Like `Crash`, but forgetting everything not synced (power cut).
    PowerCut,
    /// Close cleanly (flushing acks first) and reopen.
    Restart,
    /// Write pending acks to the ledger.
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(prop_oneof![0usize..64, 64usize..3000, 3000usize..16000], 0..6).prop_map(Op::Append),
        4 => (1usize..12).prop_map(Op::Read),
        3 => (0u8..=4).prop_map(Op::Ack),
        1 => Just(Op::Crash),
        1 => Just(Op::PowerCut),
        1 => Just(Op::Restart),
        1 => Just(Op::Flush),
    ]
}

/// Distinct, checkable payload bytes for a record.
fn payload(seq_hint: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq_hint.wrapping_mul(31).wrapping_add(i as u64) % 251) as u8)
        .collect()
}

/// Seq and length of each record: enough to read a failure, short enough
/// to print.
fn summary(records: &[(u64, Vec<u8>)]) -> Vec<(u64, usize)> {
    records.iter().map(|(seq, p)| (*seq, p.len())).collect()
}

struct Model {
    /// Every record appended and not yet acked, oldest first.
    unacked: Vec<(u64, Vec<u8>)>,
    /// Records acked since the last flush: a crash may bring back a suffix.
    acked_unflushed: Vec<(u64, Vec<u8>)>,
    /// How many of `unacked` the current reader has handed out.
    read: usize,
    next_seq: u64,
}

impl Model {
    fn unacked_bytes(&self) -> u64 {
        self.unacked.iter().map(|(_, p)| 16 + p.len() as u64).sum()
    }
}

/// A segment's time mark on disk: header, definition prefix, part 0, time.
const TIME_MARK_BYTES: u64 = 16 + 2 + 4 + 8;

fn config() -> QueueConfig {
    QueueConfig {
        max_bytes: 1024 * 1024,
        segment_bytes: QueueConfig::MIN_SEGMENT_BYTES,
        when_full: WhenFull::Block,
        ..QueueConfig::default()
    }
}

fn open(storage: &MemStorage) -> Queue {
    let (queue, _) = Queue::open_with_storage(
        Path::new("/data/queue"),
        config(),
        Arc::new(storage.clone()),
    )
    .expect("open never fails on queue content");
    queue
}

fn reader(queue: &Queue) -> Reader {
    queue.reader().expect("one reader at a time")
}

/// Reads every unacked record with a throwaway reader and compares it with
/// the model; the real reader starts again at the ack point. Records acked
/// but not flushed may precede them (a suffix of `acked_unflushed`); they
/// become unacked again in the model.
async fn check_contents(queue: &Queue, model: &mut Model) {
    let depth = queue.metrics().depth_events as usize;
    let returned = depth.saturating_sub(model.unacked.len());
    assert!(
        returned <= model.acked_unflushed.len(),
        "{returned} records came back, only {} were acked since the last flush",
        model.acked_unflushed.len()
    );
    let back = model
        .acked_unflushed
        .split_off(model.acked_unflushed.len() - returned);
    model.acked_unflushed.clear();
    model.unacked.splice(0..0, back);
    let mut reader = reader(queue);
    let mut got = Vec::new();
    while got.len() < model.unacked.len() {
        let batch =
            tokio::time::timeout(Duration::from_secs(10), reader.next_batch(100, usize::MAX))
                .await
                .expect("records the model holds must be readable")
                .expect("read");
        got.extend(batch.into_iter().map(|r| (r.seq, r.payload.to_vec())));
    }
    assert_eq!(
        summary(&got),
        summary(&model.unacked),
        "queue content differs from model"
    );
    assert!(got == model.unacked, "payload bytes differ from model");
    let m = queue.metrics();
    assert_eq!(m.depth_events, model.unacked.len() as u64);
    // Plus the time marks of segments that reuse a file, one per segment.
    let marks = m.depth_bytes.checked_sub(model.unacked_bytes());
    assert!(
        marks.is_some_and(|b| b % TIME_MARK_BYTES == 0 && b / TIME_MARK_BYTES <= m.segments as u64),
        "depth {} bytes for {} bytes of records in {} segments",
        m.depth_bytes,
        model.unacked_bytes(),
        m.segments
    );
}

async fn run(ops: Vec<Op>) {
    let storage = MemStorage::new();
    let mut queue = open(&storage);
    let mut reader = reader(&queue);
    let mut model = Model {
        unacked: Vec::new(),
        acked_unflushed: Vec::new(),
        read: 0,
        next_seq: 1,
    };
    for op in ops {
        match op {
            Op::Append(lens) => {
                let bytes: u64 = lens.iter().map(|&l| 16 + l as u64).sum();
                if model.unacked_bytes() + bytes > config().max_bytes {
                    continue; // would block: that policy has its own test
                }
                let records: Vec<Vec<u8>> = lens
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| payload(model.next_seq + i as u64, l))
                    .collect();
                let appended = queue.append(records.clone()).await.expect("append");
                // Seqs only grow; a segment that reuses a file starts with
                // its time mark, which takes one.
                assert!(appended.first_seq >= model.next_seq, "seqs went back");
                model.next_seq = appended.first_seq;
                assert_eq!(appended.last_seq + 1, model.next_seq + records.len() as u64);
                for r in records {
                    model.unacked.push((model.next_seq, r));
                    model.next_seq += 1;
                }
            }
            Op::Read(n) => {
                let available = model.unacked.len() - model.read;
                if available == 0 {
                    continue; // next_batch would wait for an append
                }
                let batch = reader.next_batch(n, usize::MAX).await.expect("read");
                let got: Vec<(u64, Vec<u8>)> = batch
                    .into_iter()
                    .map(|r| (r.seq, r.payload.to_vec()))
                    .collect();
                // A batch may stop early (at a segment's end), never empty.
                assert!(!got.is_empty() && got.len() <= n, "batch of {}", got.len());
                let want = &model.unacked[model.read..model.read + got.len().min(available)];
                assert_eq!(summary(&got), summary(want), "reader order");
                assert!(got == want, "reader payload bytes differ");
                model.read += got.len();
            }
            Op::Ack(quarters) => {
                let upto = model.read * quarters as usize / 4;
                if upto == 0 {
                    continue;
                }
                let seq = model.unacked[upto - 1].0;
                reader.ack(seq).await.expect("ack");
                model.acked_unflushed.extend(model.unacked.drain(..upto));
                model.read -= upto;
            }
            Op::Flush => {
                reader.flush().await.expect("flush");
                model.acked_unflushed.clear();
            }
            Op::Crash | Op::PowerCut | Op::Restart => {
                if matches!(op, Op::Restart) {
                    reader.flush().await.expect("flush");
                    model.acked_unflushed.clear();
                    drop(reader);
                    queue.close().await.expect("close");
                } else {
                    drop(reader);
                    drop(queue);
                }
                // Every append and ack above was awaited, and the writer
                // does no I/O after answering, so cutting the power now
                // cannot race with it.
                if matches!(op, Op::PowerCut) {
                    storage.power_cut();
                }
                queue = open(&storage);
                check_contents(&queue, &mut model).await;
                reader = self::reader(&queue);
                model.read = 0;
            }
        }
    }
    reader.flush().await.expect("flush");
    model.acked_unflushed.clear();
    drop(reader);
    check_contents(&queue, &mut model).await;
    queue.close().await.expect("close");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn queue_matches_model(ops in prop::collection::vec(op(), 1..80)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops));
    }
}
