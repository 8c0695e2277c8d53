//! A gamemesh cluster in one test process: a real `redis-server` on a free
//! port, game servers and gateways started through their libraries'
//! `start(config, shutdown)` on free ports, all talking real TCP and real
//! ZeroMQ.
//!
//! Redis is one `redis-server` or, for the tests run on both
//! ([`RedisBackend`], [`on_both_redis`]), a real Redis Cluster of three
//! primaries and three replicas.
//!
//! Timings are shortened (heartbeats 100 ms, flushes 20 ms) so failure
//! detection happens in test time; peer timeouts stay at 2 s, because a
//! loaded 2-core CI machine can stall a healthy node for most of a second
//! and a shorter timeout would declare it dead. Every wait is on a
//! condition.

use std::time::Duration;

mod checks;
pub mod scripted;
pub use checks::{assert_plain_sentence, code_of, session_field, session_key, start_fails};

use gamemesh_game_server::state::HubState;
use gamemesh_game_server::{Config as GsConfig, GameServer, RunningGameServer, StoreKind};
use gamemesh_gateway::{Config as GwConfig, RunningGateway};
use gamemesh_node::flags::{NodeFlags, NodeRole};
use gamemesh_proto::cluster_auth::ClusterSecret;
pub use gamemesh_test_client::client::{Client, ClientError};
pub use gamemesh_test_support::{
    free_port, init_tracing, wait_for, wait_for_async, RedisCluster, RedisServer,
};
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Default reply timeout for test clients.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The `--cluster-secret` every node of a test cluster holds, so the whole
/// suite runs with the internal ports authenticated (tests/internal_auth.rs
/// covers nodes without it).
pub const TEST_CLUSTER_SECRET: &str = "integration-test-cluster-secret";

/// [`TEST_CLUSTER_SECRET`] as a config value.
pub fn test_cluster_secret() -> Option<ClusterSecret> {
    Some(ClusterSecret::new(TEST_CLUSTER_SECRET))
}

/// A game server running in this process.
pub struct GameServerNode {
    /// Its node id.
    pub node_id: u64,
    /// Its P2P port (gateways' seed).
    pub p2p_port: u16,
    /// Its shared state, to inspect owned sessions.
    pub state: Arc<HubState>,
    /// Its admin port (`/metrics`, `/healthz`, `/readyz`).
    pub admin_addr: std::net::SocketAddr,
    /// Stops it.
    pub shutdown: CancellationToken,
    /// Finishes when it stopped.
    pub task: JoinHandle<()>,
}

/// A gateway running in this process.
pub struct GatewayNode {
    /// Its node id.
    pub node_id: u64,
    /// Where clients connect.
    pub addr: String,
    /// Where WebSocket clients connect, when its config set `ws_port`.
    pub ws_addr: Option<std::net::SocketAddr>,
    /// Its admin port (`/metrics`, `/healthz`, `/readyz`).
    pub admin_addr: std::net::SocketAddr,
    /// Stops it.
    pub shutdown: CancellationToken,
    /// Finishes when it stopped.
    pub task: JoinHandle<()>,
}

/// Which Redis a test cluster's game servers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedisBackend {
    /// One `redis-server`.
    #[default]
    Single,
    /// A Redis Cluster (3 primaries, 3 replicas), `redis+cluster://`.
    Cluster,
}

/// Runs an `async fn name(backend: RedisBackend)` test against one Redis
/// and against a Redis Cluster: `on_both_redis!(name);` makes
/// `name::single_redis` and `name::redis_cluster` (multi-thread runtime,
/// two workers, like the rest of the suite).
#[macro_export]
macro_rules! on_both_redis {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn single_redis() {
                super::$name($crate::RedisBackend::Single).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis_cluster() {
                super::$name($crate::RedisBackend::Cluster).await
            }
        }
    )+};
}

/// The Redis a test runs against: one server or a cluster, killed on drop.
pub enum TestRedis {
    /// One `redis-server`.
    Single(RedisServer),
    /// A Redis Cluster.
    Cluster(RedisCluster),
}

impl TestRedis {
    /// Starts the backend.
    pub fn start(backend: RedisBackend) -> Self {
        match backend {
            RedisBackend::Single => TestRedis::Single(RedisServer::start()),
            RedisBackend::Cluster => TestRedis::Cluster(RedisCluster::start()),
        }
    }

    /// A directory that lives as long as it (for logs of child processes).
    pub fn dir(&self) -> std::path::PathBuf {
        match self {
            TestRedis::Single(r) => r.dir().to_path_buf(),
            TestRedis::Cluster(c) => c.nodes()[0].dir().to_path_buf(),
        }
    }

    /// The `--redis` value for it.
    pub fn address(&self) -> String {
        match self {
            TestRedis::Single(r) => r.addr(),
            TestRedis::Cluster(c) => c.url(),
        }
    }

    /// A blocking connection for inspecting what is stored (routed by
    /// slot on a cluster).
    pub fn conn(&self) -> TestRedisConn {
        match self {
            TestRedis::Single(r) => TestRedisConn::Single(
                redis::Client::open(r.url())
                    .expect("redis url")
                    .get_connection()
                    .expect("redis connection"),
            ),
            TestRedis::Cluster(c) => TestRedisConn::cluster(c),
        }
    }

    /// Keys matching `pattern` (on every primary of a cluster), sorted.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        match self {
            TestRedis::Single(r) => {
                let mut c = redis::Client::open(r.url())
                    .expect("redis url")
                    .get_connection()
                    .expect("redis connection");
                let mut keys: Vec<String> =
                    redis::cmd("KEYS").arg(pattern).query(&mut c).expect("KEYS");
                keys.sort();
                keys
            }
            TestRedis::Cluster(c) => c.keys(pattern),
        }
    }
}

/// A blocking connection to a [`TestRedis`]. (A test holds one or two;
/// their size does not matter.)
#[allow(clippy::large_enum_variant)]
pub enum TestRedisConn {
    /// To the one server.
    Single(redis::Connection),
    /// To the cluster, routed by slot.
    Cluster(redis::cluster::ClusterConnection),
}

impl TestRedisConn {
    /// A connection routed by slot, seeded from the cluster's live nodes.
    fn cluster(c: &RedisCluster) -> Self {
        let seeds: Vec<String> = c
            .nodes()
            .iter()
            .filter(|n| n.pid().is_some())
            .map(|n| n.url())
            .collect();
        TestRedisConn::Cluster(
            redis::cluster::ClusterClient::new(seeds)
                .expect("cluster seeds")
                .get_connection()
                .expect("cluster connection"),
        )
    }
}

impl redis::ConnectionLike for TestRedisConn {
    fn req_packed_command(&mut self, cmd: &[u8]) -> redis::RedisResult<redis::Value> {
        match self {
            TestRedisConn::Single(c) => c.req_packed_command(cmd),
            TestRedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> redis::RedisResult<Vec<redis::Value>> {
        match self {
            TestRedisConn::Single(c) => c.req_packed_commands(cmd, offset, count),
            TestRedisConn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn req_command(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<redis::Value> {
        match self {
            TestRedisConn::Single(c) => c.req_command(cmd),
            TestRedisConn::Cluster(c) => c.req_command(cmd),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            TestRedisConn::Single(c) => c.get_db(),
            TestRedisConn::Cluster(c) => c.get_db(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            TestRedisConn::Single(c) => c.check_connection(),
            TestRedisConn::Cluster(c) => c.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            TestRedisConn::Single(c) => c.is_open(),
            TestRedisConn::Cluster(c) => c.is_open(),
        }
    }
}

/// Knobs for a test cluster.
#[derive(Clone)]
pub struct ClusterOptions {
    /// One Redis or a Redis Cluster.
    pub redis: RedisBackend,
    /// Number of gateways.
    pub gateways: usize,
    /// Number of game servers.
    pub game_servers: usize,
    /// Applied to every game server config.
    pub game_server: fn(&mut GsConfig),
    /// Applied to every gateway config.
    pub gateway: fn(&mut GwConfig),
    /// The game modules of every game server (besides the built-ins).
    pub modules: fn(GameServer) -> GameServer,
    /// Extra `redis-server` arguments (persistence, for tests that restart
    /// Redis and expect their data back).
    pub redis_args: &'static [&'static str],
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            redis: RedisBackend::Single,
            gateways: 1,
            game_servers: 1,
            game_server: |_| {},
            gateway: |_| {},
            modules: |s| s,
            redis_args: &[],
        }
    }
}

/// Redis + game servers + gateways.
pub struct Cluster {
    /// The real Redis (the single server's tests stop and restart it; with
    /// [`RedisBackend::Cluster`] it is started but unused).
    pub redis: RedisServer,
    /// The Redis Cluster, with [`RedisBackend::Cluster`].
    pub redis_cluster: Option<RedisCluster>,
    /// Game servers, node ids 1..
    pub game_servers: Vec<GameServerNode>,
    /// Gateways, node ids 1..
    pub gateways: Vec<GatewayNode>,
    /// Kept to start more nodes alike.
    options: ClusterOptions,
}

/// The shared node flags of a test node: short timers, the test cluster
/// secret, a free admin port.
pub fn node_flags<R: NodeRole>(node_id: u64) -> NodeFlags<R> {
    NodeFlags {
        node_id,
        heartbeat_ms: 100,
        peer_timeout_ms: 2000,
        shutdown_grace_secs: 2,
        cluster_secret: test_cluster_secret(),
        admin_port: 0,
        ..NodeFlags::default()
    }
}

/// A game server config for tests (free ports, short timers).
pub fn game_server_config(node_id: u64, redis: &str) -> GsConfig {
    GsConfig {
        node: node_flags(node_id),
        p2p_port: 0,
        mesh_port: 0,
        redis: redis.to_string(),
        session_store: StoreKind::Redis,
        flush_interval_ms: 20,
        redis_timeout_ms: 500,
        // Tests log one user in many times and every client comes from
        // 127.0.0.1; the login limits have their own test
        // (tests/login_limits.rs).
        login_attempts_per_user_per_min: 1_000,
        login_attempts_per_ip_per_min: 100_000,
        ..GsConfig::default()
    }
}

/// A gateway config for tests (free ports, short timers).
pub fn gateway_config(node_id: u64, game_server_ports: &[u16]) -> GwConfig {
    GwConfig {
        node: node_flags(node_id),
        client_bind: "127.0.0.1".into(),
        client_port: 0,
        p2p_port: 0,
        game_servers: game_server_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect(),
        // Every test client connects from 127.0.0.1; the per-IP limit has
        // its own test (tests/overload.rs).
        max_connects_per_ip_per_sec: 100_000,
        ..GwConfig::default()
    }
}

/// Starts a game server in this process.
pub async fn start_game_server(config: GsConfig) -> GameServerNode {
    start_game_server_with(config, |s| s).await
}

/// Starts a game server in this process with the game modules `modules`
/// adds.
pub async fn start_game_server_with(
    config: GsConfig,
    modules: fn(GameServer) -> GameServer,
) -> GameServerNode {
    let shutdown = CancellationToken::new();
    let node_id = config.node.node_id;
    let running: RunningGameServer = modules(GameServer::new(config))
        .start(shutdown.clone())
        .await
        .expect("game server starts");
    let p2p_port = running.p2p_port();
    let state = running.state.clone();
    let admin_addr = running.admin_addr;
    let task = tokio::spawn(running.wait());
    GameServerNode {
        node_id,
        p2p_port,
        state,
        admin_addr,
        shutdown,
        task,
    }
}

/// Starts a gateway and waits until it has linked `expect_linked` game
/// servers.
pub async fn start_gateway(config: GwConfig, expect_linked: usize) -> GatewayNode {
    let node_id = config.node.node_id;
    let (running, shutdown) = start_linked_gateway(config, expect_linked).await;
    let addr = running.client_addr.to_string();
    let ws_addr = running.ws_addr;
    let admin_addr = running.admin_addr;
    let task = tokio::spawn(running.wait());
    GatewayNode {
        node_id,
        addr,
        ws_addr,
        admin_addr,
        shutdown,
        task,
    }
}

/// Starts a gateway the caller keeps whole (its [`RunningGateway`], for
/// its counters; cancel the token, then `wait`, to stop it) and waits
/// until it has linked `expect_linked` game servers and relays to them.
pub async fn start_relaying_gateway(
    config: GwConfig,
    expect_linked: usize,
) -> (RunningGateway, CancellationToken) {
    let (running, shutdown) = start_linked_gateway(config, expect_linked).await;
    wait_relaying(&running.client_addr.to_string()).await;
    (running, shutdown)
}

/// Starts a gateway and waits until it has linked `expect_linked` game
/// servers.
async fn start_linked_gateway(
    config: GwConfig,
    expect_linked: usize,
) -> (RunningGateway, CancellationToken) {
    let shutdown = CancellationToken::new();
    let mut running = gamemesh_gateway::start(config, shutdown.clone())
        .await
        .expect("gateway starts");
    tokio::time::timeout(
        Duration::from_secs(10),
        running.wait_for_game_servers(expect_linked),
    )
    .await
    .expect("gateway links its game servers within 10 s");
    (running, shutdown)
}

/// Waits until a heartbeat through the gateway at `addr` is answered. A
/// gateway that has linked its game server is not yet relaying to it: its
/// first hello answer can still be on the way.
pub async fn wait_relaying(addr: &str) {
    wait_for_async("the gateway relays to its game server", TIMEOUT, || async {
        match Client::connect_with_timeout(addr, TIMEOUT).await {
            Ok(mut c) => c.heartbeat().await.is_ok(),
            Err(_) => false,
        }
    })
    .await;
}

impl Cluster {
    /// Starts `gateways` x `game_servers` with default test settings.
    pub async fn start(gateways: usize, game_servers: usize) -> Cluster {
        Self::start_with(ClusterOptions {
            gateways,
            game_servers,
            ..ClusterOptions::default()
        })
        .await
    }

    /// Starts `gateways` x `game_servers` on `redis`.
    pub async fn start_on(redis: RedisBackend, gateways: usize, game_servers: usize) -> Cluster {
        Self::start_with(ClusterOptions {
            redis,
            gateways,
            game_servers,
            ..ClusterOptions::default()
        })
        .await
    }

    /// Starts a cluster as `options` says. Every gateway seeds every game
    /// server.
    pub async fn start_with(options: ClusterOptions) -> Cluster {
        init_tracing();
        let redis = RedisServer::start_with_args(options.redis_args);
        let redis_cluster = (options.redis == RedisBackend::Cluster).then(RedisCluster::start);
        let address = match &redis_cluster {
            Some(c) => c.url(),
            None => redis.addr(),
        };
        let mut game_servers = Vec::new();
        for id in 1..=options.game_servers as u64 {
            let mut c = game_server_config(id, &address);
            (options.game_server)(&mut c);
            game_servers.push(start_game_server_with(c, options.modules).await);
        }
        // The mesh is up when every game server hears every other one.
        let states: Vec<_> = game_servers
            .iter()
            .map(|g| (g.node_id, g.state.clone()))
            .collect();
        wait_for(
            "every game server sees its peers on the mesh",
            Duration::from_secs(10),
            || {
                states.iter().all(|(me, s)| {
                    states
                        .iter()
                        .all(|(other, _)| other == me || s.mesh.is_live(*other))
                })
            },
        )
        .await;
        let ports: Vec<u16> = game_servers.iter().map(|g| g.p2p_port).collect();
        let mut gateways = Vec::new();
        for id in 1..=options.gateways as u64 {
            let mut c = gateway_config(id, &ports);
            (options.gateway)(&mut c);
            gateways.push(start_gateway(c, ports.len()).await);
        }
        Cluster {
            redis,
            redis_cluster,
            game_servers,
            gateways,
            options,
        }
    }

    /// Client address of gateway `i` (0-based).
    pub fn gateway_addr(&self, i: usize) -> &str {
        &self.gateways[i].addr
    }

    /// A client connected to gateway `i`.
    pub async fn client(&self, i: usize) -> Client {
        Client::connect_with_timeout(self.gateway_addr(i), TIMEOUT)
            .await
            .expect("client connects")
    }

    /// A client on gateway `gateway` whose socket the gateway routed to
    /// game server `node`, logged in as `user`. Sockets are routed when
    /// they connect, so this probes sockets (each with a throwaway login)
    /// until one lands there.
    pub async fn client_on(&self, gateway: usize, node: u64, user: u64) -> Client {
        for probe_user in 2_000_000..2_000_040 {
            let mut c = self.client(gateway).await;
            let probe = c.login(probe_user, "dev").await.expect("probe login");
            c.logout().await.expect("probe logout");
            if probe.game_server_node_id == node {
                let login = c.login(user, "dev").await.expect("login");
                assert_eq!(login.game_server_node_id, node);
                return c;
            }
        }
        panic!("no socket of gateway {gateway} was routed to game server {node}");
    }

    /// The `--redis` value the game servers were given.
    pub fn redis_address(&self) -> String {
        match &self.redis_cluster {
            Some(c) => c.url(),
            None => self.redis.addr(),
        }
    }

    /// A blocking Redis connection to inspect what is stored (routed by
    /// slot on a Redis Cluster).
    pub fn redis_conn(&self) -> TestRedisConn {
        match &self.redis_cluster {
            Some(c) => TestRedisConn::cluster(c),
            None => TestRedisConn::Single(
                redis::Client::open(self.redis.url())
                    .expect("redis url")
                    .get_connection()
                    .expect("redis connection"),
            ),
        }
    }

    /// The session records in Redis (on every primary of a cluster).
    pub fn session_keys(&self) -> Vec<String> {
        match &self.redis_cluster {
            Some(c) => c.keys("gm:*:session"),
            None => {
                let mut c = self.redis_conn();
                redis::cmd("KEYS")
                    .arg("gm:*:session")
                    .query(&mut c)
                    .expect("KEYS")
            }
        }
    }

    /// The options the cluster was started with.
    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }

    /// Stops every node gracefully and waits for them.
    pub async fn shutdown(self) {
        for g in &self.gateways {
            g.shutdown.cancel();
        }
        for g in self.gateways {
            let _ = g.task.await;
        }
        for g in &self.game_servers {
            g.shutdown.cancel();
        }
        for g in self.game_servers {
            let _ = g.task.await;
        }
    }
}
