//! Rooms: game state with members, ticked, one authority in the cluster.
//!
//! A module defines a room kind by implementing [`Room`] (the state and
//! its join, leave, request and tick callbacks) and registering it with a
//! [`RoomKind`] (tick rate, member cap, one room per session or not,
//! checkpoint rhythm). Handlers then reach rooms through
//! [`Ctx::rooms`](crate::api::Ctx::rooms); the API does the rest:
//!
//! - **One room, one actor, one game server.** A room runs as an actor of
//!   `gamemesh-actors` ([`actor`]) on the game server that the
//!   [`RoomPlacement`](crate::api::RoomPlacement) names for it (rendezvous
//!   hashing over the live game servers). A request from a member
//!   connected anywhere is forwarded there ([`host`]). The actor handles
//!   one thing at a time, so a tick never runs concurrently with a
//!   message and the room's state needs no lock.
//! - **Ticks do not drift.** Tick `n` is due at `start + n * period`; a
//!   late tick is run late, never twice, and a tick that is not due is
//!   never queued behind a slow one (no bursts).
//! - **Checkpoints.** Every `checkpoint_ticks` ticks or `checkpoint_every`
//!   (whichever comes first), and after every join and leave, the room
//!   saves its members, its tick and its own snapshot to the
//!   [`RoomStore`](store::RoomStore), renewing its lease there.
//! - **One authority.** A room runs only while its actor holds the room's
//!   lease in the store; every save is fenced by it. When the game server
//!   running a room dies, its lease runs out, and the game server that the
//!   placement names now restores the room from its checkpoint, with its
//!   members, and carries on. A room never runs more than
//!   `checkpoint_ticks` ticks past its last saved checkpoint, and a
//!   restored room continues at `tick + checkpoint_ticks`, so the ticks
//!   its members see only rise.
//! - **Members** are sessions. A member whose session ended (logout, a
//!   newer login, expiry) leaves; one that is disconnected but resumable
//!   stays and gets pushes again once it resumes, wherever.

pub mod actor;
pub mod client;
pub mod cx;
pub mod host;
pub(crate) mod members;
pub mod redis_store;
pub mod store;
pub mod wire;

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use prost::Message;

pub use client::Rooms;
pub use cx::RoomCx;

use super::error::{BuildError, GameError};
use super::route::valid_module;

/// Longest room name, in bytes.
pub const MAX_ROOM_NAME: usize = 64;

/// True for a room name of 1 to [`MAX_ROOM_NAME`] bytes of
/// `[A-Za-z0-9_.-]` (no `:`, `{` or `}`, which would break the store's
/// keys). A kind may be stricter in its own handlers.
pub fn valid_room_name(name: &str) -> bool {
    crate::api::name::bounded(name, MAX_ROOM_NAME, crate::api::name::dotted_word_byte)
}

/// One room in the cluster: its kind and its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomKey {
    /// The room kind.
    pub kind: String,
    /// The room's name.
    pub name: String,
}

impl RoomKey {
    /// The key of room `name` of `kind`; `None` when the name breaks
    /// [`valid_room_name`].
    pub fn new(kind: &str, name: &str) -> Option<Self> {
        valid_room_name(name).then(|| Self {
            kind: kind.to_string(),
            name: name.to_string(),
        })
    }

    /// `"<kind>:<name>"`: unambiguous, since a kind has no `:`. Rendezvous
    /// placement hashes it and the store's hash tags contain it.
    pub fn tag(&self) -> String {
        format!("{}:{}", self.kind, self.name)
    }
}

impl fmt::Display for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// A member of a room: a player's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Member {
    /// The player.
    pub user_id: u64,
    /// The session that joined.
    pub session_id: u64,
}

/// Why a member left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// It asked to leave.
    Left,
    /// It joined another room of a kind that allows one room per session.
    Moved,
    /// Its session ended: logout, a newer login of the user, expiry.
    SessionEnded,
    /// The room removed it ([`RoomCx::remove`]).
    Removed,
}

/// What a room is created or restored with.
#[derive(Debug, Clone, Copy)]
pub struct RoomInit<'a> {
    /// The room kind.
    pub kind: &'a str,
    /// The room's name.
    pub name: &'a str,
    /// Ticks per second (0: the room does not tick).
    pub tick_hz: u32,
    /// The member cap.
    pub max_members: usize,
}

/// A room kind's state and callbacks. The runtime calls them one at a
/// time on the room's actor; they are plain functions (no `await`), so a
/// slow callback delays only its own room, and the state is the room's
/// alone. What needs I/O (player data, jobs) goes through
/// [`RoomCx::game`] on a task of its own.
///
/// A callback that returns `Err` changes nothing the runtime owns (a
/// refused join adds no member); one that panics stops the room, which is
/// restarted from its last checkpoint (its state may be half-updated).
pub trait Room: Sized + Send + 'static {
    /// What a join answers (the arena: the member's position).
    type JoinReply: Message + Default;
    /// What members send the room (the arena: a move).
    type Request: Message + Default;
    /// What the room answers to a request.
    type Reply: Message + Default;
    /// The room's state as saved in checkpoints.
    type Snapshot: Message + Default;

    /// A new, empty room (its first member is joining). Refuse names the
    /// kind does not accept.
    fn create(init: &RoomInit<'_>) -> Result<Self, GameError>;

    /// The room as it was saved in `snapshot` (a restart after its game
    /// server died, or a move to another game server).
    fn restore(init: &RoomInit<'_>, snapshot: Self::Snapshot) -> Result<Self, GameError>;

    /// The state to save: together with the members and the tick, enough
    /// for [`restore`](Room::restore) to carry on.
    fn snapshot(&self) -> Self::Snapshot;

    /// `member` joins; it is already among [`RoomCx::members`], and
    /// returning `Err` takes it out again. `again` is true when the same
    /// session joins a room it is in (answer as for a join; change
    /// nothing). The runtime has already refused a join over the cap.
    fn join(
        &mut self,
        cx: &mut RoomCx<'_>,
        member: &Member,
        again: bool,
    ) -> Result<Self::JoinReply, GameError>;

    /// `member` has left (it is no longer among the members).
    fn leave(&mut self, cx: &mut RoomCx<'_>, member: &Member, why: LeaveReason) {
        let _ = (cx, member, why);
    }

    /// A request from `member`.
    fn request(
        &mut self,
        cx: &mut RoomCx<'_>,
        member: &Member,
        request: Self::Request,
    ) -> Result<Self::Reply, GameError>;

    /// One tick ([`RoomCx::tick`] is its number: one more than the last).
    fn tick(&mut self, cx: &mut RoomCx<'_>) {
        let _ = cx;
    }
}

/// Settings of a room kind, independent of its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindConfig {
    /// The kind's name (`[a-z0-9_]`, usually the module's name).
    pub name: String,
    /// Ticks per second; 0: no ticks.
    pub tick_hz: u32,
    /// Most members at once.
    pub max_members: usize,
    /// A session is in at most one room of this kind: joining another
    /// leaves the first.
    pub one_per_session: bool,
    /// Rooms of this kind live on when their last member leaves (chat's
    /// default rooms); otherwise an empty room is forgotten.
    pub keep_empty: bool,
    /// Ticks between checkpoints at most (also the most ticks a room runs
    /// past its last saved checkpoint).
    pub checkpoint_ticks: u32,
    /// Time between checkpoints at most.
    pub checkpoint_every: Duration,
}

/// Most ticks per second a kind may ask for.
pub const MAX_TICK_HZ: u32 = 1000;

impl KindConfig {
    /// The time between ticks; `None` for a room that does not tick.
    pub fn tick_period(&self) -> Option<Duration> {
        (self.tick_hz > 0).then(|| Duration::from_secs(1) / self.tick_hz)
    }

    /// Checks the kind against the room lease: a room must be able to
    /// save at least twice within its lease while ticking, or it could
    /// stall for lack of renewal and run past the point where another
    /// game server may take it.
    pub(crate) fn check_lease(&self, lease_ttl: Duration) -> Result<(), BuildError> {
        let Some(period) = self.tick_period() else {
            return Ok(());
        };
        let span = period * self.checkpoint_ticks;
        if span * 2 > lease_ttl {
            return Err(BuildError::BadRoomKind {
                kind: self.name.clone(),
                why: format!(
                    "{} ticks at {} Hz last {span:?}, more than half the room lease of {lease_ttl:?}; \
                     lower checkpoint_ticks",
                    self.checkpoint_ticks, self.tick_hz
                ),
            });
        }
        Ok(())
    }

    pub(crate) fn check(&self) -> Result<(), BuildError> {
        let bad = |why: String| BuildError::BadRoomKind {
            kind: self.name.clone(),
            why,
        };
        if !valid_module(&self.name) {
            return Err(bad(
                "a kind name is 1 to 32 bytes of a-z, 0-9 and '_'".into()
            ));
        }
        if self.tick_hz > MAX_TICK_HZ {
            return Err(bad(format!(
                "tick_hz {} is over {MAX_TICK_HZ}",
                self.tick_hz
            )));
        }
        if self.max_members == 0 {
            return Err(bad("max_members must be at least 1".into()));
        }
        if self.checkpoint_ticks == 0 {
            return Err(bad("checkpoint_ticks must be at least 1".into()));
        }
        if self.checkpoint_every < Duration::from_millis(10) {
            return Err(bad("checkpoint_every must be at least 10 ms".into()));
        }
        Ok(())
    }
}

/// A room kind to register: [`Room`] type `R` under a name, with its
/// settings. Defaults: no ticks, 64 members, any number of rooms per
/// session, a checkpoint every 10 ticks or 500 ms.
///
/// ```
/// # use gamemesh_game_server::api::room::*;
/// # fn kind<R: Room>() -> RoomKind<R> {
/// RoomKind::<R>::new("arena").tick_hz(20).max_members(16).one_per_session()
/// # }
/// ```
pub struct RoomKind<R> {
    /// The settings.
    pub(crate) config: KindConfig,
    /// The room type (a `fn` pointer keeps `RoomKind` `Send + Sync`
    /// whatever `R` is).
    _room: PhantomData<fn() -> R>,
}

impl<R: Room> RoomKind<R> {
    /// Kind `name` with the defaults.
    pub fn new(name: &str) -> Self {
        Self {
            config: KindConfig {
                name: name.to_string(),
                tick_hz: 0,
                max_members: 64,
                one_per_session: false,
                keep_empty: false,
                checkpoint_ticks: 10,
                checkpoint_every: Duration::from_millis(500),
            },
            _room: PhantomData,
        }
    }

    /// Ticks per second (0: none).
    pub fn tick_hz(mut self, hz: u32) -> Self {
        self.config.tick_hz = hz;
        self
    }

    /// Most members at once; a join over it is refused with "room full".
    pub fn max_members(mut self, n: usize) -> Self {
        self.config.max_members = n;
        self
    }

    /// A session is in at most one room of this kind: joining another
    /// leaves the first.
    pub fn one_per_session(mut self) -> Self {
        self.config.one_per_session = true;
        self
    }

    /// Rooms live on when their last member leaves, until closed (a room
    /// made with [`Game::ensure_room`](crate::api::Game::ensure_room)
    /// exists from the start).
    pub fn keep_empty(mut self) -> Self {
        self.config.keep_empty = true;
        self
    }

    /// A checkpoint at least every `ticks` ticks.
    pub fn checkpoint_ticks(mut self, ticks: u32) -> Self {
        self.config.checkpoint_ticks = ticks;
        self
    }

    /// A checkpoint at least every `every`.
    pub fn checkpoint_every(mut self, every: Duration) -> Self {
        self.config.checkpoint_every = every;
        self
    }

    /// The settings.
    pub fn config(&self) -> &KindConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_keep_keys_unambiguous() {
        assert!(valid_room_name("r1"));
        assert!(valid_room_name("Team_2-b.x"));
        assert!(valid_room_name(&"a".repeat(MAX_ROOM_NAME)));
        for bad in ["", "a:b", "a{b", "a}b", "a b", "é"] {
            assert!(!valid_room_name(bad), "{bad:?}");
        }
        assert!(!valid_room_name(&"a".repeat(MAX_ROOM_NAME + 1)));
        assert_eq!(RoomKey::new("arena", "r1").unwrap().tag(), "arena:r1");
        assert!(RoomKey::new("arena", "a:b").is_none());
    }

    #[test]
    fn kind_settings_are_checked() {
        let base = KindConfig {
            name: "arena".into(),
            tick_hz: 20,
            max_members: 16,
            one_per_session: true,
            keep_empty: false,
            checkpoint_ticks: 10,
            checkpoint_every: Duration::from_millis(500),
        };
        assert!(base.check().is_ok());
        assert_eq!(base.tick_period(), Some(Duration::from_millis(50)));
        let broken = [
            KindConfig {
                name: "Arena".into(),
                ..base.clone()
            },
            KindConfig {
                tick_hz: MAX_TICK_HZ + 1,
                ..base.clone()
            },
            KindConfig {
                max_members: 0,
                ..base.clone()
            },
            KindConfig {
                checkpoint_ticks: 0,
                ..base.clone()
            },
            KindConfig {
                checkpoint_every: Duration::from_millis(1),
                ..base.clone()
            },
        ];
        for k in broken {
            assert!(k.check().is_err(), "{k:?}");
        }
        assert_eq!(KindConfig { tick_hz: 0, ..base }.tick_period(), None);
    }
}
