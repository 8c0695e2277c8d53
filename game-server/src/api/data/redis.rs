//! [`RedisPlayerData`]: player data in Redis, one hash per user.
//!
//! `gm:{u:<user_id>}:data` holds, per field `"<module>:<key>"`, the value
//! as `"<version>:<bytes>"`, and in the field `#v` the user's version
//! counter. The hash tag `{u:<user_id>}` is the one the user's session
//! key has, so a user's keys share a Redis Cluster slot. Writes are Lua
//! scripts: the check of the expected version, the new version and the
//! write happen in one step, so of two concurrent compare-and-sets on one
//! version exactly one wins.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use gamemesh_jobs::RedisSource;
use redis::Script;

use super::{DataError, Expect, PlayerDataStore, Versioned, Write};
use crate::api::redis_calls::RedisCalls;

/// Field holding the user's version counter; `#` never starts a module.
const COUNTER: &str = "#v";

/// The start both scripts share: reads the field's version into `curv`
/// (-1: absent) and returns `{0, curv}` when ARGV[2] (`any`, `absent` or
/// a version) does not hold. A macro because `concat!` takes literals.
macro_rules! check_expectation {
    () => {
        r#"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local curv = -1
if cur then
  local i = string.find(cur, ':', 1, true)
  curv = tonumber(string.sub(cur, 1, i - 1))
end
local e = ARGV[2]
if (e == 'absent' and curv ~= -1) or (e ~= 'any' and e ~= 'absent' and curv ~= tonumber(e)) then
  return {0, curv}
end
"#
    };
}

/// The compare-and-set. ARGV: field, expectation (`any`, `absent` or a
/// version), value. Returns `{1, new version}` or `{0, current version}`
/// (-1: absent).
pub(crate) const SET: &str = concat!(
    check_expectation!(),
    r#"
local v = redis.call('HINCRBY', KEYS[1], '#v', 1)
redis.call('HSET', KEYS[1], ARGV[1], v .. ':' .. ARGV[3])
return {1, v}
"#
);

/// The compare-and-delete. ARGV: field, expectation. Returns `{1, the
/// version deleted}` (-1: there was nothing) or `{0, current version}`.
pub(crate) const DELETE: &str = concat!(
    check_expectation!(),
    r#"
if curv ~= -1 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return {1, curv}
"#
);

/// Player data in Redis.
#[derive(Clone)]
pub struct RedisPlayerData {
    /// Bounded calls on the game server's connection.
    calls: RedisCalls,
    /// The compare-and-set script.
    set: Script,
    /// The compare-and-delete script.
    delete: Script,
}

/// The hash of `user`'s data.
pub fn data_key(user: u64) -> String {
    format!("gm:{{u:{user}}}:data")
}

fn expectation(expect: Expect) -> String {
    match expect {
        Expect::Any => "any".into(),
        Expect::Absent => "absent".into(),
        Expect::Version(v) => v.to_string(),
    }
}

fn version_of(v: i64) -> Option<u64> {
    u64::try_from(v).ok()
}

/// Splits a stored `"<version>:<bytes>"`.
fn parse(field: &str, raw: &[u8]) -> Result<Versioned, DataError> {
    let corrupt = || DataError::Corrupt(format!("field {field} is not \"<version>:<value>\""));
    let colon = raw.iter().position(|b| *b == b':').ok_or_else(corrupt)?;
    let version = std::str::from_utf8(&raw[..colon])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(corrupt)?;
    Ok(Versioned {
        value: Bytes::copy_from_slice(&raw[colon + 1..]),
        version,
    })
}

impl RedisPlayerData {
    /// Player data on `source`'s Redis, every call bounded by `timeout`.
    pub fn new(source: Arc<dyn RedisSource>, timeout: Duration) -> Self {
        Self {
            calls: RedisCalls::new(source, timeout),
            set: Script::new(SET),
            delete: Script::new(DELETE),
        }
    }
}

#[async_trait]
impl PlayerDataStore for RedisPlayerData {
    async fn get(&self, user: u64, field: &str) -> Result<Option<Versioned>, DataError> {
        let raw: Option<Vec<u8>> = self
            .calls
            .query(redis::cmd("HGET").arg(data_key(user)).arg(field))
            .await
            .map_err(DataError::Unavailable)?;
        raw.map(|r| parse(field, &r)).transpose()
    }

    async fn set(&self, write: Write<'_>) -> Result<u64, DataError> {
        let key = data_key(write.user);
        let expect = expectation(write.expect);
        let (ok, version): (i64, i64) = self
            .calls
            .script(
                &self.set,
                &[&key],
                &[write.field.as_bytes(), expect.as_bytes(), &write.value],
            )
            .await
            .map_err(DataError::Unavailable)?;
        match (ok, version_of(version)) {
            (1, Some(v)) => Ok(v),
            (_, current) => Err(DataError::Conflict { current }),
        }
    }

    async fn delete(&self, user: u64, field: &str, expect: Expect) -> Result<bool, DataError> {
        let key = data_key(user);
        let expect = expectation(expect);
        let (ok, version): (i64, i64) = self
            .calls
            .script(
                &self.delete,
                &[&key],
                &[field.as_bytes(), expect.as_bytes()],
            )
            .await
            .map_err(DataError::Unavailable)?;
        match ok {
            1 => Ok(version >= 0),
            _ => Err(DataError::Conflict {
                current: version_of(version),
            }),
        }
    }

    async fn list(&self, user: u64, prefix: &str) -> Result<Vec<(String, Versioned)>, DataError> {
        let all: HashMap<String, Vec<u8>> = self
            .calls
            .query(redis::cmd("HGETALL").arg(data_key(user)))
            .await
            .map_err(DataError::Unavailable)?;
        let mut fields = all
            .into_iter()
            .filter(|(f, _)| f != COUNTER && f.starts_with(prefix))
            .map(|(f, raw)| parse(&f, &raw).map(|v| (f, v)))
            .collect::<Result<Vec<_>, _>>()?;
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::data::Data;
    use gamemesh_jobs::source::PlainRedis;
    use gamemesh_test_support::RedisServer;

    async fn store(redis: &RedisServer) -> RedisPlayerData {
        let source = PlainRedis::connect(&redis.url(), Duration::from_secs(2))
            .await
            .expect("connect to the test redis");
        RedisPlayerData::new(Arc::new(source), Duration::from_secs(2))
    }

    #[test]
    fn stored_values_split_at_the_first_colon() {
        let v = parse("f", b"12:a:b").unwrap();
        assert_eq!((v.version, &v.value[..]), (12, &b"a:b"[..]));
        assert!(parse("f", b"12").is_err());
        assert!(parse("f", b"x:1").is_err());
    }

    #[tokio::test]
    async fn the_redis_store_passes_the_conformance_suite() {
        let redis = RedisServer::start();
        super::super::conformance::run(Arc::new(store(&redis).await)).await;
    }

    #[tokio::test]
    async fn the_data_of_a_user_is_one_hash_tagged_per_user() {
        let redis = RedisServer::start();
        let data = Data::new(Arc::new(store(&redis).await), "arena");
        data.set(42, "wins", &b"3"[..], Expect::Any).await.unwrap();
        let client = redis::Client::open(redis.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(keys, vec!["gm:{u:42}:data".to_string()]);
        let raw: Vec<u8> = redis::cmd("HGET")
            .arg("gm:{u:42}:data")
            .arg("arena:wins")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(raw, b"1:3");
    }

    #[tokio::test]
    async fn of_two_concurrent_writers_on_one_version_exactly_one_wins() {
        let redis = RedisServer::start();
        // Two stores on two connections: two game servers.
        let a = Data::new(Arc::new(store(&redis).await), "m");
        let b = Data::new(Arc::new(store(&redis).await), "m");
        let v0 = a.set(7, "gold", &b"0"[..], Expect::Absent).await.unwrap();
        for round in 0..50u64 {
            let base = a.get(7, "gold").await.unwrap().unwrap().version;
            let wa = a.set(
                7,
                "gold",
                format!("a{round}").into_bytes(),
                Expect::Version(base),
            );
            let wb = b.set(
                7,
                "gold",
                format!("b{round}").into_bytes(),
                Expect::Version(base),
            );
            let (ra, rb) = tokio::join!(wa, wb);
            let wins = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
            assert_eq!(wins, 1, "round {round}: {ra:?} {rb:?}");
            let (winner, loser) = if ra.is_ok() { (ra, rb) } else { (rb, ra) };
            assert_eq!(
                loser,
                Err(DataError::Conflict {
                    current: Some(winner.clone().unwrap())
                }),
                "the loser learns the winner's version"
            );
            assert!(winner.unwrap() > v0);
        }
    }

    #[tokio::test]
    async fn concurrent_updates_all_land() {
        let redis = RedisServer::start();
        let a = Data::new(Arc::new(store(&redis).await), "m");
        let b = Data::new(Arc::new(store(&redis).await), "m");
        #[derive(Clone, PartialEq, prost::Message)]
        struct Counter {
            #[prost(uint64, tag = "1")]
            n: u64,
        }
        let bump = |d: Data| async move {
            for _ in 0..20 {
                d.update::<Counter, _>(1, "count", |c| {
                    c.n += 1;
                    Ok(())
                })
                .await
                .expect("update");
            }
        };
        tokio::join!(bump(a.clone()), bump(b));
        let (c, _) = a.get_msg::<Counter>(1, "count").await.unwrap().unwrap();
        assert_eq!(c.n, 40, "no increment lost to a concurrent writer");
    }

    #[tokio::test]
    async fn data_survives_a_new_connection() {
        let redis = RedisServer::start();
        let a = Data::new(Arc::new(store(&redis).await), "m");
        a.set(3, "k", &b"v"[..], Expect::Absent).await.unwrap();
        drop(a);
        // A restarted game server: a new store on a new connection.
        let b = Data::new(Arc::new(store(&redis).await), "m");
        let v = b.get(3, "k").await.unwrap().unwrap();
        assert_eq!(&v.value[..], b"v");
    }

    #[tokio::test]
    async fn redis_down_is_unavailable() {
        let mut redis = RedisServer::start();
        let a = Data::new(Arc::new(store(&redis).await), "m");
        redis.stop();
        let e = a.get(1, "k").await.unwrap_err();
        assert!(matches!(e, DataError::Unavailable(_)), "{e:?}");
    }
}
