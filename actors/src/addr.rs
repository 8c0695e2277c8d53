//! [`Addr`], the cloneable handle through which everything reaches an
//! actor, and [`Reply`], the answer half of a [`call`](Addr::call).

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::timer::{self, Timer};
use crate::{Actor, CallError, PostError};

/// The actor takes messages.
pub(crate) const RUNNING: u8 = 0;
/// [`Addr::close`]: no new messages; the queued ones are still handled.
pub(crate) const CLOSING: u8 = 1;
/// [`Addr::stop`] or [`Context::stop`](crate::Context::stop): the message
/// being handled finishes, the queued ones are dropped.
pub(crate) const STOPPING: u8 = 2;
/// Out of the message loop (or panicked): nothing more is handled.
pub(crate) const STOPPED: u8 = 3;

/// What the addresses, the context, the timers and the actor's task share.
pub(crate) struct Shared {
    /// One of the constants above; it only ever grows, so a stop request
    /// can never be undone by a weaker one racing it.
    mode: AtomicU8,
    /// Cancelled by every stop or close request, to wake an actor that is
    /// idle on an empty mailbox. A busy actor reads `mode` between
    /// messages instead, which costs an atomic load, not a lock.
    pub(crate) wake: CancellationToken,
    /// Cancelled when the actor leaves its message loop: its timers end.
    pub(crate) ended: CancellationToken,
    /// Cancelled after `stopped` ran and the state was dropped.
    pub(crate) terminated: CancellationToken,
    /// Where the actor's task and its timers are spawned, so whoever owns
    /// the tracker owns them (house rule: no task that nobody owns).
    tracker: Option<TaskTracker>,
    /// For log lines.
    pub(crate) name: String,
    /// Unique in the process, for keying maps by actor.
    pub(crate) id: ActorId,
}

/// A process-unique actor id: `Copy`, `Eq`, `Hash`, so it can key maps
/// and sets of actors (an `Addr` itself holds a channel, which clippy
/// rightly refuses as a map key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActorId(u64);

impl ActorId {
    fn next() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Shared {
    pub(crate) fn new(tracker: Option<TaskTracker>, name: String) -> Self {
        Self {
            mode: AtomicU8::new(RUNNING),
            wake: CancellationToken::new(),
            ended: CancellationToken::new(),
            terminated: CancellationToken::new(),
            tracker,
            name,
            id: ActorId::next(),
        }
    }

    pub(crate) fn mode(&self) -> u8 {
        self.mode.load(Ordering::Acquire)
    }

    /// Raises the mode to at least `to` and wakes an idle actor.
    pub(crate) fn request(&self, to: u8) {
        self.mode.fetch_max(to, Ordering::AcqRel);
        self.wake.cancel();
    }

    /// Spawns on the tracker if there is one, else on the runtime.
    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        // The JoinHandle is not needed: the actor reports its end through
        // `terminated`, and a timer through its `Timer`.
        match &self.tracker {
            Some(t) => drop(t.spawn(fut)),
            None => drop(tokio::spawn(fut)),
        }
    }
}

/// The address of a running (or stopped) actor: cheap to clone, `Send` and
/// `Sync`, and the only way to reach the actor.
///
/// Posting only enqueues: the actor runs later on its own task, never on
/// the poster's stack.
pub struct Addr<A: Actor> {
    /// The mailbox.
    pub(crate) tx: mpsc::Sender<A::Msg>,
    /// Mode, wake-ups, tracker.
    pub(crate) shared: Arc<Shared>,
}

impl<A: Actor> Clone for Addr<A> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<A: Actor> fmt::Debug for Addr<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Addr")
            .field("actor", &self.shared.name)
            .field("id", &self.shared.id)
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

impl<A: Actor> Addr<A> {
    /// Enqueues `msg` without waiting. Fails with [`PostError::Full`] when
    /// the mailbox is at capacity (the poster decides: refuse, drop, retry)
    /// and with [`PostError::Stopped`] once the actor takes no messages.
    pub fn try_post(&self, msg: A::Msg) -> Result<(), PostError<A::Msg>> {
        if self.shared.mode() != RUNNING {
            return Err(PostError::Stopped(msg));
        }
        self.tx.try_send(msg).map_err(|e| match e {
            mpsc::error::TrySendError::Full(m) => PostError::Full(m),
            mpsc::error::TrySendError::Closed(m) => PostError::Stopped(m),
        })
    }

    /// Enqueues `msg`, waiting for room when the mailbox is full: the
    /// back-pressure reaches the poster. Fails only with
    /// [`PostError::Stopped`], also when the actor stops during the wait.
    ///
    /// An actor must not `post().await` to itself, or around a cycle of
    /// actors that all wait on each other's full mailboxes; use
    /// [`try_post`](Self::try_post) there.
    pub async fn post(&self, msg: A::Msg) -> Result<(), PostError<A::Msg>> {
        if self.shared.mode() != RUNNING {
            return Err(PostError::Stopped(msg));
        }
        self.tx.send(msg).await.map_err(|e| PostError::Stopped(e.0))
    }

    /// Asks and waits for the answer: `make` wraps a fresh [`Reply`] into
    /// a message, which is posted (waiting for room), and the actor answers
    /// through it.
    ///
    /// A tuple-variant constructor is enough:
    /// `addr.call(CounterMsg::Get).await`. Gives [`CallError::Stopped`] if
    /// the actor is stopped, or stops before it answers; there is no
    /// timeout (wrap it in `tokio::time::timeout` if the actor may await
    /// for long).
    pub async fn call<R, F>(&self, make: F) -> Result<R, CallError>
    where
        F: FnOnce(Reply<R>) -> A::Msg,
    {
        let (tx, rx) = oneshot::channel();
        self.post(make(Reply(Some(tx))))
            .await
            .map_err(|_| CallError::Stopped)?;
        match rx.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(CallError::Stopped)) => Err(CallError::Stopped),
            // Dropped unanswered: by a handler that is still running, or
            // with the queue of an actor that stopped (the runtime raises
            // the mode before it drops the queue, so the mode tells which).
            Ok(Err(CallError::NoReply)) | Err(_) if self.shared.mode() >= STOPPING => {
                Err(CallError::Stopped)
            }
            Ok(Err(CallError::NoReply)) | Err(_) => Err(CallError::NoReply),
        }
    }

    /// Stops the actor: the message it is handling finishes (the actor is
    /// never interrupted inside a handler), queued messages are dropped
    /// (their callers get [`CallError::Stopped`]), then `stopped` runs.
    /// New posts fail from now on. Returns at once; await
    /// [`stopped`](Self::stopped) for the end.
    pub fn stop(&self) {
        self.shared.request(STOPPING);
    }

    /// Stops the actor after it has handled what is already queued (the
    /// poison pill of Akka): new posts fail from now on, queued messages
    /// still run, then `stopped` runs. Returns at once.
    pub fn close(&self) {
        self.shared.request(CLOSING);
    }

    /// True once the actor takes no new messages (closing, stopping or
    /// stopped).
    pub fn is_stopped(&self) -> bool {
        self.shared.mode() != RUNNING
    }

    /// Waits until the actor has completely stopped: out of its loop,
    /// `stopped` run, state dropped.
    pub async fn stopped(&self) {
        self.shared.terminated.cancelled().await;
    }

    /// Messages waiting in the mailbox (not counting the one being
    /// handled); a snapshot, for gauges and tests.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// The actor's process-unique id.
    pub fn id(&self) -> ActorId {
        self.shared.id
    }

    /// True if both addresses reach the same actor.
    pub fn same_actor(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Posts `msg` to the actor after `delay` (waiting for room if the
    /// mailbox is full then). Cancelled by [`Timer::cancel`] or when the
    /// actor stops.
    pub fn run_later(&self, delay: Duration, msg: A::Msg) -> Timer {
        timer::later(self.clone(), delay, msg)
    }

    /// Posts `make()` to the actor every `period`, the first time one
    /// `period` from now. A tick waits for room in a full mailbox, and the
    /// ticks missed meanwhile are not made up in a burst: the next one
    /// comes a `period` after the late one. Cancelled by [`Timer::cancel`]
    /// or when the actor stops.
    pub fn run_interval<F>(&self, period: Duration, make: F) -> Timer
    where
        F: FnMut() -> A::Msg + Send + 'static,
    {
        timer::interval(self.clone(), period, make)
    }
}

/// The answer half of a [`call`](Addr::call): the actor calls
/// [`send`](Reply::send) once. Dropping it unanswered fails the call.
pub struct Reply<R>(Option<oneshot::Sender<Result<R, CallError>>>);

impl<R> Reply<R> {
    /// Answers the call. If the caller has gone (it was cancelled or timed
    /// out), the answer is dropped; that is no error for the actor.
    pub fn send(mut self, value: R) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(Ok(value));
        }
    }

    /// True if the caller stopped waiting, so the work may be skipped.
    pub fn is_closed(&self) -> bool {
        self.0.as_ref().map_or(true, |tx| tx.is_closed())
    }
}

impl<R> Drop for Reply<R> {
    fn drop(&mut self) {
        // Tells the caller why. A panicking handler's locals are dropped
        // while the panic unwinds, before the runtime catches it and marks
        // the actor stopped, so "panicking" must be decided here.
        if let Some(tx) = self.0.take() {
            let why = if std::thread::panicking() {
                CallError::Stopped
            } else {
                CallError::NoReply
            };
            let _ = tx.send(Err(why));
        }
    }
}

impl<R> fmt::Debug for Reply<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reply(..)")
    }
}
