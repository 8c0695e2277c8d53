//! Measure: records how long one middleware (and everything below it)
//! took, into `gamemesh_game_server_middleware_seconds{middleware}`.
//!
//! It wraps each middleware in [`crate::pipeline::build`], so the stack
//! gives one cumulative time per layer: a middleware's own cost is its
//! time minus the next one's. The histogram handle is registered once,
//! when the pipeline is built; a packet costs two clock reads and one
//! histogram sample per layer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use metrics::Histogram;
use pin_project_lite::pin_project;
use tower::layer::util::Stack;
use tower::{Layer, Service};

/// Wraps `layer` so the time spent in it is recorded under `name`.
pub fn measured<L>(name: &'static str, layer: L) -> Stack<L, MeasureLayer> {
    Stack::new(layer, MeasureLayer::new(name))
}

/// Adds [`Measure`].
#[derive(Debug, Clone)]
pub struct MeasureLayer {
    /// Where durations go.
    histogram: Histogram,
}

impl MeasureLayer {
    /// A layer recording into the middleware histogram labelled `name`.
    pub fn new(name: &'static str) -> Self {
        Self {
            histogram: crate::metrics::middleware(name),
        }
    }
}

impl<S> Layer<S> for MeasureLayer {
    type Service = Measure<S>;
    fn layer(&self, inner: S) -> Measure<S> {
        Measure {
            inner,
            histogram: self.histogram.clone(),
        }
    }
}

/// Times the service it wraps.
#[derive(Debug, Clone)]
pub struct Measure<S> {
    /// The measured middleware.
    inner: S,
    /// Where durations go.
    histogram: Histogram,
}

impl<S, Req> Service<Req> for Measure<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Measured<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        Measured {
            inner: self.inner.call(req),
            start: Instant::now(),
            histogram: self.histogram.clone(),
        }
    }
}

pin_project! {
    /// Response future of [`Measure`].
    pub struct Measured<F> {
        #[pin]
        inner: F,
        start: Instant,
        histogram: Histogram,
    }
}

impl<F: Future> Future for Measured<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        this.histogram.record(this.start.elapsed().as_secs_f64());
        Poll::Ready(out)
    }
}
