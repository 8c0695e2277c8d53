//! Logout: deletes the session (record and index are one key, so one
//! atomic delete) and detaches the socket, which stays open.

use std::sync::Arc;

use gamemesh_proto::client::{server_packet, ErrorCode, LogoutResponse, ServerPacket};
use tracing::{info, warn};

use crate::request::{BoxError, HubRequest, HubResponse, SessionEffect};
use crate::state::HubState;

/// Logs the socket's session out.
pub async fn handle(state: Arc<HubState>, req: HubRequest) -> Result<HubResponse, BoxError> {
    let seq = req.packet.sequence_id;
    let Some(session) = req.session else {
        return Ok(HubResponse::error(
            seq,
            ErrorCode::NotAuthenticated,
            "no session",
        ));
    };
    match state
        .store
        .remove(session.user_id, session.session_id, session.epoch)
        .await
    {
        Ok(_) => {}
        Err(e) => {
            warn!("Logout failed: SessionId={}: {e}", session.session_id);
            // The delete may have landed, but a logout run again changes
            // nothing more: the re-send may run.
            return Ok(HubResponse::nothing_happened(
                seq,
                "session store unavailable; retry",
            ));
        }
    }
    state.sessions.end(session.session_id);
    // A logged-out session leaves its rooms; members see it leave.
    if let Some(game) = state.game() {
        game.session_ended(session.user_id, session.session_id);
    }
    // Unpin: later frames of this socket carry no session again.
    state.gateways.pin(req.conn.gateway, &req.conn.socket, 0, 0);
    info!(
        "Session logged out: UserId={}, SessionId={}",
        session.user_id, session.session_id
    );
    Ok(HubResponse::with_effect(
        ServerPacket {
            sequence_id: seq,
            body: Some(server_packet::Body::Logout(LogoutResponse {})),
        },
        SessionEffect::Detach,
    ))
}
