//! One client socket, whatever its framing ([`crate::wire`]): a
//! [`Connection`] reads bodies and relays them, writes what game servers
//! send back, and enforces the idle timeout, the login deadline, the frame
//! size limit, the packet rate limit and the outbound bounds.
//!
//! Each socket is one task that owns both halves of the socket. Frames to
//! the client arrive through a queue bounded twice, in frames
//! (`--outbound-queue-frames`) and in bytes (`--outbound-queue-bytes`);
//! when a client stops reading and either bound is crossed, the client is
//! kicked (`SLOW_CONSUMER`) instead of letting its backlog grow in our
//! memory. The packet rate limit is a token bucket owned by the task, so
//! checking it takes no lock and one flooding socket slows nobody else.
//!
//! The task waits for the next [`Event`] and handles it with one named
//! step: [`Connection::on_reads`] (the read path: every frame one read
//! brought, whose bodies [`Connection::relay_bodies`], the relay path,
//! sends to the game server in one link send), [`Connection::on_outbound`]
//! (the outbound path: everything already queued for the socket leaves in
//! one write), [`Connection::on_timer`] (requests a game server did not
//! answer in time, the login deadline, the idle timeout), and, when the
//! socket ends, [`Connection::finish`] (the kick path: the last frame, the
//! close, the game server told).
//!
//! **Memory per idle socket.** Tens of thousands of sockets sit idle, so
//! what each one holds while it waits is kept small: one timer armed at
//! the earliest of its deadlines (not one per deadline), a queue that
//! holds no buffer while empty ([`crate::clients`]), and the closing
//! steps boxed so their buffers are not part of every socket's task.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use gamemesh_node::fixed_window::{FixedWindow, Tally};
use gamemesh_node::rate_limit::TokenBucket;
use gamemesh_proto::client::{ErrorCode, KickReason};
use gamemesh_proto::packets;
use gamemesh_transport::NodeId;
use gamemesh_transport::{LinkError, SendManyError};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::clients::{kick_body, ClientHandle, Outbound, Queued};
use crate::in_flight::{InFlight, Reply};
use crate::limits::{abuse_window, packet_bucket, ABUSE_WINDOW};
use crate::pin_table::Route;
use crate::wire::{Inbound, ReadError, Wire};
use crate::Shared;

/// Bodies gathered into one write at most (more stay queued for the next
/// one), so one write never holds a socket's task for long.
const BATCH_BYTES: usize = crate::wire::ws::BATCH_BYTES;

/// Bodies of one read relayed in one link send at most (the rest go in
/// the next), so one burst never holds the socket's task for long.
const RELAY_BATCH: usize = 64;

/// One admitted socket's place under `--max-connections`; dropping it
/// frees the place.
pub(crate) struct Slot {
    /// The gateway's count of admitted sockets.
    open: Arc<AtomicUsize>,
}

impl Slot {
    /// Claims a place if fewer than `max` are taken.
    pub(crate) fn claim(open: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        // The TCP and the WebSocket accept loops claim concurrently: one
        // compare-and-swap, so together they never pass `max`.
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()?;
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
    /// The client closed its side.
    ClientClosed,
    /// We kick it: a `Kicked` goes out last.
    Kicked(KickReason, String),
    /// A game server (or shutdown) closed it, with this last frame.
    Closed {
        /// For the log line.
        reason: String,
        /// Written before the close.
        last: Option<Bytes>,
    },
    /// The socket failed.
    Error(String),
}

/// What wakes a socket's task.
enum Event {
    /// The gateway is stopping.
    Shutdown,
    /// A queue bound was crossed: the client is not reading.
    Slow,
    /// The timer fired: a deadline may have passed (the step checks which).
    Timer,
    /// Something to write.
    Outbound(Outbound),
    /// Something the client sent (or why its input ended).
    Read(Result<Inbound, ReadError>),
}

/// One client socket's state: its two halves, its queue, its limits and
/// timers. Owned by the socket's task.
pub(crate) struct Connection<W> {
    /// The id game servers know the socket by.
    socket: Uuid,
    /// The client's address, for log lines.
    peer: SocketAddr,
    /// `tcp`, `ws` or `wss`, for log lines.
    transport: &'static str,
    /// The gateway's shared state.
    shared: Arc<Shared>,
    /// Cancelled when the gateway stops.
    shutdown: CancellationToken,
    /// The socket's queue, shared with the dispatcher.
    handle: Arc<ClientHandle>,
    /// The socket, framed.
    wire: W,
    /// `--max-packets-per-sec`, owned by the task (no lock).
    bucket: TokenBucket,
    /// `--rate-limit-kick-after`: rate-limited frames in the window.
    abuse: FixedWindow,
    /// Requests relayed and not yet answered.
    in_flight: InFlight,
    /// The socket's one timer, for all its deadlines (the oldest request's,
    /// the idle timeout, the login deadline). Armed lazily: it is moved
    /// earlier when a deadline comes before it, never later, so a body
    /// (which moves the idle deadline later) or an answered request does
    /// not touch it; a wake-up with nothing due re-arms it at the earliest
    /// deadline then.
    timer: Pin<Box<Sleep>>,
    /// When the socket is kicked for idling: the idle timeout after its
    /// last body.
    idle_at: Instant,
    /// The login deadline, until it has been checked once.
    login_at: Option<Instant>,
    /// The socket's place under `--max-connections`, freed on drop.
    _slot: Slot,
}

/// A client socket the listener admitted, and what serving it needs
/// besides its framing.
pub(crate) struct Admitted {
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// The port's name (`tcp`, `ws`, `wss`), for the log lines.
    pub(crate) transport: &'static str,
    /// What every connection shares.
    pub(crate) shared: Arc<Shared>,
    /// The gateway's shutdown.
    pub(crate) shutdown: CancellationToken,
    /// Its place under `--max-connections`, freed when the socket ends.
    pub(crate) slot: Slot,
}

/// Serves one client socket until it closes.
pub(crate) async fn serve<W: Wire>(wire: W, admitted: Admitted) {
    let mut conn = Connection::open(wire, admitted);
    let end = conn.run().await;
    // Boxed: closing holds a drain buffer and the last write's state
    // (several KiB); inline, they would be part of every socket's task
    // for its whole life.
    Box::pin(conn.finish(end)).await;
}

impl<W: Wire> Connection<W> {
    /// Registers the socket's queue and routes it to a game server.
    fn open(wire: W, admitted: Admitted) -> Self {
        let Admitted {
            peer,
            transport,
            shared,
            shutdown,
            slot,
        } = admitted;
        let socket = Uuid::new_v4();
        let config = &shared.config;
        let handle = Arc::new(ClientHandle::new(
            config.outbound_queue_frames,
            config.outbound_queue_bytes,
        ));
        shared.clients.lock().insert(socket, handle.clone());
        info!("Client connected: SocketId={socket}, Peer={peer}, Transport={transport}");
        if let Some(gs) = shared.upstream.pick() {
            shared.pins.insert(socket, gs);
            shared
                .upstream
                .client_connected(gs, &socket, &peer.to_string());
        }
        let now = Instant::now();
        let idle_at = now + config.idle_timeout();
        let login_at = now + config.login_deadline();
        Self {
            socket,
            peer,
            transport,
            bucket: packet_bucket(config.max_packets_per_sec, config.packet_burst()),
            abuse: abuse_window(config.rate_limit_kick_after),
            in_flight: InFlight::new(config.request_timeout()),
            timer: Box::pin(tokio::time::sleep_until(idle_at.min(login_at))),
            idle_at,
            login_at: Some(login_at),
            shared,
            shutdown,
            handle,
            wire,
            _slot: slot,
        }
    }

    /// Handles events until the socket must end, and says why.
    async fn run(&mut self) -> End {
        loop {
            let end = match self.next_event().await {
                Event::Shutdown => Some(shutdown_kick()),
                Event::Slow => Some(self.slow_kick()),
                Event::Timer => self.on_timer(),
                Event::Outbound(out) => self.on_outbound(out).await,
                Event::Read(read) => self.on_reads(read),
            };
            if let Some(end) = end {
                return end;
            }
        }
    }

    /// Waits for the next thing to do, most urgent first.
    async fn next_event(&mut self) -> Event {
        self.arm_timer();
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => Event::Shutdown,
            _ = &mut self.timer => Event::Timer,
            queued = self.handle.next() => match queued {
                Queued::Slow => Event::Slow,
                Queued::Out(out) => Event::Outbound(out),
            },
            read = self.wire.next() => Event::Read(read),
        }
    }

    /// The earliest deadline: the oldest request's, the login deadline
    /// (until checked) or the idle timeout.
    fn next_deadline(&self) -> Instant {
        let mut due = self.idle_at;
        for other in [self.login_at, self.in_flight.next_deadline()]
            .into_iter()
            .flatten()
        {
            due = due.min(other);
        }
        due
    }

    /// Moves the timer to the earliest deadline when that comes before it
    /// (or it has fired); a later deadline waits for the timer to fire.
    fn arm_timer(&mut self) {
        let due = self.next_deadline();
        if due < self.timer.deadline() || self.timer.is_elapsed() {
            self.timer.as_mut().reset(due);
        }
    }

    /// The timer fired: answers the requests past their deadline, checks
    /// the login deadline, and kicks a socket idle for the idle timeout.
    /// A wake-up with nothing due (the timer is armed lazily) does
    /// nothing.
    fn on_timer(&mut self) -> Option<End> {
        let now = Instant::now();
        if self.in_flight.next_deadline().is_some_and(|d| d <= now) {
            self.on_expiry(now);
        }
        if self.login_at.is_some_and(|d| d <= now) {
            if let Some(end) = self.on_login_deadline() {
                return Some(end);
            }
        }
        (self.idle_at <= now).then(|| self.idle_kick())
    }

    /// The read path for what one read of the socket brought: every frame
    /// already complete goes through [`admit_read`](Self::admit_read), and
    /// the bodies to relay leave together ([`relay_bodies`](Self::relay_bodies)):
    /// a client's burst costs one link send, not one per frame. Only what
    /// is already read is taken: a frame never waits for another.
    fn on_reads(&mut self, first: Result<Inbound, ReadError>) -> Option<End> {
        let now = Instant::now();
        let mut bodies = Bodies::default();
        let mut next = Some(first);
        let mut end = None;
        while let Some(read) = next.take() {
            match self.admit_read(read, now) {
                Ok(Some(body)) => bodies.push(body),
                // A control message, or a frame answered RATE_LIMITED: no
                // more input until that answer is written (the event loop
                // writes before it reads), so a kick for abuse finds every
                // earlier answer already on its way.
                Ok(None) => break,
                Err(e) => {
                    end = Some(e);
                    break;
                }
            }
            if bodies.len() < RELAY_BATCH {
                next = self.wire.buffered().transpose();
            }
        }
        // What came before a bad frame is relayed before the socket ends.
        self.relay_bodies(bodies, now).or(end)
    }

    /// One frame read: a body resets the idle timer and, within the packet
    /// rate, is handed back to be relayed; a control message only costs a
    /// token; the end of the input ends the socket.
    fn admit_read(
        &mut self,
        read: Result<Inbound, ReadError>,
        now: Instant,
    ) -> Result<Option<Bytes>, End> {
        match read {
            Ok(Inbound::Body(body)) => {
                self.idle_at = now + self.shared.config.idle_timeout();
                debug!(
                    "Packet received: Socket={}, Size={}",
                    self.socket,
                    body.len()
                );
                let metrics = self.shared.counters.metrics();
                metrics.packets_in.increment(1);
                metrics.bytes_in.increment(body.len() as u64);
                if self.bucket.try_take() {
                    return Ok(Some(body));
                }
                let seq = packets::peek_sequence_id(&body);
                self.rate_limited(Some(seq), now).map_or(Ok(None), Err)
            }
            Ok(Inbound::Control) => {
                if self.bucket.try_take() {
                    return Ok(None);
                }
                self.rate_limited(None, now).map_or(Ok(None), Err)
            }
            Err(ReadError::Closed) => Err(End::ClientClosed),
            Err(ReadError::Io(e)) => Err(End::Error(format!("read failed: {e}"))),
            Err(ReadError::Protocol(e)) => {
                warn!(
                    "Protocol error: SocketId={}, Peer={}, Transport={}: {e}; closing the connection",
                    self.socket, self.peer, self.transport
                );
                Err(End::Kicked(KickReason::ProtocolError, e))
            }
        }
    }

    /// The relay path: the bodies of one read to the socket's game server
    /// in one link send, each tracked in flight until it is answered.
    fn relay_bodies(&mut self, bodies: Bodies, now: Instant) -> Option<End> {
        let all = bodies.as_slice();
        if all.is_empty() {
            return None;
        }
        match relay(&self.shared, &self.socket, all) {
            Ok((gs, went)) => {
                for body in &all[..went] {
                    self.in_flight
                        .sent(packets::peek_sequence_id(body), gs, now);
                }
                None
            }
            Err(reason) => Some(End::Kicked(KickReason::ServerUnavailable, reason)),
        }
    }

    /// Over the packet rate: a body (`seq` is its sequence id) is answered
    /// `RATE_LIMITED` instead of relayed; a control message is only
    /// counted. Past `--rate-limit-kick-after` within the window the
    /// client is kicked.
    fn rate_limited(&mut self, seq: Option<u64>, now: Instant) -> Option<End> {
        let config = &self.shared.config;
        self.shared.counters.rate_limited();
        match self.abuse.record(now) {
            Tally::Tripped => {
                warn!(
                    "Packet rate abuse: SocketId={}, Peer={}: more than --rate-limit-kick-after {} frames rate limited within {} s; kicking",
                    self.socket,
                    self.peer,
                    config.rate_limit_kick_after,
                    ABUSE_WINDOW.as_secs()
                );
                return Some(End::Kicked(
                    KickReason::ProtocolError,
                    "packet rate abuse".into(),
                ));
            }
            Tally::Opened => warn!(
                "Rate limiting SocketId={}, Peer={}: over --max-packets-per-sec {} (burst {}); frames answered RATE_LIMITED",
                self.socket,
                self.peer,
                config.max_packets_per_sec,
                config.packet_burst()
            ),
            Tally::Counted => {}
        }
        if let Some(seq) = seq {
            let reply = packets::error(
                seq,
                ErrorCode::RateLimited,
                format!(
                    "over {} packets per second; slow down",
                    config.max_packets_per_sec
                ),
            );
            self.handle.push(Outbound::Frame(packets::encode(&reply)));
        }
        None
    }

    /// The outbound path: takes `first` and whatever else is already
    /// queued (up to [`BATCH_BYTES`]), writes it all at once, and acts on
    /// a close found in the queue.
    async fn on_outbound(&mut self, first: Outbound) -> Option<End> {
        let mut frames = 0u64;
        let mut bytes = 0usize;
        let mut next = Some(first);
        let mut close = None;
        while let Some(out) = next.take() {
            match admit(&mut self.in_flight, &self.handle, out) {
                // A late answer the gateway already gave (dropped), or a
                // DOWN notice (acted on by `admit`).
                None | Some(Outbound::GameServerDown(_)) => {}
                Some(Outbound::Frame(body) | Outbound::Reply(body)) => {
                    self.wire.queue(&body);
                    frames += 1;
                    bytes += body.len();
                }
                Some(Outbound::Close { last_frame, reason }) => {
                    close = Some(End::Closed {
                        reason,
                        last: last_frame,
                    });
                    break;
                }
            }
            if bytes < BATCH_BYTES {
                next = self.handle.try_pop();
            }
        }
        if frames > 0 {
            let written = self.write_batch().await;
            let metrics = self.shared.counters.metrics();
            metrics.packets_out.increment(frames);
            metrics.bytes_out.increment(bytes as u64);
            self.handle.written(bytes);
            if let Err(end) = written {
                return Some(end);
            }
        }
        close
    }

    /// Writes the batch. A blocked write still honours the slow-consumer
    /// kick, shutdown and the deadlines (the idle timeout among them); the
    /// end it returns says which stopped it.
    async fn write_batch(&mut self) -> Result<(), End> {
        loop {
            self.arm_timer();
            let stopped = tokio::select! {
                r = self.wire.write_batch() => match r {
                    Ok(()) => return Ok(()),
                    Err(e) => End::Error(format!("write failed: {e}")),
                },
                _ = self.handle.slowed() => self.slow_kick(),
                _ = self.shutdown.cancelled() => shutdown_kick(),
                // The write is cancel-safe: a deadline that does not end
                // the socket lets it go on where it stopped.
                _ = &mut self.timer => match self.on_timer() {
                    Some(end) => end,
                    None => continue,
                },
            };
            return Err(stopped);
        }
    }

    /// Answers `UNAVAILABLE` for the requests past their deadline at `now`.
    fn on_expiry(&mut self, now: Instant) {
        let expired = self.in_flight.expire(now);
        if expired.is_empty() {
            return;
        }
        if let Some(suppressed) = self.shared.timeout_log.allow() {
            warn!(
                "Request timeout: SocketId={}: {} requests unanswered for --request-timeout-ms {}; answering UNAVAILABLE ({suppressed} more sockets' lines not logged)",
                self.socket,
                expired.len(),
                self.shared.config.request_timeout_ms
            );
        }
        metrics::counter!("gamemesh_gateway_requests_failed_total", "reason" => "timeout")
            .increment(expired.len() as u64);
        for seq in expired {
            answer_unavailable(
                &self.handle,
                seq,
                "the game server did not answer in time; retry with the same sequence id",
            );
        }
    }

    /// Kicks a socket that has not logged in by the deadline.
    fn on_login_deadline(&mut self) -> Option<End> {
        self.login_at = None;
        if self.handle.logged_in.load(Ordering::Relaxed) {
            return None;
        }
        let deadline = self.shared.config.login_deadline();
        warn!(
            "Login deadline: SocketId={}, Peer={}: not logged in within --login-deadline-secs {}; kicking",
            self.socket,
            self.peer,
            deadline.as_secs()
        );
        Some(End::Kicked(
            KickReason::ProtocolError,
            format!("no login within {} s", deadline.as_secs()),
        ))
    }

    /// The kick for a client that does not read, saying which bound it
    /// crossed.
    fn slow_kick(&self) -> End {
        let (socket, peer) = (self.socket, self.peer);
        if self.handle.over_bytes.load(Ordering::Relaxed) {
            warn!(
                "Slow consumer: SocketId={socket}, Peer={peer}: over --outbound-queue-bytes {} queued; kicking",
                self.handle.max_bytes
            );
            End::Kicked(
                KickReason::SlowConsumer,
                format!(
                    "more than {} bytes queued for a client that is not reading",
                    self.handle.max_bytes
                ),
            )
        } else {
            warn!(
                "Slow consumer: SocketId={socket}, Peer={peer}: over --outbound-queue-frames {} queued; kicking",
                self.shared.config.outbound_queue_frames
            );
            End::Kicked(
                KickReason::SlowConsumer,
                "client is not reading its frames".into(),
            )
        }
    }

    /// The kick for a socket with no body for the idle timeout.
    fn idle_kick(&self) -> End {
        End::Kicked(
            KickReason::IdleTimeout,
            format!(
                "no frame for {} s",
                self.shared.config.idle_timeout().as_secs()
            ),
        )
    }

    /// The kick path, and every other end: writes the last frame (a
    /// `Kicked`, or a game server's), closes our side, drains the client's
    /// input meanwhile when we are the ones closing (so a client blocked
    /// writing to us gets unstuck and can read it), then forgets the
    /// socket and tells its game server.
    async fn finish(self, end: End) {
        let shared = self.shared;
        let drain = matches!(end, End::Kicked(..) | End::Closed { .. });
        let (reason, last) = match end {
            End::ClientClosed => ("client closed".to_string(), None),
            End::Kicked(kind, detail) => {
                shared.counters.kicked(kind);
                (
                    format!("kicked ({}): {detail}", kind.as_str_name()),
                    Some(kick_body(kind, &detail)),
                )
            }
            End::Closed { reason, last } => (reason, last),
            End::Error(e) => (e, None),
        };
        self.wire.close(last, drain).await;
        let socket = self.socket;
        shared.clients.lock().remove(&socket);
        if let Some(route) = shared.pins.remove(&socket) {
            shared.upstream.client_disconnected(
                route.game_server,
                &socket,
                route.session_id,
                &reason,
            );
        }
        info!(
            "Client disconnected: SocketId={socket}, Peer={}, Reason={reason}",
            self.peer
        );
    }
}

/// The kick every socket gets when the gateway stops.
fn shutdown_kick() -> End {
    End::Kicked(KickReason::ServerShutdown, "gateway shutting down".into())
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
        // The game server took these and went down: they may have run
        // there (a killed server may not have saved them; a stopped one
        // may still run them when it wakes), so a re-send could run them
        // twice. The client is told so rather than invited to retry.
        for (seq, _) in failed {
            let reply = packets::outcome_unknown(
                seq,
                format!("game server {down} went down holding this request; it may have run"),
            );
            handle.push(Outbound::Frame(packets::encode(&reply)));
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

/// Sends the frames of one read to the socket's game server, moving the
/// socket to a live game server when its own is down (or, for a socket
/// with no session yet, draining). `Ok((gs, n))`: the first `n` bodies
/// were relayed to `gs` (the rest, refused by the link, were answered
/// `UNAVAILABLE`). `Err` means no game server is available.
fn relay(shared: &Shared, socket: &Uuid, bodies: &[Bytes]) -> Result<(NodeId, usize), String> {
    let route = route(shared, socket)?;
    let gs = route.game_server;
    let sent = match bodies {
        [body] => shared
            .upstream
            .send_frame(gs, socket, route, body.clone())
            .map_err(|error| SendManyError { sent: 0, error }),
        _ => shared.upstream.send_frames(gs, socket, route, bodies),
    };
    match sent {
        Ok(()) => Ok((gs, bodies.len())),
        Err(e) => {
            answer_refused(shared, socket, gs, &e.error, &bodies[e.sent..]);
            Ok((gs, e.sent))
        }
    }
}

/// The pin of `socket`, moved to a live game server when its own cannot
/// serve it; `Err` when none can.
fn route(shared: &Shared, socket: &Uuid) -> Result<Route, String> {
    Ok(match shared.pins.get(socket) {
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
    })
}

/// Answers `UNAVAILABLE` to each body the link to `gs` refused.
fn answer_refused(shared: &Shared, socket: &Uuid, gs: NodeId, e: &LinkError, bodies: &[Bytes]) {
    // A full pipe (the game server is not keeping up) is answered like a
    // dead one: the client hears UNAVAILABLE for this frame and may retry.
    // It is counted (`gamemesh_link_hwm_events_total`) and logged at most
    // once a second, since it comes in floods.
    let detail = match e {
        LinkError::Full(_) => {
            if let Some(suppressed) = shared.hwm_log.allow() {
                warn!(
                    "Relay to game server {gs} refused: its queue is at the high-water mark (--link-sndhwm); answering UNAVAILABLE ({suppressed} more not logged)"
                );
            }
            format!("game server {gs} is overloaded; retry")
        }
        _ => {
            warn!("Relay to game server {gs} failed: SocketId={socket}: {e}");
            format!("game server {gs} is unreachable; retry")
        }
    };
    let metrics = shared.counters.metrics();
    for body in bodies {
        metrics.relay_failures.increment(1);
        let seq = packets::peek_sequence_id(body);
        let reply = packets::error(seq, ErrorCode::Unavailable, detail.clone());
        shared
            .clients
            .deliver(socket, Outbound::Frame(packets::encode(&reply)));
    }
}

/// The bodies one read brought, held without allocating for the usual
/// single one.
#[derive(Default)]
enum Bodies {
    /// None (all were control messages or rate limited).
    #[default]
    None,
    /// One: a lockstep client.
    One(Bytes),
    /// Several: a burst.
    Many(Vec<Bytes>),
}

impl Bodies {
    fn push(&mut self, body: Bytes) {
        *self = match std::mem::take(self) {
            Bodies::None => Bodies::One(body),
            Bodies::One(first) => Bodies::Many(vec![first, body]),
            Bodies::Many(mut all) => {
                all.push(body);
                Bodies::Many(all)
            }
        };
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn as_slice(&self) -> &[Bytes] {
        match self {
            Bodies::None => &[],
            Bodies::One(body) => std::slice::from_ref(body),
            Bodies::Many(all) => all,
        }
    }
}
