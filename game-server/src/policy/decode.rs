//! Decoding: the frame as the gateway relayed it becomes a
//! `ClientPacket`; a body that is not one is answered `MALFORMED_PACKET`
//! (docs/PROTOCOL.md, "Errors never kill the server") and goes no
//! further. The violations layer around it counts that answer.

use gamemesh_proto::client::{ClientPacket, ErrorCode};
use gamemesh_proto::{packets, Message};
use tracing::warn;

use crate::middleware::guard::{Admit, GuardLayer};
use crate::request::{HubRequest, HubResponse};

/// Adds the decoding step to the pipeline.
pub type DecodeLayer = GuardLayer<DecodeFrame>;

impl DecodeLayer {
    /// The layer.
    pub const fn new() -> Self {
        Self::with(DecodeFrame)
    }
}

/// Decodes `HubRequest::frame` into `HubRequest::packet`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeFrame;

impl Admit for DecodeFrame {
    fn refusal(&self, req: &mut HubRequest) -> Option<HubResponse> {
        // A request built decoded (tests, benches) has no frame.
        if !req.frame.is_empty() {
            match ClientPacket::decode(req.frame.clone()) {
                Ok(p) => req.packet = p,
                Err(e) => {
                    warn!("Malformed packet: Socket={}: {e}", req.conn.socket);
                    let seq = packets::peek_sequence_id(&req.frame);
                    return Some(HubResponse::error(
                        seq,
                        ErrorCode::MalformedPacket,
                        "body is not a ClientPacket",
                    ));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::middleware::test_util::{echo, echo_reply, error_code};
    use crate::request::BoxError;
    use bytes::Bytes;
    use tower::Layer;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_frame_becomes_a_packet_and_garbage_is_malformed() {
        let svc = DecodeLayer::new().layer(tower::service_fn(|req: HubRequest| {
            futures::future::ready(Ok::<_, BoxError>(echo_reply(req.packet.sequence_id, b"ok")))
        }));
        let mut req = echo(0, b"x", None);
        req.frame = Bytes::from(
            ClientPacket {
                sequence_id: 9,
                ..ClientPacket::default()
            }
            .encode_to_vec(),
        );
        let resp = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.reply.sequence_id, 9, "decoded from the frame");
        let mut bad = echo(0, b"x", None);
        bad.frame = Bytes::from_static(b"\xff\xff\xff");
        let resp = svc.oneshot(bad).await.unwrap();
        assert_eq!(error_code(&resp), Some(ErrorCode::MalformedPacket as i32));
    }
}
