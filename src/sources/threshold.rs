//! Thresholds with hysteresis: when a reading (CPU %, memory %, disk use)
//! becomes a `high` event and when it becomes `normal` again, without
//! flapping around one number.
//!
//! A [`Threshold`] has a `high` level, a lower `clear` level and a `for`
//! duration. [`Hysteresis`] goes high once readings have stayed at or above
//! `high` for `for`, and back to normal once they have stayed at or below
//! `clear` for `for`. A reading on the wrong side restarts the wait; one
//! between `clear` and `high` does not change a level and, while high,
//! restarts the wait for normal. So a value wobbling around `high` makes
//! one `high` and no `normal` until it really drops below `clear`.
//!
//! This module owns only that state machine and how a threshold is
//! configured; what is read, and what the transitions are called, is each
//! source's business.

use std::time::Duration;

use tokio::time::Instant;
use toml::de::DeValue;

use crate::config::decode::{self, ConfigDuration, Raw, Table};

/// `{ high = 90.0, clear = 80.0, for = "30s" }`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Threshold {
    /// A reading at or above this is high.
    pub high: f64,
    /// A reading at or below this is normal again; below `high`.
    pub clear: f64,
    /// How long a reading must stay on one side before the level changes.
    pub for_: Duration,
}

impl Threshold {
    /// A threshold; `clear` should be below `high`.
    pub const fn new(high: f64, clear: f64, for_: Duration) -> Self {
        Threshold { high, clear, for_ }
    }
}

/// Which side of a threshold a reading is on, as last announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// At or below `clear` (or never went high).
    Normal,
    /// At or above `high` for long enough.
    High,
}

/// One threshold's state over a stream of readings.
#[derive(Clone, Debug)]
pub struct Hysteresis {
    threshold: Threshold,
    level: Level,
    /// Since when readings have been on the other side of the level.
    crossing_since: Option<Instant>,
}

impl Hysteresis {
    /// Starts at `level` (the known level from before a restart, or
    /// [`Level::Normal`]).
    pub fn new(threshold: Threshold, level: Level) -> Self {
        Hysteresis {
            threshold,
            level,
            crossing_since: None,
        }
    }

    /// The current level.
    pub fn level(&self) -> Level {
        self.level
    }

    /// The threshold.
    pub fn threshold(&self) -> Threshold {
        self.threshold
    }

    /// Takes one reading seen at `now`; returns the new level when it
    /// changes. A NaN reading (nothing could be read) changes nothing and
    /// restarts any wait.
    pub fn update(&mut self, value: f64, now: Instant) -> Option<Level> {
        let crossing = match self.level {
            Level::Normal => value >= self.threshold.high,
            Level::High => value <= self.threshold.clear,
        };
        if !crossing {
            self.crossing_since = None;
            return None;
        }
        let since = *self.crossing_since.get_or_insert(now);
        if now.saturating_duration_since(since) < self.threshold.for_ {
            return None;
        }
        self.crossing_since = None;
        self.level = match self.level {
            Level::Normal => Level::High,
            Level::High => Level::Normal,
        };
        Some(self.level)
    }
}

/// Reads the threshold `key` of `t`: `key = { high = .., clear = .., for =
/// ".." }` (a missing `clear` or `for` comes from `default`, or is `high`
/// and 0s), `key = false` to turn it off, `key = true` for the default.
/// Absent: `default` (`None`: off). Mistakes are recorded with their
/// positions, and `clear >= high` is one of them.
pub fn read(
    t: &Table<'_, '_, '_>,
    key: &'static str,
    default: Option<Threshold>,
) -> Option<Threshold> {
    let dec = t.decoder();
    let Some(value) = t.value(key) else {
        return default;
    };
    match value.get_ref() {
        DeValue::Boolean(false) => return None,
        DeValue::Boolean(true) => {
            if default.is_none() {
                dec.error_at(
                    value.span(),
                    format!("`{key}` has no default threshold"),
                    Some(format!(
                        "write {key} = {{ high = .., clear = .., for = \"..\" }}"
                    )),
                );
            }
            return default;
        }
        DeValue::Table(_) => {}
        other => {
            decode::type_mistake(
                dec,
                Raw::File(value),
                "a table like { high = 90.0, clear = 80.0, for = \"1m\" } or false",
                other.type_str(),
            );
            return default;
        }
    }
    let sub = Table::new(dec, value, format!("`{key}`"))?;
    let high = if default.is_some() {
        sub.get_at::<f64>("high")
    } else {
        sub.required::<f64>("high")
    };
    let clear = sub.get_at::<f64>("clear");
    let for_ = sub.get::<ConfigDuration>("for").map(|d| d.0);
    sub.finish();
    let high_value = high.as_ref().map(|h| h.value).or(default.map(|d| d.high))?;
    let clear_value = clear
        .as_ref()
        .map(|c| c.value)
        .or(default.map(|d| d.clear))
        .unwrap_or(high_value);
    let threshold = Threshold {
        high: high_value,
        clear: clear_value,
        for_: for_.or(default.map(|d| d.for_)).unwrap_or(Duration::ZERO),
    };
    if threshold.clear > threshold.high || (threshold.clear == threshold.high && clear.is_some()) {
        let span = clear
            .and_then(|c| c.span)
            .or_else(|| high.and_then(|h| h.span))
            .unwrap_or_else(|| value.span());
        dec.error_at(
            span,
            format!(
                "`{key}`: clear ({}) must be below high ({})",
                threshold.clear, threshold.high
            ),
            Some("clear is the level a reading must fall back to before it is normal again".into()),
        );
    }
    Some(threshold)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::decode::Decoder;
    use toml::de::DeTable;

    const SECOND: Duration = Duration::from_secs(1);

    fn hysteresis(for_secs: u64) -> Hysteresis {
        Hysteresis::new(
            Threshold::new(90.0, 80.0, Duration::from_secs(for_secs)),
            Level::Normal,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn goes_high_only_after_staying_high_for_the_duration() {
        let mut h = hysteresis(3);
        assert_eq!(h.update(95.0, Instant::now()), None);
        tokio::time::advance(2 * SECOND).await;
        assert_eq!(h.update(95.0, Instant::now()), None);
        tokio::time::advance(SECOND).await;
        assert_eq!(h.update(91.0, Instant::now()), Some(Level::High));
        assert_eq!(h.level(), Level::High);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dip_restarts_the_wait() {
        let mut h = hysteresis(3);
        h.update(95.0, Instant::now());
        tokio::time::advance(2 * SECOND).await;
        assert_eq!(h.update(89.9, Instant::now()), None);
        tokio::time::advance(SECOND).await;
        assert_eq!(h.update(95.0, Instant::now()), None);
        tokio::time::advance(2 * SECOND).await;
        assert_eq!(
            h.update(95.0, Instant::now()),
            None,
            "only 2s since the dip"
        );
        tokio::time::advance(SECOND).await;
        assert_eq!(h.update(95.0, Instant::now()), Some(Level::High));
    }

    #[tokio::test(start_paused = true)]
    async fn no_flapping_around_the_threshold() {
        let mut h = hysteresis(0);
        let mut transitions = Vec::new();
        // A reading wobbling around `high` for ten minutes: one high, and
        // no normal, since it never falls to `clear`.
        for i in 0..600 {
            let value = if i % 2 == 0 { 90.5 } else { 89.5 };
            if let Some(level) = h.update(value, Instant::now()) {
                transitions.push(level);
            }
            tokio::time::advance(SECOND).await;
        }
        assert_eq!(transitions, [Level::High]);
        // Wobbling around `clear`: one normal.
        for i in 0..600 {
            let value = if i % 2 == 0 { 80.5 } else { 79.5 };
            if let Some(level) = h.update(value, Instant::now()) {
                transitions.push(level);
            }
            tokio::time::advance(SECOND).await;
        }
        assert_eq!(transitions, [Level::High, Level::Normal]);
    }

    #[tokio::test(start_paused = true)]
    async fn returns_to_normal_after_staying_below_clear() {
        let mut h = Hysteresis::new(Threshold::new(90.0, 80.0, 2 * SECOND), Level::High);
        assert_eq!(h.update(85.0, Instant::now()), None, "between: still high");
        h.update(70.0, Instant::now());
        tokio::time::advance(SECOND).await;
        assert_eq!(h.update(85.0, Instant::now()), None, "back above clear");
        h.update(70.0, Instant::now());
        tokio::time::advance(2 * SECOND).await;
        assert_eq!(h.update(70.0, Instant::now()), Some(Level::Normal));
    }

    #[tokio::test(start_paused = true)]
    async fn nan_changes_nothing() {
        let mut h = hysteresis(0);
        assert_eq!(h.update(f64::NAN, Instant::now()), None);
        assert_eq!(h.level(), Level::Normal);
    }

    fn read_from(text: &str, default: Option<Threshold>) -> (Option<Threshold>, Vec<String>) {
        let env = |_: &str| None;
        let dec = Decoder::new("t.toml", text, &env);
        let (document, _) = DeTable::parse_recoverable(text);
        let root = Table::root(&dec, document.get_ref());
        let threshold = read(&root, "cpu", default);
        root.finish();
        let mistakes = match dec.finish() {
            Ok(()) => Vec::new(),
            Err(m) => m.0.iter().map(ToString::to_string).collect(),
        };
        (threshold, mistakes)
    }

    #[test]
    fn reads_a_threshold_and_its_defaults() {
        let default = Some(Threshold::new(90.0, 80.0, 60 * SECOND));
        assert_eq!(
            read_from("cpu = { high = 95, clear = 70.5, for = \"5s\" }", None),
            (Some(Threshold::new(95.0, 70.5, 5 * SECOND)), vec![])
        );
        assert_eq!(
            read_from("cpu = { high = 95 }", default),
            (Some(Threshold::new(95.0, 80.0, 60 * SECOND)), vec![])
        );
        assert_eq!(read_from("", default), (default, vec![]));
        assert_eq!(read_from("cpu = false", default), (None, vec![]));
        assert_eq!(read_from("cpu = true", default), (default, vec![]));
    }

    #[test]
    fn reports_mistakes_with_positions() {
        let (_, mistakes) = read_from("cpu = { high = 80, clear = 90 }", None);
        assert_eq!(mistakes.len(), 1, "{mistakes:?}");
        assert!(mistakes[0].contains("t.toml:1:"), "{}", mistakes[0]);
        assert!(
            mistakes[0].contains("must be below high"),
            "{}",
            mistakes[0]
        );
        let (_, mistakes) = read_from("cpu = { clear = 10, hihg = 3 }", None);
        let all = mistakes.join("\n");
        assert!(all.contains("`high`"), "{all}");
        assert!(all.contains("did you mean `high`"), "{all}");
        let (_, mistakes) = read_from("cpu = \"high\"", None);
        assert!(mistakes[0].contains("expected a table"), "{mistakes:?}");
        let (_, mistakes) = read_from("cpu = true", None);
        assert!(mistakes[0].contains("no default"), "{mistakes:?}");
    }
}
