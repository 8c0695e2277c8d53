//! The per-session limit on chat sends (says and whispers together): a
//! token bucket per session (`gamemesh_node::rate_limit::KeyedLimiter`),
//! `--chat-messages-per-sec` refill and `--chat-burst` capacity. Over it a
//! send is answered `RATE_LIMITED` and nothing is sent. The limit is per
//! game server, which is where the session lives, so it holds for the
//! session as a whole.

use gamemesh_node::rate_limit::{KeyedLimiter, Rate, Verdict};

/// Token buckets by session id.
#[derive(Debug)]
pub struct ChatLimiter(KeyedLimiter<u64>);

impl ChatLimiter {
    /// `rate` sends per second, bursts of `burst`.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self(KeyedLimiter::new(Rate::per_second(rate).burst(burst)))
    }

    /// Takes a token for `session_id`; false when its bucket is empty.
    pub fn allow(&self, session_id: u64) -> bool {
        self.0.check(&session_id) != Verdict::Refused
    }

    /// Drops buckets that are full again (an absent bucket counts as full,
    /// so this changes nothing but memory); the chat sweep calls it.
    pub fn prune(&self) {
        self.0.sweep();
    }

    /// Sessions tracked (for tests).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no session is tracked.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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
