//! Length-prefixed frames on a TCP socket (docs/PROTOCOL.md, "Framing").
//!
//! The writer gathers the batch into one buffer (a 64-byte body copies in
//! less time than a vectored write sets up its slices) and writes it with
//! one `write` when the socket takes it all, which it does unless the
//! client stopped reading.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use gamemesh_proto::{FrameCodec, FrameError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::codec::{Encoder, FramedRead};

use super::{Inbound, ReadError, WireReader, WireWriter};

/// Splits a TCP socket into its framed halves.
pub(crate) fn split(stream: TcpStream, max_frame_bytes: usize) -> (TcpReader, TcpWriter) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let frames = FramedRead::with_capacity(read, FrameCodec::new(max_frame_bytes), 256);
    let writer = TcpWriter {
        socket: write,
        buf: BytesMut::new(),
        frame_ends: Vec::new(),
        written: 0,
    };
    (TcpReader { frames }, writer)
}

/// Cuts the socket's bytes into bodies.
pub(crate) struct TcpReader {
    /// The codec checks the length before reserving memory.
    frames: FramedRead<OwnedReadHalf, FrameCodec>,
}

impl WireReader for TcpReader {
    async fn next(&mut self) -> Result<Inbound, ReadError> {
        match self.frames.next().await {
            Some(Ok(body)) => Ok(Inbound::Body(body)),
            Some(Err(FrameError::Io(e))) => Err(ReadError::Io(e.to_string())),
            Some(Err(e)) => Err(ReadError::Protocol(e.to_string())),
            None => Err(ReadError::Closed),
        }
    }

    async fn drain(self, drain_for: Duration) {
        let mut read = self.frames.into_inner();
        let mut scratch = [0u8; 4096];
        let _ = tokio::time::timeout(drain_for, async {
            while let Ok(n) = read.read(&mut scratch).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }
}

/// Writes batches of frames.
pub(crate) struct TcpWriter {
    /// Our half of the socket.
    socket: OwnedWriteHalf,
    /// The batch, encoded.
    buf: BytesMut,
    /// End offset in `buf` of each frame, so a write cut short can finish
    /// its frame before the kick.
    frame_ends: Vec<usize>,
    /// Bytes of `buf` already written.
    written: usize,
}

impl TcpWriter {
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

impl WireWriter for TcpWriter {
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

    async fn close(mut self, last: Option<Bytes>, grace: Duration) {
        let mut out = BytesMut::from(self.unfinished());
        if let Some(body) = last {
            encode(&mut out, &body);
        }
        let _ = tokio::time::timeout(grace, async {
            if !out.is_empty() {
                self.socket.write_all(&out).await?;
            }
            self.socket.shutdown().await
        })
        .await;
    }
}

/// Appends `body` as one frame.
fn encode(buf: &mut BytesMut, body: &Bytes) {
    // Bodies from game servers are ours; an oversize one would be a bug, so
    // the codec's limit here is the protocol's hard ceiling.
    let _ = FrameCodec::new(u32::MAX as usize).encode(&body[..], buf);
}
