//! Sessions: the store that is the source of truth ([`SessionStore`], with
//! [`redis::RedisStore`] and [`memory::MemoryStore`]), and the in-process
//! view of the sessions this game server owns ([`local`]).
//!
//! A session record lives under one key per user (`gm:{u:<user_id>}:session`,
//! hash-tagged so Redis Cluster keeps it in one slot). One key per user makes
//! "one live session per user" a property of the data layout, and leaves no
//! user -> session index to orphan. Every record carries an `epoch`, bumped
//! whenever the session is created, replaced or changes owner; every write
//! by an owner names the (session id, epoch) it believes in and is refused
//! if that is no longer current (fencing).
//!
//! The record holds the session's reply cache too, as a ring of fields:
//! an owner saves only the replies recorded since its last successful
//! save, so a save costs what changed, not the whole cache (see
//! [`append_replies`] and SESSION_LIFECYCLE.md).

pub mod local;
pub mod memory;
pub mod redis;
pub mod replica_ack;
pub mod save_retry;

use std::time::Duration;

use async_trait::async_trait;
use gamemesh_proto::internal::CachedReply;
use thiserror::Error;
use uuid::Uuid;

pub use local::{LocalSession, LocalSessions};

/// Where a session's client currently is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The game server that owns the session.
    pub owner: u64,
    /// The gateway the client's socket is on.
    pub gateway: u64,
    /// The socket.
    pub socket: Uuid,
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Never 0.
    pub session_id: u64,
    /// The user it belongs to.
    pub user_id: u64,
    /// Fencing number (see the module docs).
    pub epoch: u64,
    /// Where the client was last seen; `socket` is nil while disconnected.
    pub placement: Placement,
    /// SHA-256 of the resume token (the token itself is never stored).
    pub token_hash: Vec<u8>,
    /// Highest sequence id executed, as last saved.
    pub last_seq: u64,
    /// The replies held for replay, oldest first, as last saved.
    pub replies: Vec<CachedReply>,
    /// How many replies the session had recorded since its login, as last
    /// saved (see [`Progress::first_reply`]).
    pub ring_len: u64,
    /// The session's increment counter as last saved (saved together with
    /// `last_seq`, so the two always agree).
    pub counter: u64,
    /// False while the session waits to be resumed.
    pub connected: bool,
}

/// A brand-new session to store.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Freshly drawn session id.
    pub session_id: u64,
    /// Its user.
    pub user_id: u64,
    /// SHA-256 of the resume token.
    pub token_hash: Vec<u8>,
    /// Where its client is.
    pub placement: Placement,
    /// Sequence id of the login request (0 if none).
    pub last_seq: u64,
}

/// What an atomic login did.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    /// The new session's epoch.
    pub epoch: u64,
    /// The session it replaced, if the user had one.
    pub replaced: Option<ReplacedSession>,
}

/// The session a login replaced, for the kick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplacedSession {
    /// Its id.
    pub session_id: u64,
    /// Where its client was.
    pub placement: Placement,
    /// Whether a client was connected to it.
    pub connected: bool,
}

/// A take-over's claim (resume or adoption): session `session_id` of
/// `user_id`, as long as it is still at `expected_epoch`, moves to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The session's user.
    pub user_id: u64,
    /// The session.
    pub session_id: u64,
    /// The epoch the claimer read (fencing).
    pub expected_epoch: u64,
    /// Where it moves.
    pub to: Placement,
}

/// Result of taking a session over (resume or adoption).
#[derive(Debug, Clone)]
pub struct TakeOver {
    /// The session's new epoch.
    pub epoch: u64,
    /// Progress as stored at the moment of the take-over.
    pub last_seq: u64,
    /// The replies held for replay at that moment, oldest first.
    pub replies: Vec<CachedReply>,
    /// How many replies the session had recorded since its login, the
    /// newest of `replies` being the last (see [`Progress::first_reply`]).
    pub ring_len: u64,
    /// The increment counter at that moment.
    pub counter: u64,
    /// Where the client was before.
    pub previous: Placement,
    /// Whether a client was connected before.
    pub was_connected: bool,
}

/// An owner's progress on one session, to save.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The session's user.
    pub user_id: u64,
    /// The session.
    pub session_id: u64,
    /// The epoch the owner holds.
    pub epoch: u64,
    /// Highest sequence id executed.
    pub last_seq: u64,
    /// The replies recorded since the owner's last successful save, oldest
    /// first. A store holds each once, however often it is sent (a retried
    /// save, one overlapping another, the re-save after a failover).
    pub replies: Vec<CachedReply>,
    /// The first of `replies` is the session's `first_reply`-th reply since
    /// its login (0-based), the next the one after: the Redis store keeps
    /// reply i in slot `i mod keep` of its ring, so every save of the same
    /// reply writes the same slot.
    pub first_reply: u64,
    /// How many replies the store keeps for the session (the owner's
    /// `--reply-cache`): the oldest beyond that are dropped.
    pub keep: usize,
    /// The increment counter, as of `last_seq`.
    pub counter: u64,
}

impl Progress {
    /// How many replies the session has recorded since its login, the
    /// last of `replies` included.
    pub fn ring_len(&self) -> u64 {
        self.first_reply + self.replies.len() as u64
    }
}

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The store did not answer in time or is unreachable. Clients get
    /// `UNAVAILABLE`; retrying later is safe.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// The store answered something we cannot read.
    #[error("session store returned bad data: {0}")]
    Corrupt(String),
}

impl From<crate::redis::CommandError> for StoreError {
    fn from(e: crate::redis::CommandError) -> Self {
        StoreError::Unavailable(e.0)
    }
}

/// The source of truth for sessions. Every method is atomic in the store.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Replaces the user's session (if any) with `new`, in one step.
    async fn login(&self, new: NewSession, ttl: Duration) -> Result<LoginOutcome, StoreError>;

    /// The user's current session.
    async fn get(&self, user_id: u64) -> Result<Option<SessionRecord>, StoreError>;

    /// Moves the claimed session to `claim.to`, bumping its epoch, only if
    /// it is still that session at the claimed epoch. `None` when it
    /// changed (gone, replaced, or taken by someone else first).
    async fn take_over(&self, claim: Claim, ttl: Duration) -> Result<Option<TakeOver>, StoreError>;

    /// Saves an owner's progress (its replies appended as
    /// [`append_replies`] says) and renews the record's lifetime. Returns
    /// false when fenced off (the session moved on).
    async fn save(&self, progress: &Progress, ttl: Duration) -> Result<bool, StoreError>;

    /// [`save`](Self::save) for each of `batch`, one result per entry in
    /// order. The flusher's way: a store may share one round trip and one
    /// script call among them.
    async fn save_many(&self, batch: &[Progress], ttl: Duration) -> Vec<Result<bool, StoreError>> {
        futures::future::join_all(batch.iter().map(|p| self.save(p, ttl))).await
    }

    /// Saves final progress and marks the session disconnected, resumable
    /// for `grace`. False when fenced off.
    async fn disconnect(&self, progress: &Progress, grace: Duration) -> Result<bool, StoreError>;

    /// Deletes the session (logout), only if it is still that session at
    /// `epoch`. False when it is not current.
    async fn remove(&self, user_id: u64, session_id: u64, epoch: u64) -> Result<bool, StoreError>;

    /// Checks the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// For each of `users`, in order: its session's id, whether a client
    /// is connected, and the game server that owns it, or `None` when it
    /// has no session. What rooms check their members against; the Redis
    /// store answers a whole room in one round trip.
    async fn locate(&self, users: &[u64]) -> Result<Vec<Option<SessionPlace>>, StoreError> {
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            out.push(self.get(*u).await?.map(|r| SessionPlace {
                session_id: r.session_id,
                connected: r.connected,
                owner: r.placement.owner,
            }));
        }
        Ok(out)
    }
}

/// Appends to `held` (a stored reply cache whose session had executed up
/// to `stored_last_seq`) the `new` replies above that watermark, keeping
/// the last `keep`: what [`SessionStore::save`] and
/// [`SessionStore::disconnect`] do with a [`Progress`]'s replies. (The
/// Redis store gets the same from its ring: each reply is written to the
/// field its index names, so one sent twice lands once.)
pub fn append_replies(
    held: &mut Vec<CachedReply>,
    stored_last_seq: u64,
    new: &[CachedReply],
    keep: usize,
) {
    held.extend(
        new.iter()
            .filter(|r| r.sequence_id > stored_last_seq)
            .cloned(),
    );
    let excess = held.len().saturating_sub(keep);
    held.drain(..excess);
}

/// Where a user's session is, as [`SessionStore::locate`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPlace {
    /// The session.
    pub session_id: u64,
    /// Whether a client is connected to it.
    pub connected: bool,
    /// The game server that owns it (0: none).
    pub owner: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_appends_only_replies_above_its_watermark_and_keeps_the_last_ones() {
        let reply = |seq| CachedReply {
            sequence_id: seq,
            body: bytes::Bytes::new(),
        };
        let mut held = vec![reply(1), reply(2)];
        append_replies(&mut held, 2, &[reply(2), reply(3), reply(4)], 3);
        let held: Vec<_> = held.iter().map(|r| r.sequence_id).collect();
        assert_eq!(held, [2, 3, 4]);
    }
}
