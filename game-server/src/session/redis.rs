//! The Redis [`SessionStore`]: the production source of truth.
//!
//! Each operation is one Lua script, so it is atomic in Redis: a login
//! reads, replaces and creates in one step, which is what makes N racing
//! logins of one user end with exactly one session. Every call is bounded
//! by a response timeout. The connection is a [`RedisConn`]: it reconnects
//! by itself with backoff when Redis comes back, and follows the primary
//! through a Sentinel failover.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gamemesh_proto::internal::{CachedReply, ReplyCache};
use gamemesh_proto::Message;
use redis::{Script, Value};
use uuid::Uuid;

use super::replica_ack::ReplicaAck;
use crate::redis::{RedisConn, RedisOptions};

use super::{
    Claim, LoginOutcome, NewSession, Placement, Progress, ReplacedSession, SessionPlace,
    SessionRecord, SessionStore, StoreError, TakeOver,
};

/// The key of a user's session record. The `{...}` hash tag keeps
/// everything about one user in one Redis Cluster slot.
pub fn session_key(user_id: u64) -> String {
    format!("gm:{{u:{user_id}}}:session")
}

/// The record's fields that hold the reply cache: `rep:<i mod keep>` for
/// the session's i-th reply since its login (`nrep` says how many there
/// were), each an encoded `CachedReply`. A ring in the record itself: a
/// save adds one field per new reply to the same `HSET` as the watermark,
/// and the cache lives, expires and is deleted with the record. The owner
/// names the fields ([`Progress::first_reply`]), so a save sent twice
/// writes the same fields twice.
const REPLY_FIELD_PREFIX: &str = "rep:";

/// Lua shared by SAVE and DISCONNECT. After the time to live in ARGV[1],
/// each session record in KEYS has one group of ARGV: session id, epoch,
/// the number of `HSET` arguments that follow, then those (`last_seq` and
/// its value first). `hset_args(a)` says where the group starting at
/// ARGV[a] has its `HSET` arguments.
macro_rules! progress_lua {
    () => {
        r#"
local ttl = ARGV[1]
local function hset_args(a)
  return a + 3, a + 2 + tonumber(ARGV[a + 2])
end
"#
    };
}

/// A login. On a Redis Cluster the client retries a command whose
/// connection broke (a shard failing over) and may run it twice; the
/// second run finds its own session id and answers as the first did,
/// replacing nothing.
pub(crate) const LOGIN: &str = r#"
local old = redis.call('HMGET', KEYS[1], 'sid', 'epoch', 'owner', 'gateway', 'socket', 'connected')
if old[1] == ARGV[1] then return {tonumber(old[2]), '', '', '', '', ''} end
local epoch = tonumber(old[2] or '0') + 1
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'sid', ARGV[1], 'uid', ARGV[2], 'epoch', epoch, 'token', ARGV[3],
  'owner', ARGV[4], 'gateway', ARGV[5], 'socket', ARGV[6], 'last_seq', ARGV[7], 'connected', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[8])
return {epoch, old[1] or '', old[3] or '', old[4] or '', old[5] or '', old[6] or ''}
"#;

/// A resume or adoption. Returns the reply cache's items as its last
/// element, and `replies` (the whole cache in one field, as game servers
/// before the ring saved it) so a rolling upgrade keeps caches.
pub(crate) const TAKE_OVER: &str = r#"
local cur = redis.call('HMGET', KEYS[1], 'sid', 'epoch', 'owner', 'gateway', 'socket', 'connected', 'last_seq', 'replies', 'counter', 'nrep')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then return false end
local epoch = tonumber(cur[2]) + 1
redis.call('HSET', KEYS[1], 'epoch', epoch, 'owner', ARGV[3], 'gateway', ARGV[4], 'socket', ARGV[5], 'connected', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[6])
local all = redis.call('HGETALL', KEYS[1])
local reps = {}
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 4) == 'rep:' then reps[#reps + 1] = all[i + 1] end
end
return {epoch, cur[7] or '0', cur[8] or '', cur[3] or '', cur[4] or '', cur[5] or '', cur[6] or '', cur[9] or '0', cur[10] or '0', reps}
"#;

/// Saves owners' progress, one session per key: returns 0 (fenced off) or
/// 1 per key, in order. Several keys only on one Redis (the flusher's
/// batches); on a Redis Cluster always one, as a script must stay in one
/// slot.
pub(crate) const SAVE: &str = concat!(
    progress_lua!(),
    r#"
local out, a = {}, 2
for k = 1, #KEYS do
  local first, last = hset_args(a)
  local cur = redis.call('HMGET', KEYS[k], 'sid', 'epoch', 'connected', 'last_seq')
  if cur[1] ~= ARGV[a] or cur[2] ~= ARGV[a + 1] then
    out[k] = 0
  else
    out[k] = 1
    -- A periodic save that lands after the disconnect save must neither
    -- move the watermark back nor renew the record as if still connected.
    if cur[3] == '1' and tonumber(ARGV[first + 1]) >= tonumber(cur[4] or '0') then
      redis.call('HSET', KEYS[k], unpack(ARGV, first, last))
      redis.call('PEXPIRE', KEYS[k], ttl)
    end
  end
  a = last + 1
end
return out
"#
);

/// The owner's last save when its client went away: the record waits to
/// be resumed, owned by no node (the `HSET` arguments say so). One key;
/// 1, or 0 when fenced off.
pub(crate) const DISCONNECT: &str = concat!(
    progress_lua!(),
    r#"
local first, last = hset_args(2)
local cur = redis.call('HMGET', KEYS[1], 'sid', 'epoch')
if cur[1] ~= ARGV[2] or cur[2] ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, first, last))
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
"#
);

pub(crate) const REMOVE: &str = r#"
local cur = redis.call('HMGET', KEYS[1], 'sid', 'epoch')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"#;

/// Sessions in Redis.
#[derive(Clone)]
pub struct RedisStore {
    /// The connection to the primary (bounded calls, failover following).
    conn: RedisConn,
    /// The Lua scripts, loaded lazily by `invoke_async` (EVALSHA, falling
    /// back to EVAL after a Redis restart emptied the script cache).
    scripts: Scripts,
    /// A login waits for a replica to have it (Sentinel only).
    replica_ack: Arc<ReplicaAck>,
}

#[derive(Clone)]
struct Scripts {
    login: Script,
    take_over: Script,
    save: Script,
    disconnect: Script,
    remove: Script,
}

impl RedisStore {
    /// Connects to `addr` (any `--redis` form), failing within about twice
    /// `timeout` if Redis does not answer. Nothing follows a Sentinel
    /// failover here: [`crate::start`] runs [`RedisConn::follow_primary`]
    /// for the connection it makes.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Self, StoreError> {
        let conn = RedisConn::connect(&RedisOptions::new(addr, timeout))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Self::new(conn))
    }

    /// A store on an open connection.
    pub fn new(conn: RedisConn) -> Self {
        Self {
            conn,
            scripts: Scripts {
                login: Script::new(LOGIN),
                take_over: Script::new(TAKE_OVER),
                save: Script::new(SAVE),
                disconnect: Script::new(DISCONNECT),
                remove: Script::new(REMOVE),
            },
            replica_ack: Arc::default(),
        }
    }

    /// The connection (the registry shares it).
    pub fn conn(&self) -> &RedisConn {
        &self.conn
    }

    /// Runs one command within the timeout.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        Ok(self.conn.query(cmd).await?)
    }

    /// Runs a pipeline within the timeout.
    pub(crate) async fn query_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        Ok(self.conn.query_pipe(pipe).await?)
    }

    /// Runs SAVE for `batch` (one script call), each saved with the new
    /// time to live `ttl`: per entry, false when the record is no longer
    /// that session at that epoch.
    async fn save_batch(&self, batch: &[Progress], ttl: Duration) -> Result<Vec<bool>, StoreError> {
        let mut inv = self.scripts.save.prepare_invoke();
        inv.arg(ms(ttl));
        for p in batch {
            inv.key(session_key(p.user_id));
            progress_args(&mut inv, p, &[]);
        }
        let saved: Vec<i64> = self.run(inv).await?;
        if saved.len() != batch.len() {
            return Err(StoreError::Corrupt(format!(
                "SAVE answered {} results for {} sessions",
                saved.len(),
                batch.len()
            )));
        }
        Ok(saved.into_iter().map(|s| s == 1).collect())
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        inv: redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        Ok(self.conn.invoke(inv).await?)
    }
}

/// Sessions per SAVE call when the flusher saves many (one Redis, plain or
/// Sentinel): the call's own cost is shared by the batch, and a batch
/// holds Redis for about as long as a few single saves would.
const SAVE_BATCH: usize = 64;

/// One session's group of SAVE/DISCONNECT arguments (see `progress_lua!`),
/// with `more` fields to set after the progress.
fn progress_args(inv: &mut redis::ScriptInvocation<'_>, p: &Progress, more: &[(&str, &str)]) {
    let ring = p.keep.max(1) as u64;
    let hset_args = 2 * (3 + p.replies.len() + more.len());
    inv.arg(p.session_id)
        .arg(p.epoch)
        .arg(hset_args)
        .arg("last_seq")
        .arg(p.last_seq)
        .arg("counter")
        .arg(p.counter)
        .arg("nrep")
        .arg(p.ring_len());
    for (i, r) in (p.first_reply..).zip(&p.replies) {
        inv.arg(format!("{REPLY_FIELD_PREFIX}{}", i % ring))
            .arg(r.encode_to_vec());
    }
    for (field, value) in more {
        inv.arg(*field).arg(*value);
    }
}

/// A batch's one outcome as one per entry.
fn per_entry(len: usize, result: Result<Vec<bool>, StoreError>) -> Vec<Result<bool, StoreError>> {
    match result {
        Ok(saved) => saved.into_iter().map(Ok).collect(),
        Err(e) => (0..len)
            .map(|_| Err(StoreError::Unavailable(e.to_string())))
            .collect(),
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis().max(1) as u64
}

fn socket_text(s: &Uuid) -> String {
    if s.is_nil() {
        String::new()
    } else {
        s.simple().to_string()
    }
}

fn parse_socket(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap_or(Uuid::nil())
}

fn num(s: &str) -> u64 {
    s.parse().unwrap_or(0)
}

fn strings(v: Value) -> Result<Vec<String>, StoreError> {
    decode_value(v)
}

fn decode_value<T: redis::FromRedisValue>(v: Value) -> Result<T, StoreError> {
    T::from_redis_value(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The reply cache, oldest first, from the ring's items (in slot order,
/// not age order), or from the record's legacy `replies` field (one
/// encoded `ReplyCache`) when the ring is empty. An item that does not
/// decode is dropped: a reply that is not held only turns a replay into
/// `DUPLICATE_SEQUENCE`.
fn cached_replies(ring: Vec<Vec<u8>>, legacy: &[u8]) -> Vec<CachedReply> {
    if ring.is_empty() {
        return ReplyCache::decode(legacy).map_or_else(|_| Vec::new(), |c| c.replies);
    }
    let mut replies: Vec<CachedReply> = ring
        .into_iter()
        .filter_map(|item| CachedReply::decode(&item[..]).ok())
        .collect();
    replies.sort_by_key(|r| r.sequence_id);
    replies
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn login(&self, new: NewSession, ttl: Duration) -> Result<LoginOutcome, StoreError> {
        let key = session_key(new.user_id);
        let mut inv = self.scripts.login.key(&key);
        inv.arg(new.session_id)
            .arg(new.user_id)
            .arg(hex::encode(&new.token_hash))
            .arg(new.placement.owner)
            .arg(new.placement.gateway)
            .arg(socket_text(&new.placement.socket))
            .arg(new.last_seq)
            .arg(ms(ttl));
        let mark = self.conn.write_mark();
        let r = strings(self.run::<Value>(inv).await?)?;
        // Acknowledged only once a failover cannot lose it (bounded).
        self.replica_ack
            .confirm(&self.conn, &mark, &key, self.conn.inner.timeout)
            .await?;
        if r.len() != 6 {
            return Err(StoreError::Corrupt(format!("login script returned {r:?}")));
        }
        let replaced = (!r[1].is_empty()).then(|| ReplacedSession {
            session_id: num(&r[1]),
            placement: Placement {
                owner: num(&r[2]),
                gateway: num(&r[3]),
                socket: parse_socket(&r[4]),
            },
            connected: r[5] == "1",
        });
        Ok(LoginOutcome {
            epoch: num(&r[0]),
            replaced,
        })
    }

    async fn get(&self, user_id: u64) -> Result<Option<SessionRecord>, StoreError> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(session_key(user_id));
        let h: HashMap<String, Vec<u8>> = self.query(&cmd).await?;
        if h.is_empty() {
            return Ok(None);
        }
        let text = |k: &str| {
            h.get(k)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        Ok(Some(SessionRecord {
            session_id: num(&text("sid")),
            user_id: num(&text("uid")),
            epoch: num(&text("epoch")),
            placement: Placement {
                owner: num(&text("owner")),
                gateway: num(&text("gateway")),
                socket: parse_socket(&text("socket")),
            },
            token_hash: hex::decode(text("token")).unwrap_or_default(),
            last_seq: num(&text("last_seq")),
            replies: cached_replies(
                h.iter()
                    .filter(|(k, _)| k.starts_with(REPLY_FIELD_PREFIX))
                    .map(|(_, v)| v.clone())
                    .collect(),
                h.get("replies").map_or(&[][..], |v| &v[..]),
            ),
            counter: num(&text("counter")),
            ring_len: num(&text("nrep")),
            connected: text("connected") == "1",
        }))
    }

    async fn take_over(&self, claim: Claim, ttl: Duration) -> Result<Option<TakeOver>, StoreError> {
        let mut inv = self.scripts.take_over.key(session_key(claim.user_id));
        inv.arg(claim.session_id)
            .arg(claim.expected_epoch)
            .arg(claim.to.owner)
            .arg(claim.to.gateway)
            .arg(socket_text(&claim.to.socket))
            .arg(ms(ttl));
        let v: Value = self.run(inv).await?;
        let mut items: Vec<Value> = match v {
            Value::Nil => return Ok(None),
            Value::Array(items) => items,
            other => return Err(StoreError::Corrupt(format!("take_over returned {other:?}"))),
        };
        if items.len() != 10 {
            return Err(StoreError::Corrupt(
                "take_over returned a short reply".into(),
            ));
        }
        let list: Vec<Vec<u8>> = decode_value(items.pop().unwrap_or(Value::Nil))?;
        let legacy: Vec<u8> = decode_value(std::mem::replace(&mut items[2], Value::Nil))?;
        let text = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match i {
                2 => Ok(String::new()),
                _ => decode_value::<String>(item),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(TakeOver {
            epoch: num(&text[0]),
            last_seq: num(&text[1]),
            replies: cached_replies(list, &legacy),
            counter: num(&text[7]),
            ring_len: num(&text[8]),
            previous: Placement {
                owner: num(&text[3]),
                gateway: num(&text[4]),
                socket: parse_socket(&text[5]),
            },
            was_connected: text[6] == "1",
        }))
    }

    async fn save(&self, p: &Progress, ttl: Duration) -> Result<bool, StoreError> {
        let saved = self.save_batch(std::slice::from_ref(p), ttl).await?;
        Ok(saved.first() == Some(&true))
    }

    async fn save_many(&self, batch: &[Progress], ttl: Duration) -> Vec<Result<bool, StoreError>> {
        // A script touches one cluster slot; users are spread over slots.
        let size = if self.conn.is_cluster() {
            1
        } else {
            SAVE_BATCH
        };
        let chunks: Vec<&[Progress]> = batch.chunks(size).collect();
        let results =
            futures::future::join_all(chunks.iter().map(|c| self.save_batch(c, ttl))).await;
        chunks
            .iter()
            .zip(results)
            .flat_map(|(chunk, result)| per_entry(chunk.len(), result))
            .collect()
    }

    async fn disconnect(&self, p: &Progress, grace: Duration) -> Result<bool, StoreError> {
        let mut inv = self.scripts.disconnect.key(session_key(p.user_id));
        inv.arg(ms(grace));
        progress_args(
            &mut inv,
            p,
            &[("connected", "0"), ("socket", ""), ("owner", "0")],
        );
        Ok(self.run::<i64>(inv).await? == 1)
    }

    async fn remove(&self, user_id: u64, session_id: u64, epoch: u64) -> Result<bool, StoreError> {
        let mut inv = self.scripts.remove.key(session_key(user_id));
        inv.arg(session_id).arg(epoch);
        Ok(self.run::<i64>(inv).await? == 1)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.query::<String>(&redis::cmd("PING")).await.map(|_| ())
    }

    async fn locate(&self, users: &[u64]) -> Result<Vec<Option<SessionPlace>>, StoreError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        // Only the three fields needed, not the reply cache: one round trip
        // for the whole room. On a Redis Cluster a pipeline must stay in one
        // slot and users' keys are spread over slots by design, so there
        // the commands go out at once on the multiplexed connection (one
        // round trip per shard, in parallel).
        let hmget = |u: u64| {
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(session_key(u))
                .arg("sid")
                .arg("owner")
                .arg("connected");
            cmd
        };
        let rows: Vec<Vec<Option<String>>> = if self.conn.is_cluster() {
            let cmds: Vec<redis::Cmd> = users.iter().map(|u| hmget(*u)).collect();
            futures::future::try_join_all(cmds.iter().map(|c| self.query(c))).await?
        } else {
            let mut pipe = redis::pipe();
            for u in users {
                pipe.add_command(hmget(*u));
            }
            self.query_pipe(&pipe).await?
        };
        Ok(rows
            .into_iter()
            .map(|r| match r.as_slice() {
                [Some(sid), owner, connected] => Some(SessionPlace {
                    session_id: num(sid),
                    owner: owner.as_deref().map(num).unwrap_or(0),
                    connected: connected.as_deref() == Some("1"),
                }),
                _ => None,
            })
            .collect())
    }
}
