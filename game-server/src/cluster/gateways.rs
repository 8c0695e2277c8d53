//! The game server's side of the links to gateways: who they are, whether
//! they are alive, and the three things we tell them (send a frame to a
//! socket, pin a socket to a session, disconnect a socket).
//!
//! A game server is told about no gateway by flag: each gateway's hello
//! carries its endpoint, and we link back to it.
//!
//! A gateway that does not read (its pipe is at the high-water mark,
//! `--link-sndhwm`): what we send it is refused at once by the link, and
//! counted (`gamemesh_link_hwm_events_total`). A refused frame or pin for a
//! client socket means that client misses an answer, and the contract
//! (every request gets its reply unless the connection is closed first)
//! is kept by closing it: the socket is owed a `Kicked{SLOW_CONSUMER}`,
//! retried every heartbeat ([`GatewayLinks::retry_owed_kicks`]) until the
//! gateway's pipe takes it (`gamemesh_link_owed_kicks_total` counts them).
//! The client then resumes, and a re-sent sequence id gets its cached
//! reply. Hellos are not owed: the next heartbeat sends a fresh one.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gamemesh_node::log_throttle::KeyedLogThrottle;
use gamemesh_node::peer_gate::LinkTrust;
use gamemesh_proto::client::{KickReason, ServerPacket};
use gamemesh_proto::cluster_auth::ClusterSecret;
use gamemesh_proto::internal::{
    server_to_gateway, DisconnectClient, GatewayHello, NodeInfo, PinSession, SendToClient,
    SendToClients, ServerHello, ServerToGateway,
};
use gamemesh_proto::{packets, Message};
use gamemesh_transport::{Link, LinkError, NodeId, ZmqLink};
use tracing::{info, warn};
use uuid::Uuid;

/// What we know of one gateway.
#[derive(Debug)]
struct Gateway {
    /// Its P2P endpoint.
    endpoint: String,
    /// Its process start time; a change means it restarted.
    incarnation: u64,
    /// Last hello.
    last_seen: Instant,
}

/// What a gateway's hello changed.
#[derive(Debug, PartialEq, Eq)]
pub enum HelloOutcome {
    /// Known and unchanged.
    Known,
    /// First time we hear of it.
    New,
    /// It restarted: every socket it had is gone.
    Restarted,
}

/// Links to every gateway that said hello.
pub struct GatewayLinks {
    /// The ZeroMQ link (ROUTER in, DEALER per gateway out).
    link: ZmqLink,
    /// Our node id.
    node_id: NodeId,
    /// Our P2P endpoint as gateways should dial it.
    advertised_endpoint: String,
    /// Our process start time.
    incarnation: u64,
    /// Gateways by node id.
    gateways: RwLock<HashMap<NodeId, Gateway>>,
    /// Signs our hellos and gates what gateways send (`--cluster-secret`).
    trust: LinkTrust,
    /// Sockets whose frame or pin a full gateway pipe refused, by gateway:
    /// each is owed a `Kicked{SLOW_CONSUMER}`, guarded by the session id
    /// the refused message named (0 when it named none: the gateway then
    /// acts only if the socket is still routed to us). Bounded by
    /// [`MAX_OWED_KICKS`] per gateway.
    owed_kicks: Mutex<HashMap<NodeId, HashMap<Uuid, u64>>>,
    /// One line per gateway per second about sends it refused.
    failure_log: KeyedLogThrottle<NodeId>,
}

/// Most sockets owed a kick per gateway. A gateway has at most
/// `--max-connections` sockets (10,000 by default); beyond this many the
/// gateway is so far behind that its peer timeout will drop it anyway.
const MAX_OWED_KICKS: usize = 65_536;

/// Bytes of one socket id (a UUID) in `SendToClients.socket_ids`.
const SOCKET_ID_LEN: usize = 16;

/// Most gateways whose refused sends are throttled apart in the log (a
/// cluster has a handful; past this many, lines about others are held
/// back).
const MAX_LOGGED_GATEWAYS: usize = 1024;

impl GatewayLinks {
    /// Wraps a bound link.
    pub fn new(
        link: ZmqLink,
        node_id: NodeId,
        advertised_endpoint: String,
        secret: Option<ClusterSecret>,
    ) -> Self {
        Self {
            link,
            node_id,
            advertised_endpoint,
            incarnation: gamemesh_transport::incarnation(),
            gateways: RwLock::new(HashMap::new()),
            trust: LinkTrust::new(secret, "p2p"),
            owed_kicks: Mutex::new(HashMap::new()),
            failure_log: KeyedLogThrottle::new(Duration::from_secs(1), MAX_LOGGED_GATEWAYS),
        }
    }

    /// The P2P port's side of the cluster secret: its gate (admitting only
    /// pipes that proved the secret in a `GatewayHello`) and the count of
    /// what that gate dropped (`gamemesh_link_unauthenticated_total{link="p2p"}`).
    pub fn trust(&self) -> &LinkTrust {
        &self.trust
    }

    /// How many sends to gateways were refused at the high-water mark.
    pub fn hwm_events(&self) -> u64 {
        self.link.hwm_events()
    }

    /// How many sockets are waiting for a `Kicked{SLOW_CONSUMER}` that a
    /// full gateway pipe has not taken yet.
    pub fn owed_kicks(&self) -> usize {
        self.owed_kicks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(HashMap::len)
            .sum()
    }

    /// Our P2P endpoint as advertised.
    pub fn advertised_endpoint(&self) -> &str {
        &self.advertised_endpoint
    }

    /// Our pipe to `gateway` lost its connection: dial it again at once
    /// under a fresh routing id (a new pipe replaces the old one). Left to
    /// itself libzmq would reconnect under the old id, which a gateway that
    /// was paused (and has not yet seen the old connection close) parks for
    /// good: our replies would never reach it again. Whether the gateway
    /// is alive is still its hellos' business.
    pub fn connection_lost(&self, gateway: NodeId) {
        let gws = self.gateways.read().unwrap_or_else(|p| p.into_inner());
        if let Some(g) = gws.get(&gateway) {
            if let Err(e) = self.link.connect(gateway, &g.endpoint) {
                warn!(gateway, error = %e, "cannot dial gateway {gateway} again");
            }
        }
    }

    /// Records a gateway's hello, links back to it if needed, and answers.
    pub fn on_hello(
        &self,
        from: NodeId,
        hello: &GatewayHello,
        accepting: bool,
        peers: Vec<NodeInfo>,
    ) -> HelloOutcome {
        let outcome = {
            let mut gws = self.gateways.write().unwrap_or_else(|p| p.into_inner());
            let outcome = match gws.get(&from) {
                None => HelloOutcome::New,
                Some(g) if g.incarnation != hello.incarnation => HelloOutcome::Restarted,
                Some(g) if g.endpoint != hello.p2p_endpoint => HelloOutcome::Restarted,
                Some(_) => HelloOutcome::Known,
            };
            if outcome != HelloOutcome::Known {
                if let Err(e) = self.link.connect(from, &hello.p2p_endpoint) {
                    warn!(gateway = from, error = %e, "cannot link back to gateway");
                }
                info!(
                    "Gateway {from} linked at {} ({outcome:?})",
                    hello.p2p_endpoint
                );
            }
            gws.insert(
                from,
                Gateway {
                    endpoint: hello.p2p_endpoint.clone(),
                    incarnation: hello.incarnation,
                    last_seen: Instant::now(),
                },
            );
            outcome
        };
        self.send_hello(from, accepting, peers, hello.probe);
        outcome
    }

    /// Sends a `ServerHello`, signed for the pipe it goes out on.
    fn send_hello(&self, gateway: NodeId, accepting: bool, peers: Vec<NodeInfo>, probe: u64) {
        let hello = ServerHello {
            game_server_node_id: self.node_id,
            p2p_endpoint: self.advertised_endpoint.clone(),
            incarnation: self.incarnation,
            accepting_logins: accepting,
            peers,
            probe,
            proof: None,
        };
        let signed = |routing_id: &[u8]| {
            let mut hello = hello.clone();
            self.trust.sign(routing_id, &mut hello);
            let msg = ServerToGateway {
                kind: Some(server_to_gateway::Kind::Hello(hello)),
            };
            Bytes::from(msg.encode_to_vec())
        };
        if let Err(e) = self.link.send_signed(gateway, &signed) {
            self.log_failure(gateway, &e);
        }
    }

    /// Tells every gateway at once that we stopped taking logins, instead
    /// of waiting for their next hello. (Probe 0 proves no pipe: the
    /// gateway only takes the flag from it.)
    pub fn announce_draining(&self) {
        for gw in self.ids() {
            self.send_hello(gw, false, Vec::new(), 0);
        }
    }

    /// Sends every owed `Kicked{SLOW_CONSUMER}` that the gateways' pipes
    /// take now; the rest stay owed. Called every heartbeat.
    pub fn retry_owed_kicks(&self) {
        let owed = std::mem::take(&mut *self.owed_kicks.lock().unwrap_or_else(|p| p.into_inner()));
        for (gateway, sockets) in owed {
            for (socket, session_id) in sockets {
                // A refused kick is filed again by `send` (not counted
                // again: the metric counts clients, not attempts).
                self.kick(
                    gateway,
                    &socket,
                    session_id,
                    KickReason::SlowConsumer,
                    "a reply could not be delivered (gateway link full); resume your session",
                );
            }
        }
    }

    fn owe_kick(&self, gateway: NodeId, socket: Uuid, session_id: u64, first: bool) {
        let mut owed = self.owed_kicks.lock().unwrap_or_else(|p| p.into_inner());
        let kicks = owed.entry(gateway).or_default();
        if kicks.len() >= MAX_OWED_KICKS {
            return;
        }
        let guard = kicks.entry(socket).or_insert(session_id);
        // A later refusal that names the session guards an earlier one
        // that did not.
        if *guard == 0 {
            *guard = session_id;
        }
        if first {
            metrics::counter!("gamemesh_link_owed_kicks_total").increment(1);
        }
    }

    /// Counts every gateway as heard from now: called on a heartbeat that
    /// came much later than scheduled, when this process was paused and
    /// the gateways' silence was our own.
    pub fn forgive_silence(&self) {
        let now = Instant::now();
        let mut gws = self.gateways.write().unwrap_or_else(|p| p.into_inner());
        for g in gws.values_mut() {
            g.last_seen = now;
        }
    }

    /// One line per gateway per second for refused sends (they come in
    /// floods when a gateway stalls); every refusal is counted by the link.
    fn log_failure(&self, gateway: NodeId, e: &LinkError) {
        if self.failure_log.allow(&gateway).is_some() {
            match e {
                LinkError::Full(_) => warn!(
                    "Gateway {gateway} is not keeping up: its pipe is at the high-water mark (--link-sndhwm); the affected clients are kicked with SLOW_CONSUMER once it drains"
                ),
                _ => warn!(gateway, error = %e, "message to gateway not sent"),
            }
        }
    }

    /// Gateways silent for longer than `timeout`, removed from the table.
    pub fn take_silent(&self, timeout: Duration) -> Vec<NodeId> {
        let now = Instant::now();
        let mut gws = self.gateways.write().unwrap_or_else(|p| p.into_inner());
        let dead: Vec<NodeId> = gws
            .iter()
            .filter(|(_, g)| now.duration_since(g.last_seen) > timeout)
            .map(|(id, _)| *id)
            .collect();
        let mut owed = self.owed_kicks.lock().unwrap_or_else(|p| p.into_inner());
        for id in &dead {
            gws.remove(id);
            owed.remove(id);
            let _ = self.link.disconnect(*id);
        }
        dead
    }

    /// Every live gateway's id.
    pub fn ids(&self) -> Vec<NodeId> {
        self.gateways
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect()
    }

    /// Sends one message; false when the link refused it.
    fn send(&self, gateway: NodeId, kind: server_to_gateway::Kind) -> bool {
        let msg = ServerToGateway { kind: Some(kind) };
        match self.link.send(gateway, Bytes::from(msg.encode_to_vec())) {
            Ok(()) => true,
            Err(e) => {
                if let (LinkError::Full(_), Some(kind)) = (&e, &msg.kind) {
                    self.owe_kicks_for(gateway, kind);
                }
                self.log_failure(gateway, &e);
                false
            }
        }
    }

    /// Files the kicks owed for a message a full pipe refused: every
    /// socket it was for misses it (a refused kick was owed before, unless
    /// it was a kick of its own, so it is not counted again).
    fn owe_kicks_for(&self, gateway: NodeId, kind: &server_to_gateway::Kind) {
        let owe = |socket_id: &[u8], session_id: u64, first: bool| {
            if let Ok(socket) = Uuid::from_slice(socket_id) {
                self.owe_kick(gateway, socket, session_id, first);
            }
        };
        match kind {
            server_to_gateway::Kind::Send(m) => owe(&m.socket_id, 0, true),
            server_to_gateway::Kind::Multicast(m) => {
                for socket_id in m.socket_ids.chunks_exact(SOCKET_ID_LEN) {
                    owe(socket_id, 0, true);
                }
            }
            server_to_gateway::Kind::Pin(m) => owe(&m.socket_id, m.session_id, true),
            server_to_gateway::Kind::Disconnect(m) => owe(
                &m.socket_id,
                m.session_id,
                !m.reason.starts_with(KickReason::SlowConsumer.as_str_name()),
            ),
            server_to_gateway::Kind::Hello(_) => {}
        }
    }

    /// Sends a server packet to a client socket.
    pub fn send_to_client(&self, gateway: NodeId, socket: &Uuid, packet: &ServerPacket) {
        self.send_encoded(gateway, socket, packets::encode(packet));
    }

    /// Sends an encoded server packet to a client socket: a push encoded
    /// once for all its recipients.
    pub fn send_encoded(&self, gateway: NodeId, socket: &Uuid, body: Bytes) {
        let metrics = crate::metrics::hub();
        metrics.packets_out.increment(1);
        metrics.bytes_out.increment(body.len() as u64);
        self.send(
            gateway,
            server_to_gateway::Kind::Send(SendToClient {
                socket_id: Bytes::copy_from_slice(socket.as_bytes()),
                body,
            }),
        );
    }

    /// Sends several encoded replies to one client socket with one link
    /// send (the replies of a burst of that socket's frames). If the pipe
    /// refuses some, the socket is owed a kick, as for a refused
    /// `SendToClient`.
    pub fn send_replies(&self, gateway: NodeId, socket: &Uuid, bodies: &[Bytes]) {
        let metrics = crate::metrics::hub();
        metrics.packets_out.increment(bodies.len() as u64);
        let socket_id = Bytes::copy_from_slice(socket.as_bytes());
        let payloads: Vec<Bytes> = bodies
            .iter()
            .map(|body| {
                metrics.bytes_out.increment(body.len() as u64);
                let kind = server_to_gateway::Kind::Send(SendToClient {
                    socket_id: socket_id.clone(),
                    body: body.clone(),
                });
                Bytes::from(ServerToGateway { kind: Some(kind) }.encode_to_vec())
            })
            .collect();
        if let Err(e) = self.link.send_many(gateway, &payloads) {
            if matches!(e.error, LinkError::Full(_)) {
                self.owe_kick(gateway, *socket, 0, true);
            }
            self.log_failure(gateway, &e.error);
        }
    }

    /// Sends one encoded server packet to several sockets of one gateway
    /// (a room's state for its members) as one `SendToClients`: the body
    /// travels once and the gateway writes it to each socket, in the
    /// order given. If the pipe refuses it, every one of them is owed a
    /// kick, as for a refused `SendToClient`.
    pub fn send_encoded_many(&self, gateway: NodeId, sockets: &[Uuid], body: Bytes) {
        match sockets {
            [] => {}
            [socket] => self.send_encoded(gateway, socket, body),
            sockets => self.multicast(gateway, sockets, body),
        }
    }

    fn multicast(&self, gateway: NodeId, sockets: &[Uuid], body: Bytes) {
        let metrics = crate::metrics::hub();
        metrics.packets_out.increment(sockets.len() as u64);
        metrics
            .bytes_out
            .increment((sockets.len() * body.len()) as u64);
        let mut socket_ids = Vec::with_capacity(sockets.len() * SOCKET_ID_LEN);
        for socket in sockets {
            socket_ids.extend_from_slice(socket.as_bytes());
        }
        self.send(
            gateway,
            server_to_gateway::Kind::Multicast(SendToClients {
                socket_ids: Bytes::from(socket_ids),
                body,
            }),
        );
    }

    /// Pins a socket to a session owned by this game server.
    pub fn pin(&self, gateway: NodeId, socket: &Uuid, session_id: u64, user_id: u64) {
        self.send(
            gateway,
            server_to_gateway::Kind::Pin(PinSession {
                socket_id: Bytes::copy_from_slice(socket.as_bytes()),
                session_id,
                game_server_node_id: self.node_id,
                user_id,
            }),
        );
    }

    /// Closes a socket its session left for another connection (a resume,
    /// a hand-off): `Kicked{DUPLICATE_LOGIN}`, only if the socket is still
    /// pinned to that session.
    pub fn close_superseded(&self, gateway: NodeId, socket: &Uuid, session_id: u64) {
        self.kick(
            gateway,
            socket,
            session_id,
            KickReason::DuplicateLogin,
            "session resumed on another connection",
        );
    }

    /// Kicks a socket: `Kicked{reason}` is its last frame, then it closes.
    /// With `session_id` non-zero the gateway only acts if the socket is
    /// still pinned to that session.
    pub fn kick(
        &self,
        gateway: NodeId,
        socket: &Uuid,
        session_id: u64,
        reason: KickReason,
        detail: &str,
    ) {
        // Counted once it went out: an owed SLOW_CONSUMER kick is retried
        // every heartbeat until its gateway's pipe takes it.
        let sent = self.send(
            gateway,
            server_to_gateway::Kind::Disconnect(DisconnectClient {
                socket_id: Bytes::copy_from_slice(socket.as_bytes()),
                last_frame: packets::encode(&packets::kicked(reason, detail)),
                reason: format!("{}: {detail}", reason.as_str_name()),
                session_id,
            }),
        );
        if sent {
            crate::metrics::hub().kicked(reason);
        }
    }

    /// Stops the link threads.
    pub fn shutdown(&self) {
        self.link.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gamemesh_transport::LinkConfig;

    /// A multicast a full pipe refuses is missed by every socket it named:
    /// each is owed a kick, as for a refused `SendToClient`.
    #[tokio::test]
    async fn a_refused_multicast_owes_every_socket_a_kick() {
        // A gateway that never reads, with the smallest queues.
        let mut c = LinkConfig::new("gateway", 7, "127.0.0.1", 0);
        c.rcvhwm = 1;
        c.recv_queue = 1;
        let (gateway, _never_read) = ZmqLink::bind(c).unwrap();
        let mut c = LinkConfig::new("game-server", 1, "127.0.0.1", 0);
        c.sndhwm = 1;
        let (link, _events) = ZmqLink::bind(c).unwrap();
        let links = GatewayLinks::new(link, 1, "tcp://127.0.0.1:1".into(), None);
        let hello = GatewayHello {
            gateway_node_id: 7,
            p2p_endpoint: gateway.local_endpoint().to_string(),
            incarnation: 1,
            ..GatewayHello::default()
        };
        assert_eq!(links.on_hello(7, &hello, true, vec![]), HelloOutcome::New);

        let sockets = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
        let body = Bytes::from(vec![7u8; 60_000]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while links.owed_kicks() == 0 {
            assert!(Instant::now() < deadline, "the pipe never filled");
            links.send_encoded_many(7, &sockets, body.clone());
            tokio::task::yield_now().await;
        }
        assert_eq!(links.owed_kicks(), sockets.len());
        let owed = links.owed_kicks.lock().unwrap();
        let owed = owed.get(&7).expect("owed on gateway 7");
        for socket in &sockets {
            assert_eq!(
                owed.get(socket),
                Some(&0),
                "{socket} is owed an unguarded kick"
            );
        }
    }
}
