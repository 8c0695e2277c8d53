//! Every connection the game server makes to Redis starts here: the session
//! store ([`crate::session::redis`]), the node registry
//! ([`crate::cluster::membership`]) and the background jobs ([`crate::background`],
//! pub/sub included) all run their commands through one [`RedisConn`].
//!
//! `--redis` (env `REDIS_CONNECTION`) takes one of these forms:
//!
//! | Form | Meaning |
//! |---|---|
//! | `host:port` | Plain TCP, no password (the original form). |
//! | `redis://[user:pass@]host:port[/db]` | Plain TCP. `AUTH user pass` for an ACL user, `AUTH pass` for `redis://:pass@...`. |
//! | `rediss://[user:pass@]host:port[/db]` | TLS. The server's certificate is checked against the system's roots, or against `--redis-ca-file` alone when it is given. |
//! | `redis+sentinel://[user:pass@]host:port[,host:port...]/<master-name>[/db]` | Sentinel: the sentinels (port 26379 when left out) name the primary of `<master-name>`. The user and password are for the data nodes; the sentinels' own are `--redis-sentinel-username` / `--redis-sentinel-password`. |
//! | `rediss+sentinel://...` | The same, with TLS to the sentinels and to the data nodes. |
//! | `redis+cluster://[user:pass@]host:port[,host:port...]` | Redis Cluster: the nodes listed are seeds (one that answers is enough); the redis crate's asynchronous cluster client routes every command by its key's slot, follows `MOVED`/`ASK` and a shard's failover by itself. The user and password are every node's. |
//! | `rediss+cluster://...` | The same, with TLS to every node (`--redis-ca-file` as for `rediss://`). |
//!
//! **A cluster** needs every script, pipeline and multi-key command to
//! touch keys of one slot: the stores' keys carry hash tags (`{u:<id>}`,
//! `{room:<kind>:<name>}`, `{cluster}`, `{jobs}`), checked by
//! `tests::every_script_touches_one_cluster_slot` in `crate::redis`. Its
//! pub/sub is sharded (`SPUBLISH`/`SSUBSCRIBE`, see `gamemesh_jobs::events`).
//! Commands follow a cluster's failover by themselves: the crate refreshes
//! its slot map on `MOVED` or a lost connection and retries there.
//! [`RedisConn::follow_primary`] only notices that a shard's primary
//! changed ([`cluster`]), so the sessions saved through the dead one are
//! saved again, as after a Sentinel failover.
//!
//! **Discovery** is the redis crate's `SentinelClient`: it asks each
//! sentinel in turn and checks that the node named answers `ROLE` as a
//! primary. **Following a failover** is ours, because the crate's
//! `ConnectionManager` reconnects to the address it started with forever
//! (redis-rs issue 1438): [`RedisConn`] keeps the primary's
//! `ConnectionManager` behind a lock, and [`RedisConn::follow_primary`]
//! swaps in a new one when the sentinels name another primary. It asks them
//! (`SENTINEL GET-MASTER-ADDR-BY-NAME`, one small command on a kept
//! connection) every [`SENTINEL_POLL`], and at once when a command fails: a
//! killed primary refuses connections, a demoted one answers `READONLY`.
//!
//! So once Sentinel has promoted a replica, new commands go to it within
//! [`SENTINEL_POLL`] plus one connect (bounded by `--redis-timeout-ms`),
//! 1.5 s at the defaults, and usually at the first failed command. Before
//! that comes Sentinel's own time to decide (its `down-after-milliseconds`
//! plus an election and the promotion), which the operator sets. Commands
//! in flight on the old connection finish or fail there; a failure reaches
//! the client as `UNAVAILABLE` and the flusher retries its saves.
//!
//! Secrets never reach a log line or an error: addresses are shown through
//! `gamemesh_node::redis_address::redact`, and every error text is scrubbed
//! of the passwords we hold.

pub mod cluster;
pub mod conn;
pub mod sentinel;
pub mod target;

use std::path::PathBuf;
use std::time::Duration;

use gamemesh_node::redis_address::{redact, RedisAddress};
use thiserror::Error;

pub use conn::{RedisConn, WriteMark};
pub use sentinel::SENTINEL_POLL;

/// Why a Redis address or connection did not work. Every text here is free
/// of secrets.
#[derive(Debug, Error)]
pub enum RedisConnectError {
    /// The address or a related flag cannot work as given.
    #[error("{0}")]
    Config(String),
    /// Redis (or a sentinel) refused the credentials.
    #[error("Redis at {target} refused our credentials ({reason})")]
    Auth {
        /// The redacted address.
        target: String,
        /// What Redis said.
        reason: String,
    },
    /// The TLS handshake failed (certificate not trusted, wrong name, not
    /// a TLS port).
    #[error("TLS to Redis at {target} failed ({reason})")]
    Tls {
        /// The redacted address.
        target: String,
        /// What failed.
        reason: String,
    },
    /// Nothing answered in time, or the connection was refused.
    #[error("Redis is not reachable at {target} ({reason})")]
    Unreachable {
        /// The redacted address.
        target: String,
        /// What failed.
        reason: String,
    },
}

/// A command that did not complete: Redis did not answer within the
/// timeout, refused the connection or answered an error. The text is free
/// of secrets. The stores built on Redis turn it into their own error
/// (`session::StoreError::Unavailable`), so clients get `UNAVAILABLE`.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct CommandError(pub String);

/// How to reach Redis: the address and the flags that go with it.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// One of the forms in the module docs.
    pub url: String,
    /// PEM file of the CA(s) to trust for `rediss://`, instead of the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// ACL user for the sentinels (rarely needed).
    pub sentinel_username: Option<String>,
    /// Password of the sentinels (`requirepass` in sentinel.conf).
    pub sentinel_password: Option<String>,
    /// Bound on connecting and on every command.
    pub timeout: Duration,
}

impl RedisOptions {
    /// Options for `url` with no TLS CA and no sentinel password.
    pub fn new(url: impl Into<String>, timeout: Duration) -> Self {
        Self {
            url: url.into(),
            ca_file: None,
            sentinel_username: None,
            sentinel_password: None,
            timeout,
        }
    }

    /// Checks the address and its flags fit together, without connecting.
    pub fn validate(&self) -> Result<(), RedisConnectError> {
        let target = target::parse(&self.url)?;
        if self.ca_file.is_some() && !target.tls() {
            return Err(RedisConnectError::Config(format!(
                "--redis-ca-file is set but {} does not use TLS: use rediss:// (or rediss+sentinel://), or drop --redis-ca-file",
                redact(&self.url)
            )));
        }
        if (self.sentinel_password.is_some() || self.sentinel_username.is_some())
            && !matches!(target, RedisAddress::Sentinel(_))
        {
            return Err(RedisConnectError::Config(format!(
                "--redis-sentinel-password/--redis-sentinel-username are set but {} is not a redis+sentinel:// address",
                redact(&self.url)
            )));
        }
        Ok(())
    }

    /// Every password these options carry, to scrub from error texts.
    fn secrets(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        if let Ok(target) = target::parse(&self.url) {
            if let Some(p) = target.password() {
                secrets.push(p.to_string());
            }
        }
        secrets.extend(self.sentinel_password.clone());
        secrets.retain(|s| !s.is_empty());
        secrets
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use gamemesh_node::redis_address::cluster_slot;

    use super::*;

    /// The `KEYS[n]` a script reads, and whether every `redis.call` in it
    /// takes a declared key (none builds a key from its arguments).
    fn declared_keys_read(lua: &str) -> (BTreeSet<usize>, Vec<String>) {
        let read = lua
            .split("KEYS[")
            .skip(1)
            .filter_map(|rest| rest.split_once(']')?.0.parse().ok())
            .collect();
        let undeclared = lua
            .split("redis.call(")
            .skip(1)
            .filter_map(|call| {
                let arg = call.split_once(',')?.1.trim_start();
                (!arg.starts_with("KEYS[")).then(|| arg.chars().take(30).collect())
            })
            .collect();
        (read, undeclared)
    }

    /// On a Redis Cluster each script must touch one slot. For every
    /// script of the session, room and player-data stores: the keys its
    /// caller passes (built by the same key functions) share one slot, the
    /// script reads no `KEYS[n]` beyond them, and touches no key it was
    /// not given. (The job store's scripts have the same test in
    /// `gamemesh_jobs::store`; the registry's keys are checked in
    /// `cluster::membership`.)
    #[test]
    fn every_script_touches_one_cluster_slot() {
        use crate::api::data::redis as data;
        use crate::api::room::redis_store as room;
        use crate::api::room::RoomKey;
        use crate::session::redis as session;

        let user = 4_242;
        let r = RoomKey::new("arena", "r-1").unwrap();
        let scripts: Vec<(&str, &str, Vec<String>)> = vec![
            (
                "session LOGIN",
                session::LOGIN,
                vec![session::session_key(user)],
            ),
            (
                "session TAKE_OVER",
                session::TAKE_OVER,
                vec![session::session_key(user)],
            ),
            (
                "session SAVE",
                session::SAVE,
                vec![session::session_key(user)],
            ),
            (
                "session DISCONNECT",
                session::DISCONNECT,
                vec![session::session_key(user)],
            ),
            (
                "session REMOVE",
                session::REMOVE,
                vec![session::session_key(user)],
            ),
            ("room ACQUIRE", room::ACQUIRE, vec![room::lease_key(&r)]),
            (
                "room SAVE",
                room::SAVE,
                vec![room::lease_key(&r), room::checkpoint_key(&r)],
            ),
            ("room RELEASE", room::RELEASE, vec![room::lease_key(&r)]),
            (
                "room CLOSE",
                room::CLOSE,
                vec![room::lease_key(&r), room::checkpoint_key(&r)],
            ),
            (
                "room REMOVE_MEMBER",
                room::REMOVE_MEMBER,
                vec![room::user_rooms_key(user)],
            ),
            ("data SET", data::SET, vec![data::data_key(user)]),
            ("data DELETE", data::DELETE, vec![data::data_key(user)]),
        ];
        for (name, lua, keys) in scripts {
            let (read, undeclared) = declared_keys_read(lua);
            assert!(
                read.iter().all(|n| (1..=keys.len()).contains(n)),
                "{name} reads KEYS{read:?} but is given {} keys",
                keys.len()
            );
            assert!(
                undeclared.is_empty(),
                "{name} touches keys it is not given: {undeclared:?}"
            );
            let slots: BTreeSet<u16> = keys.iter().map(|k| cluster_slot(k)).collect();
            assert_eq!(slots.len(), 1, "{name} spans slots {slots:?}: {keys:?}");
        }
        // A user's session, data and rooms share the user's slot (a
        // login, kick, resume, save or logout stays on one shard), and
        // users spread over slots.
        let u = cluster_slot(&session::session_key(user));
        assert_eq!(cluster_slot(&data::data_key(user)), u);
        assert_eq!(cluster_slot(&room::user_rooms_key(user)), u);
        assert_ne!(cluster_slot(&session::session_key(user + 1)), u);
    }

    #[test]
    fn flags_that_do_not_fit_the_address_are_refused() {
        let mut o = RedisOptions::new("redis://h:1", Duration::from_secs(1));
        o.ca_file = Some("/ca.pem".into());
        assert!(o.validate().unwrap_err().to_string().contains("rediss://"));
        let mut o = RedisOptions::new("redis://h:1", Duration::from_secs(1));
        o.sentinel_password = Some("x".into());
        assert!(o
            .validate()
            .unwrap_err()
            .to_string()
            .contains("redis+sentinel"));
    }
}
