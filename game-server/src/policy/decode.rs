//! Decoding: the frame as the gateway relayed it becomes a
//! `ClientPacket`; a body that is not one is answered `MALFORMED_PACKET`
//! (docs/PROTOCOL.md, "Errors never kill the server") and goes no
//! further. The violations layer around it counts that answer.

use std::task::{Context, Poll};

use futures::future::Either;
use gamemesh_proto::client::{ClientPacket, ErrorCode};
use gamemesh_proto::{packets, Message};
use tower::{Layer, Service};
use tracing::warn;

use crate::request::{answer_now, Answered, BoxError, HubRequest, HubResponse};

/// Adds [`Decode`].
#[derive(Debug, Clone, Default)]
pub struct DecodeLayer;

impl DecodeLayer {
    /// The layer.
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for DecodeLayer {
    type Service = Decode<S>;
    fn layer(&self, inner: S) -> Decode<S> {
        Decode { inner }
    }
}

/// Decodes `HubRequest::frame` into `HubRequest::packet`.
#[derive(Debug, Clone)]
pub struct Decode<S> {
    /// The rest of the pipeline.
    inner: S,
}

impl<S> Service<HubRequest> for Decode<S>
where
    S: Service<HubRequest, Response = HubResponse, Error = BoxError>,
{
    type Response = HubResponse;
    type Error = BoxError;
    type Future = Answered<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: HubRequest) -> Self::Future {
        // A request built decoded (tests, benches) has no frame.
        if !req.frame.is_empty() {
            match ClientPacket::decode(req.frame.clone()) {
                Ok(p) => req.packet = p,
                Err(e) => {
                    warn!("Malformed packet: Socket={}: {e}", req.conn.socket);
                    let seq = packets::peek_sequence_id(&req.frame);
                    return answer_now(HubResponse::error(
                        seq,
                        ErrorCode::MalformedPacket,
                        "body is not a ClientPacket",
                    ));
                }
            }
        }
        Either::Right(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::middleware::test_util::{echo, echo_reply, error_code};
    use bytes::Bytes;
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
