//! Timers: a message posted to an actor after a delay, or periodically.
//!
//! Each timer is a small task that sleeps and then posts like any other
//! poster, so a timer message queues behind earlier messages and never
//! interrupts a handler. The task watches the actor's `ended` token, so no
//! timer outlives its actor.

use std::time::Duration;

use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::{Actor, Addr};

/// A running timer. Dropping it leaves the timer running (fire and
/// forget); [`cancel`](Timer::cancel) ends it.
#[derive(Debug, Clone)]
pub struct Timer {
    /// Cancels this timer only.
    cancel: CancellationToken,
    /// Cancelled when the timer's task has ended: from then on it cannot
    /// post anything.
    done: CancellationToken,
}

impl Timer {
    /// Stops the timer. A message it already posted stays queued, and
    /// one it is posting at this very moment may still arrive; once
    /// [`is_finished`](Self::is_finished), nothing more comes.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// True once the timer's task has ended (cancelled, fired if a
    /// one-shot, or ended with its actor): it posts nothing more.
    pub fn is_finished(&self) -> bool {
        self.done.is_cancelled()
    }
}

pub(crate) fn later<A: Actor>(addr: Addr<A>, delay: Duration, msg: A::Msg) -> Timer {
    let fire = {
        let addr = addr.clone();
        async move {
            tokio::time::sleep(delay).await;
            // Err: the actor stopped meanwhile; nobody to tell.
            let _ = addr.post(msg).await;
        }
    };
    start(addr, fire)
}

pub(crate) fn interval<A, F>(addr: Addr<A>, period: Duration, mut make: F) -> Timer
where
    A: Actor,
    F: FnMut() -> A::Msg + Send + 'static,
{
    let fire = {
        let addr = addr.clone();
        async move {
            let mut tick = interval_at(Instant::now() + period, period);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if addr.post(make()).await.is_err() {
                    return;
                }
            }
        }
    };
    start(addr, fire)
}

fn start<A: Actor>(
    addr: Addr<A>,
    fire: impl std::future::Future<Output = ()> + Send + 'static,
) -> Timer {
    let timer = Timer {
        cancel: CancellationToken::new(),
        done: CancellationToken::new(),
    };
    let (cancel, done) = (timer.cancel.clone(), timer.done.clone());
    let shared = addr.shared.clone();
    let ended = shared.ended.clone();
    shared.spawn(async move {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {}
            _ = ended.cancelled() => {}
            _ = fire => {}
        }
        drop(addr);
        done.cancel();
    });
    timer
}
