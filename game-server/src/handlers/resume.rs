//! Resume (a client back on a new connection) and adoption (a game server
//! taking over a session whose owner died). Both move the session to this
//! game server with an epoch-fenced take-over in the store, so a stale
//! owner can never write over it again.

use std::sync::Arc;
use std::time::Duration;

use gamemesh_proto::client::{
    server_packet, ErrorCode, KickReason, ResumeRequest, ResumeResponse, ServerPacket,
    SessionSnapshot,
};
use subtle::ConstantTimeEq;
use tracing::{info, warn};

use super::login::token_hash;
use crate::cluster::mesh::Release;
use crate::request::{BoxError, ConnInfo, HubRequest, HubResponse, SessionEffect};
use crate::session::local::Attached;
use crate::session::{Claim, LocalSession, Placement, SessionRecord, StoreError};
use crate::state::HubState;

/// Why a session could not be moved here.
#[derive(Debug)]
pub enum MoveError {
    /// No such live session (expired, logged out, replaced).
    NotFound,
    /// The store is unavailable.
    Store(StoreError),
}

/// Takes session `session_id` of `user_id` over for the socket `conn`,
/// closing the socket it had if that one is still open. `check` vets the
/// record first (the resume token); it returns `Err(code)` to refuse.
async fn move_here(
    state: &HubState,
    conn: ConnInfo,
    user_id: u64,
    session_id: u64,
    check: impl Fn(&SessionRecord) -> Result<(), ErrorCode>,
) -> Result<Result<Arc<LocalSession>, ErrorCode>, MoveError> {
    let to = Placement {
        owner: state.node_id,
        gateway: conn.gateway,
        socket: conn.socket,
    };
    // Two attempts: a concurrent save cannot change the epoch, but a
    // concurrent take-over can; one retry settles a benign race.
    for _ in 0..2 {
        let record = match state.store.get(user_id).await.map_err(MoveError::Store)? {
            Some(r) if r.session_id == session_id => r,
            _ => return Err(MoveError::NotFound),
        };
        if let Err(code) = check(&record) {
            return Ok(Err(code));
        }
        let record = if needs_hand_off(state, &record, conn) {
            hand_off(state, &record, conn)
                .await
                .map_err(MoveError::Store)?
        } else {
            Some(record)
        };
        let Some(record) = record else {
            return Err(MoveError::NotFound);
        };
        // Take our own fresher in-memory progress if the session is here.
        let local = state.sessions.get(session_id);
        let Some(t) = state
            .store
            .take_over(
                Claim {
                    user_id,
                    session_id,
                    expected_epoch: record.epoch,
                    to,
                },
                state.live_ttl,
            )
            .await
            .map_err(MoveError::Store)?
        else {
            continue;
        };
        let session = match local.as_ref() {
            Some(a) if a.session.last_executed() >= t.last_seq => {
                a.session.handed_over(t.epoch, t.last_seq)
            }
            _ => LocalSession::new(
                session_id,
                user_id,
                t.epoch,
                t.last_seq,
                t.replies,
                t.ring_len,
                state.reply_cache,
            )
            .with_counter(t.counter),
        };
        // The socket it was on here, if another: closed like the one the
        // store names (which can differ: a take-over whose reply was lost).
        let mut kicked_here = None;
        if let Some(old) = state.sessions.end(session_id) {
            if old.socket != conn.socket {
                info!(
                    "Session {session_id} moved off socket {} on this game server; closing it",
                    old.socket
                );
                state
                    .gateways
                    .close_superseded(old.gateway, &old.socket, session_id);
                kicked_here = Some(old.socket);
            }
        }
        if t.was_connected
            && !t.previous.socket.is_nil()
            && t.previous.socket != conn.socket
            && Some(t.previous.socket) != kicked_here
        {
            info!(
                "Closing the previous socket of SessionId={session_id}: socket {} on gateway {} (game server {})",
                t.previous.socket, t.previous.gateway, t.previous.owner
            );
            state
                .gateways
                .close_superseded(t.previous.gateway, &t.previous.socket, session_id);
        }
        let session = Arc::new(session);
        state.sessions.attach(Attached {
            session: session.clone(),
            gateway: conn.gateway,
            socket: conn.socket,
        });
        state
            .gateways
            .pin(conn.gateway, &conn.socket, session_id, user_id);
        // Its rooms push to it here from now on.
        if let Some(game) = state.game() {
            game.session_moved(user_id, session_id, state.node_id);
        }
        return Ok(Ok(session));
    }
    Err(MoveError::NotFound)
}

/// Whether another game server may still hold the session: it is
/// connected there, on another socket, or on this very socket while that
/// server is alive (a gateway that lost its link to it re-routed the
/// socket here, or this server woke from a pause and runs frames the
/// gateway sent before it gave up on us). Taking it without asking would
/// lose the owner's progress since its last save.
fn needs_hand_off(state: &HubState, record: &SessionRecord, conn: ConnInfo) -> bool {
    let owner = record.placement.owner;
    record.connected
        && owner != state.node_id
        && (record.placement.socket != conn.socket || owner_may_be_live(state, owner))
}

/// Whether game server `owner` may be alive to hand a session off: the
/// mesh says so, or this process just woke from a pause and has not heard
/// its peers for as long as it slept (asking a dead one costs
/// [`HAND_OFF_WAIT`]; not asking a live one loses its progress).
fn owner_may_be_live(state: &HubState, owner: u64) -> bool {
    state.mesh.is_live(owner) || state.pauses.just_woke()
}

/// Closes `left`'s socket: the session it held here moved on or is gone
/// (the store now has `now`), and whoever took it may not know this
/// socket (the store named another one when it did). Not when the
/// session moved with the socket itself (the gateway re-routed it). The
/// kick names the session, so a gateway that pinned the socket to
/// another one ignores it.
pub fn close_left_behind(state: &HubState, left: &Attached, now: Option<&SessionRecord>) {
    let session_id = left.session.session_id;
    match now {
        None => state.gateways.kick(
            left.gateway,
            &left.socket,
            session_id,
            KickReason::SessionExpired,
            "the session no longer exists; log in again",
        ),
        Some(r) if r.session_id == session_id && r.placement.socket == left.socket => {}
        Some(_) => state
            .gateways
            .close_superseded(left.gateway, &left.socket, session_id),
    }
}

/// How long a resume waits for another game server to save a session it
/// still holds before taking it anyway.
const HAND_OFF_WAIT: Duration = Duration::from_millis(500);

/// The session is still connected to a socket owned by another game server
/// (the client came back before its old connection was noticed gone, or
/// while it is still open). Close that socket through its gateway (unless
/// it is the one asking) and, if the owner is alive, ask it over the mesh
/// to save the session's final progress and let go, so the take-over
/// starts from the owner's latest watermark rather than its last periodic
/// flush. A dead owner is not waited for: its last saved progress is all
/// there is.
async fn hand_off(
    state: &HubState,
    record: &SessionRecord,
    conn: ConnInfo,
) -> Result<Option<SessionRecord>, StoreError> {
    let owner = record.placement.owner;
    if record.placement.socket != conn.socket {
        state.gateways.close_superseded(
            record.placement.gateway,
            &record.placement.socket,
            record.session_id,
        );
    }
    if !owner_may_be_live(state, owner) {
        info!(
            "Owner game server {owner} of SessionId={} is down; taking its last saved progress",
            record.session_id
        );
    } else {
        match state
            .mesh
            .release(
                owner,
                record.session_id,
                record.user_id,
                &conn.socket,
                HAND_OFF_WAIT,
            )
            .await
        {
            Release::Saved => {}
            Release::NotHeld => info!(
                "Game server {owner} no longer held SessionId={}; taking its saved progress",
                record.session_id
            ),
            Release::NoAnswer => warn!(
                "Game server {owner} did not release SessionId={} within {} ms; taking its last saved progress",
                record.session_id,
                HAND_OFF_WAIT.as_millis()
            ),
        }
    }
    Ok(state
        .store
        .get(record.user_id)
        .await?
        .filter(|r| r.session_id == record.session_id))
}

/// The user a resume token names (0 if none): the token is
/// `<user_id>.<secret>`, and the prefix finds the record.
pub fn token_user(resume_token: &str) -> u64 {
    resume_token
        .split_once('.')
        .and_then(|(u, _)| u.parse::<u64>().ok())
        .unwrap_or(0)
}

/// Handles `ResumeRequest`.
pub async fn handle(
    state: Arc<HubState>,
    req: HubRequest,
    resume: ResumeRequest,
) -> Result<HubResponse, BoxError> {
    // Storms wait here, before any work (see `HubState::session_starts`).
    let _turn = state.session_starts.acquire().await;
    let seq = req.packet.sequence_id;
    let user_id = token_user(&resume.resume_token);
    if user_id == 0 || resume.session_id == 0 {
        return Ok(HubResponse::error(
            seq,
            ErrorCode::InvalidToken,
            "resume token rejected",
        ));
    }
    let presented = token_hash(&resume.resume_token);
    let check = |r: &SessionRecord| {
        if bool::from(r.token_hash.ct_eq(&presented)) {
            Ok(())
        } else {
            Err(ErrorCode::InvalidToken)
        }
    };
    match move_here(&state, req.conn, user_id, resume.session_id, check).await {
        Ok(Ok(session)) => {
            info!(
                "Session resumed: UserId={user_id}, SessionId={}, Socket={}, LastSequenceId={}",
                session.session_id,
                req.conn.socket,
                session.last_executed()
            );
            let reply = ServerPacket {
                sequence_id: seq,
                body: Some(server_packet::Body::Resume(ResumeResponse {
                    snapshot: Some(SessionSnapshot {
                        session_id: session.session_id,
                        user_id,
                        last_sequence_id: session.last_executed(),
                        game_server_node_id: state.node_id,
                    }),
                })),
            };
            Ok(HubResponse::with_effect(
                reply,
                SessionEffect::Attach(session),
            ))
        }
        Ok(Err(code)) => {
            warn!(
                "Resume refused: SessionId={}, Socket={}: bad token",
                resume.session_id, req.conn.socket
            );
            Ok(HubResponse::error(seq, code, "resume token rejected"))
        }
        Err(MoveError::NotFound) => Ok(HubResponse::error(
            seq,
            ErrorCode::SessionNotFound,
            "no such session (expired, logged out or replaced)",
        )),
        Err(MoveError::Store(e)) => {
            warn!("Resume failed: SessionId={}: {e}", resume.session_id);
            Ok(HubResponse::error(
                seq,
                ErrorCode::Unavailable,
                "session store unavailable; retry",
            ))
        }
    }
}

/// Adopts a session whose frames reached this game server without it being
/// owned here (its owner died and the gateway re-routed the socket). The
/// gateway's pin proves the socket holds the session, so no token is asked.
pub async fn adopt(
    state: &HubState,
    conn: ConnInfo,
    user_id: u64,
    session_id: u64,
) -> Result<Arc<LocalSession>, MoveError> {
    let session = move_here(state, conn, user_id, session_id, |_| Ok(()))
        .await?
        .map_err(|_| MoveError::NotFound)?;
    info!(
        "Session adopted: UserId={user_id}, SessionId={session_id}, Socket={}, LastSequenceId={}",
        conn.socket,
        session.last_executed()
    );
    Ok(session)
}
