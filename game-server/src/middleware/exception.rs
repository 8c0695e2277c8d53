//! Exception handling: a handler that fails or panics answers
//! `ErrorResponse{INTERNAL}` for that request only; the session and the
//! server go on.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::{CatchUnwind, Either, Ready};
use futures::FutureExt;
use gamemesh_proto::client::ErrorCode;
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::error;

use crate::request::{BoxError, HubRequest, HubResponse};

/// Adds [`Exception`].
#[derive(Debug, Clone, Default)]
pub struct ExceptionLayer;

impl ExceptionLayer {
    /// The layer.
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for ExceptionLayer {
    type Service = Exception<S>;
    fn layer(&self, inner: S) -> Exception<S> {
        Exception { inner }
    }
}

/// Turns errors and panics below it into `INTERNAL` replies.
#[derive(Debug, Clone)]
pub struct Exception<S> {
    /// The rest of the pipeline.
    inner: S,
}

fn internal(sequence_id: u64) -> HubResponse {
    HubResponse::error(
        sequence_id,
        ErrorCode::Internal,
        "the request failed; the session goes on",
    )
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

impl<S> Service<HubRequest> for Exception<S>
where
    S: Service<HubRequest, Response = HubResponse, Error = BoxError>,
{
    type Response = HubResponse;
    type Error = BoxError;
    type Future = ExceptionFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: HubRequest) -> Self::Future {
        let sequence_id = req.packet.sequence_id;
        let kind = req.kind();
        // A panic while *building* the future is caught as well.
        let inner = match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(fut) => Either::Left(AssertUnwindSafe(fut).catch_unwind()),
            Err(p) => {
                error!(
                    "Handler panicked: Kind={kind}, SequenceId={sequence_id}: {}",
                    panic_text(&*p)
                );
                Either::Right(futures::future::ready(Ok(Ok(internal(sequence_id)))))
            }
        };
        ExceptionFuture {
            inner,
            sequence_id,
            kind,
        }
    }
}

/// What a caught future yields: the handler's result, or its panic.
type Caught = Result<Result<HubResponse, BoxError>, Box<dyn std::any::Any + Send>>;

pin_project! {
    /// Response future of [`Exception`].
    pub struct ExceptionFuture<F> {
        #[pin]
        inner: Either<CatchUnwind<AssertUnwindSafe<F>>, Ready<Caught>>,
        sequence_id: u64,
        kind: &'static str,
    }
}

impl<F> Future for ExceptionFuture<F>
where
    F: Future<Output = Result<HubResponse, BoxError>>,
{
    type Output = Result<HubResponse, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let seq = *this.sequence_id;
        let kind = *this.kind;
        let out = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(out) => out,
        };
        Poll::Ready(Ok(match out {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => {
                error!("Handler failed: Kind={kind}, SequenceId={seq}: {e}");
                internal(seq)
            }
            Err(p) => {
                error!(
                    "Handler panicked: Kind={kind}, SequenceId={seq}: {}",
                    panic_text(&*p)
                );
                internal(seq)
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::middleware::test_util::{echo, error_code};
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_handler_error_becomes_internal_for_that_request() {
        let failing = tower::service_fn(|_req: HubRequest| async {
            Err::<HubResponse, BoxError>("boom".into())
        });
        let resp = ExceptionLayer::new()
            .layer(failing)
            .oneshot(echo(3, b"x", None))
            .await
            .unwrap();
        assert_eq!(resp.reply.sequence_id, 3);
        assert_eq!(error_code(&resp), Some(ErrorCode::Internal as i32));
    }

    #[tokio::test]
    async fn a_panicking_handler_becomes_internal() {
        let panicking = tower::service_fn(|_req: HubRequest| async {
            if true {
                panic!("handler bug");
            }
            Ok::<HubResponse, BoxError>(HubResponse::error(0, ErrorCode::Unspecified, ""))
        });
        let resp = ExceptionLayer::new()
            .layer(panicking)
            .oneshot(echo(4, b"x", None))
            .await
            .unwrap();
        assert_eq!(resp.reply.sequence_id, 4);
        assert_eq!(error_code(&resp), Some(ErrorCode::Internal as i32));
    }
}
