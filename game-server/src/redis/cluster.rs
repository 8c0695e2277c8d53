//! Noticing a Redis Cluster shard's failover. The redis crate's cluster
//! client follows it by itself (it refreshes its slot map and retries), so
//! nothing here moves commands; but a primary that died may have
//! acknowledged writes its replica never received, exactly as with
//! Sentinel, and whoever saved through it must save again
//! ([`RedisConn::primary_changes`]). So [`RedisConn::follow_cluster`] asks
//! the cluster which node serves each slot range (`CLUSTER SLOTS`, one
//! small command on a random node) every [`CLUSTER_POLL`], and at once
//! after a failed command, and counts a change as a primary switch.

use std::collections::BTreeSet;
use std::time::Duration;

use redis::Value;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::conn::RedisConn;

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
            if let Some(now) = self.slot_owners().await {
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

    /// `start-end@host:port` for every slot range, as one node says.
    async fn slot_owners(&self) -> Option<BTreeSet<String>> {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SLOTS");
        let mut conn = self.conn();
        let ranges: Vec<Value> =
            tokio::time::timeout(self.inner.timeout, cmd.query_async(&mut conn))
                .await
                .ok()?
                .ok()?;
        Some(ranges.iter().filter_map(slot_owner).collect())
    }
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
    }
}
