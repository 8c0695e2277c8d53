//! Where rooms run, and how a request reaches one.
//!
//! [`RoomHost`] holds every registered room kind; each kind
//! ([`KindRuntime`]) has the table of its rooms running on this game
//! server. A request for a room ([`RoomHost::call`]) goes to the game
//! server the placement names: served here if that is us, else forwarded
//! (the core carries the encoded request over the mesh and hands it to
//! [`RoomHost::serve_here`] there). The receiving game server always
//! serves what it gets, even if its own view of the placement differs,
//! so a request never bounces; the lease decides who may run the room.
//!
//! When a room is starting, moving or restarting, it answers "retry";
//! `call` asks again with a short backoff until the call's time budget is
//! spent, so game code rarely sees those moments.
//!
//! [`RoomHost::sweep`] runs every `restart_every` (and at once when the
//! core says the cluster changed): it starts the rooms the placement now
//! gives this game server that are not running here (a dead game
//! server's rooms, restored from their checkpoints), and hands off the
//! rooms it runs that the placement now gives to another.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use gamemesh_actors::{Addr, Builder, CallError, PostError};
use prost::Message;
use tracing::debug;

use super::actor::{RoomActor, RoomMsg};
use super::wire::{RoomOp, RoomReply, RoomRequest, RoomStatus};
use super::{KindConfig, Room, RoomKey};
use crate::api::error::GameError;
use crate::api::game::Game;

/// Requests queued per room before new ones wait (they are bounded by
/// the call's time budget).
const ROOM_MAILBOX: usize = 1024;
/// First pause before asking a room again; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(20);
/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(250);

/// One room kind's rooms running here.
pub(crate) struct KindRuntime<R: Room> {
    /// The kind's settings.
    pub(crate) config: KindConfig,
    /// Running rooms by name. A room leaves the table before it stops;
    /// requests that reach a stopping room are answered "retry".
    table: Mutex<HashMap<String, Addr<RoomActor<R>>>>,
    /// `gamemesh_room_ticks_total{kind}`, registered on first use (the
    /// kind is built before the game server installs its recorder), so a
    /// tick costs no label allocation.
    ticks: std::sync::OnceLock<metrics::Counter>,
}

impl<R: Room> KindRuntime<R> {
    pub(crate) fn new(config: KindConfig) -> Self {
        Self {
            config,
            table: Mutex::new(HashMap::new()),
            ticks: std::sync::OnceLock::new(),
        }
    }

    /// The kind's tick counter.
    pub(crate) fn ticks(&self) -> &metrics::Counter {
        self.ticks.get_or_init(
            || metrics::counter!("gamemesh_room_ticks_total", "kind" => self.config.name.clone()),
        )
    }

    fn table(&self) -> MutexGuard<'_, HashMap<String, Addr<RoomActor<R>>>> {
        // Critical sections are map operations: never torn.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The room's actor here, started if needed; `None` while shutting
    /// down.
    fn addr(self: &Arc<Self>, game: &Game, name: &str) -> Option<Addr<RoomActor<R>>> {
        let mut table = self.table();
        if game.shutdown_token().is_cancelled() || game.is_crashed() {
            return None;
        }
        if let Some(a) = table.get(name) {
            if !a.is_stopped() {
                return Some(a.clone());
            }
        }
        let key = RoomKey {
            kind: self.config.name.clone(),
            name: name.to_string(),
        };
        let addr = Builder::new()
            .mailbox(ROOM_MAILBOX)
            .tracker(game.tracker())
            .name(format!("room {key}"))
            .spawn(RoomActor::new(self.clone(), game.clone(), key));
        table.insert(name.to_string(), addr.clone());
        Some(addr)
    }

    /// Takes `addr` out of the table if it is still there (it stops).
    pub(crate) fn forget(&self, name: &str, addr: &Addr<RoomActor<R>>) {
        let mut table = self.table();
        if table.get(name).is_some_and(|a| a.same_actor(addr)) {
            table.remove(name);
        }
    }
}

/// A room kind without its type, as the host holds it.
pub(crate) trait KindHost: Send + Sync {
    /// The kind's settings.
    fn config(&self) -> &KindConfig;
    /// Serves `req` on the room's actor here (started if needed).
    fn serve(self: Arc<Self>, game: Game, req: RoomRequest) -> BoxFuture<'static, RoomReply>;
    /// Names of the rooms running here.
    fn running(&self) -> Vec<String>;
    /// Starts room `name` here if it is not running.
    fn ensure(self: Arc<Self>, game: &Game, name: &str);
    /// Asks room `name` to save, let go and stop.
    fn hand_off(&self, name: &str);
    /// Every room: hands off (`crash` false) or just stops (`crash` true:
    /// a simulated death, nothing saved or released); resolves once all
    /// have stopped.
    fn stop_all(&self, crash: bool) -> BoxFuture<'static, ()>;
}

impl<R: Room> KindHost for KindRuntime<R> {
    fn config(&self) -> &KindConfig {
        &self.config
    }

    fn serve(self: Arc<Self>, game: Game, req: RoomRequest) -> BoxFuture<'static, RoomReply> {
        Box::pin(async move {
            let Some(addr) = self.addr(&game, &req.room) else {
                return RoomReply::retry("game server shutting down");
            };
            let timeout = game.settings().call_timeout;
            match tokio::time::timeout(timeout, addr.call(|r| RoomMsg::Request(req, r))).await {
                Ok(Ok(reply)) => reply,
                // It stopped first: held elsewhere, moving, emptied or
                // restarting. Asking again finds out.
                Ok(Err(CallError::Stopped)) => RoomReply::retry("room restarting"),
                Ok(Err(CallError::NoReply)) => {
                    RoomReply::failed(RoomStatus::Internal, "the room dropped the request")
                }
                Err(_) => RoomReply::failed(
                    RoomStatus::Unavailable,
                    format!("the room did not answer within {timeout:?}"),
                ),
            }
        })
    }

    fn running(&self) -> Vec<String> {
        self.table().keys().cloned().collect()
    }

    fn ensure(self: Arc<Self>, game: &Game, name: &str) {
        let _ = self.addr(game, name);
    }

    fn hand_off(&self, name: &str) {
        let addr = self.table().get(name).cloned();
        if let Some(a) = addr {
            if let Err(PostError::Full(_)) = a.try_post(RoomMsg::HandOff) {
                debug!(room = name, "hand-off deferred: mailbox full");
            }
        }
    }

    fn stop_all(&self, crash: bool) -> BoxFuture<'static, ()> {
        let rooms: Vec<_> = self.table().drain().map(|(_, a)| a).collect();
        for a in &rooms {
            // A crash stops at once; a hand-off that cannot be queued too.
            if crash || a.try_post(RoomMsg::HandOff).is_err() {
                a.stop();
            }
        }
        Box::pin(async move {
            for a in rooms {
                a.stopped().await;
            }
        })
    }
}

/// Every room kind of the game, by name and by type.
#[derive(Default)]
pub(crate) struct RoomHost {
    /// Kinds by name.
    kinds: HashMap<String, Arc<dyn KindHost>>,
    /// Kind names by room type, for `ctx.rooms::<R>()`.
    by_type: HashMap<TypeId, String>,
}

impl RoomHost {
    /// Adds kind `R`; false when its name or type is taken.
    pub(crate) fn add<R: Room>(&mut self, config: KindConfig) -> bool {
        let type_id = TypeId::of::<R>();
        if self.kinds.contains_key(&config.name) || self.by_type.contains_key(&type_id) {
            return false;
        }
        self.by_type.insert(type_id, config.name.clone());
        self.kinds
            .insert(config.name.clone(), Arc::new(KindRuntime::<R>::new(config)));
        true
    }

    /// The kind `R` is registered under.
    pub(crate) fn kind_of<R: Room>(&self) -> Result<&KindConfig, GameError> {
        self.by_type
            .get(&TypeId::of::<R>())
            .and_then(|name| self.kinds.get(name))
            .map(|k| k.config())
            .ok_or_else(|| {
                GameError::internal(format!(
                    "room type {} is not registered; add it with app.room(RoomKind::new(..))",
                    std::any::type_name::<R>()
                ))
            })
    }

    /// The settings of every kind.
    pub(crate) fn configs(&self) -> impl Iterator<Item = &KindConfig> {
        self.kinds.values().map(|k| k.config())
    }

    /// Names of the registered kinds.
    pub(crate) fn kind_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.kinds.keys().cloned().collect();
        names.sort();
        names
    }

    /// `"<kind>:<name>"` of every room running here, sorted (tests,
    /// gauges).
    pub(crate) fn running_rooms(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .kinds
            .iter()
            .flat_map(|(kind, k)| k.running().into_iter().map(move |r| format!("{kind}:{r}")))
            .collect();
        all.sort();
        all
    }

    /// Asks the room `req` names, wherever it runs, retrying while it
    /// starts or moves, within the call's time budget.
    pub(crate) async fn call(&self, game: &Game, req: RoomRequest) -> RoomReply {
        let budget = game.settings().call_timeout;
        let deadline = tokio::time::Instant::now() + budget;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let reply = self.attempt(game, &req).await;
            let again = reply.status() == RoomStatus::Unavailable && reply.retry;
            if !again || tokio::time::Instant::now() + backoff >= deadline {
                return reply;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn attempt(&self, game: &Game, req: &RoomRequest) -> RoomReply {
        let key = RoomKey {
            kind: req.kind.clone(),
            name: req.room.clone(),
        };
        let owner = game.placement().owner(&key);
        if owner == game.node_id() {
            return self.serve_here(game, req.clone()).await;
        }
        let sent = game
            .placement()
            .forward(owner, bytes::Bytes::from(req.encode_to_vec()))
            .await;
        match sent.map(RoomReply::decode) {
            Ok(Ok(reply)) => reply,
            // The room answered, so it ran: not asked again.
            Ok(Err(e)) => {
                RoomReply::failed(RoomStatus::Internal, format!("undecodable room reply: {e}"))
            }
            // Never reached the room's game server: asking again is safe.
            Err(e) if e.is_nothing_happened() => {
                RoomReply::retry(format!("room's game server {owner}: {}", e.detail()))
            }
            // Sent, no answer: the room may have done it; asking again
            // could do it twice.
            Err(e) => RoomReply::failed(
                RoomStatus::Unavailable,
                format!("room's game server {owner}: {}", e.detail()),
            ),
        }
    }

    /// Serves `req` on this game server, whatever the placement says.
    pub(crate) async fn serve_here(&self, game: &Game, req: RoomRequest) -> RoomReply {
        let Some(kind) = self.kinds.get(&req.kind).cloned() else {
            return RoomReply::failed(
                RoomStatus::Internal,
                format!("no room kind \"{}\" on this game server", req.kind),
            );
        };
        if !super::valid_room_name(&req.room) {
            return RoomReply::failed(RoomStatus::Refused, "bad room name");
        }
        if RoomOp::try_from(req.op).is_err() {
            return RoomReply::failed(RoomStatus::Internal, "unknown room operation");
        }
        kind.serve(game.clone(), req).await
    }

    /// Starts the rooms placed here that do not run here; hands off the
    /// ones that run here but are placed elsewhere now.
    pub(crate) async fn sweep(&self, game: &Game) {
        let me = game.node_id();
        for (name, kind) in &self.kinds {
            match game.room_store().rooms(name).await {
                Ok(rooms) => {
                    let running = kind.running();
                    for room in rooms.iter().filter(|r| !running.contains(r)) {
                        let key = RoomKey {
                            kind: name.clone(),
                            name: room.clone(),
                        };
                        if game.placement().owner(&key) == me {
                            kind.clone().ensure(game, room);
                        }
                    }
                }
                Err(e) => debug!(kind = %name, "room sweep cannot read the index: {e}"),
            }
            for room in kind.running() {
                let key = RoomKey {
                    kind: name.clone(),
                    name: room.clone(),
                };
                if game.placement().owner(&key) != me {
                    kind.hand_off(&room);
                }
            }
        }
    }

    /// Hands off every room (graceful stop) or stops them all as a crash
    /// would; resolves when all have stopped.
    /// The rooms are asked to stop at once (before the future is first
    /// polled), so a caller that cannot wait (a `Drop`) can drop it.
    pub(crate) fn stop_all(
        &self,
        crash: bool,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let waits: Vec<_> = self.kinds.values().map(|k| k.stop_all(crash)).collect();
        async move {
            futures::future::join_all(waits).await;
        }
    }
}
