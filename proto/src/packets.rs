//! Constructors for the server packets that several parts build.

use bytes::Bytes;
use prost::Message;

use crate::client::{server_packet, ErrorCode, ErrorResponse, KickReason, Kicked, ServerPacket};

/// An `ErrorResponse` answering `sequence_id`.
pub fn error(sequence_id: u64, code: ErrorCode, detail: impl Into<String>) -> ServerPacket {
    ServerPacket {
        sequence_id,
        body: Some(server_packet::Body::Error(ErrorResponse {
            code: code as i32,
            detail: detail.into(),
        })),
    }
}

/// A `Kicked` push (sequence id 0).
pub fn kicked(reason: KickReason, detail: impl Into<String>) -> ServerPacket {
    ServerPacket {
        sequence_id: 0,
        body: Some(server_packet::Body::Kicked(Kicked {
            reason: reason as i32,
            detail: detail.into(),
        })),
    }
}

/// Encodes a message to a `Bytes` body.
pub fn encode(msg: &impl Message) -> Bytes {
    Bytes::from(msg.encode_to_vec())
}

/// Reads a `ClientPacket`'s `sequence_id` (field 1) without decoding the
/// body, so a gateway can answer a frame it failed to relay with the right
/// sequence id. Returns 0 when the body does not start with that field.
pub fn peek_sequence_id(body: &[u8]) -> u64 {
    // Field 1, wire type 0 (varint) has tag byte 0x08; prost writes it first.
    if body.first() != Some(&0x08) {
        return 0;
    }
    let mut value = 0u64;
    for (i, b) in body[1..].iter().take(10).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return value;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{client_packet, ClientPacket, EchoRequest};

    #[test]
    fn peeks_the_sequence_id() {
        for seq in [0u64, 1, 127, 128, 300, u64::MAX] {
            let p = ClientPacket {
                sequence_id: seq,
                body: Some(client_packet::Body::Echo(EchoRequest {
                    data: Bytes::from_static(b"x"),
                })),
            };
            assert_eq!(peek_sequence_id(&p.encode_to_vec()), seq);
        }
        assert_eq!(peek_sequence_id(b"\xff\xff"), 0);
        assert_eq!(peek_sequence_id(b""), 0);
    }
}
