//! Where the job store and the event bus get their Redis connections.
//!
//! The game server already holds one connection to Redis that knows TLS
//! CAs, ACL users and Sentinel, and follows the primary through failovers.
//! The jobs must go wherever it goes (jobs written to a demoted primary are
//! lost with it), so the store takes its connections from a
//! [`RedisSource`] instead of opening its own. [`PlainRedis`] is the simple
//! one, for `test-client admin` and tests: one address (or one Redis
//! Cluster), no Sentinel.
//!
//! The connections are [`SharedConnection`]s: one primary or a Redis
//! Cluster, the same to the store (its keys share the `{jobs}` hash tag,
//! so every script and pipeline touches one slot).

use std::time::Duration;

use gamemesh_node::redis_address::{normalise, redact, RedisAddress};
use gamemesh_node::redis_connection::{PubSubClient, SharedConnection};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::watch;

use crate::JobsError;

/// Hands out connections to the current Redis primary.
pub trait RedisSource: Send + Sync + 'static {
    /// The multiplexed connection commands and scripts go to now.
    fn connection(&self) -> SharedConnection;

    /// A client for the current primary (or the cluster), to open a
    /// pub/sub connection (which cannot share the multiplexed one).
    fn client(&self) -> PubSubClient;

    /// Changes each time the primary moves, so the event listener
    /// subscribes again on the new one. `None` when it never moves.
    fn primary_changes(&self) -> Option<watch::Receiver<u64>> {
        None
    }

    /// A command failed: the primary may have moved, so a source that
    /// follows one may look now rather than at its next check.
    fn command_failed(&self) {}
}

/// One Redis at one address (or one Redis Cluster), reconnecting by
/// itself.
#[derive(Clone)]
pub struct PlainRedis {
    /// The client, kept for pub/sub connections.
    client: PubSubClient,
    /// Multiplexed, self-reconnecting connection.
    conn: SharedConnection,
}

impl PlainRedis {
    /// Connects to Redis at `addr` (`host:port`, a `redis://` URL or a
    /// `redis+cluster://` address), failing within about twice `timeout`
    /// if it does not answer.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Self, JobsError> {
        let bad = |reason: String| JobsError::BadAddress {
            addr: redact(addr),
            reason,
        };
        if let Ok(RedisAddress::Cluster(cluster)) = RedisAddress::parse(addr) {
            let builder = |resp3: bool| cluster.client_builder(timeout, resp3).build();
            let commands = builder(false).map_err(|e| bad(e.to_string()))?;
            let pubsub = builder(true).map_err(|e| bad(e.to_string()))?;
            let conn = tokio::time::timeout(timeout * 2, commands.get_async_connection())
                .await
                .map_err(|_| JobsError::Timeout(timeout * 2))??;
            return Ok(Self {
                client: PubSubClient::Cluster(pubsub),
                conn: SharedConnection::Cluster(conn),
            });
        }
        let client = redis::Client::open(normalise(addr)).map_err(|e| bad(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let conn = tokio::time::timeout(
            timeout * 2,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .map_err(|_| JobsError::Timeout(timeout * 2))??;
        Ok(Self {
            client: PubSubClient::Single(client),
            conn: SharedConnection::Single(conn),
        })
    }
}

impl RedisSource for PlainRedis {
    fn connection(&self) -> SharedConnection {
        self.conn.clone()
    }

    fn client(&self) -> PubSubClient {
        self.client.clone()
    }
}
