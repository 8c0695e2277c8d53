//! Accepts client sockets. The listen backlog is 4096, not tokio's 128: a
//! burst of a thousand connects (a match starting, a reconnect storm after
//! a network blip) must not overflow it into one-second SYN retries.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::error::GatewayError;
use crate::{connection, Shared};

/// Listen backlog for client sockets.
pub const BACKLOG: u32 = 4096;

/// Binds the client port.
pub fn bind(host: &str, port: u16) -> Result<TcpListener, GatewayError> {
    let addr_text = format!("{host}:{port}");
    let addr: SocketAddr = addr_text.parse().map_err(|_| {
        GatewayError::Config(format!("--client-bind {host:?} is not an IP address"))
    })?;
    let bind_err = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            GatewayError::ClientPortInUse {
                host: host.to_string(),
                port,
            }
        } else {
            GatewayError::ClientBind {
                addr: addr_text.clone(),
                source,
            }
        }
    };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(bind_err)?;
    socket.set_reuseaddr(true).map_err(bind_err)?;
    socket.bind(addr).map_err(bind_err)?;
    socket.listen(BACKLOG).map_err(bind_err)
}

/// Accepts sockets until shutdown, each served by a tracked task.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                tracker.spawn(connection::serve(
                    stream,
                    peer,
                    shared.clone(),
                    shutdown.clone(),
                ));
            }
            Err(e) => {
                // Typically EMFILE: back off instead of spinning; existing
                // clients keep being served.
                warn!("Accept failed: {e}; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
