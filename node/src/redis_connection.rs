//! One connection type for every Redis deployment, so the stores built on
//! Redis (sessions, registry, rooms, player data, jobs, events) run their
//! commands and scripts the same way whether the game server talks to one
//! Redis, a primary named by sentinels, or a Redis Cluster.
//!
//! [`SharedConnection`] is the multiplexed connection commands go to: a
//! `ConnectionManager` for one primary, the redis crate's asynchronous
//! `ClusterConnection` for a cluster (which routes each command by its
//! key's slot, follows `MOVED`/`ASK` redirects and refreshes its slot map
//! when a shard fails over). Both implement the crate's `ConnectionLike`,
//! so `query_async`, pipelines and `Script::invoke_async` take either.
//!
//! What a caller must still know about a cluster: a pipeline, a script or
//! a multi-key command must touch keys of ONE slot (hash tags), and
//! pub/sub is sharded ([`PubSubClient`]).

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// A multiplexed connection to Redis, cheap to clone.
#[derive(Clone)]
pub enum SharedConnection {
    /// One primary (plain or Sentinel), reconnecting by itself.
    Single(ConnectionManager),
    /// A Redis Cluster: routed by slot, following redirects and failovers.
    Cluster(ClusterConnection),
}

impl SharedConnection {
    /// True for a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, SharedConnection::Cluster(_))
    }
}

impl ConnectionLike for SharedConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            SharedConnection::Single(c) => c.req_packed_command(cmd),
            SharedConnection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            SharedConnection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            SharedConnection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            SharedConnection::Single(c) => c.get_db(),
            SharedConnection::Cluster(c) => c.get_db(),
        }
    }
}

/// Where a pub/sub subscription is opened (it cannot share the
/// multiplexed connection).
// Both variants are a few hundred bytes; it is cloned once per
// subscription, never on a hot path, so neither is boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum PubSubClient {
    /// One primary: `SUBSCRIBE` / `PUBLISH`, reaching every subscriber.
    Single(redis::Client),
    /// A cluster: sharded pub/sub (`SSUBSCRIBE` / `SPUBLISH`), which the
    /// channel's shard serves alone, so a message is never broadcast over
    /// the cluster bus. The client speaks RESP3 (the crate delivers
    /// sharded messages as pushes) and resubscribes after reconnects and
    /// slot moves.
    Cluster(ClusterClient),
}
