//! The gateway's open client sockets and what is queued for each: the
//! dispatcher (`upstream`) delivers game servers' frames here, and each
//! socket's task (`connection`) writes them out. Bounded per socket in
//! frames and bytes, so a client that does not read is kicked
//! (`SLOW_CONSUMER`) instead of growing memory.
//!
//! The queue is a locked deque and a [`Notify`], not a tokio channel: a
//! bounded channel allocates a block of 32 slots (about 2 KiB here) and a
//! cache-padded header per socket up front, and tens of thousands of idle
//! sockets each paid for it; an empty deque holds no memory.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gamemesh_proto::client::KickReason;
use gamemesh_proto::packets;
use gamemesh_transport::NodeId;
use tokio::sync::Notify;
use tracing::debug;
use uuid::Uuid;

/// Something to do on a client socket, in order.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// Write one frame body (the gateway's own answers and kicks).
    Frame(Bytes),
    /// Write one frame body a game server sent: it answers a request in
    /// the socket's in-flight table (or is a push), and is dropped if the
    /// gateway already answered that request (see [`crate::in_flight`]).
    Reply(Bytes),
    /// A game server was declared DOWN: answer the requests in flight to
    /// it (`UNAVAILABLE`). Travels in the socket's own queue, so the
    /// socket's task learns it without another wake-up source per frame.
    GameServerDown(NodeId),
    /// Write `last_frame` (if any), then close.
    Close {
        /// Usually a `Kicked`.
        last_frame: Option<Bytes>,
        /// For the log line.
        reason: String,
    },
}

/// What a socket's task finds in its queue.
#[derive(Debug)]
pub(crate) enum Queued {
    /// A queue bound was crossed: kick the client (`SLOW_CONSUMER`).
    Slow,
    /// The oldest thing queued.
    Out(Outbound),
}

/// The handle on one socket's outbound queue, shared by the dispatcher
/// (through the registry) and the socket's own task.
pub(crate) struct ClientHandle {
    /// What is queued for the socket, oldest first; at most `max_frames`.
    queue: Mutex<VecDeque<Outbound>>,
    /// `--outbound-queue-frames`.
    max_frames: usize,
    /// Wakes the socket's task: something was queued, or `slow` was set.
    /// One waiter (the task); a wake with no waiter is kept for it.
    ready: Notify,
    /// Set when a queue bound is crossed: the socket task kicks the
    /// client.
    slow: AtomicBool,
    /// Body bytes delivered and not yet written to the socket (queued, or
    /// in the batch being written). One atomic add per frame keeps the
    /// bytes bound cheap.
    pub(crate) queued_bytes: AtomicUsize,
    /// `--outbound-queue-bytes`.
    pub(crate) max_bytes: usize,
    /// Set when the bytes bound (not the frame bound) fired `slow`, so the
    /// kick says which.
    pub(crate) over_bytes: AtomicBool,
    /// Set when a game server pinned the socket to a session: the login
    /// deadline no longer applies (not even after a logout).
    pub(crate) logged_in: AtomicBool,
}

impl ClientHandle {
    /// An empty queue bounded to `max_frames` frames and `max_bytes` body
    /// bytes.
    pub(crate) fn new(max_frames: usize, max_bytes: usize) -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            max_frames,
            ready: Notify::new(),
            slow: AtomicBool::new(false),
            queued_bytes: AtomicUsize::new(0),
            max_bytes,
            over_bytes: AtomicBool::new(false),
            logged_in: AtomicBool::new(false),
        }
    }

    /// Queues `out`. Over either bound the client is marked for a
    /// `SLOW_CONSUMER` kick and `out` is dropped. A frame into an empty
    /// queue is always taken, so one reply larger than the bytes bound
    /// still reaches a client that reads.
    pub(crate) fn push(&self, out: Outbound) {
        let len = match &out {
            Outbound::Frame(body) | Outbound::Reply(body) => body.len(),
            Outbound::Close { .. } | Outbound::GameServerDown(_) => 0,
        };
        if len > 0 {
            let before = self.queued_bytes.fetch_add(len, Ordering::Relaxed);
            if before > 0 && before + len > self.max_bytes {
                self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                self.over_bytes.store(true, Ordering::Relaxed);
                self.mark_slow();
                return;
            }
        }
        if !self.enqueue(out) {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            self.mark_slow();
        }
    }

    /// Appends `out` unless the queue holds `--outbound-queue-frames`
    /// already (false: dropped), and wakes the socket's task.
    fn enqueue(&self, out: Outbound) -> bool {
        {
            let mut queue = self.lock();
            if queue.len() >= self.max_frames {
                return false;
            }
            queue.push_back(out);
        }
        self.ready.notify_one();
        true
    }

    /// Marks the client for a `SLOW_CONSUMER` kick and wakes its task.
    pub(crate) fn mark_slow(&self) {
        self.slow.store(true, Ordering::Release);
        self.ready.notify_one();
    }

    /// Whether the client is marked for a `SLOW_CONSUMER` kick.
    pub(crate) fn is_slow(&self) -> bool {
        self.slow.load(Ordering::Acquire)
    }

    /// The oldest thing queued, if any. An emptied queue gives its memory
    /// back: an idle socket holds no queue buffer (a busy one allocates
    /// one per batch, which costs far less than the write it feeds).
    pub(crate) fn try_pop(&self) -> Option<Outbound> {
        let mut queue = self.lock();
        let out = queue.pop_front();
        if queue.is_empty() && queue.capacity() > 0 {
            *queue = VecDeque::new();
        }
        out
    }

    /// Waits for the slow-consumer mark or something queued (taken off the
    /// queue), the mark first. Cancel-safe: nothing is taken unless it is
    /// returned.
    pub(crate) async fn next(&self) -> Queued {
        loop {
            if self.is_slow() {
                return Queued::Slow;
            }
            if let Some(out) = self.try_pop() {
                return Queued::Out(out);
            }
            // A push between the checks and this wait leaves its wake-up
            // stored in `ready`, so it is not missed.
            self.ready.notified().await;
        }
    }

    /// Waits for the slow-consumer mark alone (while a write blocks).
    pub(crate) async fn slowed(&self) {
        while !self.is_slow() {
            self.ready.notified().await;
        }
    }

    /// `written` body bytes left the queue for the socket.
    pub(crate) fn written(&self, written: usize) {
        self.queued_bytes.fetch_sub(written, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Outbound>> {
        // Single-operation critical sections: poisoning cannot leave the
        // deque inconsistent.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Open sockets by id, so game servers' messages find their socket.
#[derive(Default)]
pub(crate) struct ClientRegistry {
    /// Every open socket.
    clients: Mutex<HashMap<Uuid, Arc<ClientHandle>>>,
}

impl ClientRegistry {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<ClientHandle>>> {
        // Single-operation critical sections: poisoning cannot leave the map
        // inconsistent.
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `out` for `socket`. A full queue (in frames or bytes) means
    /// the client is not reading: it is marked for a `SLOW_CONSUMER` kick.
    pub(crate) fn deliver(&self, socket: &Uuid, out: Outbound) {
        let clients = self.lock();
        let Some(h) = clients.get(socket) else {
            debug!(%socket, "message for a closed socket dropped");
            return;
        };
        h.push(out);
    }

    /// Queues one game server frame for each of `sockets`, in order (a
    /// multicast): like [`ClientRegistry::deliver`] of `Outbound::Reply`
    /// for each, under one lock. Sockets already closed are skipped.
    pub(crate) fn deliver_each(&self, sockets: &[Uuid], body: &Bytes) {
        let clients = self.lock();
        for socket in sockets {
            match clients.get(socket) {
                Some(h) => h.push(Outbound::Reply(body.clone())),
                None => debug!(%socket, "message for a closed socket dropped"),
            }
        }
    }

    /// Records that a game server pinned `socket` to a session, which
    /// lifts its login deadline.
    pub(crate) fn mark_logged_in(&self, socket: &Uuid) {
        if let Some(h) = self.lock().get(socket) {
            h.logged_in.store(true, Ordering::Relaxed);
        }
    }

    /// Tells every socket that `gs` is down. A socket whose queue is full
    /// is already being kicked as a slow consumer.
    pub(crate) fn game_server_down(&self, gs: NodeId) {
        for h in self.lock().values() {
            let _ = h.enqueue(Outbound::GameServerDown(gs));
        }
    }

    /// Tells every socket to close with `last_frame` (shutdown).
    pub(crate) fn close_all(&self, last_frame: Bytes, reason: &str) {
        for h in self.lock().values() {
            if !h.enqueue(Outbound::Close {
                last_frame: Some(last_frame.clone()),
                reason: reason.to_string(),
            }) {
                h.mark_slow();
            }
        }
    }

    /// Number of open sockets.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Reply bytes queued for all sockets together (a metrics sample).
    pub(crate) fn queued_bytes(&self) -> usize {
        self.lock()
            .values()
            .map(|h| h.queued_bytes.load(Ordering::Relaxed))
            .sum()
    }
}

/// The `Kicked` frame body for `reason`.
pub(crate) fn kick_body(reason: KickReason, detail: &str) -> Bytes {
    packets::encode(&packets::kicked(reason, detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Outbound {
        Outbound::Frame(Bytes::from(vec![0; n]))
    }

    #[test]
    fn bytes_bound_takes_one_big_frame_but_kicks_beyond_the_bound() {
        let h = ClientHandle::new(100, 100);
        h.push(frame(150));
        assert!(!h.is_slow(), "one frame into an empty queue passes");
        h.written(150);
        h.push(frame(60));
        h.push(frame(40));
        assert!(!h.is_slow(), "exactly at the bound is fine");
        h.push(frame(1));
        assert!(h.is_slow(), "one byte over kicks");
        assert!(h.over_bytes.load(Ordering::Relaxed));
        assert_eq!(h.queued_bytes.load(Ordering::Relaxed), 100);
    }

    #[test]
    fn frame_bound_kicks_without_blaming_bytes() {
        let h = ClientHandle::new(2, 1 << 20);
        for _ in 0..3 {
            h.push(frame(1));
        }
        assert!(h.is_slow());
        assert!(!h.over_bytes.load(Ordering::Relaxed));
        assert_eq!(
            h.queued_bytes.load(Ordering::Relaxed),
            2,
            "dropped frame uncounted"
        );
    }

    #[tokio::test]
    async fn next_waits_for_a_push_returns_in_order_and_an_empty_queue_holds_no_buffer() {
        let h = Arc::new(ClientHandle::new(10, 1 << 20));
        let pusher = {
            let h = h.clone();
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                h.push(frame(1));
                h.push(frame(2));
            })
        };
        for want in [1, 2] {
            match h.next().await {
                Queued::Out(Outbound::Frame(body)) => assert_eq!(body.len(), want),
                other => panic!("expected a frame of {want} bytes, got {other:?}"),
            }
        }
        pusher.await.unwrap();
        assert!(h.try_pop().is_none());
        assert_eq!(
            h.lock().capacity(),
            0,
            "an emptied queue gives its buffer back"
        );
    }

    #[tokio::test]
    async fn the_slow_mark_comes_before_what_is_queued() {
        let h = ClientHandle::new(1, 1 << 20);
        h.push(frame(1));
        h.push(frame(1));
        assert!(matches!(h.next().await, Queued::Slow));
        h.slowed().await;
    }
}
