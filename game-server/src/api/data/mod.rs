//! Per-player data: a small versioned key-value store per user that
//! survives restarts, with compare-and-set so two writers never silently
//! overwrite each other.
//!
//! - Every value carries a version. A write says what it expects
//!   ([`Expect`]): nothing there yet, the version it read, or anything.
//!   A write whose expectation is stale fails with
//!   [`DataError::Conflict`] and the current version, and the writer
//!   reads again. [`Data::update`] is that loop, done for you.
//! - Versions come from one counter per user, so they only grow, also
//!   across a delete: a key deleted and written again never reuses a
//!   version an old reader holds (no ABA).
//! - A module sees only its own keys: [`Data`] is scoped to a module, and
//!   stores `"<module>:<key>"` in the user's hash.
//! - The store is a trait ([`PlayerDataStore`]): [`redis::RedisPlayerData`]
//!   keeps each user's data in one hash, `gm:{u:<user_id>}:data`, hash-
//!   tagged per user so Redis Cluster keeps it in one slot;
//!   [`memory::MemoryPlayerData`] is the twin for tests.

pub mod memory;
pub mod redis;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use prost::Message;
use thiserror::Error;

use super::error::GameError;

/// Longest key, in bytes.
pub const MAX_KEY: usize = 64;
/// Largest value, in bytes: this is per-player state (a loadout, a
/// currency balance), not a blob store.
pub const MAX_VALUE: usize = 64 * 1024;
/// Compare-and-set attempts of [`Data::update`] before it gives up.
pub const UPDATE_ATTEMPTS: u32 = 16;

/// A stored value and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The value.
    pub value: Bytes,
    /// Its version: greater than every version the user's data had before.
    pub version: u64,
}

/// What a write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Write whatever is there (last writer wins: use it knowingly).
    Any,
    /// Write only if the key has no value.
    Absent,
    /// Write only if the key's value is at this version.
    Version(u64),
}

/// Why a data operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DataError {
    /// The value is not what the write expected; `current` is its version
    /// now (`None`: no value).
    #[error("conflict: the value changed (now at version {current:?})")]
    Conflict {
        /// The version found.
        current: Option<u64>,
    },
    /// A key that is not 1 to 64 bytes of `[A-Za-z0-9_.-]`.
    #[error("bad key \"{0}\": a key is 1 to 64 bytes of A-Z, a-z, 0-9, '_', '.' and '-'")]
    BadKey(String),
    /// A value over [`MAX_VALUE`].
    #[error("value of {0} bytes is over the limit of {MAX_VALUE}")]
    TooLarge(usize),
    /// The store did not answer; retrying later is safe.
    #[error("player data unavailable: {0}")]
    Unavailable(String),
    /// The store holds something this code cannot read.
    #[error("player data unreadable: {0}")]
    Corrupt(String),
}

impl From<DataError> for GameError {
    fn from(e: DataError) -> Self {
        match e {
            DataError::Unavailable(d) => GameError::Unavailable(d),
            // The compare-and-set wrote nothing.
            DataError::Conflict { .. } => {
                GameError::NothingHappened("player data changed concurrently; retry".into())
            }
            other => GameError::Internal(other.to_string()),
        }
    }
}

/// One compare-and-set write, as [`PlayerDataStore::set`] takes it.
#[derive(Debug, Clone)]
pub struct Write<'a> {
    /// Whose data.
    pub user: u64,
    /// The field, `"<module>:<key>"`, already checked.
    pub field: &'a str,
    /// The value, at most [`MAX_VALUE`] bytes (checked by [`Data::set`]).
    pub value: Bytes,
    /// What the write expects to find.
    pub expect: Expect,
}

/// Where player data lives. Fields are `"<module>:<key>"`, already
/// checked; every method is atomic per user.
#[async_trait]
pub trait PlayerDataStore: Send + Sync + 'static {
    /// The value of `field` for `user`.
    async fn get(&self, user: u64, field: &str) -> Result<Option<Versioned>, DataError>;

    /// Does `write` if its expectation holds; returns the new version.
    async fn set(&self, write: Write<'_>) -> Result<u64, DataError>;

    /// Deletes `field` if `expect` holds; false when there was nothing.
    async fn delete(&self, user: u64, field: &str, expect: Expect) -> Result<bool, DataError>;

    /// Every field of `user` that starts with `prefix`, sorted by field.
    async fn list(&self, user: u64, prefix: &str) -> Result<Vec<(String, Versioned)>, DataError>;
}

/// True for a key of 1 to [`MAX_KEY`] bytes of `[A-Za-z0-9_.-]`.
pub fn valid_key(key: &str) -> bool {
    crate::api::name::bounded(key, MAX_KEY, crate::api::name::dotted_word_byte)
}

/// Whether a value found at `current` satisfies `expect`.
pub(crate) fn expectation_holds(expect: Expect, current: Option<u64>) -> bool {
    match expect {
        Expect::Any => true,
        Expect::Absent => current.is_none(),
        Expect::Version(v) => current == Some(v),
    }
}

/// One module's view of every player's data.
#[derive(Clone)]
pub struct Data {
    /// Where it is kept.
    store: Arc<dyn PlayerDataStore>,
    /// The module whose keys these are (the field prefix).
    module: Arc<str>,
}

impl Data {
    /// `module`'s data in `store`.
    pub fn new(store: Arc<dyn PlayerDataStore>, module: &str) -> Self {
        Self {
            store,
            module: Arc::from(module),
        }
    }

    fn field(&self, key: &str) -> Result<String, DataError> {
        if !valid_key(key) {
            return Err(DataError::BadKey(key.to_string()));
        }
        Ok(format!("{}:{key}", self.module))
    }

    /// `user`'s value under `key`.
    pub async fn get(&self, user: u64, key: &str) -> Result<Option<Versioned>, DataError> {
        let field = self.field(key)?;
        self.store.get(user, &field).await
    }

    /// Writes `value` under `key` if `expect` holds; the new version.
    pub async fn set(
        &self,
        user: u64,
        key: &str,
        value: impl Into<Bytes>,
        expect: Expect,
    ) -> Result<u64, DataError> {
        let field = self.field(key)?;
        let value = value.into();
        if value.len() > MAX_VALUE {
            return Err(DataError::TooLarge(value.len()));
        }
        self.store
            .set(Write {
                user,
                field: &field,
                value,
                expect,
            })
            .await
    }

    /// Deletes `key` if `expect` holds; false when there was nothing.
    pub async fn delete(&self, user: u64, key: &str, expect: Expect) -> Result<bool, DataError> {
        let field = self.field(key)?;
        self.store.delete(user, &field, expect).await
    }

    /// Every key this module keeps for `user`, sorted.
    pub async fn all(&self, user: u64) -> Result<Vec<(String, Versioned)>, DataError> {
        let prefix = format!("{}:", self.module);
        let fields = self.store.list(user, &prefix).await?;
        Ok(fields
            .into_iter()
            .map(|(f, v)| (f[prefix.len()..].to_string(), v))
            .collect())
    }

    /// `user`'s value under `key` decoded as the message `M`, with its
    /// version.
    pub async fn get_msg<M: Message + Default>(
        &self,
        user: u64,
        key: &str,
    ) -> Result<Option<(M, u64)>, DataError> {
        match self.get(user, key).await? {
            None => Ok(None),
            Some(v) => M::decode(v.value)
                .map(|m| Some((m, v.version)))
                .map_err(|e| DataError::Corrupt(format!("{key}: {e}"))),
        }
    }

    /// Reads `key` as `M` (the default message when absent), applies `f`,
    /// and writes it back only if nobody wrote in between; on a conflict
    /// it reads again and retries, up to [`UPDATE_ATTEMPTS`] times. `f`
    /// may refuse, which writes nothing. Returns the message written and
    /// its version. Between attempts it waits a short random time, so two
    /// writers in lockstep do not keep colliding.
    pub async fn update<M, F>(&self, user: u64, key: &str, mut f: F) -> Result<(M, u64), GameError>
    where
        M: Message + Default,
        F: FnMut(&mut M) -> Result<(), GameError>,
    {
        for attempt in 0..UPDATE_ATTEMPTS {
            if attempt > 0 {
                let jitter = rand::random_range(0..200 * u64::from(attempt));
                tokio::time::sleep(std::time::Duration::from_micros(jitter)).await;
            }
            let (mut msg, expect) = match self.get_msg::<M>(user, key).await? {
                Some((m, v)) => (m, Expect::Version(v)),
                None => (M::default(), Expect::Absent),
            };
            f(&mut msg)?;
            match self
                .set(user, key, Bytes::from(msg.encode_to_vec()), expect)
                .await
            {
                Ok(version) => return Ok((msg, version)),
                Err(DataError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(GameError::nothing_happened(format!(
            "{key} of user {user} kept changing; retry"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_short_and_plain() {
        assert!(valid_key("coins"));
        assert!(valid_key("Deck-2.v1_x"));
        assert!(valid_key(&"k".repeat(MAX_KEY)));
        for bad in ["", "a:b", "a b", "a{b}", "é"] {
            assert!(!valid_key(bad), "{bad:?}");
        }
        assert!(!valid_key(&"k".repeat(MAX_KEY + 1)));
    }

    #[test]
    fn expectations() {
        assert!(expectation_holds(Expect::Any, None));
        assert!(expectation_holds(Expect::Any, Some(3)));
        assert!(expectation_holds(Expect::Absent, None));
        assert!(!expectation_holds(Expect::Absent, Some(1)));
        assert!(expectation_holds(Expect::Version(2), Some(2)));
        assert!(!expectation_holds(Expect::Version(2), Some(3)));
        assert!(!expectation_holds(Expect::Version(2), None));
    }

    #[test]
    fn a_conflict_is_retryable_and_a_bad_key_is_a_bug() {
        let e: GameError = DataError::Conflict { current: Some(1) }.into();
        assert_eq!(e.code_name(), "UNAVAILABLE");
        let e: GameError = DataError::BadKey("a:b".into()).into();
        assert_eq!(e.code_name(), "INTERNAL");
    }
}

/// The behaviour every [`PlayerDataStore`] must have, run against the
/// memory twin and against real Redis, so the twin cannot drift.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;

    pub(crate) async fn run(store: Arc<dyn PlayerDataStore>) {
        let d = Data::new(store.clone(), "m");
        let other = Data::new(store, "other");
        assert_eq!(d.get(1, "k").await.unwrap(), None);

        // Create, then compare-and-set on the version read.
        let v1 = d.set(1, "k", &b"a"[..], Expect::Absent).await.unwrap();
        assert_eq!(
            d.set(1, "k", &b"x"[..], Expect::Absent).await,
            Err(DataError::Conflict { current: Some(v1) })
        );
        let v2 = d.set(1, "k", &b"b"[..], Expect::Version(v1)).await.unwrap();
        assert!(v2 > v1);
        assert_eq!(
            d.set(1, "k", &b"c"[..], Expect::Version(v1)).await,
            Err(DataError::Conflict { current: Some(v2) }),
            "a stale version never overwrites"
        );
        let got = d.get(1, "k").await.unwrap().unwrap();
        assert_eq!((&got.value[..], got.version), (&b"b"[..], v2));

        // Binary values, the empty value, a value with the separator.
        let v = d
            .set(1, "bin", vec![0u8, b':', 255], Expect::Any)
            .await
            .unwrap();
        assert_eq!(d.get(1, "bin").await.unwrap().unwrap().version, v);
        assert_eq!(
            &d.get(1, "bin").await.unwrap().unwrap().value[..],
            &[0u8, b':', 255]
        );
        d.set(1, "empty", Bytes::new(), Expect::Any).await.unwrap();
        assert!(d.get(1, "empty").await.unwrap().unwrap().value.is_empty());

        // Delete with an expectation; versions never come back.
        assert_eq!(
            d.delete(1, "k", Expect::Version(v1)).await,
            Err(DataError::Conflict { current: Some(v2) })
        );
        assert_eq!(d.delete(1, "k", Expect::Version(v2)).await, Ok(true));
        assert_eq!(d.delete(1, "k", Expect::Any).await, Ok(false));
        assert_eq!(
            d.delete(1, "k", Expect::Version(v2)).await,
            Err(DataError::Conflict { current: None })
        );
        let v3 = d.set(1, "k", &b"again"[..], Expect::Absent).await.unwrap();
        assert!(
            v3 > v2,
            "a recreated key gets a version above any before (no ABA)"
        );

        // Modules and users are apart.
        assert_eq!(other.get(1, "k").await.unwrap(), None);
        other.set(1, "k", &b"o"[..], Expect::Any).await.unwrap();
        assert_eq!(d.get(2, "k").await.unwrap(), None);
        let keys: Vec<String> = d
            .all(1)
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec!["bin", "empty", "k"]);
        assert_eq!(other.all(1).await.unwrap().len(), 1);

        // Limits.
        assert_eq!(
            d.set(1, "a:b", &b"x"[..], Expect::Any).await,
            Err(DataError::BadKey("a:b".into()))
        );
        assert_eq!(
            d.set(1, "big", vec![0u8; MAX_VALUE + 1], Expect::Any).await,
            Err(DataError::TooLarge(MAX_VALUE + 1))
        );
        assert!(d
            .set(1, "max", vec![7u8; MAX_VALUE], Expect::Any)
            .await
            .is_ok());
    }
}
