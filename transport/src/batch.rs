//! The link's wire format: one ZeroMQ message carries a *batch* of
//! payloads for one peer.
//!
//! ```text
//! [0x01] ([u32 BE length][length bytes])+
//! ```
//!
//! The leading byte names the format (and is never the first byte of a
//! protobuf message, whose field number 0 is invalid, so a message from a
//! node that predates batching is rejected as such instead of misread).
//! Each record is one payload, untouched; an empty payload is a record of
//! length 0. Both ends of every link use this format, always: a lone
//! payload is a batch of one.
//!
//! Why batch: each ZeroMQ message costs an allocation, a queue operation
//! and possibly a wake-up of libzmq's I/O thread on the sender, and the
//! same again plus a `recv` call on the receiver. A batch pays them once
//! for all the payloads that were queued together. The receiver keeps the
//! whole message as one [`Bytes`] buffer and hands out slices of it, so no
//! payload is copied on the way in.
//!
//! A batch is bounded ([`Batch::fits`]): payloads are added while the
//! encoded batch stays within the bound, and a payload larger than the
//! bound travels alone. So a pipe's memory stays within its high-water
//! mark x max(bound, largest payload).

use bytes::{Buf, Bytes};

/// First byte of every batch: the format version.
pub const BATCH_V1: u8 = 0x01;

/// Bytes of framing per payload (its length).
pub const RECORD_HEADER: usize = 4;

/// Default bound on an encoded batch, in bytes. libzmq writes a socket's
/// messages to TCP in 8 KiB chunks; 16 KiB holds a couple of hundred
/// 64-byte frames, more than a burst queues, while keeping the memory a
/// full pipe can hold (high-water mark x this) at a few times what it
/// held before batching for frames of that size.
pub const DEFAULT_MAX_BATCH: usize = 16 * 1024;

/// An encoded batch being filled. Reused: [`Batch::clear`] keeps the
/// buffer, so a pipe in steady state allocates nothing per batch.
#[derive(Debug, Default)]
pub struct Batch {
    /// `[BATCH_V1]` and the records so far; empty while no payload is in.
    buf: Vec<u8>,
    /// Number of payloads in `buf`.
    count: usize,
}

impl Batch {
    /// True when no payload is in.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Payloads in this batch.
    pub fn len(&self) -> usize {
        self.count
    }

    /// The encoded size so far (0 while empty).
    pub fn encoded_len(&self) -> usize {
        self.buf.len()
    }

    /// Whether a payload of `len` bytes may join without the batch going
    /// over `max` bytes. An empty batch takes any payload: one larger than
    /// the bound travels alone rather than not at all.
    pub fn fits(&self, len: usize, max: usize) -> bool {
        self.is_empty() || self.buf.len() + RECORD_HEADER + len <= max
    }

    /// Appends one payload. Payloads of 4 GiB or more cannot be framed;
    /// callers refuse them before (see [`record_len`]).
    pub fn push(&mut self, payload: &[u8]) {
        if self.buf.is_empty() {
            self.buf.push(BATCH_V1);
        }
        let len = record_len(payload.len()).expect("payload length checked by the caller");
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(payload);
        self.count += 1;
    }

    /// A mark to [`Batch::truncate`] back to: the batch as it is now.
    pub fn mark(&self) -> Mark {
        Mark {
            bytes: self.buf.len(),
            count: self.count,
        }
    }

    /// Drops every payload pushed after `mark` was taken (a refused
    /// sender takes its own payloads back out).
    pub fn truncate(&mut self, mark: Mark) {
        self.buf.truncate(mark.bytes);
        self.count = mark.count;
        if self.count == 0 {
            self.buf.clear();
        }
    }

    /// Empties the batch, keeping its buffer.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.count = 0;
    }

    /// The encoded batch, as it goes on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// A position in a [`Batch`], from [`Batch::mark`].
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    /// Encoded length at the mark.
    bytes: usize,
    /// Payload count at the mark.
    count: usize,
}

/// The record length of a payload of `len` bytes, or `None` if it is too
/// long to frame (4 GiB or more).
pub fn record_len(len: usize) -> Option<u32> {
    u32::try_from(len).ok()
}

/// Why a received message is not a well-formed batch. The payloads before
/// the fault are still delivered; nothing after it is.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    /// The message is empty or does not start with [`BATCH_V1`].
    #[error("not a batch (format byte {0:?})")]
    Format(Option<u8>),
    /// A record (its length, or its bytes) runs past the end of the
    /// message.
    #[error("a record needs {needed} bytes but only {left} are left in the batch")]
    Truncated {
        /// Bytes the record header or body needs.
        needed: usize,
        /// What was left of the message.
        left: usize,
    },
}

/// Splits a received batch into its payloads: slices of `message`, in
/// order, none of them copied.
pub fn split(message: Bytes) -> Split {
    match message.first() {
        Some(&BATCH_V1) => Split {
            rest: message.slice(1..),
            fault: None,
        },
        other => Split {
            rest: Bytes::new(),
            fault: Some(BatchError::Format(other.copied())),
        },
    }
}

/// The payloads of one batch, from [`split`]: `Ok` slices in order, then,
/// if the batch is malformed, one `Err`, and the end.
#[derive(Debug)]
pub struct Split {
    /// The records not read yet.
    rest: Bytes,
    /// A fault found but not reported yet.
    fault: Option<BatchError>,
}

impl Iterator for Split {
    type Item = Result<Bytes, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(fault) = self.fault.take() {
            return Some(Err(fault));
        }
        if self.rest.is_empty() {
            return None;
        }
        let left = self.rest.len();
        let Some(header) = self.rest.get(..RECORD_HEADER) else {
            return Some(Err(self.stop(RECORD_HEADER, left)));
        };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if left - RECORD_HEADER < len {
            return Some(Err(self.stop(len, left - RECORD_HEADER)));
        }
        self.rest.advance(RECORD_HEADER);
        Some(Ok(self.rest.split_to(len)))
    }
}

impl Split {
    /// Ends the iteration at a fault.
    fn stop(&mut self, needed: usize, left: usize) -> BatchError {
        self.rest = Bytes::new();
        BatchError::Truncated { needed, left }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(payloads: &[&[u8]]) -> Bytes {
        let mut b = Batch::default();
        for p in payloads {
            b.push(p);
        }
        Bytes::copy_from_slice(b.as_bytes())
    }

    fn decode(message: Bytes) -> Vec<Result<Bytes, BatchError>> {
        split(message).collect()
    }

    #[test]
    fn payloads_round_trip_in_order_including_empty_ones() {
        let payloads: Vec<&[u8]> = vec![b"a", b"", b"hello", &[0u8; 300], b""];
        let got: Vec<Bytes> = decode(encode(&payloads))
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, payloads);
    }

    #[test]
    fn payloads_are_slices_of_the_message_not_copies() {
        let message = encode(&[b"first", b"second"]);
        let range = message.as_ptr_range();
        for p in split(message.clone()) {
            let p = p.unwrap();
            assert!(range.contains(&p.as_ptr()), "{p:?} was copied");
        }
    }

    #[test]
    fn the_bound_admits_payloads_while_the_batch_stays_within_it() {
        let mut b = Batch::default();
        // An empty batch takes anything, even more than the bound.
        assert!(b.fits(100, 10));
        b.push(&[1; 5]); // 1 + 4 + 5 = 10 bytes
        assert_eq!(b.encoded_len(), 10);
        assert!(b.fits(6, 20)); // 10 + 4 + 6 = 20
        assert!(!b.fits(7, 20));
        assert!(b.fits(0, 14));
        assert!(!b.fits(0, 13));
    }

    #[test]
    fn truncating_to_a_mark_takes_back_what_came_after() {
        let mut b = Batch::default();
        b.push(b"kept");
        let mark = b.mark();
        b.push(b"taken back");
        b.push(b"this too");
        b.truncate(mark);
        assert_eq!(b.len(), 1);
        let got: Vec<_> = split(Bytes::copy_from_slice(b.as_bytes())).collect();
        assert_eq!(got, vec![Ok(Bytes::from_static(b"kept"))]);
        // Back to an empty mark: empty, and the next push starts afresh.
        let mut c = Batch::default();
        let empty = c.mark();
        c.push(b"x");
        c.truncate(empty);
        assert!(c.is_empty());
        assert_eq!(c.encoded_len(), 0);
        c.push(b"y");
        assert_eq!(
            decode(Bytes::copy_from_slice(c.as_bytes())),
            vec![Ok(Bytes::from_static(b"y"))]
        );
    }

    #[test]
    fn a_message_that_is_not_a_batch_is_one_error() {
        assert_eq!(decode(Bytes::new()), vec![Err(BatchError::Format(None))]);
        // A bare protobuf message (field 1, length-delimited) from an old node.
        assert_eq!(
            decode(Bytes::from_static(&[0x0a, 0x01, 0x00])),
            vec![Err(BatchError::Format(Some(0x0a)))]
        );
        // The format byte alone: a batch of nothing.
        assert!(decode(Bytes::from_static(&[BATCH_V1])).is_empty());
    }

    #[test]
    fn a_truncated_batch_delivers_what_is_whole_then_one_error() {
        let whole = encode(&[b"ok", b"cut short"]);
        // Inside the second record's body.
        let got = decode(whole.slice(..whole.len() - 3));
        assert_eq!(got[0], Ok(Bytes::from_static(b"ok")));
        assert_eq!(got[1], Err(BatchError::Truncated { needed: 9, left: 6 }));
        assert_eq!(got.len(), 2);
        // Inside the second record's header.
        let got = decode(whole.slice(..1 + 4 + 2 + 2));
        assert_eq!(got[1], Err(BatchError::Truncated { needed: 4, left: 2 }));
        assert_eq!(got.len(), 2);
    }
}
