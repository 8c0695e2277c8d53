//! The arena's messages inside the game envelope (PROTOCOL.md, "Game
//! routes"): requests go out as `GameRequest{route, payload}`, replies come
//! back as `GameResponse{payload}` or an `ErrorResponse`, states as
//! `GamePush{"arena.state", payload}`. Shared by the terminal game and the
//! bench bots so both read the server the same way.

use gamemesh_proto::client::{
    client_packet, server_packet, ErrorResponse, GameRequest, Kicked, ServerPacket,
};
use gamemesh_proto::Message;

use super::proto::State;
use crate::client::error_code_name;

/// Route of `JoinRequest` / `JoinResponse`.
pub const JOIN: &str = "arena.join";
/// Route of `MoveRequest` / `MoveResponse`.
pub const MOVE: &str = "arena.move";
/// Route of `LeaveRequest` / `LeaveResponse`.
pub const LEAVE: &str = "arena.leave";
/// Route of the `State` pushed every tick.
pub const STATE: &str = "arena.state";

/// A `ClientPacket` body carrying `message` to `route`.
pub fn request(route: &str, message: &impl Message) -> client_packet::Body {
    client_packet::Body::Game(GameRequest {
        route: route.to_owned(),
        payload: message.encode_to_vec().into(),
    })
}

/// A server packet, sorted by what the arena does with it.
#[derive(Debug)]
pub enum Incoming {
    /// An `arena.state` push.
    State(State),
    /// A reply to request `sequence_id`: the `GameResponse` payload, or
    /// what went wrong as one line (an error code, or a body that was not
    /// a game reply).
    Reply {
        /// The request it answers.
        sequence_id: u64,
        /// The payload, or why there is none.
        payload: Result<bytes::Bytes, String>,
    },
    /// A kick: the last frame of the connection.
    Kicked(Kicked),
    /// Anything else: a notice, another game's push (`sequence_id` 0), a
    /// reply of another kind (heartbeat, logout), described in one line.
    Other {
        /// 0 for a push, else the request it answers.
        sequence_id: u64,
        /// What it is.
        what: String,
    },
}

/// Sorts one packet. A state whose payload does not decode is `Other`
/// with the reason, so a client never stops on one bad push.
pub fn classify(packet: ServerPacket) -> Incoming {
    use server_packet::Body;
    let sequence_id = packet.sequence_id;
    match packet.body {
        Some(Body::GamePush(push)) if push.route == STATE => match State::decode(push.payload) {
            Ok(state) => Incoming::State(state),
            Err(e) => Incoming::Other {
                sequence_id,
                what: format!("an arena.state that does not decode: {e}"),
            },
        },
        Some(Body::Kicked(k)) => Incoming::Kicked(k),
        Some(Body::Game(reply)) if sequence_id != 0 => Incoming::Reply {
            sequence_id,
            payload: Ok(reply.payload),
        },
        Some(Body::Error(e)) if sequence_id != 0 => Incoming::Reply {
            sequence_id,
            payload: Err(describe_error(&e)),
        },
        Some(Body::Notice(n)) => Incoming::Other {
            sequence_id,
            what: format!("notice: {}: {}", n.kind, n.text),
        },
        body => Incoming::Other {
            sequence_id,
            what: crate::client::describe(&ServerPacket { sequence_id, body }),
        },
    }
}

/// An `ErrorResponse` as one line: `REFUSED (room full)`.
pub fn describe_error(e: &ErrorResponse) -> String {
    if e.detail.is_empty() {
        error_code_name(e.code)
    } else {
        format!("{} ({})", error_code_name(e.code), e.detail)
    }
}

/// Decodes a reply payload as `T`, or says why it is not one.
pub fn decode_reply<T: Message + Default>(
    what: &str,
    payload: Result<bytes::Bytes, String>,
) -> Result<T, String> {
    let payload = payload?;
    T::decode(payload).map_err(|e| format!("the {what} reply does not decode: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arena::proto::{MoveRequest, MoveResponse, Player};
    use gamemesh_proto::client::{ErrorCode, GamePush, GameResponse, KickReason};
    use gamemesh_proto::packets;

    fn push(route: &str, payload: Vec<u8>) -> ServerPacket {
        ServerPacket {
            sequence_id: 0,
            body: Some(server_packet::Body::GamePush(GamePush {
                route: route.into(),
                payload: payload.into(),
            })),
        }
    }

    #[test]
    fn requests_carry_the_route_and_the_encoded_message() {
        let body = request(MOVE, &MoveRequest { dx: -1, dy: 1 });
        let client_packet::Body::Game(g) = body else {
            panic!("not a game request")
        };
        assert_eq!(g.route, "arena.move");
        assert_eq!(
            MoveRequest::decode(g.payload).unwrap(),
            MoveRequest { dx: -1, dy: 1 }
        );
    }

    #[test]
    fn packets_sort_into_states_replies_kicks_and_the_rest() {
        let state = State {
            room: "r".into(),
            tick: 3,
            players: vec![Player {
                user_id: 1,
                x: 2,
                y: 3,
            }],
            sent_unix_us: 42,
        };
        assert!(
            matches!(classify(push(STATE, state.encode_to_vec())), Incoming::State(s) if s == state)
        );
        assert!(
            matches!(classify(push(STATE, vec![0xff, 0xff])), Incoming::Other { sequence_id: 0, what } if what.contains("does not decode"))
        );
        assert!(matches!(
            classify(push("chess.board", vec![])),
            Incoming::Other { sequence_id: 0, .. }
        ));
        let reply = ServerPacket {
            sequence_id: 4,
            body: Some(server_packet::Body::Game(GameResponse {
                payload: MoveResponse { x: 1, y: 0 }.encode_to_vec().into(),
            })),
        };
        let Incoming::Reply {
            sequence_id: 4,
            payload,
        } = classify(reply)
        else {
            panic!("not a reply")
        };
        assert_eq!(
            decode_reply::<MoveResponse>("move", payload),
            Ok(MoveResponse { x: 1, y: 0 })
        );
        let refused = packets::error(5, ErrorCode::Refused, "room full");
        assert!(matches!(
            classify(refused),
            Incoming::Reply { sequence_id: 5, payload: Err(why) } if why == "REFUSED (room full)"
        ));
        let kicked = packets::kicked(KickReason::DuplicateLogin, "");
        assert!(matches!(classify(kicked), Incoming::Kicked(_)));
        assert_eq!(
            decode_reply::<MoveResponse>("move", Ok(vec![0xff].into())).unwrap_err(),
            "the move reply does not decode: failed to decode Protobuf message: invalid varint"
        );
    }
}
