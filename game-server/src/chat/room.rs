//! The room actor: one per room, on the game server that holds the room.
//! It handles one request at a time from its mailbox, so joins, leaves and
//! messages of a room are ordered by the order it takes them, and each
//! gets the room's next `room_seq` from the shared counter. Its pushes go
//! out before it takes the next request, one `ChatRoomDelivery` per
//! destination game server.
//!
//! It keeps the member table in memory, loaded from the store when it
//! starts and reloaded on every sweep (so a holder that took the room
//! over sees what the previous one wrote); every change is written to the
//! store before it is announced.

use std::collections::HashMap;
use std::sync::Arc;

use gamemesh_proto::client::{
    server_packet, ChatMessage, ChatNotice, ChatNoticeKind, ServerPacket,
};
use gamemesh_proto::internal::{
    mesh_message, ChatRoomDelivery, ChatRoomOp, ChatRoomReply, ChatRoomRequest, ChatRoomStatus,
};
use gamemesh_proto::packets;
use gamemesh_transport::NodeId;
use std::time::Duration;

use gamemesh_actors::{Actor, Context};
use tracing::{debug, info, warn};

use super::{candidates, display_name, now_ms, owner_of, ReplyTo, DEFAULT_ROOMS};
use crate::session::StoreError;
use crate::state::HubState;

/// What a room actor is asked to do.
pub(crate) enum RoomMsg {
    /// A join, leave or message, and where its answer goes.
    Request(ChatRoomRequest, ReplyTo),
    /// Reload the members, drop those whose session is gone or replaced,
    /// and stop if the room is held elsewhere now.
    Sweep,
}

/// One room's state while its actor runs.
struct Room {
    /// The room's name.
    name: String,
    /// user id -> the session that joined; `None` until loaded.
    members: Option<HashMap<u64, u64>>,
    /// The live game servers when the members were loaded. When it
    /// changes, another node may have held the room meanwhile (the mesh
    /// was forming or split), so the members are loaded again.
    view: Vec<NodeId>,
}

fn reply(request_id: u64, status: ChatRoomStatus, room_seq: u64) -> ChatRoomReply {
    ChatRoomReply {
        request_id,
        status: status as i32,
        room_seq,
        member_user_ids: Vec::new(),
    }
}

/// The room as an actor of [`gamemesh_actors`].
pub(crate) struct RoomActor {
    /// What it needs of the game server.
    state: Arc<HubState>,
    /// The room.
    room: Room,
    /// How often it sweeps its members.
    sweep_every: Duration,
}

impl RoomActor {
    /// The actor of room `name`; start it with
    /// [`gamemesh_actors::Builder::spawn`].
    pub(crate) fn new(state: Arc<HubState>, name: String, sweep_every: Duration) -> Self {
        Self {
            state,
            room: Room {
                name,
                members: None,
                view: Vec::new(),
            },
            sweep_every,
        }
    }
}

impl Actor for RoomActor {
    type Msg = RoomMsg;

    async fn started(&mut self, ctx: &mut Context<Self>) {
        debug!(room = %self.room.name, "room actor started");
        // The actor's own timer: it ends when the actor stops.
        ctx.run_interval(self.sweep_every, || RoomMsg::Sweep);
    }

    async fn handle(&mut self, msg: RoomMsg, ctx: &mut Context<Self>) {
        let (state, room) = (&self.state, &mut self.room);
        match msg {
            RoomMsg::Request(req, to) => {
                let id = req.request_id;
                let out = match room.handle(state, req).await {
                    Ok(r) => r,
                    Err(e) => {
                        warn!(room = %room.name, "chat room store failed: {e}");
                        // Reload next time: what failed may have half
                        // happened.
                        room.members = None;
                        reply(id, ChatRoomStatus::Unavailable, 0)
                    }
                };
                to.send(state, out);
            }
            RoomMsg::Sweep => {
                if let Err(e) = room.sweep(state).await {
                    debug!(room = %room.name, "chat room sweep failed: {e}");
                }
                // Held elsewhere now, or an emptied room that is forgotten:
                // nothing for this actor to do. (A request that comes
                // later starts a fresh one, which loads the room again.)
                let moved = owner_of(state, &room.name) != state.node_id;
                let empty = room.members.as_ref().is_some_and(|m| m.is_empty())
                    && !DEFAULT_ROOMS.contains(&room.name.as_str());
                if (moved || empty) && state.chat.retire(&room.name, ctx.addr()) {
                    debug!(room = %room.name, moved, "room actor stops");
                    ctx.stop();
                }
            }
        }
    }
}

impl Room {
    async fn members(&mut self, state: &HubState) -> Result<&mut HashMap<u64, u64>, StoreError> {
        let view = candidates(state);
        if view != self.view {
            self.members = None;
            self.view = view;
        }
        if self.members.is_none() {
            self.members = Some(state.chat.store.members(&self.name).await?);
        }
        Ok(self.members.get_or_insert_with(HashMap::new))
    }

    async fn handle(
        &mut self,
        state: &HubState,
        req: ChatRoomRequest,
    ) -> Result<ChatRoomReply, StoreError> {
        let id = req.request_id;
        let (user, session) = (req.user_id, req.session_id);
        let current = self.members(state).await?.get(&user).copied();
        match ChatRoomOp::try_from(req.op).unwrap_or(ChatRoomOp::Unspecified) {
            ChatRoomOp::Join => {
                if current == Some(session) {
                    let mut r = reply(id, ChatRoomStatus::Already, 0);
                    r.member_user_ids = self.member_ids();
                    return Ok(r);
                }
                // Number first: a failure then changes nothing.
                let seq = state.chat.store.next_seq(&self.name).await?;
                state
                    .chat
                    .store
                    .add_member(&self.name, user, session)
                    .await?;
                self.members(state).await?.insert(user, session);
                info!(
                    "Chat: UserId={user} joined room {} (RoomSeq={seq})",
                    self.name
                );
                let push = self.notice(seq, ChatNoticeKind::Joined, user);
                self.deliver(state, vec![push]).await;
                let mut r = reply(id, ChatRoomStatus::Ok, seq);
                r.member_user_ids = self.member_ids();
                Ok(r)
            }
            ChatRoomOp::Leave => {
                // Session 0 would be any session; a leave always names one.
                if current != Some(session) {
                    return Ok(reply(id, ChatRoomStatus::NotInRoom, 0));
                }
                let seq = self.remove(state, user, "left").await?;
                Ok(reply(id, ChatRoomStatus::Ok, seq))
            }
            ChatRoomOp::Say => {
                if current != Some(session) {
                    return Ok(reply(id, ChatRoomStatus::NotInRoom, 0));
                }
                let seq = state.chat.store.next_seq(&self.name).await?;
                let push = ServerPacket {
                    sequence_id: 0,
                    body: Some(server_packet::Body::ChatMessage(ChatMessage {
                        room: self.name.clone(),
                        room_seq: seq,
                        from_user_id: user,
                        from_name: display_name(user),
                        text: req.text,
                        sent_at_ms: now_ms(),
                    })),
                };
                self.deliver(state, vec![push]).await;
                metrics::counter!("gamemesh_chat_messages_total").increment(1);
                Ok(reply(id, ChatRoomStatus::Ok, seq))
            }
            ChatRoomOp::Unspecified => Ok(reply(id, ChatRoomStatus::Unspecified, 0)),
        }
    }

    fn member_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .members
            .as_ref()
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default();
        ids.sort_unstable();
        ids
    }

    /// Removes `user`, tells the remaining members, returns the notice's
    /// `room_seq`.
    async fn remove(&mut self, state: &HubState, user: u64, why: &str) -> Result<u64, StoreError> {
        let seq = state.chat.store.next_seq(&self.name).await?;
        let members = self.members(state).await?;
        let forget = members.len() <= 1 && !DEFAULT_ROOMS.contains(&self.name.as_str());
        state
            .chat
            .store
            .remove_member(&self.name, user, forget)
            .await?;
        self.members(state).await?.remove(&user);
        info!(
            "Chat: UserId={user} left room {} ({why}, RoomSeq={seq})",
            self.name
        );
        let push = self.notice(seq, ChatNoticeKind::Left, user);
        self.deliver(state, vec![push]).await;
        Ok(seq)
    }

    /// Reloads the members and drops those whose user has no session any
    /// more (expired, logged out) or another one (replaced by a login).
    async fn sweep(&mut self, state: &HubState) -> Result<(), StoreError> {
        let members = state.chat.store.members(&self.name).await?;
        self.members = Some(members.clone());
        let users: Vec<u64> = members.keys().copied().collect();
        let sessions = state.chat.store.sessions(&users).await?;
        for (user, s) in users.into_iter().zip(sessions) {
            let joined = members[&user];
            if s.is_none_or(|s| s.session_id != joined) {
                self.remove(state, user, "session ended").await?;
            }
        }
        Ok(())
    }

    fn notice(&self, seq: u64, kind: ChatNoticeKind, user: u64) -> ServerPacket {
        let name = display_name(user);
        let verb = if kind == ChatNoticeKind::Joined {
            "joined"
        } else {
            "left"
        };
        ServerPacket {
            sequence_id: 0,
            body: Some(server_packet::Body::ChatNotice(ChatNotice {
                room: self.name.clone(),
                room_seq: seq,
                kind: kind as i32,
                user_id: user,
                text: format!("{name} {verb}"),
                name,
                sent_at_ms: now_ms(),
            })),
        }
    }

    /// Sends `pushes` to every member whose session is connected: members
    /// owned here directly, the others batched per owning game server.
    /// Best effort, as every push: a member whose game server cannot be
    /// reached misses them.
    async fn deliver(&self, state: &HubState, pushes: Vec<ServerPacket>) {
        let Some(members) = &self.members else {
            return;
        };
        let users: Vec<u64> = members.keys().copied().collect();
        let sessions = match state.chat.store.sessions(&users).await {
            Ok(s) => s,
            Err(e) => {
                warn!(room = %self.name, "chat pushes dropped: members' sessions unknown ({e})");
                return;
            }
        };
        let mut by_node: HashMap<NodeId, Vec<u64>> = HashMap::new();
        for (user, s) in users.into_iter().zip(sessions) {
            match s {
                // Only the session that joined: a user's newer session
                // has not joined this room.
                Some(s) if s.connected && s.owner != 0 && s.session_id == members[&user] => {
                    by_node.entry(s.owner).or_default().push(user)
                }
                _ => {}
            }
        }
        for (node, users) in by_node {
            if node == state.node_id {
                super::deliver_local(state, &self.name, &users, &pushes);
            } else {
                let sent = state.mesh.send_kind(
                    node,
                    mesh_message::Kind::ChatRoomDelivery(ChatRoomDelivery {
                        room: self.name.clone(),
                        user_ids: users,
                        packets: pushes.iter().map(packets::encode).collect(),
                    }),
                );
                if !sent {
                    debug!(room = %self.name, node, "chat pushes to an unreachable game server dropped");
                }
            }
        }
    }
}
