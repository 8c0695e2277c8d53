//! Increment: adds 1 to the session's counter and answers the new value.
//!
//! The one operation in the contract that is not idempotent by itself, so
//! chaos tests can see double execution (echo cannot show it). It is
//! written through: the session's progress (counter, watermark and reply
//! cache together) is saved to the store before the reply goes out, so an
//! acknowledged increment survives a crash of this game server. Other
//! packets are written behind by the flusher; an increment pays one store
//! round trip for that guarantee.
//!
//! If the save fails (store down, or the session moved to another owner)
//! the increment is undone in memory and answered `UNAVAILABLE`, which the
//! idempotency layer does not cache: the client retries with the same
//! sequence id and it runs then, once.

use std::sync::Arc;

use gamemesh_proto::client::ErrorCode;
use tracing::warn;

use crate::request::{BoxError, HubRequest, HubResponse};
use crate::state::HubState;

/// Runs one increment on the socket's session.
pub async fn handle(state: Arc<HubState>, req: HubRequest) -> Result<HubResponse, BoxError> {
    let seq = req.packet.sequence_id;
    let Some(session) = req.session else {
        return Ok(HubResponse::error(
            seq,
            ErrorCode::NotAuthenticated,
            "no session",
        ));
    };
    let done = session.increment(seq);
    let Some(progress) = session.progress(false) else {
        return Ok(HubResponse::reply(done.reply));
    };
    let detail = match state.store.save(&progress, state.live_ttl).await {
        Ok(true) => return Ok(HubResponse::reply(done.reply)),
        Ok(false) => "the session moved to another game server; retry",
        Err(e) => {
            warn!(
                "Increment not saved: SessionId={}, SequenceId={seq}: {e}; undone, answering UNAVAILABLE",
                session.session_id
            );
            "session store unavailable; retry"
        }
    };
    session.undo_increment(&done);
    metrics::counter!("gamemesh_game_server_increments_undone_total").increment(1);
    Ok(HubResponse::error(seq, ErrorCode::Unavailable, detail))
}
