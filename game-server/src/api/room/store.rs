//! [`RoomStore`]: where rooms keep what outlives a game server: each
//! room's lease and checkpoint, the index of rooms that exist (so a live
//! game server finds the rooms of a dead one), and each user's rooms (so
//! a session that ends leaves them, and a handler knows which room of a
//! kind its caller is in).
//!
//! The lease is what makes a room one authority: a room's actor runs only
//! while it holds the lease under its own random token, every save is
//! refused once another token holds it, and a lease not renewed (its game
//! server died) runs out after its time to live.
//!
//! [`redis_store::RedisRoomStore`](super::redis_store::RedisRoomStore) is
//! the real one; [`MemoryRoomStore`] is the twin for tests (it can also
//! play "Redis is down").

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::time::Instant;

use super::RoomKey;
use crate::api::error::GameError;

/// A room's lease as one activation of its actor holds it: the calls
/// that take, renew, give up or close it act only while `token` holds
/// `key`'s lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease<'a> {
    /// Which room.
    pub key: &'a RoomKey,
    /// The activation's random token.
    pub token: &'a str,
    /// How long a take or a renewal lasts (giving up or closing ignores
    /// it).
    pub ttl: Duration,
}

impl<'a> Lease<'a> {
    /// `key`'s lease held by `token`, taken or renewed for `ttl`.
    pub const fn new(key: &'a RoomKey, token: &'a str, ttl: Duration) -> Self {
        Self { key, token, ttl }
    }
}

/// Rooms' leases, checkpoints and indexes.
#[async_trait]
pub trait RoomStore: Send + Sync + 'static {
    /// Takes the lease for its `ttl` if nobody holds it (or its token
    /// already does). False when another token holds it.
    async fn acquire(&self, lease: Lease<'_>) -> Result<bool, GameError>;

    /// The token holding `key`'s lease now, if any.
    async fn holder(&self, key: &RoomKey) -> Result<Option<String>, GameError>;

    /// `key`'s last checkpoint.
    async fn load(&self, key: &RoomKey) -> Result<Option<Bytes>, GameError>;

    /// Saves `checkpoint` and renews the lease for its `ttl`, only while
    /// its token holds it. False: the lease is lost (nothing saved).
    async fn save(&self, lease: Lease<'_>, checkpoint: Bytes) -> Result<bool, GameError>;

    /// Gives up the lease if its token holds it (the checkpoint stays).
    async fn release(&self, lease: Lease<'_>) -> Result<(), GameError>;

    /// Forgets the room (emptied): its checkpoint, its lease and its
    /// place in the index, only if the lease's token holds it. False when
    /// it does not (nothing is touched).
    async fn close(&self, lease: Lease<'_>) -> Result<bool, GameError>;

    /// Puts the room in the index of existing rooms of its kind.
    async fn index(&self, key: &RoomKey) -> Result<(), GameError>;

    /// Names of the existing rooms of `kind`.
    async fn rooms(&self, kind: &str) -> Result<Vec<String>, GameError>;

    /// Records that `user`'s `session` is in room `key`.
    async fn add_member(&self, user: u64, key: &RoomKey, session: u64) -> Result<(), GameError>;

    /// Forgets that `user` is in room `key`, if it is there through
    /// `session` (a newer session's entry stays).
    async fn remove_member(&self, user: u64, key: &RoomKey, session: u64) -> Result<(), GameError>;

    /// The rooms `user` is in, with the session that joined each.
    async fn member_of(&self, user: u64) -> Result<Vec<(RoomKey, u64)>, GameError>;
}

/// One room in the memory store.
#[derive(Debug, Default)]
struct Entry {
    /// Token and expiry.
    lease: Option<(String, Instant)>,
    /// The last checkpoint.
    checkpoint: Option<Bytes>,
}

impl Entry {
    fn holder(&mut self, now: Instant) -> Option<&str> {
        if self.lease.as_ref().is_some_and(|(_, until)| *until <= now) {
            self.lease = None;
        }
        self.lease.as_ref().map(|(t, _)| t.as_str())
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Rooms by [`RoomKey::tag`].
    rooms: HashMap<String, Entry>,
    /// kind -> existing room names.
    index: HashMap<String, BTreeSet<String>>,
    /// user -> room tag -> session.
    users: HashMap<u64, BTreeMap<String, u64>>,
}

/// The in-memory [`RoomStore`]. Leases expire on tokio's clock, so tests
/// with paused time control them.
#[derive(Debug, Default)]
pub struct MemoryRoomStore {
    /// Everything.
    inner: Mutex<Inner>,
    /// While true every call fails as Redis down would.
    down: AtomicBool,
    /// Saves done (tests count checkpoints).
    saves: std::sync::atomic::AtomicU64,
}

impl MemoryRoomStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call fail (`true`) or work again (`false`).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Checkpoints saved so far.
    pub fn saves(&self) -> u64 {
        self.saves.load(Ordering::SeqCst)
    }

    fn inner(&self) -> Result<MutexGuard<'_, Inner>, GameError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(GameError::unavailable("room store down (test)"));
        }
        Ok(self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

fn key_of(tag: &str) -> Option<RoomKey> {
    let (kind, name) = tag.split_once(':')?;
    RoomKey::new(kind, name)
}

#[async_trait]
impl RoomStore for MemoryRoomStore {
    async fn acquire(&self, lease: Lease<'_>) -> Result<bool, GameError> {
        let now = Instant::now();
        let mut inner = self.inner()?;
        let entry = inner.rooms.entry(lease.key.tag()).or_default();
        match entry.holder(now) {
            Some(t) if t != lease.token => Ok(false),
            _ => {
                entry.lease = Some((lease.token.to_string(), now + lease.ttl));
                Ok(true)
            }
        }
    }

    async fn holder(&self, key: &RoomKey) -> Result<Option<String>, GameError> {
        let now = Instant::now();
        let mut inner = self.inner()?;
        Ok(inner
            .rooms
            .get_mut(&key.tag())
            .and_then(|e| e.holder(now).map(str::to_string)))
    }

    async fn load(&self, key: &RoomKey) -> Result<Option<Bytes>, GameError> {
        Ok(self
            .inner()?
            .rooms
            .get(&key.tag())
            .and_then(|e| e.checkpoint.clone()))
    }

    async fn save(&self, lease: Lease<'_>, checkpoint: Bytes) -> Result<bool, GameError> {
        let now = Instant::now();
        let mut inner = self.inner()?;
        let entry = inner.rooms.entry(lease.key.tag()).or_default();
        if entry.holder(now) != Some(lease.token) {
            return Ok(false);
        }
        entry.lease = Some((lease.token.to_string(), now + lease.ttl));
        entry.checkpoint = Some(checkpoint);
        self.saves.fetch_add(1, Ordering::SeqCst);
        Ok(true)
    }

    async fn release(&self, lease: Lease<'_>) -> Result<(), GameError> {
        let now = Instant::now();
        let mut inner = self.inner()?;
        if let Some(e) = inner.rooms.get_mut(&lease.key.tag()) {
            if e.holder(now) == Some(lease.token) {
                e.lease = None;
            }
        }
        Ok(())
    }

    async fn close(&self, lease: Lease<'_>) -> Result<bool, GameError> {
        let now = Instant::now();
        let key = lease.key;
        let mut inner = self.inner()?;
        let tag = key.tag();
        let held = inner
            .rooms
            .get_mut(&tag)
            .is_some_and(|e| e.holder(now) == Some(lease.token));
        if !held {
            return Ok(false);
        }
        inner.rooms.remove(&tag);
        if let Some(names) = inner.index.get_mut(&key.kind) {
            names.remove(&key.name);
        }
        Ok(true)
    }

    async fn index(&self, key: &RoomKey) -> Result<(), GameError> {
        self.inner()?
            .index
            .entry(key.kind.clone())
            .or_default()
            .insert(key.name.clone());
        Ok(())
    }

    async fn rooms(&self, kind: &str) -> Result<Vec<String>, GameError> {
        Ok(self
            .inner()?
            .index
            .get(kind)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn add_member(&self, user: u64, key: &RoomKey, session: u64) -> Result<(), GameError> {
        self.inner()?
            .users
            .entry(user)
            .or_default()
            .insert(key.tag(), session);
        Ok(())
    }

    async fn remove_member(&self, user: u64, key: &RoomKey, session: u64) -> Result<(), GameError> {
        let mut inner = self.inner()?;
        if let Some(rooms) = inner.users.get_mut(&user) {
            if rooms.get(&key.tag()) == Some(&session) {
                rooms.remove(&key.tag());
            }
        }
        Ok(())
    }

    async fn member_of(&self, user: u64) -> Result<Vec<(RoomKey, u64)>, GameError> {
        Ok(self
            .inner()?
            .users
            .get(&user)
            .map(|rooms| {
                rooms
                    .iter()
                    .filter_map(|(tag, s)| key_of(tag).map(|k| (k, *s)))
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// The behaviour every [`RoomStore`] must have, run against the memory
/// twin and against real Redis. `expire` waits until a lease of `ttl` has
/// run out (paused time for the twin, real time for Redis).
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;
    use std::future::Future;

    pub(crate) async fn run<F, Fut>(store: &dyn RoomStore, ttl: Duration, expire: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = ()>,
    {
        let k = RoomKey::new("arena", "r1").unwrap();
        let other = RoomKey::new("arena", "r2").unwrap();
        assert_eq!(store.holder(&k).await.unwrap(), None);
        assert_eq!(store.load(&k).await.unwrap(), None);
        let [a, b, c] = ["a", "b", "c"].map(|token| Lease::new(&k, token, ttl));

        // One holder at a time; the holder may take it again.
        assert!(store.acquire(a).await.unwrap());
        assert!(store.acquire(a).await.unwrap());
        assert!(!store.acquire(b).await.unwrap());
        assert_eq!(store.holder(&k).await.unwrap().as_deref(), Some("a"));

        // Saves are fenced by the lease.
        assert!(store.save(a, Bytes::from_static(b"cp1")).await.unwrap());
        assert!(!store.save(b, Bytes::from_static(b"x")).await.unwrap());
        assert_eq!(store.load(&k).await.unwrap().as_deref(), Some(&b"cp1"[..]));

        // A lease not renewed runs out; the checkpoint stays.
        expire().await;
        assert_eq!(store.holder(&k).await.unwrap(), None);
        assert!(!store.save(a, Bytes::from_static(b"late")).await.unwrap());
        assert!(store.acquire(b).await.unwrap());
        assert_eq!(store.load(&k).await.unwrap().as_deref(), Some(&b"cp1"[..]));

        // Release lets another take it at once; only the holder releases.
        store.release(a).await.unwrap();
        assert_eq!(store.holder(&k).await.unwrap().as_deref(), Some("b"));
        store.release(b).await.unwrap();
        assert!(store.acquire(c).await.unwrap());

        // The index, and closing (only by the holder).
        store.index(&k).await.unwrap();
        store.index(&other).await.unwrap();
        store
            .index(&RoomKey::new("chat", "x").unwrap())
            .await
            .unwrap();
        assert_eq!(store.rooms("arena").await.unwrap(), vec!["r1", "r2"]);
        assert!(!store.close(b).await.unwrap());
        assert!(store.close(c).await.unwrap());
        assert_eq!(store.rooms("arena").await.unwrap(), vec!["r2"]);
        assert_eq!(store.load(&k).await.unwrap(), None);
        assert_eq!(store.holder(&k).await.unwrap(), None);

        // Users' rooms: a newer session's entry is not removed by an
        // older one's leave.
        store.add_member(7, &k, 70).await.unwrap();
        store.add_member(7, &other, 70).await.unwrap();
        store.add_member(8, &k, 80).await.unwrap();
        store.add_member(7, &k, 71).await.unwrap();
        store.remove_member(7, &k, 70).await.unwrap();
        let mut rooms = store.member_of(7).await.unwrap();
        rooms.sort();
        assert_eq!(rooms, vec![(k.clone(), 71), (other.clone(), 70)]);
        store.remove_member(7, &k, 71).await.unwrap();
        assert_eq!(store.member_of(7).await.unwrap(), vec![(other, 70)]);
        assert_eq!(store.member_of(9).await.unwrap(), vec![]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_memory_store_passes_the_conformance_suite() {
        let ttl = Duration::from_millis(300);
        conformance::run(&MemoryRoomStore::new(), ttl, || {
            tokio::time::sleep(ttl + Duration::from_millis(1))
        })
        .await;
    }

    #[tokio::test]
    async fn a_store_that_is_down_fails_every_call() {
        let s = MemoryRoomStore::new();
        let k = RoomKey::new("a", "b").unwrap();
        let lease = Lease::new(&k, "t", Duration::from_secs(1));
        s.set_down(true);
        assert!(s.acquire(lease).await.is_err());
        s.set_down(false);
        assert!(s.acquire(lease).await.unwrap());
    }
}
