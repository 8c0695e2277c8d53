//! Game server configuration: every flag has an environment twin; tests
//! build a [`Config`] directly.

use std::time::Duration;

use clap::{Parser, ValueEnum};
use gamemesh_node::error::StartError;
use gamemesh_node::flags::{NodeFlags, NodeRole};

use crate::error::GameServerError;

/// Which session store to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// Redis: the source of truth, shared by every game server.
    Redis,
    /// In-process: a single game server with no Redis (development).
    Memory,
}

/// What a game server sets in the shared node flags.
#[derive(Debug, Clone, Copy, Default)]
pub struct GameServerRole;

impl NodeRole for GameServerRole {
    const ENV_PREFIX: &'static str = "GAME_SERVER";
    const DEFAULT_ADMIN_PORT: u16 = DEFAULT_ADMIN_PORT;
    const UNGUARDED: &'static str = "the P2P and mesh ports trust ANY peer that reaches them";
}

/// How a game server is run.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "game-server",
    version,
    about = "gamemesh game server: the hub behind the gateways"
)]
pub struct Config {
    /// The flags every node takes (node id, heartbeat, admin port, cluster
    /// secret, ...), with `GAME_SERVER_` env twins.
    #[command(flatten)]
    pub node: NodeFlags<GameServerRole>,
    /// Interface of the P2P and mesh ports. Loopback by default: internal
    /// ports must not face the internet.
    #[arg(long, env = "GAME_SERVER_BIND", default_value = "127.0.0.1")]
    pub bind: String,
    /// ZeroMQ port gateways send to (0: any free port).
    #[arg(long, env = "GAME_SERVER_P2P_PORT", default_value_t = 9001)]
    pub p2p_port: u16,
    /// ZeroMQ port other game servers send to (0: any free port).
    #[arg(long, env = "GAME_SERVER_MESH_PORT", default_value_t = 9101)]
    pub mesh_port: u16,
    /// Redis address: `host:port`, `redis://[user:pass@]host:port[/db]`,
    /// `rediss://...` (TLS),
    /// `redis+sentinel://[user:pass@]host:port[,host:port...]/<master-name>`
    /// (the user and password are the data nodes') or
    /// `redis+cluster://[user:pass@]host:port[,host:port...]` (Redis
    /// Cluster; `rediss+cluster://` with TLS). Shown redacted.
    #[arg(
        long,
        env = "REDIS_CONNECTION",
        default_value = "127.0.0.1:6379",
        hide_env_values = true
    )]
    pub redis: String,
    /// PEM file of the CA that signed the Redis servers' certificates, for
    /// `rediss://`; without it the system's roots are trusted.
    #[arg(long, env = "GAME_SERVER_REDIS_CA_FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// ACL user of the sentinels (for `redis+sentinel://`), if they need one.
    #[arg(long, env = "GAME_SERVER_REDIS_SENTINEL_USERNAME")]
    pub redis_sentinel_username: Option<String>,
    /// Password of the sentinels (`requirepass` in sentinel.conf), for
    /// `redis+sentinel://`.
    #[arg(
        long,
        env = "GAME_SERVER_REDIS_SENTINEL_PASSWORD",
        hide_env_values = true
    )]
    pub redis_sentinel_password: Option<String>,
    /// Session store.
    #[arg(long, env = "SESSION_STORE", value_enum, default_value_t = StoreKind::Redis)]
    pub session_store: StoreKind,
    /// Shared secret for HMAC login tokens; without it any token is
    /// accepted (development only).
    #[arg(long, env = "AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,
    /// How long a disconnected session stays resumable.
    #[arg(long, env = "RESUME_GRACE_SECS", default_value_t = 60)]
    pub resume_grace_secs: u64,
    /// Bound on each Redis call; past it the client gets UNAVAILABLE.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 1000)]
    pub redis_timeout_ms: u64,
    /// How often executed sequence ids are saved to the store.
    #[arg(long, env = "FLUSH_INTERVAL_MS", default_value_t = 100)]
    pub flush_interval_ms: u64,
    /// Replies kept per session for re-sent sequence ids (at least 32).
    #[arg(long, env = "REPLY_CACHE", default_value_t = 32)]
    pub reply_cache: usize,
    /// Login attempts one user id may make per minute on this game server
    /// (also the burst); more get RATE_LIMITED before the token is checked.
    #[arg(long, env = "LOGIN_ATTEMPTS_PER_USER_PER_MIN", default_value_t = 10)]
    pub login_attempts_per_user_per_min: u32,
    /// Login attempts one client IP (an IPv6 client: its /64) may make per
    /// minute on this game server (also the burst), all users together.
    /// Many players share one address (a campus, a LAN party, a carrier's
    /// NAT) and log in together after a gateway restart: 1200 lets a
    /// storm of that many in at once, on each game server. Guessing one
    /// user's token is bounded by the per-user limit, not this one; this
    /// one bounds the token checks and Redis calls one address costs.
    #[arg(long, env = "LOGIN_ATTEMPTS_PER_IP_PER_MIN", default_value_t = 1200)]
    pub login_attempts_per_ip_per_min: u32,
    /// A connection whose frames are not the contract (a body that is not
    /// a ClientPacket, or an empty or unknown body) this many times within
    /// --protocol-error-window-secs is kicked (PROTOCOL_ERROR). Each such
    /// frame is answered first (MALFORMED_PACKET / UNKNOWN_MESSAGE); a
    /// well-behaved client sends none, one a version ahead sends a few and
    /// adapts.
    #[arg(
        long,
        env = "GAME_SERVER_PROTOCOL_ERROR_KICK_AFTER",
        default_value_t = 10
    )]
    pub protocol_error_kick_after: u32,
    /// The window of --protocol-error-kick-after, in seconds.
    #[arg(
        long,
        env = "GAME_SERVER_PROTOCOL_ERROR_WINDOW_SECS",
        default_value_t = 10
    )]
    pub protocol_error_window_secs: u64,
    /// When the daily reset job runs: a six-field cron expression (seconds
    /// first), UTC. Every game server should be given the same one.
    #[arg(
        long,
        env = "GAME_SERVER_DAILY_RESET_CRON",
        default_value = "0 0 0 * * *"
    )]
    pub daily_reset_cron: String,
    /// Background jobs run at once on this game server.
    #[arg(long, env = "GAME_SERVER_JOB_WORKERS", default_value_t = 4)]
    pub job_workers: usize,
    /// How often due jobs and cron ticks are looked for.
    #[arg(long, env = "GAME_SERVER_JOB_POLL_MS", default_value_t = 250)]
    pub job_poll_ms: u64,
    /// How long a claimed job holds without renewal: a job of a game server
    /// that died runs elsewhere after this.
    #[arg(long, env = "GAME_SERVER_JOB_LEASE_SECS", default_value_t = 30)]
    pub job_lease_secs: u64,
    /// Workers of the bounded local work queue (event handlers, long work
    /// handed off by request handlers).
    #[arg(long, env = "GAME_SERVER_WORK_QUEUE_WORKERS", default_value_t = 4)]
    pub work_queue_workers: usize,
    /// Items that may wait in the work queue; when full, producers wait or
    /// get RATE_LIMITED.
    #[arg(long, env = "GAME_SERVER_WORK_QUEUE_CAPACITY", default_value_t = 1024)]
    pub work_queue_capacity: usize,
    /// Chat sends (room messages and whispers together) one session may
    /// make per second; more get RATE_LIMITED.
    #[arg(long, env = "GAME_SERVER_CHAT_MESSAGES_PER_SEC", default_value_t = 5)]
    pub chat_messages_per_sec: u32,
    /// Chat sends one session may make in a burst.
    #[arg(long, env = "GAME_SERVER_CHAT_BURST", default_value_t = 10)]
    pub chat_burst: u32,
    /// How often each room held here drops members whose session ended
    /// (expired, replaced) and rooms that moved away hand over.
    #[arg(long, env = "GAME_SERVER_CHAT_SWEEP_MS", default_value_t = 2000)]
    pub chat_sweep_ms: u64,
    /// How long a game room's lease lasts without renewal: when the game
    /// server running a room dies, another restarts it from its checkpoint
    /// at most this long after the death (and once the mesh noticed it,
    /// after --peer-timeout-ms). At least 100.
    #[arg(long, env = "GAME_SERVER_ROOM_LEASE_MS", default_value_t = 2000)]
    pub room_lease_ms: u64,
    /// How often this game server looks for game rooms to start (a dead
    /// game server's) or hand off (placed elsewhere now).
    #[arg(long, env = "GAME_SERVER_ROOM_RESTART_MS", default_value_t = 250)]
    pub room_restart_ms: u64,
    /// How often a game room drops members whose session ended.
    #[arg(long, env = "GAME_SERVER_ROOM_MEMBERS_MS", default_value_t = 1000)]
    pub room_members_ms: u64,
}

/// Default admin (metrics, health) port.
pub const DEFAULT_ADMIN_PORT: u16 = 9191;

impl Default for Config {
    fn default() -> Self {
        // The flag defaults, written out so tests never read environment
        // variables; `defaults_match_the_flags` keeps the two in step.
        Self {
            node: NodeFlags::default(),
            bind: "127.0.0.1".into(),
            p2p_port: 9001,
            mesh_port: 9101,
            redis: "127.0.0.1:6379".into(),
            redis_ca_file: None,
            redis_sentinel_username: None,
            redis_sentinel_password: None,
            session_store: StoreKind::Redis,
            auth_secret: None,
            resume_grace_secs: 60,
            redis_timeout_ms: 1000,
            flush_interval_ms: 100,
            reply_cache: 32,
            login_attempts_per_user_per_min: 10,
            login_attempts_per_ip_per_min: 1200,
            chat_messages_per_sec: 5,
            chat_burst: 10,
            chat_sweep_ms: 2000,
            daily_reset_cron: "0 0 0 * * *".into(),
            job_workers: 4,
            job_poll_ms: 250,
            job_lease_secs: 30,
            work_queue_workers: 4,
            work_queue_capacity: 1024,
            protocol_error_kick_after: 10,
            protocol_error_window_secs: 10,
            room_lease_ms: 2000,
            room_restart_ms: 250,
            room_members_ms: 1000,
        }
    }
}

impl Config {
    /// Checks values clap cannot, before anything is bound.
    pub fn validate(&self) -> Result<(), GameServerError> {
        let bad = |m: &str| Err(StartError::Config(m.to_string()).into());
        if self.node.node_id == 0 {
            return bad("--node-id must not be 0");
        }
        if self.reply_cache < 32 {
            return bad("--reply-cache must be at least 32 (docs/PROTOCOL.md)");
        }
        if self.resume_grace_secs == 0 {
            return bad("--resume-grace-secs must be at least 1");
        }
        if self.redis_timeout_ms == 0 || self.flush_interval_ms == 0 {
            return bad("--redis-timeout-ms and --flush-interval-ms must be at least 1");
        }
        if let Err(e) = self.node.validate() {
            return bad(&e.to_string());
        }
        if self.login_attempts_per_user_per_min == 0 || self.login_attempts_per_ip_per_min == 0 {
            return bad("--login-attempts-per-user-per-min and --login-attempts-per-ip-per-min must be at least 1 (0 would refuse every login; set a large value to relax them)");
        }
        if self.chat_messages_per_sec == 0 || self.chat_burst == 0 || self.chat_sweep_ms == 0 {
            return bad(
                "--chat-messages-per-sec, --chat-burst and --chat-sweep-ms must be at least 1",
            );
        }
        if let Err(e) = gamemesh_jobs::CronSchedule::parse(&self.daily_reset_cron) {
            return bad(&format!("--daily-reset-cron: {e}"));
        }
        if self.job_workers == 0
            || self.job_poll_ms == 0
            || self.job_lease_secs == 0
            || self.work_queue_workers == 0
            || self.work_queue_capacity == 0
        {
            return bad("--job-workers, --job-poll-ms, --job-lease-secs, --work-queue-workers and --work-queue-capacity must be at least 1");
        }
        if self.protocol_error_kick_after == 0 || self.protocol_error_window_secs == 0 {
            return bad(
                "--protocol-error-kick-after and --protocol-error-window-secs must be at least 1",
            );
        }
        if self.auth_secret.as_deref() == Some("") {
            return bad("--auth-secret is empty: give a secret or leave it unset");
        }
        if self.room_lease_ms < 100 || self.room_restart_ms == 0 || self.room_members_ms == 0 {
            return bad("--room-lease-ms must be at least 100, --room-restart-ms and --room-members-ms at least 1");
        }
        if self.session_store == StoreKind::Redis {
            self.redis_options()
                .validate()
                .map_err(|e| StartError::Config(e.to_string()))?;
        }
        Ok(())
    }

    /// How to reach Redis, from the `--redis*` flags.
    pub fn redis_options(&self) -> crate::redis::RedisOptions {
        crate::redis::RedisOptions {
            url: self.redis.clone(),
            ca_file: self.redis_ca_file.clone(),
            sentinel_username: self.redis_sentinel_username.clone(),
            sentinel_password: self.redis_sentinel_password.clone(),
            timeout: Duration::from_millis(self.redis_timeout_ms),
        }
    }

    /// The game room runtime's timing, from the `--room-*` flags.
    pub fn room_settings(&self) -> crate::api::RoomSettings {
        crate::api::RoomSettings {
            lease_ttl: Duration::from_millis(self.room_lease_ms),
            restart_every: Duration::from_millis(self.room_restart_ms),
            // Chat rooms are rooms of the runtime: --chat-sweep-ms, older,
            // still bounds how long an ended member stays.
            members_every: Duration::from_millis(self.room_members_ms.min(self.chat_sweep_ms)),
            ..crate::api::RoomSettings::default()
        }
    }

    /// Resume grace as a duration.
    pub fn resume_grace(&self) -> Duration {
        Duration::from_secs(self.resume_grace_secs)
    }

    /// Lifetime of a connected session's record, renewed by its owner
    /// (every ninth of it, so two missed renewals in a row still leave it
    /// alive). If the owner dies and nobody adopts the
    /// session, the record is gone after this.
    pub fn live_ttl(&self) -> Duration {
        self.resume_grace() + Duration::from_secs(30)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_flags() {
        let parsed = Config::try_parse_from(["game-server"]).unwrap();
        let d = Config::default();
        assert_eq!(parsed.p2p_port, d.p2p_port);
        assert_eq!(parsed.mesh_port, d.mesh_port);
        assert_eq!(parsed.session_store, d.session_store);
        assert_eq!(parsed.resume_grace_secs, d.resume_grace_secs);
        assert_eq!(parsed.reply_cache, d.reply_cache);
        assert_eq!(parsed.node.admin_port, DEFAULT_ADMIN_PORT);
        assert_eq!(parsed.node.admin_port, d.node.admin_port);
        assert_eq!(
            parsed.login_attempts_per_user_per_min,
            d.login_attempts_per_user_per_min
        );
        assert_eq!(
            parsed.login_attempts_per_ip_per_min,
            d.login_attempts_per_ip_per_min
        );
        assert_eq!(parsed.chat_messages_per_sec, d.chat_messages_per_sec);
        assert_eq!(parsed.chat_burst, d.chat_burst);
        assert_eq!(parsed.chat_sweep_ms, d.chat_sweep_ms);
        assert_eq!(parsed.daily_reset_cron, d.daily_reset_cron);
        assert_eq!(parsed.job_workers, d.job_workers);
        assert_eq!(parsed.job_poll_ms, d.job_poll_ms);
        assert_eq!(parsed.job_lease_secs, d.job_lease_secs);
        assert_eq!(parsed.work_queue_workers, d.work_queue_workers);
        assert_eq!(parsed.work_queue_capacity, d.work_queue_capacity);
        assert_eq!(
            parsed.protocol_error_kick_after,
            d.protocol_error_kick_after
        );
        assert_eq!(
            parsed.protocol_error_window_secs,
            d.protocol_error_window_secs
        );
        d.validate().unwrap();
    }

    #[test]
    fn a_bad_daily_reset_cron_is_refused_before_start() {
        let c = Config {
            daily_reset_cron: "midnight".into(),
            ..Config::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("--daily-reset-cron") && e.contains("midnight"),
            "{e}"
        );
    }

    #[test]
    fn login_limits_of_zero_are_refused() {
        for c in [
            Config {
                login_attempts_per_user_per_min: 0,
                ..Config::default()
            },
            Config {
                login_attempts_per_ip_per_min: 0,
                ..Config::default()
            },
        ] {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("--login-attempts-per"), "{e}");
        }
    }
}
