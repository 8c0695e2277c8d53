//! [`Game`]: the handle game code holds at run time (in handlers through
//! [`Ctx`](super::Ctx), in rooms through [`RoomCx`](super::RoomCx), in
//! job and event handlers as their first argument): pushes, player data,
//! rooms, jobs and cluster events. And [`Services`], the seams the core
//! hands the API when it starts it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use gamemesh_jobs::{Event, EventBus, JobStore};
use prost::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::data::{Data, PlayerDataStore};
use super::error::GameError;
use super::placement::RoomPlacement;
use super::push::{Push, PushError, Pusher};
use super::room::client::{answer, SessionRooms};
use super::room::host::RoomHost;
use super::room::store::RoomStore;
use super::room::wire::{RoomOp, RoomRequest, WireLeave};
use super::room::{Room, RoomKey};
use super::sessions::SessionDirectory;

/// Timing of the room runtime, the same for every kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomSettings {
    /// How long a room's lease lasts without renewal: after its game
    /// server dies, its rooms restart elsewhere at most this long later
    /// (and after the cluster noticed the death).
    pub lease_ttl: Duration,
    /// How often each game server looks for rooms the placement gives it
    /// that do not run (a dead game server's) and rooms it runs that the
    /// placement gives another (it hands them off).
    pub restart_every: Duration,
    /// How often a room checks where its members' sessions are and drops
    /// those that ended (expired sessions leave within this).
    pub members_every: Duration,
    /// How long a call to a room may take, retries included.
    pub call_timeout: Duration,
}

impl Default for RoomSettings {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(2),
            restart_every: Duration::from_millis(250),
            members_every: Duration::from_secs(1),
            call_timeout: Duration::from_secs(2),
        }
    }
}

/// What the core gives the API: the seams to sessions, the cluster and
/// the stores, and the task owner.
#[derive(Clone)]
pub struct Services {
    /// This game server's node id.
    pub node_id: u64,
    /// Where pushes go.
    pub pusher: Arc<dyn Pusher>,
    /// Where rooms run.
    pub placement: Arc<dyn RoomPlacement>,
    /// Rooms' leases, checkpoints and indexes.
    pub rooms: Arc<dyn RoomStore>,
    /// Per-player data.
    pub data: Arc<dyn PlayerDataStore>,
    /// Where sessions are.
    pub sessions: Arc<dyn SessionDirectory>,
    /// Room runtime timing.
    pub settings: RoomSettings,
    /// Owns every task the API starts.
    pub tracker: TaskTracker,
    /// Stops them.
    pub shutdown: CancellationToken,
}

/// The jobs and events of the game server, once it has them (they need
/// Redis).
struct Background {
    /// The job store.
    jobs: JobStore,
    /// The cluster event bus.
    events: EventBus,
}

struct Inner {
    /// The seams.
    services: Services,
    /// Room kinds and the rooms running here.
    host: RoomHost,
    /// Set by the core after its background parts start.
    background: OnceLock<Background>,
    /// The rooms each session owned here is in.
    session_rooms: SessionRooms,
    /// Set by [`GameRuntime::crash`](super::GameRuntime::crash): behave as
    /// a dead process (write nothing more).
    crashed: AtomicBool,
}

/// Game code's handle on the game: cheap to clone, shared by every
/// handler, room and job of a game server.
#[derive(Clone)]
pub struct Game {
    inner: Arc<Inner>,
}

impl Game {
    pub(crate) fn new(services: Services, host: RoomHost) -> Self {
        Self {
            inner: Arc::new(Inner {
                services,
                host,
                background: OnceLock::new(),
                session_rooms: SessionRooms::default(),
                crashed: AtomicBool::new(false),
            }),
        }
    }

    /// This game server's node id.
    pub fn node_id(&self) -> u64 {
        self.inner.services.node_id
    }

    /// Pushes to players.
    pub fn push(&self) -> Pushes<'_> {
        Pushes { game: self }
    }

    /// `module`'s per-player data.
    pub fn data(&self, module: &str) -> Data {
        Data::new(self.inner.services.data.clone(), module)
    }

    /// The job store: enqueue jobs, inspect them. `UNAVAILABLE` on a game
    /// server without Redis.
    pub fn jobs(&self) -> Result<&JobStore, GameError> {
        self.background("jobs").map(|b| &b.jobs)
    }

    /// The cluster event bus. `UNAVAILABLE` on a game server without
    /// Redis.
    pub fn events(&self) -> Result<&EventBus, GameError> {
        self.background("events").map(|b| &b.events)
    }

    /// The parts that need Redis, for `what` (named in the refusal).
    fn background(&self, what: &str) -> Result<&Background, GameError> {
        self.inner.background.get().ok_or_else(|| {
            GameError::nothing_happened(format!("{what} need Redis (--session-store redis)"))
        })
    }

    /// Publishes `event` to every game server's handlers; returns how
    /// many game servers listened.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<usize, GameError> {
        self.events()?
            .publish(event)
            .await
            .map_err(|e| GameError::unavailable(e.to_string()))
    }

    /// Makes sure room `name` of kind `R` exists (creating it empty if
    /// not): for kinds whose rooms live on empty
    /// ([`RoomKind::keep_empty`](super::RoomKind::keep_empty)), the rooms
    /// that are always there.
    pub async fn ensure_room<R: Room>(&self, name: &str) -> Result<(), GameError> {
        let kind = self.host().kind_of::<R>()?.name.clone();
        let key = RoomKey::new(&kind, name)
            .ok_or_else(|| GameError::internal(format!("\"{name}\" is not a room name")))?;
        let req = RoomRequest {
            kind,
            room: key.name,
            op: RoomOp::Ensure as i32,
            ..RoomRequest::default()
        };
        let reply = self.host().call(self, req).await;
        answer::<()>(reply, name)
    }

    /// Resolves when the game server stops: for a module's own loops.
    pub async fn stopping(&self) {
        self.shutdown_token().cancelled().await;
    }

    pub(crate) fn attach_background(&self, jobs: JobStore, events: EventBus) {
        let _ = self.inner.background.set(Background { jobs, events });
    }

    pub(crate) fn host(&self) -> &RoomHost {
        &self.inner.host
    }

    pub(crate) fn pusher(&self) -> &dyn Pusher {
        &*self.inner.services.pusher
    }

    pub(crate) fn placement(&self) -> &dyn RoomPlacement {
        &*self.inner.services.placement
    }

    pub(crate) fn room_store(&self) -> &dyn RoomStore {
        &*self.inner.services.rooms
    }

    pub(crate) fn sessions(&self) -> &dyn SessionDirectory {
        &*self.inner.services.sessions
    }

    pub(crate) fn settings(&self) -> &RoomSettings {
        &self.inner.services.settings
    }

    pub(crate) fn tracker(&self) -> &TaskTracker {
        &self.inner.services.tracker
    }

    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.services.shutdown
    }

    pub(crate) fn session_rooms(&self) -> &SessionRooms {
        &self.inner.session_rooms
    }

    pub(crate) fn is_crashed(&self) -> bool {
        self.inner.crashed.load(Ordering::Acquire)
    }

    pub(crate) fn mark_crashed(&self) {
        self.inner.crashed.store(true, Ordering::Release);
    }

    /// Asks room `room` of kind `kind` to do `op` for no member (a
    /// broadcast) or for a member (a leave or relocate from the core).
    pub(crate) async fn room_op(&self, key: &RoomKey, op: RoomOp, member: (u64, u64, u64)) {
        let req = RoomRequest {
            kind: key.kind.clone(),
            room: key.name.clone(),
            op: op as i32,
            user_id: member.0,
            session_id: member.1,
            node: member.2,
            payload: Bytes::new(),
            route: String::new(),
            leave: WireLeave::SessionEnded as i32,
        };
        let _ = self.host().call(self, req).await;
    }
}

/// Pushes to players, from anywhere game code runs.
pub struct Pushes<'a> {
    /// The game.
    game: &'a Game,
}

impl Pushes<'_> {
    /// Pushes `msg` under `route` to `user_id`'s live session wherever it
    /// is connected. `Ok(false)` when the user is not connected.
    pub async fn to_user<M: Message>(
        &self,
        user_id: u64,
        route: &str,
        msg: &M,
    ) -> Result<bool, GameError> {
        let push = Push::new(route, msg)?;
        match self.game.pusher().to_user(user_id, &push).await {
            Ok(()) => Ok(true),
            Err(PushError::Offline) => Ok(false),
            Err(PushError::Unavailable(d)) => Err(GameError::NothingHappened(d)),
        }
    }

    /// Pushes `push` (a `GamePush`, or a contract body built with
    /// [`Push::packet`]) to `user_id`'s live session wherever it is
    /// connected. `Ok(false)` when the user is not connected.
    pub async fn send_to_user(&self, user_id: u64, push: &Push) -> Result<bool, GameError> {
        match self.game.pusher().to_user(user_id, push).await {
            Ok(()) => Ok(true),
            Err(PushError::Offline) => Ok(false),
            Err(PushError::Unavailable(d)) => Err(GameError::NothingHappened(d)),
        }
    }

    /// Pushes `msg` under `route` to every session connected anywhere.
    pub fn to_everyone<M: Message>(&self, route: &str, msg: &M) -> Result<(), GameError> {
        let push = Push::new(route, msg)?;
        self.game.pusher().to_everyone(&push);
        Ok(())
    }

    /// Pushes `msg` under `route` to every member of room `room` of kind
    /// `R`, through the room (so it is ordered with the room's own
    /// pushes). Nothing happens for a room that does not exist.
    pub async fn to_room<R: Room, M: Message>(
        &self,
        room: &str,
        route: &str,
        msg: &M,
    ) -> Result<(), GameError> {
        let push = Push::new(route, msg)?;
        let kind = self.game.host().kind_of::<R>()?.name.clone();
        let key = RoomKey::new(&kind, room)
            .ok_or_else(|| GameError::internal(format!("\"{room}\" is not a room name")))?;
        let req = RoomRequest {
            kind,
            room: key.name.clone(),
            op: RoomOp::Broadcast as i32,
            payload: push.encoded().clone(),
            ..RoomRequest::default()
        };
        let reply = self.game.host().call(self.game, req).await;
        answer::<()>(reply, room)
    }
}
