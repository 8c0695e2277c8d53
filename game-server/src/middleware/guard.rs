//! Guard: the one layer for every check that looks at a frame and either
//! lets it on (perhaps amended) or answers it on the spot, without calling
//! the layers inside. Decoding, the login limits and authentication are
//! such checks ([`Admit`] implementations); each keeps only its check, and
//! this file the tower `Layer` and `Service` they share.
//!
//! A passed frame goes through without a boxed future of its own: the
//! response future is [`Answered`], either the ready answer or the inner
//! service's future.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{ready, Either, Ready};
use tower::{Layer, Service};

use crate::request::{BoxError, HubRequest, HubResponse};

/// The future of a [`Guard`]: answered on the spot (`Left`), or whatever
/// the layers inside answer (`Right`).
pub type Answered<F> = Either<Ready<Result<HubResponse, BoxError>>, F>;

/// What a guard checks.
pub trait Admit {
    /// The answer that ends `req` here, if the check refuses it; `None`
    /// lets it on (with any change the check made to it).
    fn refusal(&self, req: &mut HubRequest) -> Option<HubResponse>;
}

/// A check shared with the rest of the process (the login limits' buckets).
impl<A: Admit + ?Sized> Admit for Arc<A> {
    fn refusal(&self, req: &mut HubRequest) -> Option<HubResponse> {
        (**self).refusal(req)
    }
}

/// Adds a [`Guard`] running `C`.
#[derive(Debug, Clone, Default)]
pub struct GuardLayer<C> {
    /// The check, cloned into each service.
    check: C,
}

impl<C> GuardLayer<C> {
    /// The layer running `check`.
    pub const fn with(check: C) -> Self {
        Self { check }
    }
}

impl<S, C: Clone> Layer<S> for GuardLayer<C> {
    type Service = Guard<C, S>;
    fn layer(&self, inner: S) -> Guard<C, S> {
        Guard {
            check: self.check.clone(),
            inner,
        }
    }
}

/// Runs its check on each request; only a passed one reaches `inner`.
#[derive(Debug, Clone)]
pub struct Guard<C, S> {
    /// The check.
    check: C,
    /// The rest of the pipeline.
    inner: S,
}

impl<C, S> Service<HubRequest> for Guard<C, S>
where
    C: Admit,
    S: Service<HubRequest, Response = HubResponse, Error = BoxError>,
{
    type Response = HubResponse;
    type Error = BoxError;
    type Future = Answered<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: HubRequest) -> Self::Future {
        match self.check.refusal(&mut req) {
            None => Either::Right(self.inner.call(req)),
            Some(answer) => Either::Left(ready(Ok(answer))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::middleware::test_util::{echo, echo_reply, error_code};
    use gamemesh_proto::client::ErrorCode;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::ServiceExt;

    /// Refuses odd sequence ids and bumps even ones.
    #[derive(Clone)]
    struct EvenOnly;

    impl Admit for EvenOnly {
        fn refusal(&self, req: &mut HubRequest) -> Option<HubResponse> {
            if req.packet.sequence_id % 2 == 1 {
                return Some(HubResponse::error(
                    req.packet.sequence_id,
                    ErrorCode::RateLimited,
                    "odd",
                ));
            }
            req.packet.sequence_id += 100;
            None
        }
    }

    #[tokio::test]
    async fn a_refused_request_never_reaches_inner_and_a_passed_one_arrives_amended() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let svc = GuardLayer::with(EvenOnly).layer(tower::service_fn(move |req: HubRequest| {
            seen.fetch_add(1, Ordering::SeqCst);
            futures::future::ready(Ok::<_, BoxError>(echo_reply(req.packet.sequence_id, b"ok")))
        }));
        let resp = svc.clone().oneshot(echo(1, b"x", None)).await.unwrap();
        assert_eq!(error_code(&resp), Some(ErrorCode::RateLimited as i32));
        assert_eq!(resp.reply.sequence_id, 1);
        assert_eq!(calls.load(Ordering::SeqCst), 0, "refused before inner");
        let resp = svc.oneshot(echo(2, b"x", None)).await.unwrap();
        assert_eq!(error_code(&resp), None);
        assert_eq!(resp.reply.sequence_id, 102, "inner saw the amended request");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
