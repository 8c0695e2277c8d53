//! Noticing a Redis Cluster shard's failover. The redis crate's cluster
//! client follows it by itself (it refreshes its slot map and retries), so
//! nothing here moves commands; but a primary that died may have
//! acknowledged writes its replica never received, exactly as with
//! Sentinel, and whoever saved through it must save again
//! ([`RedisConn::primary_changes`]). So [`RedisConn::follow_cluster`] asks
//! the cluster which node serves each slot range (`CLUSTER SLOTS`, one
//! small command on a random node) every [`CLUSTER_POLL`], and at once
//! after a failed command, and counts a change as a primary switch.
//!
//! The same read says whether the shards have replicas: a login then
//! waits for one ([`crate::session::replica_ack`]), with `WAIT` sent to
//! the primary of the user's slot ([`RedisConn::wait_for_replica`]), the
//! node that ran the login.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gamemesh_node::redis_address::cluster_slot;
use gamemesh_node::redis_connection::SharedConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::Value;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::conn::RedisConn;
use super::CommandError;

/// How often the slot map is read. As for Sentinel: a promotion is seen
/// within half a second even if no command failed to tell us.
pub const CLUSTER_POLL: Duration = Duration::from_millis(500);

/// The shortest gap between two reads, so a burst of failing commands
/// during a failover reads the map a few times, not thousands.
const RECHECK_GAP: Duration = Duration::from_millis(100);

impl RedisConn {
    /// Until `shutdown`: reads the cluster's slot map every
    /// [`CLUSTER_POLL`] (and after a failed command) and bumps
    /// [`primary_changes`](Self::primary_changes) when another node serves
    /// a slot range.
    pub(crate) async fn follow_cluster(self, shutdown: CancellationToken) {
        let mut known: Option<BTreeSet<String>> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(CLUSTER_POLL) => {}
                _ = self.inner.recheck.notified() => {}
            }
            // A node that answers with a stale map (or not at all) is
            // skipped: the next read asks another.
            if let Some(now) = self.read_slot_map().await {
                if known.as_ref().is_some_and(|k| *k != now) {
                    self.reconnect_cluster().await;
                    self.inner.switches.send_modify(|n| *n += 1);
                    metrics::counter!("gamemesh_redis_primary_switches_total").increment(1);
                    info!(
                        "Redis Cluster {}: a shard's primary changed (failover or resharding); sessions are saved again",
                        self.inner.target
                    );
                }
                known = Some(now);
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(RECHECK_GAP) => {}
            }
        }
    }

    /// `start-end@host:port` for every slot range, as one node says; and
    /// notes whether every range has a replica (for
    /// [`has_replicas`](Self::has_replicas)).
    pub(crate) async fn read_slot_map(&self) -> Option<BTreeSet<String>> {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SLOTS");
        let mut conn = self.conn();
        let ranges: Vec<Value> =
            tokio::time::timeout(self.inner.timeout, cmd.query_async(&mut conn))
                .await
                .ok()?
                .ok()?;
        let replicated = !ranges.is_empty() && ranges.iter().all(has_replica);
        self.inner
            .cluster_replicated
            .store(replicated, Ordering::Relaxed);
        Some(ranges.iter().filter_map(slot_owner).collect())
    }

    /// `WAIT 1 <bound>` after a write to `key`, on the node that took it
    /// ([`query_slot_primary`](Self::query_slot_primary)), since `WAIT`
    /// counts the replicas that have this connection's writes. The number
    /// of replicas that acknowledged.
    pub(crate) async fn wait_for_replica(
        &self,
        key: &str,
        bound: Duration,
    ) -> Result<i64, CommandError> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(1).arg(bound.as_millis().max(1) as u64);
        let value = self.query_slot_primary(wait, key).await?;
        redis::FromRedisValue::from_redis_value(value)
            .map_err(|e| CommandError(format!("WAIT answered {e}")))
    }

    /// The `INFO replication` text of the primary that serves `key`, or
    /// `None` if it did not answer.
    pub(crate) async fn primary_info_replication(&self, key: &str) -> Option<String> {
        let mut info = redis::cmd("INFO");
        info.arg("replication");
        let v = self.query_slot_primary(info, key).await.ok()?;
        redis::FromRedisValue::from_redis_value(v).ok()
    }

    /// Runs `cmd` on the primary: on a cluster, the primary of `key`'s
    /// slot, over the connection the key's commands take (the crate keeps
    /// one per node); the crate's own routing would send a keyless
    /// command such as `WAIT` or `INFO` to every primary.
    async fn query_slot_primary(&self, cmd: redis::Cmd, key: &str) -> Result<Value, CommandError> {
        let SharedConnection::Cluster(mut conn) = self.conn() else {
            return self.query(&cmd).await;
        };
        let primary = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
            cluster_slot(key),
            SlotAddr::Master,
        )));
        self.bounded(conn.route_command(cmd, primary)).await
    }
}

/// Whether a `CLUSTER SLOTS` entry lists a replica after its primary.
fn has_replica(range: &Value) -> bool {
    matches!(range, Value::Array(fields) if fields.len() > 3)
}

/// One `CLUSTER SLOTS` entry (`[start, end, [host, port, id, ...], ...]`)
/// as `start-end@host:port`.
fn slot_owner(range: &Value) -> Option<String> {
    let Value::Array(fields) = range else {
        return None;
    };
    let (Value::Int(start), Value::Int(end), Value::Array(primary)) =
        (fields.first()?, fields.get(1)?, fields.get(2)?)
    else {
        return None;
    };
    let host = match primary.first()? {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        _ => return None,
    };
    let Value::Int(port) = primary.get(1)? else {
        return None;
    };
    Some(format!("{start}-{end}@{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_range_names_its_primary() {
        let entry = Value::Array(vec![
            Value::Int(0),
            Value::Int(5460),
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(7000),
                Value::BulkString(b"id".to_vec()),
            ]),
        ]);
        assert_eq!(slot_owner(&entry).as_deref(), Some("0-5460@127.0.0.1:7000"));
        assert_eq!(slot_owner(&Value::Int(1)), None);
        assert!(!has_replica(&entry));
        let Value::Array(mut fields) = entry else {
            unreachable!()
        };
        fields.push(Value::Array(vec![
            Value::BulkString(b"127.0.0.1".to_vec()),
            Value::Int(7003),
        ]));
        assert!(has_replica(&Value::Array(fields)));
    }
}
