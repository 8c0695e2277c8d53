//! The admin port every node serves beside its real work: `/metrics`
//! (Prometheus text), `/healthz` (the process is alive) and `/readyz` (the
//! node can serve), for Prometheus scrapes and Kubernetes probes.
//!
//! **One recorder per process.** The `metrics` facade has a single global
//! recorder, installed once ([`install_recorder`]) by the first node that
//! starts. Every node in the process records into it and every admin port
//! renders it, so when tests run several nodes in one process each
//! `/metrics` shows the sum over all of them. Production runs one node per
//! process, where the numbers are that node's. Health is per node: each
//! admin server asks its own node's [`ReadyCheck`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Bucket bounds, in seconds, of every `*_seconds` histogram: 50 µs to 5 s,
/// which covers a cached echo (microseconds) up to a Redis call at its
/// timeout. Buckets (rather than the exporter's default summaries) can be
/// summed across nodes by Prometheus and give `top` a p99 per interval.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// How often histogram samples are folded into their buckets when nobody
/// scrapes; without it they pile up in memory between scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The process's recorder handle, set by the first [`install_recorder`].
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder as the process's global `metrics`
/// recorder, once; later calls return the same handle. Call it before
/// registering metric handles: a handle registered earlier records nowhere.
/// If another recorder was installed first (an embedding program's own),
/// ours still renders, but stays empty.
pub fn install_recorder() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("the bucket list is not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("Another metrics recorder was installed first; /metrics stays empty");
        }
        handle
    })
}

/// Why a node is not ready, in one sentence (the body of a 503 `/readyz`).
pub type NotReady = String;

/// The node's readiness: `Ok(())` when it can serve. Called on every
/// `/readyz`, so it should answer within a probe's timeout.
pub type ReadyCheck = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), NotReady>> + Send>> + Send + Sync + 'static,
>;

/// The admin port could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Binding the address failed (most often: the port is taken).
    #[error("admin port {addr} cannot be opened ({source}): stop whatever holds it or choose another port with --admin-port")]
    Bind {
        /// What we tried to bind.
        addr: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

/// A running admin server.
#[derive(Debug, Clone, Copy)]
pub struct AdminServer {
    /// The address actually bound (port 0 resolved).
    pub addr: SocketAddr,
}

/// Binds `bind:port` (port 0: any free port) and serves the admin endpoints
/// on tasks owned by `tracker` until `shutdown` is cancelled.
pub async fn serve(
    bind: &str,
    port: u16,
    ready: ReadyCheck,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> Result<AdminServer, AdminError> {
    let handle = install_recorder();
    let bind_err = |source| AdminError::Bind {
        addr: format!("{bind}:{port}"),
        source,
    };
    let listener = TcpListener::bind((bind, port)).await.map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    tracker.spawn(crate::http_server::serve(
        listener,
        "Admin",
        move |req| respond(req, handle, ready.clone()),
        tracker.clone(),
        shutdown.clone(),
    ));
    tracker.spawn(upkeep_loop(handle, shutdown));
    tracing::info!("Admin port on http://{addr} (/metrics, /healthz, /readyz)");
    Ok(AdminServer { addr })
}

async fn upkeep_loop(handle: &'static PrometheusHandle, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => handle.run_upkeep(),
        }
    }
}

async fn respond(
    req: Request<Incoming>,
    handle: &'static PrometheusHandle,
    ready: ReadyCheck,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into()));
    }
    Ok(match req.uri().path() {
        "/metrics" => {
            let mut resp = text(StatusCode::OK, handle.render());
            resp.headers_mut().insert(
                CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            resp
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match ready().await {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n".into(),
        ),
    })
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn endpoints_answer_with_probe_status_codes() {
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let ready_now = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ready_now.clone();
        let check: ReadyCheck = Arc::new(move || {
            let ok = flag.load(std::sync::atomic::Ordering::Relaxed);
            Box::pin(async move {
                if ok {
                    Ok(())
                } else {
                    Err("warming up".into())
                }
            })
        });
        let admin = serve("127.0.0.1", 0, check, &tracker, shutdown.clone())
            .await
            .unwrap();
        metrics::counter!("gamemesh_admin_unit_test_total").increment(3);

        assert!(get(admin.addr, "/healthz")
            .await
            .starts_with("HTTP/1.0 200"));
        let not_ready = get(admin.addr, "/readyz").await;
        assert!(not_ready.starts_with("HTTP/1.0 503"), "{not_ready}");
        assert!(not_ready.contains("warming up"), "{not_ready}");
        ready_now.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(get(admin.addr, "/readyz").await.starts_with("HTTP/1.0 200"));
        let metrics = get(admin.addr, "/metrics").await;
        assert!(
            metrics.contains("gamemesh_admin_unit_test_total 3"),
            "{metrics}"
        );
        assert!(get(admin.addr, "/nope").await.starts_with("HTTP/1.0 404"));

        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
    }
}
