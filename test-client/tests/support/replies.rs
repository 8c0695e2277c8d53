//! The session replies both mock gateways give (mock_gateway.rs's and
//! [`super::mock_arena`]'s): one place that says what a conforming login,
//! resume and heartbeat answer holds.

use gamemesh_proto::client::{
    server_packet, HeartbeatRequest, HeartbeatResponse, LoginResponse, ResumeResponse,
    ServerPacket, SessionSnapshot,
};

/// A reply to request `sequence_id`.
pub fn reply(sequence_id: u64, body: server_packet::Body) -> ServerPacket {
    ServerPacket {
        sequence_id,
        body: Some(body),
    }
}

/// A login on the mock's one game server (node 1).
pub fn login(seq: u64, session_id: u64, resume_token: String, replaced: bool) -> ServerPacket {
    reply(
        seq,
        server_packet::Body::Login(LoginResponse {
            session_id,
            resume_token,
            game_server_node_id: 1,
            replaced_existing_session: replaced,
        }),
    )
}

/// A resumed session of `user_id` that has executed up to `last_seq`.
pub fn resume(seq: u64, session_id: u64, user_id: u64, last_seq: u64) -> ServerPacket {
    reply(
        seq,
        server_packet::Body::Resume(ResumeResponse {
            snapshot: Some(SessionSnapshot {
                session_id,
                user_id,
                last_sequence_id: last_seq,
                game_server_node_id: 1,
            }),
        }),
    )
}

/// The heartbeat echo (the mock keeps no clock of its own).
pub fn heartbeat(seq: u64, h: &HeartbeatRequest) -> ServerPacket {
    reply(
        seq,
        server_packet::Body::Heartbeat(HeartbeatResponse {
            client_time_ms: h.client_time_ms,
            server_time_ms: 0,
        }),
    )
}
