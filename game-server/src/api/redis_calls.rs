//! Bounded Redis calls for the API's Redis stores (player data, rooms).
//!
//! The stores take their connections from a [`RedisSource`] (the game
//! server's own connection, which knows ACL users, TLS and Sentinel and
//! follows the primary through failovers), bound every call by a timeout,
//! and tell the source when a call failed so it can look for a new
//! primary at once.

use std::sync::Arc;
use std::time::Duration;

use gamemesh_jobs::RedisSource;
use redis::Script;

/// Where calls go and how long they may take.
#[derive(Clone)]
pub(crate) struct RedisCalls {
    /// Connections to the current primary.
    source: Arc<dyn RedisSource>,
    /// The bound on every call.
    timeout: Duration,
}

impl RedisCalls {
    pub(crate) fn new(source: Arc<dyn RedisSource>, timeout: Duration) -> Self {
        Self { source, timeout }
    }

    /// Runs `cmd`, bounded; the error is a sentence for logs and clients.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, String> {
        let mut conn = self.source.connection();
        self.bounded(async move { cmd.query_async(&mut conn).await })
            .await
    }

    /// Runs `script` with `keys` and `args`, bounded.
    pub(crate) async fn script<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<T, String> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(*k);
        }
        for a in args {
            inv.arg(*a);
        }
        let mut conn = self.source.connection();
        self.bounded(async move { inv.invoke_async(&mut conn).await })
            .await
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        let why = match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer from Redis within {:?}", self.timeout),
        };
        // Maybe the primary moved: let a source that follows it look now.
        self.source.command_failed();
        Err(why)
    }
}
