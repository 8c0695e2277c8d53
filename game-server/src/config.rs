//! Game server configuration: every flag has an environment twin; tests
//! build a [`Config`] directly.

use std::time::Duration;

use clap::{Parser, ValueEnum};
use gamemesh_node::LogFormat;

use crate::error::GameServerError;

/// Which session store to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// Redis: the source of truth, shared by every game server.
    Redis,
    /// In-process: a single game server with no Redis (development).
    Memory,
}

/// How a game server is run.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "game-server",
    version,
    about = "gamemesh game server: the hub behind the gateways"
)]
pub struct Config {
    /// This game server's node id, unique among game servers (never 0).
    #[arg(long, env = "GAME_SERVER_NODE_ID", default_value_t = 1)]
    pub node_id: u64,
    /// Interface of the P2P and mesh ports. Loopback by default: internal
    /// ports must not face the internet.
    #[arg(long, env = "GAME_SERVER_BIND", default_value = "127.0.0.1")]
    pub bind: String,
    /// Host name gateways and peers use to reach this game server.
    #[arg(long, env = "GAME_SERVER_ADVERTISE_HOST", default_value = "127.0.0.1")]
    pub advertise_host: String,
    /// ZeroMQ port gateways send to (0: any free port).
    #[arg(long, env = "GAME_SERVER_P2P_PORT", default_value_t = 9001)]
    pub p2p_port: u16,
    /// ZeroMQ port other game servers send to (0: any free port).
    #[arg(long, env = "GAME_SERVER_MESH_PORT", default_value_t = 9101)]
    pub mesh_port: u16,
    /// Redis address: `host:port` or a `redis://` URL.
    #[arg(long, env = "REDIS_CONNECTION", default_value = "127.0.0.1:6379")]
    pub redis: String,
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
    /// Interval of hellos to gateways and peers.
    #[arg(long, env = "GAME_SERVER_HEARTBEAT_MS", default_value_t = 1000)]
    pub heartbeat_ms: u64,
    /// A gateway silent for this long is declared down and its sockets
    /// are treated as disconnected.
    #[arg(long, env = "GAME_SERVER_PEER_TIMEOUT_MS", default_value_t = 3000)]
    pub peer_timeout_ms: u64,
    /// Longest wait for sessions to be saved on shutdown.
    #[arg(long, env = "GAME_SERVER_SHUTDOWN_GRACE_SECS", default_value_t = 5)]
    pub shutdown_grace_secs: u64,
    /// Login attempts one user id may make per minute on this game server
    /// (also the burst); more get RATE_LIMITED before the token is checked.
    #[arg(long, env = "LOGIN_ATTEMPTS_PER_USER_PER_MIN", default_value_t = 10)]
    pub login_attempts_per_user_per_min: u32,
    /// Login attempts one client IP (an IPv6 client: its /64) may make per
    /// minute on this game server (also the burst), all users together.
    #[arg(long, env = "LOGIN_ATTEMPTS_PER_IP_PER_MIN", default_value_t = 60)]
    pub login_attempts_per_ip_per_min: u32,
    /// Interface of the admin port (`/metrics`, `/healthz`, `/readyz`).
    /// Loopback by default: metrics are for the operator, not the internet.
    #[arg(long, env = "GAME_SERVER_ADMIN_BIND", default_value = "127.0.0.1")]
    pub admin_bind: String,
    /// HTTP admin port: Prometheus `/metrics`, `/healthz` (alive) and
    /// `/readyz` (Redis answers and not draining) (0: any free port).
    #[arg(long, env = "GAME_SERVER_ADMIN_PORT", default_value_t = DEFAULT_ADMIN_PORT)]
    pub admin_port: u16,
    /// Log line format: `text` for people, `json` for log shippers.
    /// `RUST_LOG` picks what is logged.
    #[arg(long, env = "GAME_SERVER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Default admin (metrics, health) port.
pub const DEFAULT_ADMIN_PORT: u16 = 9191;

impl Default for Config {
    fn default() -> Self {
        // The flag defaults, written out so tests never read environment
        // variables; `defaults_match_the_flags` keeps the two in step.
        Self {
            node_id: 1,
            bind: "127.0.0.1".into(),
            advertise_host: "127.0.0.1".into(),
            p2p_port: 9001,
            mesh_port: 9101,
            redis: "127.0.0.1:6379".into(),
            session_store: StoreKind::Redis,
            auth_secret: None,
            resume_grace_secs: 60,
            redis_timeout_ms: 1000,
            flush_interval_ms: 100,
            reply_cache: 32,
            heartbeat_ms: 1000,
            peer_timeout_ms: 3000,
            shutdown_grace_secs: 5,
            login_attempts_per_user_per_min: 10,
            login_attempts_per_ip_per_min: 60,
            admin_bind: "127.0.0.1".into(),
            admin_port: DEFAULT_ADMIN_PORT,
            log_format: LogFormat::Text,
        }
    }
}

impl Config {
    /// Checks values clap cannot, before anything is bound.
    pub fn validate(&self) -> Result<(), GameServerError> {
        let bad = |m: &str| Err(GameServerError::Config(m.to_string()));
        if self.node_id == 0 {
            return bad("--node-id must not be 0");
        }
        if self.reply_cache < 32 {
            return bad("--reply-cache must be at least 32 (PROTOCOL.md)");
        }
        if self.resume_grace_secs == 0 {
            return bad("--resume-grace-secs must be at least 1");
        }
        if self.redis_timeout_ms == 0 || self.flush_interval_ms == 0 {
            return bad("--redis-timeout-ms and --flush-interval-ms must be at least 1");
        }
        if self.heartbeat_ms == 0 || self.peer_timeout_ms <= self.heartbeat_ms {
            return bad("--peer-timeout-ms must be larger than --heartbeat-ms (> 0)");
        }
        if self.login_attempts_per_user_per_min == 0 || self.login_attempts_per_ip_per_min == 0 {
            return bad("--login-attempts-per-user-per-min and --login-attempts-per-ip-per-min must be at least 1 (0 would refuse every login; set a large value to relax them)");
        }
        if self.auth_secret.as_deref() == Some("") {
            return bad("--auth-secret is empty: give a secret or leave it unset");
        }
        Ok(())
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
        assert_eq!(parsed.admin_bind, d.admin_bind);
        assert_eq!(parsed.admin_port, d.admin_port);
        assert_eq!(parsed.log_format, d.log_format);
        assert_eq!(
            parsed.login_attempts_per_user_per_min,
            d.login_attempts_per_user_per_min
        );
        assert_eq!(
            parsed.login_attempts_per_ip_per_min,
            d.login_attempts_per_ip_per_min
        );
        d.validate().unwrap();
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
