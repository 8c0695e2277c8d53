//! The [`Actor`] trait: state plus a handler for one message type.

use std::future::Future;

use crate::Context;

/// An actor owns its state and handles one message at a time.
///
/// `handle` may await anything (Redis, another actor's
/// [`call`](crate::Addr::call), a timer); the actor stays exclusive until
/// that future finishes, so the next message never starts early and the
/// state needs no lock. Implement the methods with `async fn`; the futures
/// must be `Send` because any tokio worker may run the actor.
///
/// ```
/// use gamemesh_actors::{Actor, Context, Reply};
///
/// struct Counter(u64);
///
/// enum CounterMsg {
///     Add(u64),
///     Get(Reply<u64>),
/// }
///
/// impl Actor for Counter {
///     type Msg = CounterMsg;
///
///     async fn handle(&mut self, msg: CounterMsg, _ctx: &mut Context<Self>) {
///         match msg {
///             CounterMsg::Add(n) => self.0 += n,
///             CounterMsg::Get(reply) => reply.send(self.0),
///         }
///     }
/// }
///
/// # #[tokio::main] async fn main() {
/// let counter = gamemesh_actors::spawn(Counter(0));
/// counter.try_post(CounterMsg::Add(2)).unwrap();
/// assert_eq!(counter.call(CounterMsg::Get).await, Ok(2));
/// counter.stop();
/// counter.stopped().await;
/// # }
/// ```
pub trait Actor: Send + Sized + 'static {
    /// What the actor's mailbox carries; usually an enum, with a
    /// [`Reply`](crate::Reply) in the variants that answer.
    type Msg: Send + 'static;

    /// Runs once on the actor's task before the first message. Messages
    /// posted meanwhile wait in the mailbox.
    fn started(&mut self, ctx: &mut Context<Self>) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        async {}
    }

    /// Handles one message; the next one starts only after this returns.
    fn handle(
        &mut self,
        msg: Self::Msg,
        ctx: &mut Context<Self>,
    ) -> impl Future<Output = ()> + Send;

    /// Runs once after the last message, however the actor stopped (from
    /// its address, from its context, after draining, or after a panic in
    /// `handle`). The mailbox is already closed and the timers cancelled.
    /// After a panic the state may break invariants the handler was in the
    /// middle of restoring; cleanup here should only rely on what it checks.
    fn stopped(&mut self, ctx: &mut Context<Self>) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        async {}
    }
}
