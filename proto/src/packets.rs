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
            outcome_unknown: false,
        })),
    }
}

/// An `UNAVAILABLE` for a request that may have run
/// (`ErrorResponse.outcome_unknown`): re-sending it may run it again, so a
/// client re-sends only what is safe to run twice.
pub fn outcome_unknown(sequence_id: u64, detail: impl Into<String>) -> ServerPacket {
    let mut packet = error(sequence_id, ErrorCode::Unavailable, detail);
    if let Some(server_packet::Body::Error(e)) = &mut packet.body {
        e.outcome_unknown = true;
    }
    packet
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
/// sequence id. Returns 0 when the body holds no such field.
///
/// Protobuf lets a field occur more than once, the last occurrence winning
/// (that is what `ClientPacket::decode` does), and lets fields come in any
/// order; prost writes field 1 first, but a hostile or hand-rolled client
/// need not. So this walks every top-level field, skipping the others, and
/// keeps the last field-1 value: whenever the body decodes, the result is
/// the decoded `sequence_id` (checked by `fuzz/fuzz_targets/client_packet.rs`).
/// It stops at the first malformed field, keeping what it had.
pub fn peek_sequence_id(body: &[u8]) -> u64 {
    const VARINT: u64 = 0;
    const FIXED64: u64 = 1;
    const LEN: u64 = 2;
    const START_GROUP: u64 = 3;
    const END_GROUP: u64 = 4;
    const FIXED32: u64 = 5;

    let mut rest = body;
    let mut sequence_id = 0;
    // Field numbers of the (deprecated, but still decodable) groups we are
    // inside; a field 1 inside a group is not the packet's.
    let mut groups: Vec<u64> = Vec::new();
    while !rest.is_empty() {
        let Some(key) = read_varint(&mut rest) else {
            break;
        };
        let (field, wire_type) = (key >> 3, key & 7);
        let ok = match wire_type {
            VARINT => match read_varint(&mut rest) {
                Some(v) if field == 1 && groups.is_empty() => {
                    sequence_id = v;
                    true
                }
                v => v.is_some(),
            },
            FIXED64 => skip(&mut rest, 8),
            LEN => read_varint(&mut rest)
                .and_then(|len| usize::try_from(len).ok())
                .is_some_and(|len| skip(&mut rest, len)),
            FIXED32 => skip(&mut rest, 4),
            START_GROUP => {
                groups.push(field);
                true
            }
            END_GROUP => groups.pop() == Some(field),
            _ => false,
        };
        if !ok {
            break;
        }
    }
    sequence_id
}

/// True when `body` is a `ClientPacket` laid out as prost writes one
/// (`sequence_id` first, non-zero) whose body is one of the plain
/// requests that only ever get a reply: echo, heartbeat, increment, chat
/// or a game route. Never true for login, resume or logout, whose
/// handling may also close the socket or move it, nor for anything laid
/// out otherwise: a game server may hold the replies of plain requests
/// back to send several at once, and must not hold one behind a
/// request that could close the socket first. Reads two keys and one
/// varint; decodes nothing.
pub fn is_plain_request(body: &[u8]) -> bool {
    let mut rest = body;
    // Field 1, varint: the sequence id.
    let key = read_varint(&mut rest);
    let sequence_id = read_varint(&mut rest);
    if key != Some(1 << 3) || matches!(sequence_id, None | Some(0)) {
        return false;
    }
    let Some(key) = read_varint(&mut rest) else {
        return false;
    };
    let (field, wire_type) = (key >> 3, key & 7);
    // Length-delimited: echo 12, heartbeat 13, chat 100-104, increment
    // 130, game 200 (client.proto).
    wire_type == 2 && matches!(field, 12 | 13 | 100..=104 | 130 | 200)
}

/// A base-128 varint as prost reads one: at most 10 bytes, the 10th at most 1.
fn read_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, &b) in buf.iter().take(10).enumerate() {
        if i == 9 && b > 1 {
            return None;
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Some(value);
        }
    }
    None
}

/// Drops `n` bytes, or returns false if there are fewer.
fn skip(buf: &mut &[u8], n: usize) -> bool {
    match buf.get(n..) {
        Some(rest) => {
            *buf = rest;
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn plain_requests_are_told_from_those_that_may_close_the_socket() {
        use crate::client::{client_packet::Body, *};
        let packet = |sequence_id, body| {
            ClientPacket {
                sequence_id,
                body: Some(body),
            }
            .encode_to_vec()
        };
        let echo = || Body::Echo(EchoRequest::default());
        let game = Body::Game(GameRequest {
            route: "arena.move".into(),
            payload: Bytes::from_static(b"\x08\x02"),
        });
        assert!(is_plain_request(&packet(7, echo())));
        assert!(is_plain_request(&packet(u64::MAX, game)));
        assert!(is_plain_request(&packet(
            3,
            Body::Heartbeat(HeartbeatRequest::default())
        )));
        assert!(is_plain_request(&packet(
            3,
            Body::Increment(IncrementRequest::default())
        )));
        assert!(is_plain_request(&packet(
            3,
            Body::ChatSay(ChatSayRequest::default())
        )));
        assert!(!is_plain_request(&packet(
            3,
            Body::Login(LoginRequest::default())
        )));
        assert!(!is_plain_request(&packet(
            3,
            Body::Resume(ResumeRequest::default())
        )));
        assert!(!is_plain_request(&packet(
            3,
            Body::Logout(LogoutRequest::default())
        )));
        // No sequence id (not deduplicated), another layout, garbage.
        assert!(!is_plain_request(&packet(0, echo())));
        let mut body_first = ClientPacket {
            sequence_id: 0,
            body: Some(echo()),
        }
        .encode_to_vec();
        body_first.extend_from_slice(&[0x08, 0x05]);
        assert!(!is_plain_request(&body_first));
        assert!(!is_plain_request(b""));
        assert!(!is_plain_request(&[0x08]));
        assert!(!is_plain_request(&[0xff; 12]));
    }
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

    /// Found by the `client_packet` fuzz target: field 1 twice
    /// (`sequence_id` 8, then 120). Protobuf keeps the last, so the peek
    /// must too, or an error reply carries a sequence id the client never
    /// sent as the packet's.
    #[test]
    fn peek_agrees_with_decode_when_field_1_repeats() {
        let body = [0x08, 0x08, 0x08, 0x78];
        assert_eq!(ClientPacket::decode(&body[..]).unwrap().sequence_id, 120);
        assert_eq!(peek_sequence_id(&body), 120);
    }

    #[test]
    fn peek_agrees_with_decode_whatever_the_field_order() {
        // Echo{data: "x"} first, then sequence_id 5; then the same with an
        // unknown group (field 7) holding a field 1 of its own, and unknown
        // fixed32/fixed64 fields.
        let bodies: [&[u8]; 2] = [
            b"\x62\x03\x0a\x01x\x08\x05",
            b"\x3b\x08\x09\x3c\x25\0\0\0\0\x08\x05\x29\0\0\0\0\0\0\0\0",
        ];
        for body in bodies {
            assert_eq!(ClientPacket::decode(body).unwrap().sequence_id, 5);
            assert_eq!(peek_sequence_id(body), 5);
        }
    }
}
