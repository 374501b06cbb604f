//! A token bucket on events per second, so herald does not outrun an
//! endpoint that drops what it cannot take: a local Prefect server answers
//! 204 and silently loses events above about 1000 per second.

use std::time::Duration;

use tokio::time::Instant;

/// Events per second with a burst allowance. A batch larger than the burst
/// is let through once the bucket is full and leaves it in debt, so the
/// average rate holds whatever the batch size.
#[derive(Debug)]
pub struct RateLimit {
    /// Events per second; `None` means no limit.
    rate: Option<f64>,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl RateLimit {
    /// `per_second = 0` turns the limit off. The bucket starts full.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        RateLimit {
            rate: (per_second > 0).then_some(f64::from(per_second)),
            burst,
            tokens: burst,
            updated: Instant::now(),
        }
    }

    /// How long to wait before `events` may be sent; zero when they may go
    /// now. Call [`RateLimit::take`] when they are sent.
    pub fn delay_for(&mut self, events: usize) -> Duration {
        let Some(rate) = self.rate else {
            return Duration::ZERO;
        };
        self.refill(rate);
        // Never ask for more than the bucket holds, or a large batch would
        // wait forever.
        let needed = (events as f64).min(self.burst);
        if self.tokens >= needed {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((needed - self.tokens) / rate)
        }
    }

    /// Spends tokens for events that were sent.
    pub fn take(&mut self, events: usize) {
        if let Some(rate) = self.rate {
            self.refill(rate);
            self.tokens -= events as f64;
        }
    }

    /// Waits until `events` may be sent, then spends their tokens.
    pub async fn acquire(&mut self, events: usize) {
        loop {
            let delay = self.delay_for(events);
            if delay.is_zero() {
                break;
            }
            tokio::time::sleep(delay).await;
        }
        self.take(events);
    }

    fn refill(&mut self, rate: f64) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.updated).as_secs_f64();
        self.updated = now;
        self.tokens = (self.tokens + elapsed * rate).min(self.burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn holds_the_average_rate_after_the_burst() {
        let mut limit = RateLimit::new(500, 5000);
        let start = Instant::now();
        // The burst goes at once.
        for _ in 0..10 {
            limit.acquire(500).await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        // Then 5000 more take 10 s at 500/s.
        for _ in 0..10 {
            limit.acquire(500).await;
        }
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(9_990) && took <= Duration::from_millis(10_010),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_over_the_burst_still_goes_and_leaves_debt() {
        let mut limit = RateLimit::new(100, 10);
        let start = Instant::now();
        limit.acquire(50).await;
        assert_eq!(start.elapsed(), Duration::ZERO, "the bucket was full");
        limit.acquire(10).await;
        // 40 of debt plus 10 tokens at 100/s.
        assert_eq!(start.elapsed(), Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_means_no_limit() {
        let mut limit = RateLimit::new(0, 1);
        let start = Instant::now();
        for _ in 0..100 {
            limit.acquire(1_000_000).await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
