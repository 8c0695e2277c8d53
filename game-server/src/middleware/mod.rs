//! The hub's tower middlewares, one file each, composed in
//! [`crate::pipeline::build`].

pub mod authentication;
pub mod exception;
pub mod guard;
pub mod idempotency;
pub mod logging;
pub mod measure;
pub mod timing;

pub use authentication::AuthenticationLayer;
pub use exception::ExceptionLayer;
pub use guard::GuardLayer;
pub use idempotency::IdempotencyLayer;
pub use logging::LoggingLayer;
pub use measure::{measured, MeasureLayer};
pub use timing::TimingLayer;

#[cfg(test)]
pub(crate) mod test_util {
    //! Requests and replies for middleware tests.
    use std::sync::Arc;

    use bytes::Bytes;
    use gamemesh_proto::client::{
        client_packet, server_packet, ClientPacket, EchoRequest, EchoResponse, ServerPacket,
    };
    use uuid::Uuid;

    use crate::request::{ConnInfo, HubRequest, HubResponse};
    use crate::session::LocalSession;

    pub fn session() -> Arc<LocalSession> {
        Arc::new(LocalSession::new(1, 1, 1, 0, Vec::new(), 0, 32))
    }

    pub fn echo(seq: u64, data: &'static [u8], session: Option<Arc<LocalSession>>) -> HubRequest {
        HubRequest::decoded(
            ConnInfo {
                gateway: 1,
                socket: Uuid::nil(),
            },
            session,
            ClientPacket {
                sequence_id: seq,
                body: Some(client_packet::Body::Echo(EchoRequest {
                    data: Bytes::from_static(data),
                })),
            },
        )
    }

    pub fn echo_reply(seq: u64, data: &'static [u8]) -> HubResponse {
        HubResponse::reply(ServerPacket {
            sequence_id: seq,
            body: Some(server_packet::Body::Echo(EchoResponse {
                data: Bytes::from_static(data),
            })),
        })
    }

    pub fn error_code(resp: &HubResponse) -> Option<i32> {
        match &resp.reply.body {
            Some(server_packet::Body::Error(e)) => Some(e.code),
            _ => None,
        }
    }
}
