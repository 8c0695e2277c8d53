//! Timing: measures the handler (everything below this layer), logs
//! `Packet processed` at TRACE and records the duration in
//! `gamemesh_game_server_handler_seconds{kind}`; it also counts
//! logins and resumes by result, since it sees both kind and reply.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use gamemesh_proto::client::server_packet;
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::trace;
use uuid::Uuid;

use crate::request::{BoxError, HubRequest, HubResponse};

/// Adds [`Timing`].
#[derive(Debug, Clone, Default)]
pub struct TimingLayer;

impl TimingLayer {
    /// A layer recording into the process's metrics.
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for TimingLayer {
    type Service = Timing<S>;
    fn layer(&self, inner: S) -> Timing<S> {
        Timing { inner }
    }
}

/// Measures the rest of the pipeline.
#[derive(Debug, Clone)]
pub struct Timing<S> {
    /// The rest of the pipeline.
    inner: S,
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
