//! A login is acknowledged only once a replica has it, where replicas
//! exist (Sentinel, a Redis Cluster with replicas), within a bound.
//!
//! Redis replicates asynchronously, so a primary answers the `LOGIN`
//! script before any replica has it. A planned failover (`SENTINEL
//! FAILOVER`) makes that visible: between the replica's promotion and the
//! old primary's demotion, and until the game servers follow (the sentinel
//! poll), logins still land on the old primary, are answered, and are
//! thrown away when it resyncs as a replica. The client holds a session id
//! the cluster has never heard of.
//!
//! So after the script, `WAIT 1 <bound>`: on the same multiplexed
//! connection, so it covers the script. One replica acknowledged: the
//! login survives a failover to it. None within the bound: either the
//! replica is slow or down (nothing a failover could save either), or a
//! failover has begun (the promoted replica has left this node). The
//! sentinels tell which, though not at once: the test saw them still name
//! the old primary when the promoted replica had already stopped
//! answering, and name the new one about half a second later. So the
//! login asks them every [`CONFIRM_POLL`] for up to [`CONFIRM_WINDOW`]: if
//! they name another primary, it is answered `UNAVAILABLE` (a login is not
//! deduplicated; the client's retry lands on the new primary). If they
//! still name this one at the end, the replica is slow or down: the login
//! is acknowledged, one WARN line per 10 s says so, and `WAIT` is skipped
//! for [`SKIP_AFTER_MISS`], so a replica outage costs one login the
//! window now and then, not every login.
//!
//! The bound is [`WAIT_BOUND`] (capped at half the command timeout). A
//! healthy replica acknowledges in one round trip; the cost is that round
//! trip on every login, and `WAIT` holds the shared connection's later
//! commands behind it for that long. Plain `host:port`/`redis://`
//! addresses, and clusters with a shard without a replica, skip all of
//! this: gamemesh knows of no replica there.
//!
//! With several replicas, `WAIT 1` can be satisfied by a replica Sentinel
//! does not promote; a single replica per primary (the tested setup) or a
//! Sentinel that promotes the most advanced replica keeps the guarantee.
//!
//! **On a Redis Cluster** whose shards have replicas the same holds per
//! shard: `WAIT` goes to the primary of the user's slot, the node that ran
//! the login ([`RedisConn::wait_for_replica`]), and "another primary" means
//! the cluster's slot map changed (the game server reads it every 500 ms,
//! and at once when asked). A cluster's manual failover (`CLUSTER
//! FAILOVER`) pauses the old primary's writers until its replica has
//! caught up, so there the wait guards against a crash or a partition: a
//! login is answered only once the replica that will be promoted has it.
//! The skip after a miss is for every shard, not only the slow one.
//!
//! If the primary changed between the login script and its `WAIT` (the
//! game server moved: the script may have run on the old one), the login
//! is answered `UNAVAILABLE` at once.

use std::sync::Mutex;
use std::time::Duration;

use gamemesh_node::log_throttle::LogThrottle;
use tokio::time::Instant;
use tracing::warn;

use super::StoreError;
use crate::redis::{RedisConn, WriteMark};

/// Longest wait for a replica's acknowledgement.
pub const WAIT_BOUND: Duration = Duration::from_millis(100);
/// After a wait that no replica answered, how long the sentinels are
/// watched for a failover before the replica is taken to be down.
pub const CONFIRM_WINDOW: Duration = Duration::from_secs(2);
/// Between two looks at the sentinels in that window.
pub const CONFIRM_POLL: Duration = Duration::from_millis(100);
/// After a wait that no replica answered (and no failover), logins skip
/// the wait this long.
pub const SKIP_AFTER_MISS: Duration = Duration::from_secs(5);

/// The state of the login's replica wait, shared by the store's clones.
#[derive(Debug)]
pub struct ReplicaAck {
    /// No wait until then (a replica did not answer lately).
    skip_until: Mutex<Option<Instant>>,
    /// One "no replica acknowledged" line per interval.
    log: LogThrottle,
}

impl Default for ReplicaAck {
    fn default() -> Self {
        Self {
            skip_until: Mutex::new(None),
            log: LogThrottle::new(Duration::from_secs(10)),
        }
    }
}

impl ReplicaAck {
    fn skipping(&self) -> bool {
        let until = *self.skip_until.lock().unwrap_or_else(|p| p.into_inner());
        until.is_some_and(|u| Instant::now() < u)
    }

    fn skip_for_a_while(&self) {
        *self.skip_until.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Instant::now() + SKIP_AFTER_MISS);
    }

    /// After a write to `key` on `conn`, sent where `mark` says: waits
    /// (bounded) for a replica to have it. `Err` when none did because a
    /// failover has begun (the write may be lost).
    pub async fn confirm(
        &self,
        conn: &RedisConn,
        mark: &WriteMark,
        key: &str,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        if !conn.has_replicas() || self.skipping() {
            return Ok(());
        }
        let primary = &mark.primary;
        let failed_over = || {
            StoreError::Unavailable(format!(
                "the Redis primary {primary} was failed over before a replica had the login; log in again"
            ))
        };
        // A WAIT on another connection would count nothing of the write.
        if conn.switched_since(mark) {
            return Err(failed_over());
        }
        let bound = WAIT_BOUND.min(timeout / 2);
        if conn.wait_for_replica(key, bound).await? >= 1 {
            return Ok(());
        }
        metrics::counter!("gamemesh_redis_replica_ack_missed_total").increment(1);
        if failover_began(conn, mark).await {
            conn.suspect_primary();
            return Err(failed_over());
        }
        self.skip_for_a_while();
        if let Some(held) = self.log.allow() {
            warn!(
                "No Redis replica acknowledged a login within {bound:?} (primary {primary} unchanged); acknowledging it anyway and not waiting for {SKIP_AFTER_MISS:?} ({held} more since the last line)"
            );
        }
        Ok(())
    }
}

/// Whether the sentinels name a primary other than `mark`'s, or the
/// game server saw a primary change (a cluster's slot map), within
/// [`CONFIRM_WINDOW`].
async fn failover_began(conn: &RedisConn, mark: &WriteMark) -> bool {
    let deadline = Instant::now() + CONFIRM_WINDOW;
    if conn.is_cluster() {
        // Read the slot map now, not at the next poll.
        conn.suspect_primary();
    }
    loop {
        if conn.switched_since(mark) || conn.primary_moved_from(&mark.primary).await == Some(true) {
            return true;
        }
        if Instant::now() + CONFIRM_POLL > deadline {
            return false;
        }
        tokio::time::sleep(CONFIRM_POLL).await;
    }
}
