//! `test-client web`: the arena in a browser. Serves the page and its
//! bundle from a directory (`npm run build:web` in `clients/typescript`
//! builds them into `clients/typescript/dist/browser`, the default), and
//! the two things the page cannot know by itself:
//!
//! - `/config.json`: `{"gatewayWs": "<url>"}`, the gateway WebSocket port
//!   the page connects to (the gateway's `--ws-port`);
//! - `/token?user=N`: a login token for user N, minted from `--auth-secret`
//!   as every other command mints its own ([`token_for`]), or `dev` without
//!   a secret. This makes the server a development login service: never
//!   run it with a production secret where players can reach it.
//!
//! Why a directory and not a bundle embedded with `include_bytes!`: an
//! embedded bundle would make every `cargo build` of the workspace need
//! Node and esbuild. Served from disk, the Rust build stays Node-free and a
//! rebuilt bundle is picked up without rebuilding the binary.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::token_for;

/// Where `npm run build:web` puts the page, in this checkout.
pub const DEFAULT_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../clients/typescript/dist/browser"
);

/// The files the page cannot work without; checked at start-up so a
/// missing build is one clear sentence, not a blank page.
const REQUIRED: [&str; 2] = ["index.html", "arena.js"];

/// What `test-client web` serves.
#[derive(Debug, Clone)]
pub struct WebOptions {
    /// Address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// The directory holding `index.html` and `arena.js`.
    pub dir: PathBuf,
    /// The gateway's WebSocket URL, handed to the page in `/config.json`.
    pub gateway_ws: String,
    /// Secret to mint login tokens with (`/token`); `dev` tokens without.
    pub auth_secret: Option<String>,
}

/// Why the page cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The bundle is not built (or `--dir` points elsewhere).
    #[error("{} is missing: build the page with `npm ci && npm run build:web` in clients/typescript, or point --dir at a built one", .0.display())]
    NotBuilt(PathBuf),
    /// The gateway URL is not a WebSocket URL.
    #[error("--gateway-ws {0:?} is not a ws:// or wss:// URL")]
    BadGatewayUrl(String),
    /// Binding the address failed (most often: the port is taken).
    #[error("cannot listen on {addr} ({source}): choose another address with --listen")]
    Bind {
        /// What we tried to bind.
        addr: SocketAddr,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

/// A running page server.
#[derive(Debug, Clone, Copy)]
pub struct WebServer {
    /// The address actually bound (port 0 resolved).
    pub addr: SocketAddr,
}

impl WebServer {
    /// The URL to open in a browser.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

/// What every request needs: the directory and the two generated answers.
#[derive(Debug)]
struct Site {
    dir: PathBuf,
    config_json: String,
    auth_secret: Option<String>,
}

/// `test-client web`: serves until Ctrl-C or SIGTERM, after printing the
/// URL on its own line (tests and `run-sample.sh` read it from there).
pub async fn run(opts: &WebOptions) -> anyhow::Result<bool> {
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let server = serve(opts, &tracker, shutdown.clone()).await?;
    println!("arena in a browser: open {}", server.url());
    println!(
        "(the page plays through the gateway at {})",
        opts.gateway_ws
    );
    wait_for_stop_signal().await?;
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    Ok(true)
}

/// Checks the directory, binds `opts.listen` and serves the page on tasks
/// owned by `tracker` until `shutdown` is cancelled.
pub async fn serve(
    opts: &WebOptions,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> Result<WebServer, WebError> {
    check_built(&opts.dir)?;
    let site = Arc::new(site(opts)?);
    let bind_err = |source| WebError::Bind {
        addr: opts.listen,
        source,
    };
    let listener = TcpListener::bind(opts.listen).await.map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    tracker.spawn(gamemesh_node::http_server::serve(
        listener,
        "web",
        move |req| respond(req, site.clone()),
        tracker.clone(),
        shutdown,
    ));
    Ok(WebServer { addr })
}

fn check_built(dir: &Path) -> Result<(), WebError> {
    match REQUIRED.iter().map(|f| dir.join(f)).find(|p| !p.is_file()) {
        Some(missing) => Err(WebError::NotBuilt(missing)),
        None => Ok(()),
    }
}

fn site(opts: &WebOptions) -> Result<Site, WebError> {
    let ws = opts.gateway_ws.as_str();
    if !(ws.starts_with("ws://") || ws.starts_with("wss://")) {
        return Err(WebError::BadGatewayUrl(opts.gateway_ws.clone()));
    }
    Ok(Site {
        dir: opts.dir.clone(),
        config_json: serde_json::json!({ "gatewayWs": ws }).to_string(),
        auth_secret: opts.auth_secret.clone(),
    })
}

async fn wait_for_stop_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

async fn respond(
    req: Request<Incoming>,
    site: Arc<Site>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n",
        ));
    }
    Ok(match req.uri().path() {
        "/config.json" => reply(StatusCode::OK, "application/json", site.config_json.clone()),
        "/token" => token(&site, req.uri().query().unwrap_or("")),
        "/" => file(&site.dir, "/index.html").await,
        path => file(&site.dir, path).await,
    })
}

/// `/token?user=N`: a login token for user N.
fn token(site: &Site, query: &str) -> Response<Full<Bytes>> {
    let user = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("user="))
        .and_then(|v| v.parse::<u64>().ok());
    match user {
        Some(user) if user != 0 => reply(
            StatusCode::OK,
            "text/plain",
            token_for(site.auth_secret.as_deref(), user),
        ),
        _ => reply(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "want /token?user=N with N a user id above 0\n",
        ),
    }
}

/// A file of the directory, by its URL path.
async fn file(dir: &Path, url_path: &str) -> Response<Full<Bytes>> {
    let Some(relative) = safe_relative_path(url_path) else {
        return reply(StatusCode::NOT_FOUND, "text/plain", "not found\n");
    };
    match tokio::fs::read(dir.join(&relative)).await {
        Ok(bytes) => reply(StatusCode::OK, content_type(&relative), bytes),
        Err(_) => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

/// The URL path as a path inside the served directory, or None for
/// anything that could leave it or reach a hidden file: `..`, `.`, empty
/// segments, dot-files, backslashes, percent-escapes (the page has no
/// file names that need them).
fn safe_relative_path(url_path: &str) -> Option<PathBuf> {
    let trimmed = url_path.strip_prefix('/')?;
    let segments: Vec<&str> = trimmed.split('/').collect();
    let safe = |s: &&str| !s.is_empty() && !s.starts_with('.') && !s.contains(['\\', '%', '\0']);
    segments.iter().all(safe).then(|| segments.iter().collect())
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("map" | "json") => "application/json",
        Some("css") => "text/css; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // A development server: a rebuilt bundle must show on the next reload.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn paths_cannot_leave_the_directory() {
        assert_eq!(safe_relative_path("/arena.js"), Some("arena.js".into()));
        assert_eq!(safe_relative_path("/a/b.js"), Some("a/b.js".into()));
        for bad in [
            "/../secret",
            "/a/../../b",
            "/./x",
            "/.git/config",
            "//etc/passwd",
            "/a//b",
            "/a\\..\\b",
            "/%2e%2e/x",
            "",
            "/",
        ] {
            assert_eq!(safe_relative_path(bad), None, "{bad}");
        }
    }

    /// One GET over a fresh connection; the status line and the body.
    async fn get(addr: SocketAddr, path: &str) -> (String, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_owned(), body.to_owned())
    }

    fn built_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<p>arena</p>").unwrap();
        std::fs::write(dir.path().join("arena.js"), "console.log(1)").unwrap();
        dir
    }

    fn options(dir: &Path, secret: Option<&str>) -> WebOptions {
        WebOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            dir: dir.to_path_buf(),
            gateway_ws: "ws://127.0.0.1:5999".into(),
            auth_secret: secret.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn serves_the_page_its_config_and_tokens() {
        let dir = built_dir();
        std::fs::write(dir.path().join(".hidden"), "no").unwrap();
        let (tracker, stop) = (TaskTracker::new(), CancellationToken::new());
        let server = serve(&options(dir.path(), None), &tracker, stop.clone())
            .await
            .unwrap();
        let at = server.addr;
        assert_eq!(
            get(at, "/").await,
            ("HTTP/1.1 200 OK".into(), "<p>arena</p>".into())
        );
        assert_eq!(get(at, "/arena.js").await.1, "console.log(1)");
        assert_eq!(
            get(at, "/config.json").await.1,
            r#"{"gatewayWs":"ws://127.0.0.1:5999"}"#
        );
        assert_eq!(get(at, "/token?user=42").await.1, "dev");
        assert!(get(at, "/token?user=0").await.0.contains("400"));
        assert!(get(at, "/.hidden").await.0.contains("404"));
        assert!(get(at, "/nope.js").await.0.contains("404"));
        stop.cancel();
    }

    #[tokio::test]
    async fn tokens_are_minted_with_the_secret() {
        let dir = built_dir();
        let (tracker, stop) = (TaskTracker::new(), CancellationToken::new());
        let opts = options(dir.path(), Some("s3cret"));
        let server = serve(&opts, &tracker, stop.clone()).await.unwrap();
        let token = get(server.addr, "/token?user=7").await.1;
        let (expiry, signature) = token.split_once('.').expect("expiry.signature");
        assert!(expiry.parse::<u64>().is_ok(), "{token}");
        assert_eq!(signature.len(), 64, "{token}");
        stop.cancel();
    }

    #[tokio::test]
    async fn an_unbuilt_page_or_a_bad_url_is_one_clear_error() {
        let empty = tempfile::tempdir().unwrap();
        let (tracker, stop) = (TaskTracker::new(), CancellationToken::new());
        let err = serve(&options(empty.path(), None), &tracker, stop.clone())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("npm run build:web"), "{err}");
        let dir = built_dir();
        let mut opts = options(dir.path(), None);
        opts.gateway_ws = "http://127.0.0.1:1".into();
        let err = serve(&opts, &tracker, stop).await.unwrap_err();
        assert!(matches!(err, WebError::BadGatewayUrl(_)), "{err}");
    }
}
