//! [`Link`] over libzmq: one ROUTER bound for inbound traffic, one DEALER
//! connected per peer for outbound traffic.
//!
//! Socket options and why:
//! - DEALER routing id = `<role>:<node id>:<random token>`, new for every
//!   DEALER, so the receiver knows who spoke, and no two pipes (a seed and a
//!   learned pipe to the same node, or a restarted process) ever share one.
//! - ROUTER `ROUTER_HANDOVER` off (libzmq's default, set explicitly): a
//!   second connection presenting a routing id that is already connected is
//!   ignored, so nobody can take over an authenticated pipe by copying its
//!   routing id. A restarted peer needs no hand-over: its DEALERs have new
//!   routing ids.
//! - DEALER `IMMEDIATE`: queue only to a completed connection, so a message
//!   for a down peer fails now (and the client hears `UNAVAILABLE`) instead of
//!   waiting in a buffer for a peer that may never come back.
//! - `SNDHWM`/`RCVHWM` on every socket ([`LinkConfig::sndhwm`],
//!   [`LinkConfig::rcvhwm`]): bounded queues. A send into a full pipe fails
//!   with [`LinkError::Full`] and is counted in
//!   `gamemesh_link_hwm_events_total{link}`: never growth, never a silent
//!   drop. A socket monitor on each DEALER tells a full pipe from one that
//!   is not connected (libzmq answers both with `EAGAIN`).
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::{Link, LinkError, LinkEvent, NodeId};

/// Default outbound high-water mark, in messages per pipe. One pipe carries
/// every frame of a gateway's clients to one game server (or one game
/// server's replies to one gateway): 10,000 is about 36 ms at the peak rate
/// measured through a gateway (276k msgs/s pipelined, BENCHMARKS.md), far
/// more than a healthy peer ever lets pile up, while it bounds the memory a
/// stalled peer costs us to 10,000 x the largest frame (64 KiB by default:
/// 640 MiB at worst, a few MiB for typical frames). libzmq's own default is
/// 1,000, which a burst of logins on a busy gateway can reach without
/// anything being wrong.
pub const DEFAULT_SNDHWM: i32 = 10_000;

/// Default inbound high-water mark, in messages per pipe: the same bound on
/// the receiving side, so a peer that floods us is held in its own queue.
pub const DEFAULT_RCVHWM: i32 = 10_000;

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
    /// Messages one outbound pipe (DEALER) holds before a send fails with
    /// [`LinkError::Full`]. Default [`DEFAULT_SNDHWM`].
    pub sndhwm: i32,
    /// Messages one inbound pipe (ROUTER) holds before libzmq stops reading
    /// that peer's TCP stream (the peer's own queue then fills). Default
    /// [`DEFAULT_RCVHWM`].
    pub rcvhwm: i32,
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
            sndhwm: DEFAULT_SNDHWM,
            rcvhwm: DEFAULT_RCVHWM,
            recv_queue: 65_536,
            heartbeat: Duration::from_secs(1),
        }
    }
}

/// One outbound pipe: the DEALER and what tells us whether it is connected.
struct Pipe {
    /// The DEALER.
    socket: zmq::Socket,
    /// This DEALER's routing id, `<role>:<node id>:<token>`; hellos sign it.
    routing_id: Vec<u8>,
    /// PAIR end of the DEALER's socket monitor (handshake succeeded /
    /// disconnected), drained without blocking, so a failed send can say
    /// whether the pipe was full or not connected at all.
    monitor: zmq::Socket,
    /// Whether the DEALER has a connected peer, as of the last drain.
    connected: bool,
    /// Sends since the monitor was last drained (drained every
    /// [`MONITOR_DRAIN_EVERY`] sends, so its queue never fills).
    since_drain: u32,
}

/// How many sends may pass between two drains of a pipe's monitor. A
/// monitor whose queue filled up would block libzmq's I/O thread; events
/// come only on connects and disconnects, so this is far more often than
/// needed, and cheap.
const MONITOR_DRAIN_EVERY: u32 = 64;

impl Pipe {
    /// Reads every pending monitor event and updates `connected`.
    fn drain_monitor(&mut self) {
        self.since_drain = 0;
        while let Ok(first) = self.monitor.recv_msg(zmq::DONTWAIT) {
            // An event is two frames: [u16 event, u32 value] and the
            // endpoint; only the event number matters here.
            if first.len() >= 2 {
                let event = u16::from_ne_bytes([first[0], first[1]]);
                if event == zmq::SocketEvent::HANDSHAKE_SUCCEEDED as u16 {
                    self.connected = true;
                } else if event == zmq::SocketEvent::DISCONNECTED as u16 {
                    self.connected = false;
                }
            }
            while self.monitor.get_rcvmore().unwrap_or(false) {
                if self.monitor.recv_msg(zmq::DONTWAIT).is_err() {
                    break;
                }
            }
        }
    }
}

/// Numbers the inproc endpoints of socket monitors (unique per process).
static MONITORS: AtomicU64 = AtomicU64::new(0);

/// True when the libzmq linked in supports CURVE encryption and
/// authentication. The vendored build (`zmq-sys` without libsodium) does
/// not; SECURITY.md says what protects the internal ports instead.
pub fn curve_available() -> bool {
    zmq::has("curve").unwrap_or(false)
}

/// A libzmq-backed [`Link`]. Dropping it (or [`ZmqLink::shutdown`]) stops
/// the receive thread and closes every socket.
pub struct ZmqLink {
    /// Creates the DEALERs; kept so sockets outlive no context.
    ctx: zmq::Context,
    /// Options for new DEALERs.
    config: LinkConfig,
    /// `<role>:<node id>`, the part of our routing ids peers parse.
    identity: String,
    /// One DEALER per peer. The mutex is what makes the sockets usable from
    /// any thread, one at a time.
    peers: Mutex<HashMap<NodeId, Pipe>>,
    /// Sends refused at the high-water mark, for tests and logs (the metric
    /// is `gamemesh_link_hwm_events_total`).
    hwm_events: AtomicU64,
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
        // Off: see the module docs (no takeover of a connected routing id).
        router.set_router_handover(false)?;
        router.set_rcvhwm(config.rcvhwm)?;
        router.set_sndhwm(config.sndhwm)?;
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
                hwm_events: AtomicU64::new(0),
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

    /// How many sends this link refused at the high-water mark.
    pub fn hwm_events(&self) -> u64 {
        self.hwm_events.load(Ordering::Relaxed)
    }

    fn peers(&self) -> MutexGuard<'_, HashMap<NodeId, Pipe>> {
        // Every critical section is one map operation or one non-blocking
        // send: a panic cannot leave the map half changed.
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open_dealer(&self, endpoint: &str) -> Result<Pipe, zmq::Error> {
        let s = self.ctx.socket(zmq::DEALER)?;
        let routing_id = format!("{}:{:016x}", self.identity, rand::random::<u64>()).into_bytes();
        s.set_identity(&routing_id)?;
        s.set_immediate(true)?;
        s.set_sndhwm(self.config.sndhwm)?;
        s.set_rcvhwm(self.config.rcvhwm)?;
        s.set_linger(0)?;
        s.set_reconnect_ivl(50)?;
        s.set_reconnect_ivl_max(1000)?;
        let hb = self.config.heartbeat.as_millis() as i32;
        s.set_heartbeat_ivl(hb)?;
        s.set_heartbeat_timeout(3 * hb)?;
        let monitor_endpoint = format!(
            "inproc://gamemesh-monitor-{}",
            MONITORS.fetch_add(1, Ordering::Relaxed)
        );
        s.monitor(
            &monitor_endpoint,
            zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32 | zmq::SocketEvent::DISCONNECTED as i32,
        )?;
        let monitor = self.ctx.socket(zmq::PAIR)?;
        monitor.set_linger(0)?;
        monitor.connect(&monitor_endpoint)?;
        s.connect(endpoint)?;
        Ok(Pipe {
            socket: s,
            routing_id,
            monitor,
            connected: false,
            since_drain: 0,
        })
    }

    /// Sends `payload` on `peer`'s pipe. A refusal at the high-water mark
    /// is counted here, once, whoever the caller is.
    fn send_on(&self, peer: NodeId, build: &dyn Fn(&[u8]) -> Bytes) -> Result<(), LinkError> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(LinkError::Closed);
        }
        let mut peers = self.peers();
        let pipe = peers.get_mut(&peer).ok_or(LinkError::Unreachable(peer))?;
        pipe.since_drain += 1;
        if pipe.since_drain >= MONITOR_DRAIN_EVERY {
            pipe.drain_monitor();
        }
        let payload = build(&pipe.routing_id);
        match pipe.socket.send(&payload[..], zmq::DONTWAIT) {
            Ok(()) => Ok(()),
            Err(zmq::Error::EAGAIN) => {
                // IMMEDIATE: no connected pipe; or the high-water mark.
                pipe.drain_monitor();
                if pipe.connected {
                    self.hwm_events.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("gamemesh_link_hwm_events_total", "link" => self.config.role)
                        .increment(1);
                    Err(LinkError::Full(peer))
                } else {
                    Err(LinkError::Unreachable(peer))
                }
            }
            Err(other) => Err(LinkError::Zmq(other)),
        }
    }
}

impl Drop for ZmqLink {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Link for ZmqLink {
    fn connect(&self, peer: NodeId, endpoint: &str) -> Result<(), LinkError> {
        let pipe = self.open_dealer(endpoint)?;
        debug!(peer, %endpoint, "link connecting");
        self.peers().insert(peer, pipe);
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
        self.send_on(peer, &|_| payload.clone())
    }

    fn send_signed(&self, peer: NodeId, build: &dyn Fn(&[u8]) -> Bytes) -> Result<(), LinkError> {
        self.send_on(peer, build)
    }

    fn local_endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// Parses the node id out of a routing id `<role>:<id>:<token>`.
fn node_of(identity: &[u8]) -> Option<NodeId> {
    let s = std::str::from_utf8(identity).ok()?;
    let mut parts = s.split(':');
    let (_role, id, _token) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    id.parse().ok()
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
        let routing_id = Bytes::copy_from_slice(&identity);
        let mut event = LinkEvent::Message {
            from,
            routing_id,
            payload,
        };
        // A full queue means the owner is behind: wait for room (libzmq
        // holds the rest, up to RCVHWM, and then the peer's queue fills),
        // but keep an eye on `stop`, so a stalled owner that still holds
        // the receiver cannot keep `shutdown` from joining this thread.
        loop {
            match events.try_send(event) {
                Ok(()) => break,
                Err(mpsc::error::TrySendError::Closed(_)) => return, // owner gone
                Err(mpsc::error::TrySendError::Full(back)) => {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    event = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
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
                Ok(Some(LinkEvent::Message { from, payload, .. })) => break (from, payload),
                Err(_) => continue,
                Ok(None) => panic!("link closed"),
            }
        };
        assert_eq!(got, (1, Bytes::from_static(b"ping")));
        let reply = loop {
            let _ = b.send(1, Bytes::from_static(b"pong"));
            match tokio::time::timeout(Duration::from_millis(50), a_rx.recv()).await {
                Ok(Some(LinkEvent::Message { from, payload, .. })) => break (from, payload),
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

    /// Connects `a` to `b` and waits until a message gets through, so the
    /// pipe is known to be connected.
    async fn connected_pair(a: &ZmqLink, b: &ZmqLink, b_id: NodeId) {
        a.connect(b_id, b.local_endpoint()).unwrap();
        gamemesh_test_support::wait_for("the pipe to connect", Duration::from_secs(5), || {
            a.send(b_id, Bytes::from_static(b"hello")).is_ok()
        })
        .await;
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_makes_sends_fail_as_full_and_counted() {
        let mut small = LinkConfig::new("test", 1, "127.0.0.1", 0);
        small.sndhwm = 4;
        let (a, _a_rx) = ZmqLink::bind(small).unwrap();
        let mut stalled = LinkConfig::new("test", 2, "127.0.0.1", 0);
        stalled.rcvhwm = 4;
        stalled.recv_queue = 1;
        // `_b_rx` is never read: b's receive thread blocks on the full
        // channel, its ROUTER stops reading, and TCP backs up to `a`.
        let (b, _b_rx) = ZmqLink::bind(stalled).unwrap();
        connected_pair(&a, &b, 2).await;
        let big = Bytes::from(vec![7u8; 64 * 1024]);
        let mut sent = 0u64;
        let err = loop {
            match a.send(2, big.clone()) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            // Kernel buffers on loopback hold a few MiB at most.
            assert!(sent < 100_000, "the pipe never filled");
        };
        assert!(matches!(err, LinkError::Full(2)), "{err}");
        assert_eq!(err.kind(), "hwm");
        assert_eq!(a.hwm_events(), 1);
        // Still full on the next try, and counted again: each refusal is
        // one event.
        assert!(matches!(a.send(2, big).unwrap_err(), LinkError::Full(2)));
        assert_eq!(a.hwm_events(), 2);
        // Shutting down the stalled side does not wait for its owner to
        // read (the receive thread sees `stop` while its queue is full).
        b.shutdown();
    }

    #[tokio::test]
    async fn a_dead_peer_is_unreachable_not_full() {
        let (a, _a_rx) = ZmqLink::bind(LinkConfig::new("test", 1, "127.0.0.1", 0)).unwrap();
        let (b, _b_rx) = ZmqLink::bind(LinkConfig::new("test", 2, "127.0.0.1", 0)).unwrap();
        connected_pair(&a, &b, 2).await;
        b.shutdown();
        drop(b);
        gamemesh_test_support::wait_for(
            "sends to the closed peer to fail",
            Duration::from_secs(5),
            || {
                matches!(
                    a.send(2, Bytes::from_static(b"x")),
                    Err(LinkError::Unreachable(2))
                )
            },
        )
        .await;
        assert_eq!(a.hwm_events(), 0);
    }

    #[tokio::test]
    async fn every_pipe_has_its_own_routing_id() {
        let (a, _a_rx) = ZmqLink::bind(LinkConfig::new("test", 1, "127.0.0.1", 0)).unwrap();
        let (b, mut b_rx) = ZmqLink::bind(LinkConfig::new("test", 2, "127.0.0.1", 0)).unwrap();
        // Two pipes from a to b (as a seed and a learned pipe can be): both
        // deliver, under different routing ids of the same node.
        a.connect(2, b.local_endpoint()).unwrap();
        a.connect(3, b.local_endpoint()).unwrap();
        let mut seen = std::collections::HashSet::new();
        while seen.len() < 2 {
            let _ = a.send(2, Bytes::from_static(b"x"));
            let _ = a.send(3, Bytes::from_static(b"x"));
            if let Ok(Some(LinkEvent::Message {
                from, routing_id, ..
            })) = tokio::time::timeout(Duration::from_millis(50), b_rx.recv()).await
            {
                assert_eq!(from, 1);
                seen.insert(routing_id);
            }
        }
    }

    #[test]
    fn curve_support_is_reported() {
        // The vendored libzmq is built without libsodium: no CURVE. If this
        // starts failing, CURVE became available: SECURITY.md must change.
        assert!(!curve_available());
    }

    #[test]
    fn routing_ids_parse() {
        assert_eq!(node_of(b"gateway:7:00ff00ff00ff00ff"), Some(7));
        assert_eq!(node_of(b"gateway:7"), None);
        assert_eq!(node_of(b"gateway:7:a:b"), None);
        assert_eq!(node_of(b"garbage"), None);
    }
}
