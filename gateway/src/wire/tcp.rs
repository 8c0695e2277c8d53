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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A framed server side and the raw client side of one loopback socket.
    async fn pair() -> (TcpWire, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (TcpWire::new(server, 1024), client)
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    #[tokio::test]
    async fn a_batch_is_written_whole_and_in_order() {
        let (mut wire, mut client) = pair().await;
        for body in [&b"one"[..], b"two", b"three"] {
            wire.queue(&Bytes::copy_from_slice(body));
        }
        wire.write_batch().await.unwrap();
        assert!(wire.buf.is_empty() && wire.frame_ends.is_empty() && wire.written == 0);
        wire.close(None, false).await;
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        let want = [frame(b"one"), frame(b"two"), frame(b"three")].concat();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn a_batch_cut_mid_frame_finishes_that_frame_then_the_last_one() {
        let (mut wire, mut client) = pair().await;
        for body in [&b"first"[..], b"second", b"third"] {
            wire.queue(&Bytes::copy_from_slice(body));
        }
        // As if a write had stopped three bytes into the second frame.
        let cut = frame(b"first").len() + 3;
        let head = wire.buf[..cut].to_vec();
        wire.socket.write_all(&head).await.unwrap();
        wire.written = cut;
        wire.close(Some(Bytes::from_static(b"kick")), false).await;
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        let want = [frame(b"first"), frame(b"second"), frame(b"kick")].concat();
        assert_eq!(
            got, want,
            "the third frame is dropped, the cut one finished"
        );
    }

    #[tokio::test]
    async fn an_oversized_length_is_a_protocol_error() {
        let (mut wire, mut client) = pair().await;
        client.write_all(&frame(&[7; 10])).await.unwrap();
        client.write_all(&2000u32.to_be_bytes()).await.unwrap();
        assert!(matches!(wire.next().await, Ok(Inbound::Body(b)) if b.len() == 10));
        assert!(matches!(wire.next().await, Err(ReadError::Protocol(_))));
    }
}
