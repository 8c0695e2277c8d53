//! `test-client bench`: the load generator behind the benchmark suite
//! (issue 5, BENCH-NOTES.md).
//!
//! One run opens connections, measures one thing for a fixed time and
//! returns a [`BenchReport`], printed as one JSON line. The modes:
//!
//! - [`Mode::Echo`]: N sessions (distinct users, or raw connections with
//!   `no_login` for the bare echo server and relays), each keeping `depth`
//!   echoes in flight. Every connection logs in and does one untimed echo
//!   round trip before the clock starts, so the connection storm is not
//!   measured as echo latency.
//! - [`Mode::Login`]: N workers each opening a new connection and logging in
//!   a new user, again and again; latency is connect + login.
//! - [`Mode::Kick`]: N workers each logging a user in on connection A, then
//!   the same user on connection B; latency is B's login sent -> A's
//!   `Kicked{DUPLICATE_LOGIN}` received.
//! - [`Mode::Resume`]: N workers each logging in, dropping the connection,
//!   and resuming on a new one; latency is connect + resume.
//! - [`Mode::Idle`]: N logged-in sessions that heartbeat every 10 s, held
//!   for the duration (memory per session is measured from outside).
//! - [`Mode::Arena`]: N players of the arena sample in rooms of
//!   `room_size`, each moving once per tick; latency is tick-to-client
//!   (see [`crate::arena::bench`]).
//!
//! It runs on a current-thread runtime ([`run`] builds one): on the small
//! shared machines these numbers come from, a multi-threaded load generator
//! steals CPU from the servers it measures and inflates their tail latency.
//!
//! Limits are handled, not hit: [`run`] raises the open-file soft limit to
//! the hard limit and refuses a run that cannot fit; connections spread over
//! 127.0.0.1..127.0.0.K when one source address runs out of ports; a run
//! stopped by a limit ends with an error naming the limit.

use std::collections::VecDeque;
use std::fmt::Display;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bytes::{BufMut, Bytes, BytesMut};
use gamemesh_proto::client::{
    client_packet, server_packet, ClientPacket, EchoRequest, HeartbeatRequest, KickReason,
    LoginRequest, LoginResponse, ResumeRequest, ResumeResponse, ServerPacket,
};
use gamemesh_proto::{FrameCodec, FrameError, Message, LENGTH_PREFIX_BYTES};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use crate::client::{
    describe, kick_reason_name, sort_frame_error, sort_io_error, token_for, MAX_CLIENT_FRAME_BYTES,
};
use crate::limits::{self, FD_RESERVE};

/// Highest source address: connections spread over 127.0.0.1..127.0.0.254.
pub const MAX_SOURCES: usize = 254;

/// How often an idle session heartbeats (the gateway's idle timeout is 30 s
/// by default, so this keeps sessions alive with room to spare).
pub const IDLE_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);

/// Connections set up at once before the clock starts. Enough to open
/// thousands quickly, few enough not to measure a SYN flood.
pub(crate) const SETUP_CONCURRENCY: usize = 256;

/// Read room made before each read in the echo loop.
const ECHO_READ_CHUNK: usize = 16 * 1024;

/// Read room for the request/response paths (login, kick, resume, idle):
/// small, because idle runs hold tens of thousands of these buffers.
const SMALL_READ_CHUNK: usize = 512;

/// Tries at a connect that keeps failing with EADDRNOTAVAIL, spreading over
/// more source addresses on the way, before the run gives up.
const PORT_RETRIES: usize = 64;

/// Busy (address, port) pairs in a row that make a connect spread over
/// more source addresses.
const SPREAD_AFTER: usize = 8;

/// Errors printed to stderr as they happen; the rest are only counted.
const ERRORS_SHOWN: u64 = 5;

/// Largest recordable latency (60 s in µs); longer ones saturate.
pub(crate) const HISTOGRAM_MAX_US: u64 = 60_000_000;

/// What a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Echo round trips on long-lived sessions.
    Echo,
    /// New connection + login per iteration.
    Login,
    /// Duplicate-login kick latency.
    Kick,
    /// Drop the connection, resume on a new one.
    Resume,
    /// Idle sessions that only heartbeat.
    Idle,
    /// Arena players moving every tick.
    Arena,
}

impl Mode {
    /// The name as the flag and the JSON spell it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Login => "login",
            Mode::Kick => "kick",
            Mode::Resume => "resume",
            Mode::Idle => "idle",
            Mode::Arena => "arena",
        }
    }

    /// Sockets one connection slot (`--conns` counts slots) holds at once.
    fn sockets_per_slot(self) -> u64 {
        match self {
            Mode::Kick => 2,
            _ => 1,
        }
    }
}

/// Everything a run needs; the CLI fills it from flags, tests directly.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Target, `host:port`: a gateway, the bare echo server or a relay.
    pub addr: String,
    /// What to measure.
    pub mode: Mode,
    /// Sessions (echo, idle) or concurrent workers (login, resume) or
    /// concurrent pairs (kick).
    pub conns: usize,
    /// Echo requests in flight per connection; 1 is lockstep.
    pub depth: usize,
    /// Bytes of echo data per request.
    pub payload: usize,
    /// How long the clock runs.
    pub duration: Duration,
    /// Echo without logging in (for the bare echo server and relays).
    pub no_login: bool,
    /// Spread connections over this many loopback source addresses from
    /// the start (more are added when ports run out).
    pub sources: usize,
    /// Cap on new connections per second, for all modes.
    pub connect_rate: Option<u32>,
    /// Shared login secret (`None` sends the development token).
    pub auth_secret: Option<String>,
    /// Bound on every connect and every reply.
    pub timeout: Duration,
    /// Arena mode: players per room.
    pub room_size: usize,
}

impl BenchOptions {
    /// The defaults of the `bench` flags, aimed at `addr`.
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            mode: Mode::Echo,
            conns: 100,
            depth: 1,
            payload: 64,
            duration: Duration::from_secs(10),
            no_login: false,
            sources: 1,
            connect_rate: None,
            auth_secret: None,
            timeout: Duration::from_secs(5),
            room_size: 10,
        }
    }

    /// Refuses combinations that cannot run, with a sentence saying why.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.conns == 0 || self.depth == 0 {
            bail!("--conns and --depth must be at least 1");
        }
        if self.duration.is_zero() || self.timeout.is_zero() {
            bail!("--duration and --timeout-ms must be above 0");
        }
        if !(1..=MAX_SOURCES).contains(&self.sources) {
            bail!("--sources must be 1..={MAX_SOURCES} (127.0.0.1..127.0.0.{MAX_SOURCES})");
        }
        // Room for the sequence id and field tags around the data.
        if self.payload + 32 > MAX_CLIENT_FRAME_BYTES {
            bail!(
                "--payload {} is over the client's {MAX_CLIENT_FRAME_BYTES}-byte frame limit",
                self.payload
            );
        }
        if self.no_login && self.mode != Mode::Echo {
            bail!("--no-login only applies to --mode echo");
        }
        if self.connect_rate == Some(0) {
            bail!("--connect-rate must be at least 1 per second");
        }
        if !(1..=crate::arena::bench::MAX_ROOM_SIZE).contains(&self.room_size) {
            bail!(
                "--room-size must be 1..={} (an arena room holds at most {} players)",
                crate::arena::bench::MAX_ROOM_SIZE,
                crate::arena::bench::MAX_ROOM_SIZE
            );
        }
        Ok(())
    }

    /// Open files this run needs: its sockets plus [`FD_RESERVE`].
    pub fn files_needed(&self) -> u64 {
        self.conns as u64 * self.mode.sockets_per_slot() + FD_RESERVE
    }
}

/// The outcome of a run; serializes to the one JSON line `bench` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// The mode measured.
    pub mode: Mode,
    /// `--conns`.
    pub conns: usize,
    /// `--depth`.
    pub depth: usize,
    /// `--payload`.
    pub payload: usize,
    /// Length of the measured window in seconds.
    pub duration_s: f64,
    /// Operations completed inside the window: echo round trips, logins,
    /// kicks, resumes or heartbeats.
    pub msgs: u64,
    /// `msgs / duration_s`.
    pub msgs_per_s: f64,
    /// Latency percentiles and maximum, in microseconds. They include
    /// operations that completed while the run drained after the window.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest latency recorded.
    pub max_us: u64,
    /// Error replies, unexpected replies, timeouts and failed connections.
    pub errors: u64,
    /// Arena mode only: what the players saw (flattened into the line;
    /// absent in the other modes, so their lines are unchanged).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub arena: Option<crate::arena::bench::ArenaReport>,
}

impl BenchReport {
    /// The report as one line of JSON (no newline).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("a report always serializes")
    }
}

/// `test-client bench`: raises the open-file limit, checks the run fits,
/// and runs it on a current-thread runtime.
pub fn run(opts: &BenchOptions) -> anyhow::Result<BenchReport> {
    opts.validate()?;
    let limit = limits::raise_open_file_limit()
        .context("cannot read or raise the open-file limit (RLIMIT_NOFILE)")?;
    eprintln!(
        "bench: open-file limit {} (hard {}): room for about {} sockets; this run needs {}",
        limit.soft,
        limit.hard,
        limit.sockets(),
        opts.files_needed() - FD_RESERVE
    );
    if opts.files_needed() > limit.soft {
        bail!(
            "bench: --conns {} in {} mode needs about {} open files ({} per connection plus \
             {FD_RESERVE} spare), but the open-file limit is {} (hard limit {}): lower --conns, \
             or raise the hard limit (ulimit -Hn as root, /etc/security/limits.conf, or \
             LimitNOFILE= for a systemd unit)",
            opts.conns,
            opts.mode.name(),
            opts.files_needed(),
            opts.mode.sockets_per_slot(),
            limit.soft,
            limit.hard
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(run_bench(opts))
}

/// Runs one benchmark on the current runtime (tests call this directly,
/// with a server on `127.0.0.1:0` beside it).
pub async fn run_bench(opts: &BenchOptions) -> anyhow::Result<BenchReport> {
    opts.validate()?;
    let target = resolve(&opts.addr).await?;
    let loopback = matches!(target.ip(), IpAddr::V4(ip) if ip.is_loopback());
    if opts.sources > 1 && !loopback {
        bail!("--sources spreads over 127.0.0.x source addresses, so --addr must be a loopback IPv4 address, not {target}");
    }
    let run = Arc::new(Run::new(opts.clone(), target, loopback));
    let mut arena = None;
    let tallies = match opts.mode {
        Mode::Echo | Mode::Idle => {
            let conns = open_sessions(&run).await?;
            let start = Instant::now();
            let end = start + opts.duration;
            let mut tasks = JoinSet::new();
            if opts.mode == Mode::Echo {
                eprintln!(
                    "bench: {} connections ready; measuring echo for {:?} (depth {}, {} B)",
                    conns.len(),
                    opts.duration,
                    opts.depth,
                    opts.payload
                );
                for conn in conns {
                    tasks.spawn(echo_loop(run.clone(), conn, end));
                }
            } else {
                eprintln!(
                    "bench: holding {} idle sessions for {:?} (pid {}); measure memory now",
                    conns.len(),
                    opts.duration,
                    std::process::id()
                );
                for conn in conns {
                    tasks.spawn(idle_loop(run.clone(), conn, start, end));
                }
            }
            join_all(tasks).await?
        }
        Mode::Login | Mode::Kick | Mode::Resume => {
            eprintln!(
                "bench: {} concurrent {} workers for {:?} against {target}",
                opts.conns,
                opts.mode.name(),
                opts.duration
            );
            let end = Instant::now() + opts.duration;
            let mut tasks = JoinSet::new();
            for _ in 0..opts.conns {
                tasks.spawn(churn_worker(run.clone(), end));
            }
            join_all(tasks).await?
        }
        Mode::Arena => {
            let (tallies, report) = crate::arena::bench::run(&run).await?;
            arena = Some(report);
            tallies
        }
    };
    if let Some(reason) = run.fatal() {
        bail!("{reason}");
    }
    let mut report = run.report(&tallies);
    report.arena = arena;
    eprintln!(
        "bench: done: {} {} in {:?}, {} errors",
        report.msgs,
        match opts.mode {
            Mode::Echo => "echoes",
            Mode::Login => "logins",
            Mode::Kick => "kicks",
            Mode::Resume => "resumes",
            Mode::Idle => "heartbeats",
            Mode::Arena => "states",
        },
        opts.duration,
        report.errors
    );
    Ok(report)
}

/// The first address `addr` resolves to, IPv4 preferred.
async fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("cannot resolve {addr} (expected host:port)"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .with_context(|| format!("{addr} resolves to no address"))
}

/// Waits for every task and sums nothing yet: returns each task's tally.
pub(crate) async fn join_all(mut tasks: JoinSet<Tally>) -> anyhow::Result<Vec<Tally>> {
    let mut tallies = Vec::with_capacity(tasks.len());
    while let Some(done) = tasks.join_next().await {
        tallies.push(done.context("a load task panicked")?);
    }
    Ok(tallies)
}

/// What one task counted.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Tally {
    /// Operations completed inside the measured window.
    pub(crate) msgs: u64,
    /// Operations that failed.
    pub(crate) errors: u64,
}

/// Why one operation failed. [`Failure::Limit`] stops the whole run; the
/// others are counted in `errors`.
#[derive(Debug, Error)]
pub(crate) enum Failure {
    /// A process or system limit that more tries will not get past.
    #[error("{0}")]
    Limit(String),
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    #[error("no reply within --timeout-ms")]
    Timeout,
    #[error("the server closed the connection")]
    Closed,
    #[error("i/o error: {0}")]
    Io(io::Error),
    #[error("framing error: {0}")]
    Frame(FrameError),
    #[error("the server sent a body that is not a ServerPacket: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("expected {expected}, got {got}")]
    Unexpected { expected: &'static str, got: String },
}

impl Failure {
    pub(crate) fn unexpected(expected: &'static str, packet: &ServerPacket) -> Self {
        Failure::Unexpected {
            expected,
            got: describe(packet),
        }
    }
}

fn from_io(e: io::Error) -> Failure {
    sort_io_error(e, Failure::Closed, Failure::Io)
}

fn from_frame(e: FrameError) -> Failure {
    sort_frame_error(e, Failure::Closed, Failure::Io, Failure::Frame)
}

/// State shared by every task of a run.
pub(crate) struct Run {
    /// The options as given.
    pub(crate) opts: BenchOptions,
    /// The resolved target.
    target: SocketAddr,
    /// Where connections come from.
    sources: Sources,
    /// Paces new connections when `--connect-rate` is set.
    pacer: Option<Pacer>,
    /// Every latency of the run, in µs. One shared histogram: a 3-digit
    /// histogram is ~140 KiB, too much to keep one per connection.
    histogram: Mutex<Histogram<u64>>,
    /// The echo data, shared by every request.
    payload: Bytes,
    /// The next user id to log in: a random base so runs do not kick each
    /// other, then one up per login so every session is a distinct user.
    next_user: AtomicU64,
    /// Cancelled when a limit stops the run.
    pub(crate) stop: CancellationToken,
    /// Why the run was stopped.
    fatal: Mutex<Option<String>>,
    /// Errors seen so far, to print only the first few.
    errors_seen: AtomicU64,
}

impl Run {
    fn new(opts: BenchOptions, target: SocketAddr, loopback: bool) -> Self {
        let histogram =
            Histogram::new_with_max(HISTOGRAM_MAX_US, 3).expect("valid histogram bounds");
        let pacer = opts.connect_rate.map(Pacer::new);
        Self {
            target,
            sources: Sources::new(opts.sources, loopback),
            pacer,
            histogram: Mutex::new(histogram),
            payload: Bytes::from(vec![b'x'; opts.payload]),
            next_user: AtomicU64::new(crate::commands::random_user()),
            stop: CancellationToken::new(),
            fatal: Mutex::new(None),
            errors_seen: AtomicU64::new(0),
            opts,
        }
    }

    pub(crate) fn next_user(&self) -> u64 {
        self.next_user.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn token(&self, user: u64) -> String {
        token_for(self.opts.auth_secret.as_deref(), user)
    }

    /// Records latencies, in µs.
    pub(crate) fn record(&self, samples_us: &[u64]) {
        let mut h = self.histogram.lock().unwrap_or_else(|e| e.into_inner());
        for &v in samples_us {
            h.saturating_record(v);
        }
    }

    pub(crate) fn record_one(&self, latency: Duration) {
        self.record(&[micros(latency)]);
    }

    /// Counts nothing (the caller does) but prints the first few errors so
    /// a run full of them says why.
    pub(crate) fn note_error(&self, what: impl Display) {
        let seen = self.errors_seen.fetch_add(1, Ordering::Relaxed);
        if seen < ERRORS_SHOWN {
            eprintln!("bench: error: {what}");
        } else if seen == ERRORS_SHOWN {
            eprintln!("bench: further errors are counted, not printed");
        }
    }

    /// Stops the run because of a limit; the first reason wins.
    pub(crate) fn fail(&self, reason: String) {
        let mut fatal = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        if fatal.is_none() {
            *fatal = Some(reason);
        }
        self.stop.cancel();
    }

    fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Opens a connection, paced, from the next source address, spreading
    /// over more source addresses when ports run out.
    pub(crate) async fn connect(&self) -> Result<Conn, Failure> {
        if let Some(pacer) = &self.pacer {
            pacer.wait().await;
        }
        let timeout = self.opts.timeout;
        let mut tries = 0;
        loop {
            let (active, source) = self.sources.pick();
            let e = match tokio::time::timeout(timeout, connect_from(source, self.target)).await {
                Ok(Ok(stream)) => {
                    // Requests are small and latency is the measurement.
                    stream.set_nodelay(true).map_err(Failure::Io)?;
                    return Ok(Conn::new(stream));
                }
                Ok(Err(e)) => e,
                Err(_) => {
                    return Err(Failure::Connect(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no answer from {} within {timeout:?}", self.target),
                    )))
                }
            };
            if limits::is_fd_exhaustion(&e) {
                return Err(Failure::Limit(format!(
                    "stopped by the open-file limit (EMFILE/ENFILE: {e}): the process or the \
                     system has no file descriptors left; lower --conns or raise the limit"
                )));
            }
            if !limits::is_port_exhaustion(&e) {
                return Err(Failure::Connect(e));
            }
            if !self.sources.loopback {
                return Err(Failure::Limit(format!(
                    "stopped by the local port limit (EADDRNOTAVAIL: {e}): no ephemeral port \
                     left toward {}; spreading over source addresses only works for a \
                     loopback target",
                    self.target
                )));
            }
            tries += 1;
            if tries >= PORT_RETRIES {
                return Err(Failure::Limit(format!(
                    "stopped by the local port limit (EADDRNOTAVAIL: {e}) even spread over \
                     source addresses 127.0.0.1..127.0.0.{active}: every ephemeral port \
                     (/proc/sys/net/ipv4/ip_local_port_range) toward {} is taken or in \
                     TIME_WAIT",
                    self.target
                )));
            }
            // The kernel's own pick failing means the whole range is taken;
            // one bound pair failing may just be busy, so try others first.
            if source.is_none() || tries % SPREAD_AFTER == 0 {
                self.sources.spread(active);
            }
        }
    }

    /// The 50th and 99th percentiles and the maximum of the run's
    /// latencies, in µs (zeros when nothing was recorded).
    pub(crate) fn quantiles(&self) -> (u64, u64, u64) {
        let h = self.histogram.lock().unwrap_or_else(|e| e.into_inner());
        if h.is_empty() {
            return (0, 0, 0);
        }
        (h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max())
    }

    fn report(&self, tallies: &[Tally]) -> BenchReport {
        let msgs: u64 = tallies.iter().map(|t| t.msgs).sum();
        let errors: u64 = tallies.iter().map(|t| t.errors).sum();
        let secs = self.opts.duration.as_secs_f64();
        let h = self.histogram.lock().unwrap_or_else(|e| e.into_inner());
        let at = |q: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(q)
            }
        };
        BenchReport {
            mode: self.opts.mode,
            conns: self.opts.conns,
            depth: self.opts.depth,
            payload: self.opts.payload,
            duration_s: secs,
            msgs,
            msgs_per_s: (msgs as f64 / secs * 10.0).round() / 10.0,
            p50_us: at(0.5),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: if h.is_empty() { 0 } else { h.max() },
            errors,
            arena: None,
        }
    }
}

pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Loopback source addresses to connect from. One address has one
/// ephemeral port range (~28k ports) toward a given server; 1,000s of
/// short-lived connections a second leave ports in TIME_WAIT, so a long
/// login run can need more than one.
///
/// With one address the kernel picks source and port (the cheapest path,
/// and it reuses loopback TIME_WAIT ports by itself). With more, each
/// connection binds an explicit (address, port) pair, walking every pair
/// in turn: binding port 0 instead makes the kernel search a crowded port
/// table on every connect, which in a measured login run cut the rate by
/// more than half and put 170 ms into its p99.
struct Sources {
    /// Whether the target is loopback IPv4 (spreading only works then).
    loopback: bool,
    /// How many addresses are in use (127.0.0.1..127.0.0.active).
    active: AtomicUsize,
    /// Walks the (address, port) pairs: address = cursor % active, port =
    /// the range's start + (cursor / active) % its length.
    cursor: AtomicUsize,
    /// The local port range to bind in (the kernel's ephemeral range).
    ports: (u16, u16),
}

impl Sources {
    fn new(initial: usize, loopback: bool) -> Self {
        Self {
            loopback,
            active: AtomicUsize::new(initial.clamp(1, MAX_SOURCES)),
            cursor: AtomicUsize::new(0),
            ports: ephemeral_port_range(),
        }
    }

    /// The number of addresses in use and the (address, port) to bind to
    /// next (`None`: let the kernel choose).
    fn pick(&self) -> (usize, Option<SocketAddr>) {
        let active = self.active.load(Ordering::Relaxed);
        if active <= 1 {
            return (active, None);
        }
        let c = self.cursor.fetch_add(1, Ordering::Relaxed);
        let (lo, hi) = self.ports;
        let span = usize::from(hi - lo) + 1;
        let port = lo + ((c / active) % span) as u16;
        let ip = source_address(c % active);
        (active, Some(SocketAddr::new(IpAddr::V4(ip), port)))
    }

    /// Doubles the addresses in use after a connect saw `seen` of them run
    /// out of ports (unless another task already did).
    fn spread(&self, seen: usize) {
        let grown = (seen * 2).min(MAX_SOURCES);
        if grown > seen
            && self
                .active
                .compare_exchange(seen, grown, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            eprintln!(
                "bench: out of local ports (EADDRNOTAVAIL); spreading connections over \
                 127.0.0.1..127.0.0.{grown}"
            );
        }
    }
}

/// The `i`th source address (0-based): 127.0.0.1, 127.0.0.2, ...
fn source_address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, (i % MAX_SOURCES + 1) as u8)
}

/// The kernel's ephemeral port range, or Linux's default when it cannot be
/// read.
fn ephemeral_port_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| parse_port_range(&text))
        .unwrap_or((32768, 60999))
}

fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let mut parts = text.split_whitespace().map(str::parse::<u16>);
    let lo = parts.next()?.ok()?;
    let hi = parts.next()?.ok()?;
    (1 <= lo && lo <= hi).then_some((lo, hi))
}

async fn connect_from(source: Option<SocketAddr>, target: SocketAddr) -> io::Result<TcpStream> {
    match source {
        None => TcpStream::connect(target).await,
        Some(local) => {
            let socket = TcpSocket::new_v4()?;
            // Lets the pair be bound while an old connection of ours on it
            // sits in TIME_WAIT; connect still insists on a unique 4-tuple
            // (and says EADDRNOTAVAIL when it cannot have one).
            socket.set_reuseaddr(true)?;
            socket.bind(local)?;
            socket.connect(target).await
        }
    }
}

/// Hands out connect slots at a fixed rate.
struct Pacer {
    /// Time between two slots.
    interval: Duration,
    /// The next free slot.
    next: Mutex<Instant>,
}

impl Pacer {
    fn new(per_second: u32) -> Self {
        Self {
            interval: Duration::from_secs(1) / per_second.max(1),
            next: Mutex::new(Instant::now()),
        }
    }

    async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// One connection with its own buffers: lighter than [`crate::Client`]
/// (no queue, no per-call allocation), and its buffers are what the echo
/// loop batches reads and writes in.
pub(crate) struct Conn {
    /// The socket.
    stream: TcpStream,
    /// Bytes read but not yet cut into frames.
    rbuf: BytesMut,
    /// Frames encoded but not yet written.
    wbuf: BytesMut,
    /// Cuts `rbuf` into frame bodies, refusing bad length headers.
    codec: FrameCodec,
    /// The sequence id the next request gets.
    next_seq: u64,
}

impl Conn {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            codec: FrameCodec::new(MAX_CLIENT_FRAME_BYTES),
            next_seq: 1,
        }
    }

    /// Encodes a request with the next sequence id into the write buffer.
    pub(crate) fn queue(&mut self, body: client_packet::Body) -> u64 {
        let sequence_id = self.next_seq;
        self.next_seq += 1;
        encode_packet(
            &mut self.wbuf,
            &ClientPacket {
                sequence_id,
                body: Some(body),
            },
        );
        sequence_id
    }

    pub(crate) async fn flush(&mut self) -> Result<(), Failure> {
        self.stream.write_all(&self.wbuf).await.map_err(from_io)?;
        self.wbuf.clear();
        Ok(())
    }

    /// The next packet from the socket. Cancel-safe: a partial frame stays
    /// in the buffer.
    pub(crate) async fn read_packet(&mut self, deadline: Instant) -> Result<ServerPacket, Failure> {
        loop {
            if let Some(body) = self.codec.decode(&mut self.rbuf).map_err(from_frame)? {
                return Ok(ServerPacket::decode(body)?);
            }
            self.rbuf.reserve(SMALL_READ_CHUNK);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.rbuf)).await {
                Err(_) => return Err(Failure::Timeout),
                Ok(Ok(0)) => return Err(Failure::Closed),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(from_io(e)),
            }
        }
    }

    /// Reads until the reply to `sequence_id`. Other replies are skipped; a
    /// push means the session is gone (a kick) and fails the wait.
    async fn reply_to(
        &mut self,
        sequence_id: u64,
        deadline: Instant,
    ) -> Result<ServerPacket, Failure> {
        loop {
            let packet = self.read_packet(deadline).await?;
            if packet.sequence_id == sequence_id {
                return Ok(packet);
            }
            if packet.sequence_id == 0 {
                return Err(Failure::unexpected("a reply", &packet));
            }
        }
    }

    /// Sends a request and waits for its reply.
    async fn call(
        &mut self,
        body: client_packet::Body,
        timeout: Duration,
    ) -> Result<ServerPacket, Failure> {
        let deadline = Instant::now() + timeout;
        let sequence_id = self.queue(body);
        self.flush().await?;
        self.reply_to(sequence_id, deadline).await
    }

    pub(crate) async fn login(&mut self, run: &Run, user: u64) -> Result<LoginResponse, Failure> {
        let body = client_packet::Body::Login(LoginRequest {
            user_id: user,
            token: run.token(user),
        });
        let reply = self.call(body, run.opts.timeout).await?;
        match reply.body {
            Some(server_packet::Body::Login(login)) => Ok(login),
            _ => Err(Failure::unexpected("a login reply", &reply)),
        }
    }
}

/// Writes `[u32 BE length][packet]` into `buf`.
fn encode_packet(buf: &mut BytesMut, packet: &ClientPacket) {
    let len = packet.encoded_len();
    buf.reserve(LENGTH_PREFIX_BYTES + len);
    buf.put_u32(len as u32);
    packet
        .encode(buf)
        .expect("BytesMut grows, so encoding cannot run out of room");
}

fn echo_body(data: &Bytes) -> client_packet::Body {
    client_packet::Body::Echo(EchoRequest { data: data.clone() })
}

/// Opens `conns` sessions for echo or idle mode: connect, log in (unless
/// `no_login`), and for echo one untimed round trip. Any failure fails the
/// run: a benchmark with fewer sessions than asked would be misreported.
async fn open_sessions(run: &Arc<Run>) -> anyhow::Result<Vec<Conn>> {
    let n = run.opts.conns;
    eprintln!(
        "bench: opening {n} connections to {}{}",
        run.target,
        if run.opts.no_login { " (no login)" } else { "" }
    );
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let mut tasks: JoinSet<(usize, Result<Conn, Failure>)> = JoinSet::new();
    let mut conns = Vec::with_capacity(n);
    let setup_failed = |i: usize, e: Failure| -> anyhow::Error {
        match e {
            Failure::Limit(reason) => anyhow::anyhow!("bench: {reason}"),
            other => anyhow::anyhow!(
                "bench: setting up connection {} of {n} failed: {other}",
                i + 1
            ),
        }
    };
    for i in 0..n {
        let permit = permits.clone().acquire_owned().await?;
        // Fail as soon as one setup fails rather than after all of them.
        while let Some(done) = tasks.try_join_next() {
            let (i, result) = done.context("a setup task panicked")?;
            conns.push(result.map_err(|e| setup_failed(i, e))?);
        }
        let run = run.clone();
        tasks.spawn(async move {
            let _permit = permit;
            (i, open_session(&run).await)
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (i, result) = done.context("a setup task panicked")?;
        conns.push(result.map_err(|e| setup_failed(i, e))?);
    }
    eprintln!(
        "bench: {n} connections set up in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(conns)
}

async fn open_session(run: &Run) -> Result<Conn, Failure> {
    let mut conn = run.connect().await?;
    if !run.opts.no_login {
        conn.login(run, run.next_user()).await?;
    }
    if run.opts.mode == Mode::Echo {
        // The untimed warm-up round trip: the first frame of a fresh
        // connection pays for connection setup on every hop.
        let reply = conn.call(echo_body(&run.payload), run.opts.timeout).await?;
        if !is_echo_of(&reply, &run.payload) {
            return Err(Failure::unexpected("the warm-up echo", &reply));
        }
    }
    Ok(conn)
}

fn is_echo_of(packet: &ServerPacket, data: &Bytes) -> bool {
    matches!(&packet.body, Some(server_packet::Body::Echo(e)) if e.data == *data)
}

/// Echo mode on one connection: keeps `depth` echoes in flight until `end`,
/// then waits for the outstanding ones. Reads and writes are batched: every
/// reply a read delivers is answered with a new request, and all of them go
/// out in one write.
async fn echo_loop(run: Arc<Run>, mut conn: Conn, end: Instant) -> Tally {
    let depth = run.opts.depth;
    let timeout = run.opts.timeout;
    let mut tally = Tally::default();
    // (sequence id, sent at), oldest first.
    let mut outstanding: VecDeque<(u64, Instant)> = VecDeque::with_capacity(depth);
    let mut samples: Vec<u64> = Vec::with_capacity(depth.max(16));
    let now = Instant::now();
    for _ in 0..depth {
        let seq = conn.queue(echo_body(&run.payload));
        outstanding.push_back((seq, now));
    }
    let Conn {
        stream,
        rbuf,
        wbuf,
        codec,
        next_seq,
    } = &mut conn;
    let (mut rd, mut wr) = stream.split();
    // Checked lazily: it fires at the end of the window or when the oldest
    // request may have timed out, not once per request.
    let check = tokio::time::sleep_until(end.min(now + timeout));
    tokio::pin!(check);
    let mut stopping = false;
    let outcome: Result<(), Failure> = async {
        loop {
            let now = Instant::now();
            while let Some(body) = codec.decode(rbuf).map_err(from_frame)? {
                let packet = ServerPacket::decode(body)?;
                let Some(i) = outstanding
                    .iter()
                    .position(|&(seq, _)| seq == packet.sequence_id)
                else {
                    tally.errors += 1;
                    if packet.sequence_id == 0 {
                        // A push (a kick): the server closes next.
                        return Err(Failure::unexpected("an echo reply", &packet));
                    }
                    run.note_error(format_args!(
                        "a reply to no outstanding request: {}",
                        describe(&packet)
                    ));
                    continue;
                };
                let (_, sent) = outstanding.remove(i).expect("position is in range");
                if is_echo_of(&packet, &run.payload) {
                    samples.push(micros(now - sent));
                    if now <= end {
                        tally.msgs += 1;
                    }
                } else {
                    tally.errors += 1;
                    run.note_error(Failure::unexpected("an echo reply", &packet));
                }
                if !stopping {
                    if now >= end {
                        stopping = true;
                    } else {
                        let seq = *next_seq;
                        *next_seq += 1;
                        encode_packet(
                            wbuf,
                            &ClientPacket {
                                sequence_id: seq,
                                body: Some(echo_body(&run.payload)),
                            },
                        );
                        outstanding.push_back((seq, now));
                    }
                }
            }
            if !samples.is_empty() {
                run.record(&samples);
                samples.clear();
            }
            if !wbuf.is_empty() && write_while_reading(&mut rd, &mut wr, wbuf, rbuf).await? {
                // Replies arrived while writing: handle them first.
                continue;
            }
            if stopping && outstanding.is_empty() {
                return Ok(());
            }
            rbuf.reserve(ECHO_READ_CHUNK);
            tokio::select! {
                biased;
                read = rd.read_buf(rbuf) => {
                    if read.map_err(from_io)? == 0 {
                        return Err(Failure::Closed);
                    }
                }
                () = &mut check => {
                    let now = Instant::now();
                    if now >= end {
                        stopping = true;
                    }
                    let oldest = outstanding.front().map_or(now, |&(_, sent)| sent);
                    if now >= oldest + timeout {
                        return Err(Failure::Timeout);
                    }
                    let next = if stopping { oldest + timeout } else { end.min(oldest + timeout) };
                    check.as_mut().reset(next);
                }
            }
        }
    }
    .await;
    if let Err(e) = outcome {
        // Everything still in flight is lost with the connection.
        tally.errors += (outstanding.len() as u64).max(1);
        run.note_error(e);
    }
    tally
}

/// Writes all of `wbuf` while still reading into `rbuf`, so a large write
/// cannot deadlock against a server that is itself blocked writing to us.
/// Returns whether anything was read.
async fn write_while_reading(
    rd: &mut ReadHalf<'_>,
    wr: &mut WriteHalf<'_>,
    wbuf: &mut BytesMut,
    rbuf: &mut BytesMut,
) -> Result<bool, Failure> {
    let mut read_any = false;
    while !wbuf.is_empty() {
        rbuf.reserve(ECHO_READ_CHUNK);
        tokio::select! {
            biased;
            written = wr.write_buf(wbuf) => {
                if written.map_err(from_io)? == 0 {
                    return Err(Failure::Closed);
                }
            }
            read = rd.read_buf(rbuf) => {
                if read.map_err(from_io)? == 0 {
                    return Err(Failure::Closed);
                }
                read_any = true;
            }
        }
    }
    Ok(read_any)
}

/// Idle mode on one session: a heartbeat every
/// [`IDLE_HEARTBEAT_INTERVAL`], the first at a random point of the first
/// interval so the sessions do not all beat at once.
async fn idle_loop(run: Arc<Run>, mut conn: Conn, start: Instant, end: Instant) -> Tally {
    let timeout = run.opts.timeout;
    let mut tally = Tally::default();
    let mut next = start + IDLE_HEARTBEAT_INTERVAL.mul_f64(rand::random::<f64>());
    loop {
        let wake = next.min(end);
        // Anything the server sends unasked ends the session (a kick, or
        // the close that follows it).
        let unasked = tokio::select! {
            () = tokio::time::sleep_until(wake) => None,
            packet = conn.read_packet(end + timeout) => Some(packet),
        };
        if let Some(packet) = unasked {
            tally.errors += 1;
            match packet {
                Ok(p) => run.note_error(Failure::unexpected("nothing unasked", &p)),
                Err(e) => run.note_error(e),
            }
            return tally;
        }
        if wake >= end {
            return tally;
        }
        let t0 = Instant::now();
        let client_time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let body = client_packet::Body::Heartbeat(HeartbeatRequest { client_time_ms });
        match conn.call(body, timeout).await {
            Ok(reply) if matches!(reply.body, Some(server_packet::Body::Heartbeat(_))) => {
                let done = Instant::now();
                run.record_one(done - t0);
                if done <= end {
                    tally.msgs += 1;
                }
            }
            Ok(reply) => {
                tally.errors += 1;
                run.note_error(Failure::unexpected("a heartbeat reply", &reply));
            }
            Err(e) => {
                tally.errors += 1;
                run.note_error(e);
                return tally;
            }
        }
        next += IDLE_HEARTBEAT_INTERVAL;
    }
}

/// Login, kick and resume modes: one worker repeating its iteration with a
/// new user each time until `end`.
async fn churn_worker(run: Arc<Run>, end: Instant) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < end && !run.stop.is_cancelled() {
        let iteration = match run.opts.mode {
            Mode::Login => login_once(&run).await,
            Mode::Kick => kick_once(&run).await,
            Mode::Resume => resume_once(&run).await,
            Mode::Echo | Mode::Idle | Mode::Arena => unreachable!("not a churn mode"),
        };
        let done = Instant::now();
        match iteration {
            Ok(latency) => {
                run.record_one(latency);
                if done <= end {
                    tally.msgs += 1;
                }
            }
            Err(Failure::Limit(reason)) => {
                run.fail(format!("bench: {reason}"));
                break;
            }
            Err(e) => {
                tally.errors += 1;
                let refused = matches!(&e, Failure::Connect(io) if io.kind() == io::ErrorKind::ConnectionRefused);
                run.note_error(e);
                if refused {
                    // Nothing listens: do not spin through refusals.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
    tally
}

/// New connection + login of a new user; latency is both.
async fn login_once(run: &Run) -> Result<Duration, Failure> {
    let t0 = Instant::now();
    let mut conn = run.connect().await?;
    conn.login(run, run.next_user()).await?;
    Ok(t0.elapsed())
}

/// A logs in, B logs in as the same user; latency is B's login sent -> A's
/// `Kicked{DUPLICATE_LOGIN}` read. B's reply must then say it replaced a
/// session.
async fn kick_once(run: &Run) -> Result<Duration, Failure> {
    let timeout = run.opts.timeout;
    let user = run.next_user();
    let mut a = run.connect().await?;
    a.login(run, user).await?;
    let mut b = run.connect().await?;
    let t0 = Instant::now();
    let deadline = t0 + timeout;
    let b_login = b.queue(client_packet::Body::Login(LoginRequest {
        user_id: user,
        token: run.token(user),
    }));
    b.flush().await?;
    let latency = loop {
        let packet = a.read_packet(deadline).await?;
        if packet.sequence_id != 0 {
            continue; // a late reply; not what we wait for
        }
        match &packet.body {
            Some(server_packet::Body::Kicked(k))
                if k.reason == KickReason::DuplicateLogin as i32 =>
            {
                break t0.elapsed();
            }
            Some(server_packet::Body::Kicked(k)) => {
                return Err(Failure::Unexpected {
                    expected: "Kicked{DUPLICATE_LOGIN}",
                    got: format!("Kicked{{{}}}", kick_reason_name(k.reason)),
                })
            }
            _ => return Err(Failure::unexpected("Kicked{DUPLICATE_LOGIN}", &packet)),
        }
    };
    let reply = b.reply_to(b_login, deadline).await?;
    match reply.body {
        Some(server_packet::Body::Login(ref l)) if l.replaced_existing_session => Ok(latency),
        _ => Err(Failure::unexpected(
            "a login reply with replaced_existing_session",
            &reply,
        )),
    }
}

/// Login of a new user, connection dropped, then a new connection resumes
/// the session; latency is the second connect + resume.
async fn resume_once(run: &Run) -> Result<Duration, Failure> {
    let mut first = run.connect().await?;
    let login = first.login(run, run.next_user()).await?;
    let next_seq = first.next_seq;
    drop(first);
    let t0 = Instant::now();
    let mut conn = run.connect().await?;
    // A resumed session continues its sequence.
    conn.next_seq = next_seq;
    let body = client_packet::Body::Resume(ResumeRequest {
        session_id: login.session_id,
        resume_token: login.resume_token,
    });
    let reply = conn.call(body, run.opts.timeout).await?;
    match reply.body {
        Some(server_packet::Body::Resume(ResumeResponse {
            snapshot: Some(ref s),
        })) if s.session_id == login.session_id => Ok(t0.elapsed()),
        _ => Err(Failure::unexpected(
            "a resume reply with the session's snapshot",
            &reply,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::echo_server;

    async fn echo_server() -> (String, CancellationToken, tokio::task::JoinHandle<()>) {
        let listener = echo_server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(echo_server::serve(listener, shutdown.clone()));
        (addr, shutdown, task)
    }

    fn echo_opts(addr: &str, depth: usize) -> BenchOptions {
        BenchOptions {
            conns: 4,
            depth,
            duration: Duration::from_secs(1),
            no_login: true,
            ..BenchOptions::new(addr)
        }
    }

    const KEYS: [&str; 12] = [
        "mode",
        "conns",
        "depth",
        "payload",
        "duration_s",
        "msgs",
        "msgs_per_s",
        "p50_us",
        "p99_us",
        "p999_us",
        "max_us",
        "errors",
    ];

    fn check_json(report: &BenchReport) {
        let line = report.to_json_line();
        assert!(!line.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        let object = value.as_object().unwrap();
        for key in KEYS {
            assert!(object.contains_key(key), "{key} missing from {line}");
        }
        assert_eq!(object.len(), KEYS.len(), "{line}");
        let back: BenchReport = serde_json::from_str(&line).unwrap();
        assert_eq!(&back, report);
    }

    #[tokio::test]
    async fn lockstep_echo_against_the_bare_echo_server() {
        let (addr, shutdown, server) = echo_server().await;
        let report = run_bench(&echo_opts(&addr, 1)).await.unwrap();
        assert!(report.msgs > 0, "{report:?}");
        assert_eq!(report.errors, 0, "{report:?}");
        assert_eq!(report.mode, Mode::Echo);
        assert_eq!((report.conns, report.depth, report.payload), (4, 1, 64));
        assert!(report.p50_us <= report.p99_us && report.p99_us <= report.max_us);
        check_json(&report);
        let line = report.to_json_line();
        assert!(
            line.starts_with("{\"mode\":\"echo\",\"conns\":4,"),
            "{line}"
        );
        shutdown.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn pipelined_echo_with_spread_sources() {
        let (addr, shutdown, server) = echo_server().await;
        let opts = BenchOptions {
            sources: 3,
            payload: 1000,
            ..echo_opts(&addr, 8)
        };
        let report = run_bench(&opts).await.unwrap();
        assert!(report.msgs > 0, "{report:?}");
        assert_eq!(report.errors, 0, "{report:?}");
        check_json(&report);
        shutdown.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_refused_target_fails_setup_with_a_reason() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let err = run_bench(&echo_opts(&addr, 1)).await.unwrap_err();
        assert!(err.to_string().contains("cannot connect"), "{err}");
    }

    #[tokio::test]
    async fn churn_modes_count_errors_against_a_server_that_is_not_gamemesh() {
        // The echo server sends a login back as is: a ClientPacket with a
        // login body reads as a ServerPacket with a login body, but without
        // the fields a real login answer has, so kick and resume fail their
        // checks and count errors instead of hanging.
        let (addr, shutdown, server) = echo_server().await;
        for mode in [Mode::Login, Mode::Kick, Mode::Resume] {
            let opts = BenchOptions {
                mode,
                conns: 2,
                duration: Duration::from_millis(300),
                timeout: Duration::from_millis(200),
                ..BenchOptions::new(addr.clone())
            };
            let report = run_bench(&opts).await.unwrap();
            assert_eq!(report.mode, mode);
            assert!(report.msgs + report.errors > 0, "{report:?}");
            check_json(&report);
        }
        shutdown.cancel();
        server.await.unwrap();
    }

    #[test]
    fn options_are_validated() {
        let ok = BenchOptions::new("127.0.0.1:1");
        assert!(ok.validate().is_ok());
        let bad = [
            BenchOptions {
                conns: 0,
                ..ok.clone()
            },
            BenchOptions {
                depth: 0,
                ..ok.clone()
            },
            BenchOptions {
                sources: 0,
                ..ok.clone()
            },
            BenchOptions {
                sources: 255,
                ..ok.clone()
            },
            BenchOptions {
                payload: MAX_CLIENT_FRAME_BYTES,
                ..ok.clone()
            },
            BenchOptions {
                mode: Mode::Login,
                no_login: true,
                ..ok.clone()
            },
            BenchOptions {
                connect_rate: Some(0),
                ..ok.clone()
            },
            BenchOptions {
                room_size: 0,
                ..ok.clone()
            },
            BenchOptions {
                room_size: 17,
                ..ok.clone()
            },
        ];
        for opts in bad {
            assert!(opts.validate().is_err(), "{opts:?}");
        }
    }

    #[test]
    fn file_budget_counts_two_sockets_per_kick_pair() {
        let echo = BenchOptions {
            conns: 1000,
            ..BenchOptions::new("x:1")
        };
        assert_eq!(echo.files_needed(), 1000 + FD_RESERVE);
        let kick = BenchOptions {
            mode: Mode::Kick,
            ..echo
        };
        assert_eq!(kick.files_needed(), 2000 + FD_RESERVE);
    }

    #[test]
    fn sources_round_robin_and_spread() {
        let one = Sources::new(1, true);
        assert_eq!(one.pick(), (1, None), "one source: the kernel picks");
        one.spread(1);
        let (lo, _) = one.ports;
        let picks: Vec<_> = (0..3).map(|_| one.pick()).collect();
        let at =
            |last: u8, port: u16| Some(SocketAddr::from((Ipv4Addr::new(127, 0, 0, last), port)));
        assert_eq!(
            picks,
            vec![(2, at(1, lo)), (2, at(2, lo)), (2, at(1, lo + 1))],
            "every address, then the next port"
        );
        one.spread(1); // stale: another task already spread
        assert_eq!(one.pick().0, 2);
        let max = Sources::new(MAX_SOURCES, true);
        max.spread(MAX_SOURCES);
        assert_eq!(max.pick().0, MAX_SOURCES);
        assert_eq!(
            source_address(MAX_SOURCES - 1),
            Ipv4Addr::new(127, 0, 0, 254)
        );
    }

    #[test]
    fn port_range_parsing() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_port_range("1024 1024"), Some((1024, 1024)));
        assert_eq!(parse_port_range("60999 32768"), None);
        assert_eq!(parse_port_range("nonsense"), None);
        let (lo, hi) = ephemeral_port_range();
        assert!(lo <= hi);
    }

    #[test]
    fn the_port_walk_wraps_within_the_range() {
        let s = Sources {
            loopback: true,
            active: AtomicUsize::new(2),
            cursor: AtomicUsize::new(0),
            ports: (100, 101),
        };
        let ports: Vec<u16> = (0..6).map(|_| s.pick().1.unwrap().port()).collect();
        assert_eq!(ports, [100, 100, 101, 101, 100, 100]);
    }

    #[test]
    fn an_empty_run_reports_zeros() {
        let run = Run::new(
            BenchOptions::new("x:1"),
            "127.0.0.1:1".parse().unwrap(),
            true,
        );
        let report = run.report(&[Tally::default()]);
        assert_eq!((report.msgs, report.p50_us, report.max_us), (0, 0, 0));
        assert_eq!(report.msgs_per_s, 0.0);
        assert_eq!(report.duration_s, 10.0);
    }
}
