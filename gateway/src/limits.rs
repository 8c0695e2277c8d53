//! The gateway's overload protections, built from the shared blocks in
//! `gamemesh_node` (where their logic and unit tests live), and the
//! counters of what they refused and kicked.
//!
//! - [`packet_bucket`]: one per connection, owned by its task (no lock on
//!   the hot path), for `--max-packets-per-sec`.
//! - the per-address connect pace lives in [`crate::pacer`] (it reserves
//!   slots, which a refusing bucket does not).
//! - [`abuse_window`]: one per connection, for `--rate-limit-kick-after`.
//! - [`Counters`]: what was refused and kicked, read by tests and exported
//!   as metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gamemesh_node::fixed_window::FixedWindow;
use gamemesh_node::kick_metrics::{kick_index, KICK_REASONS};
use gamemesh_node::rate_limit::{Rate, TokenBucket};
use gamemesh_proto::client::KickReason;

use crate::metrics::GatewayMetrics;

/// Length of the window in which rate-limited frames are counted towards
/// an abuse kick.
pub const ABUSE_WINDOW: Duration = Duration::from_secs(10);

/// A connection's packet bucket: `per_sec` frames a second, bursting to
/// `burst`. Starts full, so a fresh client can send its login burst at
/// once.
pub fn packet_bucket(per_sec: u32, burst: u32) -> TokenBucket {
    TokenBucket::new(Rate::per_second(per_sec).burst(burst))
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
    /// Over its address's connect pace by more than `--connect-queue-ms`.
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
    /// Sockets that waited for their slot in their address's pace.
    paced: AtomicU64,
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

    /// Counts one socket that waits for its slot in its address's pace.
    pub fn paced(&self) {
        self.metrics.paced.increment(1);
        self.paced.fetch_add(1, Ordering::Relaxed);
    }

    /// Sockets paced so far.
    pub fn paced_count(&self) -> u64 {
        self.paced.load(Ordering::Relaxed)
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
    use tokio::time::Instant;

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
