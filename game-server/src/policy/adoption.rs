//! Adoption: a frame pinned to a session this game server does not hold
//! for the socket (its owner died and the gateway re-routed the socket
//! here) takes the session over before it runs, so the client carries on
//! where it was, sequence ids and reply cache included. The gateway's pin
//! proves the socket holds the session, so no token is asked.
//!
//! The connection actor says when a frame needs it ([`HubRequest::adopt`]:
//! the pin names a session the socket does not hold and has not left);
//! this layer does it: the session held here for this very socket, or
//! taken over from the store ([`crate::handlers::resume::adopt`]). A
//! session that no longer exists gets the socket kicked
//! (`SESSION_EXPIRED`); a store that does not answer, `UNAVAILABLE` for
//! this frame.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use gamemesh_proto::client::KickReason;
use tower::{Layer, Service};
use tracing::warn;

use crate::handlers::resume::{adopt, MoveError};
use crate::request::{BoxError, HubRequest, HubResponse, SessionEffect};
use crate::state::HubState;

/// Adds [`Adoption`].
#[derive(Clone)]
pub struct AdoptionLayer {
    /// Sessions, store, gateways.
    state: Arc<HubState>,
}

impl AdoptionLayer {
    /// The layer over `state`'s sessions.
    pub fn new(state: Arc<HubState>) -> Self {
        Self { state }
    }
}

impl<S> Layer<S> for AdoptionLayer {
    type Service = Adoption<S>;
    fn layer(&self, inner: S) -> Adoption<S> {
        Adoption {
            inner,
            state: self.state.clone(),
        }
    }
}

/// Takes over the session a frame is pinned to, when it must.
#[derive(Clone)]
pub struct Adoption<S> {
    /// The rest of the pipeline.
    inner: S,
    /// Sessions, store, gateways.
    state: Arc<HubState>,
}

impl<S> Service<HubRequest> for Adoption<S>
where
    S: Service<HubRequest, Response = HubResponse, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = HubResponse;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<HubResponse, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: HubRequest) -> Self::Future {
        let Some(pin) = req.adopt.take() else {
            return Box::pin(self.inner.call(req));
        };
        // The inner service was made ready for this call: take it, and
        // leave a fresh clone for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        Box::pin(async move {
            let conn = req.conn;
            let seq = req.packet.sequence_id;
            let session = match state.sessions.get(pin.session_id) {
                Some(a) if a.socket == conn.socket => a.session,
                _ => match adopt(&state, conn, pin.user_id, pin.session_id).await {
                    Ok(s) => s,
                    Err(MoveError::NotFound) => {
                        warn!(
                            "Frame for unknown session: SessionId={}, Socket={}; kicking",
                            pin.session_id, conn.socket
                        );
                        // The kick names the session, so a gateway that
                        // moved the socket elsewhere meanwhile ignores it.
                        state.gateways.kick(
                            conn.gateway,
                            &conn.socket,
                            pin.session_id,
                            KickReason::SessionExpired,
                            "the session no longer exists; log in again",
                        );
                        return Ok(HubResponse::with_effect(
                            Default::default(),
                            SessionEffect::Close,
                        ));
                    }
                    Err(MoveError::Store(e)) => {
                        warn!("Adoption of SessionId={} failed: {e}", pin.session_id);
                        // The packet did not run: its re-send may.
                        return Ok(HubResponse::nothing_happened(
                            seq,
                            "session store unavailable; retry",
                        ));
                    }
                },
            };
            req.session = Some(session.clone());
            let mut resp = inner.call(req).await?;
            // The socket holds the adopted session from now on, unless the
            // packet itself changed that (a logout, a login).
            if matches!(resp.effect, SessionEffect::None) {
                resp.effect = SessionEffect::Attach(session);
            }
            Ok(resp)
        })
    }
}
