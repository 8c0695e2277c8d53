//! Paces new connections per source address: a burst is let in at once, a
//! storm beyond it waits its turn, and only a flood is refused.
//!
//! Why pace rather than refuse: many players share one address (a campus,
//! a LAN party, a mobile carrier's NAT), and when a gateway restarts all of
//! them reconnect within a second. A limiter that refuses past its burst
//! turns such a reconnect storm into a wave of kicks exactly when a studio
//! is busiest; one that makes the excess wait a few milliseconds each lets
//! every player in, while one host that keeps opening sockets still gets
//! no more than the rate.
//!
//! Each address has one GCRA cell, its *theoretical arrival time* (TAT):
//! the instant its bucket would be empty if every reservation so far were
//! spent. A new connection reserves the next slot (TAT + one interval); the
//! slot starts `burst` intervals before that, or now if that is later. A
//! slot more than `max_wait` away is refused and reserves nothing. So:
//!
//! - **Accept order.** Slots of one address strictly increase, one
//!   interval apart, so its waiting sockets are served in the order they
//!   were accepted.
//! - **Bounded.** At most `max_wait x rate` sockets of one address wait at
//!   any time; the rest are refused at accept time. Waiting sockets hold a
//!   `--max-connections` slot, so all waiting sockets together are bounded
//!   by it too. The table holds one `Instant` per address, swept once its
//!   TAT has passed (an address at a full bucket carries no information)
//!   and capped at [`MAX_TRACKED_IPS`]; past the cap a new address is let in
//!   untracked rather than refused (see `limits`).
//! - **Neighbours unaffected.** The accept loop never waits: a paced socket
//!   waits in its own task, so every other address is accepted meanwhile.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Hard cap on tracked addresses (about 40 bytes each).
pub const MAX_TRACKED_IPS: usize = 100_000;

/// How often, at most, the table drops addresses whose TAT has passed.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// What to do with a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Serve it now.
    Now,
    /// Serve it once this instant is reached (its slot is reserved).
    At(Instant),
    /// Over the rate by more than the wait allows: refuse it.
    Refused,
}

/// Per-address connection pacer (see the module doc).
#[derive(Debug)]
pub struct ConnectPacer {
    /// One connection's share of the rate.
    interval: Duration,
    /// `burst` intervals: how far ahead of now the TAT may run before a
    /// connection has to wait.
    burst_span: Duration,
    /// The longest a connection may wait for its slot.
    max_wait: Duration,
    /// Address -> TAT, and when the table was last swept.
    table: Mutex<Table>,
}

#[derive(Debug)]
struct Table {
    /// Address -> theoretical arrival time.
    tat: HashMap<IpAddr, Instant>,
    /// Last sweep.
    swept: Instant,
}

impl ConnectPacer {
    /// `per_sec` connections a second per address (at least 1), `burst` at
    /// once (at least 1), a connection waiting at most `max_wait` for its
    /// slot.
    pub fn new(per_sec: u32, burst: u32, max_wait: Duration) -> Self {
        let interval = Duration::from_secs(1) / per_sec.max(1);
        Self {
            interval,
            burst_span: interval * burst.max(1),
            max_wait,
            table: Mutex::new(Table {
                tat: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }

    /// Reserves a slot for one connection from `key` (already reduced by
    /// `gamemesh_node::rate_limit::ip_key`).
    pub fn admit(&self, key: IpAddr) -> Admission {
        let now = Instant::now();
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.sweep_if_due(now);
        let tracked = table.tat.get(&key).copied();
        if tracked.is_none() && table.tat.len() >= MAX_TRACKED_IPS {
            return Admission::Now;
        }
        let tat = tracked.map_or(now, |t| t.max(now)) + self.interval;
        let start = tat.checked_sub(self.burst_span).unwrap_or(now).max(now);
        if start - now > self.max_wait {
            return Admission::Refused;
        }
        table.tat.insert(key, tat);
        if start == now {
            Admission::Now
        } else {
            Admission::At(start)
        }
    }

    /// Addresses tracked now.
    pub fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .tat
            .len()
    }

    /// True when no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Table {
    fn sweep_if_due(&mut self, now: Instant) {
        if now.duration_since(self.swept) >= SWEEP_EVERY {
            self.tat.retain(|_, tat| *tat > now);
            self.swept = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const MS: Duration = Duration::from_millis(1);

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_in_at_once_then_the_excess_waits_in_order_then_a_flood_is_refused() {
        // 100/s (10 ms apart), burst 4, wait at most 30 ms.
        let p = ConnectPacer::new(100, 4, 30 * MS);
        let t0 = Instant::now();
        let got: Vec<_> = (0..8).map(|_| p.admit(ip(1))).collect();
        assert_eq!(got[..4], [Admission::Now; 4], "the burst");
        assert_eq!(
            got[4..7],
            [
                Admission::At(t0 + 10 * MS),
                Admission::At(t0 + 20 * MS),
                Admission::At(t0 + 30 * MS)
            ],
            "paced one interval apart, in accept order"
        );
        assert_eq!(got[7], Admission::Refused, "beyond the wait");
        assert_eq!(p.admit(ip(2)), Admission::Now, "a neighbour is unaffected");
        // A refusal reserved nothing: after one interval the next slot is
        // the one after the last reserved.
        tokio::time::advance(10 * MS).await;
        assert_eq!(p.admit(ip(1)), Admission::At(t0 + 40 * MS));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_address_refills_and_is_forgotten() {
        let p = ConnectPacer::new(100, 2, Duration::ZERO);
        assert_eq!(p.admit(ip(1)), Admission::Now);
        assert_eq!(p.admit(ip(1)), Admission::Now);
        assert_eq!(p.admit(ip(1)), Admission::Refused, "no wait allowed");
        tokio::time::advance(20 * MS).await;
        assert_eq!(p.admit(ip(1)), Admission::Now, "refilled");
        tokio::time::advance(SWEEP_EVERY).await;
        assert_eq!(p.admit(ip(3)), Admission::Now);
        assert_eq!(p.len(), 1, "the idle address was swept");
    }
}
