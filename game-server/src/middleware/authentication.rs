//! Authentication: a socket with no session may only log in, resume or
//! heartbeat; anything else is answered `NOT_AUTHENTICATED` and the
//! connection stays open (docs/PROTOCOL.md, "Login").

use gamemesh_proto::client::{client_packet::Body, ErrorCode};

use super::guard::{Admit, GuardLayer};
use crate::request::{HubRequest, HubResponse};

/// Adds the authentication check to the pipeline.
pub type AuthenticationLayer = GuardLayer<Authenticate>;

impl AuthenticationLayer {
    /// The layer.
    pub const fn new() -> Self {
        Self::with(Authenticate)
    }
}

/// Refuses session-only packets from sockets without a live session.
#[derive(Debug, Clone, Copy, Default)]
pub struct Authenticate;

/// True for the bodies an unauthenticated socket may send. An empty body
/// passes so the router can answer `UNKNOWN_MESSAGE`, which says more.
fn allowed_without_session(body: &Option<Body>) -> bool {
    matches!(
        body,
        None | Some(Body::Login(_)) | Some(Body::Resume(_)) | Some(Body::Heartbeat(_))
    )
}

impl Admit for Authenticate {
    fn refusal(&self, req: &mut HubRequest) -> Option<HubResponse> {
        // A session replaced or taken over elsewhere no longer authorises
        // this socket.
        if req.session.as_ref().is_some_and(|s| s.is_ended()) {
            req.session = None;
        }
        if req.session.is_none() && !allowed_without_session(&req.packet.body) {
            return Some(HubResponse::error(
                req.packet.sequence_id,
                ErrorCode::NotAuthenticated,
                "log in or resume first",
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::middleware::test_util::{echo, echo_reply, error_code, session};
    use crate::request::BoxError;
    use tower::{Layer, Service, ServiceExt};

    fn echo_service() -> impl Service<
        HubRequest,
        Response = HubResponse,
        Error = BoxError,
        Future = futures::future::Ready<Result<HubResponse, BoxError>>,
    > + Clone {
        tower::service_fn(|req: HubRequest| {
            futures::future::ready(Ok(echo_reply(req.packet.sequence_id, b"ok")))
        })
    }

    #[tokio::test]
    async fn session_only_packets_need_a_session() {
        let svc = AuthenticationLayer::new().layer(echo_service());
        let resp = svc.clone().oneshot(echo(1, b"x", None)).await.unwrap();
        assert_eq!(error_code(&resp), Some(ErrorCode::NotAuthenticated as i32));
        let resp = svc.oneshot(echo(2, b"x", Some(session()))).await.unwrap();
        assert_eq!(error_code(&resp), None);
    }

    #[tokio::test]
    async fn an_ended_session_no_longer_authorises() {
        let s = session();
        s.end();
        let resp = AuthenticationLayer::new()
            .layer(echo_service())
            .oneshot(echo(1, b"x", Some(s)))
            .await
            .unwrap();
        assert_eq!(error_code(&resp), Some(ErrorCode::NotAuthenticated as i32));
    }
}
