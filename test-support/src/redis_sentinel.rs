//! A Redis primary with replicas, watched by Sentinel: real `redis-server`
//! processes (`--sentinel` mode for the sentinels, with a generated config
//! file they can rewrite), each on a free port of 127.0.0.1 and killed on
//! drop, like [`RedisServer`].
//!
//! Why real processes: what a failover does to a connected client (the old
//! primary drops its clients and answers `READONLY`, or is simply gone; the
//! sentinels name the new one only once it is promoted) is exactly what the
//! game server's Redis connection must follow, and no fake shows it.
//!
//! Timings are short for tests: a primary is down for the sentinels after
//! 1 s of silence (`down-after-milliseconds`), and replicas sync without the
//! default 5 s diskless delay.
//!
//! ```no_run
//! # async fn example() {
//! use gamemesh_test_support::SentinelGroup;
//!
//! let mut ha = SentinelGroup::start(); // primary, 1 replica, 1 sentinel
//! let url = ha.url(); // "redis+sentinel://127.0.0.1:S/gamemesh"
//! let old = ha.primary_port();
//! ha.wait_replicated();
//! let new = ha.failover().await; // SENTINEL FAILOVER, waits for the promotion
//! assert_ne!(old, new);
//! let newer = ha.kill_primary().await; // SIGKILL the primary, waits again
//! # }
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::process::{signal, stop_and_wait_stopped};
use crate::RedisServer;

/// The name the sentinels monitor the primary under.
pub const MASTER_NAME: &str = "gamemesh";

/// How long start-up may take to reach a replicated, watched group (the
/// replica's first sync and the sentinels' discovery take about a second).
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a failover may take: down-after (1 s) plus election and
/// promotion, with a wide margin for a loaded machine.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// Between checks while waiting.
const POLL: Duration = Duration::from_millis(50);

/// How a [`SentinelGroup`] is set up.
#[derive(Debug, Clone)]
pub struct SentinelOptions {
    /// Replicas of the primary (at least 1, or there is nothing to fail
    /// over to).
    pub replicas: usize,
    /// Sentinels; the quorum is a majority of them.
    pub sentinels: usize,
    /// `requirepass` (and `masterauth`) of the data nodes, which the
    /// sentinels use too (`sentinel auth-pass`).
    pub password: Option<String>,
    /// `requirepass` of the sentinels themselves.
    pub sentinel_password: Option<String>,
    /// The sentinels' `down-after-milliseconds`.
    pub down_after_ms: u64,
}

impl Default for SentinelOptions {
    fn default() -> Self {
        Self {
            replicas: 1,
            sentinels: 1,
            password: None,
            sentinel_password: None,
            down_after_ms: 1000,
        }
    }
}

/// A primary, its replicas and the sentinels watching them.
#[derive(Debug)]
pub struct SentinelGroup {
    /// Data nodes; the first started as the primary. Which one is primary
    /// now is the sentinels' answer ([`primary_port`](Self::primary_port)).
    nodes: Vec<RedisServer>,
    /// The sentinels, in the order [`url`](Self::url) lists them.
    sentinels: Vec<RedisServer>,
    /// As started.
    options: SentinelOptions,
}

impl SentinelGroup {
    /// A primary, one replica and one sentinel, no passwords.
    ///
    /// # Panics
    ///
    /// If `redis-server` is missing or the group is not replicated and
    /// watched within 20 s.
    pub fn start() -> SentinelGroup {
        Self::start_with(SentinelOptions::default())
    }

    /// A group as `options` says. Returns once every replica is in sync and
    /// every sentinel sees every replica as healthy (and the other
    /// sentinels), so a failover can start at once.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_with(options: SentinelOptions) -> SentinelGroup {
        assert!(options.replicas >= 1, "a failover needs a replica");
        assert!(options.sentinels >= 1, "a failover needs a sentinel");
        let mut data_args: Vec<String> = vec![
            // Redis 7 waits 5 s before a diskless sync by default, hoping
            // more replicas join; tests cannot wait for that.
            "--repl-diskless-sync-delay".into(),
            "0".into(),
        ];
        if let Some(p) = &options.password {
            // masterauth too: a demoted primary must authenticate to the
            // new one.
            data_args.extend(["--requirepass".into(), p.clone()]);
            data_args.extend(["--masterauth".into(), p.clone()]);
        }
        let args = |extra: &[String]| -> Vec<String> {
            data_args.iter().chain(extra.iter()).cloned().collect()
        };
        let primary = start_server(&args(&[]), None);
        let primary_port = primary.port();
        let mut nodes = vec![primary];
        for _ in 0..options.replicas {
            nodes.push(start_server(
                &args(&[
                    "--replicaof".into(),
                    "127.0.0.1".into(),
                    primary_port.to_string(),
                ]),
                None,
            ));
        }
        let mut group = SentinelGroup {
            nodes,
            sentinels: Vec::new(),
            options,
        };
        for replica in &group.nodes[1..] {
            let port = replica.port();
            poll_until_sync("a replica finishes its first sync", READY_TIMEOUT, || {
                group
                    .info(port, "replication")
                    .is_some_and(|i| i.contains("master_link_status:up"))
                    .then_some(())
            });
        }
        // Sentinels start after the replicas are in sync, so their first
        // INFO of the primary already lists them (the next would come 10 s
        // later).
        let config = group.sentinel_config(primary_port);
        let mut sentinel_args = vec!["--sentinel".to_string()];
        if let Some(p) = &group.options.sentinel_password {
            sentinel_args.extend(["--requirepass".into(), p.clone()]);
        }
        for _ in 0..group.options.sentinels {
            group
                .sentinels
                .push(start_server(&sentinel_args, Some(&config)));
        }
        for i in 0..group.sentinels.len() {
            poll_until_sync(
                "every sentinel sees every replica healthy and the other sentinels",
                READY_TIMEOUT,
                || group.sees_all_healthy(i).then_some(()),
            );
        }
        group
    }

    /// Whether sentinel `i` sees every replica healthy (not down, its
    /// link to the primary up) and every other sentinel.
    fn sees_all_healthy(&self, i: usize) -> bool {
        let Ok(mut c) = self.sentinel_conn(i) else {
            return false;
        };
        let Ok(seen) = redis::cmd("SENTINEL")
            .arg("REPLICAS")
            .arg(MASTER_NAME)
            .query::<Vec<HashMap<String, String>>>(&mut c)
        else {
            return false;
        };
        let healthy = seen
            .iter()
            .filter(|r| {
                r.get("flags").map(String::as_str) == Some("slave")
                    && r.get("master-link-status").map(String::as_str) == Some("ok")
            })
            .count();
        let Ok(peers) = redis::cmd("SENTINEL")
            .arg("SENTINELS")
            .arg(MASTER_NAME)
            .query::<Vec<HashMap<String, String>>>(&mut c)
        else {
            return false;
        };
        healthy == self.options.replicas && peers.len() == self.options.sentinels - 1
    }

    /// `redis+sentinel://[:password@]127.0.0.1:S1[,127.0.0.1:S2...]/gamemesh`:
    /// the game server's `--redis` for this group.
    pub fn url(&self) -> String {
        let auth = url_auth(self.options.password.as_deref());
        let hosts: Vec<String> = self.sentinels.iter().map(RedisServer::addr).collect();
        format!("redis+sentinel://{auth}{}/{MASTER_NAME}", hosts.join(","))
    }

    /// The sentinels' ports, in [`url`](Self::url) order.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(RedisServer::port).collect()
    }

    /// Every data node's port (primary and replicas, whatever their role
    /// now).
    pub fn node_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }

    /// The data nodes that are not the primary the sentinels name now.
    pub fn replica_ports(&self) -> Vec<u16> {
        let primary = self.primary_port();
        self.node_ports()
            .into_iter()
            .filter(|p| *p != primary)
            .collect()
    }

    /// Stalls the data node on `port` (SIGSTOP: alive to the kernel, its
    /// links open, deaf to everyone, as in a frozen VM or a long stall)
    /// and returns once every thread of it is stopped: `kill` returns
    /// before the signal is delivered.
    ///
    /// # Panics
    ///
    /// If the node is not running or does not stop within 20 s.
    pub async fn pause_node(&self, port: u16) {
        let pid = self.node_pid(port);
        stop_and_wait_stopped(pid, READY_TIMEOUT, &format!("data node {port}")).await;
    }

    /// Wakes a node [`pause_node`](Self::pause_node) stalled (SIGCONT) and
    /// waits until every sentinel sees every replica healthy again (a
    /// sentinel marks a silent replica down after `down-after`, and
    /// promotes none that is), so a failover can start at once.
    ///
    /// # Panics
    ///
    /// If that takes more than 20 s.
    pub async fn resume_node(&self, port: u16) {
        signal(self.node_pid(port), "-CONT");
        let deadline = Instant::now() + READY_TIMEOUT;
        while !(0..self.sentinels.len()).all(|i| self.sees_all_healthy(i)) {
            assert!(
                Instant::now() < deadline,
                "the sentinels do not see every replica healthy {READY_TIMEOUT:?} after waking {port}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    fn node_pid(&self, port: u16) -> u32 {
        self.nodes
            .iter()
            .find(|n| n.port() == port)
            .and_then(RedisServer::pid)
            .unwrap_or_else(|| panic!("no running data node of ours on port {port}"))
    }

    /// The primary's port as the first sentinel that answers names it.
    ///
    /// # Panics
    ///
    /// If no sentinel answers.
    pub fn primary_port(&self) -> u16 {
        (0..self.sentinels.len())
            .find_map(|i| self.named_primary(i))
            .unwrap_or_else(|| panic!("no sentinel names a primary for {MASTER_NAME}"))
    }

    /// A plain connection to the data node on `port`, authenticated, to
    /// inspect what it holds.
    ///
    /// # Panics
    ///
    /// If it cannot connect.
    pub fn data_conn(&self, port: u16) -> redis::Connection {
        self.try_data_conn(port)
            .unwrap_or_else(|e| panic!("cannot connect to data node 127.0.0.1:{port}: {e}"))
    }

    /// Waits until every replica has acknowledged every write the primary
    /// took (`WAIT`), so a failover now loses nothing.
    ///
    /// # Panics
    ///
    /// If the replicas do not catch up within 5 s.
    pub fn wait_replicated(&self) {
        let mut c = self.data_conn(self.primary_port());
        let acked: usize = redis::cmd("WAIT")
            .arg(self.options.replicas)
            .arg(5000)
            .query(&mut c)
            .expect("WAIT");
        assert_eq!(
            acked, self.options.replicas,
            "every replica acknowledges the primary's writes within 5 s"
        );
    }

    /// Runs `SENTINEL FAILOVER` (a planned switch: the old primary stays
    /// up and becomes a replica) and waits until the sentinels name the
    /// promoted replica and it answers as a primary. Returns its port.
    ///
    /// # Panics
    ///
    /// If the sentinel refuses or the switch does not happen within 30 s.
    pub async fn failover(&self) -> u16 {
        let old = self.primary_port();
        let mut c = self.sentinel_conn(0).expect("connect to sentinel");
        let _: String = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(MASTER_NAME)
            .query(&mut c)
            .unwrap_or_else(|e| panic!("SENTINEL FAILOVER refused: {e}"));
        self.wait_for_new_primary(old).await
    }

    /// Kills the primary (SIGKILL: an unplanned failure) and waits until
    /// the sentinels have promoted a replica. Returns the new primary's
    /// port. The killed node stays down.
    ///
    /// # Panics
    ///
    /// If no replica is promoted within 30 s.
    pub async fn kill_primary(&mut self) -> u16 {
        let old = self.primary_port();
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port() == old)
            .unwrap_or_else(|| panic!("the sentinels name 127.0.0.1:{old}, which is not ours"));
        node.stop();
        self.wait_for_new_primary(old).await
    }

    /// Waits until a sentinel names a primary other than `old` and that
    /// node answers `ROLE` as a primary. Returns its port.
    ///
    /// # Panics
    ///
    /// After 30 s.
    pub async fn wait_for_new_primary(&self, old: u16) -> u16 {
        let deadline = Instant::now() + FAILOVER_TIMEOUT;
        loop {
            let named = (0..self.sentinels.len()).find_map(|i| self.named_primary(i));
            if let Some(port) = named.filter(|p| *p != old) {
                if self.role(port).as_deref() == Some("master") {
                    return port;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no new primary within {FAILOVER_TIMEOUT:?} (sentinels name {named:?}, was {old}); \
                 sentinel log: {}",
                self.sentinels[0].log_path().display()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// The primary sentinel `i` names, if it answers.
    fn named_primary(&self, i: usize) -> Option<u16> {
        let mut c = self.sentinel_conn(i).ok()?;
        let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(MASTER_NAME)
            .query(&mut c)
            .ok()?;
        addr.map(|(_, port)| port)
    }

    /// `ROLE`'s first element on the data node at `port`.
    fn role(&self, port: u16) -> Option<String> {
        let mut c = self.try_data_conn(port).ok()?;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut c).ok()?;
        redis::from_redis_value(role.into_iter().next()?).ok()
    }

    /// `INFO <section>` of the data node at `port`.
    fn info(&self, port: u16, section: &str) -> Option<String> {
        let mut c = self.try_data_conn(port).ok()?;
        redis::cmd("INFO").arg(section).query(&mut c).ok()
    }

    fn try_data_conn(&self, port: u16) -> redis::RedisResult<redis::Connection> {
        connect(
            self.options.password.as_deref(),
            &format!("127.0.0.1:{port}"),
        )
    }

    fn sentinel_conn(&self, i: usize) -> redis::RedisResult<redis::Connection> {
        connect(
            self.options.sentinel_password.as_deref(),
            &self.sentinels[i].addr(),
        )
    }

    /// The sentinels' config file: watch the primary, decide fast.
    fn sentinel_config(&self, primary_port: u16) -> String {
        let quorum = self.options.sentinels / 2 + 1;
        let mut c = format!(
            "sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} {quorum}\n\
             sentinel down-after-milliseconds {MASTER_NAME} {}\n\
             sentinel failover-timeout {MASTER_NAME} 5000\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            self.options.down_after_ms
        );
        if let Some(p) = &self.options.password {
            c.push_str(&format!("sentinel auth-pass {MASTER_NAME} {p}\n"));
        }
        if let Some(p) = &self.options.sentinel_password {
            // Sentinels authenticate to each other with it.
            c.push_str(&format!("sentinel sentinel-pass {p}\n"));
        }
        c
    }
}

/// Starts one server, panicking with its log if it does not come up.
fn start_server(args: &[String], config: Option<&str>) -> RedisServer {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    RedisServer::try_start(&args, config).unwrap_or_else(|msg| panic!("{msg}"))
}

/// Polls `check` until it returns `Some`, blocking (start-up runs before
/// any node under test does).
fn poll_until_sync<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        std::thread::sleep(POLL);
    }
}

/// `:password@` for a URL's authority, or nothing without a password.
fn url_auth(password: Option<&str>) -> String {
    password.map(|p| format!(":{p}@")).unwrap_or_default()
}

/// A connection to `redis://[:password@]addr`, given up after 2 s.
fn connect(password: Option<&str>, addr: &str) -> redis::RedisResult<redis::Connection> {
    redis::Client::open(format!("redis://{}{addr}", url_auth(password)))?
        .get_connection_with_timeout(Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failover_promotes_the_replica_with_the_data() {
        let ha = SentinelGroup::start_with(SentinelOptions {
            password: Some("data-pw".into()),
            sentinel_password: Some("sentinel-pw".into()),
            ..SentinelOptions::default()
        });
        let old = ha.primary_port();
        assert_eq!(old, ha.node_ports()[0], "the first node starts as primary");
        let mut c = ha.data_conn(old);
        redis::cmd("SET")
            .arg("k")
            .arg("v")
            .exec(&mut c)
            .expect("SET");
        ha.wait_replicated();
        let new = ha.failover().await;
        assert_ne!(new, old);
        let mut c = ha.data_conn(new);
        let v: Option<String> = redis::cmd("GET").arg("k").query(&mut c).expect("GET");
        assert_eq!(v.as_deref(), Some("v"), "the replicated write survived");
        assert!(ha.url().starts_with("redis+sentinel://:data-pw@127.0.0.1:"));
    }

    #[tokio::test]
    async fn killing_the_primary_promotes_a_replica() {
        let mut ha = SentinelGroup::start();
        let old = ha.primary_port();
        let new = ha.kill_primary().await;
        assert_ne!(new, old);
        assert_eq!(ha.primary_port(), new);
    }
}
