//! [`StoreDirectory`]: where players' sessions are, for rooms checking
//! their members, read from the session store.

use std::sync::Arc;

use async_trait::async_trait;

use crate::api::{GameError, SessionAt, SessionDirectory};
use crate::session::SessionStore;

/// The session directory the game API gets.
pub struct StoreDirectory {
    /// The source of truth for sessions.
    store: Arc<dyn SessionStore>,
}

impl StoreDirectory {
    pub(crate) fn new(store: Arc<dyn SessionStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl SessionDirectory for StoreDirectory {
    async fn locate(&self, users: &[u64]) -> Result<Vec<Option<SessionAt>>, GameError> {
        let places = self
            .store
            .locate(users)
            .await
            .map_err(|e| GameError::unavailable(e.to_string()))?;
        Ok(places
            .into_iter()
            .map(|p| {
                p.map(|p| SessionAt {
                    session_id: p.session_id,
                    node: if p.connected { p.owner } else { 0 },
                })
            })
            .collect())
    }
}
