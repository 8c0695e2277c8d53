//! One client connection as the game server sees it: an actor that runs
//! the socket's packets through the pipeline one at a time, in arrival
//! order, while other connections run in parallel on every core.
//!
//! The actor holds the socket's session. It learns it from the login or
//! resume reply (`SessionEffect`), or, when a frame arrives pinned to a
//! session this server does not own (its owner died and the gateway
//! re-routed the socket), by adopting it from the store.
//!
//! Before a login enters the pipeline the actor counts it against the
//! login attempt limits ([`crate::login_limits`]): the actor is where the
//! socket's client IP is known, and a refused attempt then costs neither
//! the token check nor the store.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use gamemesh_proto::client::{client_packet, ClientPacket, ErrorCode, KickReason};
use gamemesh_proto::{packets, Message};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};
use tracing::{info, warn};

use crate::handlers::resume::{adopt, MoveError};
use crate::login_limits::LoginLimits;
use crate::pipeline::{ConnInfo, HubRequest, HubService, SessionEffect};
use crate::session::LocalSession;
use crate::state::HubState;

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

/// The dispatcher's handle on a connection actor.
pub struct ActorHandle {
    /// Its mailbox.
    pub tx: mpsc::Sender<Frame>,
    /// Cancelled when the socket closed: the actor finishes what is queued,
    /// saves its session as disconnected and stops.
    pub closed: CancellationToken,
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

/// Starts the actor for `conn`; the caller spawns the returned future.
pub fn spawn_actor(
    state: Arc<HubState>,
    service: HubService,
    conn: ConnInfo,
    gate: LoginGate,
) -> (
    ActorHandle,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = mpsc::channel(MAILBOX);
    let closed = CancellationToken::new();
    let fut = run(state, service, conn, gate, rx, closed.clone());
    (ActorHandle { tx, closed }, fut)
}

async fn run(
    state: Arc<HubState>,
    mut service: HubService,
    conn: ConnInfo,
    gate: LoginGate,
    mut rx: mpsc::Receiver<Frame>,
    closed: CancellationToken,
) {
    let mut session: Option<Arc<LocalSession>> = None;
    // Sessions this socket held and left (logout, replaced): frames still
    // pinned to them are not adopted back.
    let mut left: Vec<u64> = Vec::new();
    loop {
        let frame = tokio::select! {
            biased;
            f = rx.recv() => match f { Some(f) => f, None => break },
            _ = closed.cancelled() => break,
        };
        let seq = packets::peek_sequence_id(&frame.body);
        if frame.session_id != 0
            && session.as_ref().map(|s| s.session_id) != Some(frame.session_id)
            && !left.contains(&frame.session_id)
        {
            match state.sessions.get(frame.session_id) {
                Some(a) if a.socket == conn.socket => session = Some(a.session),
                _ => match adopt(&state, conn, frame.user_id, frame.session_id).await {
                    Ok(s) => session = Some(s),
                    Err(MoveError::NotFound) => {
                        warn!(
                            "Frame for unknown session: SessionId={}, Socket={}; kicking",
                            frame.session_id, conn.socket
                        );
                        state.gateways.kick(
                            conn.gateway,
                            &conn.socket,
                            0,
                            KickReason::SessionExpired,
                            "the session no longer exists; log in again",
                        );
                        continue;
                    }
                    Err(MoveError::Store(e)) => {
                        warn!("Adoption of SessionId={} failed: {e}", frame.session_id);
                        let reply = packets::error(
                            seq,
                            ErrorCode::Unavailable,
                            "session store unavailable; retry",
                        );
                        state
                            .gateways
                            .send_to_client(conn.gateway, &conn.socket, &reply);
                        continue;
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
                state
                    .gateways
                    .send_to_client(conn.gateway, &conn.socket, &reply);
                continue;
            }
        };
        // A login on a socket with a live session is no attempt: a re-sent
        // one is replayed from the reply cache, a new one closes the
        // socket (handlers::login). Every other login counts.
        if let Some(client_packet::Body::Login(login)) = &packet.body {
            if session.as_ref().is_none_or(|s| s.is_ended()) {
                if let Err(refused) = gate.limits.check(login.user_id, gate.peer_ip) {
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
                    state
                        .gateways
                        .send_to_client(conn.gateway, &conn.socket, &reply);
                    continue;
                }
            }
        }
        let req = HubRequest {
            conn,
            session: session.clone(),
            packet,
        };
        let resp = match service.ready().await {
            Ok(svc) => svc.call(req).await,
            Err(e) => Err(e),
        };
        let resp = match resp {
            Ok(r) => r,
            // The exception layer turns every failure into a reply; this
            // arm only guards against a pipeline built without it.
            Err(e) => {
                warn!("Pipeline error: Socket={}: {e}", conn.socket);
                crate::pipeline::HubResponse::error(seq, ErrorCode::Internal, "internal error")
            }
        };
        match resp.effect {
            SessionEffect::None => {}
            SessionEffect::Attach(s) => {
                if let Some(old) = session.replace(s) {
                    left.push(old.session_id);
                }
            }
            SessionEffect::Detach => {
                if let Some(old) = session.take() {
                    left.push(old.session_id);
                }
            }
            // The handler kicked the socket; the kick is its last frame.
            SessionEffect::Close => continue,
        }
        state
            .gateways
            .send_to_client(conn.gateway, &conn.socket, &resp.reply);
    }
    if let Some(s) = session {
        disconnect(&state, &s, conn).await;
    }
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
