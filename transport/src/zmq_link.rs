//! [`Link`] over libzmq: one ROUTER bound for inbound traffic, one DEALER
//! connected per peer for outbound traffic.
//!
//! Socket options and why:
//! - ROUTER `ROUTER_HANDOVER`: a restarted peer reconnecting with the same
//!   routing id takes over its old pipe instead of being refused.
//! - DEALER routing id = `<role>:<node id>`, so the receiver knows who spoke.
//! - DEALER `IMMEDIATE`: queue only to a completed connection, so a message
//!   for a down peer fails now (and the client hears `UNAVAILABLE`) instead of
//!   waiting in a buffer for a peer that may never come back.
//! - `SNDHWM`/`RCVHWM`: bounded queues; a full one is an error, not growth.
//! - `LINGER` 0: shutdown never waits on a dead peer.
//! - ZMTP heartbeats: a silently dead TCP peer is noticed by libzmq too.
//!
//! Threads: the ROUTER lives on a receive thread (blocking `recv`, handing
//! messages to tokio through a bounded channel). The DEALERs are owned by
//! the link behind one mutex and sent on directly, with `DONTWAIT`, from
//! whatever thread calls [`Link::send`]: a libzmq socket may move between
//! threads as long as one thread uses it at a time, which the mutex
//! guarantees, and a non-blocking send never stalls the runtime. (A
//! dedicated send thread cost a thread wake-up per message each way; see
//! BENCHMARKS.md.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::{Link, LinkError, LinkEvent, NodeId};

/// Settings for one [`ZmqLink`].
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Our role, part of the routing id (`gateway`, `game-server`, `mesh`).
    pub role: &'static str,
    /// Our node id, the other part of the routing id.
    pub node_id: NodeId,
    /// Interface to bind, e.g. `127.0.0.1`.
    pub bind_host: String,
    /// Port to bind; 0 picks a free one (tests).
    pub port: u16,
    /// libzmq high-water mark (messages) per pipe, both directions.
    pub hwm: i32,
    /// Capacity of the queue between the receive thread and tokio.
    pub recv_queue: usize,
    /// ZMTP heartbeat interval.
    pub heartbeat: Duration,
}

impl LinkConfig {
    /// Defaults for a role and node id on `bind_host:port`.
    pub fn new(role: &'static str, node_id: NodeId, bind_host: &str, port: u16) -> Self {
        Self {
            role,
            node_id,
            bind_host: bind_host.to_string(),
            port,
            hwm: 100_000,
            recv_queue: 65_536,
            heartbeat: Duration::from_secs(1),
        }
    }
}

/// A libzmq-backed [`Link`]. Dropping it (or [`ZmqLink::shutdown`]) stops
/// the receive thread and closes every socket.
pub struct ZmqLink {
    /// Creates the DEALERs; kept so sockets outlive no context.
    ctx: zmq::Context,
    /// Options for new DEALERs.
    config: LinkConfig,
    /// Our routing id, `<role>:<node id>`.
    identity: String,
    /// One DEALER per peer. The mutex is what makes the sockets usable from
    /// any thread, one at a time.
    peers: Mutex<HashMap<NodeId, zmq::Socket>>,
    /// Where peers reach us.
    endpoint: String,
    /// Tells the receive thread to stop at its next poll timeout.
    stop: Arc<AtomicBool>,
    /// The receive thread, joined on shutdown.
    receiver: Mutex<Option<JoinHandle<()>>>,
}

impl ZmqLink {
    /// Binds the inbound socket and starts the receive thread. Messages go
    /// to the returned receiver.
    pub fn bind(config: LinkConfig) -> Result<(Self, mpsc::Receiver<LinkEvent>), LinkError> {
        let ctx = zmq::Context::new();
        let router = ctx.socket(zmq::ROUTER)?;
        router.set_router_handover(true)?;
        router.set_rcvhwm(config.hwm)?;
        router.set_linger(0)?;
        router.set_rcvtimeo(100)?;
        router.set_heartbeat_ivl(config.heartbeat.as_millis() as i32)?;
        router.set_heartbeat_timeout(3 * config.heartbeat.as_millis() as i32)?;
        let port = if config.port == 0 {
            "*".to_string()
        } else {
            config.port.to_string()
        };
        let requested = format!("tcp://{}:{}", config.bind_host, port);
        router.bind(&requested).map_err(|source| LinkError::Bind {
            endpoint: requested.clone(),
            source,
        })?;
        let endpoint = router
            .get_last_endpoint()?
            .unwrap_or_else(|_| requested.clone());

        let (event_tx, event_rx) = mpsc::channel(config.recv_queue);
        let stop = Arc::new(AtomicBool::new(false));
        let recv_stop = stop.clone();
        let receiver = std::thread::Builder::new()
            .name(format!("zmq-recv-{}", config.role))
            .spawn(move || receive_loop(router, event_tx, recv_stop))
            .map_err(|e| LinkError::Zmq(zmq::Error::from_raw(e.raw_os_error().unwrap_or(0))))?;

        Ok((
            Self {
                ctx,
                identity: format!("{}:{}", config.role, config.node_id),
                config,
                peers: Mutex::new(HashMap::new()),
                endpoint,
                stop,
                receiver: Mutex::new(Some(receiver)),
            },
            event_rx,
        ))
    }

    /// Stops the receive thread (bounded by its 100 ms poll) and closes the
    /// outbound sockets. Safe to call more than once.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.peers().clear();
        let receiver = self
            .receiver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(t) = receiver {
            let _ = t.join();
        }
    }

    fn peers(&self) -> MutexGuard<'_, HashMap<NodeId, zmq::Socket>> {
        // Every critical section is one map operation or one non-blocking
        // send: a panic cannot leave the map half changed.
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open_dealer(&self, endpoint: &str) -> Result<zmq::Socket, zmq::Error> {
        let s = self.ctx.socket(zmq::DEALER)?;
        s.set_identity(self.identity.as_bytes())?;
        s.set_immediate(true)?;
        s.set_sndhwm(self.config.hwm)?;
        s.set_linger(0)?;
        s.set_reconnect_ivl(50)?;
        s.set_reconnect_ivl_max(1000)?;
        let hb = self.config.heartbeat.as_millis() as i32;
        s.set_heartbeat_ivl(hb)?;
        s.set_heartbeat_timeout(3 * hb)?;
        s.connect(endpoint)?;
        Ok(s)
    }
}

impl Drop for ZmqLink {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Link for ZmqLink {
    fn connect(&self, peer: NodeId, endpoint: &str) -> Result<(), LinkError> {
        let socket = self.open_dealer(endpoint)?;
        debug!(peer, %endpoint, "link connecting");
        self.peers().insert(peer, socket);
        Ok(())
    }

    fn rename(&self, from: NodeId, to: NodeId) -> Result<(), LinkError> {
        let mut peers = self.peers();
        if let Some(socket) = peers.remove(&from) {
            peers.insert(to, socket);
        }
        Ok(())
    }

    fn disconnect(&self, peer: NodeId) -> Result<(), LinkError> {
        self.peers().remove(&peer);
        Ok(())
    }

    fn send(&self, peer: NodeId, payload: Bytes) -> Result<(), LinkError> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(LinkError::Closed);
        }
        let peers = self.peers();
        let socket = peers.get(&peer).ok_or(LinkError::Unreachable(peer))?;
        socket
            .send(&payload[..], zmq::DONTWAIT)
            .map_err(|e| match e {
                // IMMEDIATE: no connected pipe; or the high-water mark is hit.
                zmq::Error::EAGAIN => LinkError::Unreachable(peer),
                other => LinkError::Zmq(other),
            })
    }

    fn local_endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// Parses the node id out of a routing id `<role>:<id>`.
fn node_of(identity: &[u8]) -> Option<NodeId> {
    let s = std::str::from_utf8(identity).ok()?;
    s.rsplit_once(':')?.1.parse().ok()
}

fn receive_loop(router: zmq::Socket, events: mpsc::Sender<LinkEvent>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let identity = match router.recv_msg(0) {
            Ok(m) => m,
            Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => continue,
            Err(e) => {
                warn!(error = %e, "zeromq receive failed; link receive thread stops");
                return;
            }
        };
        let mut body = None;
        while router.get_rcvmore().unwrap_or(false) {
            match router.recv_msg(0) {
                // Our peers send one frame; keep the last if more come.
                Ok(m) => body = Some(m),
                Err(_) => break,
            }
        }
        let (Some(from), Some(body)) = (node_of(&identity), body) else {
            warn!(
                identity = %String::from_utf8_lossy(&identity),
                "dropped a message from a peer with an unknown routing id"
            );
            continue;
        };
        let payload = Bytes::copy_from_slice(&body);
        if events
            .blocking_send(LinkEvent::Message { from, payload })
            .is_err()
        {
            return; // owner gone
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_links_talk_both_ways() {
        let (a, mut a_rx) = ZmqLink::bind(LinkConfig::new("test", 1, "127.0.0.1", 0)).unwrap();
        let (b, mut b_rx) = ZmqLink::bind(LinkConfig::new("test", 2, "127.0.0.1", 0)).unwrap();
        a.connect(2, b.local_endpoint()).unwrap();
        b.connect(1, a.local_endpoint()).unwrap();
        // IMMEDIATE refuses sends until the pipe is up: retry until one lands.
        let got = loop {
            let _ = a.send(2, Bytes::from_static(b"ping"));
            match tokio::time::timeout(Duration::from_millis(50), b_rx.recv()).await {
                Ok(Some(LinkEvent::Message { from, payload })) => break (from, payload),
                Err(_) => continue,
                Ok(None) => panic!("link closed"),
            }
        };
        assert_eq!(got, (1, Bytes::from_static(b"ping")));
        let reply = loop {
            let _ = b.send(1, Bytes::from_static(b"pong"));
            match tokio::time::timeout(Duration::from_millis(50), a_rx.recv()).await {
                Ok(Some(LinkEvent::Message { from, payload })) => break (from, payload),
                Err(_) => continue,
                Ok(None) => panic!("link closed"),
            }
        };
        assert_eq!(reply, (2, Bytes::from_static(b"pong")));
    }

    #[test]
    fn sends_to_an_unknown_or_unconnected_peer_fail_at_once() {
        let (a, _rx) = ZmqLink::bind(LinkConfig::new("test", 1, "127.0.0.1", 0)).unwrap();
        let err = a.send(9, Bytes::from_static(b"x")).unwrap_err();
        assert!(matches!(err, LinkError::Unreachable(9)), "{err}");
        // A peer dialled where nothing listens: IMMEDIATE refuses the send.
        a.connect(8, "tcp://127.0.0.1:1").unwrap();
        let err = a.send(8, Bytes::from_static(b"x")).unwrap_err();
        assert!(matches!(err, LinkError::Unreachable(8)), "{err}");
    }

    #[test]
    fn binding_a_taken_port_says_so() {
        let (a, _rx) = ZmqLink::bind(LinkConfig::new("test", 1, "127.0.0.1", 0)).unwrap();
        let port: u16 = a
            .local_endpoint()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let err = ZmqLink::bind(LinkConfig::new("test", 2, "127.0.0.1", port))
            .err()
            .expect("second bind fails");
        assert!(err.is_addr_in_use(), "{err}");
    }

    #[test]
    fn routing_ids_parse() {
        assert_eq!(node_of(b"gateway:7"), Some(7));
        assert_eq!(node_of(b"garbage"), None);
    }
}
