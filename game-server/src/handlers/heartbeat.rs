//! Heartbeat: answers with the client's time and ours.

use gamemesh_proto::client::{server_packet, HeartbeatRequest, HeartbeatResponse, ServerPacket};

use crate::request::HubResponse;

/// Answers a heartbeat.
pub fn handle(sequence_id: u64, req: HeartbeatRequest) -> HubResponse {
    let server_time_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    HubResponse::reply(ServerPacket {
        sequence_id,
        body: Some(server_packet::Body::Heartbeat(HeartbeatResponse {
            client_time_ms: req.client_time_ms,
            server_time_ms,
        })),
    })
}
