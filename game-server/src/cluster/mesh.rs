//! The service mesh: game server <-> game server over ZeroMQ (default port
//! 9101).
//!
//! Peers come from the registry ([`crate::cluster::membership`]); each heartbeat
//! every game server sends a `MeshHello` to every peer, and a peer not
//! heard from within the peer timeout is down. What travels on it:
//!
//! - `SessionEnded`: a login elsewhere replaced a session this peer owns;
//!   it drops its state now instead of on its next fenced save.
//! - `ReleaseSession` / `SessionReleased`: a resume elsewhere asks the
//!   owner to save the session's final progress and let go, and waits for
//!   the answer (bounded), so the snapshot is exact.
//! - `DeliverToUser`: a server push for a user, sent to the game server
//!   that owns the user's session, which writes it to the user's socket.
//! - `GameRoomRequest` / `GameRoomReply` / `GamePushDelivery` /
//!   `GamePushEveryone`: the game API's rooms and pushes (see
//!   [`crate::game_host`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gamemesh_node::peer_gate::LinkTrust;
use gamemesh_proto::client::ServerPacket;
use gamemesh_proto::cluster_auth::ClusterSecret;
use gamemesh_proto::internal::{
    mesh_message, DeliverToUser, MeshHello, MeshMessage, NodeInfo, ReleaseSession, SessionEnded,
    SessionReleased,
};
use gamemesh_proto::{packets, Message};
use gamemesh_transport::{Link, LinkEvent, LinkReceiver, NodeId, ZmqLink};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use std::sync::Arc;

use crate::cluster::membership::NodeRegistry;

/// What we know of one peer game server.
#[derive(Debug)]
struct Peer {
    /// Its mesh endpoint (we dial it).
    mesh_endpoint: String,
    /// Its P2P endpoint (relayed to gateways).
    p2p_endpoint: String,
    /// Last message from it; `None` until it first speaks.
    last_seen: Option<Instant>,
    /// Whether its last hello listed us: our pipe to it delivers.
    hears_us: bool,
    /// Whether we count it as live (for up/down log lines).
    up: bool,
    /// False while it drains.
    accepting: bool,
}

/// How a release request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The owner saved the session's final progress and let it go.
    Saved,
    /// The owner answered that it does not hold the session.
    NotHeld,
    /// No answer in time (or the request could not be sent).
    NoAnswer,
}

/// This game server's end of the mesh.
pub struct Mesh {
    /// ROUTER in, a DEALER per peer out.
    link: ZmqLink,
    /// Our node id.
    node_id: NodeId,
    /// What we announce: our node id and endpoints.
    me: NodeInfo,
    /// Peers by node id.
    peers: RwLock<HashMap<NodeId, Peer>>,
    /// Release requests waiting for their answer.
    pending: Mutex<HashMap<u64, oneshot::Sender<bool>>>,
    /// Next release request id.
    next_request: AtomicU64,
    /// Silence after which a peer is down.
    peer_timeout: Duration,
    /// Signs our hellos and gates what peers send (`--cluster-secret`).
    trust: LinkTrust,
    /// Where the game API's messages go (set once the game started; the
    /// mesh does not know the game, the game registers here).
    game: OnceLock<GameHook>,
}

/// The handler of the game API's mesh messages (`GameRoomRequest`,
/// `GameRoomReply`, `GamePushDelivery`, `GamePushEveryone`).
pub type GameHook = Box<dyn Fn(NodeId, mesh_message::Kind) + Send + Sync>;

impl Mesh {
    /// Wraps the bound mesh link; `me` is what peers and gateways dial.
    pub fn new(
        link: ZmqLink,
        me: NodeInfo,
        peer_timeout: Duration,
        secret: Option<ClusterSecret>,
    ) -> Self {
        Self {
            trust: LinkTrust::new(secret, "mesh"),
            link,
            node_id: me.node_id,
            me,
            peers: RwLock::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            peer_timeout,
            game: OnceLock::new(),
        }
    }

    /// Hands the game API's mesh messages to `hook` from now on (once).
    pub fn set_game_hook(&self, hook: GameHook) {
        let _ = self.game.set(hook);
    }

    /// The mesh port's side of the cluster secret: its gate (admitting
    /// only pipes that proved the secret in a `MeshHello`) and the count of
    /// what that gate dropped (`gamemesh_link_unauthenticated_total{link="mesh"}`).
    pub fn trust(&self) -> &LinkTrust {
        &self.trust
    }

    /// How many sends on the mesh were refused at the high-water mark.
    pub fn hwm_events(&self) -> u64 {
        self.link.hwm_events()
    }

    /// Our own entry in the registry.
    pub fn me(&self) -> &NodeInfo {
        &self.me
    }

    fn heard_recently(&self, p: &Peer, now: Instant) -> bool {
        p.last_seen
            .is_some_and(|t| now.duration_since(t) < self.peer_timeout)
    }

    /// Live: heard from recently, and it hears us (both pipes deliver).
    fn live(&self, p: &Peer, now: Instant) -> bool {
        p.hears_us && self.heard_recently(p, now)
    }

    /// True when `node` answered within the peer timeout.
    pub fn is_live(&self, node: NodeId) -> bool {
        let now = Instant::now();
        self.peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&node)
            .is_some_and(|p| self.live(p, now))
    }

    /// True while some registered peer has not yet answered, or not yet
    /// heard us: the mesh is still forming, and heartbeats go faster.
    pub fn settling(&self) -> bool {
        self.peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .any(|p| p.last_seen.is_none() || !p.hears_us)
    }

    /// Live peers that take logins, as gateways should learn them.
    pub fn live_peers(&self) -> Vec<NodeInfo> {
        self.map_live(true, |id, p| NodeInfo {
            node_id: id,
            p2p_endpoint: p.p2p_endpoint.clone(),
            mesh_endpoint: p.mesh_endpoint.clone(),
        })
    }

    /// Node ids of the live peers that take logins: what rooms are spread
    /// over (cheaper than [`live_peers`](Self::live_peers): no endpoints).
    pub fn live_peer_ids(&self) -> Vec<NodeId> {
        self.map_live(true, |id, _| id)
    }

    /// Every peer that is live, taking logins or not (pushes to everyone
    /// reach draining game servers' players too).
    pub fn live_peer_ids_all(&self) -> Vec<NodeId> {
        self.map_live(false, |id, _| id)
    }

    /// `f` of every live peer (only those taking logins when
    /// `accepting_only`), read under one lock at one instant.
    fn map_live<T>(&self, accepting_only: bool, f: impl Fn(NodeId, &Peer) -> T) -> Vec<T> {
        let now = Instant::now();
        self.peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, p)| (p.accepting || !accepting_only) && self.live(p, now))
            .map(|(id, p)| f(*id, p))
            .collect()
    }

    /// Sends one mesh message to `to`; false when it could not be handed
    /// to the link (peer unreachable or its queue full).
    pub fn send_kind(&self, to: NodeId, kind: mesh_message::Kind) -> bool {
        self.send(to, kind)
    }

    fn send(&self, to: NodeId, kind: mesh_message::Kind) -> bool {
        let msg = MeshMessage {
            from_node_id: self.node_id,
            kind: Some(kind),
        };
        self.link.send(to, Bytes::from(msg.encode_to_vec())).is_ok()
    }

    /// Tells `owner` that a session it owns was replaced.
    pub fn session_ended(&self, owner: NodeId, session_id: u64, user_id: u64, reason: &str) {
        self.send(
            owner,
            mesh_message::Kind::SessionEnded(SessionEnded {
                session_id,
                user_id,
                reason: reason.to_string(),
            }),
        );
    }

    /// Asks `owner` to save session `session_id` and let it go, waiting up
    /// to `timeout` for its answer.
    pub async fn release(
        &self,
        owner: NodeId,
        session_id: u64,
        user_id: u64,
        to_socket: &Uuid,
        timeout: Duration,
    ) -> Release {
        let request_id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(request_id, tx);
        let sent = self.send(
            owner,
            mesh_message::Kind::ReleaseSession(ReleaseSession {
                request_id,
                session_id,
                user_id,
                to_socket: Bytes::copy_from_slice(to_socket.as_bytes()),
            }),
        );
        let outcome = if !sent {
            Release::NoAnswer
        } else {
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(true)) => Release::Saved,
                Ok(Ok(false)) => Release::NotHeld,
                _ => Release::NoAnswer,
            }
        };
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&request_id);
        outcome
    }

    /// Sends a push for `user_id` to the game server that owns its session.
    pub fn deliver(&self, owner: NodeId, user_id: u64, packet: &ServerPacket) -> bool {
        self.send(
            owner,
            mesh_message::Kind::DeliverToUser(DeliverToUser {
                user_id,
                body: packets::encode(packet),
            }),
        )
    }

    /// Links to every registered node not linked yet.
    fn learn(&self, registered: Vec<NodeInfo>) {
        let mut peers = self.peers.write().unwrap_or_else(|p| p.into_inner());
        for n in registered.into_iter().filter(|n| n.node_id != self.node_id) {
            let changed = peers
                .get(&n.node_id)
                .map(|p| p.mesh_endpoint != n.mesh_endpoint);
            if changed != Some(false) {
                if let Err(e) = self.link.connect(n.node_id, &n.mesh_endpoint) {
                    warn!(peer = n.node_id, error = %e, "cannot link to mesh peer");
                    continue;
                }
                peers.insert(
                    n.node_id,
                    Peer {
                        mesh_endpoint: n.mesh_endpoint,
                        p2p_endpoint: n.p2p_endpoint,
                        last_seen: None,
                        hears_us: false,
                        up: false,
                        accepting: true,
                    },
                );
            }
        }
    }

    /// Sends our hello to every peer and logs up/down transitions.
    fn heartbeat(&self, accepting: bool) {
        let now = Instant::now();
        let mut peers = self.peers.write().unwrap_or_else(|p| p.into_inner());
        let heard = peers
            .iter()
            .filter(|(_, p)| self.heard_recently(p, now))
            .map(|(id, _)| *id)
            .collect();
        let hello = MeshHello {
            node_id: self.node_id,
            mesh_endpoint: self.me.mesh_endpoint.clone(),
            incarnation: gamemesh_transport::incarnation(),
            p2p_endpoint: self.me.p2p_endpoint.clone(),
            accepting_logins: accepting,
            heard,
            proof: None,
        };
        // Signed per pipe: the proof names the routing id it travels on.
        let signed = |routing_id: &[u8]| {
            let mut hello = hello.clone();
            self.trust.sign(routing_id, &mut hello);
            Bytes::from(
                MeshMessage {
                    from_node_id: self.node_id,
                    kind: Some(mesh_message::Kind::Hello(hello)),
                }
                .encode_to_vec(),
            )
        };
        for (id, p) in peers.iter_mut() {
            let live = self.live(p, now);
            if p.up && !live {
                warn!(
                    "Game server {id} is DOWN (mesh): no heartbeat for {} ms",
                    self.peer_timeout.as_millis()
                );
                crate::metrics::hub().mesh_peer_down.increment(1);
            }
            p.up = live;
            let _ = self.link.send_signed(*id, &signed);
        }
    }

    /// Our pipe to `peer` lost its connection (its process died): it stops
    /// counting as live now, so its sessions may be adopted at once rather
    /// than after the peer timeout; its next hello brings it back.
    ///
    /// The pipe is dialled again at once under a fresh routing id (a new
    /// pipe replaces the old one): left to itself libzmq would reconnect
    /// under the old id, which a peer that was paused (SIGSTOP, a VM
    /// pause) and has not yet seen the old connection close parks for
    /// good, and the two would never hear each other again.
    fn connection_lost(&self, peer: NodeId) {
        let now = Instant::now();
        let mut peers = self.peers.write().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = peers.get_mut(&peer) {
            if let Err(e) = self.link.connect(peer, &p.mesh_endpoint) {
                warn!(peer, error = %e, "cannot dial mesh peer {peer} again");
            }
            if p.last_seen.is_some() {
                p.last_seen = Some(now.checked_sub(self.peer_timeout).unwrap_or(now));
            }
            if std::mem::replace(&mut p.up, false) {
                warn!("Game server {peer} is DOWN (mesh): its connection closed");
                crate::metrics::hub().mesh_peer_down.increment(1);
            }
        }
    }

    fn on_hello(&self, from: NodeId, hello: MeshHello) {
        let mut peers = self.peers.write().unwrap_or_else(|p| p.into_inner());
        let p = peers.entry(from).or_insert_with(|| {
            // A peer we have not read from the registry yet: dial it back.
            let _ = self.link.connect(from, &hello.mesh_endpoint);
            Peer {
                mesh_endpoint: hello.mesh_endpoint.clone(),
                p2p_endpoint: hello.p2p_endpoint.clone(),
                last_seen: None,
                hears_us: false,
                up: false,
                accepting: true,
            }
        });
        p.last_seen = Some(Instant::now());
        p.hears_us = hello.heard.contains(&self.node_id);
        if p.hears_us && !p.up {
            info!(
                "Mesh peer game server {from} is UP at {}",
                hello.mesh_endpoint
            );
            crate::metrics::hub().mesh_peer_up.increment(1);
            p.up = true;
        }
        p.accepting = hello.accepting_logins;
        p.p2p_endpoint = hello.p2p_endpoint;
    }

    fn on_released(&self, r: SessionReleased) {
        if let Some(tx) = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&r.request_id)
        {
            let _ = tx.send(r.saved);
        }
    }

    /// Stops the link threads.
    pub fn shutdown(&self) {
        self.link.shutdown();
    }
}

/// What the mesh's loops need of the game server around them: whether it
/// takes logins, and what to do with the messages that are about its
/// sessions rather than the mesh itself. Implemented by the game server's
/// state ([`crate::cluster::mesh_host`]), so the mesh does not depend on
/// it.
pub trait MeshHost: Send + Sync + 'static {
    /// The mesh.
    fn mesh(&self) -> &Mesh;
    /// Whether this game server takes logins.
    fn is_accepting(&self) -> bool;
    /// A message about sessions (`SessionEnded`, `DeliverToUser`).
    fn on_message(&self, from: NodeId, kind: mesh_message::Kind);
    /// Saves a session owned here as disconnected and lets it go (a
    /// resume on another game server is taking it to `to_socket`), closing
    /// the socket it had here unless that is `to_socket`; false when it is
    /// not here.
    fn release(
        &self,
        session_id: u64,
        to_socket: Option<Uuid>,
    ) -> impl std::future::Future<Output = bool> + Send;
}

/// The interval of the next tick: fast while the mesh forms (a new pipe
/// drops the first hello until its handshake completes), so a starting
/// node joins in milliseconds rather than a couple of heartbeats.
fn next_tick(mesh: &Mesh, heartbeat: Duration) -> tokio::time::Instant {
    let fast = heartbeat.min(Duration::from_millis(100));
    tokio::time::Instant::now() + if mesh.settling() { fast } else { heartbeat }
}

/// Keeps this node announced in the registry and links the mesh to every
/// node the registry lists. Its own task, so a slow Redis delays only
/// discovery, never heartbeats or releases.
pub async fn registry_loop<H: MeshHost>(
    state: Arc<H>,
    registry: Arc<dyn NodeRegistry>,
    heartbeat: Duration,
    shutdown: CancellationToken,
) {
    // Registry entries outlive a few missed renewals, never a dead node for
    // long.
    let ttl = (heartbeat * 5).max(Duration::from_secs(3));
    loop {
        if state.is_accepting() {
            if let Err(e) = registry.announce(state.mesh().me(), ttl).await {
                debug!("Registry announce failed: {e}");
            }
        }
        match registry.nodes().await {
            Ok(nodes) => state.mesh().learn(nodes),
            Err(e) => debug!("Registry read failed: {e}; keeping the peers we know"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(next_tick(state.mesh(), heartbeat)) => {}
        }
    }
}

/// Sends heartbeats to peers and handles what they send, until
/// `shutdown`. Releases (which save to the store) run beside the loop, so
/// they never hold up heartbeats.
pub async fn run<H: MeshHost>(
    state: Arc<H>,
    mut events: LinkReceiver,
    heartbeat: Duration,
    shutdown: CancellationToken,
) {
    let mut releases = tokio::task::JoinSet::new();
    let mut next = tokio::time::Instant::now();
    let mut gate = state.mesh().trust().gate();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(next) => {
                state.mesh().heartbeat(state.is_accepting());
                next = next_tick(state.mesh(), heartbeat);
            }
            Some(_) = releases.join_next(), if !releases.is_empty() => {}
            e = events.recv() => match e {
                Some(LinkEvent::Message { from, routing_id, payload }) => match MeshMessage::decode(payload) {
                    // Nothing from a peer is acted on before its pipe
                    // proved the cluster secret (the gate logs and counts).
                    Ok(MeshMessage { kind: Some(kind), .. })
                        if !gate.admit(from, &routing_id, &kind) => {}
                    Ok(MeshMessage { kind: Some(mesh_message::Kind::ReleaseSession(r)), .. }) => {
                        let state = state.clone();
                        releases.spawn(async move { answer_release(&*state, from, r).await });
                    }
                    Ok(MeshMessage { kind: Some(kind), .. }) => handle(&*state, from, kind),
                    Ok(_) => {}
                    Err(e) => warn!(peer = from, error = %e, "undecodable mesh message dropped"),
                },
                Some(LinkEvent::PeerDisconnected { peer }) => state.mesh().connection_lost(peer),
                None => break,
            },
        }
    }
    // Let releases in flight finish: their requesters are waiting.
    while releases.join_next().await.is_some() {}
}

/// Saves and lets go of a session a peer is resuming, and answers it.
async fn answer_release<H: MeshHost>(state: &H, from: NodeId, r: ReleaseSession) {
    let to_socket = Uuid::from_slice(&r.to_socket).ok();
    let saved = state.release(r.session_id, to_socket).await;
    state.mesh().send(
        from,
        mesh_message::Kind::SessionReleased(SessionReleased {
            request_id: r.request_id,
            session_id: r.session_id,
            saved,
        }),
    );
}

fn handle<H: MeshHost>(state: &H, from: NodeId, kind: mesh_message::Kind) {
    let mesh = state.mesh();
    match kind {
        mesh_message::Kind::Hello(h) => mesh.on_hello(from, h),
        // Handled beside the loop by `answer_release`.
        mesh_message::Kind::ReleaseSession(_) => {}
        mesh_message::Kind::SessionReleased(r) => mesh.on_released(r),
        mesh_message::Kind::GameRoomRequest(_)
        | mesh_message::Kind::GameRoomReply(_)
        | mesh_message::Kind::GamePushDelivery(_)
        | mesh_message::Kind::GamePushEveryone(_) => match mesh.game.get() {
            Some(hook) => hook(from, kind),
            None => debug!(peer = from, "game message before the game started dropped"),
        },
        other => state.on_message(from, other),
    }
}
