//! The arena end to end through the real servers: a real `redis-server`,
//! the `arena-server` binary (the stock game server plus the arena module,
//! examples/arena) and a `gateway` binary on free ports, with `test-client
//! arena` played in tmux: the board comes up ticking, arrow keys move the
//! player (capture-pane shows it), a second player shows labelled, the
//! gateway is killed and started again and the client resumes into the
//! same room, `q` leaves the room.
//!
//! The test finds the binaries next to `test-client` in the target
//! directory and builds them (same profile) when they are missing.

mod support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gamemesh_test_client::Client;
use gamemesh_test_support::{free_port, wait_for_async, RedisServer};
use support::other_player;
use support::tmux::{arena_command, Tmux, EXITED};

const WAIT: Duration = Duration::from_secs(15);

/// Settings a developer's shell may hold that would change the servers.
const UNSET_ENV: &[&str] = &[
    "AUTH_SECRET",
    "CLUSTER_SECRET",
    "GAME_SERVERS",
    "GAME_SERVER_BIND",
    "GAME_SERVER_ADVERTISE_HOST",
    "RESUME_GRACE_SECS",
    "REPLY_CACHE",
];

/// The directory `test-client` was built into (target/debug or
/// target/release): the other binaries are looked for there.
fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_test-client"))
        .parent()
        .expect("the test-client binary is in a directory")
        .to_path_buf()
}

/// The path of binary `name` of `package`, built (same profile) if it is
/// not there yet.
fn binary(name: &str, package: &str) -> PathBuf {
    let path = bin_dir().join(name);
    if path.exists() {
        return path;
    }
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "-p", package, "--bin", name]);
    if bin_dir().ends_with("release") {
        cargo.arg("--release");
    }
    let status = cargo
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {name}: {e}"));
    assert!(
        status.success() && path.exists(),
        "building {name} failed ({status}): run `cargo build -p {package}` and see why"
    );
    path
}

/// A child process killed on drop, its output in a log file.
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, bin: &Path, args: &[String], dir: &Path) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        for var in UNSET_ENV {
            cmd.env_remove(var);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Proc { name, child, log }
    }

    /// The log so far, for failure messages.
    fn log(&self) -> String {
        format!(
            "--- {} log ---\n{}",
            self.name,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gateway_args(client_port: u16, p2p_port: u16, game_server_p2p: u16) -> Vec<String> {
    [
        "--node-id",
        "1",
        "--client-bind",
        "127.0.0.1",
        "--client-port",
        &client_port.to_string(),
        "--p2p-port",
        &p2p_port.to_string(),
        "--game-servers",
        &format!("127.0.0.1:{game_server_p2p}"),
        "--admin-port",
        "0",
    ]
    .map(String::from)
    .to_vec()
}

/// Waits until a login through `addr` works: the gateway has linked its
/// game server.
async fn wait_ready(addr: &str, logs: &[&Proc]) {
    let what = format!(
        "a login through {addr}\n{}",
        logs.iter().map(|p| p.log()).collect::<Vec<_>>().join("\n")
    );
    wait_for_async(&what, WAIT, || async {
        let Ok(mut c) = Client::connect_with_timeout(addr, Duration::from_secs(1)).await else {
            return false;
        };
        c.login(1, "dev").await.is_ok() && c.logout().await.is_ok()
    })
    .await;
}

#[tokio::test]
async fn the_arena_through_gateway_and_arena_server_in_tmux() {
    let arena_server = binary("arena-server", "gamemesh-arena");
    let gateway = binary("gateway", "gamemesh-gateway");
    let redis = RedisServer::start();
    let dir = redis.dir().to_path_buf();
    let (gs_p2p, gs_mesh, gw_p2p, gw_port) = (free_port(), free_port(), free_port(), free_port());
    let gs = Proc::spawn(
        "arena-server",
        &arena_server,
        &[
            "--node-id",
            "1",
            "--redis",
            &redis.addr(),
            "--p2p-port",
            &gs_p2p.to_string(),
            "--mesh-port",
            &gs_mesh.to_string(),
            "--admin-port",
            "0",
        ]
        .map(String::from),
        &dir,
    );
    let gw_args = gateway_args(gw_port, gw_p2p, gs_p2p);
    let gw = Proc::spawn("gateway", &gateway, &gw_args, &dir);
    let addr = format!("127.0.0.1:{gw_port}");
    wait_ready(&addr, &[&gs, &gw]).await;

    let tmux = Tmux::start("arena-e2e", &arena_command(&addr, "e2e", 7), 120, 40);
    tmux.wait_for_text("@ you 7 (0,0)", WAIT).await;
    tmux.wait_for("the tick to advance", WAIT, |s| {
        s.contains("room e2e | tick ") && !s.contains("room e2e | tick - ")
    })
    .await;

    tmux.send_keys(&["Right", "Right", "Down"]);
    tmux.wait_for_text("@ you 7 (2,1)", WAIT).await;

    let _other = other_player(&addr, "e2e", 8, 3).await;
    let screen = tmux.wait_for_text("A user 8 (3,0)", WAIT).await;
    assert!(screen.contains("players 2"), "{screen}");

    // The gateway dies and comes back on the same port: the session is
    // resumed, still in the room, and the states come again.
    drop(gw);
    let gw = Proc::spawn("gateway", &gateway, &gw_args, &dir);
    let screen = tmux.wait_for_text("resumed after", WAIT).await;
    assert!(screen.contains("@ you 7 (2,1)"), "{screen}\n{}", gw.log());
    tmux.send_keys(&["Up"]);
    tmux.wait_for_text("@ you 7 (2,0)", WAIT).await;

    tmux.send_keys(&["q"]);
    let screen = tmux.wait_for_text(EXITED, WAIT).await;
    assert!(screen.contains("left arena e2e at (2, 0)"), "{screen}");
    assert!(screen.contains("exit status 0"), "{screen}");
    drop(gs);
}
