//! An in-process [`SessionStore`]: for a single game server with no Redis
//! (`--session-store memory`) and for unit tests. Same semantics as the
//! Redis store, including epochs and expiry; nothing survives a restart.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use uuid::Uuid;

use super::{
    append_replies, Claim, LoginOutcome, NewSession, Progress, ReplacedSession, SessionRecord,
    SessionStore, StoreError, TakeOver,
};

/// Sessions in a hash map, with lazy expiry.
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// user id -> (record, expiry).
    sessions: Mutex<HashMap<u64, (SessionRecord, Instant)>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<u64, (SessionRecord, Instant)>) -> R) -> R {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        map.retain(|_, (_, exp)| *exp > now);
        f(&mut map)
    }
}

fn current(
    map: &mut HashMap<u64, (SessionRecord, Instant)>,
    user_id: u64,
    session_id: u64,
    epoch: u64,
) -> Option<&mut (SessionRecord, Instant)> {
    map.get_mut(&user_id)
        .filter(|(r, _)| r.session_id == session_id && r.epoch == epoch)
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn login(&self, new: NewSession, ttl: Duration) -> Result<LoginOutcome, StoreError> {
        Ok(self.with(|map| {
            let old = map.remove(&new.user_id).map(|(r, _)| r);
            let epoch = old.as_ref().map_or(0, |r| r.epoch) + 1;
            let record = SessionRecord {
                session_id: new.session_id,
                user_id: new.user_id,
                epoch,
                placement: new.placement,
                token_hash: new.token_hash,
                last_seq: new.last_seq,
                replies: Vec::new(),
                ring_len: 0,
                counter: 0,
                connected: true,
            };
            map.insert(new.user_id, (record, Instant::now() + ttl));
            LoginOutcome {
                epoch,
                replaced: old.map(|r| ReplacedSession {
                    session_id: r.session_id,
                    placement: r.placement,
                    connected: r.connected,
                }),
            }
        }))
    }

    async fn get(&self, user_id: u64) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.with(|map| map.get(&user_id).map(|(r, _)| r.clone())))
    }

    async fn take_over(&self, claim: Claim, ttl: Duration) -> Result<Option<TakeOver>, StoreError> {
        Ok(self.with(|map| {
            let (r, exp) = current(map, claim.user_id, claim.session_id, claim.expected_epoch)?;
            let previous = r.placement;
            let was_connected = r.connected;
            r.epoch += 1;
            r.placement = claim.to;
            r.connected = true;
            *exp = Instant::now() + ttl;
            Some(TakeOver {
                epoch: r.epoch,
                last_seq: r.last_seq,
                replies: r.replies.clone(),
                ring_len: r.ring_len,
                counter: r.counter,
                previous,
                was_connected,
            })
        }))
    }

    async fn save(&self, p: &Progress, ttl: Duration) -> Result<bool, StoreError> {
        Ok(
            self.with(|map| match current(map, p.user_id, p.session_id, p.epoch) {
                // Like the Redis script: never backwards, never after the
                // disconnect save.
                Some((r, _)) if !r.connected || p.last_seq < r.last_seq => true,
                Some((r, exp)) => {
                    write_progress(r, p);
                    *exp = Instant::now() + ttl;
                    true
                }
                None => false,
            }),
        )
    }

    async fn disconnect(&self, p: &Progress, grace: Duration) -> Result<bool, StoreError> {
        Ok(
            self.with(|map| match current(map, p.user_id, p.session_id, p.epoch) {
                Some((r, exp)) => {
                    write_progress(r, p);
                    r.connected = false;
                    r.placement.socket = Uuid::nil();
                    r.placement.owner = 0;
                    *exp = Instant::now() + grace;
                    true
                }
                None => false,
            }),
        )
    }

    async fn remove(&self, user_id: u64, session_id: u64, epoch: u64) -> Result<bool, StoreError> {
        Ok(self.with(|map| {
            if current(map, user_id, session_id, epoch).is_some() {
                map.remove(&user_id);
                true
            } else {
                false
            }
        }))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// What SAVE and DISCONNECT both write: the replies above the stored
/// watermark, the watermark and the counter.
fn write_progress(r: &mut SessionRecord, p: &Progress) {
    append_replies(&mut r.replies, r.last_seq, &p.replies, p.keep);
    r.ring_len = p.ring_len();
    r.last_seq = p.last_seq;
    r.counter = p.counter;
}

/// Placement helper for tests.
#[cfg(test)]
pub(crate) fn placement(owner: u64) -> super::Placement {
    super::Placement {
        owner,
        gateway: 1,
        socket: Uuid::new_v4(),
    }
}

/// Claim helper for tests.
#[cfg(test)]
pub(crate) fn claim(
    user_id: u64,
    session_id: u64,
    expected_epoch: u64,
    to: super::Placement,
) -> Claim {
    Claim {
        user_id,
        session_id,
        expected_epoch,
        to,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(session_id: u64, owner: u64) -> NewSession {
        NewSession {
            session_id,
            user_id: 7,
            token_hash: vec![1; 32],
            placement: placement(owner),
            last_seq: 0,
        }
    }

    const TTL: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn login_replaces_and_bumps_the_epoch() {
        let s = MemoryStore::new();
        let a = s.login(new(1, 1), TTL).await.unwrap();
        assert_eq!((a.epoch, a.replaced), (1, None));
        let b = s.login(new(2, 2), TTL).await.unwrap();
        assert_eq!(b.epoch, 2);
        assert_eq!(b.replaced.unwrap().session_id, 1);
        assert_eq!(s.get(7).await.unwrap().unwrap().session_id, 2);
    }

    #[tokio::test]
    async fn a_stale_epoch_is_fenced_off() {
        let s = MemoryStore::new();
        s.login(new(1, 1), TTL).await.unwrap();
        let t = s
            .take_over(claim(7, 1, 1, placement(2)), TTL)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(t.epoch, 2);
        let stale = Progress {
            user_id: 7,
            session_id: 1,
            epoch: 1,
            last_seq: 9,
            replies: Vec::new(),
            first_reply: 0,
            keep: 32,
            counter: 0,
        };
        assert!(!s.save(&stale, TTL).await.unwrap());
        assert!(s
            .take_over(claim(7, 1, 1, placement(3)), TTL)
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn a_disconnected_record_has_no_owner_and_late_saves_do_not_undo_it() {
        let s = MemoryStore::new();
        s.login(new(1, 1), TTL).await.unwrap();
        let progress = |last_seq| Progress {
            user_id: 7,
            session_id: 1,
            epoch: 1,
            last_seq,
            replies: Vec::new(),
            first_reply: 0,
            keep: 32,
            counter: last_seq * 10,
        };
        assert!(s.save(&progress(4), TTL).await.unwrap());
        assert!(s.disconnect(&progress(5), TTL).await.unwrap());
        // A periodic save that lands after the disconnect save changes nothing.
        assert!(s.save(&progress(3), TTL).await.unwrap());
        let r = s.get(7).await.unwrap().unwrap();
        assert_eq!((r.connected, r.placement.owner, r.last_seq), (false, 0, 5));
        assert_eq!(r.counter, 50, "the counter travels with the watermark");
        let t = s
            .take_over(claim(7, 1, 1, placement(2)), TTL)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((t.last_seq, t.counter), (5, 50));
    }

    #[tokio::test(start_paused = true)]
    async fn disconnected_sessions_expire_after_the_grace() {
        let s = MemoryStore::new();
        s.login(new(1, 1), TTL).await.unwrap();
        let p = Progress {
            user_id: 7,
            session_id: 1,
            epoch: 1,
            last_seq: 3,
            replies: Vec::new(),
            first_reply: 0,
            keep: 32,
            counter: 0,
        };
        assert!(s.disconnect(&p, Duration::from_secs(5)).await.unwrap());
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(s.get(7).await.unwrap().unwrap().last_seq, 3);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(s.get(7).await.unwrap().is_none());
    }
}
