//! [`Rooms`]: a handler's way into the rooms of one kind, as its caller.
//!
//! `ctx.rooms::<Arena>().join("r1")` sends the caller's session to the
//! room wherever it runs and returns the room's typed answer. The rooms a
//! session is in are remembered here (the game server that owns the
//! session runs all of its handlers), and read from the store's per-user
//! index after the session moved to this game server, so finding "the
//! room I am in" costs no round trip on the hot path.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use prost::Message;

use super::wire::{RoomOp, RoomReply, RoomRequest, RoomStatus, WireLeave};
use super::{KindConfig, Room, RoomKey};
use crate::api::context::Ctx;
use crate::api::error::{refuse, GameError};

/// The rooms each session owned here is in: session -> kind -> rooms.
#[derive(Debug, Default)]
pub(crate) struct SessionRooms {
    /// Filled on join or on first use, emptied on leave and session end.
    by_session: Mutex<HashMap<u64, HashMap<String, Vec<String>>>>,
}

impl SessionRooms {
    fn map(&self) -> MutexGuard<'_, HashMap<u64, HashMap<String, Vec<String>>>> {
        self.by_session.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, session: u64, kind: &str) -> Option<Vec<String>> {
        self.map().get(&session)?.get(kind).cloned()
    }

    fn set(&self, session: u64, kind: &str, rooms: Vec<String>) {
        self.map()
            .entry(session)
            .or_default()
            .insert(kind.to_string(), rooms);
    }

    fn add(&self, session: u64, kind: &str, room: &str) {
        let mut map = self.map();
        let rooms = map
            .entry(session)
            .or_default()
            .entry(kind.to_string())
            .or_default();
        if !rooms.iter().any(|r| r == room) {
            rooms.push(room.to_string());
        }
    }

    fn remove(&self, session: u64, kind: &str, room: &str) {
        if let Some(rooms) = self.map().get_mut(&session).and_then(|k| k.get_mut(kind)) {
            rooms.retain(|r| r != room);
        }
    }

    fn forget_kind(&self, session: u64, kind: &str) {
        if let Some(kinds) = self.map().get_mut(&session) {
            kinds.remove(kind);
        }
    }

    /// Forgets `session` (it ended or left this game server).
    pub(crate) fn forget(&self, session: u64) {
        self.map().remove(&session);
    }

    /// Sessions remembered (tests check nothing leaks).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map().len()
    }
}

/// Turns a room's reply into the typed answer or the error game code sees.
pub(crate) fn answer<M: Message + Default>(reply: RoomReply, room: &str) -> Result<M, GameError> {
    match reply.status() {
        RoomStatus::Ok => M::decode(reply.payload)
            .map_err(|e| GameError::internal(format!("room {room} answered undecodably: {e}"))),
        RoomStatus::Refused => Err(GameError::Refused(reply.detail)),
        RoomStatus::NotMember => Err(refuse(format!("not in room {room}"))),
        RoomStatus::Internal => Err(GameError::Internal(reply.detail)),
        RoomStatus::Code => Err(GameError::code(
            gamemesh_proto::client::ErrorCode::try_from(reply.code)
                .unwrap_or(gamemesh_proto::client::ErrorCode::Internal),
            reply.detail,
        )),
        RoomStatus::Unavailable | RoomStatus::Unspecified => {
            let detail = if reply.detail.is_empty() {
                format!("room {room} is unavailable; retry")
            } else {
                reply.detail
            };
            // `retry` is the room's promise that it did nothing.
            Err(if reply.retry {
                GameError::NothingHappened(detail)
            } else {
                GameError::Unavailable(detail)
            })
        }
    }
}

/// The caller's view of the rooms of kind `R`.
pub struct Rooms<'a, R> {
    /// The caller and the game.
    ctx: &'a Ctx,
    /// The room type.
    _room: PhantomData<fn() -> R>,
}

impl<'a, R: Room> Rooms<'a, R> {
    pub(crate) fn new(ctx: &'a Ctx) -> Self {
        Self {
            ctx,
            _room: PhantomData,
        }
    }

    fn kind(&self) -> Result<&KindConfig, GameError> {
        self.ctx.game().host().kind_of::<R>()
    }

    fn key(&self, room: &str) -> Result<RoomKey, GameError> {
        let kind = self.kind()?;
        RoomKey::new(&kind.name, room).ok_or_else(|| {
            refuse(format!(
                "\"{room}\" is not a room name (1 to 64 bytes of A-Z, a-z, 0-9, '_', '-', '.')"
            ))
        })
    }

    async fn ask(&self, key: &RoomKey, op: RoomOp, payload: Bytes, leave: WireLeave) -> RoomReply {
        let caller = self.ctx.caller();
        let game = self.ctx.game();
        let req = RoomRequest {
            kind: key.kind.clone(),
            room: key.name.clone(),
            op: op as i32,
            user_id: caller.user_id,
            session_id: caller.session_id,
            node: game.node_id(),
            payload,
            route: String::new(),
            leave: leave as i32,
        };
        game.host().call(game, req).await
    }

    /// Joins room `room` (created if it does not exist) and returns the
    /// room's answer. Joining the room the session is in answers again
    /// without changing anything. For a kind with one room per session,
    /// the session then leaves the room it was in.
    pub async fn join(&self, room: &str) -> Result<R::JoinReply, GameError> {
        let key = self.key(room)?;
        let reply = self
            .ask(&key, RoomOp::Join, Bytes::new(), WireLeave::Left)
            .await;
        let answer = answer::<R::JoinReply>(reply, room)?;
        let session = self.ctx.caller().session_id;
        let one_per_session = self.kind()?.one_per_session;
        let rooms = self.ctx.game().session_rooms();
        if one_per_session {
            for other in self.joined().await?.into_iter().filter(|r| r != room) {
                if let Ok(k) = self.key(&other) {
                    // Not a member any more is as good as left.
                    let _ = self
                        .ask(&k, RoomOp::Leave, Bytes::new(), WireLeave::Moved)
                        .await;
                }
                rooms.remove(session, &key.kind, &other);
            }
        }
        rooms.add(session, &key.kind, room);
        Ok(answer)
    }

    /// Leaves room `room`; false when the session was not in it.
    pub async fn leave(&self, room: &str) -> Result<bool, GameError> {
        let key = self.key(room)?;
        let reply = self
            .ask(&key, RoomOp::Leave, Bytes::new(), WireLeave::Left)
            .await;
        let session = self.ctx.caller().session_id;
        match reply.status() {
            RoomStatus::Ok => {
                self.ctx
                    .game()
                    .session_rooms()
                    .remove(session, &key.kind, room);
                Ok(true)
            }
            RoomStatus::NotMember => {
                self.ctx
                    .game()
                    .session_rooms()
                    .remove(session, &key.kind, room);
                Ok(false)
            }
            _ => answer::<()>(reply, room).map(|_| false),
        }
    }

    /// Sends `request` to room `room`, as its member, and returns the
    /// room's answer. Refused when the session is not in the room.
    pub async fn send(&self, room: &str, request: &R::Request) -> Result<R::Reply, GameError> {
        self.try_send(room, request)
            .await?
            .ok_or_else(|| refuse(format!("not in room {room}")))
    }

    /// [`send`](Self::send), with "not a member" as `Ok(None)` rather than
    /// a refusal (for modules that answer it with their own code).
    pub async fn try_send(
        &self,
        room: &str,
        request: &R::Request,
    ) -> Result<Option<R::Reply>, GameError> {
        let key = self.key(room)?;
        let payload = Bytes::from(request.encode_to_vec());
        let reply = self
            .ask(&key, RoomOp::Request, payload, WireLeave::Left)
            .await;
        if reply.status() == RoomStatus::NotMember {
            // What we remembered is stale (the room removed the member).
            let session = self.ctx.caller().session_id;
            self.ctx
                .game()
                .session_rooms()
                .forget_kind(session, &key.kind);
            return Ok(None);
        }
        answer(reply, room).map(Some)
    }

    /// Leaves room `room` and returns what the room's `leave` answered
    /// ([`RoomCx::answer_leave`](crate::api::RoomCx::answer_leave); the
    /// default message if nothing); `None` when the session was not in it.
    pub async fn leave_for<M: Message + Default>(
        &self,
        room: &str,
    ) -> Result<Option<M>, GameError> {
        let key = self.key(room)?;
        let reply = self
            .ask(&key, RoomOp::Leave, Bytes::new(), WireLeave::Left)
            .await;
        let session = self.ctx.caller().session_id;
        if matches!(reply.status(), RoomStatus::Ok | RoomStatus::NotMember) {
            self.ctx
                .game()
                .session_rooms()
                .remove(session, &key.kind, room);
        }
        if reply.status() == RoomStatus::NotMember {
            return Ok(None);
        }
        answer(reply, room).map(Some)
    }

    /// Every room of this kind that exists, with its member count as of
    /// its last checkpoint, sorted by name.
    pub async fn list(&self) -> Result<Vec<(String, usize)>, GameError> {
        let kind = self.kind()?.name.clone();
        let store = self.ctx.game().room_store();
        let mut out = Vec::new();
        for name in store.rooms(&kind).await? {
            let Some(key) = RoomKey::new(&kind, &name) else {
                continue;
            };
            let members = match store.load(&key).await? {
                Some(b) => super::wire::Checkpoint::decode(b)
                    .map(|c| c.members.len())
                    .unwrap_or(0),
                // Indexed, not saved yet (being created): empty.
                None => 0,
            };
            out.push((name, members));
        }
        out.sort();
        Ok(out)
    }

    /// The rooms of this kind the caller's session is in.
    pub async fn joined(&self) -> Result<Vec<String>, GameError> {
        let kind = self.kind()?.name.clone();
        let caller = self.ctx.caller();
        let rooms = self.ctx.game().session_rooms();
        if let Some(r) = rooms.get(caller.session_id, &kind) {
            return Ok(r);
        }
        let found: Vec<String> = self
            .ctx
            .game()
            .room_store()
            .member_of(caller.user_id)
            .await?
            .into_iter()
            .filter(|(k, s)| k.kind == kind && *s == caller.session_id)
            .map(|(k, _)| k.name)
            .collect();
        rooms.set(caller.session_id, &kind, found.clone());
        Ok(found)
    }

    /// The room of this kind the caller's session is in (the first, for a
    /// kind that allows several).
    pub async fn current(&self) -> Result<Option<String>, GameError> {
        Ok(self.joined().await?.into_iter().next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_statuses_become_the_errors_game_code_sees() {
        let reply = |s, d: &str| RoomReply::failed(s, d);
        assert_eq!(
            answer::<()>(reply(RoomStatus::Refused, "room full"), "r"),
            Err(refuse("room full"))
        );
        assert_eq!(
            answer::<()>(reply(RoomStatus::NotMember, "x"), "r"),
            Err(refuse("not in room r"))
        );
        assert_eq!(
            answer::<()>(reply(RoomStatus::Internal, "bug"), "r"),
            Err(GameError::internal("bug"))
        );
        assert_eq!(
            answer::<()>(RoomReply::retry(""), "r"),
            Err(GameError::nothing_happened("room r is unavailable; retry"))
        );
        assert_eq!(
            answer::<()>(reply(RoomStatus::Unavailable, "no answer"), "r"),
            Err(GameError::unavailable("no answer"))
        );
        assert_eq!(answer::<()>(RoomReply::ok(Bytes::new()), "r"), Ok(()));
    }

    #[test]
    fn session_rooms_remember_per_session_and_kind() {
        let s = SessionRooms::default();
        assert_eq!(s.get(1, "arena"), None);
        s.add(1, "arena", "a");
        s.add(1, "arena", "a");
        s.add(1, "chat", "c");
        assert_eq!(s.get(1, "arena"), Some(vec!["a".to_string()]));
        s.remove(1, "arena", "a");
        assert_eq!(s.get(1, "arena"), Some(vec![]));
        s.forget_kind(1, "chat");
        assert_eq!(s.get(1, "chat"), None);
        s.forget(1);
        assert_eq!(s.len(), 0);
    }
}
