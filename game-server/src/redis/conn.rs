//! [`RedisConn`]: one multiplexed connection to the primary (or to a Redis
//! Cluster), shared by every Redis user in the game server, with every
//! command bounded by the timeout and every error text scrubbed of
//! secrets. The connection is a [`SharedConnection`], so no caller cares
//! which of the three deployments it talks to.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use gamemesh_node::redis_address::{redact, ClusterAddress, RedisAddress, REDACTED};
use gamemesh_node::redis_connection::{PubSubClient, SharedConnection};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::{
    Client, ConnectionAddr, ErrorKind, IntoConnectionInfo, RedisError, TlsCertificates, TlsMode,
};
use tokio::sync::{watch, Mutex, Notify};
use tracing::{info, warn};

use super::sentinel::Sentinels;
use super::target;
use super::{CommandError, RedisConnectError, RedisOptions};

/// The primary's connection, and where it points. For a Redis Cluster,
/// the cluster's: the crate follows its shards' failovers, so it is never
/// replaced.
pub(crate) struct Primary {
    /// `host:port`, to tell whether the sentinels name someone else (the
    /// seeds, for a cluster).
    pub(crate) addr: String,
    /// Multiplexed, self-reconnecting (to this address, or to the
    /// cluster's nodes).
    pub(crate) conn: SharedConnection,
    /// Its client, for connections that cannot be shared (pub/sub).
    pub(crate) client: PubSubClient,
}

/// Shared by every clone of a [`RedisConn`].
pub(crate) struct Inner {
    /// The current primary; replaced by the follower.
    pub(crate) primary: RwLock<Primary>,
    /// `Some` for `redis+sentinel://`.
    pub(crate) sentinels: Option<Mutex<Sentinels>>,
    /// Wakes the follower early (a command failed).
    pub(crate) recheck: Notify,
    /// Bound on connecting and on every command.
    pub(crate) timeout: Duration,
    /// The address, redacted, for log lines.
    pub(crate) target: String,
    /// Passwords to scrub from error texts.
    pub(crate) secrets: Vec<String>,
    /// How new primaries are connected (same timeouts as the first).
    pub(crate) manager_config: ConnectionManagerConfig,
    /// Counts primary switches, for whoever must react to one.
    pub(crate) switches: watch::Sender<u64>,
    /// `Some` for `redis+cluster://`: how to connect again.
    pub(crate) cluster: Option<ClusterSeed>,
    /// A cluster whose every slot range had a replica at the last read of
    /// its slot map (logins then wait for one).
    pub(crate) cluster_replicated: AtomicBool,
}

/// Where a write went, taken just before it: after it, whether a replica
/// has it is asked of that primary, and a primary switch in between means
/// the write may be lost ([`RedisConn::switched_since`]).
#[derive(Debug, Clone)]
pub struct WriteMark {
    /// The primary's `host:port` (a cluster's seeds).
    pub(crate) primary: String,
    /// [`RedisConn::primary_changes`] then.
    pub(crate) switches: u64,
}

/// What a cluster connection is built from, kept to build it again after
/// a shard's failover.
pub(crate) struct ClusterSeed {
    /// The seed nodes and credentials.
    address: ClusterAddress,
    /// The CA for `rediss+cluster://`.
    certs: Option<TlsCertificates>,
}

impl ClusterSeed {
    /// A client for one node of the cluster, with the nodes' credentials
    /// and TLS.
    fn node_client(&self, host: &str, port: u16) -> Option<Client> {
        let a = &self.address;
        let certs = self.certs.as_ref().filter(|_| a.tls);
        let credentials = (a.username.as_deref(), a.password.as_deref());
        node_client(host, port, a.tls, credentials, certs).ok()
    }
}

/// A client for the one server at `host:port` (a data node, a sentinel):
/// `rediss://` when `tls`, logging in with `credentials` (username,
/// password), trusting `certs` when given.
pub(crate) fn node_client(
    host: &str,
    port: u16,
    tls: bool,
    credentials: (Option<&str>, Option<&str>),
    certs: Option<&TlsCertificates>,
) -> Result<Client, RedisError> {
    let scheme = if tls { "rediss" } else { "redis" };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let mut info = format!("{scheme}://{host}:{port}").into_connection_info()?;
    let mut settings = info.redis_settings().clone();
    if let Some(u) = credentials.0 {
        settings = settings.set_username(u);
    }
    if let Some(p) = credentials.1 {
        settings = settings.set_password(p);
    }
    info = info.set_redis_settings(settings);
    match certs {
        Some(certs) if tls => Client::build_with_tls(info, certs.clone()),
        _ => Client::open(info),
    }
}

/// The game server's connection to Redis: one multiplexed connection to the
/// primary, followed through Sentinel failovers. Cheap to clone.
#[derive(Clone)]
pub struct RedisConn {
    /// Everything, shared.
    pub(crate) inner: Arc<Inner>,
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
        let target = target::parse(&options.url)?;
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
            RedisAddress::Direct { url, .. } => {
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
            RedisAddress::Sentinel(address) => {
                let mut sentinel = Sentinels::new(&address, certs, options).map_err(|e| {
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
                            "no sentinel named a primary for {:?} within {} ms",
                            address.master,
                            (timeout * 2).as_millis()
                        ),
                    })?
                    .map_err(fail)?;
                (client, Some(sentinel))
            }
            RedisAddress::Cluster(address) => {
                let primary =
                    connect_cluster(&address, certs.clone(), timeout, &shown, &scrub).await?;
                info!("Redis: {shown} (Redis Cluster)");
                let mut conn =
                    Self::from_parts(primary, None, timeout, shown, secrets, manager_config);
                if let Some(inner) = Arc::get_mut(&mut conn.inner) {
                    inner.cluster = Some(ClusterSeed { address, certs });
                }
                // Whether logins wait for a replica, known before the first.
                let _ = conn.read_slot_map().await;
                return Ok(conn);
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
        let primary = Primary {
            addr,
            conn: SharedConnection::Single(conn),
            client: PubSubClient::Single(client),
        };
        Ok(Self::from_parts(
            primary,
            sentinels,
            timeout,
            shown,
            secrets,
            manager_config,
        ))
    }

    fn from_parts(
        primary: Primary,
        sentinels: Option<Sentinels>,
        timeout: Duration,
        target: String,
        secrets: Vec<String>,
        manager_config: ConnectionManagerConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                primary: RwLock::new(primary),
                sentinels: sentinels.map(Mutex::new),
                recheck: Notify::new(),
                timeout,
                target,
                secrets,
                manager_config,
                switches: watch::Sender::new(0),
                cluster: None,
                cluster_replicated: AtomicBool::new(false),
            }),
        }
    }

    /// Builds the cluster connection again and swaps it in. After a shard's
    /// failover the crate's connection can keep sending that shard's
    /// commands to the dead primary until they time out, for tens of
    /// seconds (seen in `redis_cluster.rs`); a fresh one reads the slot
    /// map from a live node. A failure keeps the old one (the next switch
    /// or poll tries again).
    pub(crate) async fn reconnect_cluster(&self) {
        let Some(seed) = &self.inner.cluster else {
            return;
        };
        let scrub = |t: String| self.scrub(t);
        match connect_cluster(
            &seed.address,
            seed.certs.clone(),
            self.inner.timeout,
            &self.inner.target,
            &scrub,
        )
        .await
        {
            Ok(fresh) => {
                *self
                    .inner
                    .primary
                    .write()
                    .unwrap_or_else(|p| p.into_inner()) = fresh;
                info!(
                    "Redis Cluster {}: connected again after a shard's failover",
                    self.inner.target
                );
            }
            Err(e) => warn!(
                "Redis Cluster {}: could not connect again after a shard's failover: {e}",
                self.inner.target
            ),
        }
    }

    /// A client for the data node at `host:port` with the primary's
    /// credentials and TLS, for a connection of its own: a replica asked
    /// its `INFO replication` (`session::replica_ack`). `None` if none can
    /// be built.
    pub(crate) fn node_client(&self, host: &str, port: u16) -> Option<Client> {
        if let Some(seed) = &self.inner.cluster {
            return seed.node_client(host, port);
        }
        let PubSubClient::Single(primary) = &self.read_primary().client else {
            return None;
        };
        let info = primary.get_connection_info().clone();
        let addr = match info.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: host.to_string(),
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host.to_string(), port),
        };
        Client::open(info.set_addr(addr)).ok()
    }

    /// True for a Redis Cluster: a pipeline or multi-key command must then
    /// keep to one slot.
    pub fn is_cluster(&self) -> bool {
        self.read_primary().conn.is_cluster()
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

    /// Marks where a write is about to go (see [`WriteMark`]).
    pub fn write_mark(&self) -> WriteMark {
        WriteMark {
            primary: self.primary_addr(),
            switches: *self.inner.switches.borrow(),
        }
    }

    /// Whether commands moved to another primary (Sentinel) or a shard's
    /// primary changed (cluster) since `mark`.
    pub fn switched_since(&self, mark: &WriteMark) -> bool {
        *self.inner.switches.borrow() != mark.switches
    }

    /// The multiplexed connection to the current primary, for callers
    /// with their own bounds and errors (the job store). Bound each call by
    /// the timeout and report failures with
    /// [`suspect_primary`](Self::suspect_primary).
    pub fn connection(&self) -> SharedConnection {
        self.conn()
    }

    /// A client for the current primary (same TLS and credentials), for
    /// connections that cannot be multiplexed: pub/sub. After a failover
    /// it names the new primary; [`primary_changes`](Self::primary_changes)
    /// says when to open a new one.
    pub fn primary_client(&self) -> PubSubClient {
        self.read_primary().client.clone()
    }

    /// A command through [`connection`](Self::connection) failed: with
    /// Sentinel, ask the sentinels now rather than at the next poll.
    pub fn suspect_primary(&self) {
        if self.inner.sentinels.is_some() || self.is_cluster() {
            self.inner.recheck.notify_one();
        }
    }

    /// Runs one command within the timeout.
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, CommandError> {
        let mut conn = self.conn();
        self.bounded(cmd.query_async(&mut conn)).await
    }

    /// Runs a pipeline within the timeout.
    pub async fn query_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, CommandError> {
        let mut conn = self.conn();
        self.bounded(pipe.query_async(&mut conn)).await
    }

    /// Runs a script within the timeout (`EVALSHA`, loading the script
    /// when the server does not have it: after a restart or a failover to
    /// a replica that never saw it).
    pub async fn invoke<T: redis::FromRedisValue>(
        &self,
        inv: redis::ScriptInvocation<'_>,
    ) -> Result<T, CommandError> {
        let mut conn = self.conn();
        self.bounded(inv.invoke_async(&mut conn)).await
    }

    pub(crate) fn read_primary(&self) -> std::sync::RwLockReadGuard<'_, Primary> {
        self.inner.primary.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn conn(&self) -> SharedConnection {
        self.read_primary().conn.clone()
    }

    pub(crate) fn scrub(&self, text: String) -> String {
        scrub_secrets(text, &self.inner.secrets)
    }

    pub(crate) async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, CommandError> {
        let metrics = crate::metrics::hub();
        let start = std::time::Instant::now();
        let outcome = tokio::time::timeout(self.inner.timeout, fut).await;
        metrics.redis_seconds.record(start.elapsed().as_secs_f64());
        let result = match outcome {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => {
                metrics.redis_errors.increment(1);
                CommandError(self.scrub(e.to_string()))
            }
            Err(_) => {
                metrics.redis_timeouts.increment(1);
                CommandError(format!(
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

/// Connects to a Redis Cluster through its seeds and checks it answers
/// `PING`. Two clients: commands speak RESP2 (the replies every store
/// parses), pub/sub RESP3 (sharded messages arrive as pushes).
async fn connect_cluster(
    address: &ClusterAddress,
    certs: Option<TlsCertificates>,
    timeout: Duration,
    shown: &str,
    scrub: &(dyn Fn(String) -> String + Sync),
) -> Result<Primary, RedisConnectError> {
    let build = |resp3: bool| -> Result<ClusterClient, RedisConnectError> {
        let mut b = address.client_builder(timeout, resp3);
        if address.tls {
            b = b.tls(TlsMode::Secure);
            if let Some(certs) = &certs {
                b = b.certs(certs.clone());
            }
        }
        b.build().map_err(|e| {
            RedisConnectError::Config(format!(
                "REDIS_CONNECTION {shown} cannot be used: {}",
                scrub(e.to_string())
            ))
        })
    };
    let commands = build(false)?;
    let pubsub = build(true)?;
    let fail = |e: RedisError| classify(shown, scrub(e.to_string()), &e);
    let mut conn = tokio::time::timeout(timeout * 2, commands.get_async_connection())
        .await
        .map_err(|_| RedisConnectError::Unreachable {
            target: shown.to_string(),
            reason: format!(
                "no cluster node answered within {} ms",
                (timeout * 2).as_millis()
            ),
        })?
        .map_err(fail)?;
    tokio::time::timeout(timeout, redis::cmd("PING").query_async::<String>(&mut conn))
        .await
        .map_err(|_| RedisConnectError::Unreachable {
            target: shown.to_string(),
            reason: format!("no answer to PING within {} ms", timeout.as_millis()),
        })?
        .map_err(fail)?;
    let addr = address
        .nodes
        .iter()
        .map(|(h, p)| format!("{h}:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    Ok(Primary {
        addr,
        conn: SharedConnection::Cluster(conn),
        client: PubSubClient::Cluster(pubsub),
    })
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
    let lower = reason.to_ascii_lowercase();
    // The cluster client reports a failed first connect as an I/O error
    // whose text carries the node's error ("Failed to create initial
    // connections - Io: Password authentication failed -
    // AuthenticationFailed"), so the text is read too.
    let auth = e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
        || reason.contains("WRONGPASS")
        || reason.contains("NOAUTH")
        || lower.contains("authentication failed")
        || lower.contains("authenticationfailed");
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
            text = text.replace(s.as_str(), REDACTED);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_every_secret() {
        let secrets = vec!["pw1".to_string(), "sentinel-pw".to_string()];
        assert_eq!(
            scrub_secrets("auth pw1 and sentinel-pw failed".into(), &secrets),
            "auth *** and *** failed"
        );
    }
}
