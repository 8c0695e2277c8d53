//! Game server errors. Start-up errors say what to do next.

use gamemesh_node::error::StartError;
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
    /// What stops any node: a ZeroMQ port taken, the link, the admin port,
    /// a flag that cannot work.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The game's modules registered something that cannot run.
    #[error("the game modules cannot start: {0}")]
    Modules(#[from] crate::api::BuildError),
}

impl From<crate::redis::RedisConnectError> for GameServerError {
    fn from(e: crate::redis::RedisConnectError) -> Self {
        use crate::redis::RedisConnectError as E;
        match e {
            E::Config(m) => StartError::Config(m).into(),
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
