//! The gateway's side of the ZeroMQ link to game servers: membership,
//! liveness, routing of new sockets, and the dispatcher that carries out
//! what game servers tell us (`SendToClient`, `SendToClients`,
//! `PinSession`, `DisconnectClient`).
//!
//! Membership: the gateway starts with a seed list (`--game-servers`). It
//! sends a `GatewayHello` to each seed and every known game server every
//! heartbeat interval; each game server answers with a `ServerHello` that
//! names it and lists the other live game servers, which the gateway then
//! links to as well. A game server whose hello has not been heard for the
//! peer timeout is down: no new socket is routed to it, and the sockets
//! routed to it move to a live one on their next frame.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gamemesh_node::peer_gate::{LinkTrust, PeerGate};
use gamemesh_proto::client::KickReason;
use gamemesh_proto::cluster_auth::ClusterSecret;
use gamemesh_proto::internal::{
    gateway_to_server, server_to_gateway, ClientConnected, ClientDisconnected, ClientFrame,
    GatewayHello, GatewayToServer, SendToClients, ServerHello, ServerToGateway,
};
use gamemesh_proto::Message;
use gamemesh_transport::{
    Link, LinkError, LinkEvent, LinkReceiver, NodeId, SendManyError, ZmqLink,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::clients::{kick_body, Outbound};
use crate::pin_table::Route;
use crate::Shared;

/// Seeds are linked under synthetic ids from the top of the id space until
/// their hello tells us their real node id.
const SEED_ID_BASE: NodeId = u64::MAX - 1024;

/// What the gateway knows of one game server.
#[derive(Debug)]
struct Peer {
    /// Its P2P endpoint.
    endpoint: String,
    /// When we last heard its hello.
    last_seen: Instant,
    /// False while it drains: no new sockets go to it.
    accepting: bool,
    /// Whether we currently count it as live (for up/down log lines).
    up: bool,
}

/// Links to game servers and tracks which are alive.
pub(crate) struct Upstream {
    /// The ZeroMQ link (ROUTER in, a DEALER per game server out).
    link: ZmqLink,
    /// Our hello, encoded once; only `open_connections` would change and
    /// it is informational, so it is refreshed on each tick.
    node_id: NodeId,
    /// Where game servers reach us, as announced in our hello.
    advertised_endpoint: String,
    /// Start time of this process, so game servers can tell a restart.
    incarnation: u64,
    /// Game servers by node id.
    peers: RwLock<HashMap<NodeId, Peer>>,
    /// Seed endpoints under synthetic ids, until their answer names them.
    seeds: Mutex<Vec<(NodeId, String)>>,
    /// Round-robin cursor for new sockets.
    next: AtomicUsize,
    /// Silence after which a game server is down.
    peer_timeout: Duration,
    /// Number of live game servers, for readiness checks.
    live_count: watch::Sender<usize>,
    /// Signs our hellos and gates what game servers send
    /// (`--cluster-secret`).
    trust: LinkTrust,
}

impl Upstream {
    /// Wraps a bound link.
    pub(crate) fn new(
        link: ZmqLink,
        node_id: NodeId,
        advertised_endpoint: String,
        seeds: &[String],
        peer_timeout: Duration,
        secret: Option<ClusterSecret>,
    ) -> Result<Self, LinkError> {
        let seeds: Vec<(NodeId, String)> = seeds
            .iter()
            .enumerate()
            .map(|(i, s)| (SEED_ID_BASE + i as u64, format!("tcp://{s}")))
            .collect();
        for (id, ep) in &seeds {
            link.connect(*id, ep)?;
        }
        Ok(Self {
            link,
            node_id,
            advertised_endpoint,
            incarnation: gamemesh_transport::incarnation(),
            peers: RwLock::new(HashMap::new()),
            seeds: Mutex::new(seeds),
            next: AtomicUsize::new(0),
            peer_timeout,
            live_count: watch::channel(0).0,
            trust: LinkTrust::new(secret, "gateway-p2p"),
        })
    }

    /// The gate for what game servers send us: it admits only pipes that
    /// proved the cluster secret in a `ServerHello` (everything without a
    /// secret).
    pub(crate) fn gate(&self) -> PeerGate {
        self.trust.gate()
    }

    /// Messages from game servers the gate dropped.
    pub(crate) fn unauthenticated(&self) -> u64 {
        self.trust.refused()
    }

    /// Sends to game servers refused at the high-water mark.
    pub(crate) fn hwm_events(&self) -> u64 {
        self.link.hwm_events()
    }

    /// A receiver of the number of live game servers.
    pub(crate) fn live_count(&self) -> watch::Receiver<usize> {
        self.live_count.subscribe()
    }

    fn is_live_peer(&self, p: &Peer, now: Instant) -> bool {
        now.duration_since(p.last_seen) < self.peer_timeout
    }

    /// True when `gs` can take a frame of a socket: it is live and, for a
    /// socket with no session yet (whose next frame may be a login), it
    /// still takes logins.
    pub(crate) fn can_serve(&self, gs: NodeId, pinned: bool) -> bool {
        let now = Instant::now();
        self.peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&gs)
            .is_some_and(|p| self.is_live_peer(p, now) && (pinned || p.accepting))
    }

    /// Picks a live game server for a socket (round robin over the live,
    /// accepting ones, ordered by node id so the spread is even).
    pub(crate) fn pick(&self) -> Option<NodeId> {
        let now = Instant::now();
        let peers = self.peers.read().unwrap_or_else(|p| p.into_inner());
        let mut live: Vec<NodeId> = peers
            .iter()
            .filter(|(_, p)| p.accepting && self.is_live_peer(p, now))
            .map(|(id, _)| *id)
            .collect();
        if live.is_empty() {
            return None;
        }
        live.sort_unstable();
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        Some(live[i % live.len()])
    }

    /// Relays one client frame.
    pub(crate) fn send_frame(
        &self,
        gs: NodeId,
        socket: &Uuid,
        route: Route,
        body: Bytes,
    ) -> Result<(), LinkError> {
        let socket_id = Bytes::copy_from_slice(socket.as_bytes());
        self.link.send(gs, client_frame(socket_id, route, body))
    }

    /// Relays several frames of one socket (what one read brought) with
    /// one link send. On a refusal, says how many went (a prefix) and why
    /// the next did not; the rest were not sent.
    pub(crate) fn send_frames(
        &self,
        gs: NodeId,
        socket: &Uuid,
        route: Route,
        bodies: &[Bytes],
    ) -> Result<(), SendManyError> {
        let socket_id = Bytes::copy_from_slice(socket.as_bytes());
        let payloads: Vec<Bytes> = bodies
            .iter()
            .map(|body| client_frame(socket_id.clone(), route, body.clone()))
            .collect();
        self.link.send_many(gs, &payloads)
    }

    /// Tells `gs` a socket opened.
    pub(crate) fn client_connected(&self, gs: NodeId, socket: &Uuid, peer: &str) {
        let _ = self.send(
            gs,
            gateway_to_server::Kind::ClientConnected(ClientConnected {
                socket_id: Bytes::copy_from_slice(socket.as_bytes()),
                peer_addr: peer.to_string(),
            }),
        );
    }

    /// Tells `gs` a socket closed.
    pub(crate) fn client_disconnected(
        &self,
        gs: NodeId,
        socket: &Uuid,
        session_id: u64,
        reason: &str,
    ) {
        let _ = self.send(
            gs,
            gateway_to_server::Kind::ClientDisconnected(ClientDisconnected {
                socket_id: Bytes::copy_from_slice(socket.as_bytes()),
                session_id,
                reason: reason.to_string(),
            }),
        );
    }

    fn send(&self, gs: NodeId, kind: gateway_to_server::Kind) -> Result<(), LinkError> {
        let msg = GatewayToServer { kind: Some(kind) };
        self.link.send(gs, Bytes::from(msg.encode_to_vec()))
    }

    /// Sends our hello to every known game server and to every seed not
    /// yet identified, and logs up/down transitions. Each hello
    /// names the pipe it travels on (`probe`), so its answer proves that
    /// pipe is connected. Returns the game servers it declared DOWN.
    fn tick(&self, open_connections: usize) -> Vec<NodeId> {
        // Each hello is signed for the routing id of the pipe it goes out
        // on, so its proof is good on that pipe only.
        let hello = |probe: NodeId| {
            move |routing_id: &[u8]| {
                let mut hello = GatewayHello {
                    gateway_node_id: self.node_id,
                    p2p_endpoint: self.advertised_endpoint.clone(),
                    incarnation: self.incarnation,
                    open_connections: open_connections as u32,
                    probe,
                    proof: None,
                };
                self.trust.sign(routing_id, &mut hello);
                let msg = GatewayToServer {
                    kind: Some(gateway_to_server::Kind::Hello(hello)),
                };
                Bytes::from(msg.encode_to_vec())
            }
        };
        let now = Instant::now();
        let mut live = 0;
        let mut went_down = Vec::new();
        {
            let mut peers = self.peers.write().unwrap_or_else(|p| p.into_inner());
            for (id, p) in peers.iter_mut() {
                let is_live = self.is_live_peer(p, now);
                if p.up && !is_live {
                    warn!(
                        "Game server {id} is DOWN: no heartbeat for {} ms; its clients move to live game servers",
                        self.peer_timeout.as_millis()
                    );
                    went_down.push(*id);
                }
                p.up = is_live;
                live += usize::from(is_live);
                let _ = self.link.send_signed(*id, &hello(*id));
            }
        }
        // Seeds not yet identified are probed on every tick, so a game
        // server started after the gateway is linked as soon as it answers.
        {
            for (id, _) in self.seeds.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                let _ = self.link.send_signed(*id, &hello(*id));
            }
        }
        self.live_count
            .send_if_modified(|n| std::mem::replace(n, live) != live);
        went_down
    }

    /// `gs`'s pipe lost its connection (its process died, or the link
    /// broke): it is down now rather than after the peer timeout, exactly
    /// as the heartbeat would declare it; its next answered hello brings it
    /// back. Returns whether it was up (so its sockets must be told).
    ///
    /// The pipe is dialled again at once under a fresh routing id
    /// (a new pipe: [`Link::connect`] replaces the old one): left to itself libzmq would
    /// reconnect under the old one, which a game server that was paused
    /// (and has not yet seen the old connection close) parks for good.
    pub(crate) fn connection_lost(&self, gs: NodeId) -> bool {
        let now = Instant::now();
        let mut peers = self.peers.write().unwrap_or_else(|p| p.into_inner());
        let Some(p) = peers.get_mut(&gs) else {
            return false;
        };
        if let Err(e) = self.link.connect(gs, &p.endpoint) {
            warn!(game_server = gs, error = %e, "cannot dial game server {gs} again");
        }
        p.last_seen = now
            .checked_sub(self.peer_timeout)
            .map_or(p.last_seen, |stale| stale.min(p.last_seen));
        let was_up = std::mem::replace(&mut p.up, false);
        if was_up {
            warn!("Game server {gs} is DOWN: its connection closed; its clients move to live game servers");
        }
        let live = peers.values().filter(|p| self.is_live_peer(p, now)).count();
        self.live_count
            .send_if_modified(|n| std::mem::replace(n, live) != live);
        was_up
    }

    /// Records a game server's hello and links to the peers it names.
    ///
    /// A game server counts as live only on an answer that came back over a
    /// pipe of ours (`probe`) which is therefore connected: its own pipe, or
    /// a seed's, which is then re-filed under the node id it turned out to
    /// be. (When that node already has a pipe of its own, the seed pipe is
    /// closed: one pipe per game server keeps its messages in one order.)
    fn on_hello(&self, from: NodeId, hello: ServerHello) {
        let now = Instant::now();
        let stale = now.checked_sub(self.peer_timeout).unwrap_or(now);
        let mut peers = self.peers.write().unwrap_or_else(|p| p.into_inner());
        let endpoint = hello.p2p_endpoint.clone();
        let mut proven = hello.probe == from;
        {
            let mut seeds = self.seeds.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(pos) = seeds.iter().position(|(id, _)| *id == hello.probe) {
                let (seed_id, _) = seeds.remove(pos);
                match peers.entry(from) {
                    std::collections::hash_map::Entry::Occupied(_) => {
                        let _ = self.link.disconnect(seed_id);
                    }
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        if self.link.rename(seed_id, from).is_ok() {
                            proven = true;
                            slot.insert(Peer {
                                endpoint: endpoint.clone(),
                                last_seen: stale,
                                accepting: true,
                                up: false,
                            });
                        }
                    }
                }
            }
        }
        let known = peers.get(&from).map(|p| p.endpoint == endpoint);
        if known != Some(true) {
            // Unknown, or moved to another endpoint: dial it; it becomes
            // live when it answers a hello sent on that pipe.
            proven = false;
            if let Err(e) = self.link.connect(from, &endpoint) {
                warn!(game_server = from, error = %e, "cannot link to game server");
                return;
            }
            peers.insert(
                from,
                Peer {
                    endpoint,
                    last_seen: stale,
                    accepting: true,
                    up: false,
                },
            );
        }
        for n in hello
            .peers
            .iter()
            .filter(|n| n.node_id != 0 && !n.p2p_endpoint.is_empty())
        {
            if !peers.contains_key(&n.node_id)
                && self.link.connect(n.node_id, &n.p2p_endpoint).is_ok()
            {
                peers.insert(
                    n.node_id,
                    Peer {
                        endpoint: n.p2p_endpoint.clone(),
                        last_seen: stale,
                        accepting: true,
                        up: false,
                    },
                );
            }
        }
        if let Some(p) = peers.get_mut(&from) {
            if proven {
                if !p.up {
                    info!("Linked to game server {from} at {}", p.endpoint);
                    p.up = true;
                }
                p.last_seen = now;
            }
            p.accepting = hello.accepting_logins;
        }
        let live = peers.values().filter(|p| self.is_live_peer(p, now)).count();
        drop(peers);
        self.live_count
            .send_if_modified(|n| std::mem::replace(n, live) != live);
    }

    /// Stops the link threads.
    pub(crate) fn shutdown(&self) {
        self.link.shutdown();
    }
}

/// Sends hellos every `interval`, faster while no game server is live so
/// a starting gateway links within milliseconds rather than a second.
pub(crate) async fn heartbeat_loop(
    shared: Arc<Shared>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        for gs in shared.upstream.tick(shared.pins.len()) {
            // Its sockets answer their requests in flight to it at once.
            shared.clients.game_server_down(gs);
        }
        sample_gauges(&shared);
        let wait = if *shared.upstream.live_count.borrow() == 0 {
            interval.min(Duration::from_millis(100))
        } else {
            interval
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Sets the gauges that are cheaper to sample once a heartbeat than to
/// keep exact on every frame.
fn sample_gauges(shared: &Shared) {
    let metrics = shared.counters.metrics();
    metrics
        .open
        .set(shared.open.load(std::sync::atomic::Ordering::Relaxed) as f64);
    metrics
        .game_servers_live
        .set(*shared.upstream.live_count.borrow() as f64);
    metrics
        .outbound_queued_bytes
        .set(shared.clients.queued_bytes() as f64);
}

/// Events the dispatcher's buffer holds without growing.
const RECV_BATCH: usize = 256;

/// Carries out what game servers send, until the link closes or shutdown.
/// Takes a whole wake-up's worth at once (`recv_many`): a burst of replies
/// costs one wake-up of this task, not one each.
pub(crate) async fn dispatch_loop(
    shared: Arc<Shared>,
    mut events: LinkReceiver,
    shutdown: CancellationToken,
) {
    let mut gate = shared.upstream.gate();
    let mut batch = Vec::with_capacity(RECV_BATCH);
    loop {
        let n = tokio::select! {
            _ = shutdown.cancelled() => return,
            n = events.recv_many(&mut batch) => n,
        };
        if n == 0 {
            return;
        }
        for event in batch.drain(..) {
            dispatch(&shared, &mut gate, event);
        }
    }
}

/// Decodes one message from a game server and carries it out; a lost
/// connection takes the game server down at once, by the heartbeat's own
/// path.
fn dispatch(shared: &Shared, gate: &mut PeerGate, event: LinkEvent) {
    let lost = |peer| {
        if shared.upstream.connection_lost(peer) {
            shared.clients.game_server_down(peer);
        }
    };
    let Some((from, routing_id, payload)) = event.message_or(lost) else {
        return;
    };
    match ServerToGateway::decode(payload) {
        Ok(ServerToGateway { kind: Some(kind) }) => {
            // Nothing from a game server is acted on before its pipe proved
            // the cluster secret (the gate logs and counts what it drops).
            if gate.admit(from, &routing_id, &kind) {
                handle(shared, from, kind);
            }
        }
        Ok(_) => debug!(game_server = from, "empty message from game server"),
        Err(e) => {
            warn!(game_server = from, error = %e, "undecodable message from game server dropped")
        }
    }
}

/// Bytes of one socket id (a UUID) in `SendToClients.socket_ids`.
const SOCKET_ID_LEN: usize = 16;

fn socket_of(bytes: &[u8]) -> Option<Uuid> {
    Uuid::from_slice(bytes).ok()
}

fn handle(shared: &Shared, from: NodeId, kind: server_to_gateway::Kind) {
    match kind {
        server_to_gateway::Kind::Hello(h) => shared.upstream.on_hello(from, h),
        server_to_gateway::Kind::Send(s) => {
            let Some(socket) = socket_of(&s.socket_id) else {
                return;
            };
            if may_write(shared, &socket, from) {
                shared.clients.deliver(&socket, Outbound::Reply(s.body));
            }
        }
        server_to_gateway::Kind::Multicast(m) => multicast(shared, from, m),
        server_to_gateway::Kind::Pin(p) => {
            let Some(socket) = socket_of(&p.socket_id) else {
                return;
            };
            let gs = if p.game_server_node_id != 0 {
                p.game_server_node_id
            } else {
                from
            };
            // Only the game server the socket's frames go to may pin it: a
            // stale pin from one it moved away from would take it back.
            if !routed_to(shared, &socket, from) {
                debug!(game_server = from, %socket, "pin from a game server the socket is not routed to ignored");
                return;
            }
            let Some(left) = shared.pins.pin(&socket, p.session_id, p.user_id, gs) else {
                return;
            };
            if p.session_id != 0 {
                shared.clients.mark_logged_in(&socket);
            }
            info!(
                "Session pinned: SocketId={socket}, SessionId={}, GameServer={gs}",
                p.session_id
            );
            if let Some(old) = left {
                close_left_behind(shared, &old, p.session_id);
            }
        }
        server_to_gateway::Kind::Disconnect(d) => {
            let Some(socket) = socket_of(&d.socket_id) else {
                return;
            };
            if !may_close(shared, &socket, from, d.session_id) {
                debug!(game_server = from, %socket, session_id = d.session_id, "disconnect for a socket not routed to its sender ignored");
                return;
            }
            let last = (!d.last_frame.is_empty()).then_some(d.last_frame);
            shared.clients.deliver(
                &socket,
                Outbound::Close {
                    last_frame: last,
                    reason: d.reason,
                },
            );
        }
    }
}

/// Closes `socket`, which session `session_id` has left for another
/// socket on this gateway (a resume), whoever else may also close it.
fn close_left_behind(shared: &Shared, socket: &Uuid, session_id: u64) {
    info!("Closing SocketId={socket}: SessionId={session_id} was resumed on another socket");
    shared.clients.deliver(
        socket,
        Outbound::Close {
            last_frame: Some(kick_body(
                KickReason::DuplicateLogin,
                "session resumed on another connection",
            )),
            reason: "session resumed on another connection".into(),
        },
    );
}

/// Whether game server `from` may write a frame to `socket`. A pinned
/// session's frames come from the game server it is routed to; one that
/// woke up after its sockets moved away must not write into a session
/// another game server now owns.
fn may_write(shared: &Shared, socket: &Uuid, from: NodeId) -> bool {
    match shared.pins.get(socket) {
        Some(r) if r.session_id != 0 && r.game_server != from => {
            debug!(game_server = from, %socket, "frame from a game server the socket is not routed to dropped");
            false
        }
        _ => true,
    }
}

/// Writes one body to every socket a `SendToClients` names, in order, each
/// as if it had come in its own `SendToClient`: the same pin check, the
/// same queue bounds (a socket that does not read is kicked, the others
/// still get it), and a socket that closed meanwhile is skipped.
fn multicast(shared: &Shared, from: NodeId, m: SendToClients) {
    let ids = m.socket_ids.chunks_exact(SOCKET_ID_LEN);
    if !ids.remainder().is_empty() {
        warn!(
            game_server = from,
            len = m.socket_ids.len(),
            "multicast with a malformed socket list dropped"
        );
        return;
    }
    let sockets: Vec<Uuid> = ids
        .filter_map(socket_of)
        .filter(|socket| may_write(shared, socket, from))
        .collect();
    shared.clients.deliver_each(&sockets, &m.body);
}

/// True when `socket` is open and its frames go to `gs`.
fn routed_to(shared: &Shared, socket: &Uuid, gs: NodeId) -> bool {
    shared.pins.get(socket).is_some_and(|r| r.game_server == gs)
}

/// Whether game server `from` may close `socket` with a kick guarded by
/// `session_id`.
///
/// A kick aimed at a session (`session_id` non-zero) comes from whichever
/// game server took the session over (a duplicate login, a resume
/// elsewhere), so it acts on the socket still pinned to that session (or
/// not pinned yet), whoever the socket is routed to. A kick without a
/// session guard acts only on a socket routed to the game server that sent
/// it: a game server that woke from a pause after its sockets moved away
/// (and kicks the sockets it still remembers) must not close a socket that
/// another game server now serves.
fn may_close(shared: &Shared, socket: &Uuid, from: NodeId, session_id: u64) -> bool {
    match shared.pins.get(socket) {
        None => true,
        Some(r) if session_id != 0 => r.session_id == session_id || r.session_id == 0,
        Some(r) => r.game_server == from,
    }
}

/// One client frame as the link carries it to a game server.
fn client_frame(socket_id: Bytes, route: Route, body: Bytes) -> Bytes {
    let kind = gateway_to_server::Kind::ClientFrame(ClientFrame {
        socket_id,
        session_id: route.session_id,
        user_id: route.user_id,
        body,
    });
    Bytes::from(GatewayToServer { kind: Some(kind) }.encode_to_vec())
}
