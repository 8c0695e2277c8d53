//! One outbound pipe (a DEALER) and how concurrent senders share it:
//! whoever finds the socket free sends, and takes along everything other
//! senders queued meanwhile, as one batch.
//!
//! The protocol, per pipe:
//! - A sender takes the socket lock and becomes the *flusher*: it sends
//!   what it has, then the queue, again and again until the queue is
//!   empty, and only then lets go (`flushing` goes false with the queue
//!   empty, under the queue lock).
//! - A sender that finds a flusher at work (`flushing`) on a pipe whose
//!   last send went through (`open`) appends its payload to the queue and
//!   returns at once: the flusher will send it in its next round. This is
//!   the only way a payload waits, and it waits only for a send already in
//!   progress, never for a batch to fill or for a timer.
//! - A sender that cannot ride along (no flusher, the pipe refused its
//!   last send, or the queue is at the batch bound) waits for the socket
//!   like any mutex and flushes itself.
//!
//! Refusals stay with the caller whose payload was refused: a flusher's own
//! payloads are taken back out of a refused batch and reported to it
//! (`Full` or `Unreachable`). Payloads that rode along were already
//! accepted; if the high-water mark refuses their batch they are *held*
//! and go first on the next send (one batch at most: while held, no one
//! rides along and every new payload is refused as `Full`), and if the
//! peer is gone they are dropped, as libzmq drops what a disconnected
//! pipe still queues. So memory stays bounded by the high-water mark x
//! the batch bound, plus two batches.

use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{mpsc, Notify};
use tracing::debug;

use crate::batch::{record_len, Batch};
use crate::{LinkConfig, NodeId};

/// Numbers the inproc endpoints of socket monitors (unique per process).
static MONITORS: AtomicU64 = AtomicU64::new(0);

/// How many sends may pass between two drains of a pipe's monitor. A
/// monitor whose queue filled up would block libzmq's I/O thread; events
/// come only on connects and disconnects, so this is far more often than
/// needed, and cheap.
const MONITOR_DRAIN_EVERY: u32 = 64;

/// Why a pipe did not take a payload.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Connected, but at its high-water mark.
    Full,
    /// No connected peer.
    Unreachable,
    /// libzmq failed otherwise (or the payload cannot be framed).
    Zmq(zmq::Error),
}

/// A refusal, and how many of the caller's payloads (a prefix) were
/// accepted before it.
#[derive(Debug)]
pub(crate) struct Refused {
    /// Payloads accepted, in order, before the refused one.
    pub(crate) accepted: usize,
    /// Why the next one was refused (the rest were not tried).
    pub(crate) why: Refusal,
}

/// One outbound pipe to a peer.
pub(crate) struct Pipe {
    /// This DEALER's routing id, `<role>:<node id>:<token>`; hellos sign it.
    pub(crate) routing_id: Vec<u8>,
    /// What riders leave for the flusher. Locked only to append or to swap
    /// a batch out, never across a send.
    queue: Mutex<Queue>,
    /// The socket, held by the flusher across its sends.
    dealer: Mutex<Dealer>,
    /// The DEALER's monitor, shared with the task that watches it (see
    /// [`Watch`]).
    watch: Arc<Watch>,
}

/// Where a pipe's lost connections are reported: the link's channel to its
/// [`crate::LinkReceiver`], which hands them to the owner as
/// [`crate::LinkEvent::PeerDisconnected`].
pub(crate) type Disconnects = mpsc::Sender<NodeId>;

/// A pipe's socket monitor and what it tells, shared by the senders (which
/// drain it to tell a full pipe from an unconnected one) and a watcher task
/// (which drains it when its FD fires, so a lost connection is reported at
/// once, not at the next send). Whoever drains reports.
struct Watch {
    /// The monitor and its state. Lock order: a pipe's `dealer`, then this.
    monitor: Mutex<Monitor>,
    /// Wakes the watcher when the pipe closes.
    closed: Notify,
}

/// The PAIR end of a DEALER's socket monitor and what it told so far.
struct Monitor {
    /// Handshake succeeded / disconnected events, drained without blocking.
    socket: zmq::Socket,
    /// Whether the DEALER has a connected peer, as of the last drain.
    connected: bool,
    /// Disconnects seen, so held payloads can tell whether the connection
    /// they were accepted on is still the one.
    disconnects: u64,
    /// The node the pipe is filed under (it follows [`Pipe::rename`]).
    peer: NodeId,
    /// Where a lost connection is reported.
    report: Disconnects,
    /// Set when the pipe closes: closing our own DEALER is not the peer
    /// going away, and is not reported.
    closed: bool,
}

/// The state senders share without holding the socket.
#[derive(Debug, Default)]
struct Queue {
    /// Payloads accepted from riders, for the flusher's next round.
    batch: Batch,
    /// A flusher holds the socket and takes `batch` before it lets go.
    flushing: bool,
    /// The pipe's last send went through, so a rider's payload is taken
    /// on trust; false on a fresh pipe and after any refusal.
    open: bool,
}

/// The DEALER and what only the flusher touches.
struct Dealer {
    /// The socket and its connection state.
    out: Outbound,
    /// The batch being sent: swapped with the queue's, so riders fill one
    /// while the flusher sends the other, and neither allocates.
    sending: Batch,
    /// Riders' payloads the high-water mark refused; sent before anything
    /// else.
    held: Batch,
    /// `out.disconnects` when `held` was filled: if the peer disconnected
    /// since, what is held is dropped, as libzmq drops its own queue.
    held_at: u64,
}

/// The DEALER and what tells us whether it is connected.
struct Outbound {
    /// The DEALER.
    socket: zmq::Socket,
    /// Its monitor, drained without blocking, so a refused send can say
    /// whether the pipe was full or not connected at all.
    watch: Arc<Watch>,
    /// Whether the DEALER has a connected peer, as of the last drain.
    connected: bool,
    /// Disconnects seen on the monitor, as of the last drain.
    disconnects: u64,
    /// Sends since the monitor was last drained.
    since_drain: u32,
}

/// Locks `m`. Every critical section here is a few field updates or one
/// non-blocking send: a panic cannot leave the state half changed.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pipe {
    /// Opens a DEALER under `routing_id` (see the options in
    /// [`crate::zmq_link`]) with its monitor, connecting to `endpoint`.
    /// A lost connection is reported on `report` under `peer`, by a task
    /// on the current tokio runtime (without one, only at the next send).
    pub(crate) fn open(
        ctx: &zmq::Context,
        endpoint: &str,
        routing_id: Vec<u8>,
        config: &LinkConfig,
        peer: NodeId,
        report: Disconnects,
    ) -> Result<Self, zmq::Error> {
        let s = ctx.socket(zmq::DEALER)?;
        s.set_identity(&routing_id)?;
        s.set_immediate(true)?;
        s.set_sndhwm(config.sndhwm)?;
        s.set_rcvhwm(config.rcvhwm)?;
        s.set_linger(0)?;
        s.set_reconnect_ivl(50)?;
        s.set_reconnect_ivl_max(1000)?;
        let hb = config.heartbeat.as_millis() as i32;
        s.set_heartbeat_ivl(hb)?;
        s.set_heartbeat_timeout(3 * hb)?;
        let monitor_endpoint = monitor_endpoint();
        s.monitor(
            &monitor_endpoint,
            zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32 | zmq::SocketEvent::DISCONNECTED as i32,
        )?;
        let monitor = ctx.socket(zmq::PAIR)?;
        monitor.set_linger(0)?;
        monitor.connect(&monitor_endpoint)?;
        s.connect(endpoint)?;
        let watch = Arc::new(Watch {
            monitor: Mutex::new(Monitor {
                socket: monitor,
                connected: false,
                disconnects: 0,
                peer,
                report,
                closed: false,
            }),
            closed: Notify::new(),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(watch.clone().run());
        }
        Ok(Self::new(s, watch, routing_id))
    }

    /// A pipe over a DEALER already connecting, and its monitor.
    fn new(socket: zmq::Socket, watch: Arc<Watch>, routing_id: Vec<u8>) -> Self {
        Self {
            routing_id,
            queue: Mutex::new(Queue::default()),
            watch: watch.clone(),
            dealer: Mutex::new(Dealer {
                out: Outbound {
                    socket,
                    watch,
                    connected: false,
                    disconnects: 0,
                    since_drain: 0,
                },
                sending: Batch::default(),
                held: Batch::default(),
                held_at: 0,
            }),
        }
    }

    /// Sends `payloads` in order, as few messages as `max_batch` allows:
    /// riding along with a flusher at work if possible, flushing otherwise.
    pub(crate) fn send(&self, payloads: &[Bytes], max_batch: usize) -> Result<(), Refused> {
        let framable = payloads
            .iter()
            .position(|p| record_len(p.len()).is_none())
            .unwrap_or(payloads.len());
        let (ok, too_long) = payloads.split_at(framable);
        let rode = self.ride_along(ok, max_batch);
        if rode < ok.len() {
            let mut dealer = lock(&self.dealer);
            lock(&self.queue).flushing = true;
            self.flush(&mut dealer, &ok[rode..], max_batch)
                .map_err(|r| Refused {
                    accepted: rode + r.accepted,
                    why: r.why,
                })?;
        }
        if too_long.is_empty() {
            Ok(())
        } else {
            Err(Refused {
                accepted: framable,
                why: Refusal::Zmq(zmq::Error::EMSGSIZE),
            })
        }
    }

    /// Appends what fits to the queue of a flusher at work on an open
    /// pipe; returns how many payloads (a prefix) were taken.
    fn ride_along(&self, payloads: &[Bytes], max_batch: usize) -> usize {
        let mut queue = lock(&self.queue);
        if !(queue.flushing && queue.open) {
            return 0;
        }
        let mut taken = 0;
        for p in payloads {
            if !queue.batch.fits(p.len(), max_batch) {
                break;
            }
            queue.batch.push(p);
            taken += 1;
        }
        taken
    }

    /// Holding the socket (with `flushing` set): sends what is held, then
    /// the queue with `own` after it, round after round until the queue
    /// is empty; `flushing` is false again when this returns.
    fn flush(&self, dealer: &mut Dealer, own: &[Bytes], max_batch: usize) -> Result<(), Refused> {
        if let Err(why) = self.send_held(dealer) {
            self.stop_flushing(dealer, &why);
            return Err(Refused { accepted: 0, why });
        }
        let mut next = 0; // own payloads sent so far
        let mut went_through = false;
        // Set when our next payload did not fit beside the riders: the
        // next round sends ours first, so a stream of riders cannot pass
        // it over forever.
        let mut ours_first = false;
        loop {
            {
                let mut queue = lock(&self.queue);
                if went_through {
                    queue.open = true;
                }
                if !ours_first {
                    std::mem::swap(&mut queue.batch, &mut dealer.sending);
                }
                if dealer.sending.is_empty() && next == own.len() {
                    queue.flushing = false;
                    return Ok(());
                }
            }
            let riders = dealer.sending.mark();
            let first = next;
            while next < own.len() && dealer.sending.fits(own[next].len(), max_batch) {
                dealer.sending.push(&own[next]);
                next += 1;
            }
            ours_first = next == first && next < own.len();
            match dealer.out.transmit(dealer.sending.as_bytes()) {
                Ok(()) => {
                    dealer.sending.clear();
                    went_through = true;
                }
                Err(why) => {
                    // Our own payloads of this round go back to us; the
                    // riders' stay held (or go, with the peer).
                    dealer.sending.truncate(riders);
                    self.stop_flushing(dealer, &why);
                    return if first == own.len() {
                        Ok(()) // only riders were refused: they are held
                    } else {
                        Err(Refused {
                            accepted: first,
                            why,
                        })
                    };
                }
            }
        }
    }

    /// Sends the held batch first, if any (dropping it if the connection
    /// it was accepted on is gone).
    fn send_held(&self, dealer: &mut Dealer) -> Result<(), Refusal> {
        if dealer.held.is_empty() {
            return Ok(());
        }
        dealer.out.drain_monitor();
        if dealer.out.disconnects != dealer.held_at {
            // Accepted before the peer went away: gone with its
            // connection. The queue was filled before the refusal that
            // closed the pipe to riders, so it is just as stale.
            dealer.held.clear();
            lock(&self.queue).batch.clear();
            return Ok(());
        }
        dealer.out.transmit(dealer.held.as_bytes())?;
        dealer.held.clear();
        Ok(())
    }

    /// After a refusal: riders stop joining until a send goes through;
    /// what riders left is held if the pipe is only full, dropped if the
    /// peer is gone.
    fn stop_flushing(&self, dealer: &mut Dealer, why: &Refusal) {
        let mut queue = lock(&self.queue);
        queue.flushing = false;
        queue.open = false;
        match why {
            Refusal::Full => {
                if dealer.held.is_empty() {
                    std::mem::swap(&mut dealer.held, &mut dealer.sending);
                    dealer.held_at = dealer.out.disconnects;
                } else {
                    // The refusal was of `held` itself, sent before any
                    // round: nothing is being sent beside it.
                    debug_assert!(dealer.sending.is_empty());
                }
            }
            Refusal::Unreachable | Refusal::Zmq(_) => {
                dealer.held.clear();
                dealer.sending.clear();
                queue.batch.clear();
            }
        }
    }
}

impl Outbound {
    /// One non-blocking send: true when libzmq took it, false on EAGAIN
    /// (not connected or full; the caller tells which).
    fn try_send(&mut self, message: &[u8]) -> Result<bool, Refusal> {
        match self.socket.send(message, zmq::DONTWAIT) {
            Ok(()) => {
                self.sent();
                Ok(true)
            }
            Err(zmq::Error::EAGAIN) => Ok(false),
            Err(e) => Err(Refusal::Zmq(e)),
        }
    }

    /// Sends one encoded batch without blocking, telling a full pipe from
    /// one that is not connected.
    fn transmit(&mut self, message: &[u8]) -> Result<(), Refusal> {
        self.since_drain += 1;
        if self.since_drain >= MONITOR_DRAIN_EVERY {
            self.drain_monitor();
        }
        if self.try_send(message)? {
            return Ok(());
        }
        // IMMEDIATE: no connected pipe; or the high-water mark. The
        // monitor first: a handshake it reports has already queued the
        // pipe's attachment on the socket (libzmq creates the pipe before
        // it emits the event).
        self.drain_monitor();
        // `send` looks at the socket's commands (a pipe attached, room
        // freed) at most every millisecond or so; reading ZMQ_EVENTS makes
        // it look now. Without this a pipe connected a moment ago refused
        // sends as if full (issue 17).
        if self
            .socket
            .get_events()
            .is_ok_and(|e| e.contains(zmq::POLLOUT))
            && self.try_send(message)?
        {
            return Ok(());
        }
        if self.connected {
            Err(Refusal::Full)
        } else {
            Err(Refusal::Unreachable)
        }
    }

    /// A send went through. With `IMMEDIATE` that proves a completed
    /// connection, even when the monitor's "handshake succeeded" is still
    /// on its way through the inproc queue (on a loaded machine it can
    /// lag): without this, a full pipe right after connecting was
    /// reported as unreachable.
    fn sent(&mut self) {
        self.connected = true;
    }

    /// Stops the DEALER's monitor before the pipe closes, so that libzmq
    /// never again writes to the PAIR that reads it (the watcher closes
    /// that PAIR as soon as it sees the pipe closed).
    ///
    /// libzmq sends monitor events with a *blocking* send, from its I/O
    /// thread, and a DEALER that we close lives on until the reaper gets
    /// to it: if its peer's connection drops meanwhile, the I/O thread
    /// emits `DISCONNECTED` to a monitor whose reader is gone, blocks for
    /// good, and every other connection of the context (every pipe and the
    /// ROUTER of this link) stops: no message moves and no other
    /// disconnect is ever seen. Pointing the monitor at a fresh endpoint
    /// with no events closes the old one under libzmq's monitor lock (the
    /// lock every event takes), after which no event is sent at all; the
    /// safe API cannot pass the NULL endpoint that would only stop it.
    fn detach_monitor(&mut self) {
        if let Err(e) = self.socket.monitor(&monitor_endpoint(), 0) {
            debug!(error = %e, "could not detach a closing pipe's monitor");
        }
    }

    /// Reads every pending monitor event and updates `connected`.
    fn drain_monitor(&mut self) {
        self.since_drain = 0;
        let mut monitor = lock(&self.watch.monitor);
        monitor.drain();
        self.connected = monitor.connected;
        self.disconnects = monitor.disconnects;
    }
}

impl Pipe {
    /// Files the pipe under another node id: lost connections are reported
    /// under it from now on.
    pub(crate) fn rename(&self, to: NodeId) {
        lock(&self.watch.monitor).peer = to;
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // Before the DEALER closes (fields drop after this).
        lock(&self.dealer).out.detach_monitor();
        // Its own close is not the peer going away.
        lock(&self.watch.monitor).closed = true;
        self.watch.closed.notify_one();
    }
}

/// A fresh inproc endpoint for a socket monitor.
fn monitor_endpoint() -> String {
    format!(
        "inproc://gamemesh-monitor-{}",
        MONITORS.fetch_add(1, Ordering::Relaxed)
    )
}

impl Watch {
    /// Drains the monitor whenever its FD fires, until the pipe closes, so
    /// a lost connection is reported within milliseconds. The FD is
    /// edge-triggered like the ROUTER's (see [`crate::receiver`]): every
    /// wake-up drains until `EAGAIN`, and a sender that drains meanwhile
    /// reports what it finds itself.
    async fn run(self: Arc<Self>) {
        let Ok(fd) = lock(&self.monitor).socket.get_fd() else {
            return;
        };
        // The fd is the monitor's mailbox, open while its socket is, and
        // `self` (holding the socket) outlives `registered` (dropped at the
        // end of this function, before `self`): the contract the
        // deprecated safe constructor cannot check (see receiver.rs).
        #[allow(deprecated)]
        let registered = match AsyncFd::with_interest(MonitorFd(fd), Interest::READABLE) {
            Ok(registered) => registered,
            Err(e) => {
                debug!(error = %e, "cannot watch a pipe's monitor; disconnects are seen on send");
                return;
            }
        };
        loop {
            if lock(&self.monitor).drain_unless_closed() {
                return;
            }
            tokio::select! {
                _ = self.closed.notified() => return,
                ready = registered.readable() => match ready {
                    Ok(mut guard) => guard.clear_ready(),
                    Err(_) => return,
                },
            }
        }
    }
}

/// A monitor socket's `ZMQ_FD`, for tokio's reactor. Only the number: the
/// socket owns the descriptor.
struct MonitorFd(RawFd);

impl AsRawFd for MonitorFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

impl Monitor {
    /// Drains, unless the pipe closed; true if it did.
    fn drain_unless_closed(&mut self) -> bool {
        if self.closed {
            return true;
        }
        self.drain();
        false
    }

    /// Reads every pending monitor event, updates the state, and reports a
    /// connection that was up and went down (once per loss: a peer that
    /// keeps refusing reconnects is not reported again).
    fn drain(&mut self) {
        while let Ok(first) = self.socket.recv_msg(zmq::DONTWAIT) {
            // An event is two frames: [u16 event, u32 value] and the
            // endpoint; only the event number matters here.
            if first.len() >= 2 {
                let event = u16::from_ne_bytes([first[0], first[1]]);
                if event == zmq::SocketEvent::HANDSHAKE_SUCCEEDED as u16 {
                    self.connected = true;
                } else if event == zmq::SocketEvent::DISCONNECTED as u16 {
                    if self.connected && !self.closed {
                        // Full: the owner falls back on its peer timeout.
                        let _ = self.report.try_send(self.peer);
                    }
                    self.connected = false;
                    self.disconnects += 1;
                }
            }
            while self.socket.get_rcvmore().unwrap_or(false) {
                if self.socket.recv_msg(zmq::DONTWAIT).is_err() {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The flush protocol, driven by hand: the test holds the socket lock
    //! the way a flusher in the middle of a send does, so riders join
    //! deterministically.

    use std::time::Duration;

    use gamemesh_test_support::wait_for;

    use super::*;
    use crate::batch::DEFAULT_MAX_BATCH;
    use crate::{Link, LinkEvent, LinkReceiver, ZmqLink};

    const WAIT: Duration = Duration::from_secs(10);
    const MAX: usize = DEFAULT_MAX_BATCH;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    /// Heartbeats far apart: these tests stall a reader at its high-water
    /// mark, where libzmq must not tear the connection down (it can assert
    /// there: zeromq/libzmq#3937).
    fn config(node: u64, hwm: i32) -> LinkConfig {
        let mut c = LinkConfig::new("test", node, "127.0.0.1", 0);
        c.sndhwm = hwm;
        c.rcvhwm = hwm;
        c.heartbeat = Duration::from_secs(30);
        c
    }

    /// A pipe to `peer` that has sent one `hello` (so it is open).
    async fn open_pipe(ctx: &zmq::Context, peer: &ZmqLink, hwm: i32) -> Pipe {
        let pipe = Pipe::open(
            ctx,
            peer.local_endpoint(),
            b"test:1:0000000000000001".to_vec(),
            &config(1, hwm),
            2,
            mpsc::channel(8).0,
        )
        .unwrap();
        wait_for("the pipe to connect", WAIT, || {
            pipe.send(&[b("hello")], MAX).is_ok()
        })
        .await;
        pipe
    }

    async fn next(rx: &mut LinkReceiver) -> Bytes {
        match tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("a payload arrives")
            .expect("link open")
        {
            LinkEvent::Message { payload, .. } => payload,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn riders_join_the_flushers_next_batch_only_on_an_open_pipe() {
        let ctx = zmq::Context::new();
        let (peer, mut rx) = ZmqLink::bind(config(2, 1000)).unwrap();
        let fresh = Pipe::open(
            &ctx,
            "tcp://127.0.0.1:1",
            b"test:1:00".to_vec(),
            &config(1, 10),
            2,
            mpsc::channel(8).0,
        )
        .unwrap();
        // A fresh pipe has sent nothing yet: nobody rides along, even with
        // a flusher at work, since nobody knows it will take anything.
        lock(&fresh.queue).flushing = true;
        assert_eq!(fresh.ride_along(&[b("x")], MAX), 0);

        let pipe = open_pipe(&ctx, &peer, 1000).await;
        {
            let mut dealer = lock(&pipe.dealer); // a flusher, mid-send
            lock(&pipe.queue).flushing = true;
            pipe.send(&[b("r1"), b("r2")], MAX).expect("rides along");
            pipe.send(&[b("r3")], MAX).expect("rides along");
            pipe.flush(&mut dealer, &[b("own1"), b("own2")], MAX)
                .unwrap();
        }
        assert!(!lock(&pipe.queue).flushing);
        for want in ["hello", "r1", "r2", "r3", "own1", "own2"] {
            assert_eq!(next(&mut rx).await, want.as_bytes());
        }
        // The hello, then one batch.
        assert_eq!(rx.messages_received(), 2);
    }

    /// A pipe at its high-water mark with one rider held: a flusher's batch
    /// of [`rider`, `own`] was refused. Returns the pipe and how many big
    /// payloads filled it (after the `hello`).
    async fn full_with_a_held_rider(ctx: &zmq::Context, peer: &ZmqLink) -> (Pipe, usize) {
        let pipe = open_pipe(ctx, peer, 1).await;
        let big = Bytes::from(vec![7u8; 64 * 1024]);
        let mut filled = 0;
        let refused = loop {
            match pipe.send(std::slice::from_ref(&big), MAX) {
                Ok(()) => filled += 1,
                Err(r) => break r,
            }
            assert!(filled < 100_000, "the pipe never filled");
        };
        assert!(matches!(refused.why, Refusal::Full), "{refused:?}");
        // A first refusal can come while libzmq's I/O thread still moves
        // queued batches into the kernel (late on a loaded machine), and
        // room appears once it catches up: fill until an attempt made after
        // it had a moment takes nothing, so the pipe is full end to end.
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if pipe.send(std::slice::from_ref(&big), MAX).is_err() {
                break;
            }
            filled += 1;
            while pipe.send(std::slice::from_ref(&big), MAX).is_ok() {
                filled += 1;
            }
            assert!(filled < 100_000, "the pipe never stayed full");
        }
        {
            let mut dealer = lock(&pipe.dealer); // a flusher, mid-send...
            {
                // ...whose last send went through, as far as riders know.
                let mut queue = lock(&pipe.queue);
                queue.flushing = true;
                queue.open = true;
            }
            pipe.send(&[b("rider")], MAX).expect("rides along");
            let refused = pipe.flush(&mut dealer, &[b("own")], MAX).unwrap_err();
            assert!(matches!(refused.why, Refusal::Full), "{refused:?}");
            assert_eq!(refused.accepted, 0, "the flusher's own payload is refused");
            assert_eq!(dealer.held.len(), 1, "the rider's is held");
        }
        // While full, nothing new is taken, and the rider stays held.
        let refused = pipe.send(&[b("refused")], MAX).unwrap_err();
        assert!(matches!(refused.why, Refusal::Full), "{refused:?}");
        (pipe, filled)
    }

    #[tokio::test]
    async fn a_rider_refused_at_the_mark_is_held_and_goes_first_once_there_is_room() {
        let ctx = zmq::Context::new();
        let (peer, mut rx) = ZmqLink::bind(config(2, 1)).unwrap();
        let (pipe, filled) = full_with_a_held_rider(&ctx, &peer).await;
        // The peer reads again, until the payload that got through.
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let p = next(&mut rx).await;
                let done = p.starts_with(b"after");
                got.push(p);
                if done {
                    return got;
                }
            }
        });
        let mut last = Bytes::new();
        let mut k = 0;
        wait_for("room in the pipe", WAIT, || {
            k += 1;
            last = Bytes::from(format!("after {k}"));
            pipe.send(std::slice::from_ref(&last), MAX).is_ok()
        })
        .await;
        let got = tokio::time::timeout(WAIT, reader).await.unwrap().unwrap();
        // hello, the big ones, then the held rider before the payload that
        // found room; never `own` nor `refused`.
        assert_eq!(got.len(), 1 + filled + 2, "{:?}", &got[1 + filled..]);
        assert_eq!(got[1 + filled], b("rider"));
        assert_eq!(got[2 + filled], last);
    }

    #[tokio::test]
    async fn a_held_rider_is_dropped_when_the_peer_restarts() {
        let ctx = zmq::Context::new();
        let (peer, rx) = ZmqLink::bind(config(2, 1)).unwrap();
        let port = peer
            .local_endpoint()
            .rsplit(':')
            .next()
            .unwrap()
            .to_string();
        let (pipe, _) = full_with_a_held_rider(&ctx, &peer).await;
        // The peer dies with everything unread, and comes back.
        drop(rx);
        drop(peer);
        let mut rebound = None;
        wait_for("the peer to rebind its port", WAIT, || {
            let c = LinkConfig::new("test", 2, "127.0.0.1", port.parse().unwrap());
            rebound = ZmqLink::bind(c).ok();
            rebound.is_some()
        })
        .await;
        let (_peer, mut rx) = rebound.unwrap();
        // Reconnected before anyone sends (a send while the peer is away
        // would find it unreachable and drop what is held for that
        // reason): it is the disconnect itself that must void the rider.
        wait_for("the pipe to reconnect", WAIT, || {
            let mut dealer = lock(&pipe.dealer);
            dealer.out.drain_monitor();
            dealer.out.disconnects > 0 && dealer.out.connected
        })
        .await;
        let last = b("after");
        pipe.send(std::slice::from_ref(&last), MAX).unwrap();
        // What the old peer never read died with its connection, the held
        // rider with it: the new peer hears only what came after.
        assert_eq!(next(&mut rx).await, last);
        assert!(lock(&pipe.dealer).held.is_empty());
    }
}
