//! A real Redis Cluster for tests: three primaries and three replicas,
//! each a `redis-server --cluster-enabled yes` child on free ports, joined
//! by `redis-cli --cluster create ... --cluster-replicas 1`.
//!
//! [`RedisCluster::start`] returns once every node says `cluster_state:ok`,
//! knows all six nodes, lists a replica for every slot range (what a
//! client sees), and every replica's link to its primary is up (so a
//! failover test starts from replicas that hold the data). The node
//! timeout is short (1 s by default) so a killed primary's replica takes
//! over in test time.
//!
//! Each node's cluster bus gets its own free port (`--cluster-port`): the
//! default, port + 10000, may not exist for an ephemeral port.
//!
//! As production secures it ([`RedisClusterOptions`]): `acl` makes every
//! node require a password, the default user's for the nodes themselves
//! (replication, `redis-cli --cluster create`, the test's inspection) and
//! [`ACL_USER`]'s, with the same least privilege as
//! [`AclRedis`](crate::AclRedis), for the code under test; `tls` makes
//! every node speak TLS only (no plain port; clients, replication and the
//! cluster bus over TLS, certificates from [`TlsFiles`]). A `redis-server`
//! without TLS makes a `tls` start panic with how to get one that has it.
//!
//! ```no_run
//! use gamemesh_test_support::{RedisCluster, RedisClusterOptions};
//!
//! let cluster = RedisCluster::start_with(RedisClusterOptions {
//!     acl: true,
//!     tls: true,
//!     ..RedisClusterOptions::default()
//! });
//! let url = cluster.url(); // "rediss+cluster://gamemesh:<password>@127.0.0.1:P1,..."
//! let ca = cluster.ca_file(); // Some(the CA to trust: --redis-ca-file)
//! ```

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::free_port;
use crate::redis_security::{lacks_tls, tls_client, TlsFiles, TlsUnsupported, ACL_RULE, ACL_USER};
use crate::redis_server::RedisServer;

/// [`ACL_USER`]'s password on an `acl` cluster.
const USER_PASSWORD: &str = "gm-cluster-user-pw";

/// The default user's password on an `acl` cluster (the nodes' own and
/// the test's, never the code under test's).
const ADMIN_PASSWORD: &str = "gm-cluster-admin-pw";

/// How long the nodes may take to agree after `redis-cli --cluster create`.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);

/// Between checks of the cluster's state.
const POLL: Duration = Duration::from_millis(50);

/// How the cluster is started.
#[derive(Debug, Clone)]
pub struct RedisClusterOptions {
    /// Primaries (each gets one replica).
    pub primaries: usize,
    /// `cluster-node-timeout`: how long a primary may be unreachable
    /// before its replica is promoted.
    pub node_timeout_ms: u64,
    /// Every node requires a password: [`ACL_USER`]'s ([`ACL_RULE`]) in
    /// [`url`](RedisCluster::url), the default user's for the nodes and
    /// the test.
    pub acl: bool,
    /// Every node speaks TLS only: clients, replication and the cluster
    /// bus; [`url`](RedisCluster::url) is `rediss+cluster://` and
    /// [`ca_file`](RedisCluster::ca_file) the CA to trust.
    pub tls: bool,
}

impl Default for RedisClusterOptions {
    fn default() -> Self {
        Self {
            primaries: 3,
            node_timeout_ms: 1000,
            acl: false,
            tls: false,
        }
    }
}

/// A running Redis Cluster; every node is killed and reaped on drop.
#[derive(Debug)]
pub struct RedisCluster {
    /// Every node, in start order (primaries first as `redis-cli` assigns
    /// them, but roles change on failover: ask [`primary_ports`](Self::primary_ports)).
    nodes: Vec<RedisServer>,
    /// Passwords are required ([`RedisClusterOptions::acl`]).
    acl: bool,
    /// The certificates of a TLS-only cluster; removed on drop, after the
    /// nodes (fields drop in order).
    tls: Option<TlsFiles>,
}

impl RedisCluster {
    /// Three primaries and three replicas, node timeout 1 s.
    ///
    /// # Panics
    ///
    /// If `redis-server`/`redis-cli` is missing or the cluster does not
    /// form within 30 s (with what the nodes said).
    pub fn start() -> RedisCluster {
        Self::start_with(RedisClusterOptions::default())
    }

    /// A cluster as `options` says.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_with(options: RedisClusterOptions) -> RedisCluster {
        let tls = options.tls.then(TlsFiles::generate);
        let nodes: Vec<RedisServer> = (0..options.primaries * 2)
            .map(|_| start_node(&options, tls.as_ref()))
            .collect();
        let cluster = RedisCluster {
            nodes,
            acl: options.acl,
            tls,
        };
        cluster.create(options.primaries);
        cluster
    }

    /// `redis-cli --cluster create`, then waits until the cluster is whole.
    fn create(&self, primaries: usize) {
        let mut cli = Command::new("redis-cli");
        cli.args(self.cli_access());
        cli.arg("--cluster").arg("create");
        for n in &self.nodes {
            cli.arg(n.addr());
        }
        let out = cli
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-cli (install redis-tools / redis-server): {e}")
            });
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + FORM_TIMEOUT;
        loop {
            let (ok, why) = self.whole(primaries);
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster did not form within {FORM_TIMEOUT:?}: {why}"
            );
            std::thread::sleep(POLL);
        }
    }

    /// `redis-cli`'s flags to reach the nodes: TLS with the CA, the
    /// default user's password.
    fn cli_access(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(files) = &self.tls {
            args.push("--tls".to_string());
            args.push("--cacert".to_string());
            args.push(files.ca_file().display().to_string());
        }
        if self.acl {
            args.extend(["-a", ADMIN_PASSWORD, "--no-auth-warning"].map(String::from));
        }
        args
    }

    /// Every node ok, knowing every other and listing a replica for each
    /// range, `primaries` primaries with slots, every replica's link up.
    /// The text says what is missing.
    fn whole(&self, primaries: usize) -> (bool, String) {
        for n in &self.nodes {
            let info = match self.command(n.port(), &["CLUSTER", "INFO"]) {
                Ok(i) => i,
                Err(e) => return (false, format!("{}: {e}", n.addr())),
            };
            if !info.contains("cluster_state:ok")
                || !info.contains(&format!("cluster_known_nodes:{}", self.nodes.len()))
            {
                return (false, format!("{}: {info}", n.addr()));
            }
            let repl = self
                .command(n.port(), &["INFO", "replication"])
                .unwrap_or_default();
            if repl.contains("role:slave") && !repl.contains("master_link_status:up") {
                return (false, format!("{}: replica link not up", n.addr()));
            }
            // Clients see the replicas: every node's CLUSTER SLOTS lists
            // one for each range. (A node learns a replica's primary and
            // replication offset by gossip, after it is ok itself, and
            // leaves out a replica whose offset it knows as 0.)
            let replicated = self.slot_ranges(n.port()).map(|ranges| {
                ranges
                    .iter()
                    .filter(|r| matches!(r, redis::Value::Array(f) if f.len() > 3))
                    .count()
            });
            if replicated != Ok(primaries) {
                return (
                    false,
                    format!("{} lists replicas for {replicated:?} ranges", n.addr()),
                );
            }
        }
        let p = self.primary_ports();
        (p.len() == primaries, format!("primaries with slots: {p:?}"))
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...` (every node a
    /// seed); `rediss+cluster://` for TLS, with [`ACL_USER`] and its
    /// password for `acl`.
    pub fn url(&self) -> String {
        if self.acl {
            self.url_with_password(USER_PASSWORD)
        } else {
            self.url_with_credentials("")
        }
    }

    /// [`url`](Self::url) with [`ACL_USER`] and another password (to see
    /// it refused).
    pub fn url_with_password(&self, password: &str) -> String {
        self.url_with_credentials(&format!("{ACL_USER}:{password}@"))
    }

    /// [`url`](Self::url) with no user and no password.
    pub fn url_without_password(&self) -> String {
        self.url_with_credentials("")
    }

    fn url_with_credentials(&self, credentials: &str) -> String {
        let scheme = if self.tls.is_some() {
            "rediss+cluster"
        } else {
            "redis+cluster"
        };
        let seeds: Vec<String> = self.nodes.iter().map(RedisServer::addr).collect();
        format!("{scheme}://{credentials}{}", seeds.join(","))
    }

    /// [`ACL_USER`]'s password, for an `acl` cluster.
    pub fn password(&self) -> Option<&str> {
        self.acl.then_some(USER_PASSWORD)
    }

    /// The CA that signed every node's certificate, for a `tls` cluster.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(TlsFiles::ca_file)
    }

    /// A connection routed by slot, as the default (admin) user, over TLS
    /// for a `tls` cluster: for the test to see what is stored.
    ///
    /// # Panics
    ///
    /// If it cannot connect.
    pub fn admin_conn(&self) -> redis::cluster::ClusterConnection {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.pid().is_some())
            .map(RedisServer::url)
            .collect();
        let mut b = redis::cluster::ClusterClientBuilder::new(seeds);
        if self.acl {
            b = b.password(ADMIN_PASSWORD);
        }
        if let Some(files) = &self.tls {
            let pem = std::fs::read(files.ca_file()).expect("the cluster's CA file");
            b = b.tls(redis::TlsMode::Secure).certs(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            });
        }
        b.build()
            .and_then(|c| c.get_connection())
            .unwrap_or_else(|e| panic!("admin connection to the Redis Cluster: {e}"))
    }

    /// The nodes (killed with [`RedisServer::stop`]).
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Ports of the nodes that serve slots as primaries now, as a live
    /// node sees them (sorted).
    pub fn primary_ports(&self) -> Vec<u16> {
        let mut out = BTreeSet::new();
        for line in self.cluster_nodes().lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 8 && f[2].contains("master") && !f[2].contains("fail") {
                if let Some(port) = f[1]
                    .split('@')
                    .next()
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| p.parse().ok())
                {
                    out.insert(port);
                }
            }
        }
        out.into_iter().collect()
    }

    /// Port of the primary serving `slot` now.
    pub fn primary_of_slot(&self, slot: u16) -> Option<u16> {
        for line in self.cluster_nodes().lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() <= 8 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let serves = f[8..].iter().any(|range| {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                match (a.parse::<u16>(), b.parse::<u16>()) {
                    (Ok(a), Ok(b)) => (a..=b).contains(&slot),
                    _ => false,
                }
            });
            if serves {
                return f[1]
                    .split('@')
                    .next()
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| p.parse().ok());
            }
        }
        None
    }

    /// Kills (SIGKILL) the node on `port`; its data is gone with it.
    ///
    /// # Panics
    ///
    /// If no node has that port.
    pub fn kill(&mut self, port: u16) {
        self.nodes
            .iter_mut()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
            .stop();
    }

    /// Waits until the live nodes say `cluster_state:ok` again and another
    /// node serves what `dead` served.
    ///
    /// # Panics
    ///
    /// If that takes more than `within`.
    pub fn wait_for_failover(&self, dead: u16, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let live: Vec<&RedisServer> = self
                .nodes
                .iter()
                .filter(|n| n.port() != dead && n.pid().is_some())
                .collect();
            let all_ok = live.iter().all(|n| {
                self.command(n.port(), &["CLUSTER", "INFO"])
                    .map(|i| i.contains("cluster_state:ok"))
                    .unwrap_or(false)
            });
            if all_ok && !self.primary_ports().contains(&dead) && self.primary_ports().len() >= 3 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no replica took over from {dead} within {within:?}: {}",
                self.cluster_nodes()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Keys matching `pattern` on every primary.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut all = Vec::new();
        for port in self.primary_ports() {
            if let Ok(mut c) = self.node_conn(port) {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(pattern)
                    .query(&mut c)
                    .unwrap_or_default();
                all.extend(keys);
            }
        }
        all.sort();
        all
    }

    /// Calls per command on each primary (`INFO commandstats`), as
    /// `(port, [(command, calls)])`: how the load spread over the shards.
    pub fn commandstats(&self) -> Vec<(u16, Vec<(String, u64)>)> {
        self.primary_ports()
            .into_iter()
            .map(|port| {
                let text = self
                    .command(port, &["INFO", "commandstats"])
                    .unwrap_or_default();
                (port, parse_commandstats(&text))
            })
            .collect()
    }

    /// `CLUSTER NODES` as the first live node sees it.
    fn cluster_nodes(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.pid().is_some())
            .find_map(|n| self.command(n.port(), &["CLUSTER", "NODES"]).ok())
            .unwrap_or_default()
    }

    /// A connection to the node on `port` as the default user.
    fn node_conn(&self, port: u16) -> redis::RedisResult<redis::Connection> {
        let auth = if self.acl {
            format!(":{ADMIN_PASSWORD}@")
        } else {
            String::new()
        };
        let client = match &self.tls {
            Some(files) => tls_client(
                &format!("rediss://{auth}127.0.0.1:{port}"),
                &files.ca_file(),
            )?,
            None => redis::Client::open(format!("redis://{auth}127.0.0.1:{port}"))?,
        };
        client.get_connection_with_timeout(Duration::from_secs(1))
    }

    /// `CLUSTER SLOTS` as the node on `port` answers it.
    fn slot_ranges(&self, port: u16) -> Result<Vec<redis::Value>, String> {
        let mut c = self.node_conn(port).map_err(|e| e.to_string())?;
        redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut c)
            .map_err(|e| e.to_string())
    }

    /// One command on one node, its reply as text.
    fn command(&self, port: u16, args: &[&str]) -> Result<String, String> {
        let mut c = self.node_conn(port).map_err(|e| e.to_string())?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query::<String>(&mut c).map_err(|e| e.to_string())
    }
}

/// Attempts at a node, each with a fresh cluster bus port: the bus port,
/// like the client port, can be taken by another test between the probe
/// and the bind, and `RedisServer`'s own retries only change the client
/// port.
const BUS_PORT_ATTEMPTS: usize = 3;

/// Starts one node (not yet part of a cluster) as `options` says.
fn start_node(options: &RedisClusterOptions, tls: Option<&TlsFiles>) -> RedisServer {
    let mut last = String::new();
    for _ in 0..BUS_PORT_ATTEMPTS {
        match try_start_node(options, tls, free_port()) {
            Ok(server) => return server,
            Err(log) if tls.is_some() && lacks_tls(&log) => panic!("{}", TlsUnsupported { log }),
            Err(msg) if msg.contains("Address already in use") => last = msg,
            Err(msg) => panic!("{msg}"),
        }
    }
    panic!("redis-server cluster node: no free bus port after {BUS_PORT_ATTEMPTS} attempts; last error: {last}")
}

/// One attempt at a node whose cluster bus is on `bus`.
fn try_start_node(
    options: &RedisClusterOptions,
    tls: Option<&TlsFiles>,
    bus: u16,
) -> Result<RedisServer, String> {
    let timeout = options.node_timeout_ms.to_string();
    let bus = bus.to_string();
    let mut args: Vec<String> = [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        &timeout,
        "--cluster-port",
        &bus,
        // A replica may be promoted however long its link was down (the
        // test decides when a primary dies).
        "--cluster-replica-validity-factor",
        "0",
        // Replicas sync at once, not after the default 5 s wait for more
        // replicas to share the transfer.
        "--repl-diskless-sync-delay",
        "0",
        // A node leaves out of CLUSTER SLOTS a replica whose replication
        // offset it knows as 0, which on an empty cluster lasts until the
        // primary's first replication PING (10 s by default).
        "--repl-ping-replica-period",
        "1",
    ]
    .map(String::from)
    .to_vec();
    if options.acl {
        let secret = format!(">{USER_PASSWORD}");
        // Each word of the ACL rule is its own argument (redis-server
        // quotes every argument), the same rule as AclRedis's.
        args.extend(
            [
                "--requirepass",
                ADMIN_PASSWORD,
                "--masterauth",
                ADMIN_PASSWORD,
                "--user",
                ACL_USER,
                "on",
                &secret,
            ]
            .map(String::from),
        );
        args.extend(ACL_RULE.map(String::from));
    }
    let Some(files) = tls else {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        return RedisServer::try_start(&args, None);
    };
    args.extend([
        "--tls-cert-file".to_string(),
        files.cert_file().display().to_string(),
        "--tls-key-file".to_string(),
        files.key_file().display().to_string(),
        "--tls-ca-cert-file".to_string(),
        files.ca_file().display().to_string(),
        // Clients prove themselves with passwords, not certificates.
        "--tls-auth-clients".to_string(),
        "no".to_string(),
        "--tls-cluster".to_string(),
        "yes".to_string(),
        "--tls-replication".to_string(),
        "yes".to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    RedisServer::try_start_tls_only(&args, &files.ca_file())
}

/// `cmdstat_evalsha:calls=12,usec=...` lines as `(evalsha, 12)`.
pub fn parse_commandstats(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_forms_routes_by_slot_and_fails_over() {
        let started = Instant::now();
        let mut cluster = RedisCluster::start();
        eprintln!("cluster formed in {:?}", started.elapsed());
        assert_eq!(cluster.primary_ports().len(), 3);
        assert!(cluster.url().starts_with("redis+cluster://127.0.0.1:"));
        let slot = 0x31C3; // "123456789"
        let owner = cluster
            .primary_of_slot(slot)
            .expect("a primary serves the slot");
        let mut c = cluster.node_conn(owner).unwrap();
        let _: () = redis::cmd("SET")
            .arg("123456789")
            .arg("v")
            .query(&mut c)
            .unwrap();
        assert_eq!(cluster.keys("1234*"), vec!["123456789".to_string()]);
        cluster.kill(owner);
        cluster.wait_for_failover(owner, Duration::from_secs(20));
        let new_owner = cluster.primary_of_slot(slot).expect("promoted");
        assert_ne!(new_owner, owner);
        let stats = cluster.commandstats();
        assert_eq!(stats.len(), 3);
    }

    #[test]
    fn commandstats_are_parsed() {
        let text = "# Commandstats\r\ncmdstat_evalsha:calls=12,usec=30,usec_per_call=2.5\r\ncmdstat_ping:calls=1,usec=0";
        assert_eq!(
            parse_commandstats(text),
            vec![("evalsha".to_string(), 12), ("ping".to_string(), 1)]
        );
    }
}
