//! Rate limits: a [`TokenBucket`] for one sender and a [`KeyedLimiter`]
//! holding one bucket per key (an IP, a user, a session) with idle sweep
//! and a cap on keys.
//!
//! Both are GCRA cells (the token bucket in the form ATM switches used:
//! each bucket is the instant it will be full again, in integer time, so
//! no rounding drift) computed by the `governor` crate. Callers see only
//! the types here, so the crate can change without them.
//!
//! Time is tokio's clock ([`TokioClock`]): in production that is the
//! monotonic clock, and under `tokio::time::pause()` tests drive it with
//! `advance`, never with sleeps.

mod bucket;
mod keyed;

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::Quota;

pub use bucket::TokenBucket;
pub use keyed::{KeyedLimiter, Passed, Verdict};

/// How fast a bucket refills and how much it holds. Every bucket starts
/// full, so a newcomer can send its first burst at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(Quota);

impl Rate {
    /// `n` per second (at least 1), holding `n`.
    pub fn per_second(n: u32) -> Self {
        Self(Quota::per_second(at_least_one(n)))
    }

    /// `n` per minute (at least 1), holding `n`: a bucket emptied is full
    /// again after one idle minute.
    pub fn per_minute(n: u32) -> Self {
        Self(Quota::per_minute(at_least_one(n)))
    }

    /// The same refill, holding `burst` (at least 1).
    pub fn burst(self, burst: u32) -> Self {
        Self(self.0.allow_burst(at_least_one(burst)))
    }

    /// Time to earn one token back.
    pub fn interval(&self) -> Duration {
        self.0.replenish_interval()
    }

    fn quota(&self) -> Quota {
        self.0
    }
}

fn at_least_one(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

/// tokio's clock as governor's, so paused-time tests drive the buckets.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl governor::clock::Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> Self::Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// The key a client address is limited under: an IPv4 address as is (an
/// IPv4-mapped IPv6 address counts as IPv4), an IPv6 address by its /64,
/// the block one subscriber is usually given: keying by /128 would let one
/// host rotate through 2^64 keys.
pub fn ip_key(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn rates_name_their_refill_interval() {
        assert_eq!(Rate::per_second(10).interval(), Duration::from_millis(100));
        assert_eq!(Rate::per_minute(10).interval(), Duration::from_secs(6));
        assert_eq!(
            Rate::per_second(10).burst(20).interval(),
            Duration::from_millis(100)
        );
        assert_eq!(Rate::per_second(0), Rate::per_second(1), "0 means 1");
    }

    #[test]
    fn ipv6_is_keyed_per_64_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::7".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_eq!(ip_key(a).to_string(), "2001:db8:1:2::");
        assert_ne!(ip_key(a), ip_key("2001:db8:1:3::1".parse().unwrap()));
        let mapped = IpAddr::V6(Ipv4Addr::new(1, 2, 3, 4).to_ipv6_mapped());
        assert_eq!(ip_key(mapped), IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)));
        assert_ne!(ip_key(IpAddr::V6(Ipv6Addr::LOCALHOST)), ip_key(mapped));
    }
}
