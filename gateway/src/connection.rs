//! One client socket: read frames and relay them, write what game servers
//! send back, enforce the idle timeout, the frame size limit and the
//! outbound bound.
//!
//! Each socket is one task that owns both halves of the stream. Frames to
//! the client arrive through a bounded queue; when a client stops reading
//! and that queue fills, the client is kicked (`SLOW_CONSUMER`) instead of
//! letting its backlog grow in our memory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use gamemesh_proto::client::{ErrorCode, KickReason};
use gamemesh_proto::{packets, FrameCodec, FrameError};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::{Encoder, FramedRead};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::upstream::kick_body;
use crate::Shared;

/// How long a kicked client gets to take its last frame before we close.
const LAST_FRAME_TIMEOUT: Duration = Duration::from_millis(200);

/// Something to do on a client socket, in order.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// Write one frame body.
    Frame(Bytes),
    /// Write `last_frame` (if any), then close.
    Close {
        /// Usually a `Kicked`.
        last_frame: Option<Bytes>,
        /// For the log line.
        reason: String,
    },
}

/// The dispatcher's handle on one socket.
struct ClientHandle {
    /// Bounded queue of frames for the socket.
    tx: mpsc::Sender<Outbound>,
    /// Fired when the queue overflows: the socket task kicks the client.
    slow: CancellationToken,
}

/// Open sockets by id, so game servers' messages find their socket.
#[derive(Default)]
pub(crate) struct ClientRegistry {
    /// Every open socket.
    clients: Mutex<HashMap<Uuid, ClientHandle>>,
}

impl ClientRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, ClientHandle>> {
        // Single-operation critical sections: poisoning cannot leave the map
        // inconsistent.
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `out` for `socket`. A full queue means the client is not
    /// reading: it is marked for a `SLOW_CONSUMER` kick.
    pub(crate) fn deliver(&self, socket: &Uuid, out: Outbound) {
        let clients = self.lock();
        let Some(h) = clients.get(socket) else {
            debug!(%socket, "message for a closed socket dropped");
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = h.tx.try_send(out) {
            h.slow.cancel();
        }
    }

    /// Tells every socket to close with `last_frame` (shutdown).
    pub(crate) fn close_all(&self, last_frame: Bytes, reason: &str) {
        for h in self.lock().values() {
            if h.tx
                .try_send(Outbound::Close {
                    last_frame: Some(last_frame.clone()),
                    reason: reason.to_string(),
                })
                .is_err()
            {
                h.slow.cancel();
            }
        }
    }

    /// Number of open sockets.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Why a socket ended, for the log line and the game server.
enum End {
    ClientClosed,
    Kicked(KickReason, String),
    Closed(String),
    Error(String),
}

/// Serves one client socket until it closes.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let socket = Uuid::new_v4();
    let _ = stream.set_nodelay(true);
    let (tx, mut rx) = mpsc::channel(shared.config.outbound_queue_frames);
    let slow = CancellationToken::new();
    shared.clients.lock().insert(
        socket,
        ClientHandle {
            tx,
            slow: slow.clone(),
        },
    );
    info!("Client connected: SocketId={socket}, Peer={peer}");
    if let Some(gs) = shared.upstream.pick() {
        shared.pins.insert(socket, gs);
        shared
            .upstream
            .client_connected(gs, &socket, &peer.to_string());
    }

    let (read_half, mut writer) = stream.into_split();
    let codec = FrameCodec::new(shared.config.max_frame_bytes);
    let mut frames = FramedRead::with_capacity(read_half, codec, 256);
    let mut wbuf = BytesMut::new();
    let idle_timeout = shared.config.idle_timeout();
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);

    let end = loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                break End::Kicked(KickReason::ServerShutdown, "gateway shutting down".into());
            }
            _ = slow.cancelled() => {
                break End::Kicked(KickReason::SlowConsumer, "client is not reading its frames".into());
            }
            out = rx.recv() => match out {
                Some(Outbound::Frame(body)) => {
                    encode(&mut wbuf, &body);
                    // Batch whatever else is already queued into one write.
                    let mut close = None;
                    while wbuf.len() < 64 * 1024 {
                        match rx.try_recv() {
                            Ok(Outbound::Frame(b)) => encode(&mut wbuf, &b),
                            Ok(c @ Outbound::Close { .. }) => { close = Some(c); break }
                            Err(_) => break,
                        }
                    }
                    // A blocked write still honours the idle timeout, the
                    // slow-consumer kick and shutdown.
                    let written = tokio::select! {
                        r = writer.write_all(&wbuf) => r.map_err(|e| e.to_string()),
                        _ = slow.cancelled() => Err("slow consumer".into()),
                        _ = shutdown.cancelled() => Err("shutdown".into()),
                        _ = &mut idle => Err("idle".into()),
                    };
                    wbuf.clear();
                    if let Err(e) = written {
                        if e == "idle" {
                            break End::Kicked(KickReason::IdleTimeout, format!("no frame for {} s", idle_timeout.as_secs()));
                        }
                        if slow.is_cancelled() {
                            break End::Kicked(KickReason::SlowConsumer, "client is not reading its frames".into());
                        }
                        if shutdown.is_cancelled() {
                            break End::Kicked(KickReason::ServerShutdown, "gateway shutting down".into());
                        }
                        break End::Error(format!("write failed: {e}"));
                    }
                    if let Some(Outbound::Close { last_frame, reason }) = close {
                        write_last(&mut writer, last_frame).await;
                        break End::Closed(reason);
                    }
                }
                Some(Outbound::Close { last_frame, reason }) => {
                    write_last(&mut writer, last_frame).await;
                    break End::Closed(reason);
                }
                None => break End::Closed("registry dropped".into()),
            },
            frame = frames.next() => match frame {
                Some(Ok(body)) => {
                    idle.as_mut().reset(Instant::now() + idle_timeout);
                    debug!("Packet received: Socket={socket}, Size={}", body.len());
                    if let Err(reason) = relay(&shared, &socket, body) {
                        break End::Kicked(KickReason::ServerUnavailable, reason);
                    }
                }
                Some(Err(FrameError::Io(e))) => break End::Error(format!("read failed: {e}")),
                Some(Err(e)) => {
                    warn!("Protocol error: SocketId={socket}, Peer={peer}: {e}; closing the connection");
                    break End::Kicked(KickReason::ProtocolError, e.to_string());
                }
                None => break End::ClientClosed,
            },
            _ = &mut idle => {
                break End::Kicked(KickReason::IdleTimeout, format!("no frame for {} s", idle_timeout.as_secs()));
            }
        }
    };

    let reason = match end {
        End::ClientClosed => "client closed".to_string(),
        End::Kicked(kind, detail) => {
            write_last(&mut writer, Some(kick_body(kind, &detail))).await;
            format!("kicked ({}): {detail}", kind.as_str_name())
        }
        End::Closed(r) => r,
        End::Error(e) => e,
    };
    let _ = writer.shutdown().await;
    shared.clients.lock().remove(&socket);
    if let Some(route) = shared.pins.remove(&socket) {
        shared
            .upstream
            .client_disconnected(route.game_server, &socket, route.session_id, &reason);
    }
    info!("Client disconnected: SocketId={socket}, Reason={reason}");
}

fn encode(buf: &mut BytesMut, body: &Bytes) {
    // Bodies from game servers are ours; an oversize one would be a bug, so
    // the codec's limit here is the protocol's hard ceiling.
    let _ = FrameCodec::new(u32::MAX as usize).encode(&body[..], buf);
}

/// Writes a final frame, giving a client that does not read only a short
/// grace.
async fn write_last(writer: &mut OwnedWriteHalf, frame: Option<Bytes>) {
    if let Some(body) = frame {
        let mut buf = BytesMut::new();
        encode(&mut buf, &body);
        let _ = tokio::time::timeout(LAST_FRAME_TIMEOUT, writer.write_all(&buf)).await;
    }
}

/// Sends one frame to the socket's game server, moving the socket to a live
/// game server when its own is down (or, for a socket with no session yet,
/// draining). `Err` means no game server is available.
fn relay(shared: &Shared, socket: &Uuid, body: Bytes) -> Result<(), String> {
    let route = match shared.pins.get(socket) {
        Some(r) if shared.upstream.can_serve(r.game_server, r.session_id != 0) => r,
        current => {
            let Some(gs) = shared.upstream.pick() else {
                return Err("no game server is available".into());
            };
            match current {
                Some(old) => {
                    warn!(
                        "Rerouting SocketId={socket}, SessionId={} from game server {} (down or draining) to {gs}",
                        old.session_id, old.game_server
                    );
                    shared.pins.reroute(socket, gs).unwrap_or(old)
                }
                None => shared.pins.insert(*socket, gs),
            }
        }
    };
    if let Err(e) = shared
        .upstream
        .send_frame(route.game_server, socket, route, body.clone())
    {
        warn!(
            "Relay to game server {} failed: SocketId={socket}: {e}",
            route.game_server
        );
        let seq = packets::peek_sequence_id(&body);
        let reply = packets::error(
            seq,
            ErrorCode::Unavailable,
            format!("game server {} is unreachable; retry", route.game_server),
        );
        shared
            .clients
            .deliver(socket, Outbound::Frame(packets::encode(&reply)));
    }
    Ok(())
}
