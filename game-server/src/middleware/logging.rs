//! Logging: every packet runs inside a tracing span naming its socket,
//! session and sequence id, so each line a handler logs says whose packet
//! it was.

use std::task::{Context, Poll};

use tower::{Layer, Service};
use tracing::instrument::Instrumented;
use tracing::{debug_span, Instrument};

use crate::request::{BoxError, HubRequest, HubResponse};

/// Adds [`Logging`].
#[derive(Debug, Clone, Default)]
pub struct LoggingLayer;

impl LoggingLayer {
    /// The layer.
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for LoggingLayer {
    type Service = Logging<S>;
    fn layer(&self, inner: S) -> Logging<S> {
        Logging { inner }
    }
}

/// Wraps each request's processing in a span.
#[derive(Debug, Clone)]
pub struct Logging<S> {
    /// The rest of the pipeline.
    inner: S,
}

impl<S> Service<HubRequest> for Logging<S>
where
    S: Service<HubRequest, Response = HubResponse, Error = BoxError>,
{
    type Response = HubResponse;
    type Error = BoxError;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: HubRequest) -> Self::Future {
        // DEBUG: at the default INFO level the span costs one level check.
        let span = debug_span!(
            "packet",
            socket = %req.conn.socket,
            gateway = req.conn.gateway,
            session = req.session.as_ref().map_or(0, |s| s.session_id),
            seq = req.packet.sequence_id,
            kind = req.kind(),
        );
        let _enter = span.enter();
        self.inner.call(req).instrument(span.clone())
    }
}
