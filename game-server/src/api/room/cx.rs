//! [`RoomCx`]: what a room callback gets besides its arguments: the
//! room's name, tick and members, pushes, and the way out to the rest of
//! the game.

use prost::Message;
use tracing::error;

use super::members::Members;
use super::{Member, RoomInit};
use crate::api::game::Game;
use crate::api::push::{Push, Recipient};

/// A room callback's view of its room.
pub struct RoomCx<'a> {
    /// Kind, name, tick rate, cap.
    pub(crate) init: RoomInit<'a>,
    /// The current tick (0 before the first).
    pub(crate) tick: u64,
    /// The members now.
    pub(crate) members: &'a Members,
    /// Everything else (pusher, data, jobs).
    pub(crate) game: &'a Game,
    /// Members the callback asked to remove; they leave right after it.
    pub(crate) removals: Vec<u64>,
}

impl<'a> RoomCx<'a> {
    /// The room's name.
    pub fn room(&self) -> &str {
        self.init.name
    }

    /// The room's kind.
    pub fn kind(&self) -> &str {
        self.init.kind
    }

    /// The current tick: in `tick`, the tick being run (one more than the
    /// last); elsewhere, the last tick run.
    pub fn tick(&self) -> u64 {
        self.tick
    }

    /// Ticks per second (0: this kind does not tick).
    pub fn tick_hz(&self) -> u32 {
        self.init.tick_hz
    }

    /// The member cap.
    pub fn max_members(&self) -> usize {
        self.init.max_members
    }

    /// The members, in join order.
    pub fn members(&self) -> impl Iterator<Item = Member> + '_ {
        self.members.iter()
    }

    /// How many members the room has.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// True when `user_id` is a member.
    pub fn is_member(&self, user_id: u64) -> bool {
        self.members.get(user_id).is_some()
    }

    /// Pushes `msg` under `route` to every member whose session is
    /// connected. Each member gets the room's pushes in the order the room
    /// sent them.
    pub fn push_all<M: Message>(&mut self, route: &str, msg: &M) {
        if let Some(push) = self.push(route, msg) {
            self.game
                .pusher()
                .to_sessions(self.members.recipients(), &push);
        }
    }

    /// Pushes `msg` under `route` to one member (nothing if `user_id` is
    /// not a member), in order with the room's other pushes.
    pub fn push_to<M: Message>(&mut self, user_id: u64, route: &str, msg: &M) {
        let Some(r) = self.members.get(user_id).copied() else {
            return;
        };
        if let Some(push) = self.push(route, msg) {
            self.game.pusher().to_sessions(&[r], &push);
        }
    }

    /// Pushes `msg` under `route` to every member but `user_id`.
    pub fn push_others<M: Message>(&mut self, user_id: u64, route: &str, msg: &M) {
        let others: Vec<Recipient> = self
            .members
            .recipients()
            .iter()
            .filter(|r| r.user_id != user_id)
            .copied()
            .collect();
        if let Some(push) = self.push(route, msg) {
            self.game.pusher().to_sessions(&others, &push);
        }
    }

    /// Removes `user_id` from the room once this callback returns (its
    /// `leave` runs with [`LeaveReason::Removed`](super::LeaveReason::Removed)).
    pub fn remove(&mut self, user_id: u64) {
        self.removals.push(user_id);
    }

    /// The rest of the game (player data, jobs, events, pushes to anyone).
    /// Callbacks cannot wait: spawn a task for what must.
    pub fn game(&self) -> &Game {
        self.game
    }

    fn push<M: Message>(&self, route: &str, msg: &M) -> Option<Push> {
        match Push::new(route, msg) {
            Ok(p) => Some(p),
            Err(e) => {
                // A bug in the room's code, every time it runs: loud.
                error!(room = %self.init.name, kind = %self.init.kind, "push not sent: {e}");
                None
            }
        }
    }
}
