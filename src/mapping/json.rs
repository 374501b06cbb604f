//! The few JSON writers the mapper's hot path needs: strings, timestamps
//! and UUIDs written straight into the event's buffer, byte for byte as
//! `serde_json` and [`crate::event::Event::to_json`] write them (the tests
//! hold them to that), without building a `serde_json::Value` first.
//!
//! It does not decide the shape of an event; `super::build` does.

use bytes::BufMut;
use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::Value;
use uuid::Uuid;

/// What each byte becomes inside a JSON string: 0 for itself, else the
/// letter after the backslash (`u` for `\u00XX`). Same table as
/// serde_json's, so the bytes match.
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = b'u';
        i += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Writes `text` as a quoted JSON string.
pub(crate) fn write_str(out: &mut impl BufMut, text: &str) {
    out.put_u8(b'"');
    write_str_body(out, text);
    out.put_u8(b'"');
}

/// The bytes of a little-endian word that need escaping (below 0x20, `"`
/// or `\\`), flagged by their high bit, using the classic has-less /
/// has-zero-byte bit tricks. Bits above a flagged byte may be flagged
/// wrongly (a borrow), but the lowest flagged byte is always exact, which
/// is all [`write_str_body`] relies on.
fn escapes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    below_space
        | zero_in(word ^ (ONES * u64::from(b'"')))
        | zero_in(word ^ (ONES * u64::from(b'\\')))
}

/// Bytes [`clean_prefix`] looks at at once.
const CHUNK: usize = 16;

/// How many bytes at the start of `bytes`, in whole [`CHUNK`]s, need no
/// escape. Much text needs none at all, or only further on: this skips
/// it faster than [`next_escape`] can, because the test is written byte
/// by byte over a fixed-size array, which the compiler turns into a few
/// vector compares (`|`, not `||`: branches would keep it scalar).
fn clean_prefix(bytes: &[u8]) -> usize {
    let mut clean = 0;
    while let Some(chunk) = bytes.get(clean..).and_then(<[u8]>::first_chunk::<CHUNK>) {
        let dirty = chunk.iter().fold(0u8, |any, &b| {
            any | u8::from((b < 0x20) | (b == b'"') | (b == b'\\'))
        });
        if dirty != 0 {
            break;
        }
        clean += CHUNK;
    }
    clean
}

/// The index of the first byte at or after `from` that needs escaping.
fn next_escape(bytes: &[u8], mut from: usize) -> Option<usize> {
    // Eight bytes at a time; most text needs no escape at all.
    while let Some(chunk) = bytes.get(from..from + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let flags = escapes(u64::from_le_bytes(word));
        if flags != 0 {
            return Some(from + (flags.trailing_zeros() / 8) as usize);
        }
        from += 8;
    }
    bytes
        .get(from..)?
        .iter()
        .position(|&b| ESCAPE[usize::from(b)] != 0)
        .map(|i| from + i)
}

/// Writes `text` escaped, without quotes: runs that need no escape are
/// copied whole.
pub fn write_str_body(out: &mut impl BufMut, text: &str) {
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut from = clean_prefix(bytes);
    while let Some(i) = next_escape(bytes, from) {
        let b = bytes[i];
        let escape = ESCAPE[usize::from(b)];
        out.put_slice(&bytes[start..i]);
        if escape == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.put_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.put_slice(&[b'\\', escape]);
        }
        start = i + 1;
        from = start;
    }
    out.put_slice(&bytes[start..]);
}

/// Writes any JSON value as serde_json does.
pub(crate) fn write_value(out: &mut impl BufMut, value: &Value) {
    match value {
        Value::String(s) => write_str(out, s),
        // Every line's offset, for one: digits without a serializer.
        Value::Number(n) if n.is_u64() => write_u64(out, n.as_u64().unwrap_or_default()),
        // Writing into memory cannot fail, and a Value's keys are strings.
        other => {
            let _ = serde_json::to_writer(out.writer(), other);
        }
    }
}

/// Writes `n` in decimal.
pub fn write_u64(out: &mut impl BufMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[at..]);
}

/// Writes the time as herald always does, quoted: RFC 3339, UTC,
/// microseconds, `Z` (see [`crate::event::format_timestamp`]). Years must
/// be 0 to 9999, which [`in_range`] checks for parsed times.
pub(crate) fn write_timestamp(out: &mut impl BufMut, at: &DateTime<Utc>) {
    // The naive UTC time holds the fields as they are; asking the
    // `DateTime` for each one adds the (zero) offset every time.
    let at = at.naive_utc();
    let year = at.year().clamp(0, 9999) as u32;
    // A leap second shows as nanoseconds past 1e9; write it as the last
    // microsecond of its second rather than overflow the field.
    let micros = (at.nanosecond() / 1000).min(999_999);
    let mut buf = *b"\"0000-00-00T00:00:00.000000Z\"";
    put(&mut buf[1..5], year);
    put(&mut buf[6..8], at.month());
    put(&mut buf[9..11], at.day());
    put(&mut buf[12..14], at.hour());
    put(&mut buf[15..17], at.minute());
    put(&mut buf[18..20], at.second());
    put(&mut buf[21..27], micros);
    out.put_slice(&buf);
}

/// Whether herald can write this time (a four-digit year).
pub(crate) fn in_range(at: &DateTime<Utc>) -> bool {
    (0..=9999).contains(&at.year())
}

fn put(digits: &mut [u8], mut n: u32) {
    for d in digits.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Writes a UUID, quoted, hyphenated and lower case.
pub(crate) fn write_uuid(out: &mut impl BufMut, id: &Uuid) {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.put_u8(b'"');
    out.put_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
    out.put_u8(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    #[test]
    fn timestamps_match_the_event_module() {
        let at = Utc
            .with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
            .single()
            .expect("valid")
            + chrono::Duration::microseconds(7);
        let mut out = Vec::new();
        write_timestamp(&mut out, &at);
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            format!("\"{}\"", crate::event::format_timestamp(&at))
        );
    }

    #[test]
    fn values_are_written_as_serde_json_writes_them() {
        let values = [
            serde_json::json!(0),
            serde_json::json!(7),
            serde_json::json!(10),
            serde_json::json!(u64::MAX),
            serde_json::json!(-12),
            serde_json::json!(1.5),
            serde_json::json!(true),
            serde_json::json!(null),
            serde_json::json!("a\"b"),
            serde_json::json!({"k": [1, "x"]}),
        ];
        for value in values {
            let mut out = Vec::new();
            write_value(&mut out, &value);
            assert_eq!(
                out,
                serde_json::to_vec(&value).expect("serializes"),
                "{value}"
            );
        }
    }

    #[test]
    fn uuids_are_lower_case_and_hyphenated() {
        let id = crate::event::derived_id("h", "s", b"x");
        let mut out = Vec::new();
        write_uuid(&mut out, &id);
        assert_eq!(out, serde_json::to_vec(&id.to_string()).expect("json"));
    }

    proptest! {
        #[test]
        fn strings_match_serde_json(text in any::<String>()) {
            let mut out = Vec::new();
            write_str(&mut out, &text);
            prop_assert_eq!(out, serde_json::to_vec(&text).expect("json"));
        }

        #[test]
        fn times_match_the_event_module(secs in 0i64..253_402_300_799, nanos in 0u32..1_000_000_000) {
            let at = Utc.timestamp_opt(secs, nanos).single().expect("in range");
            let mut out = Vec::new();
            write_timestamp(&mut out, &at);
            prop_assert_eq!(
                String::from_utf8(out).expect("utf8"),
                format!("\"{}\"", crate::event::format_timestamp(&at))
            );
        }
    }

    /// The rules, one char at a time, as serde_json writes them: what
    /// the word-at-a-time writer must match byte for byte.
    fn reference(text: &str) -> Vec<u8> {
        let mut out = vec![b'"'];
        for c in text.chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\u{8}' => out.extend_from_slice(b"\\b"),
                '\t' => out.extend_from_slice(b"\\t"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\u{c}' => out.extend_from_slice(b"\\f"),
                '\r' => out.extend_from_slice(b"\\r"),
                c if u32::from(c) < 0x20 => {
                    out.extend_from_slice(format!("\\u{:04x}", u32::from(c)).as_bytes());
                }
                c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        out.push(b'"');
        out
    }

    /// Escapes `text` after some bytes already in the buffer (as in an
    /// event) and checks it against [`reference`].
    fn check(text: &str) {
        let mut out = b"{\"k\":".to_vec();
        write_str(&mut out, text);
        assert!(
            out[5..] == reference(text),
            "escaping {text:?}: got {:?}",
            String::from_utf8_lossy(&out[5..])
        );
    }

    /// A small xorshift generator: fixed seeds, reproducible strings.
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
    }

    /// Chars that exercise every rule: plain, escaped, control, DEL,
    /// two-, three- and four-byte UTF-8 (U+2028 and U+2029 included,
    /// which JSON leaves as they are).
    const MIX: &[char] = &[
        'a',
        'z',
        ' ',
        '~',
        '"',
        '\\',
        '/',
        '\u{0}',
        '\u{1}',
        '\u{8}',
        '\t',
        '\n',
        '\u{b}',
        '\u{c}',
        '\r',
        '\u{1f}',
        '\u{7f}',
        'é',
        '\u{80}',
        '\u{7ff}',
        '\u{800}',
        '✓',
        '\u{2028}',
        '\u{2029}',
        '\u{ffff}',
        '😀',
        '\u{10ffff}',
    ];

    #[test]
    fn every_ascii_char_at_every_position_matches_the_reference() {
        for c in (0u8..128).map(char::from) {
            for len in 1..=48 {
                for at in 0..len {
                    let text: String = (0..len).map(|i| if i == at { c } else { 'x' }).collect();
                    check(&text);
                }
            }
        }
    }

    #[test]
    fn escapes_around_chunk_boundaries_match_the_reference() {
        check("");
        // Pairs of escapes (the second inside the same chunk or the next).
        for len in 1..=40 {
            for a in 0..len {
                for b in a..len {
                    for (x, y) in [('"', '\\'), ('\n', '"'), ('\u{1}', '\u{1f}')] {
                        let text: String = (0..len)
                            .map(|i| match i {
                                _ if i == a => x,
                                _ if i == b => y,
                                _ => 'q',
                            })
                            .collect();
                        check(&text);
                    }
                }
            }
        }
        // Multibyte chars straddling every boundary, next to escapes.
        for c in MIX {
            for pad in 0..40 {
                check(&format!("{}{c}", "p".repeat(pad)));
                check(&format!("{}{c}\"{}", "p".repeat(pad), "s".repeat(pad % 17)));
            }
        }
        // Everything escaped, and long runs.
        for len in 0..70 {
            check(&"\"".repeat(len));
            check(&"\u{0}".repeat(len));
        }
        check(&"a".repeat(10_000));
        check(&"ab\"cd\\ef\u{1}gh".repeat(1_000));
        check(&"\u{2}".repeat(10_000));
    }

    #[test]
    fn random_strings_match_the_reference() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..5_000 {
            let len = match rng.below(4) {
                0 => rng.below(16),
                1 => rng.below(64),
                2 => rng.below(300),
                _ => rng.below(3_000),
            };
            // Mostly plain text with a few of the others, as in real logs,
            // or the others alone.
            let dense = rng.below(4) == 0;
            let text: String = (0..len)
                .map(|_| {
                    if dense || rng.below(8) == 0 {
                        MIX[rng.below(MIX.len())]
                    } else {
                        char::from(b' ' + rng.below(95) as u8)
                    }
                })
                .collect();
            check(&text);
        }
    }

    /// Lines like the tail benchmark's: nginx access lines, JSON
    /// application lines with escaped quotes, plain text.
    fn sample_lines(kind: &str, count: usize) -> Vec<String> {
        let mut rng = Rng(42);
        let paths = [
            "/api/v1/flows",
            "/healthz",
            "/api/v2/deployments/8f3a/runs",
            "/login",
        ];
        let agents = [
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0",
            "curl/8.5.0",
            "prefect/3.1.0 (API 0.8.4)",
        ];
        let words = [
            "flow",
            "run",
            "task",
            "\\\"quoted\\\"",
            "C:\\\\tmp",
            "café",
            "retry",
            "ok",
        ];
        (0..count)
            .map(|seq| match kind {
                "access" => format!(
                    "{}.{}.{}.{} - - [10/Oct/2024:13:55:{:02} +0000] \"GET {}?seq={seq} HTTP/1.1\" \
                     {} {} \"{}\" \"{}\" rt=0.{:03}",
                    1 + rng.below(223),
                    rng.below(256),
                    rng.below(256),
                    rng.below(256),
                    rng.below(60),
                    paths[rng.below(paths.len())],
                    [200, 404, 500][rng.below(3)],
                    rng.below(500_000),
                    ["-", "https://app.example.com/dashboard"][rng.below(2)],
                    agents[rng.below(agents.len())],
                    rng.below(1000)
                ),
                "json" => {
                    let msg: Vec<&str> = (0..3 + rng.below(20))
                        .map(|_| words[rng.below(words.len())])
                        .collect();
                    format!(
                        "{{\"ts\":\"2024-05-01T12:00:{:02}.{:03}Z\",\"level\":\"INFO\",\
                         \"logger\":\"prefect.flow_runs\",\"seq\":{seq},\"msg\":\"{}\"}}",
                        rng.below(60),
                        rng.below(1000),
                        msg.join(" ")
                    )
                }
                _ => format!(
                    "2024-05-01 12:00:{:02} INFO worker {} finished task {seq} of flow run {:x} \
                     in {}.{:03}s, {} rows written to the warehouse",
                    rng.below(60),
                    rng.below(16),
                    rng.next(),
                    rng.below(10),
                    rng.below(1000),
                    rng.below(100_000)
                ),
            })
            .collect()
    }

    /// Not a check: how long escaping takes, best of seven rounds. Run
    /// with `cargo test --release --lib escape_timing -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing only"]
    fn escape_timing() {
        for kind in ["access", "json", "plain"] {
            let lines = sample_lines(kind, 20_000);
            let bytes: usize = lines.iter().map(String::len).sum();
            let mut out = Vec::with_capacity(4096);
            let best = (0..7)
                .map(|_| {
                    let started = std::time::Instant::now();
                    for line in &lines {
                        out.clear();
                        write_str(&mut out, std::hint::black_box(line));
                        std::hint::black_box(&out);
                    }
                    started.elapsed()
                })
                .min()
                .unwrap_or_default();
            println!(
                "{kind:>6} ({} bytes avg): {:.1} ns/line",
                bytes / lines.len(),
                best.as_nanos() as f64 / lines.len() as f64
            );
        }
    }

    #[test]
    fn control_characters() {
        let text = "a\u{0}b\u{1f}\u{7f}\"\\\n\t\r\u{8}\u{c}é";
        let mut out = Vec::new();
        write_str(&mut out, text);
        assert_eq!(out, serde_json::to_vec(text).expect("json"));
    }
}
