//! The small HTTP/1 server behind the node's admin port and the test
//! client's web page: accepts until shutdown, one task per connection on
//! the caller's tracker, each answered by `respond`. Both need the same
//! care (an accept error waits instead of spinning; a connection ends with
//! the shutdown), so it is written once.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A whole response.
pub type Reply = Response<Full<Bytes>>;

/// Serves `listener` until `shutdown`; `what` names the server in log lines.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    what: &'static str,
    respond: F,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Reply, Infallible>> + Send + 'static,
{
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors and the like: wait instead of
                    // spinning; this port must never take the process down.
                    tracing::debug!("{what} accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let respond = respond.clone();
        let stop = shutdown.clone();
        tracker.spawn(async move {
            let service = service_fn(respond);
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = stop.cancelled() => {}
                r = conn => if let Err(e) = r {
                    tracing::debug!("{what} connection ended: {e}");
                },
            }
        });
    }
}
