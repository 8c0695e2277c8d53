//! [`Context`], what a handler gets besides its message.

use std::time::Duration;

use crate::addr::STOPPING;
use crate::{Actor, Addr, Timer};

/// The actor's view of itself while it runs: its own address, stopping
/// from inside, and timers.
pub struct Context<A: Actor> {
    /// The actor's own address (for posting to itself, handing out, or
    /// timers). Holding it does not keep the actor alive: actors live until
    /// stopped, not until unreferenced.
    addr: Addr<A>,
}

impl<A: Actor> Context<A> {
    pub(crate) fn new(addr: Addr<A>) -> Self {
        Self { addr }
    }

    /// The actor's own address.
    pub fn addr(&self) -> &Addr<A> {
        &self.addr
    }

    /// Stops the actor once the current handler returns: queued messages
    /// are dropped (their callers get [`CallError::Stopped`](crate::CallError::Stopped)),
    /// new posts fail at once, then `stopped` runs. Same as
    /// [`Addr::stop`].
    pub fn stop(&self) {
        self.addr.shared.request(STOPPING);
    }

    /// True once a stop or close was requested.
    pub fn is_stopping(&self) -> bool {
        self.addr.is_stopped()
    }

    /// [`Addr::run_later`] on this actor.
    pub fn run_later(&self, delay: Duration, msg: A::Msg) -> Timer {
        self.addr.run_later(delay, msg)
    }

    /// [`Addr::run_interval`] on this actor.
    pub fn run_interval<F>(&self, period: Duration, make: F) -> Timer
    where
        F: FnMut() -> A::Msg + Send + 'static,
    {
        self.addr.run_interval(period, make)
    }
}
