//! The sessions this game server owns right now: their sequence watermark
//! and reply cache (the exactly-once state), and where their client is.
//!
//! The watermark is written behind to the store: the flusher saves dirty
//! sessions every `--flush-interval-ms`, a disconnect saves at once, and so
//! does a graceful shutdown. A crash loses at most one flush interval of
//! watermark; see SESSION_LIFECYCLE.md. A save carries only the replies
//! recorded since the last save that succeeded: a player who acts every
//! tick costs the flusher one or two replies per pass, not the whole
//! cache.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use gamemesh_proto::client::{server_packet, IncrementResponse, ServerPacket};
use gamemesh_proto::internal::CachedReply;
use gamemesh_proto::Message;
use gamemesh_transport::NodeId;
use uuid::Uuid;

use super::Progress;

/// What the idempotency middleware found for a sequence id.
#[derive(Debug, Clone, PartialEq)]
pub enum SeqCheck {
    /// Not executed yet: run it.
    Fresh,
    /// Executed before; this was the reply.
    Replay(ServerPacket),
    /// Executed before; its reply is no longer held.
    Duplicate,
}

/// Exactly-once state of one session.
#[derive(Debug, Default)]
struct SeqState {
    /// Highest sequence id executed.
    last_executed: u64,
    /// The most recent replies, oldest first, encoded once when recorded
    /// (a replay is rare; saving them is not).
    replies: VecDeque<(u64, Bytes)>,
    /// The store holds the replies up to this sequence id: the next save
    /// sends only those above it.
    saved_seq: u64,
    /// How many replies the session has recorded since its login, counting
    /// those recorded by earlier owners: the newest reply is the
    /// `ring_len`-th, and its place in the store's ring follows from that
    /// (see [`Progress::first_reply`]).
    ring_len: u64,
    /// The session's increment counter (`IncrementRequest`). Kept under
    /// the same lock as the watermark so a saved snapshot never has one
    /// without the other: a counter saved ahead of its sequence id would
    /// run that increment twice after a failover.
    counter: u64,
    /// Changed since the last save.
    dirty: bool,
}

impl SeqState {
    /// Moves the watermark to `sequence_id` and keeps its reply (encoded
    /// here, once), dropping the oldest beyond `capacity`.
    fn executed(&mut self, sequence_id: u64, reply: &ServerPacket, capacity: usize) {
        self.last_executed = sequence_id;
        self.ring_len += 1;
        self.replies
            .push_back((sequence_id, Bytes::from(reply.encode_to_vec())));
        while self.replies.len() > capacity {
            self.replies.pop_front();
        }
    }
}

/// One increment as executed, so a failed write-through can undo it.
#[derive(Debug, Clone)]
pub struct Increment {
    /// The reply, already recorded under its sequence id.
    pub reply: ServerPacket,
    /// The sequence id it ran as (0: not deduplicated).
    sequence_id: u64,
    /// The watermark before it.
    previous_last: u64,
}

/// One session owned by this game server.
#[derive(Debug)]
pub struct LocalSession {
    /// Session id.
    pub session_id: u64,
    /// Its user.
    pub user_id: u64,
    /// The epoch this server holds; every store write is fenced by it.
    pub epoch: u64,
    /// Replies kept for replay.
    reply_capacity: usize,
    /// Watermark and replies. Held only for a lookup or an insert, never
    /// across an await.
    seq: Mutex<SeqState>,
    /// Set when the session was replaced or taken over elsewhere: its state
    /// must not be saved any more.
    ended: AtomicBool,
    /// The pause generation ([`crate::cluster::pause`]) in which this
    /// server last knew the session was its own.
    confirmed: AtomicU64,
}

impl LocalSession {
    /// A session starting at `last_executed` with `replies` as the store
    /// holds them (none for a new session), the newest of them the
    /// `ring_len`-th since the login.
    pub fn new(
        session_id: u64,
        user_id: u64,
        epoch: u64,
        last_executed: u64,
        replies: Vec<CachedReply>,
        ring_len: u64,
        reply_capacity: usize,
    ) -> Self {
        let mut replies: VecDeque<_> = replies
            .into_iter()
            .filter(|r| r.sequence_id <= last_executed)
            .map(|r| (r.sequence_id, r.body))
            .collect();
        while replies.len() > reply_capacity {
            replies.pop_front();
        }
        Self::with_state(
            session_id,
            user_id,
            epoch,
            reply_capacity,
            SeqState {
                last_executed,
                replies,
                saved_seq: last_executed,
                ring_len,
                counter: 0,
                dirty: false,
            },
        )
    }

    fn with_state(
        session_id: u64,
        user_id: u64,
        epoch: u64,
        reply_capacity: usize,
        state: SeqState,
    ) -> Self {
        Self {
            session_id,
            user_id,
            epoch,
            reply_capacity,
            seq: Mutex::new(state),
            ended: AtomicBool::new(false),
            confirmed: AtomicU64::new(0),
        }
    }

    /// This session as a new owner record at `epoch` takes it on, when this
    /// copy is at least as far along as the store (whose watermark is
    /// `stored_last_seq`): the replies above that are saved next.
    pub fn handed_over(&self, epoch: u64, stored_last_seq: u64) -> Self {
        let st = self.seq();
        let saved_seq = stored_last_seq.min(st.last_executed);
        let state = SeqState {
            last_executed: st.last_executed,
            replies: st.replies.clone(),
            saved_seq,
            ring_len: st.ring_len,
            counter: st.counter,
            dirty: st.last_executed > saved_seq,
        };
        Self::with_state(
            self.session_id,
            self.user_id,
            epoch,
            self.reply_capacity,
            state,
        )
    }

    /// The pause generation in which the session was last known to be
    /// this server's (0 until a pause made anyone ask).
    pub fn confirmed(&self) -> u64 {
        self.confirmed.load(Ordering::Acquire)
    }

    /// Records that the store confirmed the session is ours in
    /// `generation`.
    pub fn confirm(&self, generation: u64) {
        self.confirmed.fetch_max(generation, Ordering::AcqRel);
    }

    /// The same session with its increment counter at `counter` (as
    /// loaded from the store).
    pub fn with_counter(mut self, counter: u64) -> Self {
        self.seq
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .counter = counter;
        self
    }

    /// The increment counter.
    pub fn counter(&self) -> u64 {
        self.seq().counter
    }

    /// Adds 1 to the counter and, for a non-zero `sequence_id`, records the
    /// reply and the new watermark in the same critical section, so no
    /// snapshot (flush, release) can see the new counter without the
    /// sequence id that produced it.
    pub fn increment(&self, sequence_id: u64) -> Increment {
        let mut st = self.seq();
        let previous_last = st.last_executed;
        st.counter += 1;
        let reply = ServerPacket {
            sequence_id,
            body: Some(server_packet::Body::Increment(IncrementResponse {
                value: st.counter,
            })),
        };
        if sequence_id > st.last_executed {
            st.executed(sequence_id, &reply, self.reply_capacity);
        }
        st.dirty = true;
        Increment {
            reply,
            sequence_id,
            previous_last,
        }
    }

    /// Takes back `done` (its save failed, so it was never acknowledged):
    /// the counter, the watermark and the recorded reply return to what
    /// they were. Only the connection actor executes on a session, one
    /// packet at a time, so nothing ran in between.
    pub fn undo_increment(&self, done: &Increment) {
        let mut st = self.seq();
        st.counter = st.counter.saturating_sub(1);
        if done.sequence_id != 0 && st.last_executed == done.sequence_id {
            st.last_executed = done.previous_last;
            st.saved_seq = st.saved_seq.min(done.previous_last);
            st.ring_len = st.ring_len.saturating_sub(1);
            if st
                .replies
                .back()
                .is_some_and(|(s, _)| *s == done.sequence_id)
            {
                st.replies.pop_back();
            }
        }
        st.dirty = true;
    }

    fn seq(&self) -> MutexGuard<'_, SeqState> {
        // Each critical section is a lookup or a push: a panic cannot leave
        // it half done, so a poisoned lock is still consistent.
        self.seq.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Highest sequence id executed.
    pub fn last_executed(&self) -> u64 {
        self.seq().last_executed
    }

    /// Classifies a non-zero sequence id.
    pub fn check(&self, sequence_id: u64) -> SeqCheck {
        let st = self.seq();
        if sequence_id > st.last_executed {
            return SeqCheck::Fresh;
        }
        let kept = st.replies.iter().find(|(s, _)| *s == sequence_id);
        // A kept reply that does not decode (a cache saved by a newer
        // version) is as good as gone.
        match kept.and_then(|(_, body)| ServerPacket::decode(body.clone()).ok()) {
            Some(reply) => SeqCheck::Replay(reply),
            None => SeqCheck::Duplicate,
        }
    }

    /// Records that `sequence_id` executed and answered `reply`.
    pub fn record(&self, sequence_id: u64, reply: &ServerPacket) {
        let mut st = self.seq();
        if sequence_id <= st.last_executed {
            return;
        }
        st.executed(sequence_id, reply, self.reply_capacity);
        st.dirty = true;
    }

    /// Marks the session as ended elsewhere.
    pub fn end(&self) {
        self.ended.store(true, Ordering::Release);
    }

    /// True once replaced or taken over elsewhere.
    pub fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// The progress to save, with the replies the store does not have yet;
    /// `only_dirty` skips clean sessions. Clears the dirty flag (a failed
    /// save calls [`LocalSession::mark_dirty`], a successful one
    /// [`LocalSession::saved`]).
    pub fn progress(&self, only_dirty: bool) -> Option<Progress> {
        let mut st = self.seq();
        if only_dirty && !st.dirty {
            return None;
        }
        st.dirty = false;
        let saved_seq = st.saved_seq;
        let replies: Vec<CachedReply> = st
            .replies
            .iter()
            .filter(|(s, _)| *s > saved_seq)
            .map(|(s, body)| CachedReply {
                sequence_id: *s,
                body: body.clone(),
            })
            .collect();
        let first_reply = st.ring_len.saturating_sub(replies.len() as u64);
        Some(Progress {
            user_id: self.user_id,
            session_id: self.session_id,
            epoch: self.epoch,
            last_seq: st.last_executed,
            replies,
            first_reply,
            keep: self.reply_capacity,
            counter: st.counter,
        })
    }

    /// The store accepted `p`: later saves send only the replies after it.
    pub fn saved(&self, p: &Progress) {
        let mut st = self.seq();
        st.saved_seq = st.saved_seq.max(p.last_seq.min(st.last_executed));
    }

    /// Flags the session for the next save (after a failed one).
    pub fn mark_dirty(&self) {
        self.seq().dirty = true;
    }

    /// Flags the session for the next save with every reply it holds: the
    /// store may have lost what it acknowledged (a Redis failover). Replies
    /// it still has are held once all the same (see [`Progress::replies`]).
    pub fn resend_all(&self) {
        let mut st = self.seq();
        st.saved_seq = 0;
        st.dirty = true;
    }
}

/// A session attached to a client socket on this game server.
#[derive(Debug, Clone)]
pub struct Attached {
    /// The session.
    pub session: Arc<LocalSession>,
    /// The gateway its socket is on.
    pub gateway: NodeId,
    /// The socket.
    pub socket: Uuid,
}

/// Both indexes of [`LocalSessions`], under one lock so they never
/// disagree.
#[derive(Debug, Default)]
struct Index {
    /// session id -> attachment.
    by_session: HashMap<u64, Attached>,
    /// user id -> session id (one live session per user).
    by_user: HashMap<u64, u64>,
}

impl Index {
    fn remove(&mut self, session_id: u64) -> Option<Attached> {
        let a = self.by_session.remove(&session_id)?;
        if self.by_user.get(&a.session.user_id) == Some(&session_id) {
            self.by_user.remove(&a.session.user_id);
        }
        Some(a)
    }
}

/// Sessions owned here, by session id and by user id.
#[derive(Debug, Default)]
pub struct LocalSessions {
    /// The indexes.
    inner: Mutex<Index>,
}

impl LocalSessions {
    fn lock(&self) -> MutexGuard<'_, Index> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers (or moves) a session.
    pub fn attach(&self, a: Attached) {
        let mut idx = self.lock();
        idx.by_user.insert(a.session.user_id, a.session.session_id);
        idx.by_session.insert(a.session.session_id, a);
    }

    /// Removes `session_id` if it is still attached to `socket`.
    pub fn detach(&self, session_id: u64, socket: &Uuid) -> Option<Attached> {
        let mut idx = self.lock();
        if idx
            .by_session
            .get(&session_id)
            .is_some_and(|a| a.socket == *socket)
        {
            idx.remove(session_id)
        } else {
            None
        }
    }

    /// Removes `session_id` whatever its socket, marking it ended.
    pub fn end(&self, session_id: u64) -> Option<Attached> {
        let a = self.lock().remove(session_id)?;
        a.session.end();
        Some(a)
    }

    /// The attachment of `session_id`.
    pub fn get(&self, session_id: u64) -> Option<Attached> {
        self.lock().by_session.get(&session_id).cloned()
    }

    /// The attachment of `user_id`'s session, if it is owned here.
    pub fn by_user(&self, user_id: u64) -> Option<Attached> {
        let idx = self.lock();
        let sid = idx.by_user.get(&user_id)?;
        idx.by_session.get(sid).cloned()
    }

    /// Every attached session (for the flusher and shutdown).
    pub fn all(&self) -> Vec<Attached> {
        self.lock().by_session.values().cloned().collect()
    }

    /// Number of sessions owned here.
    pub fn len(&self) -> usize {
        self.lock().by_session.len()
    }

    /// True when none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gamemesh_proto::client::{server_packet, EchoResponse};

    fn echo(seq: u64, data: &'static [u8]) -> ServerPacket {
        ServerPacket {
            sequence_id: seq,
            body: Some(server_packet::Body::Echo(EchoResponse {
                data: Bytes::from_static(data),
            })),
        }
    }

    #[test]
    fn replays_held_replies_and_refuses_older_ones() {
        let s = LocalSession::new(1, 1, 1, 0, Vec::new(), 0, 2);
        for (seq, d) in [(1, &b"a"[..]), (2, b"b"), (3, b"c")] {
            assert_eq!(s.check(seq), SeqCheck::Fresh);
            s.record(seq, &echo(seq, d));
        }
        assert_eq!(s.check(3), SeqCheck::Replay(echo(3, b"c")));
        assert_eq!(s.check(2), SeqCheck::Replay(echo(2, b"b")));
        assert_eq!(s.check(1), SeqCheck::Duplicate, "only 2 replies kept");
        assert_eq!(s.check(4), SeqCheck::Fresh);
    }

    #[test]
    fn progress_round_trips_through_the_store_format() {
        let s = LocalSession::new(1, 1, 1, 0, Vec::new(), 0, 32);
        s.record(5, &echo(5, b"x"));
        let p = s.progress(true).unwrap();
        assert!(s.progress(true).is_none(), "clean after a save");
        let back = LocalSession::new(1, 1, 2, p.last_seq, p.replies, p.first_reply + 1, 32);
        assert_eq!(back.last_executed(), 5);
        assert_eq!(back.check(5), SeqCheck::Replay(echo(5, b"x")));
    }

    fn seqs(p: &Progress) -> Vec<u64> {
        p.replies.iter().map(|r| r.sequence_id).collect()
    }

    #[test]
    fn a_save_carries_only_the_replies_since_the_last_successful_one() {
        let s = LocalSession::new(1, 1, 1, 0, Vec::new(), 0, 32);
        s.record(1, &echo(1, b"a"));
        s.record(2, &echo(2, b"b"));
        let first = s.progress(true).unwrap();
        assert_eq!(seqs(&first), [1, 2]);
        s.saved(&first);
        s.record(3, &echo(3, b"c"));
        let failed = s.progress(true).unwrap();
        assert_eq!(seqs(&failed), [3], "1 and 2 are stored already");
        s.mark_dirty();
        s.record(4, &echo(4, b"d"));
        let retry = s.progress(true).unwrap();
        assert_eq!(seqs(&retry), [3, 4], "a failed save's replies go again");
        assert_eq!(
            (failed.first_reply, retry.first_reply),
            (2, 2),
            "reply 3 is the session's third both times: the same ring slot"
        );
        assert_eq!(retry.keep, 32);
        s.saved(&retry);
        assert!(seqs(&s.progress(false).unwrap()).is_empty());
        s.resend_all();
        let all = s.progress(true).unwrap();
        assert_eq!((seqs(&all), all.first_reply), (vec![1, 2, 3, 4], 0));
    }

    #[test]
    fn replies_recorded_while_a_save_is_in_flight_are_not_counted_as_saved() {
        let s = LocalSession::new(1, 1, 1, 0, Vec::new(), 0, 32);
        s.record(1, &echo(1, b"a"));
        let in_flight = s.progress(true).unwrap();
        s.record(2, &echo(2, b"b"));
        s.saved(&in_flight);
        assert_eq!(seqs(&s.progress(true).unwrap()), [2]);
    }

    #[test]
    fn a_session_handed_over_ahead_of_the_store_saves_what_the_store_lacks() {
        let s = LocalSession::new(1, 1, 1, 0, Vec::new(), 0, 32);
        for seq in 1..=3 {
            s.record(seq, &echo(seq, b"x"));
        }
        let next = s.handed_over(2, 1);
        assert_eq!((next.epoch, next.last_executed()), (2, 3));
        assert_eq!(next.check(2), SeqCheck::Replay(echo(2, b"x")));
        let p = next.progress(true).expect("dirty: the store is behind");
        assert_eq!(seqs(&p), [2, 3]);
        assert!(s.handed_over(3, 3).progress(true).is_none());
    }

    #[test]
    fn an_increment_records_its_reply_and_an_undo_takes_it_all_back() {
        let s = LocalSession::new(1, 1, 1, 0, Vec::new(), 0, 32).with_counter(4);
        let a = s.increment(1);
        assert_eq!((s.counter(), s.last_executed()), (5, 1));
        assert_eq!(s.check(1), SeqCheck::Replay(a.reply.clone()));
        let p = s.progress(false).unwrap();
        assert_eq!((p.last_seq, p.counter), (1, 5), "saved together");
        let b = s.increment(2);
        s.undo_increment(&b);
        assert_eq!((s.counter(), s.last_executed()), (5, 1));
        assert_eq!(s.check(2), SeqCheck::Fresh, "undone: may run again");
        assert_eq!(s.check(1), SeqCheck::Replay(a.reply));
    }
}
