//! [`MemoryPlayerData`]: player data in a map, for tests and for a game
//! server run with the memory session store (lost on restart, as its
//! sessions are).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{expectation_holds, DataError, Expect, PlayerDataStore, Versioned, Write};

/// One user's data: the version counter and the fields.
#[derive(Debug, Default)]
struct UserData {
    /// Last version handed out (the Redis store's `#v` field).
    counter: u64,
    /// field -> value.
    fields: BTreeMap<String, Versioned>,
}

/// Player data in process memory, with the Redis store's semantics.
#[derive(Debug, Default)]
pub struct MemoryPlayerData {
    /// user -> data.
    users: Mutex<HashMap<u64, UserData>>,
}

impl MemoryPlayerData {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn users(&self) -> MutexGuard<'_, HashMap<u64, UserData>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl PlayerDataStore for MemoryPlayerData {
    async fn get(&self, user: u64, field: &str) -> Result<Option<Versioned>, DataError> {
        Ok(self
            .users()
            .get(&user)
            .and_then(|u| u.fields.get(field).cloned()))
    }

    async fn set(&self, write: Write<'_>) -> Result<u64, DataError> {
        let Write {
            user,
            field,
            value,
            expect,
        } = write;
        let mut users = self.users();
        let data = users.entry(user).or_default();
        let current = data.fields.get(field).map(|v| v.version);
        if !expectation_holds(expect, current) {
            return Err(DataError::Conflict { current });
        }
        data.counter += 1;
        let version = data.counter;
        data.fields
            .insert(field.to_string(), Versioned { value, version });
        Ok(version)
    }

    async fn delete(&self, user: u64, field: &str, expect: Expect) -> Result<bool, DataError> {
        let mut users = self.users();
        let data = users.entry(user).or_default();
        let current = data.fields.get(field).map(|v| v.version);
        if !expectation_holds(expect, current) {
            return Err(DataError::Conflict { current });
        }
        Ok(data.fields.remove(field).is_some())
    }

    async fn list(&self, user: u64, prefix: &str) -> Result<Vec<(String, Versioned)>, DataError> {
        Ok(self
            .users()
            .get(&user)
            .map(|u| {
                u.fields
                    .iter()
                    .filter(|(f, _)| f.starts_with(prefix))
                    .map(|(f, v)| (f.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn the_memory_store_behaves_as_the_redis_store() {
        super::super::conformance::run(Arc::new(MemoryPlayerData::new())).await;
    }
}
