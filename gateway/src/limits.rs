//! The gateway's overload protections, built from the shared blocks in
//! `gamemesh_node` (where their logic and unit tests live), and the
//! counters of what they refused and kicked.
//!
//! - [`packet_bucket`]: one per connection, owned by its task (no lock on
//!   the hot path), for `--max-packets-per-sec`.
//! - [`connect_limiter`]: one per gateway, consulted by the accept loop,
//!   for `--max-connects-per-ip-per-sec`.
//! - [`abuse_window`]: one per connection, for `--rate-limit-kick-after`.
//! - [`Counters`]: what was refused and kicked, read by tests and exported
//!   as metrics.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gamemesh_node::fixed_window::FixedWindow;
use gamemesh_node::rate_limit::{KeyedLimiter, Rate, TokenBucket};
use gamemesh_proto::client::KickReason;

use crate::metrics::{kick_index, GatewayMetrics, KICK_REASONS};

/// How often the per-IP table drops the buckets that are full again
/// (those carry no information: dropping them is lossless).
const IP_SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Hard cap on tracked addresses. Beyond it (after a sweep) a new address
/// is let through untracked: an attacker spread over that many addresses is
/// the job of `--max-connections` and of the network in front of us, and
/// refusing every newcomer would lock out real players.
const MAX_TRACKED_IPS: usize = 100_000;

/// Length of the window in which rate-limited frames are counted towards
/// an abuse kick.
pub const ABUSE_WINDOW: Duration = Duration::from_secs(10);

/// A connection's packet bucket: `per_sec` frames a second, bursting to
/// `burst`. Starts full, so a fresh client can send its login burst at
/// once.
pub fn packet_bucket(per_sec: u32, burst: u32) -> TokenBucket {
    TokenBucket::new(Rate::per_second(per_sec).burst(burst))
}

/// The per-source-address connect limiter: `per_sec` connects a second per
/// address (per /64 for IPv6, see `gamemesh_node::rate_limit::ip_key`),
/// bursting to `burst`, over at most 100,000 addresses. Only
/// the accept loop calls it, so its lock is never contended.
pub fn connect_limiter(per_sec: u32, burst: u32) -> KeyedLimiter<IpAddr> {
    KeyedLimiter::new(Rate::per_second(per_sec).burst(burst))
        .max_keys(MAX_TRACKED_IPS)
        .sweep_every(IP_SWEEP_EVERY)
}

/// A connection's count of rate-limited frames: a client that briefly
/// overshoots gets `RATE_LIMITED` replies and carries on; one that has
/// more than `kick_after` frames rate limited within one [`ABUSE_WINDOW`]
/// is abusing and is kicked (the window trips at the next one).
pub fn abuse_window(kick_after: u32) -> FixedWindow {
    FixedWindow::new(kick_after.saturating_add(1), ABUSE_WINDOW)
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
    /// Kicks by `KickReason` value (anything unknown lands in 0).
    kicks: [AtomicU64; KICK_REASONS],
}

impl Counters {
    /// The gateway's metric handles.
    pub fn metrics(&self) -> &GatewayMetrics {
        &self.metrics
    }

    /// Counts one refused socket.
    pub fn refused(&self, why: Refusal) {
        let (metric, count) = match why {
            Refusal::GatewayFull => (&self.metrics.refused_full, &self.refused_full),
            Refusal::IpRate => (&self.metrics.refused_ip_rate, &self.refused_ip_rate),
        };
        metric.increment(1);
        count.fetch_add(1, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use gamemesh_node::fixed_window::Tally;
    use gamemesh_node::rate_limit::Verdict;
    use std::net::Ipv4Addr;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn the_connect_limiter_is_per_address_and_forgets_idle_ones() {
        let l = connect_limiter(2, 4);
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let verdicts: Vec<_> = (0..5).map(|_| l.check(&a)).collect();
        assert_eq!(verdicts[..4], [Verdict::Allowed; 4]);
        assert_eq!(verdicts[4], Verdict::Refused);
        assert_eq!(l.check(&b), Verdict::Allowed, "neighbour unaffected");
        // After a sweep interval of silence both are full again and swept
        // on the next check.
        tokio::time::advance(IP_SWEEP_EVERY).await;
        assert_eq!(
            l.check(&IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3))),
            Verdict::Allowed
        );
        assert_eq!(l.len(), 1, "idle addresses are forgotten");
    }

    #[test]
    fn the_abuse_window_kicks_only_more_than_kick_after() {
        let t0 = Instant::now();
        let mut w = abuse_window(3);
        assert_eq!(w.record(t0), Tally::Opened);
        assert_eq!(w.record(t0), Tally::Counted);
        assert_eq!(w.record(t0), Tally::Counted);
        assert_eq!(w.record(t0), Tally::Tripped, "4th in one window");
        let mut w = abuse_window(0);
        assert_eq!(w.record(t0), Tally::Tripped, "0 tolerates none");
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
