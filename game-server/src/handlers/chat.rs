//! Chat requests: list rooms, join, leave, say, whisper. Each checks its
//! input (room name and text limits, the per-session send limit), then
//! asks the room's actor wherever it runs ([`crate::chat::ask`]) and turns
//! its answer into the client's reply. What members see travels as pushes
//! from the room, not from here. The contract is in `client.proto`
//! ("chat").

use std::sync::Arc;

use gamemesh_proto::client::{
    server_packet, ChatJoinRequest, ChatJoinResponse, ChatLeaveRequest, ChatLeaveResponse,
    ChatListRoomsResponse, ChatRoomInfo, ChatSayRequest, ChatSayResponse, ChatWhisper,
    ChatWhisperRequest, ChatWhisperResponse, ErrorCode, ServerPacket,
};
use gamemesh_proto::internal::{ChatRoomOp, ChatRoomReply, ChatRoomRequest, ChatRoomStatus};
use tracing::warn;

use crate::chat::{self, display_name, now_ms, valid_room, valid_text, MAX_ROOM_NAME, MAX_TEXT};
use crate::cluster::mesh::{deliver_to_user, DeliverError};
use crate::request::{BoxError, HubRequest, HubResponse};
use crate::session::LocalSession;
use crate::state::HubState;

type Reply = Result<HubResponse, BoxError>;

fn ok(seq: u64, body: server_packet::Body) -> Reply {
    Ok(HubResponse::reply(ServerPacket {
        sequence_id: seq,
        body: Some(body),
    }))
}

fn err(seq: u64, code: ErrorCode, detail: impl Into<String>) -> Reply {
    Ok(HubResponse::error(seq, code, detail))
}

/// The reply to a chat request from a socket without a session (the
/// authentication layer normally answers first).
fn no_session(seq: u64) -> Reply {
    err(seq, ErrorCode::NotAuthenticated, "no session")
}

fn bad_room(seq: u64) -> Reply {
    err(
        seq,
        ErrorCode::InvalidRoomName,
        format!("a room name is 1 to {MAX_ROOM_NAME} bytes of A-Z, a-z, 0-9, '_' and '-'"),
    )
}

fn bad_text(seq: u64) -> Reply {
    err(
        seq,
        ErrorCode::InvalidText,
        format!("chat text is 1 to {MAX_TEXT} bytes"),
    )
}

fn rate_limited(seq: u64) -> Reply {
    metrics::counter!("gamemesh_chat_rate_limited_total").increment(1);
    err(
        seq,
        ErrorCode::RateLimited,
        "too many chat messages; slow down",
    )
}

async fn ask(
    state: &Arc<HubState>,
    s: &LocalSession,
    room: String,
    op: ChatRoomOp,
    text: String,
) -> ChatRoomReply {
    chat::ask(
        state,
        ChatRoomRequest {
            request_id: 0,
            room,
            user_id: s.user_id,
            session_id: s.session_id,
            op: op as i32,
            text,
        },
    )
    .await
}

/// The reply for a room answer that is not a success.
fn refused(seq: u64, room: &str, status: ChatRoomStatus) -> Reply {
    match status {
        ChatRoomStatus::NotInRoom => err(
            seq,
            ErrorCode::NotInRoom,
            format!("not in room {room}; join it first"),
        ),
        _ => err(
            seq,
            ErrorCode::Unavailable,
            format!("room {room} is unavailable; retry"),
        ),
    }
}

/// `chat_list_rooms`: every room and its member count, by name.
pub async fn list_rooms(state: Arc<HubState>, req: HubRequest) -> Reply {
    let seq = req.packet.sequence_id;
    match state.chat.store.rooms().await {
        Ok(mut rooms) => {
            rooms.sort();
            ok(
                seq,
                server_packet::Body::ChatListRooms(ChatListRoomsResponse {
                    rooms: rooms
                        .into_iter()
                        .map(|(name, member_count)| ChatRoomInfo { name, member_count })
                        .collect(),
                }),
            )
        }
        Err(e) => {
            warn!("Listing chat rooms failed: {e}");
            err(seq, ErrorCode::Unavailable, "chat store unavailable; retry")
        }
    }
}

/// `chat_join`: joins (and creates) a room.
pub async fn join(state: Arc<HubState>, req: HubRequest, r: ChatJoinRequest) -> Reply {
    let seq = req.packet.sequence_id;
    let Some(s) = req.session.clone() else {
        return no_session(seq);
    };
    if !valid_room(&r.room) {
        return bad_room(seq);
    }
    let answer = ask(&state, &s, r.room.clone(), ChatRoomOp::Join, String::new()).await;
    match answer.status() {
        ChatRoomStatus::Ok | ChatRoomStatus::Already => ok(
            seq,
            server_packet::Body::ChatJoin(ChatJoinResponse {
                room: r.room,
                member_user_ids: answer.member_user_ids,
                room_seq: answer.room_seq,
            }),
        ),
        other => refused(seq, &r.room, other),
    }
}

/// `chat_leave`: leaves a room.
pub async fn leave(state: Arc<HubState>, req: HubRequest, r: ChatLeaveRequest) -> Reply {
    let seq = req.packet.sequence_id;
    let Some(s) = req.session.clone() else {
        return no_session(seq);
    };
    if !valid_room(&r.room) {
        return bad_room(seq);
    }
    let answer = ask(&state, &s, r.room.clone(), ChatRoomOp::Leave, String::new()).await;
    match answer.status() {
        ChatRoomStatus::Ok => ok(
            seq,
            server_packet::Body::ChatLeave(ChatLeaveResponse {
                room: r.room,
                room_seq: answer.room_seq,
            }),
        ),
        other => refused(seq, &r.room, other),
    }
}

/// `chat_say`: a message to a room the session is in.
pub async fn say(state: Arc<HubState>, req: HubRequest, r: ChatSayRequest) -> Reply {
    let seq = req.packet.sequence_id;
    let Some(s) = req.session.clone() else {
        return no_session(seq);
    };
    if !valid_room(&r.room) {
        return bad_room(seq);
    }
    if !valid_text(&r.text) {
        return bad_text(seq);
    }
    if !state.chat.limiter.allow(s.session_id) {
        return rate_limited(seq);
    }
    let answer = ask(&state, &s, r.room.clone(), ChatRoomOp::Say, r.text).await;
    match answer.status() {
        ChatRoomStatus::Ok => ok(
            seq,
            server_packet::Body::ChatSay(ChatSayResponse {
                room: r.room,
                room_seq: answer.room_seq,
            }),
        ),
        other => refused(seq, &r.room, other),
    }
}

/// `chat_whisper`: a private message to a user wherever their session is.
pub async fn whisper(state: Arc<HubState>, req: HubRequest, r: ChatWhisperRequest) -> Reply {
    let seq = req.packet.sequence_id;
    let Some(s) = req.session.clone() else {
        return no_session(seq);
    };
    if !valid_text(&r.text) {
        return bad_text(seq);
    }
    if !state.chat.limiter.allow(s.session_id) {
        return rate_limited(seq);
    }
    let offline = || {
        err(
            seq,
            ErrorCode::UserOffline,
            format!("user {} is offline", r.to_user_id),
        )
    };
    if r.to_user_id == 0 {
        return offline();
    }
    let push = ServerPacket {
        sequence_id: 0,
        body: Some(server_packet::Body::ChatWhispered(ChatWhisper {
            from_user_id: s.user_id,
            from_name: display_name(s.user_id),
            text: r.text.clone(),
            sent_at_ms: now_ms(),
        })),
    };
    match deliver_to_user(&state, r.to_user_id, &push).await {
        Ok(()) => {
            metrics::counter!("gamemesh_chat_whispers_total").increment(1);
            ok(
                seq,
                server_packet::Body::ChatWhisper(ChatWhisperResponse {
                    to_user_id: r.to_user_id,
                }),
            )
        }
        Err(DeliverError::Offline) => offline(),
        Err(DeliverError::Unavailable) => err(
            seq,
            ErrorCode::Unavailable,
            "could not reach the user's game server; retry",
        ),
    }
}
