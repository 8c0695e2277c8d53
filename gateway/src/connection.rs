//! One client socket: read frames and relay them, write what game servers
//! send back, enforce the idle timeout, the login deadline, the frame size
//! limit, the packet rate limit and the outbound bounds.
//!
//! Each socket is one task that owns both halves of the stream. Frames to
//! the client arrive through a queue bounded twice, in frames
//! (`--outbound-queue-frames`) and in bytes (`--outbound-queue-bytes`);
//! when a client stops reading and either bound is crossed, the client is
//! kicked (`SLOW_CONSUMER`) instead of letting its backlog grow in our
//! memory. The packet rate limit is a token bucket owned by the task, so
//! checking it takes no lock and one flooding socket slows nobody else.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use gamemesh_proto::client::{ErrorCode, KickReason};
use gamemesh_proto::{packets, FrameCodec, FrameError};
use gamemesh_transport::LinkError;
use gamemesh_transport::NodeId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::{Encoder, FramedRead};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::clients::{kick_body, ClientHandle, Outbound};
use crate::in_flight::{InFlight, Reply};
use crate::limits::{abuse_window, packet_bucket, ABUSE_WINDOW};
use crate::Shared;
use gamemesh_node::fixed_window::Tally;

/// How long a kicked (or refused) client gets to take its last frame
/// before we close.
pub(crate) const LAST_FRAME_TIMEOUT: Duration = Duration::from_millis(200);

/// How long a closed connection's input is drained (see
/// `drain_before_close`).
const DRAIN_BEFORE_CLOSE: Duration = Duration::from_millis(500);

/// One admitted socket's place under `--max-connections`; dropping it
/// frees the place.
pub(crate) struct Slot {
    /// The gateway's count of admitted sockets.
    open: Arc<AtomicUsize>,
}

impl Slot {
    /// Claims a place if fewer than `max` are taken.
    pub(crate) fn claim(open: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        // Only the accept loop claims, so load-then-add cannot overshoot.
        if open.load(Ordering::Acquire) >= max {
            return None;
        }
        open.fetch_add(1, Ordering::AcqRel);
        Some(Slot { open: open.clone() })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a socket ended, for the log line and the game server.
enum End {
    ClientClosed,
    Kicked(KickReason, String),
    Closed(String),
    Error(String),
}

/// Serves one client socket until it closes. `slot` is its place under
/// `--max-connections`, freed when this returns.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    slot: Slot,
) {
    let _slot = slot;
    let socket = Uuid::new_v4();
    let _ = stream.set_nodelay(true);
    let config = &shared.config;
    let (tx, mut rx) = mpsc::channel(config.outbound_queue_frames);
    let handle = Arc::new(ClientHandle::new(tx, config.outbound_queue_bytes));
    let slow = handle.slow.clone();
    shared.clients.lock().insert(socket, handle.clone());
    info!("Client connected: SocketId={socket}, Peer={peer}");
    if let Some(gs) = shared.upstream.pick() {
        shared.pins.insert(socket, gs);
        shared
            .upstream
            .client_connected(gs, &socket, &peer.to_string());
    }

    let (read_half, mut writer) = stream.into_split();
    let codec = FrameCodec::new(config.max_frame_bytes);
    let mut frames = FramedRead::with_capacity(read_half, codec, 256);
    let mut wbuf = BytesMut::new();
    // End offset in `wbuf` of each frame of the batch being written, so a
    // write cut short can finish its frame before the kick (a kick written
    // after half a frame would be garbage to the client).
    let mut frame_ends: Vec<usize> = Vec::new();
    let idle_timeout = config.idle_timeout();
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    let login_deadline = config.login_deadline();
    let login_timer = tokio::time::sleep(login_deadline);
    tokio::pin!(login_timer);
    let mut login_pending = true;
    let bucket = packet_bucket(config.max_packets_per_sec, config.packet_burst());
    let mut abuse = abuse_window(config.rate_limit_kick_after);
    let slow_kick = || {
        if handle.over_bytes.load(Ordering::Relaxed) {
            warn!(
                "Slow consumer: SocketId={socket}, Peer={peer}: over --outbound-queue-bytes {} queued; kicking",
                handle.max_bytes
            );
            End::Kicked(
                KickReason::SlowConsumer,
                format!(
                    "more than {} bytes queued for a client that is not reading",
                    handle.max_bytes
                ),
            )
        } else {
            warn!(
                "Slow consumer: SocketId={socket}, Peer={peer}: over --outbound-queue-frames {} queued; kicking",
                config.outbound_queue_frames
            );
            End::Kicked(
                KickReason::SlowConsumer,
                "client is not reading its frames".into(),
            )
        }
    };
    // Bytes of a frame cut off mid-write, to be finished before the kick.
    let mut unfinished: Option<Bytes> = None;
    // Requests relayed and not yet answered; `expiry` is armed at the
    // oldest one's deadline (lazily: an answered entry leaves the timer
    // set, and a wake-up with nothing due only re-arms it).
    let mut in_flight = InFlight::new(config.request_timeout());
    let expiry = tokio::time::sleep(config.request_timeout());
    tokio::pin!(expiry);
    let mut armed = false;

    let end = loop {
        if !armed {
            if let Some(deadline) = in_flight.next_deadline() {
                expiry.as_mut().reset(deadline);
                armed = true;
            }
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                break End::Kicked(KickReason::ServerShutdown, "gateway shutting down".into());
            }
            _ = slow.cancelled() => break slow_kick(),
            _ = &mut expiry, if armed => {
                armed = false;
                let now = Instant::now();
                let expired = in_flight.expire(now);
                if !expired.is_empty() {
                    if let Some(suppressed) = shared.timeout_log.allow() {
                        warn!(
                            "Request timeout: SocketId={socket}: {} requests unanswered for --request-timeout-ms {}; answering UNAVAILABLE ({suppressed} more sockets' lines not logged)",
                            expired.len(),
                            config.request_timeout_ms
                        );
                    }
                    metrics::counter!("gamemesh_gateway_requests_failed_total", "reason" => "timeout")
                        .increment(expired.len() as u64);
                    for seq in expired {
                        answer_unavailable(&handle, seq, "the game server did not answer in time; retry with the same sequence id");
                    }
                }
            }
            out = rx.recv() => match out.map(|o| admit(&mut in_flight, &handle, o)) {
                // A late answer the gateway already gave (dropped), or a
                // DOWN notice (acted on by `admit`).
                Some(None | Some(Outbound::GameServerDown(_))) => continue,
                Some(Some(Outbound::Frame(body) | Outbound::Reply(body))) => {
                    encode(&mut wbuf, &body);
                    frame_ends.push(wbuf.len());
                    let mut batch_bytes = body.len();
                    // Batch whatever else is already queued into one write.
                    let mut close = None;
                    while wbuf.len() < 64 * 1024 {
                        match rx.try_recv().map(|o| admit(&mut in_flight, &handle, o)) {
                            Ok(None | Some(Outbound::GameServerDown(_))) => {}
                            Ok(Some(Outbound::Frame(b) | Outbound::Reply(b))) => {
                                encode(&mut wbuf, &b);
                                frame_ends.push(wbuf.len());
                                batch_bytes += b.len();
                            }
                            Ok(Some(c @ Outbound::Close { .. })) => { close = Some(c); break }
                            Err(_) => break,
                        }
                    }
                    // A blocked write still honours the idle timeout, the
                    // slow-consumer kick and shutdown.
                    let mut off = 0;
                    let written: Result<(), String> = loop {
                        if off == wbuf.len() {
                            break Ok(());
                        }
                        tokio::select! {
                            r = writer.write(&wbuf[off..]) => match r {
                                Ok(0) => break Err("socket closed".into()),
                                Ok(n) => off += n,
                                Err(e) => break Err(e.to_string()),
                            },
                            _ = slow.cancelled() => break Err("slow consumer".into()),
                            _ = shutdown.cancelled() => break Err("shutdown".into()),
                            _ = &mut idle => break Err("idle".into()),
                        }
                    };
                    if written.is_err() && off > 0 {
                        if let Some(&end) = frame_ends.iter().find(|&&e| e > off) {
                            if !frame_ends.contains(&off) {
                                unfinished = Some(Bytes::copy_from_slice(&wbuf[off..end]));
                            }
                        }
                    }
                    let metrics = shared.counters.metrics();
                    metrics.packets_out.increment(frame_ends.len() as u64);
                    metrics.bytes_out.increment(batch_bytes as u64);
                    wbuf.clear();
                    frame_ends.clear();
                    handle.written(batch_bytes);
                    if let Err(e) = written {
                        if e == "idle" {
                            break End::Kicked(KickReason::IdleTimeout, format!("no frame for {} s", idle_timeout.as_secs()));
                        }
                        if slow.is_cancelled() {
                            break slow_kick();
                        }
                        if shutdown.is_cancelled() {
                            break End::Kicked(KickReason::ServerShutdown, "gateway shutting down".into());
                        }
                        break End::Error(format!("write failed: {e}"));
                    }
                    if let Some(Outbound::Close { last_frame, reason }) = close {
                        write_last(&mut writer, None, last_frame).await;
                        break End::Closed(reason);
                    }
                }
                Some(Some(Outbound::Close { last_frame, reason })) => {
                    write_last(&mut writer, None, last_frame).await;
                    break End::Closed(reason);
                }
                None => break End::Closed("registry dropped".into()),
            },
            frame = frames.next() => match frame {
                Some(Ok(body)) => {
                    let now = Instant::now();
                    idle.as_mut().reset(now + idle_timeout);
                    debug!("Packet received: Socket={socket}, Size={}", body.len());
                    let metrics = shared.counters.metrics();
                    metrics.packets_in.increment(1);
                    metrics.bytes_in.increment(body.len() as u64);
                    if bucket.try_take() {
                        let seq = packets::peek_sequence_id(&body);
                        match relay(&shared, &socket, body) {
                            Ok(Some(gs)) => in_flight.sent(seq, gs, now),
                            Ok(None) => {}
                            Err(reason) => break End::Kicked(KickReason::ServerUnavailable, reason),
                        }
                    } else {
                        shared.counters.rate_limited();
                        match abuse.record(now) {
                            Tally::Tripped => {
                                warn!(
                                    "Packet rate abuse: SocketId={socket}, Peer={peer}: more than --rate-limit-kick-after {} frames rate limited within {} s; kicking",
                                    config.rate_limit_kick_after,
                                    ABUSE_WINDOW.as_secs()
                                );
                                break End::Kicked(KickReason::ProtocolError, "packet rate abuse".into());
                            }
                            Tally::Opened => warn!(
                                "Rate limiting SocketId={socket}, Peer={peer}: over --max-packets-per-sec {} (burst {}); frames answered RATE_LIMITED",
                                config.max_packets_per_sec,
                                config.packet_burst()
                            ),
                            Tally::Counted => {}
                        }
                        let reply = packets::error(
                            packets::peek_sequence_id(&body),
                            ErrorCode::RateLimited,
                            format!("over {} packets per second; slow down", config.max_packets_per_sec),
                        );
                        handle.push(Outbound::Frame(packets::encode(&reply)));
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
            _ = &mut login_timer, if login_pending => {
                login_pending = false;
                if !handle.logged_in.load(Ordering::Relaxed) {
                    warn!(
                        "Login deadline: SocketId={socket}, Peer={peer}: not logged in within --login-deadline-secs {}; kicking",
                        login_deadline.as_secs()
                    );
                    break End::Kicked(KickReason::ProtocolError, format!("no login within {} s", login_deadline.as_secs()));
                }
            }
        }
    };

    // We are closing on the client (kick, or a game server's disconnect):
    // its input is drained while the last frames go out, so a client
    // blocked writing to us gets unstuck and can read them.
    let drain = matches!(end, End::Kicked(..) | End::Closed(_));
    let mut last = None;
    let reason = match end {
        End::ClientClosed => "client closed".to_string(),
        End::Kicked(kind, detail) => {
            shared.counters.kicked(kind);
            last = Some(kick_body(kind, &detail));
            format!("kicked ({}): {detail}", kind.as_str_name())
        }
        End::Closed(r) => r,
        End::Error(e) => e,
    };
    let closing = async {
        if last.is_some() {
            write_last(&mut writer, unfinished, last).await;
        }
        let _ = writer.shutdown().await;
    };
    if drain {
        tokio::join!(closing, drain_before_close(frames.into_inner()));
    } else {
        closing.await;
    }
    shared.clients.lock().remove(&socket);
    if let Some(route) = shared.pins.remove(&socket) {
        shared
            .upstream
            .client_disconnected(route.game_server, &socket, route.session_id, &reason);
    }
    info!("Client disconnected: SocketId={socket}, Peer={peer}, Reason={reason}");
}

fn encode(buf: &mut BytesMut, body: &Bytes) {
    // Bodies from game servers are ours; an oversize one would be a bug, so
    // the codec's limit here is the protocol's hard ceiling.
    let _ = FrameCodec::new(u32::MAX as usize).encode(&body[..], buf);
}

/// After we closed our side, reads and discards what the client still
/// sends, for a short while. Closing a socket with unread input makes the
/// kernel send a reset, and a reset can make the client's kernel drop the
/// frames it has not read yet, the `Kicked` among them: a client kicked
/// mid-flood would never learn why. Bounded, so a client that keeps
/// sending cannot hold the task.
async fn drain_before_close(mut read: OwnedReadHalf) {
    let mut scratch = [0u8; 4096];
    let _ = tokio::time::timeout(DRAIN_BEFORE_CLOSE, async {
        while let Ok(n) = read.read(&mut scratch).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Writes the rest of a frame cut off mid-write (`unfinished`, raw bytes)
/// and a final frame, giving a client that does not read only a short
/// grace.
async fn write_last(writer: &mut OwnedWriteHalf, unfinished: Option<Bytes>, frame: Option<Bytes>) {
    let mut buf = BytesMut::new();
    if let Some(rest) = unfinished {
        buf.extend_from_slice(&rest);
    }
    if let Some(body) = frame {
        encode(&mut buf, &body);
    }
    if !buf.is_empty() {
        let _ = tokio::time::timeout(LAST_FRAME_TIMEOUT, writer.write_all(&buf)).await;
    }
}

/// Passes a frame on to be written, except a game server's late answer to
/// a request the gateway already answered (`None`; its bytes leave the
/// queue's count here). A DOWN notice is acted on here (its answers are
/// queued behind) and yields `None` too.
fn admit(in_flight: &mut InFlight, handle: &ClientHandle, out: Outbound) -> Option<Outbound> {
    if let Outbound::GameServerDown(down) = out {
        let failed = in_flight.fail(|gs| gs == down);
        if !failed.is_empty() {
            metrics::counter!("gamemesh_gateway_requests_failed_total", "reason" => "game_server_down")
                .increment(failed.len() as u64);
        }
        for (seq, _) in failed {
            answer_unavailable(
                handle,
                seq,
                &format!("game server {down} is down; retry with the same sequence id"),
            );
        }
        return None;
    }
    let Outbound::Reply(body) = &out else {
        return Some(out);
    };
    let seq = packets::peek_sequence_id(body);
    match in_flight.reply(seq) {
        Reply::Pass => Some(out),
        Reply::Late => {
            debug!("Late answer dropped: SequenceId={seq} was already answered UNAVAILABLE");
            metrics::counter!("gamemesh_gateway_late_replies_dropped_total").increment(1);
            handle.written(body.len());
            None
        }
    }
}

/// Answers `seq` with `UNAVAILABLE` on the gateway's own account.
fn answer_unavailable(handle: &ClientHandle, seq: u64, detail: &str) {
    let reply = packets::error(seq, ErrorCode::Unavailable, detail);
    handle.push(Outbound::Frame(packets::encode(&reply)));
}

/// Sends one frame to the socket's game server, moving the socket to a live
/// game server when its own is down (or, for a socket with no session yet,
/// draining). `Ok(Some(gs))`: relayed to `gs`; `Ok(None)`: not relayed, and
/// the client was answered `UNAVAILABLE`. `Err` means no game server is
/// available.
fn relay(shared: &Shared, socket: &Uuid, body: Bytes) -> Result<Option<NodeId>, String> {
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
        // A full pipe (the game server is not keeping up) is answered like
        // a dead one: the client hears UNAVAILABLE for this frame and may
        // retry. It is counted (`gamemesh_link_hwm_events_total`) and
        // logged at most once a second, since it comes in floods.
        let detail = match e {
            LinkError::Full(_) => {
                if let Some(suppressed) = shared.hwm_log.allow() {
                    warn!(
                        "Relay to game server {} refused: its queue is at the high-water mark (--link-sndhwm); answering UNAVAILABLE ({suppressed} more not logged)",
                        route.game_server
                    );
                }
                format!("game server {} is overloaded; retry", route.game_server)
            }
            _ => {
                warn!(
                    "Relay to game server {} failed: SocketId={socket}: {e}",
                    route.game_server
                );
                format!("game server {} is unreachable; retry", route.game_server)
            }
        };
        shared.counters.metrics().relay_failures.increment(1);
        let seq = packets::peek_sequence_id(&body);
        let reply = packets::error(seq, ErrorCode::Unavailable, detail);
        shared
            .clients
            .deliver(socket, Outbound::Frame(packets::encode(&reply)));
        return Ok(None);
    }
    Ok(Some(route.game_server))
}
