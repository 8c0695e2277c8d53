//! Idempotency (docs/PROTOCOL.md, "Sequence ids"): for a session, a packet whose
//! non-zero sequence id is not above the highest executed one never runs
//! again. It is answered with the reply it got the first time while the
//! session still holds it (the last `--reply-cache` replies), otherwise
//! with `DUPLICATE_SEQUENCE`. Fresh packets run, and their reply is
//! recorded with the new watermark.
//!
//! Every reply is recorded, an `UNAVAILABLE` included: a handler that
//! timed out on a room or a store may have done its work, and a re-send
//! must not do it twice. Two kinds of answer are not recorded, because
//! the packet did not execute: a reply the handler marked
//! [`HubResponse::nothing_happened`] (only the handler knows that, so it
//! says so; the re-send runs again), and a packet answered by closing the
//! socket.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready};
use gamemesh_proto::client::{server_packet, ErrorCode, ServerPacket};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::warn;

use crate::request::{BoxError, HubRequest, HubResponse, SessionEffect};
use crate::session::local::SeqCheck;
use crate::session::LocalSession;

/// Adds [`Idempotency`].
#[derive(Debug, Clone, Default)]
pub struct IdempotencyLayer;

impl IdempotencyLayer {
    /// The layer.
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = Idempotency<S>;
    fn layer(&self, inner: S) -> Idempotency<S> {
        Idempotency { inner }
    }
}

/// Deduplicates by sequence id per session.
#[derive(Debug, Clone)]
pub struct Idempotency<S> {
    /// The rest of the pipeline.
    inner: S,
}

impl<S> Service<HubRequest> for Idempotency<S>
where
    S: Service<HubRequest, Response = HubResponse, Error = BoxError>,
{
    type Response = HubResponse;
    type Error = BoxError;
    type Future = Either<Ready<Result<HubResponse, BoxError>>, RecordReply<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: HubRequest) -> Self::Future {
        let seq = req.packet.sequence_id;
        let session = match &req.session {
            Some(s) if seq != 0 => s.clone(),
            // Not deduplicated: no session yet (login, resume) or seq 0.
            _ => {
                return Either::Right(RecordReply {
                    inner: self.inner.call(req),
                    record: None,
                })
            }
        };
        match session.check(seq) {
            SeqCheck::Fresh => Either::Right(RecordReply {
                inner: self.inner.call(req),
                record: Some((session, seq)),
            }),
            SeqCheck::Replay(reply) => {
                warn!(
                    "Duplicate packet detected: SessionId={}, SequenceId={seq}; replaying the cached reply",
                    session.session_id
                );
                crate::metrics::hub().duplicates.increment(1);
                Either::Left(futures::future::ready(Ok(HubResponse::reply(reply))))
            }
            SeqCheck::Duplicate => {
                warn!(
                    "Duplicate packet detected: SessionId={}, SequenceId={seq}; no cached reply held",
                    session.session_id
                );
                crate::metrics::hub().duplicates.increment(1);
                Either::Left(futures::future::ready(Ok(HubResponse::error(
                    seq,
                    ErrorCode::DuplicateSequence,
                    format!("sequence id {seq} was already executed"),
                ))))
            }
        }
    }
}

pin_project! {
    /// Runs the handler, then records its reply under the sequence id.
    pub struct RecordReply<F> {
        #[pin]
        inner: F,
        record: Option<(Arc<LocalSession>, u64)>,
    }
}

impl<F> Future for RecordReply<F>
where
    F: Future<Output = Result<HubResponse, BoxError>>,
{
    type Output = Result<HubResponse, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(out) => out,
        };
        let (mut resp, (session, seq)) = match (out, this.record.take()) {
            (Ok(resp), Some(record)) => (resp, record),
            (out, _) => return Poll::Ready(out),
        };
        // A packet answered by closing the socket did not execute: its
        // sequence id stays fresh for the session. Nor did one whose
        // handler said nothing happened: its re-send runs again.
        if !matches!(resp.effect, SessionEffect::Close) && !resp.nothing_happened {
            mark_outcome_unknown(&mut resp.reply);
            session.record(seq, &resp.reply);
        }
        Poll::Ready(Ok(resp))
    }
}

/// An `UNAVAILABLE` kept as a sequence id's answer tells the client so
/// (`ErrorResponse.outcome_unknown`): the request may have run, and a
/// re-send gets this answer back, so re-sending it again is pointless.
fn mark_outcome_unknown(reply: &mut ServerPacket) {
    if let Some(server_packet::Body::Error(e)) = &mut reply.body {
        if e.code == ErrorCode::Unavailable as i32 {
            e.outcome_unknown = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::middleware::test_util::{echo, echo_reply, error_code, session};
    use tower_test::mock;

    #[tokio::test]
    async fn a_fresh_sequence_runs_and_a_resent_one_replays_without_running() {
        let (svc, mut handle) = mock::pair::<HubRequest, HubResponse>();
        let mut svc = IdempotencyLayer::new().layer(svc);
        let s = session();
        handle.allow(1);
        let call = spawn_call(&svc, echo(7, b"first", Some(s.clone())));
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(req.packet.sequence_id, 7);
        send.send_response(echo_reply(7, b"first"));
        assert_eq!(call.await.unwrap().reply, echo_reply(7, b"first").reply);

        // Re-sent with other data: the inner service is NOT called again.
        handle.allow(0);
        let replay = svc.call(echo(7, b"second", Some(s.clone()))).await.unwrap();
        assert_eq!(replay.reply, echo_reply(7, b"first").reply);
        assert_eq!(s.last_executed(), 7);
    }

    #[tokio::test]
    async fn an_executed_sequence_without_a_cached_reply_is_a_duplicate() {
        let (svc, mut handle) = mock::pair::<HubRequest, HubResponse>();
        let mut svc = IdempotencyLayer::new().layer(svc);
        handle.allow(0);
        // Resumed at watermark 10 with no replies held.
        let s = Arc::new(LocalSession::new(1, 1, 1, 10, Vec::new(), 0, 32));
        let resp = svc.call(echo(9, b"x", Some(s))).await.unwrap();
        assert_eq!(error_code(&resp), Some(ErrorCode::DuplicateSequence as i32));
    }

    #[tokio::test]
    async fn sequence_zero_and_sessionless_packets_are_not_deduplicated() {
        let (svc, mut handle) = mock::pair::<HubRequest, HubResponse>();
        let mut svc = IdempotencyLayer::new().layer(svc);
        let s = session();
        for data in [b"a", b"b"] {
            let req = echo(0, data, Some(s.clone()));
            answered(&mut svc, &mut handle, req, echo_reply(0, data)).await;
        }
        assert_eq!(s.last_executed(), 0, "seq 0 moves no watermark");
    }

    /// Runs `req` through `svc`, answering it with `resp` on `handle`.
    async fn answered(
        svc: &mut Idempotency<mock::Mock<HubRequest, HubResponse>>,
        handle: &mut mock::Handle<HubRequest, HubResponse>,
        req: HubRequest,
        resp: HubResponse,
    ) -> HubResponse {
        handle.allow(1);
        let call = spawn_call(svc, req);
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response(resp);
        call.await.unwrap()
    }

    /// Calls (a clone of) `svc` with `req` on a task of its own, once it is
    /// ready, so the test can answer the call on the mock's handle.
    fn spawn_call(
        svc: &Idempotency<mock::Mock<HubRequest, HubResponse>>,
        req: HubRequest,
    ) -> tokio::task::JoinHandle<HubResponse> {
        let mut svc = svc.clone();
        tokio::spawn(async move {
            futures::future::poll_fn(|cx| svc.poll_ready(cx))
                .await
                .unwrap();
            svc.call(req).await.unwrap()
        })
    }

    #[tokio::test]
    async fn an_unavailable_that_may_have_happened_is_replayed_not_run_again() {
        let (svc, mut handle) = mock::pair::<HubRequest, HubResponse>();
        let mut svc = IdempotencyLayer::new().layer(svc);
        let s = session();
        let maybe = HubResponse::error(5, ErrorCode::Unavailable, "room did not answer");
        let first = answered(&mut svc, &mut handle, echo(5, b"x", Some(s.clone())), maybe).await;
        assert_eq!(s.last_executed(), 5, "recorded");
        assert!(outcome_unknown(&first), "the client is told: {first:?}");

        // The re-send does not reach the handler: the mock allows no call.
        handle.allow(0);
        let replay = svc.call(echo(5, b"x", Some(s))).await.unwrap();
        assert_eq!(replay.reply, first.reply);
    }

    fn outcome_unknown(resp: &HubResponse) -> bool {
        matches!(&resp.reply.body, Some(server_packet::Body::Error(e)) if e.outcome_unknown)
    }

    #[tokio::test]
    async fn a_reply_marked_nothing_happened_is_not_recorded_and_the_resend_runs() {
        let (svc, mut handle) = mock::pair::<HubRequest, HubResponse>();
        let mut svc = IdempotencyLayer::new().layer(svc);
        let s = session();
        let nothing = HubResponse::nothing_happened(5, "store down");
        let first = answered(
            &mut svc,
            &mut handle,
            echo(5, b"x", Some(s.clone())),
            nothing,
        )
        .await;
        assert_eq!(error_code(&first), Some(ErrorCode::Unavailable as i32));
        assert!(!outcome_unknown(&first), "{first:?}");
        assert_eq!(s.last_executed(), 0, "not recorded");

        let resent = answered(
            &mut svc,
            &mut handle,
            echo(5, b"x", Some(s.clone())),
            echo_reply(5, b"x"),
        )
        .await;
        assert_eq!(resent.reply, echo_reply(5, b"x").reply, "ran again");
        assert_eq!(s.last_executed(), 5);
    }

    #[tokio::test]
    async fn a_packet_answered_by_closing_the_socket_is_not_recorded() {
        let (svc, mut handle) = mock::pair::<HubRequest, HubResponse>();
        let mut svc = IdempotencyLayer::new().layer(svc);
        let s = session();
        let mut closed = echo_reply(3, b"x");
        closed.effect = SessionEffect::Close;
        answered(
            &mut svc,
            &mut handle,
            echo(3, b"x", Some(s.clone())),
            closed,
        )
        .await;
        assert_eq!(s.last_executed(), 0, "nothing executed");
    }
}
