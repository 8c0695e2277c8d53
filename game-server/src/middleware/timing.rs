//! Timing: measures the handler (everything below this layer), logs
//! `Packet processed` at TRACE and records the duration, in [`Timings`]
//! and in `gamemesh_game_server_handler_seconds{kind}`; it also counts
//! logins and resumes by result, since it sees both kind and reply.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use gamemesh_proto::client::server_packet;
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::trace;
use uuid::Uuid;

use crate::pipeline::{BoxError, HubRequest, HubResponse};

/// Handler time totals, read by tests and the metrics endpoint.
#[derive(Debug, Default)]
pub struct Timings {
    /// Packets timed.
    pub count: AtomicU64,
    /// Sum of their durations, in nanoseconds.
    pub total_nanos: AtomicU64,
    /// Longest one, in nanoseconds.
    pub max_nanos: AtomicU64,
}

impl Timings {
    fn record(&self, nanos: u64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.total_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.max_nanos.fetch_max(nanos, Ordering::Relaxed);
    }
}

/// Adds [`Timing`].
#[derive(Debug, Clone)]
pub struct TimingLayer {
    /// Where durations go.
    timings: Arc<Timings>,
}

impl TimingLayer {
    /// A layer recording into `timings`.
    pub fn new(timings: Arc<Timings>) -> Self {
        Self { timings }
    }
}

impl<S> Layer<S> for TimingLayer {
    type Service = Timing<S>;
    fn layer(&self, inner: S) -> Timing<S> {
        Timing {
            inner,
            timings: self.timings.clone(),
        }
    }
}

/// Measures the rest of the pipeline.
#[derive(Debug, Clone)]
pub struct Timing<S> {
    /// The rest of the pipeline.
    inner: S,
    /// Where durations go.
    timings: Arc<Timings>,
}

impl<S> Service<HubRequest> for Timing<S>
where
    S: Service<HubRequest, Response = HubResponse, Error = BoxError>,
{
    type Response = HubResponse;
    type Error = BoxError;
    type Future = Timed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: HubRequest) -> Self::Future {
        let socket = req.conn.socket;
        let kind = req.kind();
        Timed {
            inner: self.inner.call(req),
            start: Instant::now(),
            socket,
            kind,
            timings: self.timings.clone(),
        }
    }
}

pin_project! {
    /// Response future of [`Timing`].
    pub struct Timed<F> {
        #[pin]
        inner: F,
        start: Instant,
        socket: Uuid,
        kind: &'static str,
        timings: Arc<Timings>,
    }
}

impl<F> Future for Timed<F>
where
    F: Future<Output = Result<HubResponse, BoxError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let out = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(out) => out,
        };
        let elapsed = this.start.elapsed();
        this.timings.record(elapsed.as_nanos() as u64);
        trace!(
            "Packet processed: Socket={}, Elapsed={:.3}ms",
            this.socket,
            elapsed.as_secs_f64() * 1000.0
        );
        let metrics = crate::metrics::hub();
        metrics.handler(this.kind).record(elapsed.as_secs_f64());
        let results = match *this.kind {
            "login" => Some((&metrics.logins_ok, &metrics.logins_failed)),
            "resume" => Some((&metrics.resumes_ok, &metrics.resumes_failed)),
            _ => None,
        };
        if let Some((ok, failed)) = results {
            let refused = !matches!(&out, Ok(r) if !matches!(r.reply.body, Some(server_packet::Body::Error(_))));
            if refused { failed } else { ok }.increment(1);
        }
        Poll::Ready(out)
    }
}
