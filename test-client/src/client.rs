//! A protocol-level game client: one TCP connection to a gateway, speaking
//! length-prefixed `ClientPacket` / `ServerPacket` frames (docs/PROTOCOL.md).
//!
//! It is deliberately thin and honest: it never retries, reconnects or hides
//! what the server sent, because its job is to check what the system does.
//! Replies are matched to requests by `sequence_id`; anything that arrives
//! while waiting for something else (pushes, late replies) is kept in a
//! small queue so a test can still look at it afterwards.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use gamemesh_proto::client::{
    client_packet, server_packet, ChatJoinRequest, ChatJoinResponse, ChatLeaveRequest,
    ChatLeaveResponse, ChatListRoomsRequest, ChatRoomInfo, ChatSayRequest, ChatWhisperRequest,
    ClientPacket, EchoRequest, ErrorCode, ErrorResponse, HeartbeatRequest, HeartbeatResponse,
    IncrementRequest, KickReason, LoginRequest, LoginResponse, LogoutRequest, ResumeRequest,
    ResumeResponse, ServerNotice, ServerPacket, SessionSnapshot,
};
use gamemesh_proto::{FrameCodec, FrameError, Message};
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::Framed;

/// How long a request, a connect or a wait may take unless told otherwise.
/// Every wait in the client is bounded, so a silent server fails a test
/// instead of hanging it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest frame body the client reads or writes. Far above the gateway's
/// 64 KiB default on purpose: the client must be able to *send* oversized
/// frames to check that the gateway refuses them, and must not choke on a
/// server reply that is slightly larger than the request it echoes.
pub const MAX_CLIENT_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// How many unclaimed packets are kept. A test that never reads its pushes
/// must not grow memory without bound; the oldest are dropped first.
const MAX_QUEUED_PACKETS: usize = 256;

/// How long login tokens minted by [`token_for`] stay valid.
const TOKEN_LIFETIME_SECS: u64 = 3600;

/// What went wrong talking to the server. Variants are kept apart so tests
/// can tell "the server said no" from "the server went away" from "the
/// server said nothing".
#[derive(Debug, Error)]
pub enum ClientError {
    /// The TCP connection could not be opened.
    #[error("cannot connect to {addr}: {} — {}", plain_io(.cause), connect_hint(.cause))]
    Connect {
        /// The address as it was given.
        addr: String,
        /// Why (not marked `#[source]`: its text is already in the message,
        /// and `{:#}` would print it twice).
        cause: io::Error,
    },
    /// Nothing suitable arrived within the allowed time.
    #[error("no answer from the server within {0:?}")]
    Timeout(Duration),
    /// The server closed the connection (end of stream or reset).
    #[error("the server closed the connection")]
    Closed,
    /// The server sent a frame with a bad length header, or we tried to
    /// send a body the codec refuses (empty, or over
    /// [`MAX_CLIENT_FRAME_BYTES`]).
    #[error("framing error: {0}")]
    Frame(FrameError),
    /// A frame arrived whose body is not a `ServerPacket`.
    #[error("the server sent a body that is not a ServerPacket: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The socket failed for another reason.
    #[error("i/o error: {}", plain_io(.0))]
    Io(io::Error),
    /// The server answered the request with an `ErrorResponse`.
    #[error("the server answered {} (sequence id {sequence_id})", describe_error(.error))]
    Server {
        /// The sequence id the error answered.
        sequence_id: u64,
        /// The error as sent.
        error: ErrorResponse,
    },
    /// The server answered with a body of the wrong kind.
    #[error("expected a {expected} reply, got {}", describe(.got))]
    Unexpected {
        /// What the request should have produced.
        expected: &'static str,
        /// What came instead (boxed: it is rare and large).
        got: Box<ServerPacket>,
    },
}

impl ClientError {
    /// The protocol error code when the server answered with an
    /// `ErrorResponse`, so tests can write
    /// `assert_eq!(err.error_code(), Some(ErrorCode::InvalidToken))`.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { error, .. } => Some(error.code()),
            _ => None,
        }
    }

    /// A short static label (for summaries and assertions).
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::Connect { .. } => "connect",
            ClientError::Timeout(_) => "timeout",
            ClientError::Closed => "closed",
            ClientError::Frame(_) => "frame",
            ClientError::Decode(_) => "decode",
            ClientError::Io(_) => "io",
            ClientError::Server { .. } => "server_error",
            ClientError::Unexpected { .. } => "unexpected",
        }
    }
}

/// Sorts a socket error for a client's error type: a reset, an abort, a
/// broken pipe or an early end means the server went away, which callers
/// care about as `closed`, not as an I/O fault (`io`). This client and the
/// load generator's (`load::Failure`) sort theirs alike.
pub(crate) fn sort_io_error<E>(e: io::Error, closed: E, io: fn(io::Error) -> E) -> E {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => closed,
        _ => io(e),
    }
}

/// [`sort_io_error`] for a framing error; a bad frame is `frame`.
pub(crate) fn sort_frame_error<E>(
    e: FrameError,
    closed: E,
    io: fn(io::Error) -> E,
    frame: fn(FrameError) -> E,
) -> E {
    match e {
        FrameError::Io(e) => sort_io_error(e, closed, io),
        other => frame(other),
    }
}

fn from_io(e: io::Error) -> ClientError {
    sort_io_error(e, ClientError::Closed, ClientError::Io)
}

fn from_frame(e: FrameError) -> ClientError {
    sort_frame_error(e, ClientError::Closed, ClientError::Io, ClientError::Frame)
}

/// What to check next after a failed connect: a refusal or silence points at
/// the gateway, anything else (DNS, bad address) at the address itself.
fn connect_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::ConnectionRefused | io::ErrorKind::TimedOut => "is the gateway running?",
        _ => "check the address (host:port)",
    }
}

/// An I/O error as a plain phrase: "connection refused", not
/// "Connection refused (os error 111)".
fn plain_io(e: &io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error ") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => e.kind().to_string(),
    }
}

/// Hands out sequence ids: strictly increasing, never 0 (0 means "not
/// deduplicated" and its reply could not be told from a push).
#[derive(Debug, Clone)]
struct SequenceCounter {
    /// The id the next request gets.
    next: u64,
}

impl SequenceCounter {
    fn new() -> Self {
        Self { next: 1 }
    }

    fn allocate(&mut self) -> u64 {
        let id = self.next;
        self.next = self.next.saturating_add(1);
        id
    }

    fn peek(&self) -> u64 {
        self.next
    }

    fn last(&self) -> u64 {
        self.next - 1
    }

    fn set_next(&mut self, next: u64) {
        self.next = next.max(1);
    }
}

/// A point in time a wait must end by, with the total it was given (for the
/// error message).
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    total: Duration,
}

impl Deadline {
    fn after(total: Duration) -> Self {
        Self {
            at: Instant::now() + total,
            total,
        }
    }
}

/// One client connection to a gateway.
#[derive(Debug)]
pub struct Client {
    /// The socket, cut into frames both ways by the shared codec so the
    /// client frames exactly as the gateway parses.
    framed: Framed<TcpStream, FrameCodec>,
    /// The address as given, for messages.
    addr: String,
    /// The wait used by [`Client::request`] and the convenience methods.
    timeout: Duration,
    /// Sequence ids for the convenience methods.
    seq: SequenceCounter,
    /// Packets read while waiting for something else, oldest first: pushes
    /// that arrived before a reply, replies nobody claimed.
    queue: VecDeque<ServerPacket>,
}

impl Client {
    /// Connects to a gateway at `addr` (`host:port`), waiting at most
    /// [`DEFAULT_TIMEOUT`].
    pub async fn connect(addr: &str) -> Result<Client, ClientError> {
        Self::connect_with_timeout(addr, DEFAULT_TIMEOUT).await
    }

    /// Connects, waiting at most `timeout`; `timeout` also becomes the
    /// client's default wait for replies.
    pub async fn connect_with_timeout(
        addr: &str,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let connect_error = |cause| ClientError::Connect {
            addr: addr.to_owned(),
            cause,
        };
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(connect_error(e)),
            Err(_) => {
                return Err(connect_error(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {timeout:?}"),
                )))
            }
        };
        Self::from_stream(stream, addr, timeout).map_err(connect_error)
    }

    /// A client over a socket the caller connected (say, from a chosen
    /// source address, as the storm tests do); `addr` is for messages and
    /// `timeout` becomes the default wait for replies.
    pub fn from_stream(stream: TcpStream, addr: &str, timeout: Duration) -> io::Result<Client> {
        // Requests are small and latency is what the echo command measures:
        // Nagle's algorithm would add delayed-ACK stalls to round trips.
        stream.set_nodelay(true)?;
        Ok(Client {
            framed: Framed::new(stream, FrameCodec::new(MAX_CLIENT_FRAME_BYTES)),
            addr: addr.to_owned(),
            timeout,
            seq: SequenceCounter::new(),
            queue: VecDeque::new(),
        })
    }

    /// The address this client connected to, as given.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The default wait for a reply.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Changes the default wait for a reply.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The sequence id the next convenience call will use (1 on a fresh
    /// client).
    pub fn next_sequence(&self) -> u64 {
        self.seq.peek()
    }

    /// The sequence id most recently handed out (0 if none yet).
    pub fn last_sequence(&self) -> u64 {
        self.seq.last()
    }

    /// Takes the next sequence id for a hand-built packet, so later
    /// convenience calls do not reuse it.
    pub fn allocate_sequence(&mut self) -> u64 {
        self.seq.allocate()
    }

    /// Sets the id the next convenience call uses. A resumed session
    /// continues its sequence, so after a resume set this to the snapshot's
    /// `last_sequence_id + 1`. 0 is taken as 1.
    pub fn set_next_sequence(&mut self, next: u64) {
        self.seq.set_next(next);
    }

    /// Sends one packet, as is.
    pub async fn send(&mut self, packet: &ClientPacket) -> Result<(), ClientError> {
        self.framed
            .send(Bytes::from(packet.encode_to_vec()))
            .await
            .map_err(from_frame)
    }

    /// Sends an arbitrary body in a well-formed frame (for malformed-body
    /// tests). The body must be 1..=[`MAX_CLIENT_FRAME_BYTES`] bytes; use
    /// [`Client::send_bytes_unframed`] for bad framing.
    pub async fn send_raw(&mut self, body: &[u8]) -> Result<(), ClientError> {
        self.framed.send(body).await.map_err(from_frame)
    }

    /// Writes bytes straight to the socket with no framing (for bad length
    /// headers, split frames, trickled bytes).
    pub async fn send_bytes_unframed(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        // Every framed send flushes, so nothing framed is left buffered
        // ahead of these bytes.
        let stream = self.framed.get_mut();
        stream.write_all(bytes).await.map_err(from_io)?;
        stream.flush().await.map_err(from_io)
    }

    /// The next packet, whatever it is: queued packets first, then the
    /// socket.
    pub async fn recv(&mut self, timeout: Duration) -> Result<ServerPacket, ClientError> {
        if let Some(packet) = self.queue.pop_front() {
            return Ok(packet);
        }
        self.read_one(Deadline::after(timeout)).await
    }

    /// The next server push (`sequence_id` 0), queued or from the socket.
    /// Replies read meanwhile are queued.
    pub async fn next_push(&mut self, timeout: Duration) -> Result<ServerPacket, ClientError> {
        self.wait_for(Deadline::after(timeout), |p| p.sequence_id == 0)
            .await
    }

    /// Sends `packet` and waits (the client's timeout) for the reply with
    /// the same `sequence_id`; anything else read meanwhile is queued (see
    /// [`Client::next_push`], [`Client::queued`]). A packet with sequence id
    /// 0 cannot be told from a push by its reply: it takes the next
    /// sequence-id-0 packet that is not a `Kicked` or a `ServerNotice`
    /// (both only ever pushed).
    pub async fn request(&mut self, packet: &ClientPacket) -> Result<ServerPacket, ClientError> {
        let deadline = Deadline::after(self.timeout);
        self.send(packet).await?;
        let seq = packet.sequence_id;
        if seq == 0 {
            self.wait_for(deadline, |p| {
                p.sequence_id == 0
                    && !matches!(
                        p.body,
                        Some(server_packet::Body::Kicked(_) | server_packet::Body::Notice(_))
                    )
            })
            .await
        } else {
            self.wait_for(deadline, |p| p.sequence_id == seq).await
        }
    }

    /// Sends `body` with the next sequence id and waits for its reply.
    pub async fn call(&mut self, body: client_packet::Body) -> Result<ServerPacket, ClientError> {
        let sequence_id = self.seq.allocate();
        self.request(&ClientPacket {
            sequence_id,
            body: Some(body),
        })
        .await
    }

    /// Logs in. An `ErrorResponse` comes back as [`ClientError::Server`].
    pub async fn login(&mut self, user_id: u64, token: &str) -> Result<LoginResponse, ClientError> {
        let reply = self
            .call(client_packet::Body::Login(LoginRequest {
                user_id,
                token: token.to_owned(),
            }))
            .await?;
        match reply.body {
            Some(server_packet::Body::Login(login)) => Ok(login),
            _ => Err(not_the_reply("login", reply)),
        }
    }

    /// Resumes a session on this connection and returns its snapshot. The
    /// resume itself uses this client's next sequence id; afterwards call
    /// [`Client::set_next_sequence`] with `last_sequence_id + 1`.
    pub async fn resume(
        &mut self,
        session_id: u64,
        resume_token: &str,
    ) -> Result<SessionSnapshot, ClientError> {
        let reply = self
            .call(client_packet::Body::Resume(ResumeRequest {
                session_id,
                resume_token: resume_token.to_owned(),
            }))
            .await?;
        match reply.body {
            Some(server_packet::Body::Resume(ResumeResponse {
                snapshot: Some(snapshot),
            })) => Ok(snapshot),
            _ => Err(not_the_reply("resume (with a snapshot)", reply)),
        }
    }

    /// Echoes `data` with the next sequence id and returns what came back.
    pub async fn echo(&mut self, data: impl Into<Bytes>) -> Result<Bytes, ClientError> {
        let sequence_id = self.seq.allocate();
        self.echo_at(sequence_id, data).await
    }

    /// Echoes `data` with an explicit sequence id, leaving the counter
    /// alone (for duplicate-sequence tests).
    pub async fn echo_at(
        &mut self,
        sequence_id: u64,
        data: impl Into<Bytes>,
    ) -> Result<Bytes, ClientError> {
        let reply = self
            .request(&ClientPacket {
                sequence_id,
                body: Some(client_packet::Body::Echo(EchoRequest { data: data.into() })),
            })
            .await?;
        match reply.body {
            Some(server_packet::Body::Echo(echo)) => Ok(echo.data),
            _ => Err(not_the_reply("echo", reply)),
        }
    }

    /// Increments the session's counter as `sequence_id` and returns the
    /// new value. Re-sending the same sequence id after a lost reply is
    /// safe: the server answers from its reply cache.
    pub async fn increment_at(&mut self, sequence_id: u64) -> Result<u64, ClientError> {
        let reply = self
            .request(&ClientPacket {
                sequence_id,
                body: Some(client_packet::Body::Increment(IncrementRequest {})),
            })
            .await?;
        match reply.body {
            Some(server_packet::Body::Increment(i)) => Ok(i.value),
            _ => Err(not_the_reply("increment", reply)),
        }
    }

    /// Sends a heartbeat carrying the local wall clock.
    pub async fn heartbeat(&mut self) -> Result<HeartbeatResponse, ClientError> {
        let client_time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let reply = self
            .call(client_packet::Body::Heartbeat(HeartbeatRequest {
                client_time_ms,
            }))
            .await?;
        match reply.body {
            Some(server_packet::Body::Heartbeat(heartbeat)) => Ok(heartbeat),
            _ => Err(not_the_reply("heartbeat", reply)),
        }
    }

    /// Logs out (the `LogoutResponse` is empty, so there is nothing to
    /// return).
    pub async fn logout(&mut self) -> Result<(), ClientError> {
        let reply = self
            .call(client_packet::Body::Logout(LogoutRequest {}))
            .await?;
        match reply.body {
            Some(server_packet::Body::Logout(_)) => Ok(()),
            _ => Err(not_the_reply("logout", reply)),
        }
    }

    /// Lists the chat rooms.
    pub async fn chat_list_rooms(&mut self) -> Result<Vec<ChatRoomInfo>, ClientError> {
        let reply = self
            .call(client_packet::Body::ChatListRooms(ChatListRoomsRequest {}))
            .await?;
        match reply.body {
            Some(server_packet::Body::ChatListRooms(r)) => Ok(r.rooms),
            _ => Err(not_the_reply("chat_list_rooms", reply)),
        }
    }

    /// Joins (and creates) a chat room.
    pub async fn chat_join(&mut self, room: &str) -> Result<ChatJoinResponse, ClientError> {
        let reply = self
            .call(client_packet::Body::ChatJoin(ChatJoinRequest {
                room: room.to_owned(),
            }))
            .await?;
        match reply.body {
            Some(server_packet::Body::ChatJoin(r)) => Ok(r),
            _ => Err(not_the_reply("chat_join", reply)),
        }
    }

    /// Leaves a chat room.
    pub async fn chat_leave(&mut self, room: &str) -> Result<ChatLeaveResponse, ClientError> {
        let reply = self
            .call(client_packet::Body::ChatLeave(ChatLeaveRequest {
                room: room.to_owned(),
            }))
            .await?;
        match reply.body {
            Some(server_packet::Body::ChatLeave(r)) => Ok(r),
            _ => Err(not_the_reply("chat_leave", reply)),
        }
    }

    /// Says `text` in `room`; returns the `room_seq` the room gave it.
    pub async fn chat_say(&mut self, room: &str, text: &str) -> Result<u64, ClientError> {
        let reply = self
            .call(client_packet::Body::ChatSay(ChatSayRequest {
                room: room.to_owned(),
                text: text.to_owned(),
            }))
            .await?;
        match reply.body {
            Some(server_packet::Body::ChatSay(r)) => Ok(r.room_seq),
            _ => Err(not_the_reply("chat_say", reply)),
        }
    }

    /// Whispers `text` to `user_id`.
    pub async fn chat_whisper(&mut self, user_id: u64, text: &str) -> Result<(), ClientError> {
        let reply = self
            .call(client_packet::Body::ChatWhisper(ChatWhisperRequest {
                to_user_id: user_id,
                text: text.to_owned(),
            }))
            .await?;
        match reply.body {
            Some(server_packet::Body::ChatWhisper(_)) => Ok(()),
            _ => Err(not_the_reply("chat_whisper", reply)),
        }
    }

    /// Waits up to `timeout` for the server to close the connection: true
    /// when it did, false on timeout or another socket error. Packets read
    /// meanwhile are queued.
    pub async fn wait_closed(&mut self, timeout: Duration) -> bool {
        let deadline = Deadline::after(timeout);
        loop {
            match self.read_one(deadline).await {
                Ok(packet) => self.enqueue(packet),
                Err(ClientError::Closed) => return true,
                // The frame was consumed; the stream is still in step.
                Err(ClientError::Decode(e)) => {
                    tracing::debug!(error = %e, "undecodable body while waiting for close")
                }
                Err(e) => {
                    tracing::debug!(error = %e, "stopped waiting for close");
                    return false;
                }
            }
        }
    }

    /// Packets read but not yet claimed, oldest first (for diagnostics).
    pub fn queued(&self) -> impl Iterator<Item = &ServerPacket> {
        self.queue.iter()
    }

    /// Removes and returns every unclaimed packet.
    pub fn take_queued(&mut self) -> Vec<ServerPacket> {
        self.queue.drain(..).collect()
    }

    /// Returns the first queued packet matching `wanted`, else reads until
    /// one arrives, queueing the others.
    async fn wait_for(
        &mut self,
        deadline: Deadline,
        wanted: impl Fn(&ServerPacket) -> bool,
    ) -> Result<ServerPacket, ClientError> {
        if let Some(i) = self.queue.iter().position(&wanted) {
            if let Some(packet) = self.queue.remove(i) {
                return Ok(packet);
            }
        }
        loop {
            let packet = self.read_one(deadline).await?;
            if wanted(&packet) {
                return Ok(packet);
            }
            self.enqueue(packet);
        }
    }

    fn enqueue(&mut self, packet: ServerPacket) {
        tracing::debug!(packet = %describe(&packet), "queued");
        if self.queue.len() == MAX_QUEUED_PACKETS {
            if let Some(dropped) = self.queue.pop_front() {
                tracing::warn!(packet = %describe(&dropped), "packet queue full, dropped the oldest");
            }
        }
        self.queue.push_back(packet);
    }

    /// Takes the notices read so far (pushes kept while waiting for
    /// replies), oldest first; other queued packets stay.
    pub fn take_notices(&mut self) -> Vec<ServerNotice> {
        let mut notices = Vec::new();
        self.queue.retain(|p| match &p.body {
            Some(server_packet::Body::Notice(n)) => {
                notices.push(n.clone());
                false
            }
            _ => true,
        });
        notices
    }

    /// Reads one packet from the socket.
    async fn read_one(&mut self, deadline: Deadline) -> Result<ServerPacket, ClientError> {
        // `Framed::next` is cancel-safe: a timeout mid-frame keeps the
        // partial bytes buffered for the next read.
        match tokio::time::timeout_at(deadline.at, self.framed.next()).await {
            Err(_) => Err(ClientError::Timeout(deadline.total)),
            Ok(None) => Err(ClientError::Closed),
            Ok(Some(Err(e))) => Err(from_frame(e)),
            Ok(Some(Ok(body))) => Ok(ServerPacket::decode(body)?),
        }
    }
}

/// The error for a reply of the wrong kind: an `ErrorResponse` becomes
/// [`ClientError::Server`] so callers can match on its code.
fn not_the_reply(expected: &'static str, packet: ServerPacket) -> ClientError {
    match packet.body {
        Some(server_packet::Body::Error(error)) => ClientError::Server {
            sequence_id: packet.sequence_id,
            error,
        },
        _ => ClientError::Unexpected {
            expected,
            got: Box::new(packet),
        },
    }
}

/// A login token for `user_id`: minted with `secret` and valid for an hour,
/// or `"dev"` when the servers run without a secret (they accept any token
/// then).
pub fn token_for(secret: Option<&str>, user_id: u64) -> String {
    match secret {
        Some(secret) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            gamemesh_proto::auth::mint_token(secret.as_bytes(), user_id, now + TOKEN_LIFETIME_SECS)
        }
        None => "dev".to_owned(),
    }
}

/// An error code's name as docs/PROTOCOL.md writes it (`NOT_AUTHENTICATED`).
pub fn error_code_name(code: i32) -> String {
    match ErrorCode::try_from(code) {
        Ok(c) => c.as_str_name().trim_start_matches("ERROR_CODE_").to_owned(),
        Err(_) => format!("unknown error code {code}"),
    }
}

/// A kick reason's name as docs/PROTOCOL.md writes it (`DUPLICATE_LOGIN`).
pub fn kick_reason_name(reason: i32) -> String {
    match KickReason::try_from(reason) {
        Ok(r) => r
            .as_str_name()
            .trim_start_matches("KICK_REASON_")
            .to_owned(),
        Err(_) => format!("unknown kick reason {reason}"),
    }
}

fn describe_error(error: &ErrorResponse) -> String {
    let text = if error.detail.is_empty() {
        error_code_name(error.code)
    } else {
        format!("{} ({})", error_code_name(error.code), error.detail)
    };
    // It may have run, and a re-send with its id gets this answer back.
    if error.outcome_unknown {
        format!("{text}, outcome unknown")
    } else {
        text
    }
}

/// Echo data as a short readable string: tests print what they got back.
fn show_data(data: &[u8]) -> String {
    const MAX: usize = 48;
    let text = String::from_utf8_lossy(&data[..data.len().min(MAX)]);
    if data.len() > MAX {
        format!("{text:?}… ({} bytes)", data.len())
    } else {
        format!("{text:?}")
    }
}

/// A one-line description of a server packet, for failure messages.
pub fn describe(packet: &ServerPacket) -> String {
    use server_packet::Body;
    let body = match &packet.body {
        None => "an empty packet".to_owned(),
        Some(Body::Login(l)) => format!(
            "login(session {}, game server {}, replaced {})",
            l.session_id, l.game_server_node_id, l.replaced_existing_session
        ),
        Some(Body::Resume(r)) => match &r.snapshot {
            Some(s) => format!(
                "resume(session {}, user {}, last sequence id {})",
                s.session_id, s.user_id, s.last_sequence_id
            ),
            None => "resume(no snapshot)".to_owned(),
        },
        Some(Body::Echo(e)) => format!("echo({})", show_data(&e.data)),
        Some(Body::Heartbeat(_)) => "heartbeat".to_owned(),
        Some(Body::Logout(_)) => "logout".to_owned(),
        Some(Body::Increment(i)) => format!("increment({})", i.value),
        Some(Body::Kicked(k)) if k.detail.is_empty() => {
            format!("kicked({})", kick_reason_name(k.reason))
        }
        Some(Body::Kicked(k)) => format!("kicked({}: {})", kick_reason_name(k.reason), k.detail),
        Some(Body::Error(e)) => format!("error({})", describe_error(e)),
        Some(Body::ChatListRooms(r)) => format!("chat_list_rooms({} rooms)", r.rooms.len()),
        Some(Body::ChatJoin(r)) => format!(
            "chat_join({}, {} members, room_seq {})",
            r.room,
            r.member_user_ids.len(),
            r.room_seq
        ),
        Some(Body::ChatLeave(r)) => format!("chat_leave({}, room_seq {})", r.room, r.room_seq),
        Some(Body::ChatSay(r)) => format!("chat_say({}, room_seq {})", r.room, r.room_seq),
        Some(Body::ChatWhisper(r)) => format!("chat_whisper(to user {})", r.to_user_id),
        Some(Body::ChatMessage(m)) => format!(
            "chat_message({} #{} from user {}: {:?})",
            m.room, m.room_seq, m.from_user_id, m.text
        ),
        Some(Body::ChatNotice(n)) => {
            format!("chat_notice({} #{}: {:?})", n.room, n.room_seq, n.text)
        }
        Some(Body::ChatWhispered(w)) => {
            format!("chat_whispered(from user {}: {:?})", w.from_user_id, w.text)
        }
        Some(Body::Notice(n)) => format!("notice({}: {})", n.kind, n.text),
        Some(Body::Game(g)) => format!("game({} payload bytes)", g.payload.len()),
        Some(Body::GamePush(p)) => {
            format!("game_push({}, {} payload bytes)", p.route, p.payload.len())
        }
    };
    format!("{body} [sequence id {}]", packet.sequence_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gamemesh_proto::packets;
    use std::future::Future;
    use tokio::net::TcpListener;

    const SHORT: Duration = Duration::from_millis(200);

    #[test]
    fn sequence_counter_starts_at_one_and_increments() {
        let mut s = SequenceCounter::new();
        assert_eq!((s.peek(), s.last()), (1, 0));
        assert_eq!(s.allocate(), 1);
        assert_eq!(s.allocate(), 2);
        assert_eq!((s.peek(), s.last()), (3, 2));
    }

    #[test]
    fn sequence_counter_continues_from_a_resumed_session() {
        let mut s = SequenceCounter::new();
        s.allocate();
        s.set_next(41);
        assert_eq!(s.last(), 40);
        assert_eq!(s.allocate(), 41);
        s.set_next(0);
        assert_eq!(s.allocate(), 1, "0 would mean 'not deduplicated'");
        s.set_next(u64::MAX);
        assert_eq!(s.allocate(), u64::MAX);
        assert_eq!(s.allocate(), u64::MAX, "saturates instead of wrapping to 0");
    }

    #[test]
    fn token_without_secret_is_dev() {
        assert_eq!(token_for(None, 42), "dev");
    }

    #[test]
    fn token_with_secret_verifies_for_an_hour() {
        let token = token_for(Some("s3cret"), 42);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let verify = |user, at| gamemesh_proto::auth::verify_token(b"s3cret", user, &token, at);
        assert_eq!(verify(42, now), Ok(()));
        assert!(verify(43, now).is_err(), "bound to the user id");
        assert!(
            verify(42, now + TOKEN_LIFETIME_SECS + 5).is_err(),
            "expires"
        );
    }

    #[test]
    fn names_and_descriptions_read_like_the_protocol() {
        assert_eq!(
            error_code_name(ErrorCode::NotAuthenticated as i32),
            "NOT_AUTHENTICATED"
        );
        assert_eq!(error_code_name(999), "unknown error code 999");
        assert_eq!(
            kick_reason_name(KickReason::DuplicateLogin as i32),
            "DUPLICATE_LOGIN"
        );
        let kicked = packets::kicked(KickReason::DuplicateLogin, "");
        assert_eq!(describe(&kicked), "kicked(DUPLICATE_LOGIN) [sequence id 0]");
        let err = packets::error(7, ErrorCode::InvalidToken, "bad signature");
        assert_eq!(
            describe(&err),
            "error(INVALID_TOKEN (bad signature)) [sequence id 7]"
        );
        assert_eq!(
            describe(&echo_reply(3, b"hi")),
            "echo(\"hi\") [sequence id 3]"
        );
    }

    #[test]
    fn io_errors_read_plainly() {
        let e = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(plain_io(&e), "connection refused");
        let e = io::Error::from_raw_os_error(111);
        assert!(!plain_io(&e).contains("os error"), "{}", plain_io(&e));
    }

    fn echo_reply(sequence_id: u64, data: &'static [u8]) -> ServerPacket {
        ServerPacket {
            sequence_id,
            body: Some(server_packet::Body::Echo(
                gamemesh_proto::client::EchoResponse {
                    data: Bytes::from_static(data),
                },
            )),
        }
    }

    /// A one-connection fake gateway running `script` on the accepted
    /// socket; returns its address.
    async fn fake_server<F, Fut>(script: F) -> String
    where
        F: FnOnce(Framed<TcpStream, FrameCodec>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            script(Framed::new(socket, FrameCodec::default())).await;
        });
        addr
    }

    async fn read_packet(framed: &mut Framed<TcpStream, FrameCodec>) -> ClientPacket {
        let body = framed.next().await.unwrap().unwrap();
        ClientPacket::decode(body).unwrap()
    }

    async fn write_packet(framed: &mut Framed<TcpStream, FrameCodec>, packet: &ServerPacket) {
        framed.send(packets::encode(packet)).await.unwrap();
    }

    #[tokio::test]
    async fn request_matches_by_sequence_id_and_keeps_early_pushes() {
        let addr = fake_server(|mut s| async move {
            let p = read_packet(&mut s).await;
            assert_eq!(p.sequence_id, 1);
            // A push and a stray reply arrive before the real reply.
            write_packet(&mut s, &packets::kicked(KickReason::ServerShutdown, "soon")).await;
            write_packet(&mut s, &echo_reply(99, b"stray")).await;
            write_packet(&mut s, &echo_reply(1, b"hello")).await;
            // Keep the socket open until the client is done.
            let _ = s.next().await;
        })
        .await;
        let mut c = Client::connect_with_timeout(&addr, SHORT).await.unwrap();
        assert_eq!(c.echo("hello").await.unwrap(), "hello");
        assert_eq!(c.last_sequence(), 1);
        assert_eq!(c.queued().count(), 2);
        let push = c.next_push(SHORT).await.unwrap();
        assert!(matches!(push.body, Some(server_packet::Body::Kicked(_))));
        assert_eq!(c.recv(SHORT).await.unwrap().sequence_id, 99);
        assert!(matches!(c.recv(SHORT).await, Err(ClientError::Timeout(_))));
    }

    #[tokio::test]
    async fn error_response_is_a_typed_server_error() {
        let addr = fake_server(|mut s| async move {
            let p = read_packet(&mut s).await;
            let code = ErrorCode::InvalidToken;
            write_packet(&mut s, &packets::error(p.sequence_id, code, "forged")).await;
            let _ = s.next().await;
        })
        .await;
        let mut c = Client::connect_with_timeout(&addr, SHORT).await.unwrap();
        let err = c.login(42, "nope").await.unwrap_err();
        assert_eq!(err.error_code(), Some(ErrorCode::InvalidToken));
        assert_eq!(
            err.to_string(),
            "the server answered INVALID_TOKEN (forged) (sequence id 1)"
        );
    }

    #[tokio::test]
    async fn wrong_reply_kind_is_unexpected() {
        let addr = fake_server(|mut s| async move {
            let p = read_packet(&mut s).await;
            write_packet(&mut s, &echo_reply(p.sequence_id, b"x")).await;
            let _ = s.next().await;
        })
        .await;
        let mut c = Client::connect_with_timeout(&addr, SHORT).await.unwrap();
        let err = c.heartbeat().await.unwrap_err();
        assert_eq!(err.kind(), "unexpected");
        assert!(err
            .to_string()
            .starts_with("expected a heartbeat reply, got echo"));
    }

    #[tokio::test]
    async fn raw_and_unframed_bytes_reach_the_socket_as_given() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let addr = fake_server(|mut s| async move {
            let framed_body = s.next().await.unwrap().unwrap();
            let unframed = s.next().await.unwrap().unwrap();
            tx.send((framed_body, unframed)).unwrap();
        })
        .await;
        let mut c = Client::connect_with_timeout(&addr, SHORT).await.unwrap();
        c.send_raw(b"\xff\xff garbage").await.unwrap();
        // A hand-made frame: length 3, body "abc".
        c.send_bytes_unframed(b"\0\0\0\x03abc").await.unwrap();
        let (framed_body, unframed) = rx.await.unwrap();
        assert_eq!(&framed_body[..], b"\xff\xff garbage");
        assert_eq!(&unframed[..], b"abc");
        assert!(matches!(c.send_raw(b"").await, Err(ClientError::Frame(_))));
    }

    #[tokio::test]
    async fn wait_closed_sees_the_server_hang_up_after_a_kick() {
        let addr = fake_server(|mut s| async move {
            write_packet(&mut s, &packets::kicked(KickReason::DuplicateLogin, "")).await;
            // Dropping the socket closes the connection.
        })
        .await;
        let mut c = Client::connect_with_timeout(&addr, SHORT).await.unwrap();
        assert!(c.wait_closed(SHORT).await);
        let push = c.next_push(SHORT).await.unwrap();
        assert_eq!(describe(&push), "kicked(DUPLICATE_LOGIN) [sequence id 0]");
        assert!(matches!(c.echo("x").await, Err(ClientError::Closed)));
    }

    /// A server that hangs up in the middle of a frame (a gateway closing
    /// a client that stopped reading while a reply was half written) has
    /// closed the connection: not a protocol error.
    #[tokio::test]
    async fn wait_closed_sees_a_hang_up_in_the_middle_of_a_frame() {
        let addr = fake_server(|s| async move {
            let mut socket = s.into_inner();
            socket.write_all(b"\0\0\x01\0half a reply").await.unwrap();
            // Dropping the socket closes the connection mid-frame.
        })
        .await;
        let mut c = Client::connect_with_timeout(&addr, SHORT).await.unwrap();
        assert!(c.wait_closed(SHORT).await);
    }

    #[tokio::test]
    async fn wait_closed_is_false_while_the_server_stays() {
        let addr = fake_server(|mut s| async move {
            let _ = s.next().await;
        })
        .await;
        let mut c = Client::connect_with_timeout(&addr, SHORT).await.unwrap();
        assert!(!c.wait_closed(Duration::from_millis(50)).await);
    }

    #[tokio::test]
    async fn refused_connection_says_what_to_do() {
        // Bind then drop, so the port is (almost certainly) closed.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let err = Client::connect(&addr).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot connect to {addr}: connection refused — is the gateway running?")
        );
    }
}
