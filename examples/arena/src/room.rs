//! [`ArenaRoom`]: one arena, as a room kind of the game API.
//!
//! The room owns the players' positions; the API owns the rest (who the
//! members are and where they are connected, the tick loop, checkpoints,
//! the one authority in the cluster). The callbacks are the rules:
//!
//! - `join`: a new player starts at (0, 0); a player joining again keeps
//!   its place; either way the answer is its position.
//! - `request`: one step, clamped to the board; the answer is the new
//!   position.
//! - `leave`: the player's position is forgotten.
//! - `tick`: every member receives `arena.state` with every position.
//! - `snapshot` / `restore`: the positions, as a [`State`], so a room
//!   restarted on another game server carries on where it was.

use gamemesh_game_server::api::prelude::*;

use crate::proto::{JoinResponse, MoveRequest, MoveResponse, Player, State};
use crate::rules::{self, valid_step};
use crate::STATE_ROUTE;

/// One arena: its players in join order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ArenaRoom {
    /// The room's name (in every `State`).
    name: String,
    /// Every player and its position, in join order.
    players: Vec<Player>,
}

impl ArenaRoom {
    fn player(&mut self, user_id: u64) -> Option<&mut Player> {
        self.players.iter_mut().find(|p| p.user_id == user_id)
    }

    /// The state every member is pushed at `tick`, stamped now.
    pub fn state(&self, tick: u64) -> State {
        State {
            room: self.name.clone(),
            tick,
            players: self.players.clone(),
            sent_unix_us: unix_us(),
        }
    }
}

/// Unix time in microseconds: `State.sent_unix_us`, from which a client
/// on the same clock measures tick-to-client latency.
fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Room for ArenaRoom {
    type JoinReply = JoinResponse;
    type Request = MoveRequest;
    type Reply = MoveResponse;
    type Snapshot = State;

    fn create(init: &RoomInit<'_>) -> Result<Self, GameError> {
        if !rules::valid_room(init.name) {
            return Err(refuse(
                "a room name is 1 to 32 bytes of A-Z, a-z, 0-9, '_' and '-'",
            ));
        }
        Ok(Self {
            name: init.name.to_string(),
            players: Vec::new(),
        })
    }

    fn restore(init: &RoomInit<'_>, snapshot: State) -> Result<Self, GameError> {
        Ok(Self {
            name: init.name.to_string(),
            players: snapshot.players,
        })
    }

    fn snapshot(&self) -> State {
        // The tick is the runtime's (it saves its own): only the players.
        State {
            players: self.players.clone(),
            ..State::default()
        }
    }

    fn join(
        &mut self,
        cx: &mut RoomCx<'_>,
        member: &Member,
        again: bool,
    ) -> Result<JoinResponse, GameError> {
        if !again || self.player(member.user_id).is_none() {
            self.players.retain(|p| p.user_id != member.user_id);
            self.players.push(Player {
                user_id: member.user_id,
                x: 0,
                y: 0,
            });
        }
        let p = self.player(member.user_id).cloned().unwrap_or_default();
        Ok(JoinResponse {
            room: self.name.clone(),
            tick_hz: cx.tick_hz(),
            x: p.x,
            y: p.y,
        })
    }

    fn leave(&mut self, _cx: &mut RoomCx<'_>, member: &Member, _why: LeaveReason) {
        self.players.retain(|p| p.user_id != member.user_id);
    }

    fn request(
        &mut self,
        _cx: &mut RoomCx<'_>,
        member: &Member,
        m: MoveRequest,
    ) -> Result<MoveResponse, GameError> {
        if !valid_step(m.dx, m.dy) {
            return Err(refuse("dx and dy must each be -1, 0 or 1"));
        }
        let p = self
            .player(member.user_id)
            .ok_or_else(|| refuse("not in this arena"))?;
        (p.x, p.y) = rules::step((p.x, p.y), (m.dx, m.dy));
        Ok(MoveResponse { x: p.x, y: p.y })
    }

    fn tick(&mut self, cx: &mut RoomCx<'_>) {
        let state = self.state(cx.tick());
        cx.push_all(STATE_ROUTE, &state);
    }
}
