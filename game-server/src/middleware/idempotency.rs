//! Idempotency (PROTOCOL.md, "Sequence ids"): for a session, a packet whose
//! non-zero sequence id is not above the highest executed one never runs
//! again. It is answered with the reply it got the first time while the
//! session still holds it (the last `--reply-cache` replies), otherwise
//! with `DUPLICATE_SEQUENCE`. Fresh packets run, and their reply is
//! recorded with the new watermark.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready};
use gamemesh_proto::client::ErrorCode;
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::warn;

use crate::pipeline::{BoxError, HubRequest, HubResponse};
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
                Either::Left(futures::future::ready(Ok(HubResponse::reply(reply))))
            }
            SeqCheck::Duplicate => {
                warn!(
                    "Duplicate packet detected: SessionId={}, SequenceId={seq}; no cached reply held",
                    session.session_id
                );
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
        if let (Ok(resp), Some((session, seq))) = (&out, this.record.take()) {
            session.record(seq, &resp.reply);
        }
        Poll::Ready(out)
    }
}
