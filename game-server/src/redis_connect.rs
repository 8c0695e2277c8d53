//! Every connection the game server makes to Redis starts here: the session
//! store ([`crate::session::redis`]), the node registry
//! ([`crate::membership`]) and the background jobs ([`crate::background`],
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
//! [`redact`], and every error text is scrubbed of the passwords we hold.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ErrorKind, IntoConnectionInfo, RedisError,
    TlsCertificates, TlsMode,
};
use thiserror::Error;
use tokio::sync::{watch, Mutex, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::config::Config;
use crate::session::StoreError;

/// How often the sentinels are asked who the primary is. Short enough that
/// a failover Sentinel announced is followed within half a second even if
/// no command failed to tell us; long enough that it costs the sentinels
/// nothing (two tiny commands a second per game server).
pub const SENTINEL_POLL: Duration = Duration::from_millis(500);

/// The shortest gap between two checks, so a burst of failing commands
/// during a failover asks the sentinels a few times, not thousands.
const RECHECK_GAP: Duration = Duration::from_millis(100);

/// Sentinel's well-known port, for sentinel addresses given without one.
const SENTINEL_PORT: u16 = 26379;

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

    /// The Redis options of a game server's flags.
    pub fn from_config(config: &Config) -> Self {
        Self {
            url: config.redis.clone(),
            ca_file: config.redis_ca_file.clone(),
            sentinel_username: config.redis_sentinel_username.clone(),
            sentinel_password: config.redis_sentinel_password.clone(),
            timeout: Duration::from_millis(config.redis_timeout_ms),
        }
    }

    /// Checks the address and its flags fit together, without connecting.
    pub fn validate(&self) -> Result<(), RedisConnectError> {
        let target = Target::parse(&self.url)?;
        if self.ca_file.is_some() && !target.tls() {
            return Err(RedisConnectError::Config(format!(
                "--redis-ca-file is set but {} does not use TLS: use rediss:// (or rediss+sentinel://), or drop --redis-ca-file",
                redact(&self.url)
            )));
        }
        if (self.sentinel_password.is_some() || self.sentinel_username.is_some())
            && !matches!(target, Target::Sentinel { .. })
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
        if let Ok(target) = Target::parse(&self.url) {
            if let Some(p) = target.password() {
                secrets.push(p.to_string());
            }
        }
        secrets.extend(self.sentinel_password.clone());
        secrets.retain(|s| !s.is_empty());
        secrets
    }
}

/// A parsed `--redis` value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// One Redis: the URL the redis crate parses itself.
    Direct {
        /// A `redis://` or `rediss://` URL.
        url: String,
        /// `rediss://`.
        tls: bool,
    },
    /// A primary named by sentinels.
    Sentinel {
        /// Sentinel addresses, in the order given.
        sentinels: Vec<(String, u16)>,
        /// The name the sentinels monitor the primary under.
        master: String,
        /// Database number on the data nodes.
        db: i64,
        /// Data nodes' ACL user.
        username: Option<String>,
        /// Data nodes' password.
        password: Option<String>,
        /// `rediss+sentinel://`.
        tls: bool,
    },
}

impl Target {
    fn parse(url: &str) -> Result<Self, RedisConnectError> {
        let bad = |why: &str| {
            Err(RedisConnectError::Config(format!(
                "REDIS_CONNECTION {} is not a Redis address: {why}",
                redact(url)
            )))
        };
        let (scheme, rest) = match url.split_once("://") {
            Some((scheme, rest)) => (scheme, rest),
            None => ("redis", url),
        };
        match scheme {
            "redis" | "rediss" => {
                let url = if url.contains("://") {
                    url.to_string()
                } else {
                    format!("redis://{url}")
                };
                // The crate's own parse; its message is not shown, since
                // it may quote the URL.
                if url.as_str().into_connection_info().is_err() {
                    return bad("expected host:port or redis[s]://[user:pass@]host:port[/db]");
                }
                Ok(Target::Direct {
                    url,
                    tls: scheme == "rediss",
                })
            }
            "redis+sentinel" | "rediss+sentinel" => {
                let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
                let (userinfo, hosts) = match authority.rsplit_once('@') {
                    Some((u, h)) => (Some(u), h),
                    None => (None, authority),
                };
                let (username, password) = match userinfo {
                    None => (None, None),
                    Some(u) => match u.split_once(':') {
                        Some((user, pass)) => (
                            Some(percent_decode(user)).filter(|u| !u.is_empty()),
                            Some(percent_decode(pass)),
                        ),
                        // Like redis://pass@host: a lone userinfo is a password.
                        None => (None, Some(percent_decode(u))),
                    },
                };
                let mut sentinels = Vec::new();
                for host in hosts.split(',').filter(|h| !h.is_empty()) {
                    match split_host_port(host, SENTINEL_PORT) {
                        Some(hp) => sentinels.push(hp),
                        None => return bad(&format!("bad sentinel address {host:?}")),
                    }
                }
                if sentinels.is_empty() {
                    return bad("no sentinel address before the master name");
                }
                let mut parts = path.split('/');
                let master = percent_decode(parts.next().unwrap_or(""));
                if master.is_empty() {
                    return bad(
                        "the master name is missing (redis+sentinel://host:port/<master-name>)",
                    );
                }
                let db = match parts.next().filter(|d| !d.is_empty()) {
                    None => 0,
                    Some(d) => match d.parse() {
                        Ok(db) => db,
                        Err(_) => return bad(&format!("database {d:?} is not a number")),
                    },
                };
                Ok(Target::Sentinel {
                    sentinels,
                    master,
                    db,
                    username,
                    password,
                    tls: scheme == "rediss+sentinel",
                })
            }
            other => bad(&format!(
                "unknown scheme {other:?} (use redis, rediss, redis+sentinel or rediss+sentinel)"
            )),
        }
    }

    fn tls(&self) -> bool {
        match self {
            Target::Direct { tls, .. } | Target::Sentinel { tls, .. } => *tls,
        }
    }

    fn password(&self) -> Option<String> {
        match self {
            Target::Direct { url, .. } => url
                .as_str()
                .into_connection_info()
                .ok()
                .and_then(|i| i.redis_settings().password().map(str::to_string)),
            Target::Sentinel { password, .. } => password.clone(),
        }
    }
}

/// `host:port` or `[v6]:port`; `default` when the port is left out.
fn split_host_port(s: &str, default: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        None => default,
        Some(p) => p.parse().ok()?,
    };
    Some((host.to_string(), port))
}

/// Decodes `%XX` escapes (URL userinfo and names); anything malformed is
/// kept as written.
fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The address with its password (and any query string) replaced by
/// `***`, for logs and errors: `redis://app:***@host:6379`. A lone userinfo
/// (`redis://secret@host`) is a password too and is hidden whole.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{hosts}"),
            None => format!("***@{hosts}"),
        },
        None => authority.to_string(),
    };
    let path = match path.split_once('?') {
        Some((p, _)) => format!("{p}?***"),
        None => path.to_string(),
    };
    format!("{scheme}://{authority}{path}")
}

/// The primary's connection, and where it points.
struct Primary {
    /// `host:port`, to tell whether the sentinels name someone else.
    addr: String,
    /// Multiplexed, self-reconnecting (to this address).
    conn: ConnectionManager,
    /// Its client, for connections that cannot be shared (pub/sub).
    client: Client,
}

/// What following the sentinels needs; only the follower task uses it, the
/// lock is for the one-off discovery at connect time.
struct Sentinels {
    /// The crate's discovery: asks the sentinels, checks `ROLE`.
    client: SentinelClient,
    /// The monitored name.
    master: String,
    /// One client per sentinel, for the cheap `GET-MASTER-ADDR-BY-NAME`.
    probes: Vec<Client>,
    /// Their kept connections (opened on first use, dropped on error).
    probe_conns: Vec<Option<MultiplexedConnection>>,
}

/// Shared by every clone of a [`RedisConn`].
struct Inner {
    /// The current primary; replaced by the follower.
    primary: RwLock<Primary>,
    /// `Some` for `redis+sentinel://`.
    sentinels: Option<Mutex<Sentinels>>,
    /// Wakes the follower early (a command failed).
    recheck: Notify,
    /// Bound on connecting and on every command.
    timeout: Duration,
    /// The address, redacted, for log lines.
    target: String,
    /// Passwords to scrub from error texts.
    secrets: Vec<String>,
    /// How new primaries are connected (same timeouts as the first).
    manager_config: ConnectionManagerConfig,
    /// Counts primary switches, for whoever must react to one.
    switches: watch::Sender<u64>,
}

/// The game server's connection to Redis: one multiplexed connection to the
/// primary, followed through Sentinel failovers. Cheap to clone.
#[derive(Clone)]
pub struct RedisConn {
    /// Everything, shared.
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn")
            .field("target", &self.inner.target)
            .field("primary", &self.primary_addr())
            .finish()
    }
}

impl RedisConn {
    /// Connects to the primary (through the sentinels if the address says
    /// so) and checks it answers `PING`, all within about twice the
    /// timeout. Call [`follow_primary`](Self::follow_primary) on a task to
    /// follow failovers.
    pub async fn connect(options: &RedisOptions) -> Result<Self, RedisConnectError> {
        options.validate()?;
        let target = Target::parse(&options.url)?;
        let shown = redact(&options.url);
        let secrets = options.secrets();
        let scrub = |s: String| scrub_secrets(s, &secrets);
        let certs = match &options.ca_file {
            Some(path) => Some(read_ca(path)?),
            None => None,
        };
        if target.tls() {
            // The redis crate enables rustls without a crypto provider;
            // ring is ours. An Err means one is installed already: fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let timeout = options.timeout;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let fail = |e: RedisError| classify(&shown, scrub(e.to_string()), &e);

        let (client, sentinels) = match target {
            Target::Direct { url, .. } => {
                let client = match certs {
                    Some(certs) => Client::build_with_tls(url.as_str(), certs),
                    None => Client::open(url.as_str()),
                }
                .map_err(|e| {
                    RedisConnectError::Config(format!(
                        "REDIS_CONNECTION {shown} cannot be used: {}",
                        scrub(e.to_string())
                    ))
                })?;
                (client, None)
            }
            Target::Sentinel {
                sentinels,
                master,
                db,
                username,
                password,
                tls,
            } => {
                let mut sentinel = Sentinels::new(
                    &sentinels, &master, db, username, password, tls, certs, options,
                )
                .map_err(|e| {
                    RedisConnectError::Config(format!(
                        "REDIS_CONNECTION {shown} cannot be used: {}",
                        scrub(e.to_string())
                    ))
                })?;
                let client = tokio::time::timeout(timeout * 2, sentinel.client.async_get_client())
                    .await
                    .map_err(|_| RedisConnectError::Unreachable {
                        target: shown.clone(),
                        reason: format!(
                            "no sentinel named a primary for {master:?} within {} ms",
                            (timeout * 2).as_millis()
                        ),
                    })?
                    .map_err(fail)?;
                (client, Some(sentinel))
            }
        };
        let addr = client.get_connection_info().addr().to_string();
        let conn = tokio::time::timeout(
            timeout * 2,
            ConnectionManager::new_with_config(client.clone(), manager_config.clone()),
        )
        .await
        .map_err(|_| RedisConnectError::Unreachable {
            target: shown.clone(),
            reason: format!("connect timed out after {} ms", (timeout * 2).as_millis()),
        })?
        .map_err(fail)?;
        let mut ping = conn.clone();
        tokio::time::timeout(timeout, redis::cmd("PING").query_async::<String>(&mut ping))
            .await
            .map_err(|_| RedisConnectError::Unreachable {
                target: shown.clone(),
                reason: format!("no answer to PING within {} ms", timeout.as_millis()),
            })?
            .map_err(fail)?;
        if sentinels.is_some() {
            info!("Redis: {shown}, primary at {addr}");
        } else {
            info!("Redis: {shown}");
        }
        Ok(Self {
            inner: Arc::new(Inner {
                primary: RwLock::new(Primary { addr, conn, client }),
                sentinels: sentinels.map(Mutex::new),
                recheck: Notify::new(),
                timeout,
                target: shown,
                secrets,
                manager_config,
                switches: watch::Sender::new(0),
            }),
        })
    }

    /// The address, redacted (for log lines).
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// `host:port` of the primary commands go to now.
    pub fn primary_addr(&self) -> String {
        self.read_primary().addr.clone()
    }

    /// Changes (a count) each time commands move to a new primary. Writes
    /// the old primary acknowledged after the sentinels promoted another
    /// node are lost with it, so whoever saved through it must save again.
    pub fn primary_changes(&self) -> watch::Receiver<u64> {
        self.inner.switches.subscribe()
    }

    /// The multiplexed connection to the current primary, for callers
    /// with their own bounds and errors (the job store). Bound each call by
    /// the timeout and report failures with
    /// [`suspect_primary`](Self::suspect_primary).
    pub fn connection(&self) -> ConnectionManager {
        self.conn()
    }

    /// A client for the current primary (same TLS and credentials), for
    /// connections that cannot be multiplexed: pub/sub. After a failover
    /// it names the new primary; [`primary_changes`](Self::primary_changes)
    /// says when to open a new one.
    pub fn primary_client(&self) -> Client {
        self.read_primary().client.clone()
    }

    /// A command through [`connection`](Self::connection) failed: with
    /// Sentinel, ask the sentinels now rather than at the next poll.
    pub fn suspect_primary(&self) {
        if self.inner.sentinels.is_some() {
            self.inner.recheck.notify_one();
        }
    }

    /// Runs one command within the timeout.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn();
        self.bounded(cmd.query_async(&mut conn)).await
    }

    /// Runs a pipeline within the timeout.
    pub async fn query_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        self.bounded(pipe.query_async(&mut conn)).await
    }

    /// Runs a script within the timeout (`EVALSHA`, loading the script
    /// when the server does not have it: after a restart or a failover to
    /// a replica that never saw it).
    pub async fn invoke<T: redis::FromRedisValue>(
        &self,
        inv: redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        self.bounded(inv.invoke_async(&mut conn)).await
    }

    /// Follows the primary through failovers until `shutdown`: asks the
    /// sentinels every [`SENTINEL_POLL`] (and at once after a failed
    /// command) and moves to the primary they name. Returns at once for a
    /// plain address, whose `ConnectionManager` reconnects by itself.
    pub async fn follow_primary(self, shutdown: CancellationToken) {
        let Some(sentinels) = &self.inner.sentinels else {
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(SENTINEL_POLL) => {}
                _ = self.inner.recheck.notified() => {}
            }
            self.check_primary(&mut *sentinels.lock().await).await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(RECHECK_GAP) => {}
            }
        }
    }

    /// One look at the sentinels; swaps the primary if they name another.
    async fn check_primary(&self, s: &mut Sentinels) {
        let current = self.primary_addr();
        let Some(named) = s.ask(self.inner.timeout).await else {
            debug!(
                "Redis: no sentinel of {} answered; keeping primary {current}",
                self.inner.target
            );
            return;
        };
        if named == current {
            return;
        }
        // The sentinel that answered names someone else. Let the crate's
        // discovery confirm it (it asks the sentinels in order and checks
        // the node answers ROLE as a primary) before we move.
        let client =
            match tokio::time::timeout(self.inner.timeout * 2, s.client.async_get_client()).await {
                Ok(Ok(client)) => client,
                Ok(Err(e)) => {
                    debug!(
                        "Redis: sentinels name {named} for {}, not confirmed yet: {}",
                        s.master,
                        self.scrub(e.to_string())
                    );
                    return;
                }
                Err(_) => {
                    debug!("Redis: confirming primary {named} timed out");
                    return;
                }
            };
        let addr = client.get_connection_info().addr().to_string();
        if addr == current {
            return;
        }
        let conn = match tokio::time::timeout(
            self.inner.timeout * 2,
            ConnectionManager::new_with_config(client.clone(), self.inner.manager_config.clone()),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                debug!(
                    "Redis: cannot connect to the new primary {addr} yet: {}",
                    self.scrub(e.to_string())
                );
                return;
            }
            Err(_) => {
                debug!("Redis: connecting to the new primary {addr} timed out");
                return;
            }
        };
        *self
            .inner
            .primary
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Primary {
            addr: addr.clone(),
            conn,
            client,
        };
        self.inner.switches.send_modify(|n| *n += 1);
        metrics::counter!("gamemesh_redis_primary_switches_total").increment(1);
        info!(
            "Redis primary of {} moved from {current} to {addr} (Sentinel failover); new commands go there",
            s.master
        );
    }

    fn read_primary(&self) -> std::sync::RwLockReadGuard<'_, Primary> {
        self.inner.primary.read().unwrap_or_else(|p| p.into_inner())
    }

    fn conn(&self) -> ConnectionManager {
        self.read_primary().conn.clone()
    }

    fn scrub(&self, text: String) -> String {
        scrub_secrets(text, &self.inner.secrets)
    }

    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let metrics = crate::metrics::hub();
        let start = std::time::Instant::now();
        let outcome = tokio::time::timeout(self.inner.timeout, fut).await;
        metrics.redis_seconds.record(start.elapsed().as_secs_f64());
        let result = match outcome {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => {
                metrics.redis_errors.increment(1);
                StoreError::Unavailable(self.scrub(e.to_string()))
            }
            Err(_) => {
                metrics.redis_timeouts.increment(1);
                StoreError::Unavailable(format!(
                    "no answer within {} ms",
                    self.inner.timeout.as_millis()
                ))
            }
        };
        // Maybe the primary moved: ask the sentinels now rather than at
        // the next poll.
        self.suspect_primary();
        Err(result)
    }
}

impl Sentinels {
    #[allow(clippy::too_many_arguments)]
    fn new(
        sentinels: &[(String, u16)],
        master: &str,
        db: i64,
        username: Option<String>,
        password: Option<String>,
        tls: bool,
        certs: Option<TlsCertificates>,
        options: &RedisOptions,
    ) -> Result<Self, RedisError> {
        let addrs = sentinels.iter().map(|(host, port)| {
            if tls {
                ConnectionAddr::TcpTls {
                    host: host.clone(),
                    port: *port,
                    insecure: false,
                    tls_params: None,
                }
            } else {
                ConnectionAddr::Tcp(host.clone(), *port)
            }
        });
        let mut b = SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)?
            .set_client_to_redis_db(db);
        if let Some(u) = &username {
            b = b.set_client_to_redis_username(u);
        }
        if let Some(p) = &password {
            b = b.set_client_to_redis_password(p);
        }
        if let Some(u) = &options.sentinel_username {
            b = b.set_client_to_sentinel_username(u);
        }
        if let Some(p) = &options.sentinel_password {
            b = b.set_client_to_sentinel_password(p);
        }
        if tls {
            b = b
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(TlsMode::Secure);
            if let Some(certs) = &certs {
                b = b
                    .set_client_to_redis_certificates(certs.clone())
                    .set_client_to_sentinel_certificates(certs.clone());
            }
        }
        let client = b.build()?;

        let mut probes = Vec::with_capacity(sentinels.len());
        for (host, port) in sentinels {
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.clone()
            };
            let scheme = if tls { "rediss" } else { "redis" };
            let mut info = format!("{scheme}://{host}:{port}").into_connection_info()?;
            let mut settings = info.redis_settings().clone();
            if let Some(u) = &options.sentinel_username {
                settings = settings.set_username(u);
            }
            if let Some(p) = &options.sentinel_password {
                settings = settings.set_password(p);
            }
            info = info.set_redis_settings(settings);
            probes.push(match &certs {
                Some(certs) if tls => Client::build_with_tls(info, certs.clone())?,
                _ => Client::open(info)?,
            });
        }
        Ok(Self {
            client,
            master: master.to_string(),
            probe_conns: probes.iter().map(|_| None).collect(),
            probes,
        })
    }

    /// The primary's `host:port` as the first sentinel that answers names
    /// it, or `None` if none does.
    async fn ask(&mut self, timeout: Duration) -> Option<String> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        for (probe, kept) in self.probes.iter().zip(self.probe_conns.iter_mut()) {
            if kept.is_none() {
                match tokio::time::timeout(
                    timeout,
                    probe.get_multiplexed_async_connection_with_config(&config),
                )
                .await
                {
                    Ok(Ok(c)) => *kept = Some(c),
                    _ => continue,
                }
            }
            let Some(conn) = kept.as_mut() else {
                continue;
            };
            let mut cmd = redis::cmd("SENTINEL");
            cmd.arg("GET-MASTER-ADDR-BY-NAME").arg(&self.master);
            match tokio::time::timeout(timeout, cmd.query_async::<Option<(String, u16)>>(conn))
                .await
            {
                Ok(Ok(Some((host, port)))) => {
                    return Some(ConnectionAddr::Tcp(host, port).to_string());
                }
                // This sentinel does not know the name: ask the next.
                Ok(Ok(None)) => {}
                _ => *kept = None,
            }
        }
        None
    }
}

/// Reads the CA file for `rediss://`.
fn read_ca(path: &Path) -> Result<TlsCertificates, RedisConnectError> {
    let pem = std::fs::read(path).map_err(|e| {
        RedisConnectError::Config(format!(
            "cannot read --redis-ca-file {}: {e}",
            path.display()
        ))
    })?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(RedisConnectError::Config(format!(
            "--redis-ca-file {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    })
}

/// Sorts a failed connect into what the operator must fix.
fn classify(target: &str, reason: String, e: &RedisError) -> RedisConnectError {
    let target = target.to_string();
    let auth = e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
        || reason.contains("WRONGPASS")
        || reason.contains("NOAUTH");
    let lower = reason.to_ascii_lowercase();
    if auth {
        RedisConnectError::Auth { target, reason }
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        RedisConnectError::Tls { target, reason }
    } else {
        RedisConnectError::Unreachable { target, reason }
    }
}

/// Replaces every secret in `text` by `***`.
fn scrub_secrets(mut text: String, secrets: &[String]) -> String {
    for s in secrets {
        if text.contains(s.as_str()) {
            text = text.replace(s.as_str(), "***");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_host_port_form_still_works() {
        assert_eq!(
            Target::parse("127.0.0.1:6379").unwrap(),
            Target::Direct {
                url: "redis://127.0.0.1:6379".into(),
                tls: false
            }
        );
    }

    #[test]
    fn url_forms_are_recognised() {
        assert!(!Target::parse("redis://u:p@h:1/2").unwrap().tls());
        assert!(Target::parse("rediss://h:1").unwrap().tls());
        assert_eq!(
            Target::parse("redis+sentinel://app:p%40ss@s1:1,s2,[::1]:3/gm/4").unwrap(),
            Target::Sentinel {
                sentinels: vec![
                    ("s1".into(), 1),
                    ("s2".into(), SENTINEL_PORT),
                    ("::1".into(), 3)
                ],
                master: "gm".into(),
                db: 4,
                username: Some("app".into()),
                password: Some("p@ss".into()),
                tls: false,
            }
        );
        assert!(Target::parse("rediss+sentinel://:pw@s1:1/gm")
            .unwrap()
            .tls());
    }

    #[test]
    fn bad_addresses_are_refused_without_showing_the_password() {
        for url in [
            "redis+sentinel://:hunter2@s1:1/",
            "redis+sentinel://:hunter2@/gm",
            "redis+sentinel://:hunter2@s1:x/gm",
            "redis+sentinel://:hunter2@s1:1/gm/x",
            "memcached://:hunter2@h:1",
        ] {
            let e = Target::parse(url).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{e}");
            assert!(e.contains("is not a Redis address"), "{e}");
        }
    }

    #[test]
    fn redact_hides_passwords_and_keeps_the_rest() {
        assert_eq!(redact("127.0.0.1:6379"), "127.0.0.1:6379");
        assert_eq!(redact("redis://h:1/2"), "redis://h:1/2");
        assert_eq!(redact("redis://app:s3cret@h:1/2"), "redis://app:***@h:1/2");
        assert_eq!(redact("rediss://:s3cret@h:1"), "rediss://:***@h:1");
        assert_eq!(redact("redis://s3cret@h:1"), "redis://***@h:1");
        assert_eq!(
            redact("redis+sentinel://app:s3:cret@a:1,b:2/gm"),
            "redis+sentinel://app:***@a:1,b:2/gm"
        );
        assert_eq!(redact("redis://h:1/0?password=x"), "redis://h:1/0?***");
    }

    #[test]
    fn scrub_removes_every_secret() {
        let secrets = vec!["pw1".to_string(), "sentinel-pw".to_string()];
        assert_eq!(
            scrub_secrets("auth pw1 and sentinel-pw failed".into(), &secrets),
            "auth *** and *** failed"
        );
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

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%40b%3Ac"), "a@b:c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
