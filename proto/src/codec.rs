//! Length-prefixed framing: `[u32 big-endian length][body]`.
//!
//! The decoder validates the header *before* it reserves room for the body,
//! so a hostile 4 GiB length costs nothing but the four header bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::FrameError;

/// Size of the length header.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// Most room reserved at once for a body still arriving.
const RESERVE_STEP: usize = 4 * 1024;

/// The default largest body a gateway accepts (docs/PROTOCOL.md).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024;

/// Cuts a byte stream into frame bodies and writes bodies as frames.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    /// Largest body accepted or written; larger is a protocol error.
    max_frame_bytes: usize,
}

impl FrameCodec {
    /// A codec that accepts bodies of 1..=`max_frame_bytes` bytes.
    pub fn new(max_frame_bytes: usize) -> Self {
        Self { max_frame_bytes }
    }

    /// The configured maximum body size.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    fn check(&self, len: usize) -> Result<(), FrameError> {
        if len == 0 {
            return Err(FrameError::ZeroLength);
        }
        if len > self.max_frame_bytes {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame_bytes,
            });
        }
        Ok(())
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if src.len() < LENGTH_PREFIX_BYTES {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        self.check(len)?;
        let total = LENGTH_PREFIX_BYTES + len;
        if src.len() < total {
            // Grow toward the body a step at a time rather than reserving
            // it whole: a client that sends a 4-byte header and then
            // nothing must not pin a maximum-sized buffer per connection.
            src.reserve((total - src.len()).min(RESERVE_STEP));
            return Ok(None);
        }
        src.advance(LENGTH_PREFIX_BYTES);
        Ok(Some(src.split_to(len).freeze()))
    }

    /// A stream that ends inside a frame was closed by its peer mid-write
    /// (a kick of a client that stopped reading, say): an unexpected end
    /// of file, which readers sort with the other ways a connection
    /// closes, not a malformed stream.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(FrameError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the stream ended {} bytes into a frame", src.len()),
            ))),
        }
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, body: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode(&body[..], dst)
    }
}

impl Encoder<&[u8]> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, body: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        self.check(body.len())?;
        dst.reserve(LENGTH_PREFIX_BYTES + body.len());
        dst.put_u32(body.len() as u32);
        dst.put_slice(body);
        Ok(())
    }
}

/// Encodes one frame into a fresh buffer (for callers without a codec, e.g.
/// a game server preparing a `Kicked` frame the gateway writes last).
pub fn encode_frame(body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(LENGTH_PREFIX_BYTES + body.len());
    out.put_u32(body.len() as u32);
    out.put_slice(body);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames_of(codec: &mut FrameCodec, bytes: &[u8], chunk: usize) -> Vec<Bytes> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in bytes.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            while let Some(f) = codec.decode(&mut buf).expect("valid stream") {
                out.push(f);
            }
        }
        assert!(buf.is_empty(), "no bytes left over");
        out
    }

    #[test]
    fn a_stream_that_ends_inside_a_frame_is_an_unexpected_eof() {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(&b"\0\0\0\x05hel"[..]);
        match codec.decode_eof(&mut buf) {
            Err(FrameError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
            other => panic!("expected an unexpected EOF, got {other:?}"),
        }
        let mut whole = BytesMut::from(&b"\0\0\0\x02hi"[..]);
        assert_eq!(codec.decode_eof(&mut whole).unwrap().unwrap(), "hi");
        assert!(codec.decode_eof(&mut whole).unwrap().is_none());
    }

    #[test]
    fn round_trip() {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        codec
            .encode(Bytes::from_static(b"hello"), &mut buf)
            .unwrap();
        assert_eq!(&buf[..], b"\0\0\0\x05hello");
        assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), "hello");
        assert!(codec.decode(&mut buf).unwrap().is_none());
    }

    #[test]
    fn split_reads_byte_by_byte() {
        let mut codec = FrameCodec::default();
        let mut stream = Vec::new();
        stream.extend_from_slice(&encode_frame(b"abc"));
        stream.extend_from_slice(&encode_frame(b"defgh"));
        let frames = frames_of(&mut codec, &stream, 1);
        assert_eq!(frames, vec![Bytes::from("abc"), Bytes::from("defgh")]);
    }

    #[test]
    fn zero_length_is_an_error() {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::ZeroLength)
        ));
    }

    #[test]
    fn oversize_header_is_refused_without_allocating() {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::with_capacity(4);
        buf.put_u32(u32::MAX);
        let cap_before = buf.capacity();
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { len, max: 1024 } if len == u32::MAX as usize));
        assert_eq!(buf.capacity(), cap_before, "no room reserved for the body");
    }

    #[test]
    fn a_header_alone_does_not_reserve_the_whole_body() {
        let mut codec = FrameCodec::new(1 << 20);
        let mut buf = BytesMut::new();
        buf.put_u32(1 << 20);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(
            buf.capacity() <= LENGTH_PREFIX_BYTES + RESERVE_STEP,
            "{}",
            buf.capacity()
        );
    }

    #[test]
    fn maximum_is_inclusive() {
        let mut codec = FrameCodec::new(8);
        let mut buf = BytesMut::new();
        codec.encode(&[7u8; 8][..], &mut buf).unwrap();
        assert_eq!(codec.decode(&mut buf).unwrap().unwrap().len(), 8);
        assert!(codec.encode(&[7u8; 9][..], &mut buf).is_err());
        assert!(codec.encode(&[][..], &mut buf).is_err());
    }

    proptest! {
        /// Any chunking of an encoded stream decodes to the same frames.
        #[test]
        fn any_chunking_decodes_the_same(
            bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..20),
            chunk in 1usize..64,
        ) {
            let mut codec = FrameCodec::new(512);
            let mut stream = Vec::new();
            for b in &bodies {
                stream.extend_from_slice(&encode_frame(b));
            }
            let frames = frames_of(&mut codec, &stream, chunk);
            let expected: Vec<Bytes> = bodies.into_iter().map(Bytes::from).collect();
            prop_assert_eq!(frames, expected);
        }

        /// Arbitrary bytes never panic the decoder, and anything it returns
        /// respects the maximum.
        #[test]
        fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..2048)) {
            let mut codec = FrameCodec::new(256);
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(f)) = codec.decode(&mut buf) {
                prop_assert!(!f.is_empty() && f.len() <= 256);
            }
        }
    }
}
