//! Login: verify the token, atomically replace-or-create the user's
//! session in the store, kick the connection of the session it replaced
//! (wherever it is), pin the socket, answer. One login per connection: a
//! second one on a logged-in socket closes it (see [`handle`]).
//!
//! Login attempts are limited per user and per client IP before they get
//! here, by the connection actor ([`crate::policy::login_limits`]).

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
use crate::session::{LocalSession, NewSession, Placement};
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

/// Handles `LoginRequest`.
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
    let seq = req.packet.sequence_id;
    let user_id = login.user_id;
    let socket = req.conn.socket;
    if let Some(current) = req.session.as_ref().filter(|s| !s.is_ended()) {
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
        return Ok(HubResponse {
            reply: packets::kicked(KickReason::ProtocolError, detail),
            effect: SessionEffect::Close,
        });
    }
    info!("Handling unpinned session: Socket={socket}, UserId={user_id}");
    if user_id == 0 {
        return Ok(HubResponse::error(
            seq,
            ErrorCode::InvalidToken,
            "user id 0 is not a user",
        ));
    }
    if !state.is_accepting() {
        return Ok(HubResponse::error(
            seq,
            ErrorCode::Unavailable,
            "this game server is shutting down; log in again",
        ));
    }
    if let Some(secret) = &state.auth_secret {
        if let Err(e) = verify_token(secret, user_id, &login.token, now_secs()) {
            warn!("Login refused: UserId={user_id}, Socket={socket}: {e}");
            return Ok(HubResponse::error(
                seq,
                ErrorCode::InvalidToken,
                "login token rejected",
            ));
        }
    }

    let session_id = loop {
        let id = rand::random::<u64>();
        if id != 0 {
            break id;
        }
    };
    let resume_token = new_resume_token(user_id);
    let placement = Placement {
        owner: state.node_id,
        gateway: req.conn.gateway,
        socket,
    };
    let new = NewSession {
        session_id,
        user_id,
        token_hash: token_hash(&resume_token),
        placement,
        last_seq: seq,
    };
    let outcome = match state.store.login(new, state.live_ttl).await {
        Ok(o) => o,
        Err(e) => {
            warn!("Login failed: UserId={user_id}, Socket={socket}: {e}");
            return Ok(HubResponse::error(
                seq,
                ErrorCode::Unavailable,
                "session store unavailable; retry",
            ));
        }
    };

    let mut replaced_existing_session = false;
    if let Some(old) = outcome.replaced {
        info!(
            "Duplicate login: UserId={user_id}, OldSessionId={}, NewSessionId={session_id}, old socket {} on gateway {} owned by game server {}",
            old.session_id, old.placement.socket, old.placement.gateway, old.placement.owner
        );
        // The old owner drops its state (here directly; elsewhere when the
        // kicked socket's disconnect reaches it, its saves being fenced).
        // A replaced session leaves its rooms; members see it leave.
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
        if old.connected && !old.placement.socket.is_nil() && old.placement.socket != socket {
            // docs/PROTOCOL.md: true "when an older session was kicked". A
            // disconnected (resumable) session is replaced too, but nobody
            // is kicked for it.
            replaced_existing_session = true;
            state.gateways.kick(
                old.placement.gateway,
                &old.placement.socket,
                old.session_id,
                KickReason::DuplicateLogin,
                "logged in from another connection",
            );
        }
    }
    let session = Arc::new(LocalSession::new(
        session_id,
        user_id,
        outcome.epoch,
        0,
        &[],
        state.reply_cache,
    ));
    state.sessions.attach(Attached {
        session: session.clone(),
        gateway: req.conn.gateway,
        socket,
    });
    state
        .gateways
        .pin(req.conn.gateway, &socket, session_id, user_id);
    info!("New session created: UserId={user_id}, SessionId={session_id}");
    let reply = ServerPacket {
        sequence_id: seq,
        body: Some(server_packet::Body::Login(LoginResponse {
            session_id,
            resume_token,
            game_server_node_id: state.node_id,
            replaced_existing_session,
        })),
    };
    // The login's own sequence id is executed: record it so a re-sent
    // login replays this reply instead of logging in again.
    if seq != 0 {
        session.record(seq, &reply);
    }
    Ok(HubResponse {
        reply,
        effect: SessionEffect::Attach(session),
    })
}
