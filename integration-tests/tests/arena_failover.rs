//! Room failover (issue 15, "Tests"): two `arena-server` processes, two
//! gateways, a real Redis; players on both game servers in one arena; the
//! game server that runs the room is killed with SIGKILL. Within 5 s every
//! member receives `arena.state` again, with positions as of at most 1 s
//! before the death and ticks above every one seen, and afterwards the
//! room has one authority (one lease holder in Redis, ticks rising by
//! exactly 1).
//!
//! The game servers are child processes (a `kill -9` must take the whole
//! process); the gateways run in this process. The test finds
//! `arena-server` next to the test binaries and builds it (same profile)
//! when it is missing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gamemesh_game_server::api::placement::rendezvous;
use gamemesh_integration_tests::{
    free_port, gateway_config, init_tracing, start_gateway, Client, RedisBackend, TestRedis,
    TEST_CLUSTER_SECRET, TIMEOUT,
};
use gamemesh_proto::client::{client_packet, server_packet, ClientPacket, HeartbeatRequest};
use gamemesh_test_client::arena::proto::{MoveRequest, State};
use gamemesh_test_client::arena::{demo, wire};
use tokio::time::Instant;

/// The contract's bound on a room's failover.
const FAILOVER: Duration = Duration::from_secs(5);

/// How long a join may retry while the mesh forms.
const JOIN_PATIENCE: Duration = Duration::from_secs(15);

/// The directory the test binaries were built into (`target/<profile>`).
fn bin_dir() -> PathBuf {
    std::env::current_exe()
        .expect("the test binary's path")
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// `arena-server`, built (same profile) if it is not there yet.
fn arena_server() -> PathBuf {
    let path = bin_dir().join("arena-server");
    if !path.exists() {
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "-p", "gamemesh-arena", "--bin", "arena-server"]);
        if bin_dir().ends_with("release") {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("cargo runs");
        assert!(
            status.success() && path.exists(),
            "cannot build arena-server ({status}): run `cargo build -p gamemesh-arena`"
        );
    }
    path
}

/// An `arena-server` child process, SIGKILLed on drop.
struct GameServerProcess {
    child: Child,
    log: PathBuf,
    p2p_port: u16,
}

impl GameServerProcess {
    /// Starts one and waits until it is ready. `free_port` only finds a
    /// port free now: another test may take it before the child binds it,
    /// and the child then stops with "port N is already in use". Such a
    /// start is tried again on fresh ports; any other failure is reported
    /// with the child's log.
    fn start(bin: &Path, node_id: u64, redis: &str, dir: &Path) -> Self {
        for _ in 0..5 {
            let mut gs = Self::spawn(bin, node_id, redis, dir);
            match gs.ready() {
                Ok(()) => return gs,
                Err(log) if log.contains("already in use") => continue,
                Err(log) => panic!("arena-server {node_id} did not start:\n{log}"),
            }
        }
        panic!("arena-server {node_id}: its ports were taken 5 times in a row");
    }

    fn spawn(bin: &Path, node_id: u64, redis: &str, dir: &Path) -> Self {
        let (p2p_port, mesh_port) = (free_port(), free_port());
        let log = dir.join(format!("arena-server-{node_id}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin)
            .args([
                "--node-id",
                &node_id.to_string(),
                "--redis",
                redis,
                "--p2p-port",
                &p2p_port.to_string(),
                "--mesh-port",
                &mesh_port.to_string(),
                "--admin-port",
                "0",
                "--heartbeat-ms",
                "100",
                "--peer-timeout-ms",
                "2000",
                "--cluster-secret",
                TEST_CLUSTER_SECRET,
            ])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("CLUSTER_SECRET")
            .env_remove("AUTH_SECRET")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("arena-server starts");
        Self {
            child,
            log,
            p2p_port,
        }
    }

    /// Waits for the child's "ready" line; `Err(log)` if it exited first
    /// or did not get there within the test timeout.
    fn ready(&mut self) -> Result<(), String> {
        let deadline = std::time::Instant::now() + TIMEOUT;
        while std::time::Instant::now() < deadline {
            if self.log().contains(" ready: P2P ") {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("(exited: {status})\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("(not ready in {TIMEOUT:?})\n{}", self.log()))
    }

    /// `kill -9`.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for GameServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client on `addr` whose socket the gateway routed to `node`, logged
/// in as `user`.
async fn client_on(addr: &str, node: u64, user: u64) -> Client {
    for probe in 3_000_000..3_000_040 {
        let mut c = Client::connect_with_timeout(addr, TIMEOUT).await.unwrap();
        let login = c.login(probe, "dev").await.unwrap();
        c.logout().await.unwrap();
        if login.game_server_node_id == node {
            assert_eq!(
                c.login(user, "dev").await.unwrap().game_server_node_id,
                node
            );
            return c;
        }
    }
    panic!("no socket of {addr} was routed to game server {node}");
}

async fn step(c: &mut Client, dx: i32, dy: i32) {
    let reply = c
        .call(wire::request(wire::MOVE, &MoveRequest { dx, dy }))
        .await
        .unwrap();
    assert!(
        matches!(reply.body, Some(server_packet::Body::Game(_))),
        "{reply:?}"
    );
}

/// The latest state `c` received within the next 300 ms (states come
/// every 50 ms, so there is one; what was queued is read first).
async fn latest_state(c: &mut Client) -> State {
    let until = Instant::now() + Duration::from_millis(300);
    let mut last = None;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match c.recv(left).await {
            Ok(p) => {
                if let wire::Incoming::State(s) = wire::classify(p) {
                    last = Some(s);
                }
            }
            Err(_) => break,
        }
    }
    last.expect("a state within 300 ms")
}

/// Keeps `c`'s connection busy (a heartbeat every 200 ms, as a client
/// does; the gateway reroutes a socket whose game server died on its next
/// frame) until a state with a tick above `above` arrives; returns it and
/// when it came. `None` if none came by `deadline`.
async fn state_after(c: &mut Client, above: u64, deadline: Instant) -> Option<(State, Instant)> {
    let mut next_beat = Instant::now();
    while Instant::now() < deadline {
        if Instant::now() >= next_beat {
            let packet = ClientPacket {
                sequence_id: c.allocate_sequence(),
                body: Some(client_packet::Body::Heartbeat(HeartbeatRequest {
                    client_time_ms: 0,
                })),
            };
            let _ = c.send(&packet).await;
            next_beat = Instant::now() + Duration::from_millis(200);
        }
        if let Ok(p) = c.recv(Duration::from_millis(50)).await {
            if let wire::Incoming::State(s) = wire::classify(p) {
                if s.tick > above {
                    return Some((s, Instant::now()));
                }
            }
        }
    }
    None
}

/// Reads everything `c` receives until it has been quiet for 300 ms (the
/// dead room sends nothing more; the new one starts seconds later) and
/// returns the highest tick among the states.
async fn drain(c: &mut Client) -> u64 {
    let mut max = 0;
    while let Ok(p) = c.recv(Duration::from_millis(300)).await {
        if let wire::Incoming::State(s) = wire::classify(p) {
            max = max.max(s.tick);
        }
    }
    max
}

fn positions(s: &State) -> Vec<(u64, i32, i32)> {
    let mut p: Vec<(u64, i32, i32)> = s.players.iter().map(|p| (p.user_id, p.x, p.y)).collect();
    p.sort_unstable();
    p
}

async fn a_room_carries_on_within_5_s_when_its_game_server_is_killed(backend: RedisBackend) {
    init_tracing();
    let redis = TestRedis::start(backend);
    let bin = arena_server();
    let dir = redis.dir();
    let mut gs1 = GameServerProcess::start(&bin, 1, &redis.address(), &dir);
    let gs2 = GameServerProcess::start(&bin, 2, &redis.address(), &dir);
    let ports = [gs1.p2p_port, gs2.p2p_port];
    let gw_a = start_gateway(gateway_config(1, &ports), 2).await;
    let gw_b = start_gateway(gateway_config(2, &ports), 2).await;

    // A room that runs on game server 1; one player on each game server.
    let room = (0..)
        .map(|i| format!("fo{i}"))
        .find(|r| rendezvous(&format!("arena:{r}"), [1, 2]) == Some(1))
        .unwrap();
    let mut a = client_on(&gw_a.addr, 1, 11).await;
    let mut b = client_on(&gw_b.addr, 2, 12).await;
    // The room answers UNAVAILABLE until both game servers agree where it
    // runs: join retries while the mesh forms.
    demo::join(&mut a, &room, JOIN_PATIENCE).await.unwrap();
    demo::join(&mut b, &room, JOIN_PATIENCE).await.unwrap();
    for _ in 0..3 {
        step(&mut a, 1, 0).await;
    }
    for _ in 0..2 {
        step(&mut b, 0, 1).await;
    }
    // Positions older than a second at the death: in a checkpoint.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = latest_state(&mut b).await;
    assert_eq!(positions(&before), vec![(11, 3, 0), (12, 0, 2)]);

    let died = Instant::now();
    gs1.kill();
    let deadline = died + FAILOVER;
    // What the dead room sent is still arriving for a moment: the highest
    // tick each member got from it is what the new room must top.
    let (seen_a, seen_b) = tokio::join!(drain(&mut a), drain(&mut b));
    // (b read its states up to `before` already; none may be in flight.)
    let seen_b = seen_b.max(before.tick);
    let (ra, rb) = tokio::join!(
        state_after(&mut a, seen_a, deadline),
        state_after(&mut b, seen_b, deadline)
    );
    let logs = || format!("--- game server 2 ---\n{}", gs2.log());
    let (sa, at_a) = ra.unwrap_or_else(|| panic!("player a got no state within 5 s\n{}", logs()));
    let (sb, at_b) = rb.unwrap_or_else(|| panic!("player b got no state within 5 s\n{}", logs()));
    println!(
        "failover: a back after {:?} (tick {} -> {}), b after {:?} (tick {} -> {})",
        at_a - died,
        seen_a,
        sa.tick,
        at_b - died,
        seen_b,
        sb.tick
    );
    assert_eq!(
        positions(&sa),
        vec![(11, 3, 0), (12, 0, 2)],
        "the same members, in place"
    );
    assert_eq!(positions(&sb), positions(&sa));

    // One authority afterwards: one lease holder, ticks rising by 1.
    let mut conn = redis.conn();
    let lease = format!("gm:{{room:arena:{room}}}:lease");
    let holder: Option<String> = redis::cmd("GET").arg(&lease).query(&mut conn).unwrap();
    assert!(holder.is_some());
    let mut last = sb.tick;
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let p = b.next_push(TIMEOUT).await.expect("states keep coming");
        if let wire::Incoming::State(s) = wire::classify(p) {
            assert_eq!(s.tick, last + 1, "one authority: every tick once, in order");
            last = s.tick;
        }
    }
    let now: Option<String> = redis::cmd("GET").arg(&lease).query(&mut conn).unwrap();
    assert_eq!(now, holder, "the same holder throughout");
    gw_a.shutdown.cancel();
    gw_b.shutdown.cancel();
}

gamemesh_integration_tests::on_both_redis!(
    a_room_carries_on_within_5_s_when_its_game_server_is_killed
);
