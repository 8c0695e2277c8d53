//! Login: verify the token, atomically replace-or-create the user's
//! session in the store, kick the connection of the session it replaced
//! (wherever it is), pin the socket, answer. One login per connection: a
//! second one on a logged-in socket closes it (see [`handle`]).
//!
//! Login attempts are limited per user and per client IP before they get
//! here, by a layer of the pipeline ([`crate::policy::login_limits`]).

use std::sync::Arc;

use gamemesh_proto::auth::verify_token;
use gamemesh_proto::client::{
    server_packet, ErrorCode, KickReason, LoginRequest, LoginResponse, ServerPacket,
};
use gamemesh_proto::packets;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::request::{BoxError, HubRequest, HubResponse, SessionEffect};
use crate::session::local::Attached;
use crate::session::{LocalSession, NewSession, Placement, ReplacedSession};
use crate::state::HubState;

/// A fresh resume token: `<user_id>.<128 random bits, hex>`. The user id
/// prefix lets any game server find the session record from the token.
pub fn new_resume_token(user_id: u64) -> String {
    format!("{user_id}.{}", hex::encode(rand::random::<[u8; 16]>()))
}

/// SHA-256 of a resume token: the only form in which it is stored.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Handles `LoginRequest`, in named steps:
///
/// 1. [`refuse_second_login`]: one login per connection (below);
/// 2. [`check`]: a real user id, a game server that takes logins, a valid
///    token;
/// 3. [`create`]: a new session, replacing the user's old one in the
///    store in one step;
/// 4. [`replace`]: the replaced session's rooms, owner and socket are
///    told;
/// 5. [`attach`]: the session is owned here and the socket pinned to it;
/// 6. [`answer`]: the `LoginResponse`, recorded against its sequence id.
///
/// **One login per connection.** A socket that already holds a live
/// session and sends a new `login` (a fresh sequence id: a re-sent one was
/// answered from the reply cache by the idempotency layer and never gets
/// here) is closed with `Kicked{PROTOCOL_ERROR, "already logged in on this
/// connection"}`, whichever user it names. Nothing is executed: no token
/// check, no store call, no reply, and its sequence id is not recorded
/// ([`SessionEffect::Close`]). The existing session is left as it is; when
/// the close arrives it is saved as disconnected and can be resumed with
/// its token on a new connection, like after any dropped connection.
/// Replacing the session in place instead would silently void the resume
/// token the client holds, and would let one socket switch users without
/// the old session ever being closed. A client that wants another user
/// logs out first (the socket stays open) or opens a new connection.
/// A socket whose session ended elsewhere (replaced, taken over) counts
/// as not logged in: the authentication layer has already dropped it.
pub async fn handle(
    state: Arc<HubState>,
    req: HubRequest,
    login: LoginRequest,
) -> Result<HubResponse, BoxError> {
    // Storms wait here, before any work (see `HubState::session_starts`).
    let _turn = state.session_starts.acquire().await;
    if let Some(closed) = refuse_second_login(&state, &req, login.user_id) {
        return Ok(closed);
    }
    if let Some(refused) = check(&state, &req, &login) {
        return Ok(refused);
    }
    let created = match create(&state, &req, login.user_id).await {
        Ok(c) => c,
        Err(refused) => return Ok(refused),
    };
    let replaced = match created.replaced {
        Some(old) => replace(&state, &req, login.user_id, created.session_id, old),
        None => false,
    };
    let session = attach(&state, &req, &created);
    Ok(answer(&state, &req, session, created, replaced))
}

/// A session just created in the store.
struct Created {
    /// Its id.
    session_id: u64,
    /// Its user.
    user_id: u64,
    /// The resume token the client gets (only its hash is stored).
    resume_token: String,
    /// Its epoch in the store.
    epoch: u64,
    /// The user's session it replaced, if any.
    replaced: Option<ReplacedSession>,
}

/// Step 1: a second login on a connection that holds a live session
/// closes the connection (see [`handle`]); `None` when it is the first.
fn refuse_second_login(state: &HubState, req: &HubRequest, user_id: u64) -> Option<HubResponse> {
    let current = req.session.as_ref().filter(|s| !s.is_ended())?;
    let socket = req.conn.socket;
    warn!(
        "Second login on one connection: Socket={socket}, SessionId={}, UserId={} asked for UserId={user_id}; closing the connection, the session stays resumable",
        current.session_id, current.user_id
    );
    let detail = "already logged in on this connection";
    // Session 0: close the socket whatever it is pinned to.
    state.gateways.kick(
        req.conn.gateway,
        &socket,
        0,
        KickReason::ProtocolError,
        detail,
    );
    Some(HubResponse::with_effect(
        packets::kicked(KickReason::ProtocolError, detail),
        SessionEffect::Close,
    ))
}

/// Step 2: a user id that is a user, a game server that takes logins, and
/// (with a secret) a token that proves the user id. `Some`: the refusal.
fn check(state: &HubState, req: &HubRequest, login: &LoginRequest) -> Option<HubResponse> {
    let (seq, user_id, socket) = (req.packet.sequence_id, login.user_id, req.conn.socket);
    info!("Handling unpinned session: Socket={socket}, UserId={user_id}");
    if user_id == 0 {
        return Some(HubResponse::error(
            seq,
            ErrorCode::InvalidToken,
            "user id 0 is not a user",
        ));
    }
    if !state.is_accepting() {
        return Some(HubResponse::error(
            seq,
            ErrorCode::Unavailable,
            "this game server is shutting down; log in again",
        ));
    }
    if let Some(secret) = &state.auth_secret {
        if let Err(e) = verify_token(secret, user_id, &login.token, now_secs()) {
            warn!("Login refused: UserId={user_id}, Socket={socket}: {e}");
            return Some(HubResponse::error(
                seq,
                ErrorCode::InvalidToken,
                "login token rejected",
            ));
        }
    }
    None
}

/// Step 3: a fresh session id and resume token, and the user's session
/// replaced by the new one in the store, in one atomic step.
async fn create(state: &HubState, req: &HubRequest, user_id: u64) -> Result<Created, HubResponse> {
    let (seq, socket) = (req.packet.sequence_id, req.conn.socket);
    let session_id = loop {
        let id = rand::random::<u64>();
        if id != 0 {
            break id;
        }
    };
    let resume_token = new_resume_token(user_id);
    let new = NewSession {
        session_id,
        user_id,
        token_hash: token_hash(&resume_token),
        placement: Placement {
            owner: state.node_id,
            gateway: req.conn.gateway,
            socket,
        },
        last_seq: seq,
    };
    match state.store.login(new, state.live_ttl).await {
        Ok(o) => Ok(Created {
            session_id,
            user_id,
            resume_token,
            epoch: o.epoch,
            replaced: o.replaced,
        }),
        Err(e) => {
            warn!("Login failed: UserId={user_id}, Socket={socket}: {e}");
            Err(HubResponse::error(
                seq,
                ErrorCode::Unavailable,
                "session store unavailable; retry",
            ))
        }
    }
}

/// Step 4: the session the login replaced leaves its rooms, its owner
/// drops it (here directly; elsewhere told over the mesh, its saves being
/// fenced anyway), and its connection, if one is open, is kicked
/// (`DUPLICATE_LOGIN`). True when a connection was kicked.
fn replace(
    state: &HubState,
    req: &HubRequest,
    user_id: u64,
    session_id: u64,
    old: ReplacedSession,
) -> bool {
    info!(
        "Duplicate login: UserId={user_id}, OldSessionId={}, NewSessionId={session_id}, old socket {} on gateway {} owned by game server {}",
        old.session_id, old.placement.socket, old.placement.gateway, old.placement.owner
    );
    if let Some(game) = state.game() {
        game.session_ended(user_id, old.session_id);
    }
    if old.placement.owner == state.node_id {
        state.sessions.end(old.session_id);
    } else if old.placement.owner != 0 {
        state.mesh.session_ended(
            old.placement.owner,
            old.session_id,
            user_id,
            "replaced by a new login",
        );
    }
    // docs/PROTOCOL.md: `replaced_existing_session` is true "when an older
    // session was kicked". A disconnected (resumable) session is replaced
    // too, but nobody is kicked for it.
    let kick =
        old.connected && !old.placement.socket.is_nil() && old.placement.socket != req.conn.socket;
    if kick {
        state.gateways.kick(
            old.placement.gateway,
            &old.placement.socket,
            old.session_id,
            KickReason::DuplicateLogin,
            "logged in from another connection",
        );
    }
    kick
}

/// Step 5: the new session is owned here, and the socket pinned to it at
/// its gateway.
fn attach(state: &HubState, req: &HubRequest, created: &Created) -> Arc<LocalSession> {
    let session = Arc::new(LocalSession::new(
        created.session_id,
        created.user_id,
        created.epoch,
        0,
        Vec::new(),
        0,
        state.reply_cache,
    ));
    state.sessions.attach(Attached {
        session: session.clone(),
        gateway: req.conn.gateway,
        socket: req.conn.socket,
    });
    state.gateways.pin(
        req.conn.gateway,
        &req.conn.socket,
        created.session_id,
        created.user_id,
    );
    info!(
        "New session created: UserId={}, SessionId={}",
        created.user_id, created.session_id
    );
    session
}

/// Step 6: the `LoginResponse`. The login's own sequence id is executed:
/// it is recorded so a re-sent login replays this reply instead of
/// logging in again.
fn answer(
    state: &HubState,
    req: &HubRequest,
    session: Arc<LocalSession>,
    created: Created,
    replaced_existing_session: bool,
) -> HubResponse {
    let seq = req.packet.sequence_id;
    let reply = ServerPacket {
        sequence_id: seq,
        body: Some(server_packet::Body::Login(LoginResponse {
            session_id: created.session_id,
            resume_token: created.resume_token,
            game_server_node_id: state.node_id,
            replaced_existing_session,
        })),
    };
    if seq != 0 {
        session.record(seq, &reply);
    }
    HubResponse::with_effect(reply, SessionEffect::Attach(session))
}
