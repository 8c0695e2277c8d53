//! Running modules without a cluster: for a module's unit tests (the
//! arena's rules, a studio's handlers) and for the API's own tests.
//!
//! - [`TestGame`]: one game server in memory. Log players in, call routes
//!   as they would, read the pushes each received. Rooms tick on tokio's
//!   clock, so `tokio::time::pause()` makes ticks exact.
//! - [`MemoryCluster`]: several game servers in one process sharing the
//!   memory stores, with rendezvous placement, forwarding between them,
//!   per-node views of who is alive (to split the cluster), and crashes.
//!   What the core's mesh does over ZeroMQ, done with function calls.
//!
//! Both use the memory twins of every seam: [`MemorySessions`],
//! [`MemoryPusher`], [`MemoryRoomStore`], [`MemoryPlayerData`].

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
use prost::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::app::App;
use super::context::Caller;
use super::data::memory::MemoryPlayerData;
use super::data::PlayerDataStore;
use super::error::GameError;
use super::game::{Game, RoomSettings, Services};
use super::placement::{rendezvous, RoomPlacement, SingleNode};
use super::push::MemoryPusher;
use super::room::store::{MemoryRoomStore, RoomStore};
use super::room::RoomKey;
use super::runtime::GameRuntime;
use super::sessions::{MemorySessions, SessionAt};

/// How long the waiting helpers wait before they fail the test.
pub const WAIT: Duration = Duration::from_secs(5);

/// The node id of a [`TestGame`].
pub const TEST_NODE: u64 = 1;

/// The memory twins, shared by the game servers of one test.
#[derive(Clone)]
pub struct MemoryParts {
    /// Who is connected where.
    pub sessions: Arc<MemorySessions>,
    /// What each player received.
    pub pusher: Arc<MemoryPusher>,
    /// Rooms' leases, checkpoints, indexes.
    pub rooms: Arc<MemoryRoomStore>,
    /// Player data.
    pub data: Arc<MemoryPlayerData>,
    /// The room store game servers get: `rooms`, unless replaced (by
    /// Redis, say) with [`with_stores`](Self::with_stores).
    pub room_store: Arc<dyn RoomStore>,
    /// The player-data store game servers get: `data`, unless replaced.
    pub data_store: Arc<dyn PlayerDataStore>,
}

impl Default for MemoryParts {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryParts {
    /// Fresh twins (the pusher delivers by these sessions).
    pub fn new() -> Self {
        let sessions = Arc::new(MemorySessions::default());
        let rooms = Arc::new(MemoryRoomStore::new());
        let data = Arc::new(MemoryPlayerData::new());
        Self {
            pusher: Arc::new(MemoryPusher::new(sessions.clone())),
            sessions,
            room_store: rooms.clone(),
            data_store: data.clone(),
            rooms,
            data,
        }
    }

    /// Memory sessions and pushes, with these stores (real Redis ones,
    /// for tests of the Redis backends under the room runtime).
    pub fn with_stores(
        room_store: Arc<dyn RoomStore>,
        data_store: Arc<dyn PlayerDataStore>,
    ) -> Self {
        Self {
            room_store,
            data_store,
            ..Self::new()
        }
    }

    /// Waits for the next push to `user` on `route` that `pick` accepts
    /// (earlier ones are consumed).
    ///
    /// # Panics
    ///
    /// If none comes within [`WAIT`].
    pub async fn push_where<M, F>(&self, user: u64, route: &str, pick: F) -> M
    where
        M: Message + Default,
        F: FnMut(&M) -> bool,
    {
        self.pusher
            .wait_for(user, route, WAIT, pick)
            .await
            .unwrap_or_else(|| panic!("no {route} push for user {user} within {WAIT:?}"))
    }

    /// Services for game server `node_id` on these twins.
    pub fn services(
        &self,
        node_id: u64,
        placement: Arc<dyn RoomPlacement>,
        settings: RoomSettings,
    ) -> Services {
        Services {
            node_id,
            pusher: self.pusher.clone(),
            placement,
            rooms: self.room_store.clone(),
            data: self.data_store.clone(),
            sessions: self.sessions.clone(),
            settings,
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        }
    }
}

/// Calls `route` as `caller` the way the pipeline does: a panicking
/// handler is `INTERNAL`, not a failed test.
async fn call_raw(
    runtime: &GameRuntime,
    caller: Caller,
    route: &str,
    payload: Bytes,
) -> Result<Bytes, GameError> {
    match AssertUnwindSafe(runtime.dispatch(caller, 0, route, payload))
        .catch_unwind()
        .await
    {
        Ok(out) => out,
        Err(_) => Err(GameError::internal("the handler panicked")),
    }
}

fn decode<Resp: Message + Default>(out: Result<Bytes, GameError>) -> Result<Resp, GameError> {
    out.and_then(|b| {
        Resp::decode(b).map_err(|e| GameError::internal(format!("answer does not decode: {e}")))
    })
}

/// One game server in memory, with its modules.
pub struct TestGame {
    /// The started game.
    runtime: GameRuntime,
    /// The memory twins.
    pub parts: MemoryParts,
    /// Owns the game's tasks.
    tracker: TaskTracker,
    /// Stops them.
    shutdown: CancellationToken,
    /// Next session id handed out by [`login`](Self::login).
    next_session: AtomicU64,
}

impl TestGame {
    /// Starts `app`'s modules with the default room settings.
    ///
    /// # Panics
    ///
    /// If the modules registered something that cannot run.
    pub fn start(app: App) -> Self {
        Self::start_with(app, RoomSettings::default())
    }

    /// Starts `app`'s modules with `settings`.
    ///
    /// # Panics
    ///
    /// If the modules registered something that cannot run.
    pub fn start_with(app: App, settings: RoomSettings) -> Self {
        let parts = MemoryParts::new();
        let services = parts.services(TEST_NODE, Arc::new(SingleNode(TEST_NODE)), settings);
        let (tracker, shutdown) = (services.tracker.clone(), services.shutdown.clone());
        let runtime = app
            .start(services)
            .unwrap_or_else(|e| panic!("the modules cannot start: {e}"));
        Self {
            runtime,
            parts,
            tracker,
            shutdown,
            next_session: AtomicU64::new(100),
        }
    }

    /// The started game.
    pub fn runtime(&self) -> &GameRuntime {
        &self.runtime
    }

    /// The game handle.
    pub fn game(&self) -> &Game {
        self.runtime.game()
    }

    /// Logs `user` in: a new session, connected here (an older session of
    /// the user is replaced, as a real login replaces it).
    pub fn login(&self, user: u64) -> Caller {
        let session_id = self.next_session.fetch_add(1, Ordering::Relaxed);
        self.parts.sessions.set(
            user,
            SessionAt {
                session_id,
                node: TEST_NODE,
            },
        );
        Caller {
            user_id: user,
            session_id,
        }
    }

    /// Calls `route` with `req` as `caller` and decodes the answer.
    pub async fn call<Req: Message, Resp: Message + Default>(
        &self,
        caller: Caller,
        route: &str,
        req: &Req,
    ) -> Result<Resp, GameError> {
        decode(
            self.call_raw(caller, route, Bytes::from(req.encode_to_vec()))
                .await,
        )
    }

    /// Calls `route` with a raw payload as `caller`.
    pub async fn call_raw(
        &self,
        caller: Caller,
        route: &str,
        payload: Bytes,
    ) -> Result<Bytes, GameError> {
        call_raw(&self.runtime, caller, route, payload).await
    }

    /// [`MemoryParts::push_where`] on this game's twins.
    pub async fn push_where<M, F>(&self, user: u64, route: &str, pick: F) -> M
    where
        M: Message + Default,
        F: FnMut(&M) -> bool,
    {
        self.parts.push_where(user, route, pick).await
    }

    /// Waits for the next push to `user` on `route`.
    ///
    /// # Panics
    ///
    /// If none comes within [`WAIT`].
    pub async fn push<M: Message + Default>(&self, user: u64, route: &str) -> M {
        self.push_where(user, route, |_| true).await
    }

    /// Hands every room off and stops the game's tasks.
    pub async fn stop(&self) {
        self.runtime.shutdown().await;
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for TestGame {
    fn drop(&mut self) {
        self.shutdown.cancel();
        drop(self.runtime.game().host().stop_all(true));
    }
}

/// One game server of a [`MemoryCluster`].
struct Node {
    /// Its game.
    runtime: GameRuntime,
    /// Stops its tasks.
    shutdown: CancellationToken,
    /// False once crashed or stopped: out of every placement, unreachable.
    live: bool,
    /// Who it believes is alive, when a test split the cluster; `None`:
    /// the truth.
    view: Option<Vec<u64>>,
}

#[derive(Default)]
struct ClusterInner {
    /// Game servers by node id.
    nodes: Mutex<BTreeMap<u64, Node>>,
}

impl ClusterInner {
    fn nodes(&self) -> MutexGuard<'_, BTreeMap<u64, Node>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The placement of one game server of a [`MemoryCluster`].
struct ClusterPlacement {
    /// The cluster.
    cluster: Arc<ClusterInner>,
    /// Whose view.
    node: u64,
}

#[async_trait]
impl RoomPlacement for ClusterPlacement {
    fn owner(&self, room: &RoomKey) -> u64 {
        let nodes = self.cluster.nodes();
        let view: Vec<u64> = match nodes.get(&self.node).and_then(|n| n.view.clone()) {
            Some(v) => v,
            None => nodes
                .iter()
                .filter(|(_, n)| n.live)
                .map(|(id, _)| *id)
                .collect(),
        };
        rendezvous(&room.tag(), view).unwrap_or(self.node)
    }

    async fn forward(&self, node: u64, request: Bytes) -> Result<Bytes, GameError> {
        let runtime = {
            let nodes = self.cluster.nodes();
            nodes
                .get(&node)
                .filter(|n| n.live)
                .map(|n| n.runtime.clone())
        };
        match runtime {
            Some(r) => Ok(r.serve_room(request).await),
            None => Err(GameError::nothing_happened(format!(
                "game server {node} is down"
            ))),
        }
    }
}

/// Several game servers in one process, on shared memory stores.
pub struct MemoryCluster {
    /// The game servers.
    inner: Arc<ClusterInner>,
    /// The memory twins they share.
    pub parts: MemoryParts,
    /// Room timing of every node.
    settings: RoomSettings,
    /// Next session id.
    next_session: AtomicU64,
}

impl MemoryCluster {
    /// An empty cluster whose game servers use `settings`.
    pub fn new(settings: RoomSettings) -> Self {
        Self::with_parts(settings, MemoryParts::new())
    }

    /// An empty cluster on `parts` (stores replaced, say).
    pub fn with_parts(settings: RoomSettings, parts: MemoryParts) -> Self {
        Self {
            inner: Arc::new(ClusterInner::default()),
            parts,
            settings,
            next_session: AtomicU64::new(1000),
        }
    }

    /// Starts game server `node` with `app`'s modules; the others notice
    /// at once.
    ///
    /// # Panics
    ///
    /// If the modules cannot start.
    pub fn start_node(&self, node: u64, app: App) -> GameRuntime {
        let placement = Arc::new(ClusterPlacement {
            cluster: self.inner.clone(),
            node,
        });
        let services = self.parts.services(node, placement, self.settings);
        let shutdown = services.shutdown.clone();
        let runtime = app
            .start(services)
            .unwrap_or_else(|e| panic!("the modules cannot start: {e}"));
        self.inner.nodes().insert(
            node,
            Node {
                runtime: runtime.clone(),
                shutdown,
                live: true,
                view: None,
            },
        );
        self.changed();
        runtime
    }

    fn changed(&self) {
        for n in self.inner.nodes().values().filter(|n| n.live) {
            n.runtime.cluster_changed();
        }
    }

    /// Game server `node`'s game.
    ///
    /// # Panics
    ///
    /// If there is no such node.
    pub fn runtime(&self, node: u64) -> GameRuntime {
        self.inner.nodes()[&node].runtime.clone()
    }

    /// Kills game server `node` as `kill -9` would: its rooms stop without
    /// saving or releasing, it drops out of every view. The others notice
    /// at once (a real cluster notices after the peer timeout).
    pub async fn crash(&self, node: u64) {
        let runtime = {
            let mut nodes = self.inner.nodes();
            let n = nodes.get_mut(&node).expect("no such node");
            n.live = false;
            n.shutdown.cancel();
            n.runtime.clone()
        };
        runtime.crash().await;
        self.changed();
    }

    /// Stops game server `node` gracefully: out of every placement first,
    /// then its rooms save and let go (others take them at once).
    pub async fn stop(&self, node: u64) {
        let runtime = {
            let mut nodes = self.inner.nodes();
            let n = nodes.get_mut(&node).expect("no such node");
            n.live = false;
            n.runtime.clone()
        };
        self.changed();
        runtime.shutdown().await;
        if let Some(n) = self.inner.nodes().get(&node) {
            n.shutdown.cancel();
        }
    }

    /// Makes `node` believe only `alive` are alive (`None`: the truth
    /// again), as when the mesh is split.
    pub fn set_view(&self, node: u64, alive: Option<Vec<u64>>) {
        if let Some(n) = self.inner.nodes().get_mut(&node) {
            n.view = alive;
            n.runtime.cluster_changed();
        }
    }

    /// Logs `user` in at game server `node`.
    pub fn login(&self, user: u64, node: u64) -> Caller {
        let session_id = self.next_session.fetch_add(1, Ordering::Relaxed);
        self.parts
            .sessions
            .set(user, SessionAt { session_id, node });
        Caller {
            user_id: user,
            session_id,
        }
    }

    /// `caller`'s session resumes at game server `node`.
    pub fn resume(&self, caller: Caller, node: u64) {
        self.parts.sessions.set(
            caller.user_id,
            SessionAt {
                session_id: caller.session_id,
                node,
            },
        );
        self.runtime(node)
            .session_moved(caller.user_id, caller.session_id, node);
    }

    /// Calls `route` on game server `node` (the one owning `caller`'s
    /// session) and decodes the answer.
    pub async fn call<Req: Message, Resp: Message + Default>(
        &self,
        node: u64,
        caller: Caller,
        route: &str,
        req: &Req,
    ) -> Result<Resp, GameError> {
        let runtime = self.runtime(node);
        decode(call_raw(&runtime, caller, route, Bytes::from(req.encode_to_vec())).await)
    }

    /// [`MemoryParts::push_where`] on this game's twins.
    pub async fn push_where<M, F>(&self, user: u64, route: &str, pick: F) -> M
    where
        M: Message + Default,
        F: FnMut(&M) -> bool,
    {
        self.parts.push_where(user, route, pick).await
    }
}

impl Drop for MemoryCluster {
    fn drop(&mut self) {
        // Breaks the cycle node -> placement -> cluster -> node.
        let nodes = std::mem::take(&mut *self.inner.nodes());
        for n in nodes.into_values() {
            n.shutdown.cancel();
            drop(n.runtime.game().host().stop_all(true));
        }
    }
}
