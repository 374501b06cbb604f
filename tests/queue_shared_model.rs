//! Model test for shared parts: random appends of records that refer to
//! shared parts, reads, acks, crashes, power cuts and restarts (so readers
//! start in the middle of segments, and later processes append to
//! segments an earlier one defined parts in). Whatever the queue hands
//! out must be the whole records, byte for byte, in order: the unacked
//! ones, preceded after a crash by a suffix of those acked since the last
//! flush, as in `queue_model`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use herald::queue::shared::{MARK, WITH_REFS, intern, write_ref};
use herald::queue::storage::MemStorage;
use herald::queue::{Queue, QueueConfig, Reader, Recovery, WhenFull};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Append a batch: for each record, the parts it refers to (indexes
    /// into `PARTS`) and the length of its own text.
    Append(Vec<(Vec<usize>, usize)>),
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

/// How many distinct parts records draw from.
const PARTS: usize = 6;

fn op() -> impl Strategy<Value = Op> {
    let record = (prop::collection::vec(0..PARTS, 0..3), 0usize..400);
    prop_oneof![
        6 => prop::collection::vec(record, 0..6).prop_map(Op::Append),
        4 => (1usize..12).prop_map(Op::Read),
        3 => (0u8..=4).prop_map(Op::Ack),
        1 => Just(Op::Crash),
        1 => Just(Op::PowerCut),
        1 => Just(Op::Restart),
        1 => Just(Op::Flush),
    ]
}

/// Part `i`: JSON-like bytes of a few hundred to a few thousand bytes, so
/// that segments of 64 KiB roll often.
fn part(i: usize) -> String {
    format!(
        "{{\"prefect.resource.id\":\"model.part.{i}\",\"pad\":\"{}\"}}",
        "p".repeat(200 + i * 700)
    )
}

/// A record referring to `parts`, with text `n` (unique per record) of
/// `len` bytes: its bytes in the queue's format, and the whole record.
fn record(parts: &[usize], n: u64, len: usize) -> (Vec<u8>, Vec<u8>) {
    let text = format!("{n}:{}", "t".repeat(len));
    let mut compact = vec![MARK, WITH_REFS];
    let mut whole = Vec::new();
    compact.extend_from_slice(b"{\"parts\":[");
    whole.extend_from_slice(b"{\"parts\":[");
    for (k, &i) in parts.iter().enumerate() {
        if k > 0 {
            compact.push(b',');
            whole.push(b',');
        }
        let p = part(i);
        write_ref(&mut compact, intern(p.as_bytes()).expect("registered"));
        whole.extend_from_slice(p.as_bytes());
    }
    let tail = format!("],\"text\":\"{text}\"}}");
    compact.extend_from_slice(tail.as_bytes());
    whole.extend_from_slice(tail.as_bytes());
    (compact, whole)
}

struct Model {
    /// Whole records appended and not acked, oldest first, with their seq
    /// once a reader handed them out.
    unacked: Vec<(Option<u64>, Vec<u8>)>,
    /// Records acked since the last flush: a crash may bring back a suffix.
    acked_unflushed: Vec<(u64, Vec<u8>)>,
    /// How many of `unacked` the current reader has handed out.
    read: usize,
    /// Records appended so far (makes each text unique).
    appended: u64,
}

fn config() -> QueueConfig {
    QueueConfig {
        max_bytes: 4 * 1024 * 1024,
        segment_bytes: QueueConfig::MIN_SEGMENT_BYTES,
        when_full: WhenFull::Block,
        ..QueueConfig::default()
    }
}

fn open(storage: &MemStorage) -> (Queue, Recovery) {
    Queue::open_with_storage(
        Path::new("/data/queue"),
        config(),
        Arc::new(storage.clone()),
    )
    .expect("open never fails on queue content")
}

/// Reads `n` records.
async fn read(reader: &mut Reader, n: usize) -> Vec<(u64, Vec<u8>)> {
    let mut got = Vec::new();
    while got.len() < n {
        let batch = tokio::time::timeout(
            Duration::from_secs(10),
            reader.next_batch(n - got.len(), usize::MAX),
        )
        .await
        .expect("records the model holds must be readable")
        .expect("read");
        got.extend(batch.into_iter().map(|r| (r.seq, r.payload.to_vec())));
    }
    got
}

/// After a reopen: the records acked since the last flush that are past
/// the ledger come back first, then every unacked one, whole.
async fn check_contents(queue: &Queue, recovery: &Recovery, model: &mut Model) {
    let back: Vec<(Option<u64>, Vec<u8>)> = model
        .acked_unflushed
        .drain(..)
        .filter(|(seq, _)| *seq > recovery.acked_through)
        .map(|(seq, whole)| (Some(seq), whole))
        .collect();
    model.unacked.splice(0..0, back);
    let mut reader = queue.reader().expect("one reader at a time");
    let got = read(&mut reader, model.unacked.len()).await;
    let want: Vec<&Vec<u8>> = model.unacked.iter().map(|(_, w)| w).collect();
    let got_payloads: Vec<&Vec<u8>> = got.iter().map(|(_, p)| p).collect();
    assert!(
        got_payloads == want,
        "records differ from the model after a reopen"
    );
    assert!(got.iter().all(|(seq, _)| *seq > recovery.acked_through));
    let m = queue.metrics();
    assert_eq!(m.corrupt_skipped_total, 0);
    assert_eq!(
        (recovery.records, m.depth_events),
        (model.unacked.len() as u64, model.unacked.len() as u64),
        "events queued, definitions left out"
    );
    for ((seq, _), (model_seq, _)) in got.iter().zip(&mut model.unacked) {
        *model_seq = Some(*seq);
    }
}

async fn run(ops: Vec<Op>) {
    let storage = MemStorage::new();
    let (mut queue, _) = open(&storage);
    let mut reader = queue.reader().expect("reader");
    let mut model = Model {
        unacked: Vec::new(),
        acked_unflushed: Vec::new(),
        read: 0,
        appended: 0,
    };
    for op in ops {
        match op {
            Op::Append(records) => {
                let (compact, whole): (Vec<Vec<u8>>, Vec<Vec<u8>>) = records
                    .iter()
                    .enumerate()
                    .map(|(i, (parts, len))| record(parts, model.appended + i as u64, *len))
                    .unzip();
                queue.append(compact).await.expect("append");
                model.appended += whole.len() as u64;
                model.unacked.extend(whole.into_iter().map(|w| (None, w)));
            }
            Op::Read(n) => {
                let available = model.unacked.len() - model.read;
                if available == 0 {
                    continue; // next_batch would wait for an append
                }
                let got = read(&mut reader, n.min(available)).await;
                for (k, (seq, payload)) in got.into_iter().enumerate() {
                    let (model_seq, whole) = &mut model.unacked[model.read + k];
                    assert!(
                        payload == *whole,
                        "reader hands out whole records, in order"
                    );
                    *model_seq = Some(seq);
                }
                model.read += n.min(available);
            }
            Op::Ack(quarters) => {
                let upto = model.read * quarters as usize / 4;
                if upto == 0 {
                    continue;
                }
                let seq = model.unacked[upto - 1]
                    .0
                    .expect("read, so its seq is known");
                reader.ack(seq).await.expect("ack");
                model.acked_unflushed.extend(
                    model
                        .unacked
                        .drain(..upto)
                        .map(|(seq, w)| (seq.unwrap_or_default(), w)),
                );
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
                if matches!(op, Op::PowerCut) {
                    storage.power_cut();
                }
                let recovery;
                (queue, recovery) = open(&storage);
                check_contents(&queue, &recovery, &mut model).await;
                reader = queue.reader().expect("reader");
                model.read = 0;
            }
        }
        assert_eq!(
            queue.metrics().depth_events,
            model.unacked.len() as u64,
            "the depth counts events, not definitions"
        );
    }
    drop(reader);
    queue.close().await.expect("close");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn shared_parts_match_the_model(ops in prop::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops));
    }
}
