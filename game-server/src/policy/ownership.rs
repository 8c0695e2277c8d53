//! Ownership after a pause: a frame for a session held here runs only if
//! the session is still this game server's.
//!
//! Normally nothing needs asking: a session moves elsewhere only through
//! a hand-off this server takes part in, or after the cluster declared it
//! dead. The second also happens to a server that was merely paused
//! ([`crate::cluster::pause`]): on waking it still holds the sessions and
//! the frames the gateways sent before they gave up on it. So once per
//! pause, each session's next frame first reads its record: the same
//! session at the same epoch runs on; one that moved on is let go (ended
//! here, never saved again) and the stale frame is dropped, answered
//! `UNAVAILABLE` with "nothing happened" (the gateway has usually
//! answered it already and drops this; a re-send goes to the new owner).
//!
//! A login or resume read within a peer timeout of a pause is checked
//! too: if the user's session is already connected to this very socket on
//! another live game server, the client's re-send was served there, and
//! running this stale copy would replace or take back the session the
//! client now uses.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{BoxFuture, Either};
use gamemesh_proto::client::client_packet;
use tower::{Layer, Service};
use tracing::warn;

use crate::handlers::resume::{close_left_behind, token_user};
use crate::request::{BoxError, HubRequest, HubResponse, SessionEffect};
use crate::session::local::Attached;
use crate::session::{LocalSession, SessionRecord};
use crate::state::HubState;

/// Adds [`Ownership`].
#[derive(Clone)]
pub struct OwnershipLayer {
    /// Sessions, store, pause watch.
    state: Arc<HubState>,
}

impl OwnershipLayer {
    /// The layer over `state`'s sessions.
    pub fn new(state: Arc<HubState>) -> Self {
        Self { state }
    }
}

impl<S> Layer<S> for OwnershipLayer {
    type Service = Ownership<S>;
    fn layer(&self, inner: S) -> Ownership<S> {
        Ownership {
            inner,
            state: self.state.clone(),
        }
    }
}

/// Confirms a held session is still ours after a pause.
#[derive(Clone)]
pub struct Ownership<S> {
    /// The rest of the pipeline.
    inner: S,
    /// Sessions, store, pause watch.
    state: Arc<HubState>,
}

/// What the store says of a session held here.
enum Verdict {
    /// Still ours.
    Ours,
    /// Replaced, taken over or gone (the record as it is now): let go.
    MovedOn(Option<SessionRecord>),
    /// The store did not answer.
    Unknown(String),
}

async fn verdict(state: &HubState, session: &LocalSession) -> Verdict {
    match state.store.get(session.user_id).await {
        Ok(Some(r)) if r.session_id == session.session_id && r.epoch == session.epoch => {
            Verdict::Ours
        }
        Ok(now) => Verdict::MovedOn(now),
        Err(e) => Verdict::Unknown(e.to_string()),
    }
}

/// What a frame must have checked before it runs.
enum Check {
    /// Its socket's session, not confirmed since the last pause.
    Held(Arc<LocalSession>, u64),
    /// A login or resume of this user read right after a pause.
    Starts(u64),
}

impl<S> Ownership<S> {
    fn check_for(&self, req: &HubRequest) -> Option<Check> {
        if let Some(user_id) = starts_a_session(req) {
            return self
                .state
                .pauses
                .just_woke()
                .then_some(Check::Starts(user_id));
        }
        let generation = self.state.pauses.generation();
        match &req.session {
            // An ended session is refused by authentication anyway.
            Some(s) if s.confirmed() < generation && !s.is_ended() => {
                Some(Check::Held(s.clone(), generation))
            }
            // No pause since it was last known ours (the usual case).
            _ => None,
        }
    }
}

impl<S> Service<HubRequest> for Ownership<S>
where
    S: Service<HubRequest, Response = HubResponse, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = HubResponse;
    type Error = BoxError;
    // The usual frame (no pause since its session was confirmed) passes
    // straight through, without a boxed future of its own.
    type Future = Either<S::Future, BoxFuture<'static, Result<HubResponse, BoxError>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: HubRequest) -> Self::Future {
        let Some(check) = self.check_for(&req) else {
            return Either::Left(self.inner.call(req));
        };
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        Either::Right(Box::pin(async move {
            let seq = req.packet.sequence_id;
            let (session, generation) = match check {
                Check::Held(session, generation) => (session, generation),
                Check::Starts(user_id) => {
                    if started_elsewhere(&state, user_id, &req).await {
                        warn!(
                            "A login or resume of UserId={user_id} on Socket={} was already served by another game server while this one was paused; dropping the stale frame SequenceId={seq}",
                            req.conn.socket
                        );
                        metrics::counter!("gamemesh_stale_frames_dropped_total").increment(1);
                        return Ok(HubResponse::nothing_happened(
                            seq,
                            "served by another game server; retry",
                        ));
                    }
                    return inner.call(req).await;
                }
            };
            match verdict(&state, &session).await {
                Verdict::Ours => {
                    session.confirm(generation);
                    inner.call(req).await
                }
                Verdict::MovedOn(now) => {
                    warn!(
                        "SessionId={} (UserId={}) moved to another game server while this one was paused; dropping its stale frame SequenceId={seq}",
                        session.session_id, session.user_id
                    );
                    metrics::counter!("gamemesh_stale_frames_dropped_total").increment(1);
                    let_go(&state, &session);
                    let here = Attached {
                        session: session.clone(),
                        gateway: req.conn.gateway,
                        socket: req.conn.socket,
                    };
                    close_left_behind(&state, &here, now.as_ref());
                    let mut resp = HubResponse::nothing_happened(
                        seq,
                        "the session moved to another game server; retry",
                    );
                    resp.effect = SessionEffect::Detach;
                    Ok(resp)
                }
                Verdict::Unknown(e) => {
                    warn!(
                        "Cannot confirm SessionId={} after a pause: {e}",
                        session.session_id
                    );
                    Ok(HubResponse::nothing_happened(
                        seq,
                        "session store unavailable; retry",
                    ))
                }
            }
        }))
    }
}

/// Whether the user's session is already connected to this very socket
/// on another game server: the gateway moved the socket there and the
/// client's re-send was served, so this copy of the login or resume is a
/// stale one, read after a pause. (Whether that server is alive is not
/// asked: a process that just woke has not heard its peers for as long
/// as it slept. If it died, the gateway moves the socket on the next
/// frame and adoption takes over.) A store that does not answer leaves
/// the frame to run: it needs the store itself.
async fn started_elsewhere(state: &HubState, user_id: u64, req: &HubRequest) -> bool {
    let Ok(Some(r)) = state.store.get(user_id).await else {
        return false;
    };
    r.connected && r.placement.socket == req.conn.socket && r.placement.owner != state.node_id
}

/// The user a login or resume is for: it makes its own session (fenced
/// in the store), so the one the socket held before does not matter.
fn starts_a_session(req: &HubRequest) -> Option<u64> {
    match &req.packet.body {
        Some(client_packet::Body::Login(l)) => Some(l.user_id),
        Some(client_packet::Body::Resume(r)) => Some(token_user(&r.resume_token)),
        _ => None,
    }
}

/// Ends `session` here: out of the local index if it is still there as
/// this very session, and never saved again either way.
fn let_go(state: &HubState, session: &Arc<LocalSession>) {
    let indexed = state
        .sessions
        .get(session.session_id)
        .is_some_and(|a| Arc::ptr_eq(&a.session, session));
    if indexed {
        state.sessions.end(session.session_id);
    } else {
        session.end();
    }
}
