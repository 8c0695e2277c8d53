//! Where players' sessions are: the seam rooms use to keep their members
//! true.
//!
//! A room keeps `(user, session, node)` for each member. Every sweep it
//! asks the [`SessionDirectory`] where its members' sessions are now: a
//! member whose user has no session any more (logged out, expired) or
//! another one (replaced by a new login) leaves; a member that resumed on
//! another game server is pushed to there from then on. The core answers
//! from the session store; [`MemorySessions`] is the twin for tests.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::error::GameError;

/// A user's live session and where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionAt {
    /// The session.
    pub session_id: u64,
    /// The game server that owns it; 0 while it is disconnected and
    /// waiting to be resumed.
    pub node: u64,
}

/// Answers where users' sessions are. Implemented by the core.
#[async_trait]
pub trait SessionDirectory: Send + Sync + 'static {
    /// For each of `users`, in order: its live session, or `None` when it
    /// has none.
    async fn locate(&self, users: &[u64]) -> Result<Vec<Option<SessionAt>>, GameError>;
}

/// The in-memory [`SessionDirectory`]: tests say who is connected where.
#[derive(Debug, Default)]
pub struct MemorySessions {
    /// user -> its session.
    by_user: Mutex<HashMap<u64, SessionAt>>,
}

impl MemorySessions {
    fn map(&self) -> MutexGuard<'_, HashMap<u64, SessionAt>> {
        self.by_user.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `user`'s session is now `at` (a login, a resume, a disconnect).
    pub fn set(&self, user: u64, at: SessionAt) {
        self.map().insert(user, at);
    }

    /// `user`'s session stays resumable but has no connection.
    pub fn disconnect(&self, user: u64) {
        if let Some(s) = self.map().get_mut(&user) {
            s.node = 0;
        }
    }

    /// `user` has no session any more (logout, expiry).
    pub fn end(&self, user: u64) {
        self.map().remove(&user);
    }

    /// `user`'s session, if any.
    pub fn get(&self, user: u64) -> Option<SessionAt> {
        self.map().get(&user).copied()
    }

    /// Users with a connected session.
    pub fn connected_users(&self) -> Vec<u64> {
        let mut users: Vec<u64> = self
            .map()
            .iter()
            .filter(|(_, s)| s.node != 0)
            .map(|(u, _)| *u)
            .collect();
        users.sort_unstable();
        users
    }
}

#[async_trait]
impl SessionDirectory for MemorySessions {
    async fn locate(&self, users: &[u64]) -> Result<Vec<Option<SessionAt>>, GameError> {
        let map = self.map();
        Ok(users.iter().map(|u| map.get(u).copied()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sessions_connect_disconnect_and_end() {
        let s = MemorySessions::default();
        s.set(
            1,
            SessionAt {
                session_id: 5,
                node: 2,
            },
        );
        s.set(
            2,
            SessionAt {
                session_id: 6,
                node: 3,
            },
        );
        s.disconnect(2);
        assert_eq!(s.connected_users(), vec![1]);
        let found = s.locate(&[1, 2, 3]).await.unwrap();
        assert_eq!(
            found,
            vec![
                Some(SessionAt {
                    session_id: 5,
                    node: 2
                }),
                Some(SessionAt {
                    session_id: 6,
                    node: 0
                }),
                None
            ]
        );
        s.end(1);
        assert_eq!(s.get(1), None);
    }
}
