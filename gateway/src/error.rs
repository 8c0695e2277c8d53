//! Gateway errors. Start-up errors are written for the person starting the
//! gateway: what went wrong and which flag changes it.

use gamemesh_node::error::StartError;
use thiserror::Error;

/// Everything that stops a gateway from starting or running.
#[derive(Debug, Error)]
pub enum GatewayError {
    /// The client port is taken.
    #[error("client port {port} is already in use on {host}: stop whatever holds it or choose another port with {flag}")]
    ClientPortInUse {
        /// Interface we tried.
        host: String,
        /// Port we tried.
        port: u16,
        /// The flag that sets it (`--client-port` or `--ws-port`).
        flag: &'static str,
    },
    /// The client port could not be bound for another reason.
    #[error("cannot listen for clients on {addr}: {source} (check --client-bind and {flag})")]
    ClientBind {
        /// Address we tried.
        addr: String,
        /// The flag that sets its port (`--client-port` or `--ws-port`).
        flag: &'static str,
        /// The OS's reason.
        source: std::io::Error,
    },
    /// What stops any node: the P2P port taken, the link, the admin port,
    /// a flag that cannot work.
    #[error(transparent)]
    Start(#[from] StartError),
}
