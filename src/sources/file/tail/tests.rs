//! The reader on real temp files: lines, cuts, multiline records, JSON,
//! checkpoints and rewrites under the reader.

use super::*;
use std::io::Write;
use std::time::Duration;

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    store: Arc<Store>,
    settings: Arc<LineSettings>,
}

fn fixture(max: usize, multiline: Option<&str>, json: bool) -> Fixture {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("f.log");
    std::fs::write(&path, b"").expect("create");
    Fixture {
        store: Arc::new(Store::empty(dir.path().join("state.json"))),
        settings: Arc::new(LineSettings {
            source: Arc::from("t"),
            max_line_bytes: max,
            json,
            multiline: multiline.map(|p| Multiline {
                start: regex::bytes::Regex::new(p).expect("regex"),
                flush_timeout: Duration::from_millis(50),
            }),
            format: Format::Plain,
            kubernetes: false,
            stats: Arc::new(Stats::default()),
        }),
        path,
        _dir: dir,
    }
}

impl Fixture {
    fn append(&self, bytes: &[u8]) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .expect("open");
        f.write_all(bytes).expect("append");
    }

    fn tail(&self, offset: u64) -> Tail {
        let fp = Fingerprint::of(b"fp");
        let epoch = self
            .store
            .claim(fp, offset, TailCheck::default(), "f", 0, 0);
        let file = File::open(&self.path).expect("open");
        Tail::new(
            file,
            Arc::from("/f.log"),
            fp,
            epoch,
            offset,
            self.store.clone(),
            self.settings.clone(),
        )
        .expect("tail")
    }
}

fn drain(tail: &mut Tail) -> (Vec<Observation>, Outcome) {
    let mut buf = Vec::new();
    let mut all = Vec::new();
    loop {
        let mut out = Vec::new();
        let outcome = tail.read(&mut buf, &mut out).expect("read");
        all.extend(out);
        if !matches!(outcome, Outcome::Data { more: true }) {
            return (all, outcome);
        }
    }
}

fn lines(observations: &[Observation]) -> Vec<String> {
    observations
        .iter()
        .map(|o| {
            o.field("line")
                .and_then(Value::as_str)
                .expect("line")
                .to_owned()
        })
        .collect()
}

fn fire_all(observations: Vec<Observation>) {
    for mut o in observations {
        if let Some(cb) = o.on_durable.take() {
            cb.fire();
        }
    }
}

#[test]
fn splits_lines_and_keeps_the_unfinished_one() {
    let f = fixture(1024, None, false);
    f.append(b"one\ntwo\nthr");
    let mut tail = f.tail(0);
    let (out, _) = drain(&mut tail);
    assert_eq!(lines(&out), ["one", "two"]);
    assert_eq!(out[1].field("offset"), Some(&Value::from(4)));
    assert!(out[1].on_durable.is_some() && out[0].on_durable.is_none());
    fire_all(out);
    let fp = Fingerprint::of(b"fp");
    assert_eq!(f.store.get(&fp).expect("entry").offset, 8, "up to `thr`");
    f.append(b"ee\n");
    let (out, outcome) = drain(&mut tail);
    assert_eq!(lines(&out), ["three"]);
    assert_eq!(out[0].field("offset"), Some(&Value::from(8)));
    assert_eq!(outcome, Outcome::Data { more: false });
    fire_all(out);
    let entry = f.store.get(&fp).expect("entry");
    assert_eq!(entry.offset, 14);
    let file = File::open(&f.path).expect("open");
    assert!(entry.check.holds(&file, 14).expect("read"));
}

#[test]
fn ids_depend_on_offset_and_content_only() {
    let f = fixture(1024, None, false);
    f.append(b"same\nsame\n");
    let (a, _) = drain(&mut f.tail(0));
    let (b, _) = drain(&mut f.tail(0));
    assert_eq!(a[0].identity_bytes(), b[0].identity_bytes());
    assert_ne!(a[0].identity_bytes(), a[1].identity_bytes());
    assert_eq!(a[0].identity_bytes().map(<[u8]>::len), Some(32));
}

#[test]
fn long_lines_are_cut_and_the_rest_skipped() {
    let f = fixture(1024, None, false);
    let long = vec![b'x'; 3 * CHUNK_BYTES];
    f.append(&long);
    let mut tail = f.tail(0);
    let (out, _) = drain(&mut tail);
    assert_eq!(out.len(), 1, "the head is emitted before the newline");
    assert_eq!(lines(&out)[0].len(), 1024);
    assert_eq!(out[0].field("truncated"), Some(&Value::Bool(true)));
    f.append(b"\nnext\n");
    let (out, _) = drain(&mut tail);
    assert_eq!(lines(&out), ["next"]);
    assert_eq!(out[0].field("truncated"), None);
}

#[test]
fn a_line_of_exactly_the_limit_is_whole() {
    let f = fixture(1024, None, false);
    let mut bytes = vec![b'y'; 1024];
    f.append(&bytes);
    let mut tail = f.tail(0);
    assert!(drain(&mut tail).0.is_empty());
    bytes.clear();
    f.append(b"\n");
    let (out, _) = drain(&mut tail);
    assert_eq!(lines(&out)[0].len(), 1024);
    assert_eq!(out[0].field("truncated"), None);
}

#[test]
fn invalid_utf8_is_replaced() {
    let f = fixture(1024, None, false);
    f.append(b"ok \xff\xfe end\n");
    let (out, _) = drain(&mut f.tail(0));
    assert_eq!(lines(&out), ["ok \u{fffd}\u{fffd} end"]);
}

#[test]
fn json_objects_become_a_field() {
    let f = fixture(1024, None, true);
    f.append(b"{\"level\":\"warn\",\"n\":1}\nnot json\n[1]\n");
    let (out, _) = drain(&mut f.tail(0));
    assert_eq!(
        out[0].field("json").and_then(|j| j.get("level")),
        Some(&Value::from("warn"))
    );
    assert!(out[1].field("json").is_none());
    assert!(out[2].field("json").is_none());
}

#[test]
fn truncation_and_rewrites_are_seen() {
    let f = fixture(1024, None, false);
    f.append(b"aaaa\nbbbb\n");
    let mut tail = f.tail(0);
    drain(&mut tail);
    std::fs::write(&f.path, b"cc\n").expect("truncate");
    assert_eq!(drain(&mut tail).1, Outcome::Truncated);
    let mut tail = f.tail(0);
    drain(&mut tail);
    // Same length, different bytes before the read position.
    std::fs::write(&f.path, b"dd\nmore\n").expect("rewrite");
    assert_eq!(drain(&mut tail).1, Outcome::Truncated);
}

#[test]
fn a_start_inside_a_line_skips_to_the_next() {
    let f = fixture(1024, None, false);
    f.append(b"first line\nsecond\n");
    let (out, _) = drain(&mut f.tail(3));
    assert_eq!(lines(&out), ["second"]);
}

#[test]
fn finish_emits_the_last_line_without_newline() {
    let f = fixture(1024, None, false);
    f.append(b"a\nno newline");
    let mut tail = f.tail(0);
    let (out, _) = drain(&mut tail);
    assert_eq!(lines(&out), ["a"]);
    let mut out = Vec::new();
    tail.finish(&mut out);
    assert_eq!(lines(&out), ["no newline"]);
    assert_eq!(out[0].field("offset"), Some(&Value::from(2)));
}

#[test]
fn multiline_joins_records_and_flushes_on_timeout() {
    let f = fixture(1024, Some(r"^\S"), false);
    f.append(b"Error: boom\n  at a\n  at b\nINFO next\n  cont");
    let mut tail = f.tail(0);
    let (out, _) = drain(&mut tail);
    assert_eq!(lines(&out), ["Error: boom\n  at a\n  at b"]);
    fire_all(out);
    let fp = Fingerprint::of(b"fp");
    assert_eq!(
        f.store.get(&fp).expect("entry").offset,
        26,
        "the pending record starts at `INFO`"
    );
    f.append(b"\n");
    let (out, _) = drain(&mut tail);
    assert!(out.is_empty(), "the record may still grow");
    let deadline = tail.record_deadline().expect("pending");
    let mut out = Vec::new();
    tail.flush_due(deadline + Duration::from_millis(1), &mut out);
    assert_eq!(lines(&out), ["INFO next\n  cont"]);
    assert_eq!(out[0].field("offset"), Some(&Value::from(26)));
    fire_all(out);
    assert_eq!(f.store.get(&fp).expect("entry").offset, 43);
}

/// The bytes of each line's text, where they live.
fn texts(observations: &[Observation]) -> Vec<&[u8]> {
    observations
        .iter()
        .map(|o| {
            o.line
                .as_ref()
                .expect("typed line")
                .text
                .as_str()
                .as_bytes()
        })
        .collect()
}

#[test]
fn lines_of_one_read_share_its_chunk() {
    let f = fixture(1024, None, false);
    f.append(b"first\nsecond\n\nlast\n");
    let (out, _) = drain(&mut f.tail(0));
    assert_eq!(lines(&out), ["first", "second", "", "last"]);
    let texts = texts(&out);
    // Slices of one buffer, at their distance in the file: no line
    // was copied.
    let at = |i: usize| texts[i].as_ptr() as usize;
    assert_eq!(at(1) - at(0), 6);
    assert_eq!(at(3) - at(0), 14);
    assert_eq!(out[2].field("line"), Some(&Value::from("")));
    assert_eq!(out[3].field("offset"), Some(&Value::from(14)));
}

#[test]
fn a_line_spanning_reads_is_whole_and_outlives_the_reader() {
    let f = fixture(1024, None, false);
    f.append(b"caf\xc3");
    let mut tail = f.tail(0);
    assert!(drain(&mut tail).0.is_empty());
    f.append(b"\xa9 ok\nnext\n");
    let (out, _) = drain(&mut tail);
    drop(tail);
    assert_eq!(lines(&out), ["caf\u{e9} ok", "next"]);
    assert_eq!(out[1].field("offset"), Some(&Value::from(9)));
}

#[test]
fn utf8_cuts_land_on_char_boundaries() {
    let s = "aé".as_bytes(); // 'é' is 2 bytes at 1..3
    assert_eq!(floor_char_boundary(s, 2), 1);
    assert_eq!(floor_char_boundary(s, 1), 1);
    assert_eq!(floor_char_boundary(b"\x80\x80\x80\x80\x80", 4), 4);
}
