//! One sender's token bucket.

use governor::state::{InMemoryState, NotKeyed};
use governor::RateLimiter;

use super::{Rate, TokioClock};

/// One bucket, e.g. a connection's packet rate. Lock-free (one atomic
/// cell), so the task that owns it pays a clock read and a
/// compare-and-swap per token.
#[derive(Debug)]
pub struct TokenBucket(RateLimiter<NotKeyed, InMemoryState, TokioClock>);

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: Rate) -> Self {
        Self(RateLimiter::direct_with_clock(rate.quota(), TokioClock))
    }

    /// Takes one token if there is one.
    pub fn try_take(&self) -> bool {
        self.0.check().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_burst_then_the_rate_and_never_more_than_the_burst() {
        let b = TokenBucket::new(Rate::per_second(10).burst(20));
        assert_eq!((0..25).filter(|_| b.try_take()).count(), 20, "burst");
        assert!(!b.try_take());
        // 100 ms at 10/s is exactly one token.
        tokio::time::advance(Duration::from_millis(99)).await;
        assert!(!b.try_take());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(b.try_take());
        assert!(!b.try_take());
        // A long pause refills only up to the burst.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!((0..100).filter(|_| b.try_take()).count(), 20);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_zero_still_lets_one_through() {
        let b = TokenBucket::new(Rate::per_second(1).burst(0));
        assert!(b.try_take());
        assert!(!b.try_take());
    }
}
