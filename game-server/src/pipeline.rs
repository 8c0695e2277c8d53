//! The one place the hub's tower pipeline is composed. What flows through
//! it is defined in [`crate::request`].

use std::sync::Arc;

use tower::util::BoxCloneService;
use tower::ServiceBuilder;

use crate::handlers::Router;
use crate::middleware::{
    measured, AuthenticationLayer, ExceptionLayer, IdempotencyLayer, LoggingLayer, TimingLayer,
};
use crate::request::{BoxError, HubRequest, HubResponse};
use crate::state::HubState;

/// The pipeline as one cloneable service; each connection actor holds a
/// clone.
pub type HubService = BoxCloneService<HubRequest, HubResponse, BoxError>;

/// Number of middlewares in [`build`], for the start-up log line.
pub const MIDDLEWARE_COUNT: usize = 5;

/// Composes the pipeline, outermost first: exception handling catches
/// whatever fails below it; logging opens the span every later line is
/// in; authentication refuses session-only packets from sockets without a
/// session; idempotency answers re-sent sequence ids without running them;
/// timing measures the handler alone; the router picks the handler. Each
/// middleware above timing is `measured` (its time, cumulative, in
/// `gamemesh_game_server_middleware_seconds`).
pub fn build(state: Arc<HubState>) -> HubService {
    let stack = ServiceBuilder::new()
        .layer(measured("exception", ExceptionLayer::new()))
        .layer(measured("logging", LoggingLayer::new()))
        .layer(measured("authentication", AuthenticationLayer::new()))
        .layer(measured("idempotency", IdempotencyLayer::new()))
        .layer(TimingLayer::new())
        .service(Router::new(state));
    BoxCloneService::new(stack)
}
