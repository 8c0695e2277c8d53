//! Starting an actor ([`spawn`], [`Builder`]) and the loop its task runs.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::mpsc::{self, error::TryRecvError};
use tokio_util::task::TaskTracker;
use tracing::error;

use crate::addr::{Shared, CLOSING, STOPPED, STOPPING};
use crate::{Actor, Addr, Context};

/// Mailbox capacity of [`spawn`]: deep enough that a burst from many
/// posters rarely sees `Full`, small enough (a few tens of KiB per actor
/// for small messages) that a stuck actor cannot take the memory with it.
pub const DEFAULT_MAILBOX: usize = 1024;

/// Messages an actor handles in a row before it yields its worker thread.
///
/// A handler that never waits (its awaits are all ready) would otherwise
/// keep the worker for as long as its mailbox refills: tokio's cooperative
/// budget does not see a mailbox read with `try_recv`. 64 keeps one turn of
/// a busy actor to tens of microseconds for cheap messages, about the
/// slice tokio's own budget (128 operations) gives a task, so other actors
/// on that worker get their turn; a yield costs a trip through the
/// scheduler, and spread over 64 messages that is a few nanoseconds each.
pub const TURNS_BEFORE_YIELD: u32 = 64;

/// Spawns `actor` with a mailbox of [`DEFAULT_MAILBOX`] on the current
/// tokio runtime and returns its address.
///
/// # Panics
///
/// Outside a tokio runtime, like `tokio::spawn`.
pub fn spawn<A: Actor>(actor: A) -> Addr<A> {
    Builder::new().spawn(actor)
}

/// Options for starting an actor: mailbox capacity, the tracker that owns
/// its task, a name for log lines.
#[derive(Debug, Clone)]
pub struct Builder {
    /// Mailbox capacity.
    mailbox: usize,
    /// Owner of the actor's task and timers; `None`: the runtime.
    tracker: Option<TaskTracker>,
    /// For log lines; defaults to the actor's type name.
    name: Option<String>,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// Defaults: [`DEFAULT_MAILBOX`], spawned on the runtime, named after
    /// the actor's type.
    pub fn new() -> Self {
        Self {
            mailbox: DEFAULT_MAILBOX,
            tracker: None,
            name: None,
        }
    }

    /// Mailbox capacity (at least 1).
    pub fn mailbox(mut self, capacity: usize) -> Self {
        self.mailbox = capacity.max(1);
        self
    }

    /// Spawns the actor's task and its timers on `tracker`, so that
    /// `tracker.wait()` also waits for the actor to finish `stopped`.
    pub fn tracker(mut self, tracker: &TaskTracker) -> Self {
        self.tracker = Some(tracker.clone());
        self
    }

    /// The actor's name in log lines.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Starts `actor` and returns its address.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, like `tokio::spawn`.
    pub fn spawn<A: Actor>(self, actor: A) -> Addr<A> {
        let (tx, rx) = mpsc::channel(self.mailbox);
        let name = self
            .name
            .unwrap_or_else(|| std::any::type_name::<A>().to_owned());
        let shared = Arc::new(Shared::new(self.tracker, name));
        let addr = Addr { tx, shared };
        addr.shared.spawn(run(
            actor,
            Context::new(addr.clone()),
            addr.shared.clone(),
            rx,
        ));
        addr
    }
}

/// The actor's task: `started`, then one message at a time until a stop,
/// then `stopped`.
async fn run<A: Actor>(
    mut actor: A,
    mut ctx: Context<A>,
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<A::Msg>,
) {
    let mut ok = guarded(&shared, "started", actor.started(&mut ctx)).await;
    let mut closed = false;
    let mut turns = 0;
    while ok {
        let mode = shared.mode();
        if mode >= STOPPING {
            break;
        }
        if mode == CLOSING && !closed {
            // New posts already fail on the mode; closing the channel also
            // fails posters that were waiting for room, and makes `recv`
            // end once the queue is empty.
            rx.close();
            closed = true;
        }
        let msg = match rx.try_recv() {
            Ok(m) => m,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) if closed => match rx.recv().await {
                Some(m) => m,
                None => break,
            },
            // Idle: sleep until a message or a stop request. Only here does
            // the loop touch the wake token, so a busy actor pays no lock
            // per message.
            Err(TryRecvError::Empty) => tokio::select! {
                biased;
                _ = shared.wake.cancelled() => continue,
                m = rx.recv() => match m {
                    Some(m) => m,
                    None => break,
                },
            },
        };
        ok = guarded(&shared, "handle", actor.handle(msg, &mut ctx)).await;
        turns += 1;
        if turns >= TURNS_BEFORE_YIELD {
            turns = 0;
            tokio::task::yield_now().await;
        }
    }
    // Out of the loop: refuse posts, then drop what is queued (their
    // `Reply`s fail the callers with Stopped, as the mode already says).
    shared.request(STOPPED);
    rx.close();
    while rx.try_recv().is_ok() {}
    shared.ended.cancel();
    guarded(&shared, "stopped", actor.stopped(&mut ctx)).await;
    drop(actor);
    drop(ctx);
    shared.terminated.cancel();
}

/// Runs one hook or handler; a panic in it is logged in one line and
/// stops the actor (returns false). The mode is raised before the
/// panicked future is dropped, so a `Reply` it held fails its caller with
/// `Stopped`, not `NoReply`.
async fn guarded(shared: &Shared, what: &str, fut: impl std::future::Future<Output = ()>) -> bool {
    // AssertUnwindSafe: after a panic the state is never handed another
    // message; only `stopped` sees it, documented as such.
    let mut fut = pin!(AssertUnwindSafe(fut).catch_unwind());
    match fut.as_mut().await {
        Ok(()) => true,
        Err(panic) => {
            shared.request(STOPPED);
            error!(
                "Actor {} panicked in {what}: {}; it is stopped",
                shared.name,
                panic_message(&*panic)
            );
            false
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)")
}
