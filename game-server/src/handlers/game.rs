//! Game code's requests: a `GameRequest` goes to the handler its route
//! names, a contract body no core handler answers goes to the module that
//! registered it (echo, chat, ...). Both through the game runtime
//! ([`crate::api::GameRuntime`]), here at the bottom of the pipeline, so
//! they have been authenticated, deduplicated, rate limited, logged and
//! timed like any other request.

use std::sync::Arc;

use gamemesh_proto::client::{
    client_packet, server_packet, ErrorCode, GameRequest, GameResponse, ServerPacket,
};

use crate::api::{Caller, GameError};
use crate::request::{BoxError, HubRequest, HubResponse};
use crate::state::HubState;

type Reply = Result<HubResponse, BoxError>;

/// The reply to game code's error; one that promises nothing happened
/// ([`GameError::NothingHappened`]) is marked so, and only it is not
/// cached against the sequence id.
fn error(seq: u64, e: &GameError) -> HubResponse {
    if e.is_nothing_happened() {
        return HubResponse::nothing_happened(seq, e.detail());
    }
    HubResponse::error(seq, e.error_code(), e.detail())
}

/// The caller of `req`; `None` for a socket without a session (the
/// authentication layer normally answers it first).
fn caller(req: &HubRequest) -> Option<Caller> {
    req.session.as_ref().map(|s| Caller {
        user_id: s.user_id,
        session_id: s.session_id,
    })
}

fn no_session(seq: u64) -> HubResponse {
    HubResponse::error(seq, ErrorCode::NotAuthenticated, "no session")
}

/// `GameRequest{route, payload}`: the route's handler answers
/// `GameResponse{payload}` or an error.
pub async fn route(state: Arc<HubState>, req: HubRequest, game: GameRequest) -> Reply {
    let seq = req.packet.sequence_id;
    let Some(who) = caller(&req) else {
        return Ok(no_session(seq));
    };
    let Some(runtime) = state.game() else {
        return Ok(HubResponse::nothing_happened(seq, "game server starting"));
    };
    let answer = runtime.dispatch(who, seq, &game.route, game.payload).await;
    Ok(match answer {
        Ok(payload) => HubResponse::reply(ServerPacket {
            sequence_id: seq,
            body: Some(server_packet::Body::Game(GameResponse { payload })),
        }),
        Err(e) => error(seq, &e),
    })
}

/// Any other body: the module that registered it answers, or nobody does
/// (`UNKNOWN_MESSAGE`).
pub async fn builtin(
    state: Arc<HubState>,
    req: HubRequest,
    body: Option<client_packet::Body>,
) -> Reply {
    let seq = req.packet.sequence_id;
    let unknown =
        || HubResponse::error(seq, ErrorCode::UnknownMessage, "empty or unsupported body");
    let (Some(body), Some(runtime)) = (body, state.game()) else {
        return Ok(unknown());
    };
    let Some(who) = caller(&req) else {
        return Ok(no_session(seq));
    };
    let Some(answer) = runtime.dispatch_body(who, seq, &body) else {
        return Ok(unknown());
    };
    Ok(match answer.await {
        Ok(body) => HubResponse::reply(ServerPacket {
            sequence_id: seq,
            body: Some(body),
        }),
        Err(e) => error(seq, &e),
    })
}
