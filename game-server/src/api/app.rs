//! [`App`], the builder modules register on, and [`Module`], what a game
//! (or a built-in such as chat) is to gamemesh.
//!
//! ```ignore
//! struct Arena;
//!
//! impl Module for Arena {
//!     fn name(&self) -> &str { "arena" }
//!     fn build(&self, app: &mut App) {
//!         app.room(RoomKind::<ArenaRoom>::new("arena").tick_hz(20).max_members(16).one_per_session())
//!            .route("arena.join", join)
//!            .route("arena.move", move_)
//!            .route("arena.leave", leave);
//!     }
//! }
//!
//! let mut app = App::new();
//! app.add_module(Arena);
//! ```
//!
//! Mistakes (a bad or duplicate route, a route outside its module's name,
//! a room kind registered twice) do not panic: they are collected and
//! [`App::start`] returns them all in one [`BuildError`], each saying
//! what to change.

use std::future::Future;
use std::sync::Arc;

use gamemesh_jobs::{BoxError, CronJob, Event, Job};
use gamemesh_proto::client::{client_packet, server_packet};
use prost::Message;
use tokio::sync::Notify;
use tracing::debug;

use super::context::Ctx;
use super::error::{BuildError, GameError};
use super::game::{Game, Services};
use super::handler::{erase, erase_body, BodyEntry, RouteEntry, RouteTable};
use super::jobs::Registry;
use super::room::host::RoomHost;
use super::room::{Room, RoomKind};
use super::route::{check_registered, valid_module};
use super::runtime::GameRuntime;

/// A part of the game: registers its routes, room kinds, jobs and event
/// handlers on the [`App`] in one [`build`](Module::build) call.
pub trait Module: Send + Sync + 'static {
    /// The module's name: 1 to 32 bytes of `[a-z0-9_]`. Its routes and job
    /// kinds are named `"<name>.<something>"`, and its player data lives
    /// under this name.
    fn name(&self) -> &str;

    /// Registers everything the module has.
    fn build(&self, app: &mut App);
}

/// The builder a game server's modules register on.
#[derive(Default)]
pub struct App {
    /// The module whose `build` is running.
    current: Option<Arc<str>>,
    /// Modules added, in order.
    modules: Vec<String>,
    /// Routes.
    routes: RouteTable,
    /// Handlers of the client contract's own bodies.
    bodies: Vec<BodyEntry>,
    /// Room kinds.
    rooms: RoomHost,
    /// Jobs, crons, event handlers.
    background: Registry,
    /// Run once the game has started.
    on_start: Vec<StartHook>,
    /// Mistakes found so far.
    errors: Vec<BuildError>,
}

impl App {
    /// An app with no modules.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `module`: runs its [`build`](Module::build).
    pub fn add_module<M: Module>(&mut self, module: M) -> &mut Self {
        let name = module.name().to_string();
        if !valid_module(&name) {
            self.errors.push(BuildError::BadModule(name));
            return self;
        }
        if self.modules.contains(&name) {
            self.errors.push(BuildError::DuplicateModule(name));
            return self;
        }
        self.modules.push(name.clone());
        let outer = self.current.replace(Arc::from(name.as_str()));
        module.build(self);
        self.current = outer;
        debug!(module = %name, "module built");
        self
    }

    fn module(&mut self, what: &str) -> Option<Arc<str>> {
        let m = self.current.clone();
        if m.is_none() {
            self.errors.push(BuildError::NoModule(what.to_string()));
        }
        m
    }

    /// Registers `handler` for `route` (`"<module>.<name>"`). The payload
    /// is decoded into `Req` before the handler runs; one that does not
    /// decode is answered `BAD_PAYLOAD`. The handler's `Resp` becomes the
    /// `GameResponse` payload; its `Err` the matching error.
    pub fn route<Req, Resp, F, Fut>(&mut self, route: &str, handler: F) -> &mut Self
    where
        Req: Message + Default + Send + 'static,
        Resp: Message + 'static,
        F: Fn(Ctx, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, GameError>> + Send + 'static,
    {
        let Some(module) = self.module(route) else {
            return self;
        };
        let name = match check_registered(&module, route) {
            Ok(n) => n,
            Err(e) => {
                self.errors.push(e);
                return self;
            }
        };
        let entry = RouteEntry {
            module,
            handler: erase(&name, handler),
        };
        if let Err(e) = self.routes.insert(name, entry) {
            self.errors.push(e);
        }
        self
    }

    /// Registers `handler` for a body of the client contract itself, for
    /// the built-in modules that answer those (echo, increment, chat):
    /// `extract` picks the request out of a `ClientPacket` body (`None`:
    /// not this handler's), `wrap` puts the answer into a `ServerPacket`
    /// body. `name` (`"<module>.<name>"`) names it in logs and metrics.
    /// Game code uses [`route`](Self::route).
    pub fn body<Req, Resp, F, Fut>(
        &mut self,
        name: &str,
        extract: fn(&client_packet::Body) -> Option<Req>,
        wrap: fn(Resp) -> server_packet::Body,
        handler: F,
    ) -> &mut Self
    where
        Req: Send + 'static,
        Resp: 'static,
        F: Fn(Ctx, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, GameError>> + Send + 'static,
    {
        let Some(module) = self.module(name) else {
            return self;
        };
        match check_registered(&module, name) {
            Ok(n) if self.bodies.iter().any(|b| b.name == n) => self
                .errors
                .push(BuildError::DuplicateRoute(name.to_string())),
            Ok(n) => self.bodies.push(BodyEntry {
                name: n,
                module,
                handler: erase_body(extract, wrap, handler),
            }),
            Err(e) => self.errors.push(e),
        }
        self
    }

    /// Registers a room kind.
    pub fn room<R: Room>(&mut self, kind: RoomKind<R>) -> &mut Self {
        let config = kind.config;
        if self.module(&config.name).is_none() {
            return self;
        }
        if let Err(e) = config.check() {
            self.errors.push(e);
            return self;
        }
        let name = config.name.clone();
        if !self.rooms.add::<R>(config) {
            self.errors.push(BuildError::DuplicateRoomKind(name));
        }
        self
    }

    /// Runs jobs of `kind` (`"<module>.<name>"`) with `handler`. Enqueue
    /// them with [`Game::jobs`].
    pub fn job<F, Fut>(&mut self, kind: &str, handler: F) -> &mut Self
    where
        F: Fn(Game, Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        let Some(module) = self.module(kind) else {
            return self;
        };
        match check_registered(&module, kind) {
            Ok(_) if self.background.has_job(kind) => self
                .errors
                .push(BuildError::DuplicateRoute(kind.to_string())),
            Ok(_) => self.background.job(kind.to_string(), handler),
            Err(e) => self.errors.push(e),
        }
        self
    }

    /// Schedules a recurring job of one of this module's kinds.
    pub fn cron(&mut self, job: CronJob) -> &mut Self {
        let Some(module) = self.module(&job.name) else {
            return self;
        };
        match check_registered(&module, &job.kind) {
            Ok(_) => self.background.cron(job),
            Err(e) => self.errors.push(e),
        }
        self
    }

    /// Runs `handler` (named `name` in logs) on every game server for
    /// every cluster event of type `E`.
    pub fn on_event<E, F, Fut>(&mut self, name: &str, handler: F) -> &mut Self
    where
        E: Event,
        F: Fn(Game, E) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        let Some(module) = self.module(name) else {
            return self;
        };
        self.background
            .event::<E, F, Fut>(format!("{module}.{name}"), handler);
        self
    }

    /// Runs `hook` once the game has started, on its own task (it may
    /// loop until [`Game::stopping`]). A hook that fails is retried after
    /// a pause, until it succeeds or the game stops: what it sets up
    /// (chat's default rooms) may need Redis or the mesh to settle.
    pub fn on_start<F, Fut>(&mut self, hook: F) -> &mut Self
    where
        F: Fn(Game) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), GameError>> + Send + 'static,
    {
        if self.module("on_start").is_some() {
            self.on_start
                .push(Arc::new(move |game| Box::pin(hook(game))));
        }
        self
    }

    /// The modules added, in order.
    pub fn modules(&self) -> &[String] {
        &self.modules
    }

    /// Every registered route, sorted.
    pub fn routes(&self) -> Vec<String> {
        self.routes.names()
    }

    /// Starts the game on the core's `services`: the room runtime's
    /// sweeper runs on `services.tracker` until `services.shutdown`.
    /// Returns every registration mistake at once.
    pub fn start(mut self, services: Services) -> Result<GameRuntime, BuildError> {
        let lease = services.settings.lease_ttl;
        let late: Vec<BuildError> = self
            .rooms
            .configs()
            .filter_map(|k| k.check_lease(lease).err())
            .collect();
        self.errors.extend(late);
        match self.errors.len() {
            0 => {}
            1 => return Err(self.errors.into_iter().next().expect("one error")),
            _ => return Err(BuildError::Many(self.errors)),
        }
        let tracker = services.tracker.clone();
        let shutdown = services.shutdown.clone();
        let game = Game::new(services, self.rooms);
        let wake = Arc::new(Notify::new());
        tracker.spawn(sweep_loop(game.clone(), wake.clone(), shutdown.clone()));
        for hook in self.on_start {
            tracker.spawn(run_hook(hook, game.clone(), shutdown.clone()));
        }
        Ok(GameRuntime::new(
            game,
            self.modules,
            self.routes,
            self.bodies,
            self.background,
            wake,
        ))
    }
}

/// A start hook, its types erased.
type StartHook =
    Arc<dyn Fn(Game) -> futures::future::BoxFuture<'static, Result<(), GameError>> + Send + Sync>;

/// Runs `hook` until it succeeds (a second between attempts) or the game
/// stops.
async fn run_hook(hook: StartHook, game: Game, shutdown: tokio_util::sync::CancellationToken) {
    loop {
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = hook(game.clone()) => r,
        };
        match result {
            Ok(()) => return,
            Err(e) => debug!("A module's start hook failed ({e}); retrying in a second"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}

/// Every `restart_every`, or at once when woken (the cluster changed):
/// start the rooms placed here that do not run, hand off the ones placed
/// elsewhere.
async fn sweep_loop(game: Game, wake: Arc<Notify>, shutdown: tokio_util::sync::CancellationToken) {
    let every = game.settings().restart_every;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
            _ = wake.notified() => {}
        }
        if game.is_crashed() {
            return;
        }
        game.host().sweep(&game).await;
    }
}
