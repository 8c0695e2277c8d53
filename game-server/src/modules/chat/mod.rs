//! Chat, as a module on the game API: rooms that span the cluster, and
//! private messages. The contract is in `client.proto` ("chat");
//! docs/CHAT.md tells the story.
//!
//! - **Rooms** are a room kind ([`room::ChatRoom`]) of the game API: one
//!   authority per room in the whole cluster, members on any game server,
//!   the `room_seq` saved with each change, restored from its checkpoint
//!   when its game server dies. Rooms live on when empty; the default
//!   rooms ([`DEFAULT_ROOMS`]) are made sure of at start.
//! - **Members** are sessions: logout and a replacing login make a
//!   session leave (the runtime hears it from the core), an expired one
//!   is dropped by the room's member sweep, a resumed one keeps its rooms.
//! - **Whispers** are pushes to a user wherever it is connected.
//! - **Limits**: room names 1 to 32 bytes of `[A-Za-z0-9_-]`, texts 1 to
//!   512 bytes, and `--chat-messages-per-sec` / `--chat-burst` sends per
//!   session ([`limiter`]).
//! - **Metrics**: `gamemesh_chat_messages_total`,
//!   `gamemesh_chat_whispers_total`, `gamemesh_chat_rate_limited_total`
//!   (and the room runtime's `gamemesh_rooms_running{kind="chat"}`).
//!
//! The handlers answer the contract's own chat bodies (`App::body`) with
//! its chat error codes (`INVALID_ROOM_NAME`, `NOT_IN_ROOM`, ...).

pub mod limiter;
pub mod room;

use std::sync::Arc;
use std::time::Duration;

use gamemesh_proto::client::{
    client_packet, server_packet, ChatJoinRequest, ChatJoinResponse, ChatLeaveRequest,
    ChatLeaveResponse, ChatListRoomsRequest, ChatListRoomsResponse, ChatRoomInfo, ChatSayRequest,
    ChatSayResponse, ChatWhisper, ChatWhisperRequest, ChatWhisperResponse, ErrorCode,
};

use crate::api::{App, Ctx, Game, GameError, Module, Push, RoomKind};
pub use limiter::ChatLimiter;
use room::ChatRoom;

/// Rooms that always exist.
pub const DEFAULT_ROOMS: [&str; 3] = ["general", "game", "dev"];
/// Longest room name, in bytes.
pub const MAX_ROOM_NAME: usize = 32;
/// Longest chat text, in bytes.
pub const MAX_TEXT: usize = 512;
/// The room kind.
pub const KIND: &str = "chat";

/// True for a name of 1 to [`MAX_ROOM_NAME`] bytes of `[A-Za-z0-9_-]`.
pub fn valid_room(name: &str) -> bool {
    crate::api::name::bounded(name, MAX_ROOM_NAME, crate::api::name::word_byte)
}

/// True for text of 1 to [`MAX_TEXT`] bytes.
pub fn valid_text(text: &str) -> bool {
    !text.is_empty() && text.len() <= MAX_TEXT
}

/// The name other players see. Accounts have no names yet.
pub fn display_name(user_id: u64) -> String {
    format!("user-{user_id}")
}

/// Unix time in milliseconds, stamped on pushes.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The chat module.
pub struct Chat {
    /// Says and whispers per session.
    limiter: Arc<ChatLimiter>,
}

impl Chat {
    /// Chat with `messages_per_sec` sends per session and bursts of
    /// `burst`.
    pub fn new(messages_per_sec: u32, burst: u32) -> Self {
        Self {
            limiter: Arc::new(ChatLimiter::new(messages_per_sec, burst)),
        }
    }
}

fn bad_room() -> GameError {
    GameError::code(
        ErrorCode::InvalidRoomName,
        format!("a room name is 1 to {MAX_ROOM_NAME} bytes of A-Z, a-z, 0-9, '_' and '-'"),
    )
}

fn bad_text() -> GameError {
    GameError::code(
        ErrorCode::InvalidText,
        format!("chat text is 1 to {MAX_TEXT} bytes"),
    )
}

fn not_in(room: &str) -> GameError {
    GameError::code(
        ErrorCode::NotInRoom,
        format!("not in room {room}; join it first"),
    )
}

/// Takes a send from `session`'s budget.
fn allow(limiter: &ChatLimiter, session: u64) -> Result<(), GameError> {
    if limiter.allow(session) {
        return Ok(());
    }
    metrics::counter!("gamemesh_chat_rate_limited_total").increment(1);
    Err(GameError::code(
        ErrorCode::RateLimited,
        "too many chat messages; slow down",
    ))
}

/// `chat_list_rooms`: every room and its member count, by name.
async fn list_rooms(
    ctx: Ctx,
    _req: ChatListRoomsRequest,
) -> Result<ChatListRoomsResponse, GameError> {
    // A read: running it again changes nothing, so an outage is not
    // cached against the sequence id.
    let rooms = ctx
        .rooms::<ChatRoom>()
        .list()
        .await
        .map_err(GameError::nothing_happened_if_unavailable)?;
    Ok(ChatListRoomsResponse {
        rooms: rooms
            .into_iter()
            .map(|(name, n)| ChatRoomInfo {
                name,
                member_count: n as u32,
            })
            .collect(),
    })
}

/// `chat_join`: joins (and creates) a room.
async fn join(ctx: Ctx, r: ChatJoinRequest) -> Result<ChatJoinResponse, GameError> {
    if !valid_room(&r.room) {
        return Err(bad_room());
    }
    // Joining the room one is in changes nothing, so a join that may
    // have happened can run again.
    ctx.rooms::<ChatRoom>()
        .join(&r.room)
        .await
        .map_err(GameError::nothing_happened_if_unavailable)
}

/// `chat_leave`: leaves a room.
async fn leave(ctx: Ctx, r: ChatLeaveRequest) -> Result<ChatLeaveResponse, GameError> {
    if !valid_room(&r.room) {
        return Err(bad_room());
    }
    ctx.rooms::<ChatRoom>()
        .leave_for::<ChatLeaveResponse>(&r.room)
        .await?
        .ok_or_else(|| not_in(&r.room))
}

/// `chat_say`: a message to a room the session is in.
async fn say(
    ctx: Ctx,
    limiter: Arc<ChatLimiter>,
    r: ChatSayRequest,
) -> Result<ChatSayResponse, GameError> {
    if !valid_room(&r.room) {
        return Err(bad_room());
    }
    if !valid_text(&r.text) {
        return Err(bad_text());
    }
    allow(&limiter, ctx.session_id())?;
    let room = r.room.clone();
    ctx.rooms::<ChatRoom>()
        .try_send(&room, &r)
        .await?
        .ok_or_else(|| not_in(&room))
}

/// `chat_whisper`: a private message to a user wherever its session is.
async fn whisper(
    ctx: Ctx,
    limiter: Arc<ChatLimiter>,
    r: ChatWhisperRequest,
) -> Result<ChatWhisperResponse, GameError> {
    if !valid_text(&r.text) {
        return Err(bad_text());
    }
    allow(&limiter, ctx.session_id())?;
    let offline = || {
        GameError::code(
            ErrorCode::UserOffline,
            format!("user {} is offline", r.to_user_id),
        )
    };
    if r.to_user_id == 0 {
        return Err(offline());
    }
    let push = Push::packet(server_packet::Body::ChatWhispered(ChatWhisper {
        from_user_id: ctx.user_id(),
        from_name: display_name(ctx.user_id()),
        text: r.text.clone(),
        sent_at_ms: now_ms(),
    }));
    if !ctx.push().send_to_user(r.to_user_id, &push).await? {
        return Err(offline());
    }
    metrics::counter!("gamemesh_chat_whispers_total").increment(1);
    Ok(ChatWhisperResponse {
        to_user_id: r.to_user_id,
    })
}

/// Makes sure the default rooms exist (retried by the runtime until it
/// works: at start Redis or the mesh may not be there yet).
async fn default_rooms(game: Game) -> Result<(), GameError> {
    for room in DEFAULT_ROOMS {
        game.ensure_room::<ChatRoom>(room).await?;
    }
    Ok(())
}

/// Forgets idle send limits now and then, until the game stops.
async fn prune(game: Game, limiter: Arc<ChatLimiter>) -> Result<(), GameError> {
    loop {
        tokio::select! {
            _ = game.stopping() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(2)) => limiter.prune(),
        }
    }
}

impl Module for Chat {
    fn name(&self) -> &str {
        KIND
    }

    fn build(&self, app: &mut App) {
        let (l1, l2, l3) = (
            self.limiter.clone(),
            self.limiter.clone(),
            self.limiter.clone(),
        );
        app.room(
            RoomKind::<ChatRoom>::new(KIND)
                .max_members(100_000)
                .keep_empty(),
        )
        .body(
            "chat.list_rooms",
            |b| match b {
                client_packet::Body::ChatListRooms(r) => Some(*r),
                _ => None,
            },
            server_packet::Body::ChatListRooms,
            list_rooms,
        )
        .body(
            "chat.join",
            |b| match b {
                client_packet::Body::ChatJoin(r) => Some(r.clone()),
                _ => None,
            },
            server_packet::Body::ChatJoin,
            join,
        )
        .body(
            "chat.leave",
            |b| match b {
                client_packet::Body::ChatLeave(r) => Some(r.clone()),
                _ => None,
            },
            server_packet::Body::ChatLeave,
            leave,
        )
        .body(
            "chat.say",
            |b| match b {
                client_packet::Body::ChatSay(r) => Some(r.clone()),
                _ => None,
            },
            server_packet::Body::ChatSay,
            move |ctx: Ctx, r: ChatSayRequest| say(ctx, l1.clone(), r),
        )
        .body(
            "chat.whisper",
            |b| match b {
                client_packet::Body::ChatWhisper(r) => Some(r.clone()),
                _ => None,
            },
            server_packet::Body::ChatWhisper,
            move |ctx: Ctx, r: ChatWhisperRequest| whisper(ctx, l2.clone(), r),
        )
        .on_start(default_rooms)
        .on_start(move |game| prune(game, l3.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_and_texts_are_bounded() {
        assert!(valid_room("general"));
        assert!(valid_room("Team_2-b"));
        assert!(valid_room(&"a".repeat(MAX_ROOM_NAME)));
        assert!(!valid_room(""));
        assert!(!valid_room(&"a".repeat(MAX_ROOM_NAME + 1)));
        assert!(!valid_room("has space"));
        assert!(!valid_room("a}b"), "would break the Redis hash tag");
        assert!(valid_text("hi"));
        assert!(valid_text(&"é".repeat(MAX_TEXT / 2)));
        assert!(!valid_text(""));
        assert!(!valid_text(&"x".repeat(MAX_TEXT + 1)));
    }
}
