//! The few JSON writers the mapper's hot path needs: strings, timestamps
//! and UUIDs written straight into the event's buffer, byte for byte as
//! `serde_json` and [`crate::event::Event::to_json`] write them (the tests
//! hold them to that), without building a `serde_json::Value` first.
//!
//! It does not decide the shape of an event; `super::build` does.

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
pub(crate) fn write_str(out: &mut Vec<u8>, text: &str) {
    out.reserve(text.len() + 2);
    out.push(b'"');
    write_str_body(out, text);
    out.push(b'"');
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
pub(crate) fn write_str_body(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    let mut start = 0;
    while let Some(i) = next_escape(bytes, start) {
        let b = bytes[i];
        let escape = ESCAPE[usize::from(b)];
        out.extend_from_slice(&bytes[start..i]);
        if escape == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Writes any JSON value as serde_json does.
pub(crate) fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::String(s) => write_str(out, s),
        // Writing into a Vec cannot fail, and a Value's keys are strings.
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

/// Writes the time as herald always does, quoted: RFC 3339, UTC,
/// microseconds, `Z` (see [`crate::event::format_timestamp`]). Years must
/// be 0 to 9999, which [`in_range`] checks for parsed times.
pub(crate) fn write_timestamp(out: &mut Vec<u8>, at: &DateTime<Utc>) {
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
    out.extend_from_slice(&buf);
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
pub(crate) fn write_uuid(out: &mut Vec<u8>, id: &Uuid) {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.push(b'"');
    out.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
    out.push(b'"');
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

    #[test]
    fn control_characters() {
        let text = "a\u{0}b\u{1f}\u{7f}\"\\\n\t\r\u{8}\u{c}é";
        let mut out = Vec::new();
        write_str(&mut out, text);
        assert_eq!(out, serde_json::to_vec(text).expect("json"));
    }
}
