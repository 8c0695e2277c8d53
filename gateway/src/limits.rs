//! Overload protection building blocks: a token bucket, a per-IP connect
//! limiter built on it, the window that turns repeated rate limiting into a
//! kick, a log throttle, and the counters the gateway exposes.
//!
//! Every clock reading is passed in (`now: Instant`, tokio's `Instant`, so
//! `tokio::time::pause()` drives it in tests); nothing here sleeps or reads
//! the wall clock by itself.
//!
//! Where each is used:
//! - [`TokenBucket`]: one per connection, owned by its task (no lock on the
//!   hot path), for `--max-packets-per-sec`.
//! - [`ConnectLimiter`]: one per gateway, consulted by the accept loop, for
//!   `--max-connects-per-ip-per-sec`.
//! - [`AbuseWindow`]: one per connection, for `--rate-limit-kick-after`.
//! - [`LogThrottle`]: keeps a connect flood from becoming a log flood.
//! - [`Counters`]: what was refused and kicked, read by tests now and by
//!   metrics later.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use gamemesh_proto::client::KickReason;
use tokio::time::Instant;

use crate::metrics::GatewayMetrics;

/// A classic token bucket: `rate` tokens per second, holding at most
/// `burst`. Starts full, so a fresh client can send its login burst at once.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens added per second.
    rate: f64,
    /// Most tokens held.
    burst: f64,
    /// Tokens now (fractional: refill is continuous).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilling at `rate_per_sec`, holding at most `burst`.
    pub fn new(rate_per_sec: u32, burst: u32, now: Instant) -> Self {
        Self {
            rate: f64::from(rate_per_sec),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// True when the bucket has been untouched long enough to be full
    /// again: forgetting it then loses nothing.
    pub fn is_full_at(&self, now: Instant) -> bool {
        let idle = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + idle * self.rate >= self.burst
    }

    /// When it was last used.
    pub fn last_used(&self) -> Instant {
        self.last
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }
}

/// How long a per-IP bucket may sit unused before it is forgotten.
pub const IP_IDLE_FORGET: Duration = Duration::from_secs(60);
/// How often the per-IP map is swept for idle entries.
const IP_SWEEP_EVERY: Duration = Duration::from_secs(10);
/// Hard cap on tracked addresses. Beyond it (after a sweep) a new address
/// is let through untracked: an attacker spread over that many addresses is
/// the job of `--max-connections` and of the network in front of us, and
/// refusing every newcomer would lock out real players.
const MAX_TRACKED_IPS: usize = 100_000;

/// What [`ConnectLimiter::check`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectVerdict {
    /// Within the address's rate.
    Allowed,
    /// Over the address's rate: refuse.
    Refused,
    /// Too many addresses tracked to track another; let through.
    Untracked,
}

/// Per-source-address connect rate limiter: one token bucket per IP (per
/// /64 for IPv6, since one host commonly owns a whole /64), in a map that
/// forgets entries idle for [`IP_IDLE_FORGET`] so it cannot grow without
/// bound. Only the accept loop calls it, so its mutex is never contended.
#[derive(Debug)]
pub struct ConnectLimiter {
    /// Connects per second per address.
    rate: u32,
    /// Burst per address.
    burst: u32,
    /// Buckets by address, and the time of the last sweep.
    state: Mutex<(HashMap<IpAddr, TokenBucket>, Instant)>,
}

impl ConnectLimiter {
    /// A limiter allowing `rate` connects per second per address, bursting
    /// to `burst`.
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        Self {
            rate,
            burst,
            state: Mutex::new((HashMap::new(), now)),
        }
    }

    /// Accounts one connect from `ip`.
    pub fn check(&self, ip: IpAddr, now: Instant) -> ConnectVerdict {
        let key = bucket_key(ip);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (map, last_sweep) = &mut *state;
        if now.saturating_duration_since(*last_sweep) >= IP_SWEEP_EVERY {
            map.retain(|_, b| now.saturating_duration_since(b.last_used()) < IP_IDLE_FORGET);
            *last_sweep = now;
        }
        if !map.contains_key(&key) && map.len() >= MAX_TRACKED_IPS {
            // Full buckets carry no information: dropping them is lossless.
            map.retain(|_, b| !b.is_full_at(now));
            if map.len() >= MAX_TRACKED_IPS {
                return ConnectVerdict::Untracked;
            }
        }
        let bucket = map
            .entry(key)
            .or_insert_with(|| TokenBucket::new(self.rate, self.burst, now));
        if bucket.try_take(now) {
            ConnectVerdict::Allowed
        } else {
            ConnectVerdict::Refused
        }
    }

    /// Number of addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0.len()
    }
}

/// The key an address is limited under: the address itself for IPv4, its
/// /64 network for IPv6 (an IPv4-mapped IPv6 address counts as IPv4).
fn bucket_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Length of the window in which rate-limited frames are counted towards
/// an abuse kick.
pub const ABUSE_WINDOW: Duration = Duration::from_secs(10);

/// Counts a connection's rate-limited frames in fixed windows of
/// [`ABUSE_WINDOW`]: a client that briefly overshoots gets `RATE_LIMITED`
/// replies and carries on; one that sends more than `kick_after`
/// rate-limited frames within one window is abusing and is kicked.
#[derive(Debug, Clone)]
pub struct AbuseWindow {
    /// Rate-limited frames tolerated per window.
    kick_after: u32,
    /// Start of the current window.
    start: Instant,
    /// Rate-limited frames in the current window.
    count: u32,
}

/// What one more rate-limited frame means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abuse {
    /// The first rate-limited frame of a window (worth one log line).
    Started,
    /// More of the same, still tolerated.
    Continuing,
    /// Over the tolerance: kick.
    Kick,
}

impl AbuseWindow {
    /// A window tolerating `kick_after` rate-limited frames per
    /// [`ABUSE_WINDOW`].
    pub fn new(kick_after: u32, now: Instant) -> Self {
        Self {
            kick_after,
            start: now,
            count: 0,
        }
    }

    /// Records one rate-limited frame.
    pub fn record(&mut self, now: Instant) -> Abuse {
        if self.count == 0 || now.saturating_duration_since(self.start) >= ABUSE_WINDOW {
            self.start = now;
            self.count = 0;
        }
        self.count += 1;
        if self.count > self.kick_after {
            Abuse::Kick
        } else if self.count == 1 {
            Abuse::Started
        } else {
            Abuse::Continuing
        }
    }
}

/// Lets one log line through per interval and counts the ones it held
/// back, so a flood of refusals costs one line a second, not one per
/// connect.
#[derive(Debug)]
pub struct LogThrottle {
    /// Least time between two lines.
    every: Duration,
    /// When the last line went out, and lines suppressed since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogThrottle {
    /// A throttle letting one line through per `every`.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(n)` when a line may be logged now (`n` lines were suppressed
    /// since the last one), `None` when this one is to be suppressed.
    pub fn allow(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (last, suppressed) = &mut *state;
        match last {
            Some(t) if now.saturating_duration_since(*t) < self.every => {
                *suppressed += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(suppressed))
            }
        }
    }
}

/// Why a new socket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-connections` reached.
    GatewayFull,
    /// `--max-connects-per-ip-per-sec` exceeded.
    IpRate,
}

/// What the gateway's protections did, for tests and metrics.
#[derive(Debug, Default)]
pub struct Counters {
    /// The same events (and the rest of the gateway's) as Prometheus
    /// metrics.
    metrics: GatewayMetrics,
    /// Sockets refused because the gateway was full.
    refused_full: AtomicU64,
    /// Sockets refused by the per-IP connect rate.
    refused_ip_rate: AtomicU64,
    /// Frames answered `RATE_LIMITED` instead of being relayed.
    rate_limited_frames: AtomicU64,
    /// Kicks by `KickReason` value (0..=7; anything else lands in 0).
    kicks: [AtomicU64; 8],
}

impl Counters {
    /// The gateway's metric handles.
    pub fn metrics(&self) -> &GatewayMetrics {
        &self.metrics
    }

    /// Counts one refused socket.
    pub fn refused(&self, why: Refusal) {
        self.metrics.refused(why);
        match why {
            Refusal::GatewayFull => &self.refused_full,
            Refusal::IpRate => &self.refused_ip_rate,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Sockets refused for `why` so far.
    pub fn refusals(&self, why: Refusal) -> u64 {
        match why {
            Refusal::GatewayFull => &self.refused_full,
            Refusal::IpRate => &self.refused_ip_rate,
        }
        .load(Ordering::Relaxed)
    }

    /// Counts one rate-limited frame.
    pub fn rate_limited(&self) {
        self.metrics.rate_limited.increment(1);
        self.rate_limited_frames.fetch_add(1, Ordering::Relaxed);
    }

    /// Frames answered `RATE_LIMITED` so far.
    pub fn rate_limited_frames(&self) -> u64 {
        self.rate_limited_frames.load(Ordering::Relaxed)
    }

    /// Counts one kick.
    pub fn kicked(&self, reason: KickReason) {
        self.metrics.kicked(reason);
        self.kicks[kick_index(reason)].fetch_add(1, Ordering::Relaxed);
    }

    /// Kicks for `reason` so far.
    pub fn kicks(&self, reason: KickReason) -> u64 {
        self.kicks[kick_index(reason)].load(Ordering::Relaxed)
    }
}

fn kick_index(reason: KickReason) -> usize {
    usize::try_from(reason as i32)
        .ok()
        .filter(|i| *i < 8)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SEC: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn bucket_allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 20, t0);
        assert_eq!((0..25).filter(|_| b.try_take(t0)).count(), 20, "burst");
        assert!(!b.try_take(t0));
        // 100 ms at 10/s is exactly one token.
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(b.try_take(Instant::now()));
        assert!(!b.try_take(Instant::now()));
        // A long pause refills only up to the burst.
        tokio::time::advance(60 * SEC).await;
        let now = Instant::now();
        assert!(b.is_full_at(now));
        assert_eq!((0..100).filter(|_| b.try_take(now)).count(), 20);
    }

    #[tokio::test(start_paused = true)]
    async fn connect_limiter_is_per_address_and_forgets_idle_ones() {
        let t0 = Instant::now();
        let l = ConnectLimiter::new(2, 4, t0);
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let verdicts: Vec<_> = (0..5).map(|_| l.check(a, t0)).collect();
        assert_eq!(verdicts[..4], [ConnectVerdict::Allowed; 4]);
        assert_eq!(verdicts[4], ConnectVerdict::Refused);
        assert_eq!(
            l.check(b, t0),
            ConnectVerdict::Allowed,
            "neighbour unaffected"
        );
        assert_eq!(l.tracked(), 2);
        // Half a second later `a` has one token again.
        let t1 = t0 + SEC / 2;
        assert_eq!(l.check(a, t1), ConnectVerdict::Allowed);
        assert_eq!(l.check(a, t1), ConnectVerdict::Refused);
        // After 60 s of silence both are swept on the next check.
        let later = t1 + IP_IDLE_FORGET + SEC;
        let c = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));
        assert_eq!(l.check(c, later), ConnectVerdict::Allowed);
        assert_eq!(l.tracked(), 1, "idle addresses are forgotten");
    }

    #[test]
    fn ipv6_is_limited_per_64_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::7".parse().unwrap();
        assert_eq!(bucket_key(a), bucket_key(b));
        let mapped = IpAddr::V6(Ipv4Addr::new(1, 2, 3, 4).to_ipv6_mapped());
        assert_eq!(bucket_key(mapped), IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)));
        assert_ne!(
            bucket_key(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            bucket_key(mapped)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn abuse_window_kicks_only_sustained_overshoot() {
        let t0 = Instant::now();
        let mut w = AbuseWindow::new(3, t0);
        assert_eq!(w.record(t0), Abuse::Started);
        assert_eq!(w.record(t0), Abuse::Continuing);
        assert_eq!(w.record(t0), Abuse::Continuing);
        // A new window starts over: three more are tolerated.
        let t1 = t0 + ABUSE_WINDOW;
        assert_eq!(w.record(t1), Abuse::Started);
        assert_eq!(w.record(t1), Abuse::Continuing);
        assert_eq!(w.record(t1 + SEC), Abuse::Continuing);
        assert_eq!(w.record(t1 + 2 * SEC), Abuse::Kick, "4th in one window");
    }

    #[tokio::test(start_paused = true)]
    async fn log_throttle_counts_what_it_holds_back() {
        let t0 = Instant::now();
        let t = LogThrottle::new(SEC);
        assert_eq!(t.allow(t0), Some(0));
        assert_eq!(t.allow(t0), None);
        assert_eq!(t.allow(t0 + SEC / 2), None);
        assert_eq!(t.allow(t0 + SEC), Some(2));
    }

    #[test]
    fn counters_count_by_reason() {
        let c = Counters::default();
        c.refused(Refusal::GatewayFull);
        c.refused(Refusal::IpRate);
        c.refused(Refusal::IpRate);
        c.kicked(KickReason::SlowConsumer);
        assert_eq!(c.refusals(Refusal::GatewayFull), 1);
        assert_eq!(c.refusals(Refusal::IpRate), 2);
        assert_eq!(c.kicks(KickReason::SlowConsumer), 1);
        assert_eq!(c.kicks(KickReason::ProtocolError), 0);
    }
}
