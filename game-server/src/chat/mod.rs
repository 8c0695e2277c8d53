//! Chat rooms that span the cluster, and private messages.
//!
//! - **One room, one actor, one game server.** Every room is held by one
//!   game server, chosen by rendezvous hashing of the room name over the
//!   live game servers that take logins ([`owner_of`]); every game server
//!   computes the same answer from its view of the mesh. There the room is
//!   an actor ([`room`]): it handles one join, leave or message at a time,
//!   gives each the room's next `room_seq`, and sends the resulting pushes
//!   to the members' game servers, one `ChatRoomDelivery` per destination
//!   game server, on the mesh pipe to it (ordered), so every member sees the
//!   room's pushes in the order the room accepted them.
//! - **State in Redis** ([`store`]): members and the sequence counter. An
//!   actor keeps nothing that is not there, so when ownership moves (a game
//!   server joins, drains or dies) the new holder loads the members and
//!   carries on counting. While two game servers disagree about who is live
//!   (for up to the peer timeout), both may run an actor for a room; the
//!   shared counter still never hands out one `room_seq` twice.
//! - **Requests.** A client's handler ([`crate::handlers::chat`]) runs on
//!   the game server that owns the client's session; it sends a
//!   `ChatRoomRequest` to the room's holder (or posts to the local actor)
//!   and waits at most [`ASK_TIMEOUT`] for the `ChatRoomReply`. The
//!   receiving game server always serves a request it gets, even if its
//!   own view names another holder, so a request never bounces.
//! - **Leaving.** Logout and a login that replaces a session make the
//!   session leave its rooms at once ([`leave_all`]). Every room's holder
//!   also sweeps its members every `--chat-sweep-ms`: a member whose user
//!   has no session any more (expired) or another one (replaced) leaves,
//!   and the others see `<name> left`. A disconnected session that can
//!   still be resumed stays in its rooms.
//! - **Whispers** go straight to the user's game server
//!   ([`crate::cluster::mesh::deliver_to_user`]); no room is involved.
//! - **Metrics** (the `metrics` facade): `gamemesh_chat_messages_total`
//!   (room messages accepted), `gamemesh_chat_pushes_total` (chat pushes
//!   written to sockets here), `gamemesh_chat_whispers_total`,
//!   `gamemesh_chat_rate_limited_total`, and the gauge
//!   `gamemesh_chat_rooms_held` (room actors on this game server).

pub mod limiter;
pub mod room;
pub mod store;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use gamemesh_actors::{Addr, Builder, PostError};
use gamemesh_proto::client::ServerPacket;
use gamemesh_proto::internal::{
    mesh_message, ChatRoomDelivery, ChatRoomReply, ChatRoomRequest, ChatRoomStatus,
};
use gamemesh_proto::Message;
use gamemesh_transport::NodeId;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::state::HubState;
pub use limiter::ChatLimiter;
use room::{RoomActor, RoomMsg};
pub use store::{ChatStore, MemberSession};

/// Rooms that always exist (created at start, never forgotten).
pub const DEFAULT_ROOMS: [&str; 3] = ["general", "game", "dev"];
/// Longest room name, in bytes.
pub const MAX_ROOM_NAME: usize = 32;
/// Longest chat text, in bytes.
pub const MAX_TEXT: usize = 512;
/// How long a handler waits for a room's answer.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// Requests queued per room actor before senders are refused.
const ROOM_MAILBOX: usize = 1024;

/// True for a name of 1 to [`MAX_ROOM_NAME`] bytes of `[A-Za-z0-9_-]`
/// (the characters keep Redis keys and terminal output unsurprising).
pub fn valid_room(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ROOM_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// True for text of 1 to [`MAX_TEXT`] bytes.
pub fn valid_text(text: &str) -> bool {
    !text.is_empty() && text.len() <= MAX_TEXT
}

/// The name other players see. Accounts have no names yet.
pub fn display_name(user_id: u64) -> String {
    format!("user-{user_id}")
}

/// Unix time in milliseconds, stamped on pushes.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// This game server's chat: its room actors, the requests it waits on,
/// and the per-session send limit.
pub struct Chat {
    /// Rooms and members, shared by every game server.
    pub store: Arc<dyn ChatStore>,
    /// Room actors held here, by room name. Posting happens under this lock
    /// (a non-blocking `try_post`), so an actor that retires under it can
    /// never lose a message posted to it.
    rooms: Mutex<HashMap<String, Addr<RoomActor>>>,
    /// Requests sent to other game servers, waiting for their reply.
    pending: Mutex<HashMap<u64, oneshot::Sender<ChatRoomReply>>>,
    /// Next request id (0 means "no reply wanted").
    next_request: AtomicU64,
    /// Says and whispers per session.
    pub limiter: ChatLimiter,
    /// How often each room sweeps its members.
    sweep_every: Duration,
    /// Owns the room actors and leave tasks.
    tracker: TaskTracker,
    /// Stops them.
    shutdown: CancellationToken,
}

impl Chat {
    /// Chat over `store`; rooms sweep their members every `sweep_every`;
    /// actors and tasks run on `tracker` until `shutdown`.
    pub fn new(
        store: Arc<dyn ChatStore>,
        limiter: ChatLimiter,
        sweep_every: Duration,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            sweep_every,
            store,
            rooms: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            limiter,
            tracker,
            shutdown,
        }
    }

    fn rooms(&self) -> MutexGuard<'_, HashMap<String, Addr<RoomActor>>> {
        // Critical sections are map operations and try_send: never torn.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<ChatRoomReply>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Names of the rooms with an actor here.
    pub fn held_rooms(&self) -> Vec<String> {
        self.rooms().keys().cloned().collect()
    }

    /// Removes `room`'s actor from the table if its mailbox is empty; true
    /// when it may stop (nothing can be posted to it any more).
    fn retire(&self, room: &str, addr: &Addr<RoomActor>) -> bool {
        let mut rooms = self.rooms();
        if addr.queued() == 0 {
            rooms.remove(room);
            metrics::gauge!("gamemesh_chat_rooms_held").set(rooms.len() as f64);
            true
        } else {
            false
        }
    }

    /// Stops every room actor (shutdown); none starts after this.
    fn stop_all(&self) {
        for (_, addr) in self.rooms().drain() {
            addr.stop();
        }
        metrics::gauge!("gamemesh_chat_rooms_held").set(0.0);
    }
}

/// Rendezvous (highest random weight) hash of a room on a node: stable
/// across processes and releases, unlike the std hasher.
fn weight(room: &str, node: NodeId) -> u64 {
    // FNV-1a over the name, then splitmix64 with the node id mixed in.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in room.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = h ^ node.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The node that holds `room` among `nodes` (none: `None`).
pub fn rendezvous(room: &str, nodes: impl IntoIterator<Item = NodeId>) -> Option<NodeId> {
    nodes.into_iter().max_by_key(|n| (weight(room, *n), *n))
}

/// The game server that holds `room`: rendezvous over this node (while it
/// takes logins) and the live peers that take logins. A draining node
/// hands its rooms on; if nothing else is live, it keeps them.
pub fn owner_of(state: &HubState, room: &str) -> NodeId {
    rendezvous(room, candidates(state)).unwrap_or(state.node_id)
}

/// The game servers rooms are spread over, as this node sees them, sorted.
pub fn candidates(state: &HubState) -> Vec<NodeId> {
    let mut nodes: Vec<NodeId> = state.mesh.live_peers().iter().map(|n| n.node_id).collect();
    if state.is_accepting() || nodes.is_empty() {
        nodes.push(state.node_id);
    }
    nodes.sort_unstable();
    nodes
}

/// Where a room actor's answer goes.
pub(crate) enum ReplyTo {
    /// A handler on this game server.
    Local(oneshot::Sender<ChatRoomReply>),
    /// A game server that sent the request over the mesh.
    Peer(NodeId),
    /// Nobody asked (request id 0).
    Nobody,
}

impl ReplyTo {
    /// Sends `reply` where it belongs.
    pub(crate) fn send(self, state: &HubState, reply: ChatRoomReply) {
        match self {
            ReplyTo::Local(tx) => {
                let _ = tx.send(reply);
            }
            ReplyTo::Peer(node) => {
                state
                    .mesh
                    .send_kind(node, mesh_message::Kind::ChatRoomReply(reply));
            }
            ReplyTo::Nobody => {}
        }
    }
}

/// A reply that says the room could not be asked.
fn unavailable(request_id: u64) -> ChatRoomReply {
    ChatRoomReply {
        request_id,
        status: ChatRoomStatus::Unavailable as i32,
        ..ChatRoomReply::default()
    }
}

/// Posts `msg` to the actor of `room` here, starting it if needed. Gives
/// the message back when the actor's mailbox is full or chat is shutting
/// down.
fn post(state: &Arc<HubState>, room: &str, msg: RoomMsg) -> Result<(), RoomMsg> {
    let chat = &state.chat;
    let mut rooms = chat.rooms();
    if chat.shutdown.is_cancelled() {
        return Err(msg);
    }
    let addr = rooms.entry(room.to_string()).or_insert_with(|| {
        metrics::gauge!("gamemesh_chat_rooms_held").increment(1.0);
        spawn_room(state, room)
    });
    match addr.try_post(msg) {
        Ok(()) => Ok(()),
        Err(PostError::Full(m)) => Err(m),
        // It stopped (a handler panicked): a fresh actor loads the room
        // from the store again.
        Err(PostError::Stopped(m)) => {
            warn!(room, "room actor had stopped; starting a new one");
            let fresh = spawn_room(state, room);
            let res = fresh.try_post(m).map_err(|e| match e {
                PostError::Full(m) | PostError::Stopped(m) => m,
            });
            rooms.insert(room.to_string(), fresh);
            res
        }
    }
}

fn spawn_room(state: &Arc<HubState>, room: &str) -> Addr<RoomActor> {
    let chat = &state.chat;
    Builder::new()
        .mailbox(ROOM_MAILBOX)
        .tracker(&chat.tracker)
        .name(format!("chat room {room}"))
        .spawn(RoomActor::new(
            state.clone(),
            room.to_string(),
            chat.sweep_every,
        ))
}

/// Hands `req` to the room's actor here, or to the game server that holds
/// the room; the answer goes to `reply`.
fn route(state: &Arc<HubState>, req: ChatRoomRequest, reply: ReplyTo) {
    let owner = owner_of(state, &req.room);
    if owner == state.node_id {
        let room = req.room.clone();
        if let Err(RoomMsg::Request(req, reply)) = post(state, &room, RoomMsg::Request(req, reply))
        {
            reply.send(state, unavailable(req.request_id));
        }
        return;
    }
    // Waiting first: the answer may arrive before `send_kind` returns.
    let id = req.request_id;
    let reply = match reply {
        ReplyTo::Local(tx) => {
            state.chat.pending().insert(id, tx);
            None
        }
        other => Some(other),
    };
    if !state
        .mesh
        .send_kind(owner, mesh_message::Kind::ChatRoomRequest(req))
    {
        if let Some(tx) = state.chat.pending().remove(&id) {
            let _ = tx.send(unavailable(id));
        } else if let Some(r) = reply {
            r.send(state, unavailable(id));
        }
    }
}

/// Asks the room `req` names to do it, and waits for its answer (at most
/// [`ASK_TIMEOUT`]; then the answer is `UNAVAILABLE`).
pub async fn ask(state: &Arc<HubState>, mut req: ChatRoomRequest) -> ChatRoomReply {
    let request_id = state.chat.next_request.fetch_add(1, Ordering::Relaxed);
    req.request_id = request_id;
    let (tx, rx) = oneshot::channel();
    route(state, req, ReplyTo::Local(tx));
    let reply = tokio::time::timeout(ASK_TIMEOUT, rx).await;
    state.chat.pending().remove(&request_id);
    match reply {
        Ok(Ok(r)) => r,
        _ => unavailable(request_id),
    }
}

/// Makes session `session_id` of `user_id` leave every room it is in
/// (logout, replaced by a new login). Runs beside the caller; the rooms
/// tell their members. A room that misses it (its holder was down) drops
/// the member on its next sweep.
pub fn leave_all(state: &Arc<HubState>, user_id: u64, session_id: u64) {
    let st = state.clone();
    state.chat.tracker.spawn(async move {
        let rooms = match st.chat.store.user_rooms(user_id).await {
            Ok(r) => r,
            Err(e) => {
                debug!("Rooms of UserId={user_id} unknown ({e}); their sweeps will drop it");
                return;
            }
        };
        for room in rooms {
            let req = ChatRoomRequest {
                request_id: 0,
                room,
                user_id,
                session_id,
                op: gamemesh_proto::internal::ChatRoomOp::Leave as i32,
                text: String::new(),
            };
            route(&st, req, ReplyTo::Nobody);
        }
    });
}

/// A `ChatRoomRequest` from another game server: served here whatever our
/// own view of ownership says, so a request never bounces between nodes.
pub fn on_request(state: &Arc<HubState>, from: NodeId, req: ChatRoomRequest) {
    let reply = if req.request_id == 0 {
        ReplyTo::Nobody
    } else {
        ReplyTo::Peer(from)
    };
    let room = req.room.clone();
    if !valid_room(&room) {
        warn!(peer = from, "chat request for an invalid room name dropped");
        return;
    }
    if let Err(RoomMsg::Request(req, reply)) = post(state, &room, RoomMsg::Request(req, reply)) {
        reply.send(state, unavailable(req.request_id));
    }
}

/// A `ChatRoomReply` from another game server.
pub fn on_reply(state: &HubState, reply: ChatRoomReply) {
    if let Some(tx) = state.chat.pending().remove(&reply.request_id) {
        let _ = tx.send(reply);
    }
}

/// A room's pushes from another game server, for members whose sessions
/// are here.
pub fn on_delivery(state: &HubState, d: ChatRoomDelivery) {
    let packets: Vec<ServerPacket> = d
        .packets
        .into_iter()
        .filter_map(|b| ServerPacket::decode(b).ok())
        .collect();
    deliver_local(state, &d.room, &d.user_ids, &packets);
}

/// Writes a room's pushes, in order, to the sockets of `users` whose
/// sessions are here.
pub(crate) fn deliver_local(state: &HubState, room: &str, users: &[u64], packets: &[ServerPacket]) {
    for user in users {
        match state.sessions.by_user(*user) {
            Some(a) => {
                for p in packets {
                    state.gateways.send_to_client(a.gateway, &a.socket, p);
                }
                metrics::counter!("gamemesh_chat_pushes_total").increment(packets.len() as u64);
            }
            None => debug!(
                room,
                user, "chat push for a user whose session left this game server dropped"
            ),
        }
    }
}

/// Every `every`: makes sure the default rooms exist and that every room
/// held here has its actor (which then sweeps its members on its own
/// timer, and stops once the room is held elsewhere). Also forgets idle
/// send limits. At shutdown it stops the room actors.
pub async fn sweep_loop(state: Arc<HubState>, every: Duration, shutdown: CancellationToken) {
    loop {
        if let Err(e) = state.chat.store.create_rooms(&DEFAULT_ROOMS).await {
            debug!("Creating the default rooms failed: {e}; retrying");
        }
        match state.chat.store.rooms().await {
            Ok(rooms) => {
                for (room, _) in rooms {
                    let held = state.chat.rooms().contains_key(&room);
                    if !held && owner_of(&state, &room) == state.node_id {
                        let _ = post(&state, &room, RoomMsg::Sweep);
                    }
                }
            }
            Err(e) => debug!("Reading the room list failed: {e}; sweeping next time"),
        }
        state.chat.limiter.prune();
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
    state.chat.stop_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_and_texts_are_bounded() {
        assert!(valid_room("general"));
        assert!(valid_room("Team_2-b"));
        assert!(valid_room(&"a".repeat(MAX_ROOM_NAME)));
        assert!(!valid_room(""));
        assert!(!valid_room(&"a".repeat(MAX_ROOM_NAME + 1)));
        assert!(!valid_room("has space"));
        assert!(!valid_room("a}b"), "would break the Redis hash tag");
        assert!(valid_text("hi"));
        assert!(valid_text(&"é".repeat(MAX_TEXT / 2)));
        assert!(!valid_text(""));
        assert!(!valid_text(&"x".repeat(MAX_TEXT + 1)));
    }

    #[test]
    fn rendezvous_agrees_across_orders_and_moves_few_rooms() {
        let rooms: Vec<String> = (0..1000).map(|i| format!("room-{i}")).collect();
        for r in &rooms {
            assert_eq!(rendezvous(r, [1, 2, 3]), rendezvous(r, [3, 1, 2]));
        }
        // Node 3 leaving moves only the rooms it held.
        let moved = rooms
            .iter()
            .filter(|r| rendezvous(r, [1, 2, 3]) != Some(3))
            .filter(|r| rendezvous(r, [1, 2, 3]) != rendezvous(r, [1, 2]))
            .count();
        assert_eq!(moved, 0);
        // And the rooms spread over the nodes.
        let on_1 = rooms
            .iter()
            .filter(|r| rendezvous(r, [1, 2, 3]) == Some(1))
            .count();
        assert!((200..470).contains(&on_1), "{on_1} of 1000 on node 1");
        assert_eq!(rendezvous("x", []), None);
    }
}
