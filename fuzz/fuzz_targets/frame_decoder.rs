//! `FrameCodec` as a tokio-util `Decoder`, fed arbitrary bytes cut into
//! arbitrary chunks.
//!
//! Input layout: `[max selector: 2 bytes][chunk plan: 8 bytes][stream...]`.
//! The max selector picks the codec's maximum body size (small values, 0, 1,
//! the default, up to 1 MiB); the chunk plan gives the sizes (cycled) of
//! the pieces the stream is delivered in, as a socket would.
//!
//! Checked, besides "never panics":
//! - every frame returned is 1..=max bytes;
//! - chunked decoding yields exactly what a one-shot reference parser of
//!   the whole stream yields: the same frames, then the same error (at the
//!   same frame) or the same undecoded tail;
//! - a length header is refused (zero or above max) as soon as its four
//!   bytes have arrived, and refusing it reserves no memory for the body;
//! - the buffer never holds more than a bounded amount of memory;
//! - re-encoding the frames gives back the consumed input bytes;
//! - `decode_eof` at end of stream fails iff bytes are left over.
#![no_main]

use bytes::{BufMut, BytesMut};
use gamemesh_proto::{FrameCodec, FrameError, DEFAULT_MAX_FRAME_BYTES, LENGTH_PREFIX_BYTES};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, Encoder};

const HEADER: usize = 2 + 8;

/// How the reference parser stopped.
#[derive(Debug, PartialEq)]
enum End {
    /// Ran out of input; `usize` bytes were not consumed.
    Incomplete(usize),
    ZeroLength,
    TooLarge(usize),
}

fn reference(stream: &[u8], max: usize) -> (Vec<&[u8]>, End) {
    let mut frames = Vec::new();
    let mut rest = stream;
    loop {
        if rest.len() < LENGTH_PREFIX_BYTES {
            return (frames, End::Incomplete(rest.len()));
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len == 0 {
            return (frames, End::ZeroLength);
        }
        if len > max {
            return (frames, End::TooLarge(len));
        }
        if rest.len() < LENGTH_PREFIX_BYTES + len {
            return (frames, End::Incomplete(rest.len()));
        }
        frames.push(&rest[LENGTH_PREFIX_BYTES..LENGTH_PREFIX_BYTES + len]);
        rest = &rest[LENGTH_PREFIX_BYTES + len..];
    }
}

fn max_from(sel: [u8; 2]) -> usize {
    let v = u16::from_le_bytes(sel);
    match v >> 13 {
        // Degenerate and boundary configurations.
        0 => [0, 1, 2, 3, 4, 5, 255, 256][usize::from(v & 7)],
        1 => DEFAULT_MAX_FRAME_BYTES,
        2 => 1 << 20,
        // Mostly small maxima, so complete frames and oversize headers are
        // both reachable with short inputs.
        _ => usize::from(v & 0x0fff),
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < HEADER {
        return;
    }
    let max = max_from([data[0], data[1]]);
    let plan = &data[2..HEADER];
    let stream = &data[HEADER..];

    let (want_frames, want_end) = reference(stream, max);

    let mut codec = FrameCodec::new(max);
    assert_eq!(codec.max_frame_bytes(), max);
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    let mut fed = 0usize;
    let mut error = None;
    let mut step = 0usize;
    'feed: while fed < stream.len() {
        // Chunk sizes 1..=256, cycling through the plan.
        let chunk = (usize::from(plan[step % plan.len()]) + 1).min(stream.len() - fed);
        step += 1;
        buf.extend_from_slice(&stream[fed..fed + chunk]);
        fed += chunk;
        loop {
            let cap_before = buf.capacity();
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(!frame.is_empty(), "empty frame returned");
                    assert!(frame.len() <= max, "frame of {} > max {max}", frame.len());
                    got.push(frame);
                }
                Ok(None) => {
                    // Waiting for more: at most one header, one body of at
                    // most `max`, and growth slack (BytesMut may double a
                    // shared allocation) may be held.
                    let bound = 4 * (LENGTH_PREFIX_BYTES + max + 256) + 64;
                    assert!(
                        buf.capacity() <= bound,
                        "buffer capacity {} above bound {bound} (max {max})",
                        buf.capacity()
                    );
                    break;
                }
                Err(e) => {
                    assert_eq!(
                        buf.capacity(),
                        cap_before,
                        "memory reserved for a refused header"
                    );
                    error = Some(e);
                    break 'feed;
                }
            }
        }
    }

    assert_eq!(
        got.len(),
        want_frames.len(),
        "frame count differs from reference"
    );
    for (g, w) in got.iter().zip(&want_frames) {
        assert_eq!(&g[..], *w, "frame bytes differ from reference");
    }
    match (error, &want_end) {
        (Some(FrameError::ZeroLength), End::ZeroLength) => {}
        (Some(FrameError::TooLarge { len, max: m }), End::TooLarge(want)) => {
            assert_eq!(len, *want);
            assert_eq!(m, max);
        }
        (None, End::Incomplete(left)) => {
            assert_eq!(fed, stream.len());
            assert_eq!(buf.len(), *left, "undecoded tail differs from reference");
            assert_eq!(&buf[..], &stream[stream.len() - left..]);
            // End of stream: tokio-util's default `decode_eof` must report
            // leftover bytes as an error and a clean end as `None`.
            match codec.decode_eof(&mut buf) {
                Ok(None) => assert_eq!(*left, 0, "leftover bytes accepted at eof"),
                Ok(Some(_)) => panic!("decode_eof produced a frame the decoder did not"),
                Err(FrameError::Io(_)) => assert!(*left > 0),
                Err(e) => panic!("unexpected eof error {e:?}"),
            }
        }
        (e, w) => panic!("decoder ended with {e:?}, reference with {w:?}"),
    }

    // The frames re-encode to exactly the bytes they were cut from.
    let mut out = BytesMut::new();
    for f in &got {
        codec
            .encode(f.clone(), &mut out)
            .expect("a decoded frame re-encodes");
    }
    let consumed: usize = got.iter().map(|f| LENGTH_PREFIX_BYTES + f.len()).sum();
    assert_eq!(&out[..], &stream[..consumed]);
    for f in &got {
        let mut one = BytesMut::new();
        one.put_slice(&gamemesh_proto::codec::encode_frame(f));
        let mut two = BytesMut::new();
        codec.encode(&f[..], &mut two).expect("encodes");
        assert_eq!(one, two);
    }
});
