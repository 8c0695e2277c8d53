//! What rooms exchange as bytes: a request to a room and its reply (they
//! cross the mesh when the room runs on another game server), and a
//! room's checkpoint (it sits in the room store).
//!
//! Declared here with prost's derive rather than in `internal.proto`: the
//! core forwards these as opaque bytes and never reads them, so the room
//! runtime owns its format, like a module owns its payloads.

use bytes::Bytes;

/// What a [`RoomRequest`] asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum RoomOp {
    /// Not set: refused.
    Unspecified = 0,
    /// Add the member (or answer a member joining again).
    Join = 1,
    /// Remove the member.
    Leave = 2,
    /// A member's request to the room (`payload`: the room's request).
    Request = 3,
    /// The member's session is now at `node`.
    Relocate = 4,
    /// Push `payload` (an encoded `ServerPacket`) to every member.
    Broadcast = 5,
    /// Create the room if it does not exist (no member joins).
    Ensure = 6,
}

/// How a room answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum RoomStatus {
    /// Not set (an undecodable reply): unavailable.
    Unspecified = 0,
    /// Done; `payload` is the room's answer.
    Ok = 1,
    /// The room said no; `detail` says why.
    Refused = 2,
    /// The session is not a member.
    NotMember = 3,
    /// The room cannot answer now; `retry` says whether asking again soon
    /// may work (it is starting, moving, or being restarted).
    Unavailable = 4,
    /// The room's code failed.
    Internal = 5,
    /// The room answered another code of the client contract (`code`).
    Code = 6,
}

/// Why a member left, on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum WireLeave {
    /// It asked to leave.
    Left = 0,
    /// It joined another room of a kind that allows one per session.
    Moved = 1,
    /// Its session ended: logout, a newer login, expiry.
    SessionEnded = 2,
}

/// A request to one room.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RoomRequest {
    /// The room kind.
    #[prost(string, tag = "1")]
    pub kind: String,
    /// The room's name.
    #[prost(string, tag = "2")]
    pub room: String,
    /// What is asked.
    #[prost(enumeration = "RoomOp", tag = "3")]
    pub op: i32,
    /// The member (0 for a broadcast).
    #[prost(uint64, tag = "4")]
    pub user_id: u64,
    /// The member's session.
    #[prost(uint64, tag = "5")]
    pub session_id: u64,
    /// The game server that owns the member's session.
    #[prost(uint64, tag = "6")]
    pub node: u64,
    /// The room's request (op `Request`) or the encoded `ServerPacket`
    /// to push (op `Broadcast`).
    #[prost(bytes = "bytes", tag = "7")]
    pub payload: Bytes,
    /// Unused (was the push's route; kept so tag 8 is never reused).
    #[prost(string, tag = "8")]
    pub route: String,
    /// Why the member leaves (op `Leave`).
    #[prost(enumeration = "WireLeave", tag = "9")]
    pub leave: i32,
}

/// A room's answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RoomReply {
    /// How it went.
    #[prost(enumeration = "RoomStatus", tag = "1")]
    pub status: i32,
    /// Why, when not `Ok`.
    #[prost(string, tag = "2")]
    pub detail: String,
    /// The room's encoded answer, when `Ok`.
    #[prost(bytes = "bytes", tag = "3")]
    pub payload: Bytes,
    /// For `Unavailable`: asking again soon may work.
    #[prost(bool, tag = "4")]
    pub retry: bool,
    /// For `Code`: the client contract's `ErrorCode`.
    #[prost(int32, tag = "5")]
    pub code: i32,
}

impl RoomReply {
    /// `Ok` with `payload`.
    pub fn ok(payload: Bytes) -> Self {
        Self {
            status: RoomStatus::Ok as i32,
            payload,
            ..Self::default()
        }
    }

    /// A reply of `status` (not `Ok`) saying `detail`.
    pub fn failed(status: RoomStatus, detail: impl Into<String>) -> Self {
        Self {
            status: status as i32,
            detail: detail.into(),
            ..Self::default()
        }
    }

    /// `Unavailable`, worth retrying soon.
    pub fn retry(detail: impl Into<String>) -> Self {
        Self {
            retry: true,
            ..Self::failed(RoomStatus::Unavailable, detail)
        }
    }
}

/// A member as saved in a checkpoint.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireMember {
    /// The player.
    #[prost(uint64, tag = "1")]
    pub user_id: u64,
    /// The session that joined.
    #[prost(uint64, tag = "2")]
    pub session_id: u64,
    /// Where that session was last seen (0: disconnected).
    #[prost(uint64, tag = "3")]
    pub node: u64,
}

/// A room as saved: enough to carry on elsewhere.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Checkpoint {
    /// The last tick run when it was saved.
    #[prost(uint64, tag = "1")]
    pub tick: u64,
    /// The most ticks the room may run past a saved checkpoint before it
    /// must save again: a room restored from this checkpoint continues at
    /// `tick + tick_bound`, above any tick already sent.
    #[prost(uint32, tag = "2")]
    pub tick_bound: u32,
    /// Its members, in join order.
    #[prost(message, repeated, tag = "3")]
    pub members: Vec<WireMember>,
    /// The room's own snapshot (its `Snapshot` message, encoded).
    #[prost(bytes = "bytes", tag = "4")]
    pub state: Bytes,
    /// Unix milliseconds when saved (for operators and tests).
    #[prost(uint64, tag = "5")]
    pub saved_at_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn requests_and_checkpoints_round_trip() {
        let req = RoomRequest {
            kind: "arena".into(),
            room: "r1".into(),
            op: RoomOp::Join as i32,
            user_id: 7,
            session_id: 9,
            node: 2,
            payload: Bytes::from_static(b"\x08\x01"),
            route: String::new(),
            leave: WireLeave::Moved as i32,
        };
        assert_eq!(
            RoomRequest::decode(req.encode_to_vec().as_slice()).unwrap(),
            req
        );
        let cp = Checkpoint {
            tick: 41,
            tick_bound: 10,
            members: vec![WireMember {
                user_id: 7,
                session_id: 9,
                node: 2,
            }],
            state: Bytes::from_static(b"xyz"),
            saved_at_ms: 5,
        };
        assert_eq!(
            Checkpoint::decode(cp.encode_to_vec().as_slice()).unwrap(),
            cp
        );
    }

    #[test]
    fn an_unknown_status_reads_as_unspecified() {
        let r = RoomReply {
            status: 99,
            ..RoomReply::default()
        };
        assert_eq!(r.status(), RoomStatus::Unspecified);
        assert!(RoomReply::retry("x").retry);
        assert_eq!(RoomReply::retry("x").status(), RoomStatus::Unavailable);
    }
}
