//! The game API: what a studio's game code is written against.
//!
//! A game is a set of [`Module`]s. Each registers, in one
//! [`build`](Module::build) call on the [`App`]:
//!
//! - **routes** `"<module>.<name>"` with typed async handlers
//!   ([`App::route`]): the payload of a client's `GameRequest` is decoded
//!   into the module's own prost message before the handler runs (else
//!   `BAD_PAYLOAD`), the handler sees who calls ([`Ctx::caller`]) and
//!   answers its own message or a [`GameError`] (`refuse("room full")`
//!   becomes `REFUSED` with that detail);
//! - **room kinds** ([`App::room`], [`room`]): state with members, join /
//!   leave / request / tick callbacks, a tick rate, a member cap and
//!   checkpoints; one authority per room in the whole cluster, restarted
//!   elsewhere from its checkpoint when its game server dies;
//! - **jobs, cron schedules and cluster-event handlers** ([`App::job`],
//!   [`App::cron`], [`App::on_event`]), run by the game server's own
//!   runner and listener from `gamemesh-jobs`.
//!
//! At run time game code holds a [`Game`] (in handlers through [`Ctx`], in
//! rooms through [`RoomCx`]): **pushes** to a user wherever it is
//! connected, to a room's members, or to everyone ([`Game::push`]);
//! **per-player data**, versioned with compare-and-set ([`Game::data`],
//! [`data`]); the job store and event bus.
//!
//! # The path of a `GameRequest`
//!
//! The core decodes the client packet and runs it through the whole
//! pipeline (authentication, sequence ids and the reply cache, rate
//! limits, exception handling, logging, timing); its router hands
//! `GameRequest{route, payload}` to [`GameRuntime::dispatch`]: one lookup
//! in the route table ([`handler`]), the payload decoded, the handler run.
//! A handler that asks a room ([`Rooms`]) reaches the room's actor on
//! whichever game server runs it ([`room::host`]); the room's pushes go
//! through the [`Pusher`] to its members' sessions, wherever they are.
//!
//! # The line to the core
//!
//! The API reaches the core only through traits the core implements:
//! [`Pusher`] (sessions and gateways), [`RoomPlacement`] (the mesh),
//! [`SessionDirectory`] (the session store), and the stores
//! ([`RoomStore`], [`PlayerDataStore`]) with Redis and memory backends.
//! So the API, and every module on it, compiles and is tested without the
//! core ([`testing`]), and modules cannot reach past it.
//!
//! Modules: [`app`] (App, Module), [`handler`] (typed handlers, route
//! table), [`context`] (Ctx, Caller), [`game`] (Game, pushes, services),
//! [`runtime`] (what the core calls), [`route`] (naming rules),
//! [`room`] (rooms), [`push`], [`data`], [`sessions`], [`placement`],
//! [`jobs`], [`error`], [`testing`].

pub mod app;
pub mod context;
pub mod data;
pub mod error;
pub mod game;
pub mod handler;
pub mod jobs;
pub mod name;
pub mod placement;
pub mod push;
pub mod room;
pub mod route;
pub mod runtime;
pub mod sessions;
pub mod testing;

mod redis_calls;
#[cfg(test)]
mod tests;

pub use app::{App, Module};
pub use context::{Caller, Ctx};
pub use data::{Data, DataError, Expect, PlayerDataStore, Versioned};
pub use error::{refuse, BuildError, GameError};
pub use game::{Game, Pushes, RoomSettings, Services};
pub use placement::{RoomPlacement, SingleNode};
pub use push::{Push, PushError, Pusher, Recipient};
pub use room::store::RoomStore;
pub use room::{LeaveReason, Member, Room, RoomCx, RoomInit, RoomKind, Rooms};
pub use runtime::GameRuntime;
pub use sessions::{SessionAt, SessionDirectory};

/// Re-exported so game crates encode with the same prost and bytes as
/// the API.
pub use bytes;
pub use prost;

/// Everything a module usually needs: `use gamemesh_game_server::api::prelude::*;`.
pub mod prelude {
    pub use super::{
        refuse, App, Caller, Ctx, Expect, Game, GameError, LeaveReason, Member, Module, Room,
        RoomCx, RoomInit, RoomKind,
    };
}

/// Unix time in milliseconds (checkpoint stamps).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
