//! [`RoomCx`]: what a room callback gets besides its arguments: the
//! room's name, tick and members, pushes, and the way out to the rest of
//! the game.

use prost::Message;
use tracing::error;

use super::members::Members;
use super::{Member, RoomInit};
use crate::api::game::Game;
use gamemesh_proto::client::server_packet;

use crate::api::push::Push;

/// Whom a push from a callback goes to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum To {
    /// Every member.
    All,
    /// One member.
    One(u64),
    /// Every member but one.
    Others(u64),
}

/// What a callback asked for besides its return value; the runtime does
/// it once the callback has returned, in this order: save (if asked),
/// pushes, removals.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Save a checkpoint before anything else goes out.
    pub(crate) save: bool,
    /// Pushes, in the order the callback made them.
    pub(crate) outbox: Vec<(To, Push)>,
    /// Members to remove.
    pub(crate) removals: Vec<u64>,
    /// What a `leave` callback answers the member leaving.
    pub(crate) answer: Option<bytes::Bytes>,
}

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
    /// What the callback asked for.
    pub(crate) effects: Effects,
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
    /// sent them; they go out when the callback returns.
    pub fn push_all<M: Message>(&mut self, route: &str, msg: &M) {
        self.queue(To::All, route, msg);
    }

    /// Pushes `msg` under `route` to one member (nothing if `user_id` is
    /// not a member), in order with the room's other pushes.
    pub fn push_to<M: Message>(&mut self, user_id: u64, route: &str, msg: &M) {
        self.queue(To::One(user_id), route, msg);
    }

    /// Pushes `msg` under `route` to every member but `user_id`.
    pub fn push_others<M: Message>(&mut self, user_id: u64, route: &str, msg: &M) {
        self.queue(To::Others(user_id), route, msg);
    }

    /// Pushes a body of the client contract itself to every member: for
    /// built-in modules that speak those bodies (chat).
    pub fn push_body_all(&mut self, body: server_packet::Body) {
        self.effects.outbox.push((To::All, Push::packet(body)));
    }

    /// Saves a checkpoint before this callback's answer and pushes go out
    /// (they are dropped, and the caller answered `UNAVAILABLE`, if it
    /// cannot be saved). For what must never be lost or handed out twice
    /// across a failover: a sequence number, a purchase. It costs one
    /// store write.
    pub fn save_before_reply(&mut self) {
        self.effects.save = true;
    }

    /// In `leave`: what the member that asked to leave is answered
    /// (read with [`Rooms::leave_for`](crate::api::Rooms::leave_for));
    /// chat answers the `room_seq` of its "left" notice.
    pub fn answer_leave<M: Message>(&mut self, msg: &M) {
        self.effects.answer = Some(bytes::Bytes::from(msg.encode_to_vec()));
    }

    /// Removes `user_id` from the room once this callback returns (its
    /// `leave` runs with [`LeaveReason::Removed`](super::LeaveReason::Removed)).
    pub fn remove(&mut self, user_id: u64) {
        self.effects.removals.push(user_id);
    }

    /// The rest of the game (player data, jobs, events, pushes to anyone).
    /// Callbacks cannot wait: spawn a task for what must.
    pub fn game(&self) -> &Game {
        self.game
    }

    fn queue<M: Message>(&mut self, to: To, route: &str, msg: &M) {
        match Push::new(route, msg) {
            Ok(p) => self.effects.outbox.push((to, p)),
            // A bug in the room's code, every time it runs: loud.
            Err(e) => {
                error!(room = %self.init.name, kind = %self.init.kind, "push not sent: {e}")
            }
        }
    }
}
