//! The violations policy ([`super::violations`]) as a layer of the
//! pipeline: it counts the answers that say a frame was not the contract
//! and kicks the connection that sends too many.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use gamemesh_node::fixed_window::{FixedWindow, Tally};
use gamemesh_proto::client::{server_packet, ErrorCode, KickReason};
use tokio::time::Instant;
use tower::{Layer, Service};
use tracing::warn;

use crate::request::{BoxError, HubRequest, HubResponse, SessionEffect};
use crate::state::HubState;

/// Adds [`Violations`].
#[derive(Clone)]
pub struct ViolationLayer {
    /// The policy and the gateway links the kick goes through.
    state: Arc<HubState>,
}

impl ViolationLayer {
    /// The layer, with `state`'s policy.
    pub fn new(state: Arc<HubState>) -> Self {
        Self { state }
    }
}

impl<S> Layer<S> for ViolationLayer {
    type Service = Violations<S>;
    fn layer(&self, inner: S) -> Violations<S> {
        Violations {
            inner,
            window: Arc::new(Mutex::new(Count {
                window: self.state.violations.counter(),
                kicked: false,
            })),
            state: self.state.clone(),
        }
    }
}

/// One connection's violations.
#[derive(Debug)]
struct Count {
    /// Recent violations.
    window: FixedWindow,
    /// The connection was kicked: what it still sends is dropped.
    kicked: bool,
}

/// Counts the answers that say a frame was not the contract
/// (`MALFORMED_PACKET`, `UNKNOWN_MESSAGE`); the one over the policy sends
/// its answer, kicks the socket (`PROTOCOL_ERROR`), and every later frame
/// of the connection is dropped unanswered.
///
/// The count is the connection's: each connection actor holds its own
/// clone of the pipeline, and a clone of this service starts a count of
/// its own (see the `Clone` impl).
pub struct Violations<S> {
    /// The rest of the pipeline.
    inner: S,
    /// This connection's count (shared with the future of the request in
    /// flight, which records into it).
    window: Arc<Mutex<Count>>,
    /// The policy and the gateway links.
    state: Arc<HubState>,
}

impl<S: Clone> Clone for Violations<S> {
    /// A new connection's: its own, empty count.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            window: Arc::new(Mutex::new(Count {
                window: self.state.violations.counter(),
                kicked: false,
            })),
            state: self.state.clone(),
        }
    }
}

fn is_violation(resp: &HubResponse) -> bool {
    matches!(
        &resp.reply.body,
        Some(server_packet::Body::Error(e))
            if e.code == ErrorCode::MalformedPacket as i32 || e.code == ErrorCode::UnknownMessage as i32
    )
}

impl<S> Service<HubRequest> for Violations<S>
where
    S: Service<HubRequest, Response = HubResponse, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = HubResponse;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<HubResponse, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: HubRequest) -> Self::Future {
        let closed = HubResponse::with_effect(Default::default(), SessionEffect::Close);
        if self.window.lock().unwrap_or_else(|p| p.into_inner()).kicked {
            // Kicked: what is still queued from the socket is dropped.
            return Box::pin(futures::future::ready(Ok(closed)));
        }
        let (conn, session) = (req.conn, req.session.as_ref().map_or(0, |s| s.session_id));
        let answer = self.inner.call(req);
        let (window, state) = (self.window.clone(), self.state.clone());
        Box::pin(async move {
            let resp = answer.await?;
            if !is_violation(&resp) {
                return Ok(resp);
            }
            let tripped = {
                let mut c = window.lock().unwrap_or_else(|p| p.into_inner());
                c.kicked = c.window.record(Instant::now()) == Tally::Tripped;
                c.kicked
            };
            if !tripped {
                return Ok(resp);
            }
            let policy = state.violations;
            warn!(
                "Protocol abuse: Socket={}: {} frames that are not the contract within {} s (--protocol-error-kick-after); kicking",
                conn.socket,
                policy.kick_after,
                policy.window.as_secs()
            );
            // The answer first, then the kick: its last frame.
            state
                .gateways
                .send_to_client(conn.gateway, &conn.socket, &resp.reply);
            state.gateways.kick(
                conn.gateway,
                &conn.socket,
                session,
                KickReason::ProtocolError,
                "too many frames that are not the contract",
            );
            Ok(closed)
        })
    }
}
