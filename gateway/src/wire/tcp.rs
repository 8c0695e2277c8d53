//! Length-prefixed frames on a TCP socket (docs/PROTOCOL.md, "Framing").
//!
//! A batch is gathered into one buffer (a 64-byte body copies in less time
//! than a vectored write sets up its slices) and written with one `write`
//! when the socket takes it all, which it does unless the client stopped
//! reading.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use gamemesh_proto::{FrameCodec, FrameError};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::codec::{Encoder, FramedRead};

use super::{drain, Inbound, ReadError, Wire, LAST_FRAME_TIMEOUT};

/// A TCP client socket.
pub(crate) struct TcpWire {
    /// Bodies in; the codec checks each length before reserving memory.
    frames: FramedRead<OwnedReadHalf, FrameCodec>,
    /// Our half for writing (split so a close can drain the other half
    /// while it writes the last frame).
    socket: OwnedWriteHalf,
    /// The batch, encoded.
    buf: BytesMut,
    /// End offset in `buf` of each frame, so a write cut short can finish
    /// its frame before the kick.
    frame_ends: Vec<usize>,
    /// Bytes of `buf` already written.
    written: usize,
}

impl TcpWire {
    /// Frames `stream`, refusing bodies over `max_frame_bytes`.
    pub(crate) fn new(stream: TcpStream, max_frame_bytes: usize) -> Self {
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        Self {
            frames: FramedRead::with_capacity(read, FrameCodec::new(max_frame_bytes), 256),
            socket: write,
            buf: BytesMut::new(),
            frame_ends: Vec::new(),
            written: 0,
        }
    }

    /// The rest of the frame a cut-short write was in, if it was cut in
    /// the middle of one.
    fn unfinished(&self) -> &[u8] {
        if self.written == 0 || self.frame_ends.contains(&self.written) {
            return &[];
        }
        match self.frame_ends.iter().find(|&&end| end > self.written) {
            Some(&end) => &self.buf[self.written..end],
            None => &[],
        }
    }
}

impl Wire for TcpWire {
    async fn next(&mut self) -> Result<Inbound, ReadError> {
        match self.frames.next().await {
            Some(Ok(body)) => Ok(Inbound::Body(body)),
            Some(Err(FrameError::Io(e))) => Err(ReadError::Io(e.to_string())),
            Some(Err(e)) => Err(ReadError::Protocol(e.to_string())),
            None => Err(ReadError::Closed),
        }
    }

    fn queue(&mut self, body: &Bytes) {
        encode(&mut self.buf, body);
        self.frame_ends.push(self.buf.len());
    }

    async fn write_batch(&mut self) -> Result<(), String> {
        while self.written < self.buf.len() {
            match self.socket.write(&self.buf[self.written..]).await {
                Ok(0) => return Err("socket closed".into()),
                Ok(n) => self.written += n,
                Err(e) => return Err(e.to_string()),
            }
        }
        self.buf.clear();
        self.frame_ends.clear();
        self.written = 0;
        Ok(())
    }

    async fn close(self, last: Option<Bytes>, drain_input: bool) {
        let mut out = BytesMut::from(self.unfinished());
        if let Some(body) = last {
            encode(&mut out, &body);
        }
        let mut socket = self.socket;
        let closing = async {
            if !out.is_empty() {
                let _ = tokio::time::timeout(LAST_FRAME_TIMEOUT, socket.write_all(&out)).await;
            }
            let _ = socket.shutdown().await;
        };
        if drain_input {
            // Concurrently, so a client blocked writing to us gets unstuck
            // and can read the last frame.
            tokio::join!(closing, drain(self.frames.into_inner()));
        } else {
            closing.await;
        }
    }
}

/// Appends `body` as one frame.
fn encode(buf: &mut BytesMut, body: &Bytes) {
    // Bodies from game servers are ours; an oversize one would be a bug, so
    // the codec's limit here is the protocol's hard ceiling.
    let _ = FrameCodec::new(u32::MAX as usize).encode(&body[..], buf);
}
