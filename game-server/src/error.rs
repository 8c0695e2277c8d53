//! Game server errors. Start-up errors say what to do next.

use thiserror::Error;

/// Everything that stops a game server from starting.
#[derive(Debug, Error)]
pub enum GameServerError {
    /// Redis did not answer at start-up. `addr` is redacted.
    #[error("Redis is NOT running at {addr}: start it (redis-server) or set REDIS_CONNECTION ({reason})")]
    RedisUnreachable {
        /// The address tried.
        addr: String,
        /// What the client said.
        reason: String,
    },
    /// Redis (or a sentinel) refused the user name or password.
    #[error("Redis at {addr} refused our credentials: fix the user and password in REDIS_CONNECTION (or --redis-sentinel-password for the sentinels) ({reason})")]
    RedisAuth {
        /// The address tried, redacted.
        addr: String,
        /// What Redis said.
        reason: String,
    },
    /// The TLS handshake with Redis failed.
    #[error("TLS to Redis at {addr} failed: give the CA that signed its certificate with --redis-ca-file and check the address matches the certificate ({reason})")]
    RedisTls {
        /// The address tried, redacted.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// A port is taken.
    #[error("{what} port {port} is already in use: stop whatever holds it or choose another port with {flag}")]
    PortInUse {
        /// Which port ("P2P", "mesh").
        what: &'static str,
        /// The port.
        port: u16,
        /// The flag that changes it.
        flag: &'static str,
    },
    /// The ZeroMQ link failed.
    #[error("ZeroMQ link failed: {0}")]
    Link(#[from] gamemesh_transport::LinkError),
    /// The admin port could not be opened.
    #[error(transparent)]
    Admin(#[from] gamemesh_node::admin::AdminError),
    /// A flag has a value that cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl From<crate::redis::RedisConnectError> for GameServerError {
    fn from(e: crate::redis::RedisConnectError) -> Self {
        use crate::redis::RedisConnectError as E;
        match e {
            E::Config(m) => GameServerError::Config(m),
            E::Auth { target, reason } => GameServerError::RedisAuth {
                addr: target,
                reason,
            },
            E::Tls { target, reason } => GameServerError::RedisTls {
                addr: target,
                reason,
            },
            E::Unreachable { target, reason } => GameServerError::RedisUnreachable {
                addr: target,
                reason,
            },
        }
    }
}
