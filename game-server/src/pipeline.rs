//! The request and response that flow through the hub's tower pipeline,
//! and the one place the pipeline is composed.

use std::sync::Arc;

use gamemesh_proto::client::{client_packet, ClientPacket, ErrorCode, ServerPacket};
use gamemesh_proto::packets;
use gamemesh_transport::NodeId;
use tower::util::BoxCloneService;
use tower::ServiceBuilder;
use uuid::Uuid;

use crate::handlers::Router;
use crate::middleware::{
    measured, AuthenticationLayer, ExceptionLayer, IdempotencyLayer, LoggingLayer, TimingLayer,
};
use crate::session::LocalSession;
use crate::state::HubState;

/// Error type at tower boundaries.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The pipeline as one cloneable service; each connection actor holds a
/// clone.
pub type HubService = BoxCloneService<HubRequest, HubResponse, BoxError>;

/// Number of middlewares in [`build`], for the start-up log line.
pub const MIDDLEWARE_COUNT: usize = 5;

/// Which client socket a packet came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnInfo {
    /// The gateway holding the socket.
    pub gateway: NodeId,
    /// The socket's id.
    pub socket: Uuid,
}

/// One decoded client packet on its way to a handler.
#[derive(Debug, Clone)]
pub struct HubRequest {
    /// Where it came from.
    pub conn: ConnInfo,
    /// The session the socket is attached to here, if any.
    pub session: Option<Arc<LocalSession>>,
    /// The packet.
    pub packet: ClientPacket,
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
}

impl HubResponse {
    /// A plain reply.
    pub fn reply(reply: ServerPacket) -> Self {
        Self {
            reply,
            effect: SessionEffect::None,
        }
    }

    /// An `ErrorResponse` answering `sequence_id`.
    pub fn error(sequence_id: u64, code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::reply(packets::error(sequence_id, code, detail))
    }
}

/// Composes the pipeline, outermost first: exception handling catches
/// whatever fails below it; logging opens the span every later line is
/// in; authentication refuses session-only packets from sockets without a
/// session; idempotency answers re-sent sequence ids without running them;
/// timing measures the handler alone; the router picks the handler. Each
/// middleware above timing is `measured` (its time, cumulative, in
/// `gamemesh_game_server_middleware_seconds`).
pub fn build(state: Arc<HubState>) -> HubService {
    let stack = ServiceBuilder::new()
        .layer(measured("exception", ExceptionLayer::new()))
        .layer(measured("logging", LoggingLayer::new()))
        .layer(measured("authentication", AuthenticationLayer::new()))
        .layer(measured("idempotency", IdempotencyLayer::new()))
        .layer(TimingLayer::new())
        .service(Router::new(state));
    BoxCloneService::new(stack)
}
