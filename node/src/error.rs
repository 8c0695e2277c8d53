//! What stops any node from starting, whatever its kind. Each binary's own
//! error wraps it (`GatewayError::Start`, `GameServerError::Start`) beside
//! the failures only that binary has.

use gamemesh_transport::LinkError;
use thiserror::Error;

use crate::admin::AdminError;

/// A start-up failure any node can have. Each says what to do next.
#[derive(Debug, Error)]
pub enum StartError {
    /// An internal (ZeroMQ) port is taken.
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
    Link(#[from] LinkError),
    /// The admin port could not be opened.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// A flag has a value that cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
}
