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
//! - `SNDHWM`/`RCVHWM`: bounded queues; a full one is reported, not grown.
//! - `LINGER` 0: shutdown never waits on a dead peer.
//! - ZMTP heartbeats: a silently dead TCP peer is noticed by libzmq too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
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
    /// Capacity of the queue between tokio and the send thread.
    pub send_queue: usize,
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
            send_queue: 65_536,
            recv_queue: 65_536,
            heartbeat: Duration::from_secs(1),
        }
    }
}

enum Command {
    Connect(NodeId, String),
    Disconnect(NodeId),
    Rename(NodeId, NodeId),
    Send(NodeId, Bytes),
    Stop,
}

/// A libzmq-backed [`Link`]. Dropping it (or [`ZmqLink::shutdown`]) stops
/// both threads.
pub struct ZmqLink {
    /// The send thread's queue; bounded so a stalled peer cannot grow memory.
    commands: SyncSender<Command>,
    /// Where peers reach us.
    endpoint: String,
    /// Tells the receive thread to stop at its next poll timeout.
    stop: Arc<AtomicBool>,
    /// Both threads, joined on shutdown.
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl ZmqLink {
    /// Binds the inbound socket and starts the link's threads. Events go to
    /// the returned receiver.
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
        let (cmd_tx, cmd_rx) = sync_channel(config.send_queue);
        let stop = Arc::new(AtomicBool::new(false));

        let recv_stop = stop.clone();
        let recv_events = event_tx.clone();
        let recv = std::thread::Builder::new()
            .name(format!("zmq-recv-{}", config.role))
            .spawn(move || receive_loop(router, recv_events, recv_stop))
            .map_err(|e| LinkError::Zmq(zmq::Error::from_raw(e.raw_os_error().unwrap_or(0))))?;
        let send = std::thread::Builder::new()
            .name(format!("zmq-send-{}", config.role))
            .spawn(move || send_loop(ctx, config, cmd_rx, event_tx))
            .map_err(|e| LinkError::Zmq(zmq::Error::from_raw(e.raw_os_error().unwrap_or(0))))?;

        Ok((
            Self {
                commands: cmd_tx,
                endpoint,
                stop,
                threads: Mutex::new(vec![recv, send]),
            },
            event_rx,
        ))
    }

    /// Stops both threads and waits for them (bounded by the 100 ms receive
    /// poll). Safe to call more than once.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
        // Blocking send is fine: the send thread drains fast and Stop is last.
        let _ = self.commands.send(Command::Stop);
        let threads = std::mem::take(&mut *self.threads.lock().expect("link threads lock"));
        for t in threads {
            let _ = t.join();
        }
    }

    fn enqueue(&self, peer: NodeId, cmd: Command) -> Result<(), LinkError> {
        self.commands.try_send(cmd).map_err(|e| match e {
            TrySendError::Full(_) => LinkError::QueueFull(peer),
            TrySendError::Disconnected(_) => LinkError::Closed,
        })
    }
}

impl Drop for ZmqLink {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Link for ZmqLink {
    fn connect(&self, peer: NodeId, endpoint: &str) -> Result<(), LinkError> {
        // Control messages must not be lost to a momentarily full queue.
        self.commands
            .send(Command::Connect(peer, endpoint.to_string()))
            .map_err(|_| LinkError::Closed)
    }

    fn rename(&self, from: NodeId, to: NodeId) -> Result<(), LinkError> {
        self.commands
            .send(Command::Rename(from, to))
            .map_err(|_| LinkError::Closed)
    }

    fn disconnect(&self, peer: NodeId) -> Result<(), LinkError> {
        self.commands
            .send(Command::Disconnect(peer))
            .map_err(|_| LinkError::Closed)
    }

    fn send(&self, peer: NodeId, payload: Bytes) -> Result<(), LinkError> {
        self.enqueue(peer, Command::Send(peer, payload))
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
        let mut frames = Vec::with_capacity(1);
        while router.get_rcvmore().unwrap_or(false) {
            match router.recv_msg(0) {
                Ok(m) => frames.push(m),
                Err(_) => break,
            }
        }
        let (Some(from), Some(body)) = (node_of(&identity), frames.pop()) else {
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

fn send_loop(
    ctx: zmq::Context,
    config: LinkConfig,
    commands: Receiver<Command>,
    events: mpsc::Sender<LinkEvent>,
) {
    let identity = format!("{}:{}", config.role, config.node_id);
    let mut peers: HashMap<NodeId, zmq::Socket> = HashMap::new();
    while let Ok(cmd) = commands.recv() {
        match cmd {
            Command::Stop => break,
            Command::Connect(peer, endpoint) => {
                peers.remove(&peer);
                match open_dealer(&ctx, &config, &identity, &endpoint) {
                    Ok(s) => {
                        debug!(peer, %endpoint, "link connecting");
                        peers.insert(peer, s);
                    }
                    Err(e) => warn!(peer, %endpoint, error = %e, "cannot connect to peer"),
                }
            }
            Command::Disconnect(peer) => {
                peers.remove(&peer);
            }
            Command::Rename(from, to) => {
                if let Some(sock) = peers.remove(&from) {
                    peers.insert(to, sock);
                }
            }
            Command::Send(peer, payload) => {
                let sent = match peers.get(&peer) {
                    Some(sock) => sock.send(&payload[..], zmq::DONTWAIT).is_ok(),
                    None => false,
                };
                if !sent {
                    // try_send: never block the send thread on a slow owner.
                    let _ = events.try_send(LinkEvent::SendFailed { to: peer, payload });
                }
            }
        }
    }
}

fn open_dealer(
    ctx: &zmq::Context,
    config: &LinkConfig,
    identity: &str,
    endpoint: &str,
) -> Result<zmq::Socket, zmq::Error> {
    let s = ctx.socket(zmq::DEALER)?;
    s.set_identity(identity.as_bytes())?;
    s.set_immediate(true)?;
    s.set_sndhwm(config.hwm)?;
    s.set_linger(0)?;
    s.set_reconnect_ivl(50)?;
    s.set_reconnect_ivl_max(1000)?;
    let hb = config.heartbeat.as_millis() as i32;
    s.set_heartbeat_ivl(hb)?;
    s.set_heartbeat_timeout(3 * hb)?;
    s.connect(endpoint)?;
    Ok(s)
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
        // IMMEDIATE drops sends until the pipe is up: retry until one lands.
        let got = loop {
            a.send(2, Bytes::from_static(b"ping")).unwrap();
            match tokio::time::timeout(Duration::from_millis(50), b_rx.recv()).await {
                Ok(Some(LinkEvent::Message { from, payload })) => break (from, payload),
                Ok(Some(LinkEvent::SendFailed { .. })) | Err(_) => continue,
                Ok(None) => panic!("link closed"),
            }
        };
        assert_eq!(got, (1, Bytes::from_static(b"ping")));
        let reply = loop {
            b.send(1, Bytes::from_static(b"pong")).unwrap();
            match tokio::time::timeout(Duration::from_millis(50), a_rx.recv()).await {
                Ok(Some(LinkEvent::Message { from, payload })) => break (from, payload),
                Ok(Some(_)) | Err(_) => continue,
                Ok(None) => panic!("link closed"),
            }
        };
        assert_eq!(reply, (2, Bytes::from_static(b"pong")));
    }

    #[tokio::test]
    async fn send_to_unknown_peer_is_reported() {
        let (a, mut rx) = ZmqLink::bind(LinkConfig::new("test", 1, "127.0.0.1", 0)).unwrap();
        a.send(9, Bytes::from_static(b"x")).unwrap();
        match rx.recv().await {
            Some(LinkEvent::SendFailed { to: 9, payload }) => assert_eq!(&payload[..], b"x"),
            other => panic!("expected SendFailed, got {other:?}"),
        }
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
