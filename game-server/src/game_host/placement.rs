//! [`MeshPlacement`]: where rooms run, over this game server's view of the
//! mesh, and how a request reaches a room on another game server.
//!
//! A room runs on the game server that rendezvous hashing of
//! `"<kind>:<name>"` names among the live game servers that take logins
//! (this one included while it takes them), as every game server computes
//! from its own view. A request for a room elsewhere travels as a
//! `GameRoomRequest` on the mesh; the receiver serves it (whatever its own
//! view says) and answers `GameRoomReply`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use gamemesh_proto::internal::{mesh_message, GameRoomRequest};
use tokio::sync::oneshot;

use crate::api::placement::rendezvous;
use crate::api::room::RoomKey;
use crate::api::{GameError, RoomPlacement};
use crate::state::HubState;

/// The placement the game API gets.
pub struct MeshPlacement {
    /// The game server (weak: the state holds the game, which holds this).
    state: Weak<HubState>,
    /// This game server's node id.
    node_id: u64,
    /// Forwarded requests waiting for their reply, by request id.
    pending: Mutex<HashMap<u64, oneshot::Sender<Bytes>>>,
    /// Next request id.
    next: AtomicU64,
    /// How long a forwarded request waits for its reply.
    timeout: Duration,
}

impl MeshPlacement {
    pub(crate) fn new(state: Weak<HubState>, node_id: u64, timeout: Duration) -> Self {
        Self {
            state,
            node_id,
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            timeout,
        }
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<Bytes>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A `GameRoomReply` came back for `request_id`.
    pub(crate) fn on_reply(&self, request_id: u64, body: Bytes) {
        if let Some(tx) = self.pending().remove(&request_id) {
            let _ = tx.send(body);
        }
    }
}

/// The game servers rooms are spread over, as `state` sees them.
pub fn candidates(state: &HubState) -> Vec<u64> {
    let mut nodes = state.mesh.live_peer_ids();
    if state.is_accepting() || nodes.is_empty() {
        nodes.push(state.node_id);
    }
    nodes
}

#[async_trait]
impl RoomPlacement for MeshPlacement {
    fn owner(&self, room: &RoomKey) -> u64 {
        let Some(state) = self.state.upgrade() else {
            return self.node_id;
        };
        rendezvous(&room.tag(), candidates(&state)).unwrap_or(self.node_id)
    }

    async fn forward(&self, node: u64, request: Bytes) -> Result<Bytes, GameError> {
        let state = self
            .state
            .upgrade()
            .ok_or_else(|| GameError::nothing_happened("game server stopping"))?;
        let request_id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        // Waiting first: the answer may arrive before `send_kind` returns.
        self.pending().insert(request_id, tx);
        let sent = state.mesh.send_kind(
            node,
            mesh_message::Kind::GameRoomRequest(GameRoomRequest {
                request_id,
                body: request,
            }),
        );
        drop(state);
        if !sent {
            self.pending().remove(&request_id);
            // Never left this game server: the room did not see it.
            return Err(GameError::nothing_happened(format!(
                "game server {node} is not reachable for the room"
            )));
        }
        let reply = tokio::time::timeout(self.timeout, rx)
            .await
            .ok()
            .and_then(Result::ok);
        self.pending().remove(&request_id);
        // Sent and not answered: the room may have done it.
        reply.ok_or_else(|| {
            GameError::unavailable(format!("game server {node} did not answer for the room"))
        })
    }
}
