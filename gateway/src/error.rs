//! Gateway errors. Start-up errors are written for the person starting the
//! gateway: what went wrong and which flag changes it.

use thiserror::Error;

/// Everything that stops a gateway from starting or running.
#[derive(Debug, Error)]
pub enum GatewayError {
    /// The client port is taken.
    #[error("client port {port} is already in use on {host}: stop whatever holds it or choose another port with --client-port")]
    ClientPortInUse {
        /// Interface we tried.
        host: String,
        /// Port we tried.
        port: u16,
    },
    /// The client port could not be bound for another reason.
    #[error(
        "cannot listen for clients on {addr}: {source} (check --client-bind and --client-port)"
    )]
    ClientBind {
        /// Address we tried.
        addr: String,
        /// The OS's reason.
        source: std::io::Error,
    },
    /// The P2P port is taken.
    #[error("P2P port {port} is already in use: stop whatever holds it or choose another port with --p2p-port")]
    P2pPortInUse {
        /// Port we tried.
        port: u16,
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
