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
//! The actor holds the socket's session. It learns it from the reply's
//! `SessionEffect`: a login, a resume, or an adoption (a frame pinned to
//! a session this server does not own, its owner having died and the
//! gateway re-routed the socket: the pipeline's adoption layer takes it
//! over). Decoding, the login limits and the count of contract
//! violations are layers of the pipeline too ([`crate::policy`]); the
//! actor hands them what only it knows: the frame, the client's IP, and
//! whether the frame's pin names a session it should adopt.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use gamemesh_actors::{Actor, Context};
use gamemesh_proto::client::{ClientPacket, ErrorCode};
use gamemesh_proto::packets;
use tower::{Service, ServiceExt};
use tracing::{info, warn};

use crate::pipeline::HubService;
use crate::request::{ConnInfo, HubRequest, Pin, SessionEffect};
use crate::session::LocalSession;
use crate::state::HubState;

/// Frames queued per connection before the client is told to slow down.
pub const MAILBOX: usize = 256;

/// Replies held back at most before they are sent together (see
/// [`Connection::hold_or_send`]).
const REPLY_BATCH: usize = 64;

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

/// The actor of one client socket.
pub struct Connection {
    /// Shared state: sessions, store, gateway links.
    state: Arc<HubState>,
    /// This connection's clone of the pipeline (a connection's own: the
    /// violations layer counts in it).
    service: HubService,
    /// The socket and the gateway it is on.
    conn: ConnInfo,
    /// The client's IP, from the gateway's `ClientConnected` (`None` when
    /// that went to another game server: a re-routed socket).
    peer_ip: Option<IpAddr>,
    /// The session this socket holds, if any.
    session: Option<Arc<LocalSession>>,
    /// Sessions this socket held and left (logout, replaced): frames still
    /// pinned to them are not adopted back.
    left: Vec<u64>,
    /// Encoded replies held back while more of this socket's frames are
    /// queued, sent together in one link message (empty, and holding no
    /// buffer, otherwise).
    held: Vec<Bytes>,
}

impl Connection {
    /// The actor for `conn`, holding no session yet; spawn it with a
    /// mailbox of [`MAILBOX`].
    pub fn new(
        state: Arc<HubState>,
        service: HubService,
        conn: ConnInfo,
        peer_ip: Option<IpAddr>,
    ) -> Self {
        Self {
            state,
            service,
            conn,
            peer_ip,
            session: None,
            left: Vec::new(),
            held: Vec::new(),
        }
    }
}

impl Actor for Connection {
    type Msg = ConnectionMsg;

    async fn handle(&mut self, msg: ConnectionMsg, ctx: &mut Context<Self>) {
        match msg {
            ConnectionMsg::Frame(frame) => {
                // What this frame's handling sends besides its reply (a
                // kick, a pin) must not overtake the replies held back.
                if !self.held.is_empty() && !packets::is_plain_request(&frame.body) {
                    self.send_held();
                }
                if let Some(reply) = self.frame(frame).await {
                    self.hold_or_send(reply, ctx.addr().queued());
                }
            }
        }
    }

    /// The socket closed (or the server stops): save the session.
    async fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.send_held();
        if let Some(s) = self.session.take() {
            disconnect(&self.state, &s, self.conn).await;
        }
    }
}

impl Connection {
    /// Sends `reply` now, or holds it back while `queued` more frames of
    /// this socket wait, so a burst's replies leave in one link message
    /// (bounded by [`REPLY_BATCH`]). A reply never waits for a frame that
    /// has not arrived: the last one queued sends everything held. Only
    /// plain requests' replies are held ([`packets::is_plain_request`]).
    fn hold_or_send(&mut self, reply: Bytes, queued: usize) {
        let conn = self.conn;
        if queued == 0 && self.held.is_empty() {
            self.state
                .gateways
                .send_encoded(conn.gateway, &conn.socket, reply);
            return;
        }
        self.held.push(reply);
        if queued == 0 || self.held.len() >= REPLY_BATCH {
            self.send_held();
        }
    }

    /// Sends the replies held back, in order, in one link message.
    fn send_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held);
        let conn = self.conn;
        self.state
            .gateways
            .send_replies(conn.gateway, &conn.socket, &held);
    }

    /// Runs one client frame through the pipeline (which decodes it,
    /// adopts its session if needed and applies the policies) and applies
    /// the session effect; returns the encoded reply to send, if any.
    async fn frame(&mut self, frame: Frame) -> Option<Bytes> {
        // Before anything runs: a pause just ended shows here first.
        self.state.pauses.observe();
        let conn = self.conn;
        let seq = packets::peek_sequence_id(&frame.body);
        let req = HubRequest {
            conn,
            session: self.session.clone(),
            packet: ClientPacket::default(),
            frame: frame.body,
            peer_ip: self.peer_ip,
            adopt: self.adopts(frame.session_id, frame.user_id),
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
                let same = self.session.as_ref().map(|o| o.session_id) == Some(s.session_id);
                if let Some(old) = self.session.replace(s) {
                    if !same {
                        self.left.push(old.session_id);
                    }
                }
            }
            SessionEffect::Detach => {
                if let Some(old) = self.session.take() {
                    self.left.push(old.session_id);
                }
            }
            // Closed: a kick was its last frame; nothing more is sent.
            SessionEffect::Close => return None,
        }
        Some(packets::encode(&resp.reply))
    }

    /// The pin to adopt, when the gateway has this socket pinned to a
    /// session it does not hold here and has not left.
    fn adopts(&self, session_id: u64, user_id: u64) -> Option<Pin> {
        let held = self.session.as_ref().map(|s| s.session_id);
        (session_id != 0 && held != Some(session_id) && !self.left.contains(&session_id)).then_some(
            Pin {
                session_id,
                user_id,
            },
        )
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
        // Retried until the store answers (one log line per burst).
        Err(e) => {
            state.save_retries.push(progress, state.resume_grace, &e);
        }
    }
}
