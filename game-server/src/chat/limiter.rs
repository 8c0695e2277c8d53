//! The per-session limit on chat sends (says and whispers together): a
//! token bucket per session, `--chat-messages-per-sec` refill and
//! `--chat-burst` capacity. Over it a send is answered `RATE_LIMITED` and
//! nothing is sent. The limit is per game server, which is where the
//! session lives, so it holds for the session as a whole.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::time::Instant;

/// Token buckets by session id.
pub struct ChatLimiter {
    /// Tokens added per second.
    rate: f64,
    /// Bucket capacity.
    burst: f64,
    /// session id -> (tokens, last refill).
    buckets: Mutex<HashMap<u64, (f64, Instant)>>,
}

impl ChatLimiter {
    /// `rate` sends per second, bursts of `burst`.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `session_id`; false when its bucket is empty.
    pub fn allow(&self, session_id: u64) -> bool {
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = b.entry(session_id).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Drops buckets that are full again (an absent bucket counts as full,
    /// so this changes nothing but memory).
    pub fn prune(&self) {
        let now = Instant::now();
        let (rate, burst) = (self.rate, self.burst);
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (t, last)| *t + now.duration_since(*last).as_secs_f64() * rate < burst);
    }

    /// Sessions tracked (for tests).
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no session is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_rate() {
        let l = ChatLimiter::new(5, 10);
        assert!((0..10).all(|_| l.allow(1)));
        assert!(!l.allow(1), "burst spent");
        assert!(l.allow(2), "other sessions have their own bucket");
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(l.allow(1), "one token after 1/5 s");
        assert!(!l.allow(1));
        tokio::time::advance(Duration::from_secs(3)).await;
        l.prune();
        assert_eq!(l.len(), 0, "full buckets are forgotten");
    }
}
