//! gamemesh's actor runtime, on tokio.
//!
//! An actor owns its state and handles one message at a time; any tokio
//! worker thread runs any actor, so all cores stay busy and no lock guards
//! game state. The game server's client sessions are actors of this kind,
//! and so are chat rooms.
//!
//! # The model
//!
//! - **An actor** implements [`Actor`]: a message type, an async
//!   [`handle`](Actor::handle), and optional [`started`](Actor::started) /
//!   [`stopped`](Actor::stopped) hooks. [`spawn()`] (or [`Builder`]) starts it
//!   as one tokio task and returns its [`Addr`], cheap to clone and share.
//! - **One message at a time.** The task takes a message, awaits its
//!   handler to the end, then takes the next. A handler that awaits Redis,
//!   another actor or a timer keeps the actor exclusive meanwhile: the
//!   next message never starts early. While it waits, its worker thread
//!   runs other actors. Messages from one poster are handled in the order
//!   it posted them (the mailbox is FIFO); posts from different posters
//!   interleave.
//! - **Posting only enqueues** ([`Addr::try_post`], [`Addr::post`]). It
//!   wakes the actor's task and returns; it never runs the handler on the
//!   poster's stack. A chain A -> B -> C -> ... is a series of separate
//!   task polls, so it never deepens the stack however long it is.
//! - **Fairness.** A busy actor yields its worker after
//!   [`TURNS_BEFORE_YIELD`] (64) messages in a row, so it cannot starve
//!   the other actors on that worker (why 64: see the constant).
//! - **Request/response.** [`Addr::call`] posts a message carrying a
//!   [`Reply`] and awaits the answer.
//! - **Timers.** [`Addr::run_later`] / [`Addr::run_interval`] (also on
//!   [`Context`]) post a message after a delay or every period. They are
//!   ordinary posters, so a timer message queues behind earlier ones, and
//!   they end when the actor stops.
//!
//! # Mailboxes are bounded
//!
//! Every mailbox has a capacity ([`DEFAULT_MAILBOX`], or
//! [`Builder::mailbox`]). An unbounded mailbox hides an overloaded actor
//! until the process runs out of memory; a bounded one makes the overload
//! visible to the poster, who is the one that can do something about it.
//! The poster picks the back-pressure:
//!
//! - [`try_post`](Addr::try_post) never waits and fails with
//!   [`PostError::Full`]: shed load at the edge. The hub does this with
//!   client frames and answers `RATE_LIMITED`, so one client flooding its
//!   session cannot grow the server's memory.
//! - [`post`](Addr::post) (and [`call`](Addr::call)) wait for room, so the
//!   poster slows down to the actor's pace. Never wait on your own mailbox
//!   or around a cycle of actors that can all be full; use `try_post`
//!   there.
//!
//! # Stopping
//!
//! Actors live until stopped, not until their last address is dropped
//! (as in Akka and ractor: an actor's timers and its own context hold its
//! address, and an actor that vanished because a map entry was dropped
//! would be a bug that is hard to see).
//!
//! - [`Addr::stop`] and [`Context::stop`]: the current handler finishes
//!   (an actor is never interrupted inside a handler), queued messages are
//!   dropped, `stopped` runs.
//! - [`Addr::close`]: no new messages, but the queued ones are handled
//!   first (a poison pill that cannot be refused by a full mailbox).
//! - From the moment a stop is requested, posts fail with
//!   [`PostError::Stopped`] (the message comes back), and a call gets
//!   [`CallError::Stopped`]: also a call whose request was still queued,
//!   or whose handler was running when it stopped without answering.
//!   Nothing hangs. (A post that raced the stop request may be accepted
//!   and then dropped with the queue, as in any actor system.)
//! - [`Addr::stopped`] waits until `stopped` has run and the state is
//!   dropped; with [`Builder::tracker`], so does the tracker.
//!
//! # Panics
//!
//! A panic in a handler (or a hook) stops that actor: one ERROR line names
//! the actor and the panic, queued messages are dropped, callers get
//! [`CallError::Stopped`], and `stopped` still runs so the actor can clean
//! up (a session saves itself). It is not restarted: state a handler left
//! half-updated is not trustworthy, and the owner (who holds the address
//! and sees [`PostError::Stopped`]) knows better than the runtime whether
//! and how to start a fresh one. Other actors are unaffected.
//!
//! # Modules
//!
//! [`actor`] (the trait), [`addr`] (addresses, posting, calls, stop),
//! [`context`] (a handler's view of itself), [`timer`], [`spawn`](mod@spawn)
//! (starting, and the loop each actor's task runs), [`error`].

#![forbid(unsafe_code)]

pub mod actor;
pub mod addr;
pub mod context;
pub mod error;
pub mod spawn;
pub mod timer;

pub use actor::Actor;
pub use addr::{ActorId, Addr, Reply};
pub use context::Context;
pub use error::{CallError, PostError};
pub use spawn::{spawn, Builder, DEFAULT_MAILBOX, TURNS_BEFORE_YIELD};
pub use timer::Timer;
