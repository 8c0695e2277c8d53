//! Where each room runs: the seam between the room runtime and the
//! cluster.
//!
//! The core implements [`RoomPlacement`]: it knows the live game servers
//! (the mesh) and carries bytes between them. Placement is rendezvous
//! hashing ([`rendezvous`]) of the room over the live game servers that
//! take logins, as chat rooms are placed: every game server computes the
//! same owner from the same view, and when one dies only its rooms move.
//! While views differ (for up to the peer timeout) two game servers may
//! both think a room is theirs; the room's lease in the store lets only
//! one of them run it.
//!
//! [`SingleNode`] is the placement of a game server alone (tests, the
//! memory session store): every room is here.

use async_trait::async_trait;
use bytes::Bytes;

use super::error::GameError;
use super::room::RoomKey;

/// The cluster as rooms see it.
#[async_trait]
pub trait RoomPlacement: Send + Sync + 'static {
    /// The game server that should run `room`, as this one sees the
    /// cluster now.
    fn owner(&self, room: &RoomKey) -> u64;

    /// Sends an encoded room request to game server `node` and returns
    /// its encoded reply (there, the core hands the request to
    /// [`GameRuntime::serve_room`](super::GameRuntime::serve_room)).
    /// [`GameError::NothingHappened`] when the request never reached
    /// `node` (the runtime then asks again); any other error when it may
    /// have (it was sent and no answer came), which is never re-sent.
    async fn forward(&self, node: u64, request: Bytes) -> Result<Bytes, GameError>;
}

/// One game server: every room runs here.
#[derive(Debug, Clone, Copy)]
pub struct SingleNode(pub u64);

#[async_trait]
impl RoomPlacement for SingleNode {
    fn owner(&self, _room: &RoomKey) -> u64 {
        self.0
    }

    async fn forward(&self, node: u64, _request: Bytes) -> Result<Bytes, GameError> {
        Err(GameError::nothing_happened(format!(
            "game server {node} is not reachable from a single game server"
        )))
    }
}

/// Rendezvous (highest random weight) weight of `key` on `node`: stable
/// across processes and releases, unlike the std hasher.
fn weight(key: &str, node: u64) -> u64 {
    // FNV-1a over the key, then splitmix64 with the node id mixed in.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = h ^ node.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The node among `nodes` that holds `key` (`None` for no nodes).
pub fn rendezvous(key: &str, nodes: impl IntoIterator<Item = u64>) -> Option<u64> {
    nodes.into_iter().max_by_key(|n| (weight(key, *n), *n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_agrees_across_orders_and_moves_only_the_dead_nodes_rooms() {
        let rooms: Vec<String> = (0..1000).map(|i| format!("arena:r{i}")).collect();
        for r in &rooms {
            assert_eq!(rendezvous(r, [1, 2, 3]), rendezvous(r, [3, 1, 2]));
        }
        let moved = rooms
            .iter()
            .filter(|r| rendezvous(r, [1, 2, 3]) != Some(3))
            .filter(|r| rendezvous(r, [1, 2, 3]) != rendezvous(r, [1, 2]))
            .count();
        assert_eq!(moved, 0);
        let on_1 = rooms
            .iter()
            .filter(|r| rendezvous(r, [1, 2, 3]) == Some(1))
            .count();
        assert!((200..470).contains(&on_1), "{on_1} of 1000 on node 1");
        assert_eq!(rendezvous("x", []), None);
    }

    #[tokio::test]
    async fn a_single_node_runs_every_room() {
        let p = SingleNode(4);
        assert_eq!(p.owner(&RoomKey::new("a", "b").unwrap()), 4);
        assert!(p.forward(5, Bytes::new()).await.is_err());
    }
}
