//! Repeated contract violations: a connection that keeps sending frames
//! that are not the contract is closed.
//!
//! A violation is a frame whose body is not a `ClientPacket`
//! (`MALFORMED_PACKET`) or carries no body this game server knows
//! (`UNKNOWN_MESSAGE`: empty, or a body from a newer contract). Each is
//! answered as docs/PROTOCOL.md says and the connection goes on; the
//! `--protocol-error-kick-after`-th within `--protocol-error-window-secs`
//! gets `Kicked{PROTOCOL_ERROR}` and the socket is closed. One stray bad
//! frame (a client one version ahead, a bit flip) costs nothing; a client
//! that ignores the errors and keeps going is broken or probing us, and
//! answering it costs a decode and a reply per frame.
//!
//! The check lives in the game server, not the gateway, because only the
//! game server decodes bodies: the gateway stays a dumb proxy.

use std::time::Duration;

use tokio::time::Instant;

/// The policy, from the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViolationPolicy {
    /// The violation that kicks (1 kicks at the first).
    pub kick_after: u32,
    /// The window they are counted in.
    pub window: Duration,
}

/// One connection's count of recent violations. Owned by the connection
/// actor, so it needs no lock.
#[derive(Debug)]
pub struct Violations {
    /// The policy.
    policy: ViolationPolicy,
    /// Start of the current window.
    since: Instant,
    /// Violations in it.
    count: u32,
}

impl Violations {
    /// No violations yet.
    pub fn new(policy: ViolationPolicy, now: Instant) -> Self {
        Self {
            policy,
            since: now,
            count: 0,
        }
    }

    /// Counts one violation at `now`; true when it is the one that kicks.
    /// The window is fixed, opened by the first violation after the last
    /// window ran out: simple, and at worst it lets 2 x (N - 1) through in
    /// one window's length, which is still a bound.
    pub fn record(&mut self, now: Instant) -> bool {
        if now.duration_since(self.since) >= self.policy.window {
            self.since = now;
            self.count = 0;
        }
        self.count += 1;
        self.count >= self.policy.kick_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: ViolationPolicy = ViolationPolicy {
        kick_after: 3,
        window: Duration::from_secs(10),
    };

    #[test]
    fn the_nth_violation_within_the_window_kicks() {
        let t = Instant::now();
        let mut v = Violations::new(POLICY, t);
        assert!(!v.record(t));
        assert!(!v.record(t + Duration::from_secs(1)));
        assert!(v.record(t + Duration::from_secs(2)));
    }

    #[test]
    fn violations_spread_beyond_the_window_do_not_kick() {
        let t = Instant::now();
        let mut v = Violations::new(POLICY, t);
        for i in 0..10 {
            assert!(!v.record(t + Duration::from_secs(6 * i)), "violation {i}");
        }
    }
}
