//! The cluster with game servers as real child processes, so one can be
//! killed (SIGKILL, a crash) or stopped (SIGTERM, a graceful stop) the way
//! an operator or the kernel would: a late joiner, failover of 100 clients
//! from a killed node, a graceful stop that leaves nothing pointing at the
//! stopped node, and a killed node that comes back.
//!
//! Shape of each test: its own `redis-server` ([`RedisServer`]), game
//! servers spawned from `env!("CARGO_BIN_EXE_game-server")` on free ports
//! with short timers (logs in a temp dir, printed on failure), gateways in
//! this process through [`gamemesh_gateway::start`], seeded with the FIRST
//! game server only: membership has to teach them the others. A gateway
//! that is to be killed runs in a child process of its own
//! ([`GatewayProcess`]). Every wait is on a condition with a deadline,
//! never a sleep for luck.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gamemesh_game_server::api::placement::rendezvous;
use gamemesh_gateway::Config as GwConfig;
use gamemesh_node::flags::NodeFlags;
use gamemesh_proto::client::{server_packet, ErrorCode, KickReason, LoginResponse, ServerPacket};
use gamemesh_test_client::client::{Client, ClientError};
use gamemesh_test_support::{free_port, init_tracing, process, wait_for_async, RedisServer};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Bound on one client request and on a client's connect.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on a cluster-wide change: a node seen up or down by the gateways
/// (peer timeout 2 s, heartbeat 100 ms), a registry entry removed.
const SETTLE: Duration = Duration::from_secs(10);
/// The nodes' peer timeout (gateways and game servers) unless a test sets
/// its own ([`Harness::with_peer_timeout`]).
const PEER_TIMEOUT: Duration = Duration::from_secs(2);
/// The gateways' `--request-timeout-ms`: above their peer timeout (2 s)
/// plus a heartbeat, as the default is.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on a gateway answering a request relayed to a game server that
/// stopped: the request timeout, plus scheduling slack on a busy machine.
const UNAVAILABLE_BOUND: Duration = Duration::from_millis(4500);
/// Bound on a game server child printing its "ready" line.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Lines of a child's log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

/// Environment twins of game-server flags these tests do not pass, removed
/// from the child's environment so a developer's shell cannot change what
/// is tested (e.g. an `AUTH_SECRET` would make the "dev" token invalid).
const UNSET_ENV: &[&str] = &[
    "GAME_SERVER_BIND",
    "GAME_SERVER_ADVERTISE_HOST",
    "AUTH_SECRET",
    "RESUME_GRACE_SECS",
    "REPLY_CACHE",
];

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// One test's world: a temp dir for the children's logs and a Redis.
struct Harness {
    /// Logs of the game server children; kept (and its path printed) when
    /// the test fails, removed otherwise.
    dir: PathBuf,
    /// The shared truth of the cluster.
    redis: RedisServer,
    /// `--peer-timeout-ms` of every node it starts; the gateways' request
    /// timeout is one second above it (as the defaults are).
    peer_timeout: Duration,
}

impl Harness {
    fn new(test: &str) -> Harness {
        Self::with_redis(test, RedisServer::start)
    }

    /// A harness whose Redis keeps its data across a restart (an
    /// append-only file synced on every write), as a production Redis with
    /// persistence does.
    fn persistent(test: &str) -> Harness {
        Self::with_redis(test, || {
            RedisServer::start_with_args(&["--appendonly", "yes", "--appendfsync", "always"])
        })
    }

    fn with_redis(test: &str, redis: impl FnOnce() -> RedisServer) -> Harness {
        init_tracing();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gamemesh-cluster-{test}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).expect("create the test's temp dir");
        Harness {
            dir,
            redis: redis(),
            peer_timeout: PEER_TIMEOUT,
        }
    }

    /// The same harness with another peer timeout for the nodes it starts.
    fn with_peer_timeout(mut self, peer_timeout: Duration) -> Harness {
        self.peer_timeout = peer_timeout;
        self
    }

    /// Spawns game server `node_id` on fresh ports and waits until it is
    /// ready. A port taken between `free_port` and the child's bind is
    /// retried on other ports.
    async fn game_server(&self, node_id: u64) -> GameServer {
        let mut last = String::new();
        for _ in 0..3 {
            let mut gs = GameServer {
                node_id,
                p2p_port: free_port(),
                mesh_port: free_port(),
                redis_addr: self.redis.addr(),
                peer_timeout: self.peer_timeout,
                log: self.dir.join(format!("game-server-{node_id}.log")),
                child: None,
            };
            match gs.spawn().await {
                Ok(()) => return gs,
                Err(e) if e.contains("in use") => last = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("game server {node_id}: no free ports after 3 attempts: {last}");
    }

    /// Starts a gateway in this process seeded with `seed` only.
    async fn gateway(&self, node_id: u64, seed: &GameServer) -> Gateway {
        let mut config = gateway_config(node_id, seed.p2p_port);
        config.node.peer_timeout_ms = self.peer_timeout.as_millis() as u64;
        config.request_timeout_ms = (self.peer_timeout + Duration::from_secs(1)).as_millis() as u64;
        let shutdown = CancellationToken::new();
        let running = gamemesh_gateway::start(config, shutdown.clone())
            .await
            .expect("gateway starts");
        Gateway {
            node_id,
            addr: running.client_addr.to_string(),
            live: running.live_game_servers(),
            shutdown,
            task: Some(tokio::spawn(running.wait())),
        }
    }

    /// Starts a gateway as a child process (so it can be killed), seeded
    /// with `seed` only, and waits until it links `live` game servers.
    async fn gateway_process(
        &self,
        node_id: u64,
        seed: &GameServer,
        live: usize,
    ) -> GatewayProcess {
        GatewayProcess::spawn(
            node_id,
            seed.p2p_port,
            live,
            self.dir.join(format!("gateway-{node_id}.log")),
        )
        .await
    }

    fn redis_conn(&self) -> redis::Connection {
        redis::Client::open(self.redis.url())
            .expect("redis url")
            .get_connection()
            .expect("redis connection")
    }

    /// Every session record as (key, owner field). SCAN, not KEYS, as an
    /// operator would on a live Redis.
    fn session_owners(&self) -> Vec<(String, String)> {
        let mut c = self.redis_conn();
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg("gm:*:session")
                .arg("COUNT")
                .arg(1000)
                .query(&mut c)
                .expect("SCAN");
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .map(|k| {
                let owner: Option<String> = redis::cmd("HGET")
                    .arg(&k)
                    .arg("owner")
                    .query(&mut c)
                    .expect("HGET owner");
                (k, owner.unwrap_or_default())
            })
            .collect()
    }

    /// Session records whose owner is `node_id`.
    fn sessions_owned_by(&self, node_id: u64) -> Vec<String> {
        let owner = node_id.to_string();
        self.session_owners()
            .into_iter()
            .filter(|(_, o)| *o == owner)
            .map(|(k, _)| k)
            .collect()
    }

    /// Node ids in the membership registry set.
    fn registered_nodes(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = redis::cmd("SMEMBERS")
            .arg("gm:{cluster}:nodes")
            .query(&mut self.redis_conn())
            .expect("SMEMBERS");
        ids.sort_unstable();
        ids
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "test failed: game server logs kept in {}",
                self.dir.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A `game-server` child process; SIGKILLed and reaped on drop.
struct GameServer {
    /// Its node id.
    node_id: u64,
    /// ZeroMQ port gateways send to (the gateways' seed).
    p2p_port: u16,
    /// ZeroMQ port peers send to.
    mesh_port: u16,
    /// `127.0.0.1:R`.
    redis_addr: String,
    /// Its `--peer-timeout-ms`.
    peer_timeout: Duration,
    /// stdout and stderr of every run, appended.
    log: PathBuf,
    /// The running process; `None` once it was reaped.
    child: Option<Child>,
}

impl GameServer {
    /// Starts the child and waits for its "ready" line. `Err` carries the
    /// reason and the log's tail.
    async fn spawn(&mut self) -> Result<(), String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("open {}: {e}", self.log.display()))?;
        let from = log.metadata().map(|m| m.len()).unwrap_or(0);
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_game-server"));
        cmd.args(["--node-id", &self.node_id.to_string()])
            .args(["--p2p-port", &self.p2p_port.to_string()])
            .args(["--mesh-port", &self.mesh_port.to_string()])
            .args(["--admin-port", "0"])
            .args(["--redis", &self.redis_addr])
            .args(["--session-store", "redis"])
            .args(["--heartbeat-ms", "100"])
            .args([
                "--peer-timeout-ms",
                &self.peer_timeout.as_millis().to_string(),
            ])
            .args(["--flush-interval-ms", "20"])
            .args(["--redis-timeout-ms", "500"])
            .args(["--shutdown-grace-secs", "3"])
            // Every test client comes from 127.0.0.1; the login limits have
            // their own test (integration-tests/tests/login_limits.rs).
            .args(["--login-attempts-per-ip-per-min", "100000"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        for var in UNSET_ENV {
            cmd.env_remove(var);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", env!("CARGO_BIN_EXE_game-server")))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let text = read_from(&self.log, from);
            if text.contains(&format!("Game server {} ready", self.node_id)) {
                return Ok(());
            }
            if let Some(status) = self.try_wait() {
                self.child = None;
                return Err(format!(
                    "game server {} exited before ready ({status}):\n{}",
                    self.node_id,
                    tail(&text)
                ));
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!(
                    "game server {} not ready within {START_TIMEOUT:?}:\n{}",
                    self.node_id,
                    tail(&text)
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts it again after it died, same node id and ports.
    async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running game server");
        if let Err(e) = self.spawn().await {
            panic!("restart of game server {}: {e}", self.node_id);
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("game server is running").id()
    }

    /// SIGKILL, then reap: a crash, nothing saved, nothing said.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP (`pause`) or SIGCONT: a stalled process, alive to the
    /// kernel, deaf to everyone.
    fn signal(&self, signal: &str) {
        process::signal(self.pid(), signal);
    }

    /// SIGSTOP, and returns once every thread of the process is stopped.
    async fn stop_and_wait_stopped(&self) {
        let what = format!("game server {}", self.node_id);
        process::stop_and_wait_stopped(self.pid(), SETTLE, &what).await;
    }

    /// SIGTERM: asks for the graceful stop (the workspace forbids unsafe
    /// code, so no `libc::kill`).
    fn terminate(&self) {
        process::signal(self.pid(), "-TERM");
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Waits for the process to exit by itself and reaps it.
    async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_wait() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "game server {} still running {within:?} after SIGTERM:\n{}",
                self.node_id,
                tail(&read_from(&self.log, 0))
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for GameServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- game server {} log ({}), last {LOG_TAIL_LINES} lines ----\n{}",
                self.node_id,
                self.log.display(),
                tail(&read_from(&self.log, 0))
            );
        }
    }
}

fn read_from(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.seek(SeekFrom::Start(offset));
        let mut bytes = Vec::new();
        let _ = f.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    text
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// A gateway running in this process.
struct Gateway {
    /// Its node id (for messages).
    node_id: u64,
    /// Where clients connect.
    addr: String,
    /// Number of game servers it counts live.
    live: watch::Receiver<usize>,
    /// Stops it.
    shutdown: CancellationToken,
    /// Its `wait()`; taken by [`Gateway::stop`].
    task: Option<JoinHandle<()>>,
}

impl Gateway {
    /// Waits until it counts exactly `n` live game servers.
    async fn wait_live(&mut self, n: usize) {
        let node_id = self.node_id;
        let seen = tokio::time::timeout(SETTLE, self.live.wait_for(|c| *c == n))
            .await
            .map(|r| r.is_ok());
        match seen {
            Ok(true) => {}
            Ok(false) => panic!("gateway {node_id} stopped while waiting for {n} live"),
            Err(_) => panic!(
                "gateway {node_id} did not see {n} live game servers within {SETTLE:?} (it sees {})",
                *self.live.borrow()
            ),
        }
    }

    async fn client(&self) -> Client {
        Client::connect_with_timeout(&self.addr, TIMEOUT)
            .await
            .expect("client connects to the gateway")
    }

    /// Stops it gracefully and waits (bounded) for it.
    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(SETTLE, task)
                .await
                .expect("gateway stops within its grace")
                .expect("gateway task");
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // A failing test must not leave it running for the next one.
        self.shutdown.cancel();
    }
}

/// A gateway's configuration for these tests, seeded with the game server
/// at `seed_port` only.
fn gateway_config(node_id: u64, seed_port: u16) -> GwConfig {
    GwConfig {
        node: NodeFlags {
            node_id,
            heartbeat_ms: 100,
            peer_timeout_ms: PEER_TIMEOUT.as_millis() as u64,
            shutdown_grace_secs: 2,
            admin_port: 0,
            ..NodeFlags::default()
        },
        client_bind: "127.0.0.1".into(),
        client_port: 0,
        p2p_port: 0,
        game_servers: vec![format!("127.0.0.1:{seed_port}")],
        request_timeout_ms: REQUEST_TIMEOUT.as_millis() as u64,
        // Every test client connects from 127.0.0.1; the per-IP limit
        // has its own test (integration-tests/tests/overload.rs).
        max_connects_per_ip_per_sec: 100_000,
        ..GwConfig::default()
    }
}

/// Set in the environment of a gateway child process (see
/// [`GatewayProcess`]): `<node id>,<seed P2P port>,<live game servers to
/// wait for>`.
const GATEWAY_CHILD_ENV: &str = "GAMEMESH_CLUSTER_TEST_GATEWAY";

/// What a gateway child process prints once it is ready, before its client
/// address.
const GATEWAY_READY: &str = "gateway child ready, clients at ";

/// A gateway in a process of its own, so that it can be killed (SIGKILL:
/// nothing flushed, nothing said, its sockets closed by the kernel), which
/// a gateway inside the test process cannot be.
///
/// The process is this test binary run again for the one test
/// [`gateway_child_process`] (libtest's `--exact --ignored`), with
/// [`GATEWAY_CHILD_ENV`] set: it runs the gateway library of this very
/// build, where the `gateway` binary may not be built (`-p` runs) or be
/// stale. SIGKILLed and reaped on drop.
struct GatewayProcess {
    /// Its node id.
    node_id: u64,
    /// Where clients connect.
    addr: String,
    /// stdout and stderr, printed when the test fails.
    log: PathBuf,
    /// The process; `None` once killed and reaped.
    child: Option<Child>,
}

impl GatewayProcess {
    async fn spawn(node_id: u64, seed_port: u16, live: usize, log: PathBuf) -> GatewayProcess {
        let out = File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log handle");
        let exe = std::env::current_exe().expect("the test binary's path");
        let child = Command::new(&exe)
            .args([
                "gateway_child_process",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env(GATEWAY_CHILD_ENV, format!("{node_id},{seed_port},{live}"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} as a gateway: {e}", exe.display()));
        let mut gw = GatewayProcess {
            node_id,
            addr: String::new(),
            log,
            child: Some(child),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let text = read_from(&gw.log, 0);
            if let Some(addr) = text
                .lines()
                .find_map(|l| l.split_once(GATEWAY_READY).map(|(_, a)| a.trim()))
            {
                gw.addr = addr.to_string();
                return gw;
            }
            let exited = gw.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none(),
                "gateway {node_id} exited before ready ({exited:?}):\n{}",
                tail(&text)
            );
            assert!(
                Instant::now() < deadline,
                "gateway {node_id} not ready (linked to {live} game servers) within {START_TIMEOUT:?}:\n{}",
                tail(&text)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn client(&self) -> Client {
        Client::connect_with_timeout(&self.addr, TIMEOUT)
            .await
            .expect("client connects to the gateway process")
    }

    /// SIGKILL, then reap: a crash.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- gateway {} log ({}), last {LOG_TAIL_LINES} lines ----\n{}",
                self.node_id,
                self.log.display(),
                tail(&read_from(&self.log, 0))
            );
        }
    }
}

/// Not a test: the body of a [`GatewayProcess`], run only in a child
/// process that has [`GATEWAY_CHILD_ENV`] set (hence ignored). It starts
/// the gateway, waits until it links the game servers it was told to,
/// prints [`GATEWAY_READY`] and its client address, and runs until it is
/// killed. Run by hand, without the variable, it fails and says so.
#[test]
#[ignore = "the body of the gateway child process of a_killed_gateways_clients_resume_*; not a test"]
fn gateway_child_process() {
    let spec = std::env::var(GATEWAY_CHILD_ENV).unwrap_or_else(|_| {
        panic!(
            "not a test: this is the gateway child process that \
             a_killed_gateways_clients_resume_* starts with {GATEWAY_CHILD_ENV} set"
        )
    });
    let fields: Vec<u64> = spec
        .split(',')
        .map(|f| {
            f.parse()
                .unwrap_or_else(|e| panic!("{GATEWAY_CHILD_ENV}={spec}: {e}"))
        })
        .collect();
    let [node_id, seed_port, live] = fields[..] else {
        panic!("{GATEWAY_CHILD_ENV}={spec}: want <node id>,<seed port>,<live game servers>");
    };
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let seed_port = u16::try_from(seed_port).expect("a port");
        let running =
            gamemesh_gateway::start(gateway_config(node_id, seed_port), CancellationToken::new())
                .await
                .expect("gateway starts");
        let mut linked = running.live_game_servers();
        linked
            .wait_for(|n| *n as u64 == live)
            .await
            .expect("the gateway runs");
        println!("{GATEWAY_READY}{}", running.client_addr);
        // Until SIGKILL: the shutdown token is never cancelled.
        running.wait().await;
    });
}

/// A fresh client on `gw`, logged in as `user` (servers run without an
/// auth secret, so any token is accepted).
async fn logged_in(gw: &Gateway, user: u64) -> (Client, LoginResponse) {
    let mut c = gw.client().await;
    let l = c
        .login(user, "dev")
        .await
        .unwrap_or_else(|e| panic!("login of user {user} via gateway {}: {e}", gw.node_id));
    (c, l)
}

fn kick_reason(p: &ServerPacket) -> Option<KickReason> {
    match &p.body {
        Some(server_packet::Body::Kicked(k)) => KickReason::try_from(k.reason).ok(),
        _ => None,
    }
}

/// Echoes `data` under one sequence id, re-sending it every
/// [`UNAVAILABLE_RETRY`] while it is answered `UNAVAILABLE` (the caller
/// bounds the whole); the number of `UNAVAILABLE` answers.
async fn echo_until_served(c: &mut Client, data: &str) -> Result<u32, String> {
    let seq = c.allocate_sequence();
    let mut unavailable = 0;
    loop {
        match c.echo_at(seq, data.to_string()).await {
            Ok(back) if back == data.as_bytes() => return Ok(unavailable),
            Ok(back) => return Err(format!("echo returned {back:?}, sent {data:?}")),
            Err(e) if e.error_code() == Some(ErrorCode::Unavailable) => {
                unavailable += 1;
                tokio::time::sleep(UNAVAILABLE_RETRY).await;
            }
            Err(e) => return Err(describe_error(&e)),
        }
    }
}

/// The `p`th percentile (nearest rank) of `sorted`; zero when empty.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn describe_error(e: &ClientError) -> String {
    format!("{} ({e})", e.kind())
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_game_server_joins_without_restarts() {
    let h = Harness::new("late-join");
    let gs1 = h.game_server(1).await;
    let _gs2 = h.game_server(2).await;
    let mut gw1 = h.gateway(1, &gs1).await;
    let mut gw2 = h.gateway(2, &gs1).await;
    // Seeded with gs1 only: gs2 is learnt through membership.
    gw1.wait_live(2).await;
    gw2.wait_live(2).await;

    let _gs3 = h.game_server(3).await;
    gw1.wait_live(3).await;
    gw2.wait_live(3).await;

    let mut served = Vec::new();
    let mut clients = Vec::new();
    for i in 0..9u64 {
        let gw = if i % 2 == 0 { &gw1 } else { &gw2 };
        let (mut c, l) = logged_in(gw, 100 + i).await;
        assert_eq!(c.echo("hi").await.expect("echo"), "hi");
        served.push(l.game_server_node_id);
        clients.push(c);
    }
    for node in 1..=3 {
        assert!(
            served.contains(&node),
            "game server {node} served none of 9 fresh logins (served: {served:?})"
        );
    }
    gw1.stop().await;
    gw2.stop().await;
}

/// The peer timeout of the failover test: long, so that only the fast path
/// (a killed process's closed connections) can serve its clients in time.
const LONG_PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound on kill-to-served for every client in the failover test: half the
/// long peer timeout, so a client served by the heartbeat's path (after the
/// peer timeout) fails it, while a loaded 2-core machine has ample room. The
/// goal (issue 17) is p99 under 500 ms; the test prints what it measured.
const KILL_TO_SERVED_BOUND: Duration = Duration::from_millis(2500);

/// How long a client waits before re-sending a request answered
/// `UNAVAILABLE` in the failover test: what is measured is the cluster's
/// failover, not a client's back-off.
const UNAVAILABLE_RETRY: Duration = Duration::from_millis(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_game_server_moves_its_100_clients_to_live_ones() {
    const CLIENTS: u64 = 100;
    let h = Harness::new("kill-100").with_peer_timeout(LONG_PEER_TIMEOUT);
    let gs1 = h.game_server(1).await;
    let mut gs2 = h.game_server(2).await;
    let _gs3 = h.game_server(3).await;
    let mut gws = [h.gateway(1, &gs1).await, h.gateway(2, &gs1).await];
    for gw in &mut gws {
        gw.wait_live(3).await;
    }

    let logins = futures::future::join_all((0..CLIENTS).map(|i| {
        let gw = &gws[(i % 2) as usize];
        async move {
            let user = 1000 + i;
            let (mut c, l) = logged_in(gw, user).await;
            let data = format!("before {user}");
            assert_eq!(c.echo(data.clone()).await.expect("first echo"), data);
            (user, c, l.game_server_node_id)
        }
    }))
    .await;
    let on_gs2 = logins.iter().filter(|(_, _, node)| *node == 2).count();
    assert!(
        on_gs2 > 0,
        "no client was served by game server 2; nothing to fail over"
    );

    // The clock starts at the kill; every client sends its next request
    // at once, concurrently, and re-sends it while it is answered
    // UNAVAILABLE. Kill-to-served is when its echo came back.
    let killed = Instant::now();
    gs2.kill();
    let outcomes =
        futures::future::join_all(logins.into_iter().map(|(user, mut c, node)| async move {
            let data = format!("after {user}");
            let r = match tokio::time::timeout(
                Duration::from_secs(20),
                echo_until_served(&mut c, &data),
            )
            .await
            {
                Ok(r) => r.map(|unavailable| (killed.elapsed(), unavailable)),
                Err(_) => Err("HUNG: no outcome within 20 s".into()),
            };
            (user, node, r, c)
        }))
        .await;
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|(user, node, r, _)| {
            r.as_ref()
                .err()
                .map(|e| format!("user {user} (was on game server {node}): {e}"))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {CLIENTS} clients failed their echo after game server 2 was killed \
         ({on_gs2} of them were on it):\n{}",
        failed.len(),
        failed.join("\n")
    );
    let served = |moved: bool| -> Vec<Duration> {
        let mut d: Vec<Duration> = outcomes
            .iter()
            .filter(|(_, node, _, _)| !moved || *node == 2)
            .filter_map(|(_, _, r, _)| r.as_ref().ok().map(|(took, _)| *took))
            .collect();
        d.sort();
        d
    };
    let (all, moved) = (served(false), served(true));
    let retried = outcomes
        .iter()
        .filter(|(_, _, r, _)| matches!(r, Ok((_, n)) if *n > 0))
        .count();
    eprintln!(
        "kill-to-served, all {CLIENTS} clients: p50 {:?}, p99 {:?}, max {:?}; the {on_gs2} \
         of game server 2: p50 {:?}, p99 {:?}, max {:?}; {retried} re-sent after UNAVAILABLE \
         (peer timeout {LONG_PEER_TIMEOUT:?})",
        percentile(&all, 50),
        percentile(&all, 99),
        percentile(&all, 100),
        percentile(&moved, 50),
        percentile(&moved, 99),
        percentile(&moved, 100),
    );
    let slowest = percentile(&all, 100);
    assert!(
        slowest < KILL_TO_SERVED_BOUND,
        "the last client was served {slowest:?} after the kill: not the fast path \
         (bound {KILL_TO_SERVED_BOUND:?}, peer timeout {LONG_PEER_TIMEOUT:?})"
    );
    // The gateways learnt it from the closed connections too, not from
    // the heartbeat (which would take the peer timeout).
    for gw in &mut gws {
        assert_eq!(
            *gw.live.borrow(),
            2,
            "gateway {} still counts game server 2 live after its clients were served",
            gw.node_id
        );
    }

    let owners = h.session_owners();
    assert_eq!(
        owners.len() as u64,
        CLIENTS,
        "one session record per client survives the kill"
    );
    let on_dead: Vec<&(String, String)> = owners.iter().filter(|(_, o)| o == "2").collect();
    assert!(
        on_dead.is_empty(),
        "session records still owned by the killed game server 2: {on_dead:?}"
    );
    let elsewhere: Vec<&(String, String)> = owners
        .iter()
        .filter(|(_, o)| o != "1" && o != "3")
        .collect();
    assert!(
        elsewhere.is_empty(),
        "connected sessions must be owned by a live game server (1 or 3): {elsewhere:?}"
    );
    drop(outcomes);
    let [gw1, gw2] = gws;
    gw1.stop().await;
    gw2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_server_stopped_with_sigterm_kicks_its_clients_and_leaves_nothing_pointing_at_it() {
    let h = Harness::new("sigterm");
    let mut gs1 = h.game_server(1).await;
    let _gs2 = h.game_server(2).await;
    let mut gw = h.gateway(1, &gs1).await;
    gw.wait_live(2).await;
    wait_for_async("both game servers registered", SETTLE, || async {
        h.registered_nodes() == [1, 2]
    })
    .await;

    let mut on_gs1 = Vec::new();
    let mut on_gs2 = Vec::new();
    for user in 1..=6u64 {
        let (mut c, l) = logged_in(&gw, user).await;
        assert_eq!(c.echo("before").await.expect("echo"), "before");
        match l.game_server_node_id {
            1 => on_gs1.push((c, l)),
            2 => on_gs2.push(c),
            n => panic!("login served by unknown game server {n}"),
        }
    }
    assert!(
        !on_gs1.is_empty() && !on_gs2.is_empty(),
        "round robin put clients on both game servers ({} on 1, {} on 2)",
        on_gs1.len(),
        on_gs2.len()
    );

    let sent = Instant::now();
    gs1.terminate();

    for (c, l) in &mut on_gs1 {
        let push = c
            .next_push(TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("session {}: no push after SIGTERM: {e}", l.session_id));
        assert_eq!(
            kick_reason(&push),
            Some(KickReason::ServerShutdown),
            "session {}: expected Kicked{{SERVER_SHUTDOWN}}, got {push:?}",
            l.session_id
        );
        assert!(
            c.wait_closed(TIMEOUT).await,
            "session {}: socket closed after the kick",
            l.session_id
        );
    }

    let status = gs1.wait_exit(Duration::from_secs(10)).await;
    assert!(
        status.success(),
        "game server 1 exited with {status} after SIGTERM"
    );
    eprintln!("game server 1 exited {:?} after SIGTERM", sent.elapsed());

    let left = h.sessions_owned_by(1);
    assert!(
        left.is_empty(),
        "session records still owned by stopped game server 1: {left:?}"
    );
    wait_for_async("game server 1 gone from the registry", SETTLE, || async {
        !h.registered_nodes().contains(&1)
    })
    .await;

    // A kicked client resumes on the same gateway, lands on game server 2,
    // and finds its sequence watermark.
    let (kicked, login) = &on_gs1[0];
    let mut again = gw.client().await;
    let snapshot = again
        .resume(login.session_id, &login.resume_token)
        .await
        .expect("resume of a session released by SIGTERM");
    assert_eq!(snapshot.game_server_node_id, 2, "resumed on game server 2");
    assert_eq!(
        snapshot.last_sequence_id,
        kicked.last_sequence(),
        "the snapshot holds the last executed sequence id"
    );
    again.set_next_sequence(snapshot.last_sequence_id + 1);
    assert_eq!(again.echo("resumed").await.expect("echo"), "resumed");

    for c in &mut on_gs2 {
        assert_eq!(
            c.echo("undisturbed").await.expect("echo on game server 2"),
            "undisturbed"
        );
        let extra: Vec<&ServerPacket> = c.queued().collect();
        assert!(
            extra.is_empty(),
            "a client of game server 2 received unexpected packets: {extra:?}"
        );
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_server_that_comes_back_is_used_again() {
    let h = Harness::new("comes-back");
    let gs1 = h.game_server(1).await;
    let mut gs2 = h.game_server(2).await;
    let mut gw = h.gateway(1, &gs1).await;
    gw.wait_live(2).await;

    gs2.kill();
    gw.wait_live(1).await;

    gs2.restart().await;
    gw.wait_live(2).await;

    // Round robin over two live game servers: two fresh logins cover both.
    let mut served = Vec::new();
    let mut clients = Vec::new();
    for user in 1..=2u64 {
        let (mut c, l) = logged_in(&gw, user).await;
        assert_eq!(c.echo("back").await.expect("echo"), "back");
        served.push(l.game_server_node_id);
        clients.push(c);
    }
    assert!(
        served.contains(&2),
        "the restarted game server 2 serves new logins again (served: {served:?})"
    );
    gw.stop().await;
}

// ---------------------------------------------------------------------------
// Faults: a stalled game server, a restarted Redis, a killed gateway. The
// increment is the probe: unlike echo, running it twice shows.
// ---------------------------------------------------------------------------

/// Increments as `seq` until it is answered with a value, retrying the SAME
/// sequence id on `UNAVAILABLE` (so it can never run twice), within
/// `within`. Returns the value and how many `UNAVAILABLE` came first.
async fn increment_until_answered(
    c: &mut Client,
    seq: u64,
    within: Duration,
) -> Result<(u64, u32), String> {
    let deadline = Instant::now() + within;
    let mut unavailable = 0;
    loop {
        match c.increment_at(seq).await {
            Ok(v) => return Ok((v, unavailable)),
            Err(e) if e.error_code() == Some(ErrorCode::Unavailable) => {
                unavailable += 1;
                if Instant::now() >= deadline {
                    return Err(format!("still UNAVAILABLE after {within:?}"));
                }
                // A retry interval, not a wait for luck: the next attempt
                // is the check.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(describe_error(&e)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_game_server_gets_its_clients_unavailable_within_the_bound_and_recovers() {
    let h = Harness::new("sigstop");
    let gs1 = h.game_server(1).await;
    let gs2 = h.game_server(2).await;
    let mut gw = h.gateway(1, &gs1).await;
    gw.wait_live(2).await;

    // Log users in until both game servers hold some.
    let mut stalled = Vec::new();
    let mut healthy = Vec::new();
    for user in 3000..3012u64 {
        let (mut c, l) = logged_in(&gw, user).await;
        let seq = c.allocate_sequence();
        assert_eq!(c.increment_at(seq).await.expect("first increment"), 1);
        if l.game_server_node_id == gs1.node_id {
            stalled.push(c);
        } else {
            healthy.push(c);
        }
    }
    assert!(
        !stalled.is_empty() && !healthy.is_empty(),
        "round robin should put users on both game servers ({} on 1, {} on 2)",
        stalled.len(),
        healthy.len()
    );

    gs1.stop_and_wait_stopped().await;
    let stopped_at = Instant::now();
    // Each stalled client's request is relayed to the stopped game server
    // (the gateway has not noticed yet): the gateway itself must answer it.
    let answers = futures::future::join_all(stalled.iter_mut().map(|c| async move {
        c.set_timeout(UNAVAILABLE_BOUND + Duration::from_secs(5));
        let seq = c.allocate_sequence();
        let sent = Instant::now();
        let r = c.increment_at(seq).await;
        (seq, sent.elapsed(), r)
    }))
    .await;
    for (seq, took, r) in &answers {
        match r {
            Err(e) if e.error_code() == Some(ErrorCode::Unavailable) => assert!(
                *took <= UNAVAILABLE_BOUND,
                "UNAVAILABLE for seq {seq} took {took:?}, bound {UNAVAILABLE_BOUND:?}"
            ),
            other => panic!(
                "a request to the stalled game server must get UNAVAILABLE within \
                 {UNAVAILABLE_BOUND:?}; seq {seq} got {other:?} after {took:?}"
            ),
        }
    }
    // The other game server's clients never noticed.
    for c in &mut healthy {
        let seq = c.allocate_sequence();
        let v = c
            .increment_at(seq)
            .await
            .expect("a client of the healthy game server is unaffected");
        assert_eq!(v, 2, "exactly one earlier increment");
    }
    eprintln!(
        "stalled game server's {} clients answered UNAVAILABLE within {:?} of SIGSTOP",
        stalled.len(),
        stopped_at.elapsed()
    );

    // The same sequence id again: moved to the live game server, run once.
    for (c, (seq, _, _)) in stalled.iter_mut().zip(&answers) {
        let (v, _) = increment_until_answered(c, *seq, SETTLE)
            .await
            .expect("the retry is answered by the live game server");
        assert_eq!(v, 2, "the retried increment ran exactly once");
    }

    // SIGCONT: the woken game server finds its sessions taken (fenced off),
    // runs nothing twice, and takes new sessions again.
    gs1.signal("-CONT");
    wait_for_async("the gateway sees both game servers again", SETTLE, || {
        let live = *gw.live.borrow();
        async move { live == 2 }
    })
    .await;
    for c in stalled.iter_mut().chain(healthy.iter_mut()) {
        let seq = c.allocate_sequence();
        let (v, _) = increment_until_answered(c, seq, SETTLE)
            .await
            .expect("increments go on after SIGCONT");
        assert_eq!(v, 3, "no increment ran twice across the stall");
    }
    let mut on_gs1 = false;
    for user in 3100..3110u64 {
        let (mut c, l) = logged_in(&gw, user).await;
        let seq = c.allocate_sequence();
        assert_eq!(c.increment_at(seq).await.expect("fresh session"), 1);
        on_gs1 |= l.game_server_node_id == gs1.node_id;
    }
    assert!(on_gs1, "the resumed game server takes new logins again");
    drop(gs2);
    gw.stop().await;
}

/// A chat room name whose room runs on game server 2 of {1, 2}, so that
/// stopping game server 1 does not move it.
fn room_on_game_server_2(prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|r| rendezvous(&format!("chat:{r}"), [1, 2]) == Some(2))
        .expect("some name hashes to game server 2")
}

/// Texts of the chat posts `c` receives, up to and including `last`.
async fn posts_until(c: &mut Client, last: &str) -> Vec<String> {
    let mut texts = Vec::new();
    loop {
        let p = c.next_push(TIMEOUT).await.expect("the room's posts arrive");
        if let Some(server_packet::Body::ChatMessage(m)) = p.body {
            let done = m.text == last;
            texts.push(m.text);
            if done {
                return texts;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_woken_game_server_drops_the_stale_frames_of_sessions_adopted_elsewhere() {
    let h = Harness::new("stale-frames");
    let gs1 = h.game_server(1).await;
    let gs2 = h.game_server(2).await;
    let mut gw = h.gateway(1, &gs1).await;
    gw.wait_live(2).await;
    let room = room_on_game_server_2("stale");

    // A poster whose session is on game server 1, a reader on 2.
    let (mut poster, mut reader) = (None, None);
    for user in 3200..3230u64 {
        let (c, l) = logged_in(&gw, user).await;
        match l.game_server_node_id {
            1 if poster.is_none() => poster = Some((c, user)),
            2 if reader.is_none() => reader = Some(c),
            _ => {}
        }
    }
    let (mut poster, poster_user) = poster.expect("round robin puts a user on game server 1");
    let mut reader = reader.expect("round robin puts a user on game server 2");
    poster.chat_join(&room).await.expect("poster joins");
    reader.chat_join(&room).await.expect("reader joins");
    // Game server 1 has saved the join before it stops. A session still
    // dirty at the stop is the flusher's first save on waking: fenced off
    // (adopted meanwhile), it is dropped there, and the stale post never
    // meets a session game server 1 still holds, which is this test's case.
    let joined = poster.last_sequence();
    let poster_key = format!("gm:{{u:{poster_user}}}:session");
    let mut redis = h.redis_conn();
    wait_for_async("game server 1 saves the poster's join", SETTLE, || {
        let saved: Option<u64> = redis::cmd("HGET")
            .arg(&poster_key)
            .arg("last_seq")
            .query(&mut redis)
            .unwrap_or(None);
        async move { saved >= Some(joined) }
    })
    .await;

    // The post reaches the stopped game server 1 and waits in its socket;
    // the gateway declares it DOWN and answers for it: it may have run.
    let gs2_offset = fs::metadata(&gs2.log).map(|m| m.len()).unwrap_or(0);
    gs1.stop_and_wait_stopped().await;
    poster.set_timeout(UNAVAILABLE_BOUND + Duration::from_secs(5));
    match poster.chat_say(&room, "stale post").await {
        Err(ClientError::Server { error, .. })
            if error.code() == ErrorCode::Unavailable && error.outcome_unknown => {}
        other => panic!("the post to a stopped game server must get UNAVAILABLE with outcome_unknown, got {other:?}"),
    }
    // Game server 2 adopts the session once it, too, counts game server 1
    // dead. Earlier, it would ask game server 1 to hand the session off,
    // and game server 1 would read that request on waking and let the
    // session go before the stale post: the post would not run either,
    // but this test is about the stale post meeting a session it still
    // holds.
    wait_for_async(
        "game server 2 counts game server 1 down",
        SETTLE,
        || async { read_from(&gs2.log, gs2_offset).contains("Game server 1 is DOWN (mesh)") },
    )
    .await;
    // Its next request moves the socket: game server 2 adopts the session.
    echo_until_served(&mut poster, "adopted")
        .await
        .expect("game server 2 adopts the session");

    // Woken, game server 1 finds the queued post's session owned elsewhere
    // and drops the post instead of posting it.
    let offset = fs::metadata(&gs1.log).map(|m| m.len()).unwrap_or(0);
    gs1.signal("-CONT");
    wait_for_async("game server 1 drops the stale post", SETTLE, || async {
        read_from(&gs1.log, offset).contains("dropping its stale frame")
    })
    .await;
    // The room answers in order: a post run before the reader's marker
    // would reach the reader first.
    reader
        .chat_say(&room, "marker")
        .await
        .expect("reader posts");
    let texts = posts_until(&mut reader, "marker").await;
    assert!(
        !texts.iter().any(|t| t == "stale post"),
        "the stale post ran after its session moved: {texts:?}"
    );
    // The session lives on game server 2, served.
    echo_until_served(&mut poster, "still here")
        .await
        .expect("the adopted session carries on");
    drop(gs2);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_woken_game_server_drops_a_stale_login_that_was_served_elsewhere_meanwhile() {
    let h = Harness::new("stale-login");
    let gs1 = h.game_server(1).await;
    let gs2 = h.game_server(2).await;
    let mut gw = h.gateway(1, &gs1).await;
    gw.wait_live(2).await;

    // Two logins at once while game server 1 is stopped: the gateway
    // deals new sockets round robin, so one of them waits in game
    // server 1's socket until the gateway declares it DOWN.
    gs1.stop_and_wait_stopped().await;
    let mut clients = [gw.client().await, gw.client().await];
    for c in &mut clients {
        c.set_timeout(UNAVAILABLE_BOUND + Duration::from_secs(5));
    }
    let [a, b] = &mut clients;
    let (ra, rb) = tokio::join!(a.login(3300, "dev"), b.login(3301, "dev"));
    let (mut stale, user) = match (ra, rb) {
        (Err(e), Ok(_)) if e.error_code() == Some(ErrorCode::Unavailable) => (0, 3300),
        (Ok(_), Err(e)) if e.error_code() == Some(ErrorCode::Unavailable) => (1, 3301),
        other => panic!("one login must reach the stopped game server: {other:?}"),
    };
    let client = &mut clients[stale];
    stale = 0;
    // Again on the same connection: the gateway moves it to game server 2.
    let served = loop {
        match client.login(user, "dev").await {
            Ok(l) => break l,
            Err(e) if e.error_code() == Some(ErrorCode::Unavailable) => {
                stale += 1;
                assert!(stale < 100, "the login is never served: {e}");
                tokio::time::sleep(UNAVAILABLE_RETRY).await;
            }
            Err(e) => panic!("login again: {e}"),
        }
    };
    assert_eq!(served.game_server_node_id, gs2.node_id);

    // Woken, game server 1 reads the first login: the session it would
    // make would replace the one the client now holds and close its
    // connection. It drops it instead.
    let offset = fs::metadata(&gs1.log).map(|m| m.len()).unwrap_or(0);
    gs1.signal("-CONT");
    wait_for_async("game server 1 drops the stale login", SETTLE, || async {
        read_from(&gs1.log, offset).contains("was already served by another game server")
    })
    .await;
    echo_until_served(client, "intact")
        .await
        .expect("the client's connection and session carry on");
    let kicks: Vec<_> = client
        .take_queued()
        .iter()
        .filter_map(kick_reason)
        .collect();
    assert!(kicks.is_empty(), "the client was kicked: {kicks:?}");
    let key = format!("gm:{{u:{user}}}:session");
    let session: Option<u64> = redis::cmd("HGET")
        .arg(&key)
        .arg("sid")
        .query(&mut h.redis_conn())
        .expect("HGET sid");
    assert_eq!(
        session,
        Some(served.session_id),
        "the user's session is still the one the client holds"
    );
    drop(gs2);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_under_load_gives_explicit_errors_then_recovers_without_double_execution() {
    const CLIENTS: u64 = 8;
    let mut h = Harness::persistent("redis-restart");
    let gs1 = h.game_server(1).await;
    let mut gw = h.gateway(1, &gs1).await;
    gw.wait_live(1).await;
    let mut clients = Vec::new();
    for user in 0..CLIENTS {
        let (mut c, _) = logged_in(&gw, 4000 + user).await;
        let seq = c.allocate_sequence();
        assert_eq!(c.increment_at(seq).await.expect("first increment"), 1);
        clients.push(c);
    }

    h.redis.stop();
    // With Redis gone every increment is refused explicitly (it could not
    // be made durable), within the Redis timeout: never a silent hang.
    let mut refused = 0;
    for c in &mut clients {
        let seq = c.allocate_sequence();
        match c.increment_at(seq).await {
            Err(e) if e.error_code() == Some(ErrorCode::Unavailable) => refused += 1,
            other => panic!("an increment with Redis down must be UNAVAILABLE, got {other:?}"),
        }
        // Undo the allocation: the same id is retried below.
        c.set_next_sequence(seq);
    }
    assert_eq!(refused, CLIENTS);

    h.redis.restart();
    for c in &mut clients {
        let seq = c.allocate_sequence();
        let (v, _) = increment_until_answered(c, seq, SETTLE)
            .await
            .expect("increments work again once Redis is back");
        assert_eq!(
            v, 2,
            "the refused increment did not run; the retry ran once"
        );
        let seq = c.allocate_sequence();
        assert_eq!(c.increment_at(seq).await.expect("next increment"), 3);
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateways_clients_resume_through_the_other_with_the_counter_exact() {
    const CLIENTS: u64 = 10;
    let h = Harness::new("gateway-kill");
    let gs1 = h.game_server(1).await;
    let _gs2 = h.game_server(2).await;
    // Gateway 1 in a process of its own, to be killed; gateway 2 here.
    let mut gw1 = h.gateway_process(1, &gs1, 2).await;
    let mut gw2 = h.gateway(2, &gs1).await;
    gw2.wait_live(2).await;

    let mut sessions = Vec::new();
    for user in 0..CLIENTS {
        let mut c = gw1.client().await;
        let l = c
            .login(5000 + user, "dev")
            .await
            .unwrap_or_else(|e| panic!("login of user {} via gateway 1: {e}", 5000 + user));
        for expected in 1..=3 {
            let seq = c.allocate_sequence();
            assert_eq!(c.increment_at(seq).await.expect("increment"), expected);
        }
        sessions.push((c, l));
    }

    // kill -9: no kick, no ClientDisconnected to the game servers, no save
    // on its way out. The game servers still hold every session as
    // connected to a socket on gateway 1.
    gw1.kill();
    for (mut old, l) in sessions {
        assert!(
            old.wait_closed(TIMEOUT).await,
            "the kernel closes the killed gateway's sockets"
        );
        let said: Vec<&ServerPacket> = old.queued().collect();
        assert!(
            said.is_empty(),
            "a killed gateway says nothing, yet session {} got {said:?}",
            l.session_id
        );
        let mut c = gw2.client().await;
        let snapshot = c
            .resume(l.session_id, &l.resume_token)
            .await
            .expect("resume through gateway 2");
        assert_eq!(snapshot.last_sequence_id, old.last_sequence());
        let seq = snapshot.last_sequence_id + 1;
        let (v, _) = increment_until_answered(&mut c, seq, SETTLE)
            .await
            .expect("increment after the resume");
        assert_eq!(
            v, 4,
            "three increments before, one after: none lost or doubled"
        );
    }
    let owners = h.session_owners();
    assert_eq!(
        owners.len() as u64,
        CLIENTS,
        "one session per user, no more"
    );
    gw2.stop().await;
}
