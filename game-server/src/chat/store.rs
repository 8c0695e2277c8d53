//! Where chat rooms live: the [`ChatStore`] trait, its Redis backend (on
//! [`RedisStore`], sharing its connection) and an in-process twin for a
//! single game server without Redis.
//!
//! Redis keys. A room's keys share the `{r:<room>}` hash tag, a user's the
//! `{u:<user_id>}` tag that the session record already uses, so each group
//! sits in one Redis Cluster slot:
//!
//! | Key | Type | Holds |
//! |---|---|---|
//! | `gm:{chat}:rooms` | set | the names of the rooms that exist |
//! | `gm:{r:<room>}:members` | hash | user id -> the session id that joined |
//! | `gm:{r:<room>}:seq` | counter | the room's last `room_seq` |
//! | `gm:{u:<user_id>}:rooms` | set | the rooms a user is in (for leaving them all) |
//!
//! The member hash records the *session* that joined: a member whose user
//! now has another session (a new login) or none (logout, expiry) is not a
//! member any more, which is how the room finds members to drop.
//!
//! Only the game server that holds a room writes its keys (see
//! [`crate::chat`]); commands are pipelined, not transactional, because
//! nothing else races them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::session::redis::{session_key, RedisStore};
use crate::session::{SessionStore, StoreError};

/// The set of room names.
const ROOMS_KEY: &str = "gm:{chat}:rooms";

fn members_key(room: &str) -> String {
    format!("gm:{{r:{room}}}:members")
}

fn seq_key(room: &str) -> String {
    format!("gm:{{r:{room}}}:seq")
}

fn user_rooms_key(user_id: u64) -> String {
    format!("gm:{{u:{user_id}}}:rooms")
}

/// Where a member's session is, as the session store says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberSession {
    /// The user's current session.
    pub session_id: u64,
    /// The game server that owns it (0 while disconnected).
    pub owner: u64,
    /// Whether a client is connected to it.
    pub connected: bool,
}

/// Chat rooms and their members, shared by every game server.
#[async_trait]
pub trait ChatStore: Send + Sync + 'static {
    /// Makes sure `rooms` exist (idempotent).
    async fn create_rooms(&self, rooms: &[&str]) -> Result<(), StoreError>;
    /// Every room with its number of members.
    async fn rooms(&self) -> Result<Vec<(String, u32)>, StoreError>;
    /// A room's members: user id -> the session id that joined.
    async fn members(&self, room: &str) -> Result<HashMap<u64, u64>, StoreError>;
    /// Adds (or re-joins) a member; the room exists afterwards.
    async fn add_member(&self, room: &str, user_id: u64, session_id: u64)
        -> Result<(), StoreError>;
    /// Removes a member; `forget_room` also removes the room from the list
    /// (it emptied and is not a default room).
    async fn remove_member(
        &self,
        room: &str,
        user_id: u64,
        forget_room: bool,
    ) -> Result<(), StoreError>;
    /// The rooms a user is in.
    async fn user_rooms(&self, user_id: u64) -> Result<Vec<String>, StoreError>;
    /// Takes the room's next sequence number.
    async fn next_seq(&self, room: &str) -> Result<u64, StoreError>;
    /// The current session of each user, in order (`None`: no session).
    async fn sessions(&self, users: &[u64]) -> Result<Vec<Option<MemberSession>>, StoreError>;
}

fn num(s: &str) -> u64 {
    s.parse().unwrap_or(0)
}

#[async_trait]
impl ChatStore for RedisStore {
    async fn create_rooms(&self, rooms: &[&str]) -> Result<(), StoreError> {
        self.query(redis::cmd("SADD").arg(ROOMS_KEY).arg(rooms))
            .await
            .map(|_: i64| ())
    }

    async fn rooms(&self) -> Result<Vec<(String, u32)>, StoreError> {
        let names: Vec<String> = self.query(redis::cmd("SMEMBERS").arg(ROOMS_KEY)).await?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for n in &names {
            pipe.cmd("HLEN").arg(members_key(n));
        }
        let counts: Vec<u32> = self.query_pipe(&pipe).await?;
        Ok(names.into_iter().zip(counts).collect())
    }

    async fn members(&self, room: &str) -> Result<HashMap<u64, u64>, StoreError> {
        self.query(redis::cmd("HGETALL").arg(members_key(room)))
            .await
    }

    async fn add_member(
        &self,
        room: &str,
        user_id: u64,
        session_id: u64,
    ) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("HSET")
            .arg(members_key(room))
            .arg(user_id)
            .arg(session_id)
            .ignore();
        pipe.cmd("SADD")
            .arg(user_rooms_key(user_id))
            .arg(room)
            .ignore();
        pipe.cmd("SADD").arg(ROOMS_KEY).arg(room).ignore();
        self.query_pipe(&pipe).await
    }

    async fn remove_member(
        &self,
        room: &str,
        user_id: u64,
        forget_room: bool,
    ) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("HDEL")
            .arg(members_key(room))
            .arg(user_id)
            .ignore();
        pipe.cmd("SREM")
            .arg(user_rooms_key(user_id))
            .arg(room)
            .ignore();
        if forget_room {
            pipe.cmd("SREM").arg(ROOMS_KEY).arg(room).ignore();
        }
        self.query_pipe(&pipe).await
    }

    async fn user_rooms(&self, user_id: u64) -> Result<Vec<String>, StoreError> {
        self.query(redis::cmd("SMEMBERS").arg(user_rooms_key(user_id)))
            .await
    }

    async fn next_seq(&self, room: &str) -> Result<u64, StoreError> {
        self.query(redis::cmd("INCR").arg(seq_key(room))).await
    }

    async fn sessions(&self, users: &[u64]) -> Result<Vec<Option<MemberSession>>, StoreError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        // Only the three fields needed, not the reply cache: one round trip
        // for the whole room.
        let mut pipe = redis::pipe();
        for u in users {
            pipe.cmd("HMGET")
                .arg(session_key(*u))
                .arg("sid")
                .arg("owner")
                .arg("connected");
        }
        let rows: Vec<Vec<Option<String>>> = self.query_pipe(&pipe).await?;
        Ok(rows
            .into_iter()
            .map(|r| match r.as_slice() {
                [Some(sid), owner, connected] => Some(MemberSession {
                    session_id: num(sid),
                    owner: owner.as_deref().map(num).unwrap_or(0),
                    connected: connected.as_deref() == Some("1"),
                }),
                _ => None,
            })
            .collect())
    }
}

/// What [`MemoryChatStore`] keeps.
#[derive(Debug, Default)]
struct Rooms {
    /// Room name -> members (user id -> session id).
    members: HashMap<String, HashMap<u64, u64>>,
    /// Room name -> last sequence number (kept when a room is forgotten,
    /// as the Redis counter is).
    seq: HashMap<String, u64>,
    /// User id -> rooms.
    by_user: HashMap<u64, HashSet<String>>,
}

/// Chat rooms in this process only, for `--session-store memory`.
pub struct MemoryChatStore {
    /// The rooms.
    rooms: Mutex<Rooms>,
    /// The session store members' sessions are read from.
    sessions: Arc<dyn SessionStore>,
}

impl MemoryChatStore {
    /// An empty store reading sessions from `sessions`.
    pub fn new(sessions: Arc<dyn SessionStore>) -> Self {
        Self {
            rooms: Mutex::new(Rooms::default()),
            sessions,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Rooms) -> R) -> R {
        // Every critical section is a few map operations with no await.
        f(&mut self.rooms.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[async_trait]
impl ChatStore for MemoryChatStore {
    async fn create_rooms(&self, rooms: &[&str]) -> Result<(), StoreError> {
        self.with(|r| {
            for room in rooms {
                r.members.entry((*room).to_string()).or_default();
            }
        });
        Ok(())
    }

    async fn rooms(&self) -> Result<Vec<(String, u32)>, StoreError> {
        Ok(self.with(|r| {
            r.members
                .iter()
                .map(|(n, m)| (n.clone(), m.len() as u32))
                .collect()
        }))
    }

    async fn members(&self, room: &str) -> Result<HashMap<u64, u64>, StoreError> {
        Ok(self.with(|r| r.members.get(room).cloned().unwrap_or_default()))
    }

    async fn add_member(
        &self,
        room: &str,
        user_id: u64,
        session_id: u64,
    ) -> Result<(), StoreError> {
        self.with(|r| {
            r.members
                .entry(room.to_string())
                .or_default()
                .insert(user_id, session_id);
            r.by_user
                .entry(user_id)
                .or_default()
                .insert(room.to_string());
        });
        Ok(())
    }

    async fn remove_member(
        &self,
        room: &str,
        user_id: u64,
        forget_room: bool,
    ) -> Result<(), StoreError> {
        self.with(|r| {
            if let Some(m) = r.members.get_mut(room) {
                m.remove(&user_id);
            }
            if let Some(rooms) = r.by_user.get_mut(&user_id) {
                rooms.remove(room);
                if rooms.is_empty() {
                    r.by_user.remove(&user_id);
                }
            }
            if forget_room {
                r.members.remove(room);
            }
        });
        Ok(())
    }

    async fn user_rooms(&self, user_id: u64) -> Result<Vec<String>, StoreError> {
        Ok(self.with(|r| {
            r.by_user
                .get(&user_id)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default()
        }))
    }

    async fn next_seq(&self, room: &str) -> Result<u64, StoreError> {
        Ok(self.with(|r| {
            let s = r.seq.entry(room.to_string()).or_default();
            *s += 1;
            *s
        }))
    }

    async fn sessions(&self, users: &[u64]) -> Result<Vec<Option<MemberSession>>, StoreError> {
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            out.push(self.sessions.get(*u).await?.map(|r| MemberSession {
                session_id: r.session_id,
                owner: r.placement.owner,
                connected: r.connected,
            }));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::memory::MemoryStore;
    use crate::session::{NewSession, Placement};
    use std::time::Duration;

    #[tokio::test]
    async fn the_memory_store_keeps_rooms_members_and_sequences() {
        let sessions: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
        let chat = MemoryChatStore::new(sessions.clone());
        chat.create_rooms(&["general", "dev"]).await.unwrap();
        chat.add_member("lobby", 7, 70).await.unwrap();
        chat.add_member("dev", 7, 70).await.unwrap();
        let mut rooms = chat.rooms().await.unwrap();
        rooms.sort();
        assert_eq!(
            rooms,
            [
                ("dev".into(), 1),
                ("general".into(), 0),
                ("lobby".into(), 1)
            ]
        );
        let mut mine = chat.user_rooms(7).await.unwrap();
        mine.sort();
        assert_eq!(mine, ["dev", "lobby"]);
        assert_eq!(chat.next_seq("lobby").await.unwrap(), 1);
        assert_eq!(chat.next_seq("lobby").await.unwrap(), 2);

        chat.remove_member("lobby", 7, true).await.unwrap();
        assert!(chat
            .rooms()
            .await
            .unwrap()
            .iter()
            .all(|(n, _)| n != "lobby"));
        assert_eq!(chat.user_rooms(7).await.unwrap(), ["dev"]);
        assert_eq!(chat.next_seq("lobby").await.unwrap(), 3, "kept, like Redis");

        // Members' sessions come from the session store.
        assert_eq!(chat.sessions(&[7]).await.unwrap(), [None]);
        let placement = Placement {
            owner: 1,
            gateway: 1,
            socket: uuid::Uuid::new_v4(),
        };
        sessions
            .login(
                NewSession {
                    session_id: 70,
                    user_id: 7,
                    token_hash: vec![],
                    placement,
                    last_seq: 0,
                },
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        assert_eq!(
            chat.sessions(&[7]).await.unwrap(),
            [Some(MemberSession {
                session_id: 70,
                owner: 1,
                connected: true
            })]
        );
    }
}
