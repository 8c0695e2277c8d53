//! [`GameRuntime`]: the started game as the core sees it. The core calls
//! it and nothing else: to dispatch a `GameRequest`, to serve a room
//! request forwarded from another game server, to tell rooms that a
//! session ended or moved, to add the modules' jobs and event handlers to
//! its own runner and listener, and to hand rooms off at shutdown.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use gamemesh_jobs::{EventBus, EventHandlers, Handlers, JobStore};
use gamemesh_proto::client::{client_packet, server_packet};
use prost::Message;
use tokio::sync::Notify;
use tracing::debug;

use super::context::{Caller, Ctx};
use super::error::GameError;
use super::game::Game;
use super::handler::{BodyEntry, RouteTable};
use super::jobs::Registry;
use super::room::wire::{RoomOp, RoomReply, RoomRequest, RoomStatus};

/// The started game: routes, rooms, jobs.
#[derive(Clone)]
pub struct GameRuntime {
    /// The game handle shared with game code.
    game: Game,
    /// Modules, in the order they were added.
    modules: Arc<Vec<String>>,
    /// Route -> handler.
    routes: Arc<RouteTable>,
    /// Handlers of the contract's own bodies.
    bodies: Arc<Vec<BodyEntry>>,
    /// Modules' jobs and event handlers.
    background: Arc<Registry>,
    /// Wakes the room sweeper (the cluster changed).
    wake: Arc<Notify>,
}

impl GameRuntime {
    pub(crate) fn new(
        game: Game,
        modules: Vec<String>,
        routes: RouteTable,
        bodies: Vec<BodyEntry>,
        background: Registry,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            game,
            modules: Arc::new(modules),
            routes: Arc::new(routes),
            bodies: Arc::new(bodies),
            background: Arc::new(background),
            wake,
        }
    }

    /// The game handle.
    pub fn game(&self) -> &Game {
        &self.game
    }

    /// The modules, in the order they were added.
    pub fn modules(&self) -> &[String] {
        &self.modules
    }

    /// Every route, sorted.
    pub fn routes(&self) -> Vec<String> {
        self.routes.names()
    }

    /// Every room kind, sorted.
    pub fn room_kinds(&self) -> Vec<String> {
        self.game.host().kind_names()
    }

    /// `"<kind>:<name>"` of every room running on this game server.
    pub fn running_rooms(&self) -> Vec<String> {
        self.game.host().running_rooms()
    }

    /// Every job kind modules handle, sorted.
    pub fn job_kinds(&self) -> Vec<String> {
        self.background.job_kinds()
    }

    /// Runs the handler of `route` for `caller` on `payload`: the encoded
    /// answer, or the error the client gets (`UNKNOWN_ROUTE` for a route
    /// that breaks the naming rule or has no handler, `BAD_PAYLOAD` for a
    /// payload that does not decode, the handler's own errors). A handler
    /// that panics unwinds out of the future: the pipeline's exception
    /// layer answers `INTERNAL`.
    pub fn dispatch(
        &self,
        caller: Caller,
        sequence_id: u64,
        route: &str,
        payload: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, GameError>> {
        let Some(entry) = self.routes.get(route) else {
            metrics::counter!("gamemesh_game_requests_total", "route" => "unknown", "outcome" => "UNKNOWN_ROUTE").increment(1);
            let detail = format!(
                "no game code is registered for route \"{}\"",
                route.escape_debug()
            );
            return Box::pin(std::future::ready(Err(GameError::UnknownRoute(detail))));
        };
        let ctx =
            Ctx::new(caller, self.game.clone(), entry.module.clone()).with_sequence_id(sequence_id);
        let answer = (entry.handler)(ctx, payload);
        let route = route.to_string();
        Box::pin(async move {
            let out = answer.await;
            let outcome = match &out {
                Ok(_) => "OK",
                Err(e) => e.code_name(),
            };
            metrics::counter!("gamemesh_game_requests_total", "route" => route, "outcome" => outcome)
                .increment(1);
            out
        })
    }

    /// Runs the module handler of a body of the client contract itself
    /// (echo, chat, ...): `None` when no module handles `body`.
    pub fn dispatch_body(
        &self,
        caller: Caller,
        sequence_id: u64,
        body: &client_packet::Body,
    ) -> Option<BoxFuture<'static, Result<server_packet::Body, GameError>>> {
        self.bodies.iter().find_map(|b| {
            let ctx =
                Ctx::new(caller, self.game.clone(), b.module.clone()).with_sequence_id(sequence_id);
            (b.handler)(ctx, body)
        })
    }

    /// Names of the contract bodies modules answer, sorted.
    pub fn bodies(&self) -> Vec<String> {
        let mut names: Vec<String> = self.bodies.iter().map(|b| b.name.to_string()).collect();
        names.sort();
        names
    }

    /// Serves an encoded room request another game server forwarded here
    /// (the room runs here, or is started here), and returns the encoded
    /// reply.
    pub fn serve_room(&self, request: Bytes) -> BoxFuture<'static, Bytes> {
        let game = self.game.clone();
        Box::pin(async move {
            let reply = match RoomRequest::decode(request) {
                Ok(req) => game.host().serve_here(&game, req).await,
                Err(e) => RoomReply::failed(
                    RoomStatus::Internal,
                    format!("undecodable room request: {e}"),
                ),
            };
            Bytes::from(reply.encode_to_vec())
        })
    }

    /// Session `session_id` of `user_id` ended (logout, replaced by a new
    /// login, expired): it leaves every room it is in. Runs beside the
    /// caller; a room that misses it drops the member on its next sweep.
    pub fn session_ended(&self, user_id: u64, session_id: u64) {
        self.game.session_rooms().forget(session_id);
        self.for_rooms_of(user_id, session_id, RoomOp::Leave, 0);
    }

    /// Session `session_id` of `user_id` is now owned by game server
    /// `node` (a resume): its rooms push to it there at once, instead of
    /// after their next sweep.
    pub fn session_moved(&self, user_id: u64, session_id: u64, node: u64) {
        self.for_rooms_of(user_id, session_id, RoomOp::Relocate, node);
    }

    /// Session `session_id` no longer runs its handlers here (it moved to
    /// another game server): forget what was remembered for it.
    pub fn session_released(&self, session_id: u64) {
        self.game.session_rooms().forget(session_id);
    }

    fn for_rooms_of(&self, user_id: u64, session_id: u64, op: RoomOp, node: u64) {
        let game = self.game.clone();
        self.game.tracker().spawn(async move {
            let rooms = match game.room_store().member_of(user_id).await {
                Ok(r) => r,
                Err(e) => {
                    debug!(
                        user_id,
                        "rooms of the user unknown ({e}); their sweeps will catch up"
                    );
                    return;
                }
            };
            for (key, s) in rooms.into_iter().filter(|(_, s)| *s == session_id) {
                game.room_op(&key, op, (user_id, s, node)).await;
            }
        });
    }

    /// The cluster changed (a game server came or went): look at once for
    /// rooms to start or hand off.
    pub fn cluster_changed(&self) {
        self.wake.notify_one();
    }

    /// Adds the modules' job handlers and cron schedules to the game
    /// server's runner.
    pub fn install_jobs(&self, handlers: &mut Handlers) {
        self.background.install_jobs(handlers, &self.game);
    }

    /// Adds the modules' event handlers to the game server's listener.
    pub fn install_events(&self, handlers: &mut EventHandlers) {
        self.background.install_events(handlers, &self.game);
    }

    /// Gives game code the job store and event bus (once they run).
    pub fn attach_background(&self, jobs: JobStore, events: EventBus) {
        self.game.attach_background(jobs, events);
    }

    /// Graceful stop: every room here saves and lets go, so the game
    /// servers that stay take them over at once. Resolves when all have
    /// stopped.
    pub async fn shutdown(&self) {
        self.game.host().stop_all(false).await;
    }

    /// What `kill -9` leaves behind, for tests: every room here stops
    /// without saving or releasing anything, and nothing more is written.
    /// Their leases run out and other game servers restore them from their
    /// last checkpoints.
    pub async fn crash(&self) {
        self.game.mark_crashed();
        self.game.host().stop_all(true).await;
    }
}
