//! The one place the hub's tower pipeline is composed. What flows through
//! it is defined in [`crate::request`].

use std::sync::Arc;

use tower::util::BoxCloneService;
use tower::ServiceBuilder;

use crate::handlers::Router;
use crate::middleware::{
    measured, AuthenticationLayer, ExceptionLayer, IdempotencyLayer, LoggingLayer, TimingLayer,
};
use crate::policy::adoption::AdoptionLayer;
use crate::policy::decode::DecodeLayer;
use crate::policy::login_limits::{LoginLimitLayer, LoginLimits};
use crate::policy::ownership::OwnershipLayer;
use crate::policy::violation_layer::ViolationLayer;
use crate::request::{BoxError, HubRequest, HubResponse};
use crate::state::HubState;

/// The pipeline as one cloneable service. Each connection actor holds a
/// clone, and a clone is a connection's own: the violations layer keeps
/// its count in it.
pub type HubService = BoxCloneService<HubRequest, HubResponse, BoxError>;

/// Number of middlewares in [`build`], for the start-up log line.
pub const MIDDLEWARE_COUNT: usize = 10;

/// Composes the pipeline, outermost first: violations count the frames
/// that are not the contract (and kick the connection that sends too
/// many); decode turns the frame into a `ClientPacket` (or answers
/// `MALFORMED_PACKET`); exception handling catches whatever fails below
/// it (below decode, so its `INTERNAL` carries the request's sequence id;
/// the two layers above it run no handler code); logging opens the span
/// every later line is in; adoption takes over the
/// session a re-routed socket is pinned to; ownership confirms, after
/// this process was paused, that a held session is still ours (and drops
/// the stale frames of one that moved on); the login limits refuse
/// logins over their rate; authentication refuses session-only packets
/// from sockets without a session; idempotency answers re-sent sequence
/// ids without running them; timing measures the handler alone; the
/// router picks the handler. Each middleware above timing is `measured`
/// (its time, cumulative, in `gamemesh_game_server_middleware_seconds`).
pub fn build(state: Arc<HubState>, login_limits: Arc<LoginLimits>) -> HubService {
    let stack = ServiceBuilder::new()
        .layer(measured("violations", ViolationLayer::new(state.clone())))
        .layer(measured("decode", DecodeLayer::new()))
        .layer(measured("exception", ExceptionLayer::new()))
        .layer(measured("logging", LoggingLayer::new()))
        .layer(measured("adoption", AdoptionLayer::new(state.clone())))
        .layer(measured("ownership", OwnershipLayer::new(state.clone())))
        .layer(measured("login_limits", LoginLimitLayer::new(login_limits)))
        .layer(measured("authentication", AuthenticationLayer::new()))
        .layer(measured("idempotency", IdempotencyLayer::new()))
        .layer(TimingLayer::new())
        .service(Router::new(state));
    BoxCloneService::new(stack)
}
