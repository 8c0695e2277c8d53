//! The arena: the sample game that ships with gamemesh, and the code a
//! studio copies to start its own (PROTOCOL.md, "The sample game: arena").
//!
//! Players join a named room of at most 16, move one step at a time on a
//! 100 x 100 board, and every tick (20 a second) each member receives the
//! room's `arena.state` with every member's position. A room is one
//! authority for the whole cluster: its members may come through any
//! gateway and any game server.
//!
//! It is written only against `gamemesh_game_server::api`:
//!
//! - [`proto`]: the payloads, generated from `proto/arena.proto` by
//!   `build.rs` (protox: no system `protoc`);
//! - [`rules`]: the game's rules as plain functions (room names, moves,
//!   the board);
//! - [`room`]: [`room::ArenaRoom`], a room kind: the players' positions,
//!   joins, leaves, moves, and the state pushed every tick;
//! - [`routes`]: the handlers of `arena.join`, `arena.move`,
//!   `arena.leave`;
//! - here: [`Arena`], the module that registers them.
//!
//! ```
//! use gamemesh_arena::Arena;
//! use gamemesh_game_server::api::App;
//!
//! let mut app = App::new();
//! app.add_module(Arena::default());
//! assert_eq!(app.routes(), ["arena.join", "arena.leave", "arena.move"]);
//! ```

#![forbid(unsafe_code)]

pub mod room;
pub mod routes;
pub mod rules;

use gamemesh_game_server::api::{App, Module, RoomKind};

/// The arena's payloads (`gamemesh.arena.v1`).
#[allow(missing_docs, clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/gamemesh.arena.v1.rs"));
}

/// The module's name: its routes are `arena.*`.
pub const MODULE: &str = "arena";
/// The push every member receives every tick.
pub const STATE_ROUTE: &str = "arena.state";

/// The arena module.
#[derive(Debug, Clone, Copy)]
pub struct Arena {
    /// Ticks per second of every arena room (`JoinResponse.tick_hz`).
    pub tick_hz: u32,
}

impl Default for Arena {
    /// The contract's arena: 20 ticks a second.
    fn default() -> Self {
        Self {
            tick_hz: rules::TICK_HZ,
        }
    }
}

impl Module for Arena {
    fn name(&self) -> &str {
        MODULE
    }

    fn build(&self, app: &mut App) {
        app.room(
            RoomKind::<room::ArenaRoom>::new(MODULE)
                .tick_hz(self.tick_hz)
                .max_members(rules::MAX_PLAYERS)
                .one_per_session(),
        )
        .route("arena.join", routes::join)
        .route("arena.move", routes::move_player)
        .route("arena.leave", routes::leave);
    }
}
