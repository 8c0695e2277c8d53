//! Echo: answers the data it was sent.

use gamemesh_proto::client::{server_packet, EchoRequest, EchoResponse, ServerPacket};

use crate::request::HubResponse;

/// Test hook: an echo of exactly these bytes panics, so tests can prove a
/// panicking handler answers `INTERNAL` and the server keeps serving.
pub const PANIC_PAYLOAD: &[u8] = b"__gamemesh_test_panic__";

/// Echoes `req.data`.
pub fn handle(sequence_id: u64, req: EchoRequest) -> HubResponse {
    if req.data == PANIC_PAYLOAD {
        panic!("echo handler asked to panic (test hook)");
    }
    HubResponse::reply(ServerPacket {
        sequence_id,
        body: Some(server_packet::Body::Echo(EchoResponse { data: req.data })),
    })
}
