//! Requests relayed to a game server and not yet answered, per client
//! socket, so a stalled or dead game server cannot leave a client waiting
//! forever.
//!
//! The gateway does not parse bodies, but both `ClientPacket` and
//! `ServerPacket` carry their sequence id in field 1, which
//! [`packets::peek_sequence_id`] reads without decoding. A relayed request
//! with a non-zero sequence id is entered here; a reply from a game server
//! carrying that id removes it. An entry older than `--request-timeout-ms`,
//! or one whose game server the gateway declares DOWN, is answered by the
//! gateway itself with `ErrorResponse{UNAVAILABLE}`.
//!
//! **A late real answer.** Once the gateway answered a sequence id
//! `UNAVAILABLE`, that id is remembered (the last [`ANSWERED_KEPT`] per
//! socket) and a real answer that arrives for it later is dropped, so the
//! client gets exactly one reply per request, as docs/PROTOCOL.md demands. The
//! request may well have executed. After a timeout (the game server is
//! alive, only slow) the client retries with the SAME sequence id and the
//! game server's idempotency answers the retry from its reply cache (or
//! `DUPLICATE_SEQUENCE` once the reply fell out of it) without executing
//! it again. After a DOWN declaration the answer carries
//! `outcome_unknown`: the server that takes the session over knows only
//! what the dead one saved, so a retry may run the request again. The retry is a new entry, and the first
//! answer with that id passes while the other one (the late original, or
//! the retry's, whichever comes second) is dropped: still one reply per
//! request sent. If the late original came first and was itself an error
//! (say `UNAVAILABLE` from a game server that woke up fenced off), the
//! client retries once more and gets the cached reply.
//!
//! Sequence id 0 is not tracked: its reply cannot be told from a push.
//! The table is owned by the socket's task (no lock) and bounded
//! ([`MAX_IN_FLIGHT`]); beyond the bound the oldest entry is forgotten,
//! which only means that request is no longer guarded.

use std::collections::VecDeque;
use std::time::Duration;

use gamemesh_transport::NodeId;
use tokio::time::Instant;

/// Requests tracked per socket. Well above what the packet rate limit
/// (burst 200) lets a client have in flight within a request timeout.
pub(crate) const MAX_IN_FLIGHT: usize = 1024;

/// Sequence ids answered by the gateway remembered per socket, to drop
/// their late real answers.
pub(crate) const ANSWERED_KEPT: usize = 64;

/// One relayed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// Its sequence id (never 0).
    sequence_id: u64,
    /// The game server it went to.
    game_server: NodeId,
    /// When the gateway answers it if the game server has not.
    deadline: Instant,
}

/// What to do with a frame a game server sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Write it.
    Pass,
    /// The gateway already answered its sequence id: drop it.
    Late,
}

/// One socket's requests in flight, oldest first.
#[derive(Debug)]
pub(crate) struct InFlight {
    /// Entries in the order they were relayed (so deadlines ascend).
    entries: VecDeque<Entry>,
    /// Sequence ids the gateway answered itself, newest last.
    answered: VecDeque<u64>,
    /// `--request-timeout-ms`.
    timeout: Duration,
}

impl InFlight {
    /// An empty table.
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            entries: VecDeque::new(),
            answered: VecDeque::new(),
            timeout,
        }
    }

    /// True when nothing is in flight.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records a request relayed to `game_server` at `now`.
    pub(crate) fn sent(&mut self, sequence_id: u64, game_server: NodeId, now: Instant) {
        if sequence_id == 0 {
            return;
        }
        if self.entries.len() == MAX_IN_FLIGHT {
            self.entries.pop_front();
        }
        self.entries.push_back(Entry {
            sequence_id,
            game_server,
            deadline: now + self.timeout,
        });
    }

    /// A game server's frame for the client, answering `sequence_id` (0: a
    /// push). Replies usually come in order, so the search stops at the
    /// front.
    pub(crate) fn reply(&mut self, sequence_id: u64) -> Reply {
        if sequence_id == 0 {
            return Reply::Pass;
        }
        if let Some(i) = self
            .entries
            .iter()
            .position(|e| e.sequence_id == sequence_id)
        {
            self.entries.remove(i);
            return Reply::Pass;
        }
        match self.answered.iter().position(|&s| s == sequence_id) {
            Some(i) => {
                self.answered.remove(i);
                Reply::Late
            }
            None => Reply::Pass,
        }
    }

    /// The earliest deadline, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.entries.front().map(|e| e.deadline)
    }

    /// Removes and returns the sequence ids whose deadline passed at `now`.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<u64> {
        let mut out = Vec::new();
        while self.entries.front().is_some_and(|e| e.deadline <= now) {
            if let Some(e) = self.entries.pop_front() {
                out.push(e.sequence_id);
            }
        }
        self.remember(&out);
        out
    }

    /// Removes and returns the entries of game servers `is_down` says are
    /// down, with the game server each went to (a scan: it runs once per
    /// DOWN declaration, not per frame).
    pub(crate) fn fail(&mut self, is_down: impl Fn(NodeId) -> bool) -> Vec<(u64, NodeId)> {
        let mut out = Vec::new();
        self.entries.retain(|e| {
            let down = is_down(e.game_server);
            if down {
                out.push((e.sequence_id, e.game_server));
            }
            !down
        });
        let ids: Vec<u64> = out.iter().map(|(s, _)| *s).collect();
        self.remember(&ids);
        out
    }

    fn remember(&mut self, ids: &[u64]) {
        for &s in ids {
            if self.answered.len() == ANSWERED_KEPT {
                self.answered.pop_front();
            }
            self.answered.push_back(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn an_answer_clears_its_entry_and_pushes_pass() {
        let now = Instant::now();
        let mut f = InFlight::new(T);
        f.sent(1, 7, now);
        f.sent(2, 7, now);
        assert_eq!(f.reply(0), Reply::Pass, "push");
        assert_eq!(f.reply(2), Reply::Pass);
        assert_eq!(f.reply(1), Reply::Pass);
        assert!(f.is_empty());
        assert_eq!(f.reply(9), Reply::Pass, "unknown ids pass");
    }

    #[test]
    fn an_expired_request_is_answered_once_and_its_late_answer_dropped() {
        let now = Instant::now();
        let mut f = InFlight::new(T);
        f.sent(1, 7, now);
        f.sent(2, 7, now + Duration::from_secs(1));
        assert_eq!(f.next_deadline(), Some(now + T));
        assert!(f.expire(now + Duration::from_secs(4)).is_empty());
        assert_eq!(f.expire(now + T), vec![1]);
        assert_eq!(f.reply(1), Reply::Late);
        assert_eq!(f.reply(1), Reply::Pass, "dropped only once");
        // A retry of an answered id: the first answer passes, the second
        // (the late original, or the retry's) is dropped.
        assert_eq!(f.expire(now + T + Duration::from_secs(1)), vec![2]);
        f.sent(2, 8, now + Duration::from_secs(7));
        assert_eq!(f.reply(2), Reply::Pass);
        assert_eq!(f.reply(2), Reply::Late);
        assert!(f.is_empty());
    }

    #[test]
    fn the_entries_of_a_down_game_server_fail_at_once() {
        let now = Instant::now();
        let mut f = InFlight::new(T);
        f.sent(1, 7, now);
        f.sent(2, 8, now);
        f.sent(3, 7, now);
        f.sent(0, 7, now);
        assert_eq!(f.fail(|gs| gs == 7), vec![(1, 7), (3, 7)]);
        assert_eq!(f.reply(2), Reply::Pass);
        assert_eq!(f.reply(3), Reply::Late);
        assert!(f.is_empty());
    }

    #[test]
    fn the_table_is_bounded() {
        let now = Instant::now();
        let mut f = InFlight::new(T);
        for s in 1..=(MAX_IN_FLIGHT as u64 + 10) {
            f.sent(s, 7, now);
        }
        assert_eq!(f.entries.len(), MAX_IN_FLIGHT);
        assert_eq!(f.entries.front().map(|e| e.sequence_id), Some(11));
    }
}
