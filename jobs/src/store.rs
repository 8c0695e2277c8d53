//! The job store in Redis: every state change is one Lua script, so it is
//! atomic however many game servers race for it.
//!
//! Keys (all under one hash tag, so a Redis Cluster keeps them in one slot
//! and the scripts may touch any of them):
//!
//! | Key | Type | Holds |
//! |---|---|---|
//! | `gm:{jobs}:job:<id>` | hash | kind, payload, state, attempts, max_attempts, run_at, owner, last_error, parent, after_ms |
//! | `gm:{jobs}:due` | sorted set | queued and retrying jobs, scored by due time (Unix ms) |
//! | `gm:{jobs}:running` | sorted set | claimed jobs, scored by lease expiry |
//! | `gm:{jobs}:failed` | sorted set | jobs out of attempts, scored by when they failed |
//! | `gm:{jobs}:waiting` | sorted set | continuations waiting for their parent, scored by when they were enqueued |
//! | `gm:{jobs}:then:<id>` | list | continuations waiting for job `<id>` to succeed |
//! | `gm:{jobs}:cron` | hash | name -> JSON of a recurring job (expression, kind, payload) |
//! | `gm:{jobs}:cron:next` | sorted set | name -> its next tick (Unix ms) |
//!
//! Times come from the callers' clocks (game servers are expected to run
//! NTP): a skew of a second moves when a job runs, never how often.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gamemesh_node::redis_connection::{PubSubClient, SharedConnection};
use redis::Script;
use serde::{Deserialize, Serialize};

use crate::job::{Job, JobInfo, JobSpec};
use crate::schedule::CronSchedule;
use crate::source::{PlainRedis, RedisSource};
use crate::JobsError;

/// The key prefix, hash tag included.
pub const PREFIX: &str = "gm:{jobs}:";

/// How long a finished job's record is kept for `inspect` and for
/// continuations enqueued after it finished.
pub const DONE_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Moves expired leases back to due (or to failed when out of attempts),
/// then claims up to ARGV[3] due jobs for owner ARGV[4] with a lease until
/// now + ARGV[2].
const CLAIM: &str = r#"
local p = ARGV[5]
local now = tonumber(ARGV[1])
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[2], id)
  local key = p .. 'job:' .. id
  local f = redis.call('HMGET', key, 'attempts', 'max_attempts')
  if f[1] then
    if tonumber(f[1]) >= tonumber(f[2]) then
      redis.call('HSET', key, 'state', 'failed', 'owner', '', 'last_error', 'lease expired: its runner stopped or stalled', 'failed_at', now)
      redis.call('ZADD', KEYS[3], now, id)
    else
      redis.call('HSET', key, 'state', 'queued', 'owner', '', 'last_error', 'lease expired: its runner stopped or stalled')
      redis.call('ZADD', KEYS[1], now, id)
    end
  end
end
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local key = p .. 'job:' .. id
  if redis.call('EXISTS', key) == 1 then
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), id)
    local attempts = redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('HSET', key, 'state', 'running', 'owner', ARGV[4])
    local f = redis.call('HMGET', key, 'kind', 'payload', 'max_attempts')
    table.insert(out, {id, f[1] or '', f[2] or '', attempts, tonumber(f[3] or '1')})
  end
end
return out
"#;

/// Succeeds job ARGV[1] if ARGV[2] still owns it, and releases its
/// continuations.
const COMPLETE: &str = r#"
local p = ARGV[4]
local now = tonumber(ARGV[3])
local key = p .. 'job:' .. ARGV[1]
if redis.call('HGET', key, 'owner') ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HSET', key, 'state', 'done', 'owner', '', 'finished_at', now)
redis.call('PEXPIRE', key, ARGV[5])
local thenkey = p .. 'then:' .. ARGV[1]
for _, kid in ipairs(redis.call('LRANGE', thenkey, 0, -1)) do
  local kkey = p .. 'job:' .. kid
  local at = now + tonumber(redis.call('HGET', kkey, 'after_ms') or '0')
  redis.call('HSET', kkey, 'state', 'queued', 'run_at', at)
  redis.call('ZADD', KEYS[2], at, kid)
  redis.call('ZREM', KEYS[3], kid)
end
redis.call('DEL', thenkey)
return 1
"#;

/// Records a failure of job ARGV[1] by owner ARGV[2]: a retry at ARGV[6],
/// or the failed list when out of attempts. 1 = retry, 2 = failed.
const FAIL: &str = r#"
local p = ARGV[4]
local key = p .. 'job:' .. ARGV[1]
if redis.call('HGET', key, 'owner') ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
local f = redis.call('HMGET', key, 'attempts', 'max_attempts')
if tonumber(f[1]) >= tonumber(f[2]) then
  redis.call('HSET', key, 'state', 'failed', 'owner', '', 'last_error', ARGV[5], 'failed_at', ARGV[3])
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
  return 2
end
redis.call('HSET', key, 'state', 'retrying', 'owner', '', 'last_error', ARGV[5], 'run_at', ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
return 1
"#;

/// Gives job ARGV[1] back (a runner stopping): due now, the attempt not
/// counted.
const RELEASE: &str = r#"
local key = ARGV[4] .. 'job:' .. ARGV[1]
if redis.call('HGET', key, 'owner') ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HINCRBY', key, 'attempts', -1)
redis.call('HSET', key, 'state', 'queued', 'owner', '')
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"#;

/// Extends the lease of job ARGV[1] to ARGV[3] if ARGV[2] still owns it.
const RENEW: &str = r#"
if redis.call('HGET', ARGV[4] .. 'job:' .. ARGV[1], 'owner') ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[1])
return 1
"#;

/// Puts failed job ARGV[1] back in the due set with fresh attempts.
const REQUEUE: &str = r#"
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', ARGV[3] .. 'job:' .. ARGV[1], 'state', 'queued', 'attempts', 0, 'run_at', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"#;

/// Stores job ARGV[1] unless a job of that id exists (so a cron occurrence
/// is created once). With a parent ARGV[8], it waits for the parent, or is
/// due at once (+ after_ms) if the parent already succeeded.
/// 1 = stored, 0 = existed, -1 = unknown parent.
const ENQUEUE: &str = r#"
local p = ARGV[2]
local key = p .. 'job:' .. ARGV[1]
if redis.call('EXISTS', key) == 1 then return 0 end
local now = tonumber(ARGV[7])
local run_at = tonumber(ARGV[6])
local parent = ARGV[8]
local state = 'queued'
if parent ~= '' then
  local ps = redis.call('HGET', p .. 'job:' .. parent, 'state')
  if not ps then return -1 end
  if ps == 'done' then
    run_at = now + tonumber(ARGV[9])
  else
    state = 'waiting'
    redis.call('RPUSH', p .. 'then:' .. parent, ARGV[1])
    redis.call('ZADD', KEYS[2], now, ARGV[1])
  end
end
redis.call('HSET', key, 'kind', ARGV[3], 'payload', ARGV[4], 'max_attempts', ARGV[5],
  'attempts', 0, 'created_at', now, 'run_at', run_at, 'state', state, 'owner', '',
  'parent', parent, 'after_ms', ARGV[9])
if state == 'queued' then redis.call('ZADD', KEYS[1], run_at, ARGV[1]) end
return 1
"#;

/// Registers recurring job ARGV[1] (JSON ARGV[2]) with first tick ARGV[3]:
/// a new or changed definition is (re)scheduled, an unchanged one keeps
/// its stored next tick (so a restart neither skips nor repeats a tick).
const CRON_REGISTER: &str = r#"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur ~= ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
  return 1
end
redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[1])
return 0
"#;

/// Fires tick ARGV[2] of recurring job ARGV[1] if it is still the stored
/// next tick (compare-and-set: of all servers that saw it due, exactly one
/// moves it on to ARGV[3] and creates the occurrence job).
const CRON_FIRE: &str = r#"
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not cur or tonumber(cur) ~= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
local id = 'cron:' .. ARGV[1] .. ':' .. ARGV[2]
local key = ARGV[4] .. 'job:' .. id
if redis.call('EXISTS', key) == 1 then return 0 end
redis.call('HSET', key, 'kind', ARGV[5], 'payload', ARGV[6], 'max_attempts', ARGV[7],
  'attempts', 0, 'created_at', ARGV[8], 'run_at', ARGV[8], 'state', 'queued', 'owner', '',
  'parent', '', 'after_ms', 0, 'cron', ARGV[1], 'tick', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[8], id)
return 1
"#;

/// A recurring job as stored in `gm:{jobs}:cron`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronJob {
    /// Unique name (also in its occurrences' ids).
    pub name: String,
    /// Six-field cron expression, UTC.
    pub expr: String,
    /// The kind of each occurrence.
    pub kind: String,
    /// The payload of each occurrence.
    pub payload: String,
    /// Attempts of each occurrence.
    pub max_attempts: u32,
}

/// How a claim, completion or failure went for a job this runner held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Recorded.
    Done,
    /// The job was no longer ours (its lease expired and another server
    /// took it): nothing was recorded.
    NotOwner,
}

/// What a failure led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Another attempt is scheduled.
    Retry,
    /// Out of attempts: moved to the failed list.
    Failed,
    /// The job was no longer ours.
    NotOwner,
}

#[derive(Clone)]
struct Scripts {
    claim: Script,
    complete: Script,
    fail: Script,
    release: Script,
    renew: Script,
    requeue: Script,
    enqueue: Script,
    cron_register: Script,
    cron_fire: Script,
}

/// The job store: a handle on Redis, cheap to clone.
#[derive(Clone)]
pub struct JobStore {
    /// Where commands and the event bus's pub/sub connection go: the
    /// current primary.
    source: Arc<dyn RedisSource>,
    /// Bound on every call.
    timeout: Duration,
    /// The Lua scripts (EVALSHA, falling back to EVAL after a Redis restart).
    scripts: Scripts,
}

fn key(name: &str) -> String {
    format!("{PREFIX}{name}")
}

fn job_key(id: &str) -> String {
    format!("{PREFIX}job:{id}")
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl JobStore {
    /// Connects to Redis at `addr` (`host:port` or a URL), failing within
    /// about `timeout` if it does not answer.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Self, JobsError> {
        let source = PlainRedis::connect(addr, timeout).await?;
        Ok(Self::with_source(Arc::new(source), timeout))
    }

    /// A store on `source`'s connections (the game server's, which follow
    /// the primary through failovers), every call bounded by `timeout`.
    pub fn with_source(source: Arc<dyn RedisSource>, timeout: Duration) -> Self {
        Self {
            source,
            timeout,
            scripts: Scripts {
                claim: Script::new(CLAIM),
                complete: Script::new(COMPLETE),
                fail: Script::new(FAIL),
                release: Script::new(RELEASE),
                renew: Script::new(RENEW),
                requeue: Script::new(REQUEUE),
                enqueue: Script::new(ENQUEUE),
                cron_register: Script::new(CRON_REGISTER),
                cron_fire: Script::new(CRON_FIRE),
            },
        }
    }

    /// Where this store's connections come from.
    pub fn source(&self) -> &Arc<dyn RedisSource> {
        &self.source
    }

    /// A client for the current primary (for a pub/sub connection).
    pub fn client(&self) -> PubSubClient {
        self.source.client()
    }

    /// A handle on the shared connection to the current primary.
    pub fn connection(&self) -> SharedConnection {
        self.source.connection()
    }

    /// The bound on every Redis call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, JobsError> {
        let result = match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => JobsError::Redis(e),
            Err(_) => JobsError::Timeout(self.timeout),
        };
        // Maybe the primary moved: let a source that follows it look now.
        self.source.command_failed();
        Err(result)
    }

    async fn run_script<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> Result<T, JobsError> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        for a in args {
            inv.arg(a);
        }
        let mut conn = self.connection();
        self.bounded(async move { inv.invoke_async(&mut conn).await })
            .await
    }

    /// Enqueues `spec` to run now; returns its id.
    pub async fn enqueue(&self, spec: &JobSpec) -> Result<String, JobsError> {
        self.enqueue_at(spec, now_ms()).await
    }

    /// Enqueues `spec` to run after `delay`; returns its id.
    pub async fn enqueue_in(&self, spec: &JobSpec, delay: Duration) -> Result<String, JobsError> {
        self.enqueue_at(spec, now_ms() + delay.as_millis() as i64)
            .await
    }

    /// Enqueues `spec` to run at `run_at_ms` (Unix ms); returns its id.
    pub async fn enqueue_at(&self, spec: &JobSpec, run_at_ms: i64) -> Result<String, JobsError> {
        let id = uuid::Uuid::new_v4().to_string();
        self.store(&id, spec, run_at_ms, None, Duration::ZERO)
            .await?;
        Ok(id)
    }

    /// Enqueues `spec` as a continuation: it runs `after` once job `parent`
    /// succeeded (at once plus `after` if it already has). It never runs if
    /// the parent ends in the failed list, unless the parent is re-queued
    /// and then succeeds.
    pub async fn enqueue_then(
        &self,
        parent: &str,
        spec: &JobSpec,
        after: Duration,
    ) -> Result<String, JobsError> {
        let id = uuid::Uuid::new_v4().to_string();
        self.store(&id, spec, now_ms(), Some(parent), after).await?;
        Ok(id)
    }

    async fn store(
        &self,
        id: &str,
        spec: &JobSpec,
        run_at_ms: i64,
        parent: Option<&str>,
        after: Duration,
    ) -> Result<(), JobsError> {
        let r: i64 = self
            .run_script(
                &self.scripts.enqueue,
                &[key("due"), key("waiting")],
                &[
                    id.to_string(),
                    PREFIX.to_string(),
                    spec.kind.clone(),
                    spec.payload.clone(),
                    spec.max_attempts.max(1).to_string(),
                    run_at_ms.to_string(),
                    now_ms().to_string(),
                    parent.unwrap_or("").to_string(),
                    after.as_millis().to_string(),
                ],
            )
            .await?;
        if r < 0 {
            return Err(JobsError::UnknownParent(
                parent.unwrap_or_default().to_string(),
            ));
        }
        Ok(())
    }

    /// Claims up to `limit` due jobs for `owner`, each under a lease of
    /// `lease`. Expired leases are first put back (or failed when out of
    /// attempts), so a dead runner's jobs are picked up here.
    pub async fn claim(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Job>, JobsError> {
        let rows: Vec<(String, String, String, u32, u32)> = self
            .run_script(
                &self.scripts.claim,
                &[key("due"), key("running"), key("failed")],
                &[
                    now_ms().to_string(),
                    lease.as_millis().to_string(),
                    limit.to_string(),
                    owner.to_string(),
                    PREFIX.to_string(),
                ],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, kind, payload, attempt, max_attempts)| Job {
                id,
                kind,
                payload,
                attempt,
                max_attempts,
            })
            .collect())
    }

    /// Records that `owner` ran job `id` successfully.
    pub async fn complete(&self, id: &str, owner: &str) -> Result<Outcome, JobsError> {
        let keys = [key("running"), key("due"), key("waiting")];
        let extra = [DONE_RETENTION.as_millis().to_string()];
        self.as_owner(&self.scripts.complete, &keys, id, owner, now_ms(), &extra)
            .await
    }

    /// Runs one of the scripts that act on job `id` only while `owner`
    /// holds it (complete, release, renew): their arguments start
    /// `id, owner, <time>, PREFIX` and they answer 1 when they did it.
    async fn as_owner(
        &self,
        script: &Script,
        keys: &[String],
        id: &str,
        owner: &str,
        at_ms: i64,
        extra: &[String],
    ) -> Result<Outcome, JobsError> {
        let mut args = vec![
            id.to_string(),
            owner.to_string(),
            at_ms.to_string(),
            PREFIX.to_string(),
        ];
        args.extend_from_slice(extra);
        let r: i64 = self.run_script(script, keys, &args).await?;
        Ok(if r == 1 {
            Outcome::Done
        } else {
            Outcome::NotOwner
        })
    }

    /// Records that `owner`'s attempt at job `id` failed with `error`; the
    /// next attempt (if any is left) is due after `retry_in`.
    pub async fn fail(
        &self,
        id: &str,
        owner: &str,
        error: &str,
        retry_in: Duration,
    ) -> Result<FailOutcome, JobsError> {
        let now = now_ms();
        let r: i64 = self
            .run_script(
                &self.scripts.fail,
                &[key("running"), key("due"), key("failed")],
                &[
                    id.to_string(),
                    owner.to_string(),
                    now.to_string(),
                    PREFIX.to_string(),
                    error.to_string(),
                    (now + retry_in.as_millis() as i64).to_string(),
                ],
            )
            .await?;
        Ok(match r {
            1 => FailOutcome::Retry,
            2 => FailOutcome::Failed,
            _ => FailOutcome::NotOwner,
        })
    }

    /// Gives job `id` back without counting the attempt (a runner stopping
    /// before the job finished): another server can take it at once.
    pub async fn release(&self, id: &str, owner: &str) -> Result<Outcome, JobsError> {
        let keys = [key("running"), key("due")];
        self.as_owner(&self.scripts.release, &keys, id, owner, now_ms(), &[])
            .await
    }

    /// Extends `owner`'s lease on job `id` to `lease` from now.
    pub async fn renew(
        &self,
        id: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Outcome, JobsError> {
        let until = now_ms() + lease.as_millis() as i64;
        self.as_owner(
            &self.scripts.renew,
            &[key("running")],
            id,
            owner,
            until,
            &[],
        )
        .await
    }

    /// Puts failed job `id` back in the queue, due now, with all its
    /// attempts again. False if it is not in the failed list.
    pub async fn requeue(&self, id: &str) -> Result<bool, JobsError> {
        let r: i64 = self
            .run_script(
                &self.scripts.requeue,
                &[key("failed"), key("due")],
                &[id.to_string(), now_ms().to_string(), PREFIX.to_string()],
            )
            .await?;
        Ok(r == 1)
    }

    /// Everything stored about job `id`, if it is stored.
    pub async fn inspect(&self, id: &str) -> Result<Option<JobInfo>, JobsError> {
        let mut conn = self.connection();
        let k = job_key(id);
        let fields: HashMap<String, String> = self
            .bounded(async move { redis::cmd("HGETALL").arg(k).query_async(&mut conn).await })
            .await?;
        Ok(JobInfo::from_fields(id, fields))
    }

    async fn ids(&self, set: &str) -> Result<Vec<String>, JobsError> {
        let mut conn = self.connection();
        let k = key(set);
        self.bounded(async move {
            redis::cmd("ZRANGE")
                .arg(k)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
        })
        .await
    }

    async fn infos(&self, ids: Vec<String>) -> Result<Vec<JobInfo>, JobsError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(info) = self.inspect(&id).await? {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// Jobs queued or retrying (in due order), then running, then
    /// continuations waiting for their parent.
    pub async fn list(&self) -> Result<Vec<JobInfo>, JobsError> {
        let mut ids = self.ids("due").await?;
        ids.extend(self.ids("running").await?);
        ids.extend(self.ids("waiting").await?);
        self.infos(ids).await
    }

    /// The failed list, oldest failure first.
    pub async fn failed(&self) -> Result<Vec<JobInfo>, JobsError> {
        let ids = self.ids("failed").await?;
        self.infos(ids).await
    }

    /// Registers recurring job `job`. Every server may register the same
    /// definition at start-up: an unchanged one keeps its stored next tick,
    /// a changed one is rescheduled from now.
    pub async fn register_cron(&self, job: &CronJob) -> Result<(), JobsError> {
        let schedule = CronSchedule::parse(&job.expr)?;
        let first = schedule.next_after_ms(now_ms())?;
        let _: i64 = self
            .run_script(
                &self.scripts.cron_register,
                &[key("cron"), key("cron:next")],
                &[
                    job.name.clone(),
                    serde_json::to_string(job)?,
                    first.to_string(),
                ],
            )
            .await?;
        Ok(())
    }

    /// The registered recurring jobs with their next tick (Unix ms).
    pub async fn crons(&self) -> Result<Vec<(CronJob, i64)>, JobsError> {
        let mut conn = self.connection();
        let (defs, next): (HashMap<String, String>, Vec<(String, f64)>) = self
            .bounded(async move {
                redis::pipe()
                    .cmd("HGETALL")
                    .arg(key("cron"))
                    .cmd("ZRANGE")
                    .arg(key("cron:next"))
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let mut out = Vec::new();
        for (name, tick) in next {
            if let Some(def) = defs.get(&name) {
                out.push((serde_json::from_str(def)?, tick as i64));
            }
        }
        Ok(out)
    }

    /// Turns every recurring job whose tick is due into one occurrence job.
    /// Many servers may call this at once: each tick becomes exactly one
    /// job. After downtime, a job that missed several ticks gets ONE
    /// occurrence (for the first missed tick) and then moves on to its next
    /// future tick: no backlog storm. Returns how many occurrences this
    /// call created.
    pub async fn fire_due_crons(&self) -> Result<usize, JobsError> {
        let now = now_ms();
        let mut fired = 0;
        for (job, tick) in self.crons().await? {
            if tick > now {
                continue;
            }
            let schedule = match CronSchedule::parse(&job.expr) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("Recurring job {} is not fired: {e}", job.name);
                    continue;
                }
            };
            let next = schedule.next_after_ms(now)?;
            let r: i64 = self
                .run_script(
                    &self.scripts.cron_fire,
                    &[key("cron:next"), key("due")],
                    &[
                        job.name.clone(),
                        tick.to_string(),
                        next.to_string(),
                        PREFIX.to_string(),
                        job.kind.clone(),
                        job.payload.clone(),
                        job.max_attempts.max(1).to_string(),
                        now.to_string(),
                    ],
                )
                .await?;
            fired += r as usize;
        }
        Ok(fired)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use gamemesh_node::redis_address::cluster_slot;

    use super::*;

    /// The first argument of every `redis.call` in `lua`: the key it
    /// touches.
    fn touched(lua: &str) -> Vec<String> {
        lua.split("redis.call(")
            .skip(1)
            .filter_map(|call| {
                let after_cmd = call.split_once(',')?.1.trim_start();
                let end = after_cmd.find([',', ')']).unwrap_or(after_cmd.len());
                Some(after_cmd[..end].trim().to_string())
            })
            .collect()
    }

    /// On a Redis Cluster each script must touch one slot. The keys a
    /// script declares are `gm:{jobs}:<name>`; the keys it builds
    /// (`job:<id>`, `then:<id>`) start from the prefix its caller passes
    /// (`local p = ARGV[n]`), which is [`PREFIX`]. So: every key a script
    /// touches is a declared key, a local built from the prefix, or the
    /// prefix concatenated; and the prefix's slot is the declared keys'.
    #[test]
    fn every_script_touches_one_cluster_slot() {
        let declared = ["due", "waiting", "running", "failed", "cron", "cron:next"];
        let slots: BTreeSet<u16> = declared
            .iter()
            .map(|n| cluster_slot(&key(n)))
            .chain([
                cluster_slot(&job_key("any-id")),
                cluster_slot(&format!("{PREFIX}then:x")),
            ])
            .collect();
        assert_eq!(slots.len(), 1, "the job store's keys span slots {slots:?}");
        for (name, lua) in [
            ("CLAIM", CLAIM),
            ("COMPLETE", COMPLETE),
            ("FAIL", FAIL),
            ("RELEASE", RELEASE),
            ("RENEW", RENEW),
            ("REQUEUE", REQUEUE),
            ("ENQUEUE", ENQUEUE),
            ("CRON_REGISTER", CRON_REGISTER),
            ("CRON_FIRE", CRON_FIRE),
        ] {
            // Locals that hold keys must be built from the prefix.
            for line in lua.lines().map(str::trim) {
                for local in ["local key =", "local kkey =", "local thenkey ="] {
                    if let Some(rhs) = line.strip_prefix(local) {
                        let rhs = rhs.trim();
                        assert!(
                            rhs.starts_with("p ..") || rhs.starts_with("ARGV["),
                            "{name}: {line} is not built from the prefix"
                        );
                    }
                }
                if let Some(rhs) = line.strip_prefix("local p =") {
                    assert!(rhs.trim().starts_with("ARGV["), "{name}: {line}");
                }
            }
            for k in touched(lua) {
                let ok = k.starts_with("KEYS[")
                    || ["key", "kkey", "thenkey"].contains(&k.as_str())
                    || k.starts_with("p ..")
                    || (k.starts_with("ARGV[") && k.contains(".."));
                assert!(ok, "{name} touches {k:?}, not a key of the {{jobs}} slot");
            }
        }
    }
}
