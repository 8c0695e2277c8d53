//! A real `redis-server` child process for tests.
//!
//! Why a real server and not a fake: the game server's Redis session store
//! relies on real command semantics (expiry, scripts, connection loss), and
//! the tests that matter are the ones where Redis goes away and comes back,
//! which [`RedisServer::stop`] and [`RedisServer::restart`] make explicit.
//!
//! Each server gets a port from [`free_port`], its own temporary `--dir`, no
//! persistence (`--save "" --appendonly no`) and stays in the foreground
//! (`--daemonize no`) so it is our child: we can kill it and reap it on
//! `Drop`. Readiness is a PING over TCP polled against a deadline.
//!
//! All methods block for at most a few hundred milliseconds in the normal
//! case (start-up is ~10-50 ms), which is acceptable inside `#[tokio::test]`.
//!
//! If the test process is killed outright (SIGKILL, `panic = "abort"`),
//! `Drop` does not run and the child outlives it; Ctrl-C on `cargo test`
//! reaches it too because it shares the test's process group.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::free_port;

/// The message a test shows when Redis is missing: tests that need Redis
/// fail with instructions rather than skipping silently.
const NOT_FOUND: &str = "redis-server not found: install it (apt-get install redis-server) \
                         or run ./scripts/test.sh, which installs it";

/// How long a fresh `redis-server` may take to answer PING. It is usually
/// ready in tens of milliseconds; the margin is for loaded CI machines.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the port may keep accepting after the child was killed and
/// reaped. The kernel closes the socket on exit, so this is a safety net.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Between readiness checks.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// [`free_port`] can race with other tests (the port is free when probed,
/// taken when redis binds it); each lost race costs one attempt.
const START_ATTEMPTS: u32 = 5;

/// Distinguishes temp dirs of servers started by one test process.
static DIR_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A `redis-server` child process on `127.0.0.1`, killed and reaped on drop.
///
/// ```no_run
/// use gamemesh_test_support::RedisServer;
///
/// let mut redis = RedisServer::start();
/// let url = redis.url(); // "redis://127.0.0.1:P"
/// redis.stop(); // the port now refuses connections
/// redis.restart(); // same port, empty data (nothing is persisted)
/// ```
#[derive(Debug)]
pub struct RedisServer {
    /// The running process; `None` between [`stop`](Self::stop) and
    /// [`restart`](Self::restart).
    child: Option<Child>,
    /// Fixed after the first successful start so that `restart` comes back
    /// where clients expect it.
    port: u16,
    /// Private `--dir` (and log file), so parallel servers never share
    /// files; removed on drop.
    dir: PathBuf,
    /// Caller's extra arguments, replayed by `restart`.
    extra_args: Vec<String>,
    /// Resolved once from PATH so the not-found panic happens up front.
    binary: PathBuf,
    /// A config file passed first on the command line (a sentinel needs
    /// one it can rewrite); it lives in `dir`.
    config_file: Option<PathBuf>,
    /// `Some(CA file)` for a server that speaks only TLS: `port` is its
    /// `--tls-port` (the plain port is 0, closed), readiness is a PING
    /// over TLS trusting this CA, and [`url`](Self::url) is `rediss://`.
    tls_ca: Option<PathBuf>,
}

/// Why one start attempt failed.
enum StartError {
    /// Someone else bound the port first: worth another attempt.
    PortInUse(String),
    /// Anything else (bad argument, crash, timeout): retrying won't help.
    Fatal(String),
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits until it answers PING.
    ///
    /// # Panics
    ///
    /// If `redis-server` is not on PATH (with install instructions), or if
    /// it does not come up within 10 s (with the tail of its log).
    pub fn start() -> RedisServer {
        Self::start_with_args(&[])
    }

    /// Like [`start`](Self::start), with extra command-line arguments
    /// appended after the defaults (so they override them), e.g.
    /// `&["--requirepass", "secret"]`.
    ///
    /// Readiness accepts a `NOAUTH` reply to PING, so password-protected
    /// servers work.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_with_args(extra: &[&str]) -> RedisServer {
        Self::try_start(extra, None).unwrap_or_else(|msg| panic!("{msg}"))
    }

    /// Like [`start_with_args`](Self::start_with_args), but a server that
    /// exits before answering PING is an `Err` carrying its log tail
    /// instead of a panic, so the caller can tell "this build lacks a
    /// feature" from a broken test. `config` is written to a file in the
    /// server's directory and passed first (sentinels need one).
    ///
    /// # Panics
    ///
    /// If `redis-server` is not on PATH.
    pub(crate) fn try_start(extra: &[&str], config: Option<&str>) -> Result<RedisServer, String> {
        Self::try_start_on(extra, config, None)
    }

    /// Like [`try_start`](Self::try_start) for a server with no plain
    /// port: `extra` holds its certificate, key and CA flags, and `ca` is
    /// the CA a client trusts. Its port is the TLS port.
    pub(crate) fn try_start_tls_only(extra: &[&str], ca: &Path) -> Result<RedisServer, String> {
        Self::try_start_on(extra, None, Some(ca.to_path_buf()))
    }

    fn try_start_on(
        extra: &[&str],
        config: Option<&str>,
        tls_ca: Option<PathBuf>,
    ) -> Result<RedisServer, String> {
        let binary = find_in_path("redis-server").unwrap_or_else(|| panic!("{NOT_FOUND}"));
        let dir = make_temp_dir();
        let config_file = config.map(|text| {
            let path = dir.join("redis.conf");
            fs::write(&path, text)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            path
        });
        let mut server = RedisServer {
            child: None,
            port: 0,
            dir,
            extra_args: extra.iter().map(|s| (*s).to_owned()).collect(),
            binary,
            config_file,
            tls_ca,
        };
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            server.port = free_port();
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                Err(StartError::PortInUse(msg)) => last = msg,
                Err(StartError::Fatal(msg)) => return Err(msg),
            }
        }
        Err(format!(
            "redis-server: no free port after {START_ATTEMPTS} attempts; last error: {last}"
        ))
    }

    /// The server's private directory (its log, and any config file).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The TCP port the server listens on (stable across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `"127.0.0.1:P"`, for configs that take an address.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `"redis://127.0.0.1:P"`, for the `redis` crate's `Client::open`
    /// (`rediss://` for a TLS-only server).
    pub fn url(&self) -> String {
        let scheme = if self.tls_ca.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The OS process id, or `None` while stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's log (stdout and stderr of every start), for debugging a
    /// failing test.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    /// Kills the server (SIGKILL: nothing to flush, and it simulates a
    /// crash) and returns once the port refuses connections. Data is lost.
    /// Calling it while stopped does nothing.
    ///
    /// # Panics
    ///
    /// If the port still accepts connections 5 s after the child was reaped.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        kill_and_reap(&mut child);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while connect(self.port).is_some() {
            if Instant::now() >= deadline {
                panic!(
                    "redis-server on port {} was killed but the port still accepts connections \
                     after {STOP_TIMEOUT:?}",
                    self.port
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Starts the server again on the SAME port with the same arguments and
    /// waits for PING. It comes back empty. If it is running, it is stopped
    /// first.
    ///
    /// # Panics
    ///
    /// If the port was taken by another process in the meantime (it is held
    /// for a few attempts over about a second), or as [`start`](Self::start).
    pub fn restart(&mut self) {
        self.stop();
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(StartError::PortInUse(msg)) => {
                    last = msg;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(StartError::Fatal(msg)) => panic!("{msg}"),
            }
        }
        panic!(
            "redis-server: cannot restart on port {}: it was taken while stopped; last error: {last}",
            self.port
        );
    }

    /// One attempt: spawn on `self.port`, wait for PING or for the child to
    /// die, whichever comes first.
    fn spawn_and_wait(&mut self) -> Result<(), StartError> {
        let log_path = self.log_path();
        let log = open_log(&log_path);
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot dup log handle {}: {e}", log_path.display()));
        let mut command = Command::new(&self.binary);
        if let Some(config) = &self.config_file {
            command.arg(config);
        }
        let port = self.port.to_string();
        let listen: &[&str] = if self.tls_ca.is_some() {
            &["--port", "0", "--tls-port", &port]
        } else {
            &["--port", &port]
        };
        let mut child = command
            .args(listen)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| StartError::Fatal(format!("cannot run {}: {e}", self.binary.display())))?;

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    let tail = log_tail(&log_path);
                    let msg = format!(
                        "redis-server on port {} exited ({status}) before answering PING; \
                         log {}:\n{tail}",
                        self.port,
                        log_path.display()
                    );
                    return Err(if tail.contains("Address already in use") {
                        StartError::PortInUse(msg)
                    } else {
                        StartError::Fatal(msg)
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    kill_and_reap(&mut child);
                    return Err(StartError::Fatal(format!("cannot poll redis-server: {e}")));
                }
            }
            let ready = match &self.tls_ca {
                None => answers_ping(self.port),
                Some(ca) => answers_tls_ping(self.port, ca),
            };
            if ready {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                kill_and_reap(&mut child);
                return Err(StartError::Fatal(format!(
                    "redis-server on port {} did not answer PING within {START_TIMEOUT:?}; \
                     log {}:\n{}",
                    self.port,
                    log_path.display(),
                    log_tail(&log_path)
                )));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // No panics here: Drop may run while a failing test unwinds.
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// SIGKILL then wait, ignoring errors: the child may already have exited,
/// and either way it must not stay a zombie.
fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A short-timeout connect, so a stopped port is detected quickly.
fn connect(port: u16) -> Option<TcpStream> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
}

/// Sends a RESP `PING` and checks the reply. `-NOAUTH` counts as ready (the
/// server is up and would serve an authenticated client); `-LOADING` and
/// anything else does not.
fn answers_ping(port: u16) -> bool {
    let Some(mut stream) = connect(port) else {
        return false;
    };
    let timeout = Some(Duration::from_millis(500));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return false;
    }
    if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(n) if n > 0 => {
            let reply = &buf[..n];
            reply.starts_with(b"+PONG") || reply.starts_with(b"-NOAUTH")
        }
        _ => false,
    }
}

/// [`answers_ping`] over TLS, trusting `ca`: the readiness of a server
/// with no plain port.
fn answers_tls_ping(port: u16, ca: &Path) -> bool {
    if connect(port).is_none() {
        return false;
    }
    let ping = crate::redis_security::tls_client(&format!("rediss://127.0.0.1:{port}"), ca)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    match ping {
        Ok(pong) => pong == "PONG",
        Err(e) => e.code() == Some("NOAUTH"),
    }
}

/// Looks `name` up in PATH like a shell would (first executable file wins).
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// A fresh private directory under the system temp dir. Named by pid,
/// counter and time so concurrent test binaries never collide; `create_dir`
/// (not `_all`) makes a collision an error we retry past.
fn make_temp_dir() -> PathBuf {
    let base = std::env::temp_dir();
    loop {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = DIR_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("gamemesh-redis-{}-{n}-{nanos}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("cannot create temp dir {}: {e}", dir.display()),
        }
    }
}

/// Appends, so the log of a restarted server keeps its earlier lives.
fn open_log(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open redis log {}: {e}", path.display()))
}

/// The last lines of the log, for panic messages.
fn log_tail(path: &Path) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("<cannot read log: {e}>"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    fn ping(url: &str) -> redis::RedisResult<String> {
        let client = redis::Client::open(url)?;
        let mut con = client.get_connection_with_timeout(Duration::from_secs(2))?;
        redis::cmd("PING").query(&mut con)
    }

    #[test]
    fn start_ping_stop_restart() {
        let mut server = RedisServer::start();
        let port = server.port();
        assert_eq!(server.addr(), format!("127.0.0.1:{port}"));
        assert_eq!(server.url(), format!("redis://127.0.0.1:{port}"));
        assert_eq!(ping(&server.url()).expect("PING a fresh server"), "PONG");

        server.stop();
        assert!(server.pid().is_none());
        let err = TcpStream::connect(("127.0.0.1", port)).expect_err("stopped server refuses");
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
        assert!(ping(&server.url()).is_err(), "PING a stopped server fails");

        server.restart();
        assert_eq!(server.port(), port, "restart keeps the port");
        assert_eq!(ping(&server.url()).expect("PING after restart"), "PONG");
    }

    #[test]
    fn restart_while_running_and_stop_twice() {
        let mut server = RedisServer::start();
        let first_pid = server.pid().expect("running");
        server.restart();
        assert_ne!(server.pid(), Some(first_pid), "a new process");
        assert_eq!(ping(&server.url()).expect("PING after restart"), "PONG");
        server.stop();
        server.stop();
    }

    #[test]
    fn data_is_not_persisted_across_restart() {
        let mut server = RedisServer::start();
        let client = redis::Client::open(server.url()).expect("client");
        let mut con = client.get_connection().expect("connect");
        redis::cmd("SET")
            .arg("k")
            .arg("v")
            .exec(&mut con)
            .expect("SET");
        server.restart();
        let mut con = client.get_connection().expect("reconnect");
        let v: Option<String> = redis::cmd("GET").arg("k").query(&mut con).expect("GET");
        assert_eq!(v, None);
    }

    #[test]
    fn extra_args_requirepass() {
        let server = RedisServer::start_with_args(&["--requirepass", "s3cret"]);
        let denied = ping(&server.url()).expect_err("no password");
        assert!(denied.to_string().contains("NOAUTH"), "{denied}");
        let url = format!("redis://:s3cret@127.0.0.1:{}", server.port());
        assert_eq!(ping(&url).expect("PING with password"), "PONG");
    }

    #[test]
    fn parallel_servers_get_distinct_ports_and_dirs() {
        let a = RedisServer::start();
        let b = RedisServer::start();
        assert_ne!(a.port(), b.port());
        assert_ne!(a.log_path(), b.log_path());
    }

    #[test]
    fn drop_kills_and_removes_dir() {
        let server = RedisServer::start();
        let port = server.port();
        let dir = server.dir.clone();
        drop(server);
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
        assert!(!dir.exists(), "temp dir removed");
    }

    #[test]
    fn bad_argument_fails_with_log() {
        let err = std::panic::catch_unwind(|| RedisServer::start_with_args(&["--no-such-option"]))
            .expect_err("bad argument must panic");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("exited"), "{msg}");
        assert!(
            msg.contains("no-such-option"),
            "log tail is in the message: {msg}"
        );
    }

    #[tokio::test]
    async fn usable_from_async_tests() {
        let server = RedisServer::start();
        let client = redis::Client::open(server.url()).expect("client");
        let mut con = client
            .get_multiplexed_async_connection()
            .await
            .expect("async connect");
        let pong: String = redis::cmd("PING")
            .query_async(&mut con)
            .await
            .expect("PING");
        assert_eq!(pong, "PONG");
    }
}
