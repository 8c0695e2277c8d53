//! One client connection as the game server sees it: a
//! [`gamemesh_actors`] actor that runs the socket's packets through the
//! pipeline one at a time, in arrival order, while other connections run
//! in parallel on every core.
//!
//! The per-socket ordering comes from the actor runtime: the dispatcher
//! posts each frame to the socket's [`Connection`] actor, which handles it
//! to the end (store, pipeline, reply) before it takes the next. Closing
//! the socket closes the actor ([`gamemesh_actors::Addr::close`]): the
//! frames already queued still run, then [`Actor::stopped`] saves the
//! session as disconnected.
//!
//! The actor holds the socket's session. It learns it from the login or
//! resume reply (`SessionEffect`), or, when a frame arrives pinned to a
//! session this server does not own (its owner died and the gateway
//! re-routed the socket), by adopting it from the store.
//!
//! Before a login enters the pipeline the actor counts it against the
//! login attempt limits ([`crate::policy::login_limits`]): the actor is where the
//! socket's client IP is known, and a refused attempt then costs neither
//! the token check nor the store.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use gamemesh_actors::{Actor, Context};
use gamemesh_proto::client::{client_packet, ClientPacket, ErrorCode, KickReason};
use gamemesh_proto::{packets, Message};
use tokio::time::Instant;
use tower::{Service, ServiceExt};
use tracing::{info, warn};

use crate::handlers::resume::{adopt, MoveError};
use crate::pipeline::HubService;
use crate::policy::login_limits::LoginLimits;
use crate::request::{ConnInfo, HubRequest, SessionEffect};
use crate::session::LocalSession;
use crate::state::HubState;
use gamemesh_node::fixed_window::{FixedWindow, Tally};

/// Frames queued per connection before the client is told to slow down.
pub const MAILBOX: usize = 256;

/// One frame from the socket, with the gateway's pin.
#[derive(Debug)]
pub struct Frame {
    /// Session the gateway has the socket pinned to (0: none).
    pub session_id: u64,
    /// That session's user.
    pub user_id: u64,
    /// The undecoded `ClientPacket`.
    pub body: Bytes,
}

/// What a connection actor's mailbox carries. An enum so that other
/// features (chat) can add work that must run in the socket's order.
#[derive(Debug)]
pub enum ConnectionMsg {
    /// A frame from the client, to run through the pipeline.
    Frame(Frame),
}

/// How a connection's login attempts are limited.
#[derive(Debug, Clone)]
pub struct LoginGate {
    /// The game server's login attempt limits.
    pub limits: Arc<LoginLimits>,
    /// The client's IP, from the gateway's `ClientConnected`; `None` when
    /// that went to another game server (a re-routed socket): then only
    /// the per-user limit applies.
    pub peer_ip: Option<IpAddr>,
}

/// The actor of one client socket.
pub struct Connection {
    /// Shared state: sessions, store, gateway links.
    state: Arc<HubState>,
    /// This connection's clone of the pipeline.
    service: HubService,
    /// The socket and the gateway it is on.
    conn: ConnInfo,
    /// Login attempt limits and the client's IP.
    gate: LoginGate,
    /// The session this socket holds, if any.
    session: Option<Arc<LocalSession>>,
    /// Sessions this socket held and left (logout, replaced): frames still
    /// pinned to them are not adopted back.
    left: Vec<u64>,
    /// Frames that were not the contract, recently.
    violations: FixedWindow,
    /// Set once this actor kicked its socket for contract violations.
    kicked: bool,
}

impl Connection {
    /// The actor for `conn`, holding no session yet; spawn it with a
    /// mailbox of [`MAILBOX`].
    pub fn new(state: Arc<HubState>, service: HubService, conn: ConnInfo, gate: LoginGate) -> Self {
        Self {
            violations: state.violations.counter(),
            state,
            service,
            conn,
            gate,
            session: None,
            left: Vec::new(),
            kicked: false,
        }
    }
}

impl Actor for Connection {
    type Msg = ConnectionMsg;

    async fn handle(&mut self, msg: ConnectionMsg, _ctx: &mut Context<Self>) {
        match msg {
            ConnectionMsg::Frame(frame) => self.frame(frame).await,
        }
    }

    /// The socket closed (or the server stops): save the session.
    async fn stopped(&mut self, _ctx: &mut Context<Self>) {
        if let Some(s) = self.session.take() {
            disconnect(&self.state, &s, self.conn).await;
        }
    }
}

impl Connection {
    /// Runs one client frame: adopt its session if needed, check login
    /// limits, call the pipeline, apply the effect, reply.
    async fn frame(&mut self, frame: Frame) {
        if self.kicked {
            // This actor kicked its socket for contract violations: what
            // is still queued from it is dropped, not answered.
            return;
        }
        let conn = self.conn;
        let seq = packets::peek_sequence_id(&frame.body);
        if frame.session_id != 0
            && self.session.as_ref().map(|s| s.session_id) != Some(frame.session_id)
            && !self.left.contains(&frame.session_id)
        {
            match self.state.sessions.get(frame.session_id) {
                Some(a) if a.socket == conn.socket => self.session = Some(a.session),
                _ => match adopt(&self.state, conn, frame.user_id, frame.session_id).await {
                    Ok(s) => self.session = Some(s),
                    Err(MoveError::NotFound) => {
                        warn!(
                            "Frame for unknown session: SessionId={}, Socket={}; kicking",
                            frame.session_id, conn.socket
                        );
                        self.state.gateways.kick(
                            conn.gateway,
                            &conn.socket,
                            frame.session_id,
                            KickReason::SessionExpired,
                            "the session no longer exists; log in again",
                        );
                        return;
                    }
                    Err(MoveError::Store(e)) => {
                        warn!("Adoption of SessionId={} failed: {e}", frame.session_id);
                        let reply = packets::error(
                            seq,
                            ErrorCode::Unavailable,
                            "session store unavailable; retry",
                        );
                        self.state
                            .gateways
                            .send_to_client(conn.gateway, &conn.socket, &reply);
                        return;
                    }
                },
            }
        }
        let packet = match ClientPacket::decode(frame.body) {
            Ok(p) => p,
            Err(e) => {
                warn!("Malformed packet: Socket={}: {e}", conn.socket);
                let reply = packets::error(
                    seq,
                    ErrorCode::MalformedPacket,
                    "body is not a ClientPacket",
                );
                self.state
                    .gateways
                    .send_to_client(conn.gateway, &conn.socket, &reply);
                self.kicked = violation(&self.state, &mut self.violations, conn, &self.session);
                return;
            }
        };
        // An empty or unknown body is answered UNKNOWN_MESSAGE by the
        // router below; it counts as a violation all the same.
        let unknown = packet.body.is_none();
        // A login on a socket with a live session is no attempt: a re-sent
        // one is replayed from the reply cache, a new one closes the
        // socket (handlers::login). Every other login counts.
        if let Some(client_packet::Body::Login(login)) = &packet.body {
            if self.session.as_ref().is_none_or(|s| s.is_ended()) {
                if let Err(refused) = self.gate.limits.check(login.user_id, self.gate.peer_ip) {
                    crate::metrics::hub().logins_failed.increment(1);
                    if refused.log {
                        warn!(
                            "Login attempts over the limit for {}: Socket={}, UserId={}; answering RATE_LIMITED (next line for this key in a minute at the earliest)",
                            refused.key, conn.socket, login.user_id
                        );
                    }
                    let reply = packets::error(
                        packet.sequence_id,
                        ErrorCode::RateLimited,
                        "too many login attempts; retry later",
                    );
                    self.state
                        .gateways
                        .send_to_client(conn.gateway, &conn.socket, &reply);
                    return;
                }
            }
        }
        let req = HubRequest {
            conn,
            session: self.session.clone(),
            packet,
        };
        let resp = match self.service.ready().await {
            Ok(svc) => svc.call(req).await,
            Err(e) => Err(e),
        };
        let resp = match resp {
            Ok(r) => r,
            // The exception layer turns every failure into a reply; this
            // arm only guards against a pipeline built without it.
            Err(e) => {
                warn!("Pipeline error: Socket={}: {e}", conn.socket);
                crate::request::HubResponse::error(seq, ErrorCode::Internal, "internal error")
            }
        };
        match resp.effect {
            SessionEffect::None => {}
            SessionEffect::Attach(s) => {
                if let Some(old) = self.session.replace(s) {
                    self.left.push(old.session_id);
                }
            }
            SessionEffect::Detach => {
                if let Some(old) = self.session.take() {
                    self.left.push(old.session_id);
                }
            }
            // The handler kicked the socket; the kick is its last frame.
            SessionEffect::Close => return,
        }
        self.state
            .gateways
            .send_to_client(conn.gateway, &conn.socket, &resp.reply);
        if unknown {
            self.kicked = violation(&self.state, &mut self.violations, conn, &self.session);
        }
    }
}

/// Counts a frame that is not the contract; the one over the policy kicks
/// the socket (`PROTOCOL_ERROR`). Returns true when it kicked.
fn violation(
    state: &HubState,
    violations: &mut FixedWindow,
    conn: ConnInfo,
    session: &Option<Arc<LocalSession>>,
) -> bool {
    if violations.record(Instant::now()) != Tally::Tripped {
        return false;
    }
    let policy = state.violations;
    warn!(
        "Protocol abuse: Socket={}: {} frames that are not the contract within {} s (--protocol-error-kick-after); kicking",
        conn.socket,
        policy.kick_after,
        policy.window.as_secs()
    );
    state.gateways.kick(
        conn.gateway,
        &conn.socket,
        session.as_ref().map_or(0, |s| s.session_id),
        KickReason::ProtocolError,
        "too many frames that are not the contract",
    );
    true
}

/// Saves a session whose socket closed as disconnected and resumable,
/// unless it moved on (replaced, taken over, logged out).
async fn disconnect(state: &HubState, s: &LocalSession, conn: ConnInfo) {
    // Save first, detach after: until the save landed, a resume on this
    // game server still finds the session here and takes its progress.
    let attached_here = state
        .sessions
        .get(s.session_id)
        .is_some_and(|a| a.socket == conn.socket);
    if s.is_ended() || !attached_here {
        return;
    }
    let Some(progress) = s.progress(false) else {
        return;
    };
    let saved = state.store.disconnect(&progress, state.resume_grace).await;
    state.sessions.detach(s.session_id, &conn.socket);
    match saved {
        Ok(true) => info!(
            "Session disconnected: UserId={}, SessionId={}, LastSequenceId={}; resumable for {} s",
            s.user_id,
            s.session_id,
            progress.last_seq,
            state.resume_grace.as_secs()
        ),
        Ok(false) => info!("Session {} had moved on; nothing saved", s.session_id),
        Err(e) => warn!(
            "Could not save disconnected SessionId={}: {e}; it expires from the store by its TTL",
            s.session_id
        ),
    }
}
