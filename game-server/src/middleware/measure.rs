//! Measure: records how long one middleware (and everything below it)
//! took, into `gamemesh_game_server_middleware_seconds{middleware}`.
//!
//! It wraps each middleware in [`crate::pipeline::build`], so the stack
//! gives one cumulative time per layer: a middleware's own cost is its
//! time minus the next one's. The histogram handle is registered once,
//! when the pipeline is built.
//!
//! **Sampled.** Timing every packet through four layers doubled the
//! pipeline's cost in `benches/pipeline.rs` (two clock reads and a
//! histogram sample per layer, ~65 ns each). One packet in
//! [`SAMPLE_EVERY`] per connection is timed instead (the first one
//! included); the others cost a counter increment. The distribution stays
//! right; the histogram's `_count` is about 1/16 of the packets (the
//! packet counts are in `gamemesh_game_server_packets_in_total` and the
//! per-kind handler histogram, which times every packet).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use metrics::Histogram;
use pin_project_lite::pin_project;
use tower::layer::util::Stack;
use tower::{Layer, Service};

/// One packet in this many (per connection) is timed.
pub const SAMPLE_EVERY: u32 = 16;

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
            until_sample: 0,
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
    /// Calls until the next timed one (this clone's: one per connection
    /// actor); 0 times the next call.
    until_sample: u32,
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
        let sampled = self.until_sample == 0;
        self.until_sample = if sampled {
            SAMPLE_EVERY - 1
        } else {
            self.until_sample - 1
        };
        Measured {
            timer: sampled.then(|| (Instant::now(), self.histogram.clone())),
            inner: self.inner.call(req),
        }
    }
}

pin_project! {
    /// Response future of [`Measure`].
    pub struct Measured<F> {
        #[pin]
        inner: F,
        timer: Option<(Instant, Histogram)>,
    }
}

impl<F: Future> Future for Measured<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let Some((start, histogram)) = this.timer.take() {
            histogram.record(start.elapsed().as_secs_f64());
        }
        Poll::Ready(out)
    }
}
