//! What flows through the hub's tower pipeline: the request a connection
//! actor sends in and the response a handler sends back. Middleware and
//! handlers import these from here; the pipeline (which imports them
//! both) is composed in [`crate::pipeline`].

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;

use gamemesh_proto::client::{client_packet, ClientPacket, ErrorCode, ServerPacket};
use gamemesh_proto::packets;
use gamemesh_transport::NodeId;
use uuid::Uuid;

use crate::session::LocalSession;

/// Error type at tower boundaries.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which client socket a packet came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnInfo {
    /// The gateway holding the socket.
    pub gateway: NodeId,
    /// The socket's id.
    pub socket: Uuid,
}

/// One client frame on its way to a handler.
#[derive(Debug, Clone)]
pub struct HubRequest {
    /// Where it came from.
    pub conn: ConnInfo,
    /// The session the socket is attached to here, if any.
    pub session: Option<Arc<LocalSession>>,
    /// The packet (decoded from `frame` by the decode layer).
    pub packet: ClientPacket,
    /// The frame as the gateway relayed it; empty when the request was
    /// built decoded (tests, benches).
    pub frame: Bytes,
    /// The client's IP, from the gateway's `ClientConnected` (for the
    /// login limits); `None` when that went to another game server.
    pub peer_ip: Option<IpAddr>,
    /// The session the gateway has this socket pinned to, when the socket
    /// holds no session or another one here and has not left it: the
    /// adoption layer takes it over first.
    pub adopt: Option<Pin>,
}

/// A gateway's pin of a socket to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    /// The session.
    pub session_id: u64,
    /// Its user.
    pub user_id: u64,
}

impl HubRequest {
    /// A request for an already decoded `packet` (tests, benches).
    pub fn decoded(
        conn: ConnInfo,
        session: Option<Arc<LocalSession>>,
        packet: ClientPacket,
    ) -> Self {
        Self {
            conn,
            session,
            packet,
            frame: Bytes::new(),
            peer_ip: None,
            adopt: None,
        }
    }
}

impl HubRequest {
    /// Short name of the packet's body, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match &self.packet.body {
            Some(client_packet::Body::Login(_)) => "login",
            Some(client_packet::Body::Resume(_)) => "resume",
            Some(client_packet::Body::Echo(_)) => "echo",
            Some(client_packet::Body::Heartbeat(_)) => "heartbeat",
            Some(client_packet::Body::Logout(_)) => "logout",
            Some(client_packet::Body::ChatListRooms(_)) => "chat_list_rooms",
            Some(client_packet::Body::ChatJoin(_)) => "chat_join",
            Some(client_packet::Body::ChatLeave(_)) => "chat_leave",
            Some(client_packet::Body::ChatSay(_)) => "chat_say",
            Some(client_packet::Body::ChatWhisper(_)) => "chat_whisper",
            Some(client_packet::Body::Increment(_)) => "increment",
            Some(client_packet::Body::Game(_)) => "game",
            None => "empty",
        }
    }
}

/// What the connection actor does with the socket's session after a reply.
#[derive(Debug, Clone, Default)]
pub enum SessionEffect {
    /// Nothing changes.
    #[default]
    None,
    /// The socket is now attached to this session (login, resume).
    Attach(Arc<LocalSession>),
    /// The socket no longer has a session (logout).
    Detach,
    /// The handler closed the socket (a `Kicked` is its last frame) and
    /// executed nothing: the reply is neither sent nor recorded against
    /// the sequence id, and the socket keeps its session until the close
    /// arrives (then it is saved as resumable like any other).
    Close,
}

/// A handler's answer.
#[derive(Debug, Clone)]
pub struct HubResponse {
    /// The reply to send to the client.
    pub reply: ServerPacket,
    /// Session change for the socket.
    pub effect: SessionEffect,
    /// Set by the handler that knows nothing happened (an `UNAVAILABLE`
    /// before anything was written or sent, or after it was undone; or a
    /// request whose second run changes nothing). Only such a reply is
    /// not recorded against the sequence id, so a re-send runs again;
    /// every other reply, an `UNAVAILABLE` whose effect may have happened
    /// included, is recorded and replayed (docs/PROTOCOL.md, section 5).
    pub nothing_happened: bool,
}

impl HubResponse {
    /// A plain reply.
    pub fn reply(reply: ServerPacket) -> Self {
        Self {
            reply,
            effect: SessionEffect::None,
            nothing_happened: false,
        }
    }

    /// A reply with a session change.
    pub fn with_effect(reply: ServerPacket, effect: SessionEffect) -> Self {
        Self {
            effect,
            ..Self::reply(reply)
        }
    }

    /// An `ErrorResponse` answering `sequence_id`.
    pub fn error(sequence_id: u64, code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::reply(packets::error(sequence_id, code, detail))
    }

    /// An `ErrorResponse{UNAVAILABLE}` answering `sequence_id`, from a
    /// handler that knows nothing happened: not recorded, so the client's
    /// re-send with the same id runs again.
    pub fn nothing_happened(sequence_id: u64, detail: impl Into<String>) -> Self {
        Self {
            nothing_happened: true,
            ..Self::error(sequence_id, ErrorCode::Unavailable, detail)
        }
    }
}
