//! Increment, as a module: adds 1 to the session's counter and answers the
//! new value.
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
//! the increment is undone in memory and answered `UNAVAILABLE` marked
//! "nothing happened" ([`GameError::NothingHappened`]), which the
//! idempotency layer does not cache: the client retries with the same
//! sequence id and it runs then, once. (A save that timed out after Redis
//! applied it is harmless too: the re-run computes the same value from the
//! undone counter and saves it again under the same watermark.)
//!
//! The counter lives with the session's exactly-once state (it must be
//! saved in the same write as the sequence watermark), so this module
//! works on this game server's own sessions: it holds a weak reference to
//! them, given at start.

use std::sync::{Arc, Weak};

use gamemesh_proto::client::{
    client_packet, server_packet, ErrorCode, IncrementRequest, IncrementResponse,
};
use tracing::warn;

use crate::api::{App, Ctx, GameError, Module};
use crate::state::HubState;

/// The increment module.
pub struct Increment {
    /// The sessions owned here and their store.
    state: Weak<HubState>,
}

impl Increment {
    /// The module over `state`'s sessions.
    pub fn new(state: Weak<HubState>) -> Self {
        Self { state }
    }
}

/// Runs one increment on the caller's session.
async fn increment(state: Arc<HubState>, ctx: Ctx) -> Result<IncrementResponse, GameError> {
    let seq = ctx.sequence_id();
    let Some(session) = state.sessions.get(ctx.session_id()).map(|a| a.session) else {
        return Err(GameError::code(ErrorCode::NotAuthenticated, "no session"));
    };
    let done = session.increment(seq);
    let value = match &done.reply.body {
        Some(server_packet::Body::Increment(r)) => r.value,
        _ => 0,
    };
    let Some(progress) = session.progress(false) else {
        return Ok(IncrementResponse { value });
    };
    let detail = match state.store.save(&progress, state.live_ttl).await {
        Ok(true) => {
            session.saved(&progress);
            return Ok(IncrementResponse { value });
        }
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
    Err(GameError::nothing_happened(detail))
}

impl Module for Increment {
    fn name(&self) -> &str {
        "increment"
    }

    fn build(&self, app: &mut App) {
        let state = self.state.clone();
        app.body(
            "increment.increment",
            |b| match b {
                client_packet::Body::Increment(r) => Some(*r),
                _ => None,
            },
            server_packet::Body::Increment,
            move |ctx: Ctx, _req: IncrementRequest| {
                let state = state.upgrade();
                async move {
                    match state {
                        Some(state) => increment(state, ctx).await,
                        None => Err(GameError::nothing_happened("game server stopping")),
                    }
                }
            },
        );
    }
}
