//! One client body per binary WebSocket message (docs/PROTOCOL.md,
//! "WebSocket"), over `ws://` or, with `--ws-tls-cert` and `--ws-tls-key`,
//! `wss://`.
//!
//! tungstenite does the protocol: the upgrade, masking, fragments, the
//! size limits (checked on each frame's header, before its payload is
//! buffered), ping replies and the close handshake. What is ours is the
//! contract: a text message is bad input (the client is kicked
//! `PROTOCOL_ERROR`), a message over `--max-frame-bytes` is kicked like an
//! oversized TCP frame, and pings and pongs each cost a token of the
//! packet rate limit so a ping flood is kicked like a frame flood.
//! tungstenite keeps at most one pong pending, so an unread flood of pings
//! cannot grow our write buffer either.

use std::future::poll_fn;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::{drain, Inbound, ReadError, Wire, LAST_FRAME_TIMEOUT};

/// The text a client that sent a text message is kicked with.
pub const TEXT_REFUSED: &str =
    "text WebSocket message: send each client body as one binary message";

/// tungstenite's settings for one client socket. The read buffer is small
/// (tungstenite allocates it up front, 128 KiB by default, and thousands of
/// idle sockets must stay cheap); a write buffer of one batch lets a batch
/// be fed message by message and written by one flush; the largest message
/// and frame are `--max-frame-bytes`.
pub(crate) fn config(max_frame_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(BATCH_BYTES + 1024)
        .max_message_size(Some(max_frame_bytes))
        .max_frame_size(Some(max_frame_bytes))
}

/// A batch never holds more bodies than this many bytes (the connection
/// stops gathering there), so the write buffer above holds one batch.
pub(crate) const BATCH_BYTES: usize = 64 * 1024;

/// Loads the certificate chain and private key for `wss://`. The error
/// says which file and what to fix; it is reported before any port is
/// bound.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect())
        .map_err(|e| {
            format!(
                "--ws-tls-cert {}: cannot read a PEM certificate chain: {e}",
                cert.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "--ws-tls-cert {}: no certificate in the file (expected PEM \"BEGIN CERTIFICATE\" blocks)",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "--ws-tls-key {}: cannot read a PEM private key: {e}",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("--ws-tls-cert and --ws-tls-key do not make a usable pair: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Completes the WebSocket upgrade on `stream` (any path is accepted).
pub(crate) async fn accept<S>(stream: S, config: WebSocketConfig) -> Result<WsWire<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await?;
    Ok(WsWire {
        ws,
        pending: Vec::new(),
        fed: 0,
    })
}

/// A WebSocket client socket (on a TCP or a TLS stream).
pub(crate) struct WsWire<S> {
    /// The socket, after the upgrade.
    ws: WebSocketStream<S>,
    /// The batch.
    pending: Vec<Bytes>,
    /// How many of `pending` tungstenite already holds (fed, maybe not
    /// yet written): a batch abandoned mid-write resumes here.
    fed: usize,
}

impl<S> Wire for WsWire<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn next(&mut self) -> Result<Inbound, ReadError> {
        let Some(message) = self.ws.next().await else {
            return Err(ReadError::Closed);
        };
        match message {
            Ok(Message::Binary(body)) if body.is_empty() => {
                Err(ReadError::Protocol("empty binary message".into()))
            }
            Ok(Message::Binary(body)) => Ok(Inbound::Body(body)),
            Ok(Message::Text(_)) | Err(WsError::Utf8(_)) => {
                Err(ReadError::Protocol(TEXT_REFUSED.into()))
            }
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => Ok(Inbound::Control),
            Ok(Message::Close(_)) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                Err(ReadError::Closed)
            }
            Err(WsError::Io(e)) => Err(ReadError::Io(e.to_string())),
            Err(e) => Err(ReadError::Protocol(e.to_string())),
        }
    }

    fn queue(&mut self, body: &Bytes) {
        self.pending.push(body.clone());
    }

    async fn write_batch(&mut self) -> Result<(), String> {
        while self.fed < self.pending.len() {
            // Ready first, then a synchronous send: a select that drops
            // this future between the two loses nothing.
            poll_fn(|cx| self.ws.poll_ready_unpin(cx))
                .await
                .map_err(|e| e.to_string())?;
            let body = self.pending[self.fed].clone();
            self.ws
                .start_send_unpin(Message::Binary(body))
                .map_err(|e| e.to_string())?;
            self.fed += 1;
        }
        self.ws.flush().await.map_err(|e| e.to_string())?;
        self.pending.clear();
        self.fed = 0;
        Ok(())
    }

    async fn close(mut self, last: Option<Bytes>, drain_input: bool) {
        // A message tungstenite holds is whole and goes out first (its
        // frame is finished if it was cut); messages not fed are dropped.
        let code = if last.is_some() {
            // A kick: the `Kicked` message says why.
            CloseCode::Policy
        } else {
            CloseCode::Normal
        };
        let _ = tokio::time::timeout(LAST_FRAME_TIMEOUT, async {
            if let Some(body) = last {
                self.ws.feed(Message::Binary(body)).await?;
            }
            let close = CloseFrame {
                code,
                reason: "".into(),
            };
            self.ws.send(Message::Close(Some(close))).await
        })
        .await;
        if drain_input {
            // Raw bytes, not messages: after a bad frame (an oversized
            // length, say) tungstenite would buffer the payload it
            // announced. The client's close reply is among what is
            // discarded.
            drain(self.ws.into_inner()).await;
        }
    }
}
