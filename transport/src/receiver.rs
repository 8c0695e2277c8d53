//! The inbound side of a link: the ROUTER, read on tokio through its
//! `ZMQ_FD`, by the one task that owns the [`LinkReceiver`].
//!
//! libzmq's rules for that descriptor, and how this follows them:
//! - The FD does not mean "a message is there"; it means "look at
//!   `ZMQ_EVENTS`". It is edge-triggered: it fires when libzmq's command
//!   mailbox goes from empty to not empty, and any call on the socket that
//!   processes commands (a `recv`, `ZMQ_EVENTS`) empties the mailbox, so
//!   messages can be waiting while the FD stays silent.
//! - So the receiver always *drains first*: `recv` with `DONTWAIT` until
//!   `EAGAIN` (or until the per-wake bound; the next call drains again
//!   before it waits), and only waits on the FD once the socket said
//!   `EAGAIN`, which libzmq answers only after processing every command.
//!   That is also the check right after registering the FD: anything that
//!   arrived before is read without waiting for an edge that may never
//!   come.
//! - On a wake-up it reads `ZMQ_EVENTS`: `POLLIN` means drain; anything
//!   else means the wake-up was for other commands, and the readiness is
//!   cleared (tokio keeps it if a newer edge came meanwhile, so none is
//!   lost).
//! - The ROUTER is only ever read: replies leave on the link's DEALERs,
//!   which are other sockets, so no send on this socket can swallow an
//!   edge behind the receiver's back.
//!
//! Why one task owns it: a `zmq::Socket` may move between threads but not
//! be used from two at once (it is `Send`, not `Sync`). The receiver is
//! `Send` and every method takes `&mut self`, so the compiler keeps it
//! with one owner, and no lock or thread hop sits on the receive path.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::unix::io::{AsRawFd, RawFd};

use bytes::Bytes;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{mpsc, watch};
use tracing::warn;

use crate::batch;
use crate::{LinkEvent, NodeId};

/// Routing ids remembered at most; a flood of made-up ids clears the
/// memory rather than growing it.
const MAX_KNOWN_SENDERS: usize = 4096;

/// The ROUTER's `ZMQ_FD`, for tokio's reactor. Only the number: the
/// socket owns the descriptor.
struct ZmqFd(RawFd);

impl AsRawFd for ZmqFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Why [`LinkReceiver::wait`] returned.
enum Wake {
    /// Look at the socket: a message may be there.
    Look,
    /// An outbound pipe lost its connection to this peer.
    Lost(NodeId),
    /// The link shut down.
    Stopped,
}

/// A received message kept whole, so its payloads can be handed out as
/// slices of it.
struct Received(zmq::Message);

impl AsRef<[u8]> for Received {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// What a link receives, for the one task that reads it. Returned by
/// [`crate::ZmqLink::bind`]; dropping it closes the inbound socket. It
/// waits with the reactor of the runtime it is polled on, and may move to
/// another runtime between calls.
pub struct LinkReceiver {
    /// The ROUTER's FD, registered with the current runtime's reactor on
    /// first use (so binding works outside a runtime). Declared before
    /// `router`: it must leave the reactor before libzmq closes the fd.
    fd: Option<AsyncFd<ZmqFd>>,
    /// The ROUTER.
    router: zmq::Socket,
    /// Turns true (or closes) when the link shuts down.
    stop: watch::Receiver<bool>,
    /// Outbound pipes that lost their connection, reported by their
    /// monitors, handed out as [`LinkEvent::PeerDisconnected`] among the
    /// messages: the owner learns of a dead peer without polling.
    disconnected: mpsc::Receiver<NodeId>,
    /// Most ZeroMQ messages taken off the socket per call; the rest wait in
    /// libzmq (bounded by `RCVHWM`) for the next call.
    per_wake: usize,
    /// Node id and shared routing id per sender, so a message costs no
    /// parse and no allocation for its sender.
    senders: HashMap<Bytes, NodeId>,
    /// Events taken off the socket but not handed out yet (by
    /// [`LinkReceiver::recv`]).
    buffered: VecDeque<LinkEvent>,
    /// ZeroMQ messages received (each a batch), for tests and benchmarks.
    messages: u64,
}

impl LinkReceiver {
    pub(crate) fn new(
        router: zmq::Socket,
        stop: watch::Receiver<bool>,
        disconnected: mpsc::Receiver<NodeId>,
        per_wake: usize,
    ) -> Self {
        Self {
            fd: None,
            router,
            stop,
            disconnected,
            per_wake: per_wake.max(1),
            senders: HashMap::new(),
            buffered: VecDeque::new(),
            messages: 0,
        }
    }

    /// Waits until at least one message is there, then appends every
    /// payload of up to `recv_queue` ZeroMQ messages to `out` (in order,
    /// each batch split into its payloads) and returns how many it
    /// appended; 0 means the link is closed. Cancel safe: what it takes
    /// off the socket is in `out` when it returns, and nothing is taken
    /// before its last await.
    pub async fn recv_many(&mut self, out: &mut Vec<LinkEvent>) -> usize {
        if !self.buffered.is_empty() {
            let n = self.buffered.len();
            out.extend(self.buffered.drain(..));
            return n;
        }
        self.fill(out).await
    }

    /// The next event, or `None` once the link is closed. Cancel safe.
    /// Takes a whole wake-up's worth off the socket and hands it out one
    /// by one; prefer [`LinkReceiver::recv_many`] to handle them together.
    pub async fn recv(&mut self) -> Option<LinkEvent> {
        if self.buffered.is_empty() {
            let mut buffered = std::mem::take(&mut self.buffered);
            let n = self.fill(&mut buffered).await;
            self.buffered = buffered;
            if n == 0 {
                return None;
            }
        }
        self.buffered.pop_front()
    }

    /// ZeroMQ messages received so far (each one batch of payloads).
    pub fn messages_received(&self) -> u64 {
        self.messages
    }

    /// Drains the socket into `out`, waiting on the FD while it is empty.
    async fn fill(&mut self, out: &mut impl Extend<LinkEvent>) -> usize {
        loop {
            // A busy socket never makes this wait: give the runtime its
            // turn now and then all the same.
            tokio::task::coop::consume_budget().await;
            if *self.stop.borrow() {
                return 0;
            }
            let mut lost = 0;
            while let Ok(peer) = self.disconnected.try_recv() {
                out.extend(std::iter::once(LinkEvent::PeerDisconnected { peer }));
                lost += 1;
            }
            match self.drain(out) {
                Ok(n) if n + lost > 0 => return n + lost,
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %e, "zeromq receive failed; the link stops receiving");
                    return 0;
                }
            }
            match self.wait().await {
                Ok(Wake::Look) => {}
                Ok(Wake::Lost(peer)) => {
                    out.extend(std::iter::once(LinkEvent::PeerDisconnected { peer }));
                    return 1;
                }
                Ok(Wake::Stopped) => return 0,
                Err(e) => {
                    warn!(error = %e, "cannot wait on the zeromq socket; the link stops receiving");
                    return 0;
                }
            }
        }
    }

    /// Waits (after a drain ended in `EAGAIN`) until `ZMQ_EVENTS` shows a
    /// message ([`Wake::Look`], also when the FD had to be registered
    /// again: the caller drains first), a pipe reports a lost connection,
    /// or the link shuts down.
    async fn wait(&mut self) -> io::Result<Wake> {
        let fresh = self.fd.is_none();
        if fresh {
            self.register()?;
        }
        let fd = self.fd.as_ref().expect("registered above");
        loop {
            let ready = tokio::select! {
                biased;
                stopped = self.stop.wait_for(|s| *s) => {
                    let _ = stopped;
                    return Ok(Wake::Stopped);
                }
                // Cancel safe: a report is either returned here or left
                // in the channel. (Never `None`: the link holds a sender
                // while it lives, and its end stops us first.)
                Some(peer) = self.disconnected.recv() => return Ok(Wake::Lost(peer)),
                ready = fd.readable() => ready,
            };
            let mut guard = match ready {
                Ok(guard) => guard,
                // Registered with a runtime that has since shut down (the
                // receiver moved to another one): register with this one,
                // after a look at the socket.
                Err(_) if !fresh => {
                    self.fd = None;
                    return Ok(Wake::Look);
                }
                Err(e) => return Err(e),
            };
            let events = self.router.get_events().map_err(io::Error::other)?;
            if events.contains(zmq::POLLIN) {
                guard.retain_ready();
                return Ok(Wake::Look);
            }
            // Commands only (a peer came or went): nothing to read.
            guard.clear_ready();
        }
    }

    /// Registers the ROUTER's FD with the current runtime's reactor.
    /// Called right after a drain that found the socket empty: a message
    /// that came in between made the mailbox non-empty, so the FD is
    /// readable and the reactor reports it at once.
    fn register(&mut self) -> io::Result<()> {
        let fd = ZmqFd(self.router.get_fd().map_err(io::Error::other)?);
        // tokio 1.54 deprecates this safe constructor for the `unsafe`
        // `register_with_interest`, whose contract is that the fd stays
        // open, the same file, for the `AsyncFd`'s whole life; the
        // workspace forbids `unsafe`, so the contract is kept here by
        // construction instead: the fd is the ROUTER's mailbox, which
        // libzmq closes only when the socket closes, and `self.fd` is
        // dropped before `self.router` (field order), never moved out.
        #[allow(deprecated)]
        let registered = AsyncFd::with_interest(fd, Interest::READABLE)?;
        self.fd = Some(registered);
        Ok(())
    }

    /// Takes up to `per_wake` messages off the socket without blocking,
    /// splits each into events appended to `out`; returns the number of
    /// events.
    fn drain(&mut self, out: &mut impl Extend<LinkEvent>) -> Result<usize, zmq::Error> {
        let mut events = 0;
        for _ in 0..self.per_wake {
            let Some((identity, body)) = self.recv_one()? else {
                break;
            };
            self.messages += 1;
            let Some((from, routing_id)) = self.sender(&identity) else {
                warn!(
                    identity = %String::from_utf8_lossy(&identity),
                    "dropped a message from a peer with an unknown routing id"
                );
                continue;
            };
            for payload in batch::split(Bytes::from_owner(Received(body))) {
                match payload {
                    Ok(payload) => {
                        out.extend(std::iter::once(LinkEvent::Message {
                            from,
                            routing_id: routing_id.clone(),
                            payload,
                        }));
                        events += 1;
                    }
                    Err(e) => {
                        warn!(from, error = %e, "dropped the rest of a malformed batch");
                    }
                }
            }
        }
        Ok(events)
    }

    /// One `[routing id][body]` message, or `None` on `EAGAIN`.
    fn recv_one(&mut self) -> Result<Option<(zmq::Message, zmq::Message)>, zmq::Error> {
        let identity = loop {
            match self.router.recv_msg(zmq::DONTWAIT) {
                Ok(m) => break m,
                Err(zmq::Error::EAGAIN) => return Ok(None),
                Err(zmq::Error::EINTR) => continue,
                Err(e) => return Err(e),
            }
        };
        // The rest of a multipart message is there once its first part is.
        // Our peers send one body frame; keep the last if more come.
        let mut body = zmq::Message::new();
        while self.router.get_rcvmore()? {
            self.router.recv(&mut body, zmq::DONTWAIT)?;
        }
        Ok(Some((identity, body)))
    }

    /// The node id and shared routing id of the sender `identity`, if it
    /// is one of ours.
    fn sender(&mut self, identity: &[u8]) -> Option<(NodeId, Bytes)> {
        if let Some((id, &node)) = self.senders.get_key_value(identity) {
            return Some((node, id.clone()));
        }
        let node = crate::zmq_link::node_of(identity)?;
        if self.senders.len() >= MAX_KNOWN_SENDERS {
            self.senders.clear();
        }
        let id = Bytes::copy_from_slice(identity);
        self.senders.insert(id.clone(), node);
        Some((node, id))
    }

    /// Whether a message is waiting, asked of libzmq the way a careless
    /// caller would: it processes (and so swallows) pending FD edges.
    #[cfg(test)]
    pub(crate) fn has_message_swallowing_the_edge(&self) -> bool {
        self.router
            .get_events()
            .is_ok_and(|e| e.contains(zmq::POLLIN))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use gamemesh_test_support::wait_for;

    use crate::{Link, LinkConfig, LinkEvent, ZmqLink};

    /// A wait that runs out is a lost wake-up: the test fails, never hangs.
    const WAIT: Duration = Duration::from_secs(10);

    fn payload(event: LinkEvent) -> Bytes {
        match event {
            LinkEvent::Message { payload, .. } => payload,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn messages_already_waiting_are_read_without_waiting_for_an_edge() {
        let (a, _a_rx) = ZmqLink::bind(LinkConfig::new("test", 1, "127.0.0.1", 0)).unwrap();
        let mut one_per_wake = LinkConfig::new("test", 2, "127.0.0.1", 0);
        one_per_wake.recv_queue = 1;
        let (b, mut b_rx) = ZmqLink::bind(one_per_wake).unwrap();
        a.connect(2, b.local_endpoint()).unwrap();
        wait_for("the pipe to connect", WAIT, || {
            a.send(2, Bytes::from_static(b"first")).is_ok()
        })
        .await;
        a.send(2, Bytes::from_static(b"second")).unwrap();
        a.send(2, Bytes::from_static(b"third")).unwrap();
        // Asking libzmq whether a message is there processes the socket's
        // mailbox, which resets its FD: whatever is queued now will never
        // make the FD fire. (The receiver has not even registered it yet:
        // it does so on its first wait.)
        wait_for("the messages to reach b", WAIT, || {
            b_rx.has_message_swallowing_the_edge()
        })
        .await;
        // One message per call: the first is read without an edge (the
        // check before waiting), the others after a call that took only
        // part of what was there (the drain before waiting, again).
        for want in ["first", "second", "third"] {
            let got = tokio::time::timeout(WAIT, b_rx.recv())
                .await
                .unwrap_or_else(|_| panic!("{want:?} was waiting and never read: a lost wake-up"))
                .expect("link open");
            assert_eq!(payload(got), want.as_bytes());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lockstep_round_trips_never_lose_a_wake_up() {
        // Each round trip needs the FD of each side to fire (or the
        // receiver to find the message without it): one lost wake-up and
        // the ping waits forever, which the timeout turns into a failure.
        let (a, mut a_rx) = ZmqLink::bind(LinkConfig::new("test", 1, "127.0.0.1", 0)).unwrap();
        let (b, mut b_rx) = ZmqLink::bind(LinkConfig::new("test", 2, "127.0.0.1", 0)).unwrap();
        a.connect(2, b.local_endpoint()).unwrap();
        b.connect(1, a.local_endpoint()).unwrap();
        let echo = tokio::spawn(async move {
            let mut events = Vec::new();
            while b_rx.recv_many(&mut events).await > 0 {
                let replies: Vec<Bytes> = events.drain(..).map(payload).collect();
                // Until b's pipe is up, a retries (see below).
                let _ = b.send_many(1, &replies);
            }
        });
        // Until both pipes are up, sends fail or replies go missing:
        // retry the first ping until its pong comes back.
        loop {
            let _ = a.send(2, Bytes::from_static(b"warm-up"));
            if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), a_rx.recv()).await
            {
                break;
            }
        }
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), a_rx.recv()).await {
        }
        for i in 0u32..2_000 {
            let ping = Bytes::copy_from_slice(&i.to_be_bytes());
            a.send(2, ping.clone()).unwrap();
            let pong = tokio::time::timeout(WAIT, a_rx.recv())
                .await
                .unwrap_or_else(|_| panic!("round trip {i} never came back: a lost wake-up"))
                .expect("link open");
            assert_eq!(payload(pong), ping);
        }
        a.shutdown();
        drop(a);
        echo.abort();
    }

    #[test]
    fn a_receiver_keeps_receiving_on_another_runtime() {
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        let (a, _a_rx) = ZmqLink::bind(LinkConfig::new("test", 1, "127.0.0.1", 0)).unwrap();
        let (b, mut b_rx) = ZmqLink::bind(LinkConfig::new("test", 2, "127.0.0.1", 0)).unwrap();
        a.connect(2, b.local_endpoint()).unwrap();
        let first = runtime();
        first.block_on(async {
            wait_for("the pipe to connect", WAIT, || {
                a.send(2, Bytes::from_static(b"one")).is_ok()
            })
            .await;
            let got = tokio::time::timeout(WAIT, b_rx.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(payload(got), "one".as_bytes());
            // Waits (and so registers its FD) on this runtime...
            assert!(tokio::time::timeout(Duration::from_millis(20), b_rx.recv())
                .await
                .is_err());
        });
        drop(first);
        // ...which is gone when the next message comes.
        runtime().block_on(async {
            // Nothing has come: it waits, on this runtime, rather than end.
            let waited = tokio::time::timeout(Duration::from_millis(20), b_rx.recv()).await;
            assert!(waited.is_err(), "the receiver ended: {waited:?}");
            a.send(2, Bytes::from_static(b"two")).unwrap();
            let got = tokio::time::timeout(WAIT, b_rx.recv())
                .await
                .expect("received on the second runtime")
                .expect("link open");
            assert_eq!(payload(got), "two".as_bytes());
        });
    }

    #[tokio::test]
    async fn a_batch_becomes_one_event_per_payload_sharing_one_routing_id() {
        let (a, _a_rx) = ZmqLink::bind(LinkConfig::new("test", 1, "127.0.0.1", 0)).unwrap();
        let (b, mut b_rx) = ZmqLink::bind(LinkConfig::new("test", 2, "127.0.0.1", 0)).unwrap();
        a.connect(2, b.local_endpoint()).unwrap();
        wait_for("the pipe to connect", WAIT, || {
            a.send(2, Bytes::new()).is_ok()
        })
        .await;
        let burst: Vec<Bytes> = (0u8..50)
            .map(|i| Bytes::from(vec![i; i as usize]))
            .collect();
        a.send_many(2, &burst).unwrap();
        let mut events = Vec::new();
        while events.len() < 1 + burst.len() {
            tokio::time::timeout(WAIT, b_rx.recv_many(&mut events))
                .await
                .expect("the burst arrives");
        }
        // The empty hello, then the burst: two messages.
        assert_eq!(b_rx.messages_received(), 2);
        let ids: std::collections::HashSet<_> = events
            .iter()
            .map(|e| match e {
                LinkEvent::Message { routing_id, .. } => routing_id.as_ptr(),
                other => panic!("expected a message, got {other:?}"),
            })
            .collect();
        assert_eq!(ids.len(), 1, "one routing id, shared, for every event");
        let got: Vec<Bytes> = events.into_iter().skip(1).map(payload).collect();
        assert_eq!(got, burst);
    }
}
