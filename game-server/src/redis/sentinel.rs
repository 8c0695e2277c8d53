//! Following the primary through a Sentinel failover: the redis crate's
//! `ConnectionManager` reconnects to the address it started with forever
//! (redis-rs issue 1438), so [`RedisConn::follow_primary`] asks the
//! sentinels who the primary is and swaps in a new connection when they
//! name another node.

use std::collections::HashMap;
use std::time::Duration;

use gamemesh_node::redis_address::SentinelAddress;
use gamemesh_node::redis_connection::{PubSubClient, SharedConnection};
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, FromRedisValue, RedisError, TlsCertificates,
    TlsMode,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::conn::{node_client, Primary, RedisConn};
use super::RedisOptions;

/// How often the sentinels are asked who the primary is. Short enough that
/// a failover Sentinel announced is followed within half a second even if
/// no command failed to tell us; long enough that it costs the sentinels
/// nothing (two tiny commands a second per game server).
pub const SENTINEL_POLL: Duration = Duration::from_millis(500);

/// The shortest gap between two checks, so a burst of failing commands
/// during a failover asks the sentinels a few times, not thousands.
const RECHECK_GAP: Duration = Duration::from_millis(100);

/// What following the sentinels needs; only the follower task uses it, the
/// lock is for the one-off discovery at connect time.
pub(crate) struct Sentinels {
    /// The crate's discovery: asks the sentinels, checks `ROLE`.
    pub(crate) client: SentinelClient,
    /// The monitored name.
    pub(crate) master: String,
    /// One client per sentinel, for the cheap `GET-MASTER-ADDR-BY-NAME`.
    probes: Vec<Client>,
    /// Their kept connections (opened on first use, dropped on error).
    probe_conns: Vec<Option<MultiplexedConnection>>,
}

impl RedisConn {
    /// Follows the primary through failovers until `shutdown`: asks the
    /// sentinels every [`SENTINEL_POLL`] (and at once after a failed
    /// command) and moves to the primary they name. Returns at once for a
    /// plain address, whose `ConnectionManager` reconnects by itself.
    pub async fn follow_primary(self, shutdown: CancellationToken) {
        if self.is_cluster() {
            return self.follow_cluster(shutdown).await;
        }
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

    /// True for a `redis+sentinel://` address, and for a cluster whose
    /// every shard had a replica at the last read of its slot map: the
    /// primary has replicas (the login waits for one,
    /// `session::replica_ack`).
    pub fn has_replicas(&self) -> bool {
        self.inner.sentinels.is_some()
            || (self.inner.cluster.is_some()
                && self
                    .inner
                    .cluster_replicated
                    .load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Whether the sentinels now name a primary other than `addr` (a
    /// failover has begun: what `addr` took may be lost). `None` for a
    /// plain address, or when no sentinel answered.
    pub async fn primary_moved_from(&self, addr: &str) -> Option<bool> {
        let sentinels = self.inner.sentinels.as_ref()?;
        let named = sentinels.lock().await.ask(self.inner.timeout).await?;
        Some(named != addr)
    }

    /// The replicas the sentinels know for the primary (`SENTINEL
    /// REPLICAS`, any state): a replica being promoted has left the
    /// primary's own list but not theirs. Empty for an address without
    /// sentinels, or when none answered.
    pub(crate) async fn sentinel_replicas(&self) -> Vec<(String, u16)> {
        let Some(sentinels) = &self.inner.sentinels else {
            return Vec::new();
        };
        let mut s = sentinels.lock().await;
        s.replicas(self.inner.timeout).await.unwrap_or_default()
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
            conn: SharedConnection::Single(conn),
            client: PubSubClient::Single(client),
        };
        self.inner.switches.send_modify(|n| *n += 1);
        metrics::counter!("gamemesh_redis_primary_switches_total").increment(1);
        info!(
            "Redis primary of {} moved from {current} to {addr} (Sentinel failover); new commands go there",
            s.master
        );
    }
}

impl Sentinels {
    pub(crate) fn new(
        address: &SentinelAddress,
        certs: Option<TlsCertificates>,
        options: &RedisOptions,
    ) -> Result<Self, RedisError> {
        let (sentinels, master, tls) = (&address.sentinels, &address.master, address.tls);
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
            .set_client_to_redis_db(address.db);
        if let Some(u) = &address.username {
            b = b.set_client_to_redis_username(u);
        }
        if let Some(p) = &address.password {
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
            let credentials = (
                options.sentinel_username.as_deref(),
                options.sentinel_password.as_deref(),
            );
            probes.push(node_client(host, *port, tls, credentials, certs.as_ref())?);
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
    pub(crate) async fn ask(&mut self, timeout: Duration) -> Option<String> {
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("GET-MASTER-ADDR-BY-NAME").arg(&self.master);
        // A sentinel that does not know the name answers nil: ask the next.
        let (host, port) = self
            .first::<Option<(String, u16)>>(&cmd, timeout, Option::is_some)
            .await??;
        Some(ConnectionAddr::Tcp(host, port).to_string())
    }

    /// The replicas of the primary (`host`, `port`) as the first sentinel
    /// that answers lists them, whatever their state: those it may promote.
    pub(crate) async fn replicas(&mut self, timeout: Duration) -> Option<Vec<(String, u16)>> {
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("REPLICAS").arg(&self.master);
        let listed = self
            .first::<Vec<HashMap<String, String>>>(&cmd, timeout, |_| true)
            .await?;
        Some(
            listed
                .iter()
                .filter_map(|r| Some((r.get("ip")?.clone(), r.get("port")?.parse().ok()?)))
                .collect(),
        )
    }

    /// `cmd`'s answer from the first sentinel whose answer `accept` takes,
    /// on kept connections (opened on first use, dropped on an error).
    async fn first<T: FromRedisValue>(
        &mut self,
        cmd: &redis::Cmd,
        timeout: Duration,
        accept: impl Fn(&T) -> bool,
    ) -> Option<T> {
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
            match tokio::time::timeout(timeout, cmd.query_async::<T>(conn)).await {
                Ok(Ok(answer)) if accept(&answer) => return Some(answer),
                Ok(Ok(_)) => {}
                _ => *kept = None,
            }
        }
        None
    }
}
