//! Per-rule flood control: `sample = N` keeps one match in N, and
//! `max_per_second = R` lets at most R a second through (a token bucket
//! holding one second's worth, so a quiet rule may burst R at once).
//!
//! Time is the observations' own clock (`observed_at`), which costs no
//! system call per line and makes the behaviour exact in tests. What is
//! held back is counted here and reported by the mapper as a
//! `herald.agent.suppressed` event; it is never queued.

use chrono::{DateTime, Utc};

/// The flood state of one rule.
#[derive(Debug)]
pub(crate) struct Limiter {
    sample: u32,
    /// Matches since the last one kept by sampling.
    seen: u32,
    rate: Option<f64>,
    tokens: f64,
    /// When tokens were last added, in microseconds since 1970.
    refilled: i64,
    /// Held back since the last report.
    pub suppressed: u64,
}

impl Limiter {
    pub fn new(sample: u32, max_per_second: Option<u32>) -> Self {
        let rate = max_per_second.map(f64::from);
        Limiter {
            sample: sample.max(1),
            seen: 0,
            rate,
            tokens: rate.unwrap_or(0.0),
            refilled: i64::MIN,
            suppressed: 0,
        }
    }

    /// Whether this limiter does anything.
    pub fn is_active(&self) -> bool {
        self.sample > 1 || self.rate.is_some()
    }

    /// Whether a match at `at` may become an event; counts it otherwise.
    pub fn admit(&mut self, at: &DateTime<Utc>) -> bool {
        if self.sample > 1 {
            self.seen += 1;
            if self.seen < self.sample {
                // Keep the first of every N, so a rare event is not delayed
                // until N of them have happened.
                if self.seen > 1 {
                    self.suppressed += 1;
                    return false;
                }
            } else {
                self.seen = 0;
                self.suppressed += 1;
                return false;
            }
        }
        if let Some(rate) = self.rate {
            let now = at.timestamp_micros();
            if self.refilled == i64::MIN {
                self.refilled = now;
            }
            if now > self.refilled {
                let elapsed = (now - self.refilled) as f64 / 1e6;
                self.tokens = (self.tokens + elapsed * rate).min(rate);
                self.refilled = now;
            }
            if self.tokens < 1.0 {
                self.suppressed += 1;
                return false;
            }
            self.tokens -= 1.0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(millis: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_700_000_000_000 + millis)
            .single()
            .expect("valid")
    }

    #[test]
    fn sample_keeps_one_in_n_starting_with_the_first() {
        let mut l = Limiter::new(3, None);
        let kept: Vec<bool> = (0..7).map(|_| l.admit(&at(0))).collect();
        assert_eq!(kept, [true, false, false, true, false, false, true]);
        assert_eq!(l.suppressed, 4);
    }

    #[test]
    fn rate_allows_a_burst_then_refills() {
        let mut l = Limiter::new(1, Some(2));
        assert!(l.admit(&at(0)));
        assert!(l.admit(&at(0)));
        assert!(!l.admit(&at(10)));
        assert!(l.admit(&at(510)), "half a second adds one token");
        assert!(!l.admit(&at(520)));
        assert!(l.admit(&at(5000)));
        assert!(l.admit(&at(5000)));
        assert!(!l.admit(&at(5000)), "the bucket holds one second");
        assert_eq!(l.suppressed, 3);
        assert!(!Limiter::new(1, None).is_active());
    }
}
