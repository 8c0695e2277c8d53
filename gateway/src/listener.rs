//! Accepts client sockets. The listen backlog is 4096, not tokio's 128: a
//! burst of a thousand connects (a match starting, a reconnect storm after
//! a network blip) must not overflow it into one-second SYN retries.
//!
//! Admission happens here, before a socket costs a task: first the per-IP
//! connect pace (`--max-connects-per-ip-per-sec`, `--connect-burst-per-ip`,
//! `--connect-queue-ms`, see [`crate::pacer`]), then `--max-connections`.
//! A socket within its address's burst is served at once; one past it
//! waits for its slot in accept order; one that would wait longer than
//! `--connect-queue-ms` is refused. A refused socket is still accepted (so
//! the client learns why instead of hanging in the backlog), sent
//! `Kicked{RATE_LIMITED}` (its address's rate) or
//! `Kicked{SERVER_UNAVAILABLE}` (gateway full) within a short bound,
//! closed and counted.
//!
//! The WebSocket port (`--ws-port`) is admitted the same way, against the
//! same pace and the same `--max-connections`; its sockets then complete
//! the TLS handshake (`wss://`) and the WebSocket upgrade within the login
//! deadline, in their own task, before they are served like any other.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gamemesh_node::error::StartError;
use gamemesh_proto::client::KickReason;
use gamemesh_proto::codec::encode_frame;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::clients::kick_body;
use crate::connection::{Admitted, Slot};
use crate::error::GatewayError;
use crate::limits::Refusal;
use crate::pacer::Admission;
use crate::wire::{tcp, ws, Wire, LAST_FRAME_TIMEOUT};
use crate::{connection, Shared};
use gamemesh_node::rate_limit::ip_key;

/// What a listening port speaks.
#[derive(Clone)]
pub(crate) enum ClientPort {
    /// Length-prefixed frames (`--client-port`).
    Tcp,
    /// One body per binary WebSocket message (`--ws-port`), in TLS when an
    /// acceptor is given (`wss://`).
    Ws(Option<TlsAcceptor>),
}

impl ClientPort {
    /// The port's name in log lines.
    fn name(&self) -> &'static str {
        match self {
            ClientPort::Tcp => "tcp",
            ClientPort::Ws(None) => "ws",
            ClientPort::Ws(Some(_)) => "wss",
        }
    }

    /// Serves an admitted socket: at once for TCP; after the handshakes,
    /// bounded by the login deadline, for WebSocket.
    async fn serve(self, stream: TcpStream, admitted: Admitted) {
        let max_frame = admitted.shared.config.max_frame_bytes;
        match self {
            ClientPort::Tcp => {
                let wire = tcp::TcpWire::new(stream, max_frame);
                connection::serve(wire, admitted).await;
            }
            // Boxed: a task's future is as large as its largest state, and
            // the TLS and WebSocket states are several KiB; inline, every
            // idle TCP socket would pay for them.
            ClientPort::Ws(tls) => {
                Box::pin(serve_ws(tls, stream, admitted)).await;
            }
        }
    }
}

/// Serves a socket of the WebSocket port: TLS (`wss://`) and the upgrade,
/// then the connection.
async fn serve_ws(tls: Option<TlsAcceptor>, stream: TcpStream, admitted: Admitted) {
    let max_frame = admitted.shared.config.max_frame_bytes;
    let _ = stream.set_nodelay(true);
    let config = ws::config(max_frame);
    match tls {
        None => {
            let handshake = async { ws::accept(stream, config).await.map_err(|e| e.to_string()) };
            if let Some(wire) = upgrade(&admitted, handshake).await {
                connection::serve(wire, admitted).await;
            }
        }
        Some(tls) => {
            let handshake = async {
                let stream = tls.accept(stream).await.map_err(|e| format!("TLS: {e}"))?;
                ws::accept(stream, config).await.map_err(|e| e.to_string())
            };
            if let Some(wire) = upgrade(&admitted, handshake).await {
                connection::serve(wire, admitted).await;
            }
        }
    }
}

/// Runs a socket's handshakes, bounded by the login deadline (a socket
/// that never finishes its upgrade holds a `--max-connections` slot no
/// longer than one that never logs in) and by shutdown.
async fn upgrade<T>(
    admitted: &Admitted,
    handshake: impl Future<Output = Result<T, String>>,
) -> Option<T> {
    let Admitted {
        peer,
        transport: port,
        ref shared,
        ref shutdown,
        ..
    } = *admitted;
    let deadline = shared.config.login_deadline();
    tokio::select! {
        _ = shutdown.cancelled() => None,
        done = tokio::time::timeout(deadline, handshake) => match done {
            Ok(Ok(upgraded)) => Some(upgraded),
            Ok(Err(e)) => {
                handshake_failed(shared, peer, port, &e);
                None
            }
            Err(_) => {
                handshake_failed(shared, peer, port, "not done within --login-deadline-secs");
                None
            }
        },
    }
}

/// Logs a failed WebSocket handshake (at most one line a second: a port
/// scanner fails them by the thousand). The socket is closed by the caller
/// dropping it.
fn handshake_failed(shared: &Shared, peer: SocketAddr, port: &str, why: &str) {
    if let Some(suppressed) = shared.handshake_log.allow() {
        info!(
            "WebSocket handshake failed: Peer={peer}, Transport={port}: {why} ({suppressed} more not logged)"
        );
    }
}

/// Listen backlog for client sockets.
pub const BACKLOG: u32 = 4096;

/// Binds a client port; `flag` names the flag that sets it, for errors.
pub fn bind(host: &str, port: u16, flag: &'static str) -> Result<TcpListener, GatewayError> {
    let addr_text = format!("{host}:{port}");
    let addr: SocketAddr = addr_text.parse().map_err(|_| {
        GatewayError::from(StartError::Config(format!(
            "--client-bind {host:?} is not an IP address"
        )))
    })?;
    let bind_err = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            GatewayError::ClientPortInUse {
                host: host.to_string(),
                port,
                flag,
            }
        } else {
            GatewayError::ClientBind {
                addr: addr_text.clone(),
                flag,
                source,
            }
        }
    };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(bind_err)?;
    socket.set_reuseaddr(true).map_err(bind_err)?;
    socket.bind(addr).map_err(bind_err)?;
    socket.listen(BACKLOG).map_err(bind_err)
}

/// Accepts sockets until shutdown, each served by a tracked task.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    port: ClientPort,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => admit(&port, stream, peer, &shared, &tracker, &shutdown),
            Err(e) => {
                // Typically EMFILE: back off instead of spinning; existing
                // clients keep being served.
                warn!("Accept failed: {e}; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Admits one accepted socket: paced by its address's connect rate, then
/// given a `--max-connections` slot, then served now or, when its address
/// is over its burst, once its slot in the pace comes (in its own task, so
/// the accept loop goes on accepting other addresses meanwhile).
fn admit(
    port: &ClientPort,
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let admission = shared.connect_pacer.admit(ip_key(peer.ip()));
    if admission == Admission::Refused {
        if let Some(suppressed) = shared.ip_rate_log.allow() {
            warn!(
                "Connection refused: Peer={peer}: over --max-connects-per-ip-per-sec {} (burst {}, --connect-queue-ms {}) from {} ({suppressed} more refusals not logged)",
                shared.config.max_connects_per_ip_per_sec,
                shared.config.connect_burst_per_ip,
                shared.config.connect_queue_ms,
                peer.ip()
            );
        }
        refuse(
            port,
            shared,
            tracker,
            stream,
            Refusal::IpRate,
            "rate limited: too many new connections from your address; retry in a few seconds",
        );
        return;
    }
    let Some(slot) = Slot::claim(&shared.open, shared.config.max_connections) else {
        if let Some(suppressed) = shared.full_log.allow() {
            warn!(
                "Connection refused: Peer={peer}: gateway is full (--max-connections {}) ({suppressed} more refusals not logged)",
                shared.config.max_connections
            );
        }
        refuse(
            port,
            shared,
            tracker,
            stream,
            Refusal::GatewayFull,
            "gateway is full",
        );
        return;
    };
    shared.counters.metrics().accepted.increment(1);
    let admitted = Admitted {
        peer,
        transport: port.name(),
        shared: shared.clone(),
        shutdown: shutdown.clone(),
        slot,
    };
    let serve = port.clone().serve(stream, admitted);
    match admission {
        Admission::At(start) => {
            shared.counters.paced();
            let shutdown = shutdown.clone();
            tracker.spawn(async move {
                tokio::select! {
                    // Dropping `serve` closes the socket and frees its slot.
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep_until(start) => serve.await,
                }
            });
        }
        _ => {
            tracker.spawn(serve);
        }
    }
}

/// Counts a refused socket and, in a short-lived task, tells it why
/// (`Kicked{RATE_LIMITED}` for its address's rate,
/// `Kicked{SERVER_UNAVAILABLE}` for a full gateway; best effort, at most
/// [`LAST_FRAME_TIMEOUT`], or [`WS_REFUSAL_TIMEOUT`] for a WebSocket, which
/// needs its handshakes first) and closes it.
fn refuse(
    port: &ClientPort,
    shared: &Shared,
    tracker: &TaskTracker,
    mut stream: TcpStream,
    why: Refusal,
    detail: &'static str,
) {
    shared.counters.refused(why);
    let reason = match why {
        Refusal::IpRate => KickReason::RateLimited,
        Refusal::GatewayFull => KickReason::ServerUnavailable,
    };
    // Counted as a kick too, so `kicks_total{reason="rate_limited"}` shows
    // what players were told.
    shared.counters.kicked(reason);
    let body = kick_body(reason, detail);
    let max_frame = shared.config.max_frame_bytes;
    match port.clone() {
        ClientPort::Tcp => {
            let frame = encode_frame(&body);
            tracker.spawn(async move {
                let _ = tokio::time::timeout(LAST_FRAME_TIMEOUT, async {
                    stream.write_all(&frame).await?;
                    stream.shutdown().await
                })
                .await;
            });
        }
        ClientPort::Ws(tls) => {
            tracker.spawn(async move {
                let _ = tokio::time::timeout(WS_REFUSAL_TIMEOUT, async {
                    let config = ws::config(max_frame);
                    match tls {
                        None => {
                            if let Ok(wire) = ws::accept(stream, config).await {
                                wire.close(Some(body), false).await;
                            }
                        }
                        Some(tls) => {
                            let Ok(stream) = tls.accept(stream).await else {
                                return;
                            };
                            if let Ok(wire) = ws::accept(stream, config).await {
                                wire.close(Some(body), false).await;
                            }
                        }
                    }
                })
                .await;
            });
        }
    }
}

/// How long a refused WebSocket client gets for its handshakes and its
/// `Kicked`.
const WS_REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);
