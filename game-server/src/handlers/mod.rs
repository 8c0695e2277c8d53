//! The router at the bottom of the pipeline: one handler per packet body,
//! one file per handler.

pub mod game;
pub mod heartbeat;
pub mod login;
pub mod logout;
pub mod resume;

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use gamemesh_proto::client::client_packet::Body;
use tower::Service;

use crate::request::{BoxError, HubRequest, HubResponse};
use crate::state::HubState;

/// Dispatches a request to its handler.
#[derive(Clone)]
pub struct Router {
    /// What handlers work with.
    state: Arc<HubState>,
}

impl Router {
    /// A router over `state`.
    pub fn new(state: Arc<HubState>) -> Self {
        Self { state }
    }
}

impl Service<HubRequest> for Router {
    type Response = HubResponse;
    type Error = BoxError;
    // Handlers await the store; boxing one future per packet is noise
    // next to that.
    type Future = BoxFuture<'static, Result<HubResponse, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: HubRequest) -> Self::Future {
        let state = self.state.clone();
        let seq = req.packet.sequence_id;
        match req.packet.body.clone() {
            Some(Body::Login(r)) => Box::pin(login::handle(state, req, r)),
            Some(Body::Resume(r)) => Box::pin(resume::handle(state, req, r)),
            Some(Body::Heartbeat(r)) => Box::pin(async move { Ok(heartbeat::handle(seq, r)) }),
            Some(Body::Logout(_)) => Box::pin(logout::handle(state, req)),
            Some(Body::Game(g)) => Box::pin(game::route(state, req, g)),
            // Everything else is a module's (echo, increment, ...), or
            // nobody's.
            other => Box::pin(game::builtin(state, req, other)),
        }
    }
}
