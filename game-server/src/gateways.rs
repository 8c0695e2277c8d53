//! The game server's side of the links to gateways: who they are, whether
//! they are alive, and the three things we tell them (send a frame to a
//! socket, pin a socket to a session, disconnect a socket).
//!
//! A game server is told about no gateway by flag: each gateway's hello
//! carries its endpoint, and we link back to it.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gamemesh_proto::client::{KickReason, ServerPacket};
use gamemesh_proto::internal::{
    server_to_gateway, DisconnectClient, GatewayHello, NodeInfo, PinSession, SendToClient,
    ServerHello, ServerToGateway,
};
use gamemesh_proto::{packets, Message};
use gamemesh_transport::{Link, NodeId, ZmqLink};
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
}

impl GatewayLinks {
    /// Wraps a bound link.
    pub fn new(link: ZmqLink, node_id: NodeId, advertised_endpoint: String) -> Self {
        Self {
            link,
            node_id,
            advertised_endpoint,
            incarnation: gamemesh_transport::incarnation(),
            gateways: RwLock::new(HashMap::new()),
        }
    }

    /// Our P2P endpoint as advertised.
    pub fn advertised_endpoint(&self) -> &str {
        &self.advertised_endpoint
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
        self.send(from, self.hello(accepting, peers, hello.probe));
        outcome
    }

    fn hello(&self, accepting: bool, peers: Vec<NodeInfo>, probe: u64) -> server_to_gateway::Kind {
        server_to_gateway::Kind::Hello(ServerHello {
            game_server_node_id: self.node_id,
            p2p_endpoint: self.advertised_endpoint.clone(),
            incarnation: self.incarnation,
            accepting_logins: accepting,
            peers,
            probe,
        })
    }

    /// Tells every gateway at once that we stopped taking logins, instead
    /// of waiting for their next hello. (Probe 0 proves no pipe: the
    /// gateway only takes the flag from it.)
    pub fn announce_draining(&self) {
        for gw in self.ids() {
            self.send(gw, self.hello(false, Vec::new(), 0));
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
        for id in &dead {
            gws.remove(id);
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

    fn send(&self, gateway: NodeId, kind: server_to_gateway::Kind) {
        let msg = ServerToGateway { kind: Some(kind) };
        if let Err(e) = self.link.send(gateway, Bytes::from(msg.encode_to_vec())) {
            warn!(gateway, error = %e, "message to gateway not sent");
        }
    }

    /// Sends a server packet to a client socket.
    pub fn send_to_client(&self, gateway: NodeId, socket: &Uuid, packet: &ServerPacket) {
        let body = packets::encode(packet);
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
        crate::metrics::hub().kicked(reason);
        self.send(
            gateway,
            server_to_gateway::Kind::Disconnect(DisconnectClient {
                socket_id: Bytes::copy_from_slice(socket.as_bytes()),
                last_frame: packets::encode(&packets::kicked(reason, detail)),
                reason: format!("{}: {detail}", reason.as_str_name()),
                session_id,
            }),
        );
    }

    /// Stops the link threads.
    pub fn shutdown(&self) {
        self.link.shutdown();
    }
}
