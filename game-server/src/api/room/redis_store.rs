//! [`RedisRoomStore`]: rooms' leases, checkpoints and indexes in Redis.
//!
//! Keys (hash-tagged so Redis Cluster keeps what one script touches in one
//! slot):
//!
//! - `gm:{room:<kind>:<name>}:lease`: the token of the actor running the
//!   room, with a time to live (`SET ... PX`), renewed by every save;
//! - `gm:{room:<kind>:<name>}:checkpoint`: the last checkpoint (bytes);
//! - `gm:{rooms:<kind>}:index`: the set of existing rooms of a kind, read
//!   by every game server's restart sweep (one key per kind: its own
//!   slot, touched by single-key commands only);
//! - `gm:{u:<user_id>}:rooms`: hash `"<kind>:<name>"` -> session id, the
//!   rooms a user is in (the user's hash tag, like its session and data).
//!
//! Saves and releases are Lua scripts that check the lease's token first,
//! so a game server that lost a room (its lease ran out while it stalled)
//! can never overwrite the new holder's checkpoint.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use gamemesh_jobs::RedisSource;
use redis::Script;

use super::store::{Lease, RoomStore};
use super::RoomKey;
use crate::api::error::GameError;
use crate::api::redis_calls::RedisCalls;

/// Takes the lease if free or already ours. ARGV: token, ttl ms.
pub(crate) const ACQUIRE: &str = r#"
local h = redis.call('GET', KEYS[1])
if h and h ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"#;

/// Saves the checkpoint and renews the lease, if ours. KEYS: lease,
/// checkpoint. ARGV: token, ttl ms, checkpoint.
pub(crate) const SAVE: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
return 1
"#;

/// Gives up the lease, if ours. ARGV: token.
pub(crate) const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"#;

/// Deletes lease and checkpoint, if the lease is ours. KEYS: lease,
/// checkpoint. ARGV: token.
pub(crate) const CLOSE: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"#;

/// Removes a user's room entry if it is that session's. ARGV: room tag,
/// session.
pub(crate) const REMOVE_MEMBER: &str = r#"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
"#;

/// `gm:{room:<kind>:<name>}:lease`.
pub fn lease_key(key: &RoomKey) -> String {
    format!("gm:{{room:{}}}:lease", key.tag())
}

/// `gm:{room:<kind>:<name>}:checkpoint`.
pub fn checkpoint_key(key: &RoomKey) -> String {
    format!("gm:{{room:{}}}:checkpoint", key.tag())
}

/// `gm:{rooms:<kind>}:index`.
pub fn index_key(kind: &str) -> String {
    format!("gm:{{rooms:{kind}}}:index")
}

/// `gm:{u:<user_id>}:rooms`.
pub fn user_rooms_key(user: u64) -> String {
    format!("gm:{{u:{user}}}:rooms")
}

/// Rooms in Redis.
#[derive(Clone)]
pub struct RedisRoomStore {
    /// Bounded calls on the game server's connection.
    calls: RedisCalls,
    /// The scripts above.
    acquire: Script,
    save: Script,
    release: Script,
    close: Script,
    remove_member: Script,
}

impl RedisRoomStore {
    /// Rooms on `source`'s Redis, every call bounded by `timeout`.
    pub fn new(source: Arc<dyn RedisSource>, timeout: Duration) -> Self {
        Self {
            calls: RedisCalls::new(source, timeout),
            acquire: Script::new(ACQUIRE),
            save: Script::new(SAVE),
            release: Script::new(RELEASE),
            close: Script::new(CLOSE),
            remove_member: Script::new(REMOVE_MEMBER),
        }
    }
}

fn ms(d: Duration) -> String {
    d.as_millis().max(1).to_string()
}

#[async_trait]
impl RoomStore for RedisRoomStore {
    async fn acquire(&self, lease: Lease<'_>) -> Result<bool, GameError> {
        let ok: i64 = self
            .calls
            .script(
                &self.acquire,
                &[&lease_key(lease.key)],
                &[lease.token.as_bytes(), ms(lease.ttl).as_bytes()],
            )
            .await
            .map_err(GameError::Unavailable)?;
        Ok(ok == 1)
    }

    async fn holder(&self, key: &RoomKey) -> Result<Option<String>, GameError> {
        self.calls
            .query(redis::cmd("GET").arg(lease_key(key)))
            .await
            .map_err(GameError::Unavailable)
    }

    async fn load(&self, key: &RoomKey) -> Result<Option<Bytes>, GameError> {
        let raw: Option<Vec<u8>> = self
            .calls
            .query(redis::cmd("GET").arg(checkpoint_key(key)))
            .await
            .map_err(GameError::Unavailable)?;
        Ok(raw.map(Bytes::from))
    }

    async fn save(&self, lease: Lease<'_>, checkpoint: Bytes) -> Result<bool, GameError> {
        let Lease { key, token, ttl } = lease;
        let ok: i64 = self
            .calls
            .script(
                &self.save,
                &[&lease_key(key), &checkpoint_key(key)],
                &[token.as_bytes(), ms(ttl).as_bytes(), &checkpoint],
            )
            .await
            .map_err(GameError::Unavailable)?;
        Ok(ok == 1)
    }

    async fn release(&self, lease: Lease<'_>) -> Result<(), GameError> {
        let _: i64 = self
            .calls
            .script(
                &self.release,
                &[&lease_key(lease.key)],
                &[lease.token.as_bytes()],
            )
            .await
            .map_err(GameError::Unavailable)?;
        Ok(())
    }

    async fn close(&self, lease: Lease<'_>) -> Result<bool, GameError> {
        let key = lease.key;
        let ok: i64 = self
            .calls
            .script(
                &self.close,
                &[&lease_key(key), &checkpoint_key(key)],
                &[lease.token.as_bytes()],
            )
            .await
            .map_err(GameError::Unavailable)?;
        if ok != 1 {
            return Ok(false);
        }
        let _: i64 = self
            .calls
            .query(redis::cmd("SREM").arg(index_key(&key.kind)).arg(&key.name))
            .await
            .map_err(GameError::Unavailable)?;
        Ok(true)
    }

    async fn index(&self, key: &RoomKey) -> Result<(), GameError> {
        let _: i64 = self
            .calls
            .query(redis::cmd("SADD").arg(index_key(&key.kind)).arg(&key.name))
            .await
            .map_err(GameError::Unavailable)?;
        Ok(())
    }

    async fn rooms(&self, kind: &str) -> Result<Vec<String>, GameError> {
        let mut names: Vec<String> = self
            .calls
            .query(redis::cmd("SMEMBERS").arg(index_key(kind)))
            .await
            .map_err(GameError::Unavailable)?;
        names.sort();
        Ok(names)
    }

    async fn add_member(&self, user: u64, key: &RoomKey, session: u64) -> Result<(), GameError> {
        let _: i64 = self
            .calls
            .query(
                redis::cmd("HSET")
                    .arg(user_rooms_key(user))
                    .arg(key.tag())
                    .arg(session),
            )
            .await
            .map_err(GameError::Unavailable)?;
        Ok(())
    }

    async fn remove_member(&self, user: u64, key: &RoomKey, session: u64) -> Result<(), GameError> {
        let _: i64 = self
            .calls
            .script(
                &self.remove_member,
                &[&user_rooms_key(user)],
                &[key.tag().as_bytes(), session.to_string().as_bytes()],
            )
            .await
            .map_err(GameError::Unavailable)?;
        Ok(())
    }

    async fn member_of(&self, user: u64) -> Result<Vec<(RoomKey, u64)>, GameError> {
        let all: HashMap<String, u64> = self
            .calls
            .query(redis::cmd("HGETALL").arg(user_rooms_key(user)))
            .await
            .map_err(GameError::Unavailable)?;
        let mut rooms: Vec<(RoomKey, u64)> = all
            .into_iter()
            .filter_map(|(tag, s)| {
                let (kind, name) = tag.split_once(':')?;
                Some((RoomKey::new(kind, name)?, s))
            })
            .collect();
        rooms.sort();
        Ok(rooms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gamemesh_jobs::source::PlainRedis;
    use gamemesh_test_support::RedisServer;

    async fn store(redis: &RedisServer) -> RedisRoomStore {
        let source = PlainRedis::connect(&redis.url(), Duration::from_secs(2))
            .await
            .expect("connect to the test redis");
        RedisRoomStore::new(Arc::new(source), Duration::from_secs(2))
    }

    #[tokio::test]
    async fn the_redis_store_passes_the_conformance_suite() {
        let redis = RedisServer::start();
        let s = store(&redis).await;
        let ttl = Duration::from_millis(200);
        super::super::store::conformance::run(&s, ttl, || async {
            // Redis expires on its own clock: wait until the lease is gone.
            let probe = RoomKey::new("arena", "r1").unwrap();
            gamemesh_test_support::wait_for_async(
                "the lease to run out",
                Duration::from_secs(5),
                || {
                    let s = s.clone();
                    let probe = probe.clone();
                    async move { s.holder(&probe).await.unwrap().is_none() }
                },
            )
            .await;
        })
        .await;
    }

    #[tokio::test]
    async fn every_key_of_a_room_shares_the_room_hash_tag() {
        let redis = RedisServer::start();
        let s = store(&redis).await;
        let k = RoomKey::new("arena", "r1").unwrap();
        let lease = Lease::new(&k, "t", Duration::from_secs(5));
        assert!(s.acquire(lease).await.unwrap());
        assert!(s.save(lease, Bytes::from_static(b"cp")).await.unwrap());
        s.index(&k).await.unwrap();
        s.add_member(42, &k, 9).await.unwrap();
        let client = redis::Client::open(redis.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut conn)
            .await
            .unwrap();
        keys.sort();
        assert_eq!(
            keys,
            vec![
                "gm:{room:arena:r1}:checkpoint",
                "gm:{room:arena:r1}:lease",
                "gm:{rooms:arena}:index",
                "gm:{u:42}:rooms",
            ]
        );
        let ttl: i64 = redis::cmd("PTTL")
            .arg("gm:{room:arena:r1}:lease")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            ttl > 0 && ttl <= 5000,
            "the lease has a time to live: {ttl}"
        );
    }
}
