//! [`CorePusher`]: game code's pushes, delivered by this game server's
//! sessions and gateway links, or handed over the mesh to the game server
//! that owns the session.
//!
//! A push arrives already encoded (one `ServerPacket` for every
//! recipient). Pushes for one recipient go out in the order they were
//! handed over: locally straight to its gateway pipe, remotely on the one
//! mesh pipe to its game server, which writes them in arrival order.
//! Local recipients behind one gateway share one link message per push
//! ([`LocalFanOut`]): the gateway fans it out to their sockets.

use std::sync::Weak;

use async_trait::async_trait;
use bytes::Bytes;
use gamemesh_proto::internal::{mesh_message, DeliverToUser, GamePushDelivery, GamePushEveryone};
use gamemesh_transport::NodeId;
use tracing::debug;
use uuid::Uuid;

use crate::api::{Push, PushError, Pusher, Recipient};
use crate::state::HubState;

/// The pusher the game API gets.
pub struct CorePusher {
    /// The game server (weak: the state holds the game, which holds this).
    state: Weak<HubState>,
    /// This game server's node id.
    node_id: u64,
}

impl CorePusher {
    pub(crate) fn new(state: Weak<HubState>, node_id: u64) -> Self {
        Self { state, node_id }
    }
}

/// The sockets one push goes to on this game server, grouped by gateway
/// in the order the recipients came: each gateway then gets the push as
/// one `SendToClients` (one link message, the body once), and writes it to
/// its sockets in that order.
#[derive(Default)]
pub(crate) struct LocalFanOut {
    /// Gateways in first-seen order, each with its sockets in order.
    by_gateway: Vec<(NodeId, Vec<Uuid>)>,
}

impl LocalFanOut {
    /// Adds `user`'s socket if its session `session` is owned here; false
    /// when it is not.
    pub(crate) fn add_session(&mut self, state: &HubState, user: u64, session: u64) -> bool {
        match state.sessions.get(session) {
            Some(a) if a.session.user_id == user && !a.session.is_ended() => {
                self.add(a.gateway, a.socket);
                true
            }
            _ => false,
        }
    }

    /// Adds one socket of `gateway`.
    pub(crate) fn add(&mut self, gateway: NodeId, socket: Uuid) {
        match self.by_gateway.iter_mut().find(|(g, _)| *g == gateway) {
            Some((_, sockets)) => sockets.push(socket),
            None => self.by_gateway.push((gateway, vec![socket])),
        }
    }

    /// Sends `packet` to every socket added, one message per gateway.
    pub(crate) fn send(self, state: &HubState, packet: &Bytes) {
        for (gateway, sockets) in self.by_gateway {
            state
                .gateways
                .send_encoded_many(gateway, &sockets, packet.clone());
        }
    }
}

/// Writes `packet` to every session owned here; how many.
pub(crate) fn deliver_everyone_here(state: &HubState, packet: &Bytes) -> usize {
    let all = state.sessions.all();
    let mut fan_out = LocalFanOut::default();
    for a in &all {
        fan_out.add(a.gateway, a.socket);
    }
    fan_out.send(state, packet);
    all.len()
}

#[async_trait]
impl Pusher for CorePusher {
    fn to_sessions(&self, recipients: &[Recipient], push: &Push) {
        let Some(state) = self.state.upgrade() else {
            return;
        };
        // Grouped per game server, in the order recipients came: one mesh
        // message per remote game server.
        let mut local = LocalFanOut::default();
        let mut remote: Vec<(u64, GamePushDelivery)> = Vec::new();
        for r in recipients {
            if r.node == self.node_id {
                local.add_session(&state, r.user_id, r.session_id);
            } else if r.node != 0 {
                let i = match remote.iter().position(|(n, _)| *n == r.node) {
                    Some(i) => i,
                    None => {
                        remote.push((
                            r.node,
                            GamePushDelivery {
                                packet: push.encoded().clone(),
                                ..GamePushDelivery::default()
                            },
                        ));
                        remote.len() - 1
                    }
                };
                remote[i].1.user_ids.push(r.user_id);
                remote[i].1.session_ids.push(r.session_id);
            }
        }
        local.send(&state, push.encoded());
        for (node, delivery) in remote {
            if !state
                .mesh
                .send_kind(node, mesh_message::Kind::GamePushDelivery(delivery))
            {
                debug!(node, "push to an unreachable game server dropped");
            }
        }
    }

    async fn to_user(&self, user_id: u64, push: &Push) -> Result<(), PushError> {
        let state = self.state.upgrade().ok_or(PushError::Offline)?;
        if let Some(a) = state.sessions.by_user(user_id) {
            state
                .gateways
                .send_encoded(a.gateway, &a.socket, push.encoded().clone());
            return Ok(());
        }
        let record = state
            .store
            .get(user_id)
            .await
            .map_err(|e| PushError::Unavailable(e.to_string()))?
            .ok_or(PushError::Offline)?;
        let owner = record.placement.owner;
        if !record.connected || owner == 0 || owner == self.node_id || !state.mesh.is_live(owner) {
            return Err(PushError::Offline);
        }
        let sent = state.mesh.send_kind(
            owner,
            mesh_message::Kind::DeliverToUser(DeliverToUser {
                user_id,
                body: push.encoded().clone(),
            }),
        );
        if sent {
            Ok(())
        } else {
            Err(PushError::Unavailable(format!(
                "game server {owner} unreachable"
            )))
        }
    }

    fn to_everyone(&self, push: &Push) {
        let Some(state) = self.state.upgrade() else {
            return;
        };
        deliver_everyone_here(&state, push.encoded());
        for node in state.mesh.live_peer_ids_all() {
            state.mesh.send_kind(
                node,
                mesh_message::Kind::GamePushEveryone(GamePushEveryone {
                    packet: push.encoded().clone(),
                }),
            );
        }
    }
}
