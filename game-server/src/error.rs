//! Game server errors. Start-up errors say what to do next.

use thiserror::Error;

/// Everything that stops a game server from starting.
#[derive(Debug, Error)]
pub enum GameServerError {
    /// Redis did not answer at start-up.
    #[error("Redis is NOT running at {addr}: start it (redis-server) or set REDIS_CONNECTION ({reason})")]
    RedisUnreachable {
        /// The address tried.
        addr: String,
        /// What the client said.
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
