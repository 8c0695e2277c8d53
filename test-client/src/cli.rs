//! Command-line interface: flags (each with an environment twin) and the
//! dispatch to the commands. Lives in the library so it can be tested
//! without spawning the binary.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::echo_server::{self, EchoServerOptions};
use crate::load::{self, BenchOptions, Mode};
use crate::{admin, chaos, chat, commands, scenario, web};

/// gamemesh test client: speaks the client protocol to a gateway.
#[derive(Debug, Parser)]
#[command(name = "test-client", version, about)]
pub struct Cli {
    /// Gateway address (host:port).
    #[arg(
        long,
        global = true,
        env = "GAMEMESH_ADDR",
        default_value = "127.0.0.1:5000"
    )]
    pub addr: String,

    /// Shared login secret; without it the token "dev" is sent, which only
    /// servers running without a secret accept.
    #[arg(long, global = true, env = "AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,

    /// Bound on every connect and wait, in milliseconds.
    #[arg(
        long,
        global = true,
        env = "GAMEMESH_TIMEOUT_MS",
        default_value_t = 5000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub timeout_ms: u64,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The bound on every wait.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in once and print the LoginResponse.
    Login {
        /// The player (`--user`).
        #[command(flatten)]
        user: UserArg,
        /// Stay connected this many seconds and print the server notices
        /// that arrive (0: log in and leave).
        #[arg(long, env = "GAMEMESH_LISTEN_SECS", default_value_t = 0)]
        listen_secs: u64,
    },
    /// Log in, then echo TEXT and print each reply with its round-trip time.
    Echo {
        /// The text to echo.
        text: String,
        /// The player (`--user`).
        #[command(flatten)]
        user: UserArg,
        /// How many echoes to send, one after the other.
        #[arg(
            long,
            env = "GAMEMESH_ECHO_COUNT",
            default_value_t = 1,
            value_parser = clap::value_parser!(u32).range(1..)
        )]
        count: u32,
    },
    /// Walk through the protocol contract, printing PASS/FAIL per step.
    Scenario {
        /// The player (`--user`).
        #[command(flatten)]
        user: UserArg,
        /// A second gateway for the duplicate-login connection (defaults to
        /// --addr).
        #[arg(long, env = "GAMEMESH_ADDR2")]
        addr2: Option<String>,
    },
    /// Interactive chat: log in, read commands from stdin (/join, /say or
    /// plain text, /w, /leave, /list; /help lists them), print what others
    /// say as it arrives.
    Chat {
        /// The player (`--user`).
        #[command(flatten)]
        user: UserArg,
        /// A room to join at once.
        #[arg(long, env = "GAMEMESH_CHAT_ROOM")]
        room: Option<String>,
        /// After the end of input, keep printing pushes this long (for
        /// scripted runs).
        #[arg(long, env = "GAMEMESH_CHAT_LINGER_MS", default_value_t = 0)]
        linger_ms: u64,
        /// Reconnect (up to 10 times) until the gateway routes this client
        /// to game server N, to show chat across game servers.
        #[arg(long, env = "GAMEMESH_CHAT_GAME_SERVER")]
        on_game_server: Option<u64>,
    },
    /// Play the arena sample in this terminal: arrow keys move, z zooms,
    /// q leaves the room and quits.
    Arena {
        /// The room (`--room`).
        #[command(flatten)]
        room: ArenaRoomArg,
        /// The player (`--user`).
        #[command(flatten)]
        user: UserArg,
    },
    /// One scripted arena player: joins ROOM, makes --moves (R L U D, one
    /// every 200 ms), prints what it sees; exits 1 unless every --see user
    /// showed up and the ticks rose by exactly 1 (run-sample.sh runs two).
    ArenaDemo {
        /// The room (`--room`).
        #[command(flatten)]
        room: ArenaRoomArg,
        /// User id to log in as.
        #[arg(long, env = "GAMEMESH_USER")]
        user: u64,
        /// Reconnect (up to 20 times) until the gateway routes this player
        /// to game server N.
        #[arg(long)]
        on_game_server: Option<u64>,
        /// The moves, e.g. `RRD`.
        #[arg(long, default_value = "")]
        moves: String,
        /// A user that must show up in the room's states (repeatable).
        #[arg(long)]
        see: Vec<u64>,
        /// Seconds to keep watching after the moves.
        #[arg(long, default_value_t = 3)]
        secs: u64,
    },
    /// Load generator: measure --addr for a while, print one JSON line.
    Bench(BenchArgs),
    /// Bare echo server for the same framing: the physical-limit baseline.
    EchoServer(EchoServerArgs),
    /// Live cluster view from the nodes' admin ports: nodes, connections,
    /// sessions, packets/s and p99 handler latency, refreshed every
    /// interval.
    Top {
        /// Admin ports to watch (`host:port`, comma separated), e.g. the
        /// ones `run-sample.sh` prints.
        #[arg(
            long = "admin",
            env = "GAMEMESH_ADMIN",
            value_delimiter = ',',
            default_value = "127.0.0.1:9190,127.0.0.1:9191"
        )]
        admin: Vec<String>,
        /// Refresh interval in milliseconds.
        #[arg(
            long,
            env = "GAMEMESH_TOP_INTERVAL_MS",
            default_value_t = 1000,
            value_parser = clap::value_parser!(u64).range(100..)
        )]
        interval_ms: u64,
        /// Stop after this many refreshes (default: until Ctrl-C).
        #[arg(long, env = "GAMEMESH_TOP_COUNT")]
        count: Option<u64>,
    },
    /// Sessions incrementing their counters through two gateways while the
    /// cluster is broken around them; prints one JSON line and a table,
    /// exits 1 if anything that must be 0 is not.
    Chaos(ChaosArgs),
    /// Operator commands on background jobs and events (talks to Redis).
    Admin(AdminArgs),
    /// Serve the arena in a browser: the page (built by `npm run
    /// build:web` in clients/typescript) plays through a gateway's
    /// WebSocket port; prints the URL to open and serves until Ctrl-C.
    Web(WebArgs),
}

/// `--user` of the commands that log in as one player.
#[derive(Debug, Clone, Copy, Args)]
pub struct UserArg {
    /// User id to log in as (random when absent).
    #[arg(long = "user", env = "GAMEMESH_USER", value_name = "USER")]
    pub id: Option<u64>,
}

impl UserArg {
    /// The user asked for, or a random one.
    pub fn or_random(&self) -> u64 {
        self.id.unwrap_or_else(commands::random_user)
    }
}

/// `--room` of the arena commands.
#[derive(Debug, Args)]
pub struct ArenaRoomArg {
    /// The arena room to join (1-32 of A-Z a-z 0-9 _ -; created if it
    /// does not exist).
    #[arg(long = "room", env = "GAMEMESH_ARENA_ROOM", value_name = "ROOM")]
    pub name: String,
}

/// Flags of `web` (the global `--auth-secret` mints the page's tokens).
#[derive(Debug, Args)]
pub struct WebArgs {
    /// The gateway's WebSocket URL the page connects to (a gateway started
    /// with --ws-port), e.g. ws://127.0.0.1:5100.
    #[arg(long, env = "GAMEMESH_GATEWAY_WS")]
    pub gateway_ws: String,
    /// Address to serve the page on; port 0 picks a free one (the printed
    /// URL has it).
    #[arg(long, env = "GAMEMESH_WEB_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The built page: a directory with index.html and arena.js.
    #[arg(long, env = "GAMEMESH_WEB_DIR", default_value = web::DEFAULT_DIR)]
    pub dir: std::path::PathBuf,
}

/// Flags of `admin`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Redis address: `host:port`, a `redis://` URL or `redis+cluster://host:port[,host:port...]`.
    #[arg(long, env = "REDIS_CONNECTION", default_value = "127.0.0.1:6379")]
    pub redis: String,
    /// What to do.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// `admin` subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Background jobs: list, failed, inspect, requeue.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Timed in-game events.
    #[command(subcommand)]
    Event(EventCommand),
}

/// `admin jobs` subcommands.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Jobs queued, retrying or running.
    List,
    /// Jobs out of attempts.
    Failed,
    /// Every stored field of one job.
    Inspect {
        /// The job id.
        id: String,
    },
    /// Put a failed job back in the queue with fresh attempts.
    Requeue {
        /// The job id.
        id: String,
    },
}

/// `admin event` subcommands.
#[derive(Debug, Subcommand)]
pub enum EventCommand {
    /// Schedule a timed in-game event: a start notice after --start-in, an
    /// end notice --duration after it started, to every online player.
    Schedule {
        /// The event's name, shown to players.
        #[arg(long, env = "GAMEMESH_EVENT_NAME")]
        name: String,
        /// Delay before it starts (30s, 500ms, 2m, 1h; bare numbers are
        /// seconds).
        #[arg(long, env = "GAMEMESH_EVENT_START_IN", value_parser = admin::parse_duration)]
        start_in: Duration,
        /// How long it lasts.
        #[arg(long, env = "GAMEMESH_EVENT_DURATION", value_parser = admin::parse_duration)]
        duration: Duration,
    },
}

/// Flags of `chaos` (global `--addr`, `--auth-secret` apply too).
#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// The second gateway; sessions start on both and resume through the
    /// other when theirs fails.
    #[arg(long, env = "GAMEMESH_ADDR2")]
    pub addr2: Option<String>,
    /// Concurrent sessions.
    #[arg(
        long,
        env = "GAMEMESH_CHAOS_SESSIONS",
        default_value_t = 50,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub sessions: u32,
    /// Seconds new increments are started.
    #[arg(
        long,
        env = "GAMEMESH_CHAOS_DURATION",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub duration: u64,
    /// Pause between one session's increments, in milliseconds.
    #[arg(long, env = "GAMEMESH_CHAOS_INTERVAL_MS", default_value_t = 20)]
    pub interval_ms: u64,
    /// A request attempt with no answer at all (value or explicit error)
    /// within this long counts as hung. The default is above a gateway's
    /// default bound (--request-timeout-ms 5000).
    #[arg(long, env = "GAMEMESH_CHAOS_DEADLINE_MS", default_value_t = 10_000)]
    pub deadline_ms: u64,
    /// User id of the first session (the others follow).
    #[arg(long, env = "GAMEMESH_CHAOS_FIRST_USER", default_value_t = 1_000_000)]
    pub first_user: u64,
    /// Redis URL (`redis://host:port`) for the doubled-session check; the
    /// check is skipped without it.
    #[arg(long, env = "GAMEMESH_CHAOS_REDIS")]
    pub redis: Option<String>,
    /// A file the fault script appends `<unix ms> <fault name>` lines to
    /// (scripts/chaos.sh does): kill-to-served is measured per fault.
    #[arg(long, env = "GAMEMESH_CHAOS_FAULTS_FILE")]
    pub faults_file: Option<std::path::PathBuf>,
    /// The soak's mixed load: sessions also resume on their own now and
    /// then, and players who log in, echo and leave, and chat rooms, run
    /// beside them (scripts/soak.sh).
    #[arg(long, env = "GAMEMESH_CHAOS_MIX")]
    pub mix: bool,
}

/// Flags of `bench` (global `--addr`, `--auth-secret` and `--timeout-ms`
/// apply too).
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(long, env = "GAMEMESH_BENCH_MODE", value_enum, default_value_t = Mode::Echo)]
    pub mode: Mode,
    /// Sessions (echo, idle), concurrent workers (login, resume) or
    /// concurrent pairs (kick).
    #[arg(
        long,
        env = "GAMEMESH_BENCH_CONNS",
        default_value_t = 100,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub conns: u32,
    /// Echo requests in flight per connection; 1 is lockstep.
    #[arg(
        long,
        env = "GAMEMESH_BENCH_DEPTH",
        default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub depth: u32,
    /// Bytes of echo data per request.
    #[arg(long, env = "GAMEMESH_BENCH_PAYLOAD", default_value_t = 64)]
    pub payload: u32,
    /// Seconds the clock runs (after set-up and warm-up).
    #[arg(
        long,
        env = "GAMEMESH_BENCH_DURATION",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub duration: u64,
    /// Echo without logging in: for the bare echo server or a relay in
    /// front of it (echo mode only).
    #[arg(long, env = "GAMEMESH_BENCH_NO_LOGIN")]
    pub no_login: bool,
    /// Spread connections over 127.0.0.1..127.0.0.K from the start (more
    /// are added by themselves when ports run out).
    #[arg(
        long,
        env = "GAMEMESH_BENCH_SOURCES",
        default_value_t = 1,
        value_parser = clap::value_parser!(u8).range(1..=254)
    )]
    pub sources: u8,
    /// At most this many new connections per second.
    #[arg(
        long,
        env = "GAMEMESH_BENCH_CONNECT_RATE",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub connect_rate: Option<u32>,
    /// Arena mode: players per room (--conns players in all).
    #[arg(
        long,
        env = "GAMEMESH_BENCH_ROOM_SIZE",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..=16)
    )]
    pub room_size: u32,
}

/// Flags of `echo-server`.
#[derive(Debug, Args)]
pub struct EchoServerArgs {
    /// Address to listen on.
    #[arg(long, env = "GAMEMESH_ECHO_LISTEN", default_value = "127.0.0.1:7000")]
    pub listen: SocketAddr,
    /// Runtime worker threads; 0 runs on one current-thread runtime.
    #[arg(long, env = "GAMEMESH_ECHO_WORKERS", default_value_t = 2)]
    pub workers: usize,
}

impl Cli {
    /// The options of `bench`, with the global flags folded in.
    pub fn bench_options(&self, args: &BenchArgs) -> BenchOptions {
        BenchOptions {
            addr: self.addr.clone(),
            mode: args.mode,
            conns: args.conns as usize,
            depth: args.depth as usize,
            payload: args.payload as usize,
            duration: Duration::from_secs(args.duration),
            no_login: args.no_login,
            sources: usize::from(args.sources),
            connect_rate: args.connect_rate,
            auth_secret: self.auth_secret.clone(),
            timeout: self.timeout(),
            room_size: args.room_size as usize,
        }
    }
}

/// Runs the parsed command line on the runtime it calls for: `bench` on a
/// current-thread runtime (a load generator must not compete with the
/// servers for cores), `echo-server` on the one `--workers` asks for, the
/// rest on a multi-threaded one. Returns like [`run`].
pub fn execute(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::Bench(ref args) => {
            let report = load::run(&cli.bench_options(args))?;
            println!("{}", report.to_json_line());
            Ok(true)
        }
        Command::EchoServer(ref args) => {
            echo_server::run(&EchoServerOptions {
                listen: args.listen,
                workers: args.workers,
            })?;
            Ok(true)
        }
        _ => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(run(cli)),
    }
}

/// Runs the protocol commands (`login`, `echo`, `scenario`) on the current
/// runtime. `Ok(false)` means the command ran but a check failed (exit
/// status 1); `Err` is a one-sentence reason it could not run. `bench` and
/// `echo-server` build their own runtimes: use [`execute`] for them.
pub async fn run(cli: Cli) -> anyhow::Result<bool> {
    let timeout = cli.timeout();
    let secret = cli.auth_secret.as_deref();
    match cli.command {
        Command::Login { user, listen_secs } => {
            commands::login(
                &cli.addr,
                secret,
                user.id,
                Duration::from_secs(listen_secs),
                timeout,
            )
            .await
        }
        Command::Admin(ref args) => {
            let redis = args.redis.as_str();
            match &args.command {
                AdminCommand::Jobs(JobsCommand::List) => admin::list(redis, timeout).await,
                AdminCommand::Jobs(JobsCommand::Failed) => admin::failed(redis, timeout).await,
                AdminCommand::Jobs(JobsCommand::Inspect { id }) => {
                    admin::inspect(redis, id, timeout).await
                }
                AdminCommand::Jobs(JobsCommand::Requeue { id }) => {
                    admin::requeue(redis, id, timeout).await
                }
                AdminCommand::Event(EventCommand::Schedule {
                    name,
                    start_in,
                    duration,
                }) => admin::schedule_event(redis, name, *start_in, *duration, timeout).await,
            }
        }
        Command::Echo {
            ref text,
            user,
            count,
        } => commands::echo(&cli.addr, secret, user.id, text, count, timeout).await,
        Command::Scenario { user, ref addr2 } => {
            let opts = scenario::ScenarioOptions {
                addr: cli.addr.clone(),
                addr2: addr2.clone(),
                auth_secret: cli.auth_secret.clone(),
                user: user.id,
                timeout,
            };
            scenario::run(&opts).await
        }
        Command::Chat {
            user,
            ref room,
            linger_ms,
            on_game_server,
        } => {
            chat::run(&chat::ChatOptions {
                addr: cli.addr.clone(),
                auth_secret: cli.auth_secret.clone(),
                user: user.or_random(),
                room: room.clone(),
                linger: Duration::from_millis(linger_ms),
                timeout,
                game_server: on_game_server,
            })
            .await
        }
        Command::Arena { ref room, user } => {
            crate::arena::play::run(&crate::arena::play::ArenaOptions {
                addr: cli.addr.clone(),
                auth_secret: cli.auth_secret.clone(),
                user: user.or_random(),
                room: room.name.clone(),
                timeout,
            })
            .await
        }
        Command::ArenaDemo {
            ref room,
            user,
            on_game_server,
            ref moves,
            ref see,
            secs,
        } => {
            crate::arena::demo::run(&crate::arena::demo::DemoOptions {
                addr: cli.addr.clone(),
                auth_secret: cli.auth_secret.clone(),
                user,
                room: room.name.clone(),
                game_server: on_game_server,
                moves: moves.clone(),
                see: see.clone(),
                watch: Duration::from_secs(secs),
                timeout,
            })
            .await
        }
        Command::Chaos(ref args) => {
            let mut addrs = vec![cli.addr.clone()];
            addrs.extend(args.addr2.clone());
            let opts = chaos::ChaosOptions {
                addrs,
                auth_secret: cli.auth_secret.clone(),
                sessions: args.sessions as usize,
                first_user: args.first_user,
                duration: Duration::from_secs(args.duration),
                interval: Duration::from_millis(args.interval_ms),
                deadline: Duration::from_millis(args.deadline_ms),
                redis: args.redis.clone(),
                faults_file: args.faults_file.clone(),
                mix: args.mix,
            };
            let report = chaos::run(&opts).await?;
            println!("{}", report.to_json_line());
            print!("{}", report.table());
            Ok(report.passed())
        }
        Command::Top {
            ref admin,
            interval_ms,
            count,
        } => crate::top::run(admin, Duration::from_millis(interval_ms), count).await,
        Command::Web(ref args) => {
            web::run(&web::WebOptions {
                listen: args.listen,
                dir: args.dir.clone(),
                gateway_ws: args.gateway_ws.clone(),
                auth_secret: cli.auth_secret.clone(),
            })
            .await
        }
        Command::Bench(_) | Command::EchoServer(_) => {
            anyhow::bail!("bench and echo-server build their own runtime: call cli::execute")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn admin_commands_parse() {
        let cli = Cli::try_parse_from([
            "test-client",
            "admin",
            "--redis",
            "127.0.0.1:7001",
            "event",
            "schedule",
            "--name",
            "Double XP",
            "--start-in",
            "5s",
            "--duration",
            "1m",
        ])
        .unwrap();
        let Command::Admin(ref a) = cli.command else {
            panic!("not admin: {:?}", cli.command)
        };
        assert_eq!(a.redis, "127.0.0.1:7001");
        assert!(matches!(
            a.command,
            AdminCommand::Event(EventCommand::Schedule { ref name, start_in, duration })
                if name == "Double XP" && start_in == Duration::from_secs(5) && duration == Duration::from_secs(60)
        ));
        let cli = Cli::try_parse_from(["test-client", "admin", "jobs", "requeue", "abc"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Admin(AdminArgs { command: AdminCommand::Jobs(JobsCommand::Requeue { ref id }), .. }) if id == "abc"
        ));
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "test-client",
            "echo",
            "hi",
            "--count",
            "3",
            "--addr",
            "10.0.0.1:7000",
            "--timeout-ms",
            "250",
        ])
        .unwrap();
        assert_eq!(cli.addr, "10.0.0.1:7000");
        assert_eq!(cli.timeout(), Duration::from_millis(250));
        assert!(
            matches!(cli.command, Command::Echo { ref text, count: 3, user: UserArg { id: None } } if text == "hi")
        );

        let cli =
            Cli::try_parse_from(["test-client", "--addr", "h:1", "scenario", "--addr2", "h:2"])
                .unwrap();
        assert_eq!(cli.addr, "h:1");
        assert!(matches!(cli.command, Command::Scenario { addr2: Some(ref a), .. } if a == "h:2"));
    }

    #[test]
    fn bench_flags_have_defaults_and_fold_in_the_globals() {
        let cli =
            Cli::try_parse_from(["test-client", "bench", "--addr", "127.0.0.1:7700"]).unwrap();
        let Command::Bench(ref args) = cli.command else {
            panic!("not bench: {:?}", cli.command)
        };
        let opts = cli.bench_options(args);
        assert_eq!(opts.addr, "127.0.0.1:7700");
        assert_eq!(opts.mode, Mode::Echo);
        assert_eq!((opts.conns, opts.depth, opts.payload), (100, 1, 64));
        assert_eq!(opts.duration, Duration::from_secs(10));
        assert_eq!(
            (opts.no_login, opts.sources, opts.connect_rate),
            (false, 1, None)
        );
        assert_eq!(opts.timeout, Duration::from_millis(5000));

        let cli = Cli::try_parse_from([
            "test-client",
            "bench",
            "--mode",
            "kick",
            "--conns",
            "1000",
            "--depth",
            "16",
            "--payload",
            "512",
            "--duration",
            "3",
            "--sources",
            "4",
            "--connect-rate",
            "5000",
        ])
        .unwrap();
        let Command::Bench(ref args) = cli.command else {
            panic!("not bench")
        };
        let opts = cli.bench_options(args);
        assert_eq!(opts.mode, Mode::Kick);
        assert_eq!((opts.conns, opts.depth, opts.payload), (1000, 16, 512));
        assert_eq!(opts.duration, Duration::from_secs(3));
        assert_eq!((opts.sources, opts.connect_rate), (4, Some(5000)));
        assert_eq!(opts.room_size, 10);

        let cli = Cli::try_parse_from([
            "test-client",
            "bench",
            "--mode",
            "arena",
            "--conns",
            "2000",
            "--room-size",
            "16",
        ])
        .unwrap();
        let Command::Bench(ref args) = cli.command else {
            panic!("not bench")
        };
        let opts = cli.bench_options(args);
        assert_eq!(
            (opts.mode, opts.conns, opts.room_size),
            (Mode::Arena, 2000, 16)
        );

        for bad in [
            &["--conns", "0"][..],
            &["--depth", "0"],
            &["--duration", "0"],
            &["--sources", "0"],
            &["--sources", "255"],
            &["--mode", "nope"],
            &["--room-size", "0"],
            &["--room-size", "17"],
        ] {
            let argv = ["test-client", "bench"].iter().chain(bad);
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn arena_takes_a_room_and_a_user() {
        let cli = Cli::try_parse_from([
            "test-client",
            "arena",
            "--room",
            "r1",
            "--user",
            "7",
            "--addr",
            "127.0.0.1:5001",
        ])
        .unwrap();
        assert_eq!(cli.addr, "127.0.0.1:5001");
        assert!(
            matches!(cli.command, Command::Arena { ref room, user: UserArg { id: Some(7) } } if room.name == "r1")
        );
        assert!(
            Cli::try_parse_from(["test-client", "arena"]).is_err(),
            "--room is required"
        );
    }

    #[test]
    fn web_needs_the_gateway_url_and_has_a_default_dir() {
        let cli = Cli::try_parse_from([
            "test-client",
            "web",
            "--gateway-ws",
            "ws://127.0.0.1:5100",
            "--listen",
            "127.0.0.1:0",
        ])
        .unwrap();
        let Command::Web(ref args) = cli.command else {
            panic!("not web: {:?}", cli.command)
        };
        assert_eq!(args.gateway_ws, "ws://127.0.0.1:5100");
        assert_eq!(args.listen.port(), 0);
        assert!(args.dir.ends_with("clients/typescript/dist/browser"));
        assert!(
            Cli::try_parse_from(["test-client", "web"]).is_err(),
            "--gateway-ws is required"
        );
    }

    #[test]
    fn echo_server_flags() {
        let cli = Cli::try_parse_from(["test-client", "echo-server"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::EchoServer(EchoServerArgs { workers: 2, listen }) if listen.port() == 7000
        ));
        let cli = Cli::try_parse_from([
            "test-client",
            "echo-server",
            "--listen",
            "127.0.0.1:7700",
            "--workers",
            "0",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::EchoServer(EchoServerArgs { workers: 0, listen }) if listen.port() == 7700
        ));
    }

    #[test]
    fn zero_counts_and_timeouts_are_refused() {
        assert!(Cli::try_parse_from(["test-client", "echo", "x", "--count", "0"]).is_err());
        assert!(Cli::try_parse_from(["test-client", "--timeout-ms", "0", "login"]).is_err());
    }
}
