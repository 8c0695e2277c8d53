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
//! The counting is `gamemesh_node::fixed_window` (a window opened by the
//! first violation after the last one ran out), in a layer of the
//! pipeline around the decode layer, so it sees the answers to both kinds
//! ([`super::violation_layer`]). The check lives in the
//! game server, not the gateway, because only the game server decodes
//! bodies: the gateway stays a dumb proxy.

use std::time::Duration;

use gamemesh_node::fixed_window::FixedWindow;

/// The policy, from the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViolationPolicy {
    /// The violation that kicks (1 kicks at the first).
    pub kick_after: u32,
    /// The window they are counted in.
    pub window: Duration,
}

impl ViolationPolicy {
    /// One connection's count of recent violations, none yet.
    pub fn counter(&self) -> FixedWindow {
        FixedWindow::new(self.kick_after, self.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gamemesh_node::fixed_window::Tally;
    use tokio::time::Instant;

    const POLICY: ViolationPolicy = ViolationPolicy {
        kick_after: 3,
        window: Duration::from_secs(10),
    };

    #[test]
    fn the_nth_violation_within_the_window_kicks() {
        let t = Instant::now();
        let mut v = POLICY.counter();
        assert_ne!(v.record(t), Tally::Tripped);
        assert_ne!(v.record(t + Duration::from_secs(1)), Tally::Tripped);
        assert_eq!(v.record(t + Duration::from_secs(2)), Tally::Tripped);
    }

    #[test]
    fn violations_spread_beyond_the_window_do_not_kick() {
        let t = Instant::now();
        let mut v = POLICY.counter();
        for i in 0..10 {
            let at = t + Duration::from_secs(6 * i);
            assert_ne!(v.record(at), Tally::Tripped, "violation {i}");
        }
    }
}
