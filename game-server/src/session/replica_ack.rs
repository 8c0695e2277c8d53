//! A login is acknowledged only once a replica has it, where replicas
//! exist (Sentinel, a Redis Cluster with replicas), or once the replicas
//! are known to be down.
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
//! login survives a failover to it. None within the bound (a miss): the
//! login asks the facts, not a clock ([`look`]):
//!
//! - the sentinels name another primary (or, on a cluster, the game
//!   server saw the slot map change), or a replica answers `ROLE` as a
//!   primary, or as the replica of another node: **a failover has begun**.
//!   The login is answered `UNAVAILABLE` (a login is not deduplicated; the
//!   client's retry lands on the new primary).
//! - a replica answers as this primary's replica with its link up: it is
//!   **slow**, and will be promoted with whatever it has. The login waits
//!   again (`WAIT`, one bound at a time) for up to [`CONFIRM_WINDOW`], then
//!   is refused: never acknowledged without an acknowledgement.
//! - every replica is unreachable (refused, or no answer to `ROLE` within
//!   the command timeout) or not linked (its link down, resyncing): the
//!   replicas are **down**. A replica that comes back resyncs from this
//!   primary before it can be promoted, so the login is acknowledged, one
//!   WARN line per 10 s says so, and logins do not wait while it lasts:
//!   every [`DOWN_RECHECK`] one login waits and looks again (the others
//!   go on without waiting), so a replica that is back is waited for
//!   within that interval plus one look. **Known gap:** a replica woken
//!   and promoted within that time can lack the logins the others
//!   answered meanwhile (the stalled-replica test in `redis_ha.rs` hits
//!   it about one run in five under load). Closing it: while down, a
//!   login could compare the primary's `ROLE` list of replicas with the
//!   one seen when they were found down (a promoted replica leaves it).
//!
//! The replicas asked are those the primary lists (`ROLE`, on the same
//! connection: for a cluster, the primary of the user's slot) and, with
//! Sentinel, those the sentinels know (`SENTINEL REPLICAS`): a promoted
//! replica has left the primary's list, not the sentinels'. Each is asked
//! on a connection of its own with the primary's credentials and TLS
//! ([`RedisConn::node_client`]). When none is known (no sentinel answers
//! and the primary lists none; a cluster shard whose replica left), the
//! sentinels or the slot map are watched every [`CONFIRM_POLL`] for
//! [`CONFIRM_WINDOW`] as the only fact left: another primary named means a
//! failover, none means down.
//!
//! This replaced a timer: a miss the sentinels did not explain within 2 s
//! used to skip `WAIT` for 5 s. On a loaded machine a merely slow replica
//! started that skip, a planned failover landed inside it, and the logins
//! the old primary took after the promotion were acknowledged and lost
//! (`redis_ha.rs`, about one run in three).
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
//! A replica is taken to follow "another node" when the `host:port` it
//! follows differs from the one the sentinels name for the primary: name
//! the primary in `replicaof` as the sentinels announce it (they rewrite
//! it so at every reconfiguration anyway), or a miss is refused.
//!
//! **On a Redis Cluster** whose shards have replicas the same holds per
//! shard: `WAIT` and `ROLE` go to the primary of the user's slot, the node
//! that ran the login ([`RedisConn::wait_for_replica`]), and "another
//! primary" means a replica answers as a primary or the cluster's slot
//! map changed (the game server reads it every 500 ms, and at once when
//! asked). A cluster's manual failover (`CLUSTER FAILOVER`) pauses the old
//! primary's writers until its replica has caught up, so there the wait
//! guards against a crash or a partition: a login is answered only once
//! the replica that will be promoted has it. "Down" is for every shard,
//! not only the one whose replica is down.
//!
//! If the primary changed between the login script and its `WAIT` (the
//! game server moved: the script may have run on the old one), the login
//! is answered `UNAVAILABLE` at once.

use std::sync::Mutex;
use std::time::Duration;

use futures::future::join_all;
use gamemesh_node::log_throttle::LogThrottle;
use redis::{AsyncConnectionConfig, Value};
use tokio::time::Instant;
use tracing::{info, warn};

use super::StoreError;
use crate::redis::{RedisConn, WriteMark};

/// Longest wait for a replica's acknowledgement, per `WAIT`.
pub const WAIT_BOUND: Duration = Duration::from_millis(100);
/// After a miss, how long a replica linked to the primary is waited for
/// before the login is refused; with no replica to ask, how long the
/// sentinels or the slot map are watched for a failover.
pub const CONFIRM_WINDOW: Duration = Duration::from_secs(2);
/// Between two looks at the sentinels or the slot map in that window.
pub const CONFIRM_POLL: Duration = Duration::from_millis(100);
/// While the replicas are down, how often one login waits and looks again
/// (the others do not wait): how soon a replica that is back is waited
/// for.
pub const DOWN_RECHECK: Duration = Duration::from_millis(250);

/// The state of the login's replica wait, shared by the store's clones.
#[derive(Debug)]
pub struct ReplicaAck {
    /// `Some(t)` while the replicas are down: logins do not wait, and the
    /// first login after `t` looks again.
    down: Mutex<Option<Instant>>,
    /// One "replicas down" line per interval.
    log: LogThrottle,
}

impl Default for ReplicaAck {
    fn default() -> Self {
        Self {
            down: Mutex::new(None),
            log: LogThrottle::new(Duration::from_secs(10)),
        }
    }
}

/// What the replicas say after a missed `WAIT`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// A failover has begun (why): the write may be lost.
    FailoverBegun(String),
    /// A replica is linked to this primary and has not acknowledged yet.
    Slow,
    /// Every replica is unreachable or not linked (why).
    Down(String),
    /// No replica is known to ask.
    NoneKnown,
}

/// A replica's answer to `ROLE`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    /// It answers as a primary, with the replication id it had before
    /// (`master_replid2`): promoted from this primary if that is this
    /// primary's id, else a former primary not yet demoted.
    Primary { replid2: Option<String> },
    /// It answers as a replica of `master` (`host:port`), its link up
    /// (`connected`) or not (connecting, syncing).
    Replica { master: String, linked: bool },
    /// Refused, closed, an error, or no answer within the bound.
    Unreachable,
}

impl ReplicaAck {
    /// True when this login need not wait: the replicas were found down
    /// less than [`DOWN_RECHECK`] ago. The first login after that takes
    /// the next look (the others keep not waiting while it does).
    fn skip_while_down(&self) -> bool {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        let Some(until) = *down else {
            return false;
        };
        let now = Instant::now();
        if now < until {
            return true;
        }
        *down = Some(now + DOWN_RECHECK);
        false
    }

    fn set_down(&self, down: bool) {
        let mut state = self.down.lock().unwrap_or_else(|p| p.into_inner());
        let was = state.is_some();
        *state = down.then(|| Instant::now() + DOWN_RECHECK);
        if was && !down {
            info!("A Redis replica acknowledges logins again; logins wait for it");
        }
    }

    /// The replicas are down: logins stop waiting, and one WARN line per
    /// interval says so.
    fn note_down(&self, primary: &str, why: &str) {
        self.set_down(true);
        if let Some(held) = self.log.allow() {
            warn!(
                "No Redis replica is linked to the primary {primary} ({why}); acknowledging logins without a replica until one is, looking again every {DOWN_RECHECK:?} ({held} more since the last line)"
            );
        }
    }

    /// After a write to `key` on `conn`, sent where `mark` says: waits
    /// (bounded) for a replica to have it. `Err` when none did because a
    /// failover has begun or the replica is linked but too slow (the
    /// write may be lost).
    pub async fn confirm(
        &self,
        conn: &RedisConn,
        mark: &WriteMark,
        key: &str,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        if !conn.has_replicas() || self.skip_while_down() {
            return Ok(());
        }
        let primary = &mark.primary;
        let refuse = |why: &str| {
            StoreError::Unavailable(format!(
                "the login may not survive a failover of the Redis primary {primary} ({why}); log in again"
            ))
        };
        // A WAIT on another connection would count nothing of the write.
        if conn.switched_since(mark) {
            return Err(refuse("it was failed over before a replica had the login"));
        }
        let bound = WAIT_BOUND.min(timeout / 2);
        let deadline = Instant::now() + CONFIRM_WINDOW;
        let mut missed = false;
        loop {
            if conn.wait_for_replica(key, bound).await? >= 1 {
                self.set_down(false);
                return Ok(());
            }
            if !missed {
                missed = true;
                metrics::counter!("gamemesh_redis_replica_ack_missed_total").increment(1);
            }
            match look(conn, mark, key, timeout).await {
                Verdict::FailoverBegun(why) => {
                    // Not down: the logins that follow wait and hear the same.
                    self.set_down(false);
                    conn.suspect_primary();
                    return Err(refuse(&why));
                }
                Verdict::Down(why) => {
                    self.note_down(primary, &why);
                    return Ok(());
                }
                Verdict::Slow if Instant::now() < deadline => {}
                Verdict::Slow => {
                    self.set_down(false);
                    return Err(refuse(&format!(
                        "a replica is linked but acknowledged nothing within {CONFIRM_WINDOW:?}"
                    )));
                }
                // look() turns it into one of the others.
                Verdict::NoneKnown => {
                    self.note_down(primary, "no replica known to ask");
                    return Ok(());
                }
            }
        }
    }
}

/// After a missed `WAIT`: whether a failover has begun, or the replicas
/// are slow or down (see the module docs).
async fn look(conn: &RedisConn, mark: &WriteMark, key: &str, timeout: Duration) -> Verdict {
    if conn.switched_since(mark) || conn.primary_moved_from(&mark.primary).await == Some(true) {
        return Verdict::FailoverBegun("the sentinels name another primary".into());
    }
    let (replicas, replid) = tokio::join!(replica_addrs(conn, key), primary_replid(conn, key));
    let roles = join_all(
        replicas
            .iter()
            .map(|(host, port)| ask_role(conn, host, *port, timeout)),
    )
    .await;
    let asked: Vec<(String, Role)> = replicas
        .iter()
        .map(|(host, port)| format!("{host}:{port}"))
        .zip(roles)
        .collect();
    // A cluster's WriteMark names its seeds, not the slot's primary: there
    // only the primary's own list says whom its replicas follow.
    let primary = (!conn.is_cluster()).then_some(mark.primary.as_str());
    match classify(primary, replid.as_deref(), &asked) {
        Verdict::NoneKnown if watch_for_failover(conn, mark).await => {
            Verdict::FailoverBegun("another primary was named".into())
        }
        Verdict::NoneKnown => Verdict::Down("no replica known to ask".into()),
        verdict => verdict,
    }
}

/// The replicas to ask: those the primary lists and, with Sentinel, those
/// the sentinels know.
async fn replica_addrs(conn: &RedisConn, key: &str) -> Vec<(String, u16)> {
    let mut addrs = conn
        .primary_role(key)
        .await
        .map(|role| listed_replicas(&role))
        .unwrap_or_default();
    for addr in conn.sentinel_replicas().await {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    addrs
}

/// This primary's replication id (`master_replid`), which a replica
/// promoted from it keeps as its `master_replid2`.
async fn primary_replid(conn: &RedisConn, key: &str) -> Option<String> {
    info_field(&conn.primary_info_replication(key).await?, "master_replid")
}

/// `field:value` from an `INFO` text.
fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|line| {
        let (k, v) = line.trim_end().split_once(':')?;
        (k == field).then(|| v.to_string())
    })
}

/// What the replicas' answers mean, for the primary at `primary` (`None`:
/// not known by address, a cluster's slot primary) whose replication id is
/// `replid` (`None`: unknown, and any replica answering as a primary is
/// then taken to be promoted from it).
fn classify(primary: Option<&str>, replid: Option<&str>, asked: &[(String, Role)]) -> Verdict {
    if asked.is_empty() {
        return Verdict::NoneKnown;
    }
    for (addr, role) in asked {
        match role {
            Role::Primary { replid2 } if replid.is_none() || replid2.as_deref() == replid => {
                return Verdict::FailoverBegun(format!("replica {addr} answers as a primary"));
            }
            Role::Replica {
                master,
                linked: true,
            } if primary.is_some_and(|p| p != master) => {
                return Verdict::FailoverBegun(format!("replica {addr} follows {master}"));
            }
            _ => {}
        }
    }
    if asked
        .iter()
        .any(|(_, r)| matches!(r, Role::Replica { linked: true, .. }))
    {
        return Verdict::Slow;
    }
    let each: Vec<String> = asked
        .iter()
        .map(|(addr, role)| match role {
            Role::Unreachable => format!("{addr} unreachable"),
            Role::Primary { .. } => format!("{addr} a former primary not yet demoted"),
            Role::Replica { .. } => format!("{addr} not linked"),
        })
        .collect();
    Verdict::Down(each.join(", "))
}

/// Asks the data node at `host:port` its `ROLE`, within `timeout`.
async fn ask_role(conn: &RedisConn, host: &str, port: u16, timeout: Duration) -> Role {
    let Some(client) = conn.node_client(host, port) else {
        return Role::Unreachable;
    };
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let answer = tokio::time::timeout(timeout, async {
        let mut c = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let role = parse_role(&redis::cmd("ROLE").query_async::<Value>(&mut c).await?);
        let Some(Role::Primary { .. }) = role else {
            return Ok::<_, redis::RedisError>(role);
        };
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut c)
            .await?;
        Ok(Some(Role::Primary {
            replid2: info_field(&info, "master_replid2"),
        }))
    })
    .await;
    match answer {
        Ok(Ok(Some(role))) => role,
        _ => Role::Unreachable,
    }
}

/// `ROLE`'s answer: `["master", ...]` or `["slave", host, port, state,
/// offset]`.
fn parse_role(v: &Value) -> Option<Role> {
    let Value::Array(items) = v else {
        return None;
    };
    match text(items.first()?)?.as_str() {
        "master" => Some(Role::Primary { replid2: None }),
        "slave" => {
            let host = text(items.get(1)?)?;
            let Value::Int(port) = items.get(2)? else {
                return None;
            };
            let state = text(items.get(3)?)?;
            Some(Role::Replica {
                master: format!("{host}:{port}"),
                linked: state == "connected",
            })
        }
        _ => None,
    }
}

/// The replicas a primary's `ROLE` lists: `["master", offset, [[ip,
/// port, offset], ...]]`.
fn listed_replicas(v: &Value) -> Vec<(String, u16)> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    if items.first().and_then(text).as_deref() != Some("master") {
        return Vec::new();
    }
    let Some(Value::Array(replicas)) = items.get(2) else {
        return Vec::new();
    };
    replicas
        .iter()
        .filter_map(|r| {
            let Value::Array(fields) = r else {
                return None;
            };
            let host = text(fields.first()?)?;
            let port = text(fields.get(1)?)?.parse().ok()?;
            Some((host, port))
        })
        .collect()
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// With no replica to ask: whether the sentinels name a primary other than
/// `mark`'s, or the game server saw a primary change (a cluster's slot
/// map), within [`CONFIRM_WINDOW`].
async fn watch_for_failover(conn: &RedisConn, mark: &WriteMark) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn promoted_from(replid: &str) -> Role {
        Role::Primary {
            replid2: Some(replid.into()),
        }
    }

    fn replica(master: &str, linked: bool) -> Role {
        Role::Replica {
            master: master.into(),
            linked,
        }
    }

    #[test]
    fn role_answers_are_read() {
        let primary = Value::Array(vec![
            bulk("master"),
            Value::Int(42),
            Value::Array(vec![Value::Array(vec![
                bulk("127.0.0.1"),
                bulk("6380"),
                bulk("42"),
            ])]),
        ]);
        assert_eq!(parse_role(&primary), Some(Role::Primary { replid2: None }));
        let info = "# Replication\r\nrole:master\r\nmaster_replid:abc\r\nmaster_replid2:def\r\n";
        assert_eq!(info_field(info, "master_replid").as_deref(), Some("abc"));
        assert_eq!(info_field(info, "master_replid2").as_deref(), Some("def"));
        assert_eq!(listed_replicas(&primary), vec![("127.0.0.1".into(), 6380)]);
        let linked = Value::Array(vec![
            bulk("slave"),
            bulk("127.0.0.1"),
            Value::Int(6379),
            bulk("connected"),
            Value::Int(42),
        ]);
        assert_eq!(parse_role(&linked), Some(replica("127.0.0.1:6379", true)));
        assert!(listed_replicas(&linked).is_empty());
        let syncing = Value::Array(vec![
            bulk("slave"),
            bulk("127.0.0.1"),
            Value::Int(6379),
            bulk("sync"),
            Value::Int(-1),
        ]);
        assert_eq!(parse_role(&syncing), Some(replica("127.0.0.1:6379", false)));
        assert_eq!(parse_role(&Value::Nil), None);
    }

    #[test]
    fn a_promoted_replica_or_one_following_another_node_means_a_failover() {
        let p = Some("127.0.0.1:6379");
        let promoted = [("r:1".to_string(), promoted_from("ours"))];
        assert!(matches!(
            classify(p, Some("ours"), &promoted),
            Verdict::FailoverBegun(_)
        ));
        // This primary's id unknown: a primary among its replicas is taken
        // to be promoted from it.
        assert!(matches!(
            classify(p, None, &promoted),
            Verdict::FailoverBegun(_)
        ));
        // Right after a failover to this primary, the sentinels list the
        // old one as its replica before they have demoted it.
        let former = [("r:1".to_string(), promoted_from("older"))];
        assert!(matches!(
            classify(p, Some("ours"), &former),
            Verdict::Down(_)
        ));
        let moved = [("r:1".to_string(), replica("127.0.0.1:6390", true))];
        assert!(matches!(
            classify(p, Some("ours"), &moved),
            Verdict::FailoverBegun(_)
        ));
        // A cluster's slot primary is not known by address.
        assert_eq!(classify(None, Some("ours"), &moved), Verdict::Slow);
        // A promotion wins over another replica that is only slow.
        let both = [
            ("r:1".to_string(), replica("127.0.0.1:6379", true)),
            ("r:2".to_string(), promoted_from("ours")),
        ];
        assert!(matches!(
            classify(p, Some("ours"), &both),
            Verdict::FailoverBegun(_)
        ));
    }

    #[test]
    fn a_linked_replica_is_slow_and_only_unreachable_or_unlinked_ones_are_down() {
        let p = Some("127.0.0.1:6379");
        let slow = [
            ("r:1".to_string(), Role::Unreachable),
            ("r:2".to_string(), replica("127.0.0.1:6379", true)),
        ];
        assert_eq!(classify(p, Some("ours"), &slow), Verdict::Slow);
        let down = [
            ("r:1".to_string(), Role::Unreachable),
            ("r:2".to_string(), replica("127.0.0.1:6379", false)),
            ("r:3".to_string(), replica("127.0.0.1:6390", false)),
        ];
        assert_eq!(
            classify(p, Some("ours"), &down),
            Verdict::Down("r:1 unreachable, r:2 not linked, r:3 not linked".into())
        );
        assert_eq!(classify(p, Some("ours"), &[]), Verdict::NoneKnown);
    }

    #[tokio::test(start_paused = true)]
    async fn while_down_one_login_per_interval_looks_again_and_the_others_do_not_wait() {
        let ack = ReplicaAck::default();
        assert!(!ack.skip_while_down(), "healthy: every login waits");
        ack.set_down(true);
        assert!(ack.skip_while_down());
        tokio::time::advance(DOWN_RECHECK).await;
        assert!(
            !ack.skip_while_down(),
            "the first login after the interval looks"
        );
        assert!(ack.skip_while_down(), "the others do not wait meanwhile");
        ack.set_down(false);
        assert!(!ack.skip_while_down(), "back: every login waits again");
        assert!(!ack.skip_while_down());
    }
}
