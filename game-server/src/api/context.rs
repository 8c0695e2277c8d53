//! [`Ctx`]: what a route handler gets besides its payload: who is
//! calling, and the game (pushes, the module's player data, rooms, jobs,
//! events).

use std::sync::Arc;

use super::data::Data;
use super::game::{Game, Pushes};
use super::room::{Room, Rooms};

/// Who sent a request: the session it came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Caller {
    /// The player.
    pub user_id: u64,
    /// Its session (a new login is a new session).
    pub session_id: u64,
}

/// A route handler's context.
#[derive(Clone)]
pub struct Ctx {
    /// Who is calling.
    caller: Caller,
    /// The game.
    game: Game,
    /// The module the route belongs to (scopes its player data).
    module: Arc<str>,
    /// The request's sequence id (0: not deduplicated, or not a request).
    sequence_id: u64,
}

impl Ctx {
    /// The context of a call by `caller` to a route of `module`.
    pub fn new(caller: Caller, game: Game, module: Arc<str>) -> Self {
        Self {
            caller,
            game,
            module,
            sequence_id: 0,
        }
    }

    /// The same context for the request with `sequence_id`.
    pub fn with_sequence_id(mut self, sequence_id: u64) -> Self {
        self.sequence_id = sequence_id;
        self
    }

    /// The request's sequence id (0 when it is not deduplicated): what
    /// the pipeline answers a re-sent request with is keyed by it.
    pub fn sequence_id(&self) -> u64 {
        self.sequence_id
    }

    /// Who is calling.
    pub fn caller(&self) -> Caller {
        self.caller
    }

    /// The calling player.
    pub fn user_id(&self) -> u64 {
        self.caller.user_id
    }

    /// The calling session.
    pub fn session_id(&self) -> u64 {
        self.caller.session_id
    }

    /// The module whose route is running.
    pub fn module(&self) -> &str {
        &self.module
    }

    /// The game.
    pub fn game(&self) -> &Game {
        &self.game
    }

    /// Pushes to players.
    pub fn push(&self) -> Pushes<'_> {
        self.game.push()
    }

    /// This module's per-player data (any player's; usually the caller's:
    /// `ctx.data().get(ctx.user_id(), "coins")`).
    pub fn data(&self) -> Data {
        self.game.data(&self.module)
    }

    /// The rooms of kind `R`, as the caller.
    pub fn rooms<R: Room>(&self) -> Rooms<'_, R> {
        Rooms::new(self)
    }
}
