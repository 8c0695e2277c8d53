//! [`ChatRoom`]: a chat room as a room kind of the game API.
//!
//! The runtime keeps the members (and drops those whose session ended),
//! runs the room on one game server for the whole cluster, and restores
//! it elsewhere from its checkpoint. The room keeps its `room_seq`: every
//! join, leave and message takes the next one, and is saved before it
//! goes out (`save_before_reply`), so a room restored after its game
//! server died never hands a `room_seq` out twice, and one moved by a
//! hand-off carries on at the very next number.

use gamemesh_proto::client::{
    server_packet, ChatJoinResponse, ChatLeaveResponse, ChatMessage, ChatNotice, ChatNoticeKind,
    ChatSayRequest, ChatSayResponse,
};
use tracing::info;

use super::{display_name, now_ms};
use crate::api::prelude::*;

/// What a checkpoint keeps of a chat room besides its members.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChatRoomState {
    /// The last `room_seq` handed out.
    #[prost(uint64, tag = "1")]
    pub seq: u64,
}

/// One chat room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRoom {
    /// Its name.
    name: String,
    /// The last `room_seq` handed out.
    seq: u64,
}

impl ChatRoom {
    /// Takes the next `room_seq`.
    fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Tells every member that `user` joined or left (`kind`), under the
    /// next room sequence number, which it returns; the room is saved
    /// before the reply, so the number is never handed out twice.
    fn announce(&mut self, cx: &mut RoomCx<'_>, kind: ChatNoticeKind, user: u64) -> u64 {
        let seq = self.next();
        cx.push_body_all(self.notice(seq, kind, user));
        cx.save_before_reply();
        seq
    }

    fn notice(&self, seq: u64, kind: ChatNoticeKind, user: u64) -> server_packet::Body {
        let name = display_name(user);
        let verb = if kind == ChatNoticeKind::Joined {
            "joined"
        } else {
            "left"
        };
        server_packet::Body::ChatNotice(ChatNotice {
            room: self.name.clone(),
            room_seq: seq,
            kind: kind as i32,
            user_id: user,
            text: format!("{name} {verb}"),
            name,
            sent_at_ms: now_ms(),
        })
    }
}

fn member_ids(cx: &RoomCx<'_>) -> Vec<u64> {
    let mut ids: Vec<u64> = cx.members().map(|m| m.user_id).collect();
    ids.sort_unstable();
    ids
}

impl Room for ChatRoom {
    type JoinReply = ChatJoinResponse;
    type Request = ChatSayRequest;
    type Reply = ChatSayResponse;
    type Snapshot = ChatRoomState;

    fn create(init: &RoomInit<'_>) -> Result<Self, GameError> {
        Ok(Self {
            name: init.name.to_string(),
            seq: 0,
        })
    }

    fn restore(init: &RoomInit<'_>, snapshot: ChatRoomState) -> Result<Self, GameError> {
        Ok(Self {
            name: init.name.to_string(),
            seq: snapshot.seq,
        })
    }

    fn snapshot(&self) -> ChatRoomState {
        ChatRoomState { seq: self.seq }
    }

    fn join(
        &mut self,
        cx: &mut RoomCx<'_>,
        member: &Member,
        again: bool,
    ) -> Result<ChatJoinResponse, GameError> {
        let room_seq = if again {
            // Joined already: no notice, `room_seq` 0.
            0
        } else {
            let seq = self.announce(cx, ChatNoticeKind::Joined, member.user_id);
            info!(
                "Chat: UserId={} joined room {} (RoomSeq={seq})",
                member.user_id, self.name
            );
            seq
        };
        Ok(ChatJoinResponse {
            room: self.name.clone(),
            member_user_ids: member_ids(cx),
            room_seq,
        })
    }

    fn leave(&mut self, cx: &mut RoomCx<'_>, member: &Member, why: LeaveReason) {
        let seq = self.announce(cx, ChatNoticeKind::Left, member.user_id);
        cx.answer_leave(&ChatLeaveResponse {
            room: self.name.clone(),
            room_seq: seq,
        });
        info!(
            "Chat: UserId={} left room {} ({why:?}, RoomSeq={seq})",
            member.user_id, self.name
        );
    }

    fn request(
        &mut self,
        cx: &mut RoomCx<'_>,
        member: &Member,
        say: ChatSayRequest,
    ) -> Result<ChatSayResponse, GameError> {
        let seq = self.next();
        cx.push_body_all(server_packet::Body::ChatMessage(ChatMessage {
            room: self.name.clone(),
            room_seq: seq,
            from_user_id: member.user_id,
            from_name: display_name(member.user_id),
            text: say.text,
            sent_at_ms: now_ms(),
        }));
        cx.save_before_reply();
        metrics::counter!("gamemesh_chat_messages_total").increment(1);
        Ok(ChatSayResponse {
            room: self.name.clone(),
            room_seq: seq,
        })
    }
}
