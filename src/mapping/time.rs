//! Fast paths for the two time formats logs use most: the common log
//! format's `%d/%b/%Y:%H:%M:%S %z` (nginx, Apache) and RFC 3339.
//!
//! Each accepts only the canonical spelling (fixed widths, `Jan`..`Dec`,
//! `T` and `Z` in upper case, a valid date and time, no leap second) and
//! then gives exactly the instant chrono gives; anything else returns
//! `None` and the caller falls back to chrono, which stays the reference.
//! The tests hold the two to that. This module does not decide which
//! format a rule uses; `super::rule` does.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

/// Two ASCII digits.
fn two(b: &[u8], at: usize) -> Option<u32> {
    let (h, l) = (
        b.get(at)?.wrapping_sub(b'0'),
        b.get(at + 1)?.wrapping_sub(b'0'),
    );
    (h < 10 && l < 10).then(|| u32::from(h) * 10 + u32::from(l))
}

/// Four ASCII digits.
fn four(b: &[u8], at: usize) -> Option<u32> {
    Some(two(b, at)? * 100 + two(b, at + 2)?)
}

/// `+HHMM` or `+HH:MM` (`colon`) as seconds east of UTC.
fn offset(b: &[u8], at: usize, colon: bool) -> Option<i64> {
    let sign = match b.get(at)? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let hours = two(b, at + 1)?;
    let minutes = if colon {
        (*b.get(at + 3)? == b':').then_some(())?;
        two(b, at + 4)?
    } else {
        two(b, at + 3)?
    };
    (hours < 24 && minutes < 60).then(|| sign * i64::from(hours * 3600 + minutes * 60))
}

/// The instant of a local date and time at `offset` seconds east of UTC.
fn instant(
    (year, month, day): (u32, u32, u32),
    (hour, minute, second, nanos): (u32, u32, u32, u32),
    offset: i64,
) -> Option<DateTime<Utc>> {
    // A leap second (60) is left to chrono, which has its own rules for it.
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let local = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?
        .and_hms_nano_opt(hour, minute, second, nanos)?;
    Some(
        local
            .checked_sub_signed(TimeDelta::seconds(offset))?
            .and_utc(),
    )
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// The chrono format this module reads as [`common_log`].
pub(crate) const COMMON_LOG: &str = "%d/%b/%Y:%H:%M:%S %z";

/// `10/Oct/2024:13:55:36 +0000`, in its canonical spelling only.
pub(crate) fn common_log(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    if b.len() != 26
        || b[2] != b'/'
        || b[6] != b'/'
        || b[11] != b':'
        || b[14] != b':'
        || b[17] != b':'
        || b[20] != b' '
    {
        return None;
    }
    let month = MONTHS.iter().position(|m| b[3..6] == m[..])? as u32 + 1;
    instant(
        (four(b, 7)?, month, two(b, 0)?),
        (two(b, 12)?, two(b, 15)?, two(b, 18)?, 0),
        offset(b, 21, false)?,
    )
}

/// `2024-10-10T13:55:36.250Z` or `...+02:00`, with 1 to 9 fraction digits
/// or none, in its canonical spelling only.
pub(crate) fn rfc3339(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let mut at = 19;
    let mut nanos = 0;
    if b[at] == b'.' {
        at += 1;
        let digits = b[at..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        for &c in &b[at..at + digits] {
            nanos = nanos * 10 + u32::from(c - b'0');
        }
        nanos *= 10u32.pow(9 - digits as u32);
        at += digits;
    }
    let offset = match &b[at..] {
        b"Z" => 0,
        rest if rest.len() == 6 => offset(b, at, true)?,
        _ => return None,
    };
    instant(
        (four(b, 0)?, two(b, 5)?, two(b, 8)?),
        (two(b, 11)?, two(b, 14)?, two(b, 17)?, nanos),
        offset,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::format::{Parsed, StrftimeItems};
    use proptest::prelude::*;

    fn chrono_common_log(text: &str) -> Option<DateTime<Utc>> {
        let items = StrftimeItems::new(COMMON_LOG).parse().ok()?;
        let mut parsed = Parsed::new();
        chrono::format::parse(&mut parsed, text, items.iter()).ok()?;
        Some(parsed.to_datetime().ok()?.with_timezone(&Utc))
    }

    fn chrono_rfc3339(text: &str) -> Option<DateTime<Utc>> {
        Some(DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc))
    }

    #[test]
    fn common_log_examples() {
        for text in [
            "10/Oct/2024:13:55:36 +0000",
            "10/Oct/2024:13:55:36 -0730",
            "29/Feb/2024:00:00:00 +2359",
            "01/Jan/0000:00:30:00 +0100",
            "31/Dec/9999:23:59:59 -2359",
        ] {
            assert_eq!(common_log(text), chrono_common_log(text), "{text}");
            assert!(common_log(text).is_some(), "{text}");
        }
        for text in [
            "29/Feb/2023:00:00:00 +0000",
            "10/oct/2024:13:55:36 +0000",
            "10/Oct/2024:13:55:60 +0000",
            "10/Oct/2024:24:00:00 +0000",
            "10/Oct/2024:13:55:36 +2400",
            "10/Oct/2024:13:55:36 +0060",
            "10/Oct/2024:13:55:36 +00:00",
            "1/Oct/2024:13:55:36 +0000",
            "10/Oct/2024:13:55:36 Z",
        ] {
            assert_eq!(common_log(text), None, "{text} is left to chrono");
        }
    }

    #[test]
    fn rfc3339_examples() {
        for text in [
            "2024-10-10T13:55:36Z",
            "2024-10-10T13:55:36.250Z",
            "2024-10-10T13:55:36.123456789+02:00",
            "2024-10-10T13:55:36.1-23:59",
            "0000-01-01T00:00:00+00:30",
        ] {
            assert_eq!(rfc3339(text), chrono_rfc3339(text), "{text}");
            assert!(rfc3339(text).is_some(), "{text}");
        }
        for text in [
            "2024-10-10t13:55:36Z",
            "2024-10-10 13:55:36Z",
            "2024-10-10T13:55:36z",
            "2024-10-10T13:55:36.Z",
            "2024-10-10T13:55:36.1234567890Z",
            "2024-10-10T13:55:60Z",
            "2024-02-30T13:55:36Z",
            "2024-10-10T13:55:36+0200",
            "2024-10-10T13:55:36",
        ] {
            assert_eq!(rfc3339(text), None, "{text} is left to chrono");
        }
    }

    proptest! {
        /// Whatever the fast path accepts, chrono reads the same; spelled
        /// from parts that are mostly valid, so both paths are exercised.
        #[test]
        fn common_log_agrees_with_chrono(
            day in 0u32..33, month in 0usize..13, year in 0u32..10000,
            h in 0u32..25, m in 0u32..61, s in 0u32..61,
            sign in prop::sample::select(vec!['+', '-', ' ']),
            oh in 0u32..25, om in 0u32..61,
        ) {
            let name = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                "Nov", "Dec", "oct"][month];
            let text = format!("{day:02}/{name}/{year:04}:{h:02}:{m:02}:{s:02} {sign}{oh:02}{om:02}");
            if let Some(at) = common_log(&text) {
                prop_assert_eq!(Some(at), chrono_common_log(&text), "{}", text);
            }
        }

        #[test]
        fn rfc3339_agrees_with_chrono(
            year in 0u32..10000, month in 0u32..14, day in 0u32..33,
            h in 0u32..25, m in 0u32..61, s in 0u32..61,
            frac in prop::sample::select(vec!["", ".", ".5", ".123456", ".987654321", ".1234567891"]),
            zone in prop::sample::select(vec!["Z", "z", "+00:00", "-07:30", "+23:59", "+24:00", "+0200"]),
        ) {
            let text = format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}{frac}{zone}");
            if let Some(at) = rfc3339(&text) {
                prop_assert_eq!(Some(at), chrono_rfc3339(&text), "{}", text);
            }
        }

        #[test]
        fn arbitrary_text_never_disagrees(text in "[0-9]{2}/[A-Za-z]{3}/[0-9:]{13} [+-][0-9]{4}|.{0,30}") {
            if let Some(at) = common_log(&text) {
                prop_assert_eq!(Some(at), chrono_common_log(&text));
            }
            if let Some(at) = rfc3339(&text) {
                prop_assert_eq!(Some(at), chrono_rfc3339(&text));
            }
        }
    }
}
