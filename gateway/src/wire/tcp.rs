//! Length-prefixed frames on a TCP socket (docs/PROTOCOL.md, "Framing").
//!
//! A batch is gathered into one buffer (a 64-byte body copies in less time
//! than a vectored write sets up its slices) and written with one `write`
//! when the socket takes it all, which it does unless the client stopped
//! reading.
//!
//! Both buffers are empty, holding no memory, between uses: the read
//! buffer is allocated when the socket is readable and given back once
//! every byte in it is framed, the batch once it is written. An idle
//! socket (most of them, at any time) then costs its task and no buffer;
//! a busy one pays an allocation per read and per batch, small beside the
//! system call each feeds.

use bytes::{Bytes, BytesMut};
use gamemesh_proto::{FrameCodec, FrameError};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder};

use super::{drain, Inbound, ReadError, Wire, LAST_FRAME_TIMEOUT};

/// Room reserved for one read when the read buffer has none (the codec
/// reserves more, a step at a time, for a body larger than that).
const READ_CHUNK: usize = 256;

/// Bytes of the length before each body.
const LENGTH_PREFIX: usize = 4;

/// A TCP client socket.
pub(crate) struct TcpWire {
    /// Our half for reading.
    read: OwnedReadHalf,
    /// Frames the input; checks each length before reserving memory.
    codec: FrameCodec,
    /// Input read and not yet framed; no allocation while empty.
    input: BytesMut,
    /// Our half for writing (split so a close can drain the other half
    /// while it writes the last frame).
    socket: OwnedWriteHalf,
    /// The batch, encoded (length, body, length, body...: a write cut
    /// short finds the end of the frame it was in from the lengths).
    buf: BytesMut,
    /// Bytes of `buf` already written.
    written: usize,
}

impl TcpWire {
    /// Frames `stream`, refusing bodies over `max_frame_bytes`.
    pub(crate) fn new(stream: TcpStream, max_frame_bytes: usize) -> Self {
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        Self {
            read,
            codec: FrameCodec::new(max_frame_bytes),
            input: BytesMut::new(),
            socket: write,
            buf: BytesMut::new(),
            written: 0,
        }
    }

    /// The rest of the frame a cut-short write was in, if it was cut in
    /// the middle of one.
    fn unfinished(&self) -> &[u8] {
        let mut end = 0;
        while end < self.written {
            let header = &self.buf[end..end + LENGTH_PREFIX];
            let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
            end += LENGTH_PREFIX + len as usize;
        }
        &self.buf[self.written..end]
    }

    /// The next whole body in `input`, if there is one. Once `input` is
    /// all framed its allocation is let go (the bodies split off it keep
    /// what they need of it).
    fn frame(&mut self) -> Result<Option<Bytes>, ReadError> {
        let body = self.codec.decode(&mut self.input).map_err(|e| match e {
            FrameError::Io(e) => ReadError::Io(e.to_string()),
            e => ReadError::Protocol(e.to_string()),
        })?;
        if self.input.is_empty() {
            self.input = BytesMut::new();
        }
        Ok(body)
    }

    /// Reads what the socket has into `input`, waiting for it to be
    /// readable first so that no buffer is held while it waits.
    /// Cancel-safe: nothing is read unless it lands in `input`.
    async fn fill(&mut self) -> Result<(), ReadError> {
        self.read
            .readable()
            .await
            .map_err(|e| ReadError::Io(e.to_string()))?;
        if self.input.len() == self.input.capacity() {
            self.input.reserve(READ_CHUNK);
        }
        // tokio's read, not `try_read_buf`: a read that fills less than the
        // room it had shows the socket drained, and tokio's read then
        // forgets the readiness, so the next `fill` waits for new data
        // instead of paying a read that only answers EAGAIN (one per client
        // packet before). A readiness that was stale (the last read filled
        // its room exactly) makes this read wait with the room reserved.
        match self.read.read_buf(&mut self.input).await {
            Ok(0) if self.input.is_empty() => Err(ReadError::Closed),
            Ok(0) => Err(ReadError::Io("connection closed mid-frame".into())),
            Ok(_) => Ok(()),
            Err(e) => Err(ReadError::Io(e.to_string())),
        }
    }
}

impl Wire for TcpWire {
    async fn next(&mut self) -> Result<Inbound, ReadError> {
        loop {
            if let Some(body) = self.frame()? {
                return Ok(Inbound::Body(body));
            }
            self.fill().await?;
        }
    }

    fn buffered(&mut self) -> Result<Option<Inbound>, ReadError> {
        Ok(self.frame()?.map(Inbound::Body))
    }

    fn queue(&mut self, body: &Bytes) {
        encode(&mut self.buf, body);
    }

    async fn write_batch(&mut self) -> Result<(), String> {
        while self.written < self.buf.len() {
            match self.socket.write(&self.buf[self.written..]).await {
                Ok(0) => return Err("socket closed".into()),
                Ok(n) => self.written += n,
                Err(e) => return Err(e.to_string()),
            }
        }
        self.buf = BytesMut::new();
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
            tokio::join!(closing, drain(self.read));
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
        assert!(wire.buf.is_empty() && wire.buf.capacity() == 0 && wire.written == 0);
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

    #[tokio::test]
    async fn a_body_split_across_reads_is_framed_and_no_input_buffer_is_kept_after() {
        let (mut wire, mut client) = pair().await;
        let whole = [frame(b"hello"), frame(b"world")].concat();
        let (head, tail) = whole.split_at(7);
        client.write_all(head).await.unwrap();
        let reading = tokio::spawn(async move {
            let first = wire.next().await;
            let second = wire.next().await;
            (wire, first, second)
        });
        tokio::task::yield_now().await;
        client.write_all(tail).await.unwrap();
        let (wire, first, second) = reading.await.unwrap();
        assert!(matches!(first, Ok(Inbound::Body(b)) if &b[..] == b"hello"));
        assert!(matches!(second, Ok(Inbound::Body(b)) if &b[..] == b"world"));
        assert_eq!(wire.input.capacity(), 0, "all input framed: no buffer held");
    }

    #[tokio::test]
    async fn eof_is_closed_between_frames_and_an_error_inside_one() {
        let (mut wire, mut client) = pair().await;
        client.write_all(&frame(b"x")[..3]).await.unwrap();
        client.shutdown().await.unwrap();
        assert!(matches!(wire.next().await, Err(ReadError::Io(_))));
        let (mut wire, client) = pair().await;
        drop(client);
        assert!(matches!(wire.next().await, Err(ReadError::Closed)));
    }
}
