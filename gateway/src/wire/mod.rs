//! How client bodies travel on a socket. The gateway speaks one contract
//! (bodies in, bodies out; docs/PROTOCOL.md) over two framings:
//!
//! - [`tcp`]: a 4-byte big-endian length, then the body.
//! - [`ws`]: one binary WebSocket message per body (no length inside),
//!   over `ws://` or `wss://`.
//!
//! A framing is a reader half and a writer half. [`crate::connection`]
//! owns one of each and enforces every limit the same way whatever the
//! framing, so a WebSocket client and a TCP client get the same pins,
//! limits, kicks and slow-consumer bound.

pub mod tcp;
pub mod ws;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

/// What a client sent, once framed.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// One client body, to be relayed.
    Body(Bytes),
    /// A control message of the framing (a WebSocket ping or pong): it
    /// carries no body, but a client can send them as fast as bodies, so
    /// each one costs a token of the packet rate limit.
    Control,
}

/// Why a client's input cannot be read any more.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The client closed its side (EOF, or a WebSocket close).
    Closed,
    /// The socket failed.
    Io(String),
    /// The client broke the framing (oversized or empty body, a text
    /// message, a malformed WebSocket frame): it is kicked
    /// `PROTOCOL_ERROR` with this text.
    Protocol(String),
}

/// How long a kicked (or refused) client gets to take its last frame
/// before we close.
pub(crate) const LAST_FRAME_TIMEOUT: Duration = Duration::from_millis(200);

/// How long a closed connection's input is drained. Closing a socket with
/// unread input makes the kernel send a reset, and a reset can make the
/// client's kernel drop what it has not read yet, the `Kicked` among it: a
/// client kicked mid-flood would never learn why. Bounded, so a client
/// that keeps sending cannot hold the task.
pub(crate) const DRAIN_BEFORE_CLOSE: Duration = Duration::from_millis(500);

/// A client socket in one framing. Reading and writing never overlap (the
/// connection's task does one at a time), so a framing owns its socket
/// whole. Bodies to the client are queued, then written together:
/// everything already waiting for a socket leaves in one write.
pub(crate) trait Wire: Send + 'static {
    /// The next thing the client sent, or `Err` when the input is over.
    /// Cancel-safe: a select may drop it and call again without losing
    /// input.
    fn next(&mut self) -> impl Future<Output = Result<Inbound, ReadError>> + Send;

    /// The next thing the client sent if it is already read and complete,
    /// without touching the socket: what one read brought beyond the
    /// first frame, so a burst can be relayed as one link send. `Ok(None)`
    /// when nothing complete is buffered (the default: a framing that
    /// cannot tell hands out one frame per [`next`](Self::next)).
    fn buffered(&mut self) -> Result<Option<Inbound>, ReadError> {
        Ok(None)
    }

    /// Adds one body to the batch.
    fn queue(&mut self, body: &Bytes);

    /// Writes the batch. Cancel-safe: progress is kept in `self`, so a
    /// select may abandon a blocked write (idle timeout, slow consumer,
    /// shutdown) and [`close`](Self::close) still finishes the body that
    /// was cut in half before the last frame.
    fn write_batch(&mut self) -> impl Future<Output = Result<(), String>> + Send;

    /// Finishes the body a cut-short batch was in the middle of (never
    /// more: a half body would be garbage to the client; the rest of the
    /// batch is dropped), writes `last` (usually a `Kicked`) within
    /// [`LAST_FRAME_TIMEOUT`], and closes. With `drain` (we are the ones
    /// closing), the client's input is read and discarded for up to
    /// [`DRAIN_BEFORE_CLOSE`] (see there), without parsing it.
    fn close(self, last: Option<Bytes>, drain: bool) -> impl Future<Output = ()> + Send;
}

/// Reads and discards `read` until EOF, an error or [`DRAIN_BEFORE_CLOSE`].
async fn drain<R: tokio::io::AsyncRead + Unpin>(mut read: R) {
    use tokio::io::AsyncReadExt;
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
