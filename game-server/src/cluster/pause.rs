//! Noticing that this process was paused (SIGSTOP, a VM pause, a swap
//! storm) for long enough that the rest of the cluster may have given up
//! on it.
//!
//! While a game server is paused, the gateways declare it DOWN after the
//! peer timeout and move its sockets elsewhere; another game server adopts
//! its sessions. The frames the gateways had already sent stay queued in
//! this process's sockets, and on waking it would run them on sessions
//! that are no longer its own (a chat post already re-sent and served
//! elsewhere, posted a second time). So a pause opens a new *generation*:
//! a session confirmed in an older one is checked against the store
//! before its next frame runs ([`crate::policy::ownership`]).
//!
//! The clock is observed by the heartbeat and before every frame, so a
//! gap between two observations is a time in which this process ran
//! nothing at all. A gap longer than half the peer timeout (the heartbeat
//! fires several times within it) is a pause. Heavy load can open a
//! generation too; that only costs each session one store read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

/// Counts this process's pauses.
#[derive(Debug)]
pub struct PauseWatch {
    /// Where the millisecond clock below starts.
    origin: Instant,
    /// Milliseconds since `origin` at the latest observation.
    last_seen_ms: AtomicU64,
    /// Pauses seen so far.
    generation: AtomicU64,
    /// Milliseconds since `origin` when the latest pause ended (0: none).
    woke_ms: AtomicU64,
    /// A gap longer than this is a pause.
    threshold: Duration,
}

impl PauseWatch {
    /// A watch for which a gap of more than `peer_timeout / 2` is a pause.
    pub fn new(peer_timeout: Duration) -> Self {
        Self {
            origin: Instant::now(),
            last_seen_ms: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            woke_ms: AtomicU64::new(0),
            threshold: peer_timeout / 2,
        }
    }

    /// Records that this process is running now, and returns the current
    /// generation (a new one if the previous observation was a pause
    /// ago). Cheap enough for every frame: one clock read and two atomics.
    pub fn observe(&self) -> u64 {
        let now = self.origin.elapsed().as_millis() as u64;
        // Of several threads waking at once, only the first sees the gap.
        let previous = self.last_seen_ms.fetch_max(now, Ordering::AcqRel);
        let gap = Duration::from_millis(now.saturating_sub(previous));
        if gap <= self.threshold {
            return self.generation.load(Ordering::Acquire);
        }
        warn!(
            "This process ran nothing for {} ms (paused?): each session it holds is confirmed in the store before its next frame runs",
            gap.as_millis()
        );
        metrics::counter!("gamemesh_process_pauses_total").increment(1);
        self.woke_ms.store(now.max(1), Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// True for one peer timeout after a pause: the time in which frames
    /// the gateways sent before they gave up on us are still being read.
    pub fn just_woke(&self) -> bool {
        let woke = self.woke_ms.load(Ordering::Acquire);
        let now = self.origin.elapsed().as_millis() as u64;
        woke != 0 && Duration::from_millis(now.saturating_sub(woke)) < self.threshold * 2
    }

    /// The current generation, without observing the clock.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_gap_longer_than_half_the_peer_timeout_opens_one_generation() {
        let watch = PauseWatch::new(Duration::from_secs(3));
        assert_eq!(watch.observe(), 0);
        tokio::time::advance(Duration::from_millis(1_400)).await;
        assert_eq!(watch.observe(), 0, "1.4 s is within the 1.5 s threshold");
        assert!(!watch.just_woke());
        tokio::time::advance(Duration::from_millis(1_600)).await;
        assert_eq!(watch.observe(), 1, "1.6 s without running is a pause");
        assert_eq!(watch.observe(), 1, "the gap is counted once");
        assert_eq!(watch.generation(), 1);
        assert!(watch.just_woke());
        for _ in 0..3 {
            tokio::time::advance(Duration::from_millis(1_100)).await;
            assert_eq!(watch.observe(), 1, "running normally again");
        }
        assert!(!watch.just_woke(), "a peer timeout after the pause");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(watch.observe(), 2);
    }
}
