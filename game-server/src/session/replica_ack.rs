//! A login is acknowledged only once a replica has it, where replicas
//! exist (Sentinel, a Redis Cluster with replicas), or while the primary
//! shows no replica that could be promoted without it.
//!
//! Redis replicates asynchronously, so a primary answers the `LOGIN`
//! script before any replica has it. A planned failover (`SENTINEL
//! FAILOVER`) makes that visible: between the replica's promotion and the
//! old primary's demotion, and until the game servers follow (the sentinel
//! poll), logins still land on the old primary, are answered, and are
//! thrown away when it resyncs as a replica. The client holds a session id
//! the cluster has never heard of.
//!
//! [`ReplicaAck::confirm`], after the script, in four steps:
//!
//! 1. **Moved?** The game server followed a failover between the script
//!    and now: the script may have run on the old primary, and a `WAIT`
//!    on the new connection would count nothing of it. Refused
//!    (`UNAVAILABLE`; a login is not deduplicated, the client's retry
//!    lands on the new primary).
//! 2. **Still down?** Only while some primary's replicas are down (step
//!    4): one `INFO replication` on the login's primary. If it shows
//!    exactly the replicas it showed when they were found down, each at
//!    the offset it had acknowledged then, the login is answered without
//!    waiting. Any change (a replica acknowledged something, appeared,
//!    left, changed state) ends the skip for this login: it goes on to 3.
//! 3. **Wait**: `WAIT 1 <bound>` on the same multiplexed connection, so it
//!    covers the script. A replica acknowledged: answered.
//! 4. **Look** after a miss ([`look`]): the sentinels, the primary's own
//!    `INFO replication`, and every replica's (those the primary lists and
//!    those `SENTINEL REPLICAS` lists, each on a connection of its own with
//!    the primary's credentials and TLS, [`RedisConn::node_client`]):
//!    - the sentinels name another primary (on a cluster: the slot map
//!      changed), or a replica answers as a primary promoted from this one,
//!      or as the replica of another node (told by the replication id it
//!      has from its primary, so a replica that names this primary by a
//!      hostname where the sentinels announce an IP is still this one's):
//!      **a failover has begun**; refused.
//!    - a replica answers as this primary's replica with its link up: it
//!      is **slow**, and would be promoted with whatever it has. `WAIT`
//!      again (one bound at a time) for up to [`CONFIRM_WINDOW`], then
//!      refused: never answered without an acknowledgement.
//!    - every replica is unreachable (refused, or no answer within the
//!      command timeout) or not linked (its link down, resyncing): the
//!      replicas are **down**. Answered; one WARN line per 10 s; and what
//!      the primary showed of its replicas is kept for step 2.
//!
//!    With no replica to ask (the primary lists none, no sentinel
//!    answers), the sentinels or the slot map are watched every
//!    [`CONFIRM_POLL`] for [`CONFIRM_WINDOW`]: another primary named means
//!    a failover, none means down.
//!
//! **Why step 2 is safe, and cheap.** A replica that is down acknowledges
//! nothing, so the offset its primary lists for it stays where it was;
//! its primary drops it from the list once its link closes, and lists it
//! again (`state` moving to `online`) once it has resynced. A replica that
//! wakes from a stall answers at once the `REPLCONF GETACK` the missed
//! `WAIT` left in its stream, so its offset moves within a round trip of
//! waking, long before the sentinels see it healthy and can promote it;
//! from then on every login waits for it. The primary's list is the fact;
//! no clock decides. What stays open is inherent to answering without a
//! replica: a replica promoted before it has read what was sent to it
//! while it was down lacks those logins. An outage costs each login one
//! `INFO` round trip instead of a `WAIT`, and one login a `WAIT` and a
//! look each time the list changes.
//!
//! This replaced two timers. First, a miss the sentinels did not explain
//! within 2 s skipped `WAIT` for 5 s: a merely slow replica on a loaded
//! machine started that skip, a planned failover landed inside it, and
//! the logins the old primary took after the promotion were acknowledged
//! and lost (`redis_ha.rs`, about one run in three). Then, while down, one
//! login per 250 ms looked again and the others skipped: a replica woken
//! and promoted within that interval lacked the logins answered in it
//! (the stalled-replica test in `redis_ha.rs`, about one run in five).
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
//! shard: `WAIT` and `INFO` go to the primary of the user's slot, the node
//! that ran the login ([`RedisConn::wait_for_replica`]); "another primary"
//! means a replica answers as a primary or the cluster's slot map changed
//! (the game server reads it every 500 ms, and at once when asked); and
//! step 2 is per shard: each primary's replicas are kept under its
//! replication id (`master_replid`, new at every promotion), so a login on
//! a shard whose replica is healthy still waits. Any primary switch (a
//! failover of any shard) forgets them all. A cluster's manual failover
//! (`CLUSTER FAILOVER`) pauses the old primary's writers until its
//! replica has caught up, so there the wait guards against a crash or a
//! partition: a login is answered only once the replica that will be
//! promoted has it.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use futures::future::join_all;
use gamemesh_node::log_throttle::LogThrottle;
use redis::AsyncConnectionConfig;
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

/// The state of the login's replica wait, shared by the store's clones.
#[derive(Debug)]
pub struct ReplicaAck {
    /// The primaries whose replicas were found down (step 2).
    down: Mutex<DownPrimaries>,
    /// One "replicas down" line per interval.
    log: LogThrottle,
}

impl Default for ReplicaAck {
    fn default() -> Self {
        Self {
            down: Mutex::default(),
            log: LogThrottle::new(Duration::from_secs(10)),
        }
    }
}

/// The primaries whose replicas were found down, each as it showed them
/// then.
#[derive(Debug, Default)]
struct DownPrimaries {
    /// [`RedisConn::primary_changes`] when the newest was kept: after a
    /// primary switch none of them is trusted.
    switches: u64,
    /// One per primary (a cluster: per shard), by replication id.
    primaries: Vec<PrimaryView>,
}

impl DownPrimaries {
    /// Whether what is kept holds for a login marked `mark`: forgotten
    /// once the login saw a primary switch since it was kept; not
    /// trusted by a login older than that switch.
    fn trusted_by(&mut self, mark: &WriteMark) -> bool {
        if mark.switches > self.switches {
            self.primaries.clear();
            self.switches = mark.switches;
        }
        mark.switches == self.switches
    }
}

/// A primary as its `INFO replication` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PrimaryView {
    /// `master_replid`: which primary this is. A promoted replica takes a
    /// new one, so a shard's new primary is never taken for its old one.
    replid: String,
    /// The replicas it lists, in its order.
    replicas: Vec<Listed>,
}

/// One replica as its primary lists it: `slaveN:ip=..,port=..,state=..,
/// offset=..,lag=..` (`lag` left out: it grows every second).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    /// Where it listens (its announced address): asked there in step 4.
    host: String,
    /// Its listening port.
    port: u16,
    /// `online` once synced; `wait_bgsave`, `send_bulk` while resyncing.
    state: String,
    /// The last offset it acknowledged: frozen while it is stalled.
    offset: i64,
}

/// A data node's `INFO replication`, as far as the wait needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Replication {
    /// `role:master`, with the replication id it had before
    /// (`master_replid2`): a replica promoted from us keeps ours there.
    Primary { view: PrimaryView, replid2: String },
    /// `role:slave`, following `master` (`host:port`), its link up
    /// (`master_link_status:up`) or not (connecting, syncing), with the
    /// replication id it has from that primary (`master_replid`).
    Replica {
        master: String,
        linked: bool,
        replid: Option<String>,
    },
}

/// What a look after a missed `WAIT` found (step 4).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// A failover has begun (why): the write may be lost.
    FailoverBegun(String),
    /// A replica is linked to this primary and has not acknowledged yet.
    Slow,
    /// Every replica is unreachable or not linked (why).
    Down(String),
}

/// How steps 3 and 4 ended.
#[derive(Debug)]
enum Outcome {
    /// A replica acknowledged the write.
    Acked,
    /// The replicas are down (why); `seen` is the primary as the look saw
    /// it (`None` if it did not answer `INFO`: nothing kept, the next
    /// login waits again).
    Down {
        why: String,
        seen: Option<PrimaryView>,
    },
    /// The write may be lost (why).
    Refused(String),
}

impl ReplicaAck {
    /// After a write to `key` on `conn`, sent where `mark` says: returns
    /// once a replica has it or the replicas are down (the module docs'
    /// four steps). `Err` when the write may be lost: a failover has
    /// begun, or a linked replica stayed silent.
    pub async fn confirm(
        &self,
        conn: &RedisConn,
        mark: &WriteMark,
        key: &str,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        if !conn.has_replicas() {
            return Ok(());
        }
        // 1. A WAIT on another connection would count nothing of the write.
        if conn.switched_since(mark) {
            return Err(refused(
                mark,
                "it was failed over before a replica had the login",
            ));
        }
        // 2. The replicas are down and nothing about them has changed.
        let now = if self.any_down(mark) {
            primary_view(conn, key).await
        } else {
            None
        };
        if now.as_ref().is_some_and(|p| self.still_down(p)) {
            return Ok(());
        }
        // 3. and 4.
        match wait_for_ack(conn, mark, key, timeout).await? {
            Outcome::Acked => {
                if let Some(p) = &now {
                    self.back_up(p);
                }
                Ok(())
            }
            Outcome::Down { why, seen } => {
                self.note_down(mark, seen, &why);
                Ok(())
            }
            Outcome::Refused(why) => Err(refused(mark, &why)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, DownPrimaries> {
        self.down.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether some primary's replicas are down, as far as a login marked
    /// `mark` can trust it: a primary switch since they were kept forgets
    /// them.
    fn any_down(&self, mark: &WriteMark) -> bool {
        let mut down = self.lock();
        down.trusted_by(mark) && !down.primaries.is_empty()
    }

    /// Whether `now` is a primary whose replicas were found down, showing
    /// exactly what it showed then.
    fn still_down(&self, now: &PrimaryView) -> bool {
        self.lock().primaries.contains(now)
    }

    /// A replica of `primary` acknowledged: its logins wait again.
    fn back_up(&self, primary: &PrimaryView) {
        let mut down = self.lock();
        let before = down.primaries.len();
        down.primaries.retain(|p| p.replid != primary.replid);
        if down.primaries.len() < before {
            info!("A Redis replica acknowledges logins again; logins wait for it");
        }
    }

    /// The replicas are down: the primary as the look saw it is kept for
    /// step 2, and one WARN line per interval says so.
    fn note_down(&self, mark: &WriteMark, seen: Option<PrimaryView>, why: &str) {
        if let Some(seen) = seen {
            let mut down = self.lock();
            if down.trusted_by(mark) {
                down.primaries.retain(|p| p.replid != seen.replid);
                down.primaries.push(seen);
            }
        }
        if let Some(held) = self.log.allow() {
            warn!(
                "No Redis replica is linked to the primary {} ({why}); acknowledging its logins without a replica until its list of replicas changes ({held} more since the last line)",
                mark.primary
            );
        }
    }
}

/// The error of a login that may not survive a failover (why).
fn refused(mark: &WriteMark, why: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "the login may not survive a failover of the Redis primary {} ({why}); log in again",
        mark.primary
    ))
}

/// Steps 3 and 4: `WAIT`, and after a miss, look; a slow replica is waited
/// for again until [`CONFIRM_WINDOW`] has passed.
async fn wait_for_ack(
    conn: &RedisConn,
    mark: &WriteMark,
    key: &str,
    timeout: Duration,
) -> Result<Outcome, StoreError> {
    let bound = WAIT_BOUND.min(timeout / 2);
    let deadline = Instant::now() + CONFIRM_WINDOW;
    let mut missed = false;
    loop {
        if conn.wait_for_replica(key, bound).await? >= 1 {
            return Ok(Outcome::Acked);
        }
        if !missed {
            missed = true;
            metrics::counter!("gamemesh_redis_replica_ack_missed_total").increment(1);
        }
        let (verdict, seen) = look(conn, mark, key, timeout).await;
        match verdict {
            Verdict::FailoverBegun(why) => {
                conn.suspect_primary();
                return Ok(Outcome::Refused(why));
            }
            Verdict::Down(why) => return Ok(Outcome::Down { why, seen }),
            Verdict::Slow if Instant::now() < deadline => {}
            Verdict::Slow => {
                return Ok(Outcome::Refused(format!(
                    "a replica is linked but acknowledged nothing within {CONFIRM_WINDOW:?}"
                )))
            }
        }
    }
}

/// Step 4, after a missed `WAIT`: whether a failover has begun, or the
/// replicas are slow or down; and the primary as it showed itself.
async fn look(
    conn: &RedisConn,
    mark: &WriteMark,
    key: &str,
    timeout: Duration,
) -> (Verdict, Option<PrimaryView>) {
    if failover_named(conn, mark).await {
        let why = "the sentinels name another primary".to_string();
        return (Verdict::FailoverBegun(why), None);
    }
    let (seen, known) = tokio::join!(primary_view(conn, key), conn.sentinel_replicas());
    let asked = ask_replicas(conn, seen.as_ref(), known, timeout).await;
    // A cluster's WriteMark names its seeds, not the slot's primary: there
    // only the primary's own replication id says who was promoted from it.
    let primary = (!conn.is_cluster()).then_some(mark.primary.as_str());
    let replid = seen.as_ref().map(|p| p.replid.as_str());
    let verdict = match classify(primary, replid, &asked) {
        Some(verdict) => verdict,
        None if watch_for_failover(conn, mark).await => {
            Verdict::FailoverBegun("another primary was named".into())
        }
        None => Verdict::Down("no replica known to ask".into()),
    };
    (verdict, seen)
}

/// The login's primary (on a cluster, of `key`'s slot) as its `INFO
/// replication` shows it; `None` if it did not answer, or answers as a
/// replica.
async fn primary_view(conn: &RedisConn, key: &str) -> Option<PrimaryView> {
    match Replication::parse(&conn.primary_info_replication(key).await?)? {
        Replication::Primary { view, .. } => Some(view),
        Replication::Replica { .. } => None,
    }
}

/// Asks each replica the primary lists (`seen`) and each of the sentinels'
/// (`known`: a promoted replica has left the primary's list, not theirs)
/// its `INFO replication`, all at once.
async fn ask_replicas(
    conn: &RedisConn,
    seen: Option<&PrimaryView>,
    known: Vec<(String, u16)>,
    timeout: Duration,
) -> Vec<(String, Option<Replication>)> {
    let listed = seen.iter().flat_map(|p| &p.replicas);
    let mut addrs: Vec<(String, u16)> = listed.map(|r| (r.host.clone(), r.port)).collect();
    for addr in known {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    let answers = join_all(addrs.iter().map(|(h, p)| ask(conn, h, *p, timeout))).await;
    addrs
        .iter()
        .map(|(host, port)| format!("{host}:{port}"))
        .zip(answers)
        .collect()
}

/// The `INFO replication` of the data node at `host:port`, on a
/// connection of its own; `None` if it is unreachable or gives no answer
/// within `timeout` (a stalled node accepts the connection and says
/// nothing).
async fn ask(conn: &RedisConn, host: &str, port: u16, timeout: Duration) -> Option<Replication> {
    let client = conn.node_client(host, port)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let info = tokio::time::timeout(timeout, async {
        let mut c = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let mut cmd = redis::cmd("INFO");
        cmd.arg("replication");
        cmd.query_async::<String>(&mut c).await
    })
    .await
    .ok()?
    .ok()?;
    Replication::parse(&info)
}

/// What the replicas' answers (`None`: unreachable) mean, for the primary
/// at `primary` (`None`: not known by address, a cluster's slot primary)
/// whose replication id is `replid` (`None`: unknown, and any replica
/// answering as a primary is then taken to be promoted from it). `None`
/// when no replica was asked.
fn classify(
    primary: Option<&str>,
    replid: Option<&str>,
    asked: &[(String, Option<Replication>)],
) -> Option<Verdict> {
    if asked.is_empty() {
        return None;
    }
    for (addr, answer) in asked {
        match answer {
            Some(Replication::Primary { replid2, .. })
                if replid.is_none() || replid == Some(replid2.as_str()) =>
            {
                let why = format!("replica {addr} answers as a primary");
                return Some(Verdict::FailoverBegun(why));
            }
            Some(Replication::Replica {
                master,
                linked: true,
                replid: theirs,
            }) if follows_another(primary, replid, master, theirs.as_deref()) => {
                let why = format!("replica {addr} follows {master}");
                return Some(Verdict::FailoverBegun(why));
            }
            _ => {}
        }
    }
    let linked =
        |a: &Option<Replication>| matches!(a, Some(Replication::Replica { linked: true, .. }));
    if asked.iter().any(|(_, a)| linked(a)) {
        return Some(Verdict::Slow);
    }
    let each: Vec<String> = asked
        .iter()
        .map(|(addr, answer)| match answer {
            None => format!("{addr} unreachable"),
            Some(Replication::Primary { .. }) => format!("{addr} a former primary not yet demoted"),
            Some(Replication::Replica { .. }) => format!("{addr} not linked"),
        })
        .collect();
    Some(Verdict::Down(each.join(", ")))
}

/// Whether a linked replica follows a node other than the login's
/// primary. Its replication id says so whatever name it gives its primary
/// (a hostname where the sentinels announce an IP, or the other way
/// round): a linked replica has its primary's id, and a promoted node
/// takes a new one. By address only when either id is unknown.
fn follows_another(
    primary: Option<&str>,
    replid: Option<&str>,
    master: &str,
    theirs: Option<&str>,
) -> bool {
    match (replid, theirs) {
        (Some(ours), Some(theirs)) => ours != theirs,
        _ => primary.is_some_and(|p| p != master),
    }
}

/// Whether the game server followed a failover since `mark`, or the
/// sentinels name a primary other than `mark`'s.
async fn failover_named(conn: &RedisConn, mark: &WriteMark) -> bool {
    conn.switched_since(mark) || conn.primary_moved_from(&mark.primary).await == Some(true)
}

/// With no replica to ask: whether another primary is named (the
/// sentinels, or a cluster's slot map) within [`CONFIRM_WINDOW`].
async fn watch_for_failover(conn: &RedisConn, mark: &WriteMark) -> bool {
    let deadline = Instant::now() + CONFIRM_WINDOW;
    if conn.is_cluster() {
        // Read the slot map now, not at the next poll.
        conn.suspect_primary();
    }
    loop {
        if failover_named(conn, mark).await {
            return true;
        }
        if Instant::now() + CONFIRM_POLL > deadline {
            return false;
        }
        tokio::time::sleep(CONFIRM_POLL).await;
    }
}

impl Replication {
    /// From an `INFO replication` text; `None` if it names no role we know
    /// or lacks a field we need.
    fn parse(info: &str) -> Option<Self> {
        let field = |name: &str| {
            info.lines().find_map(|line| {
                let (k, v) = line.trim_end().split_once(':')?;
                (k == name).then(|| v.to_string())
            })
        };
        match field("role")?.as_str() {
            "master" => Some(Self::Primary {
                view: PrimaryView {
                    replid: field("master_replid")?,
                    replicas: info.lines().filter_map(Listed::parse).collect(),
                },
                replid2: field("master_replid2").unwrap_or_default(),
            }),
            "slave" => Some(Self::Replica {
                master: format!("{}:{}", field("master_host")?, field("master_port")?),
                linked: field("master_link_status").as_deref() == Some("up"),
                replid: field("master_replid"),
            }),
            _ => None,
        }
    }
}

impl Listed {
    /// One `slaveN:ip=..,port=..,state=..,offset=..,lag=..` line.
    fn parse(line: &str) -> Option<Self> {
        let (name, fields) = line.trim_end().split_once(':')?;
        let n = name.strip_prefix("slave")?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let get = |k: &str| {
            fields
                .split(',')
                .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
        };
        Some(Self {
            host: get("ip")?.to_string(),
            port: get("port")?.parse().ok()?,
            state: get("state")?.to_string(),
            offset: get("offset")?.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIMARY_INFO: &str = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=127.0.0.1,port=6380,state=online,offset=171,lag=1\r\nmaster_failover_state:no-failover\r\nmaster_replid:ours\r\nmaster_replid2:0000000000000000000000000000000000000000\r\nmaster_repl_offset:467\r\n";

    fn replica_info(link: &str) -> String {
        format!("# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:6379\r\nmaster_link_status:{link}\r\nslave_read_repl_offset:171\r\nslave_repl_offset:171\r\nslave_priority:100\r\nmaster_replid:ours\r\n")
    }

    fn view(replid: &str, replicas: &[(u16, &str, i64)]) -> PrimaryView {
        PrimaryView {
            replid: replid.into(),
            replicas: replicas
                .iter()
                .map(|(port, state, offset)| Listed {
                    host: "127.0.0.1".into(),
                    port: *port,
                    state: (*state).into(),
                    offset: *offset,
                })
                .collect(),
        }
    }

    fn promoted_from(replid: &str) -> Option<Replication> {
        Some(Replication::Primary {
            view: view("new", &[]),
            replid2: replid.into(),
        })
    }

    /// A replica of the primary whose id is `ours` (the test's primary).
    fn replica(master: &str, linked: bool) -> Option<Replication> {
        replica_of(master, linked, None)
    }

    fn replica_of(master: &str, linked: bool, replid: Option<&str>) -> Option<Replication> {
        Some(Replication::Replica {
            master: master.into(),
            linked,
            replid: replid.map(Into::into),
        })
    }

    fn mark(switches: u64) -> WriteMark {
        WriteMark {
            primary: "127.0.0.1:6379".into(),
            switches,
        }
    }

    #[test]
    fn info_replication_is_read_for_a_primary_and_a_replica() {
        assert_eq!(
            Replication::parse(PRIMARY_INFO),
            Some(Replication::Primary {
                view: view("ours", &[(6380, "online", 171)]),
                replid2: "0000000000000000000000000000000000000000".into(),
            })
        );
        assert_eq!(
            Replication::parse(&replica_info("up")),
            replica_of("127.0.0.1:6379", true, Some("ours"))
        );
        assert_eq!(
            Replication::parse(&replica_info("down")),
            replica_of("127.0.0.1:6379", false, Some("ours"))
        );
        assert_eq!(Replication::parse("# Replication\r\n"), None);
        assert_eq!(Listed::parse("slave_read_only:1"), None);
    }

    #[test]
    fn a_promoted_replica_or_one_following_another_node_means_a_failover() {
        let p = Some("127.0.0.1:6379");
        let promoted = [("r:1".to_string(), promoted_from("ours"))];
        assert!(matches!(
            classify(p, Some("ours"), &promoted),
            Some(Verdict::FailoverBegun(_))
        ));
        // This primary's id unknown: a primary among its replicas is taken
        // to be promoted from it.
        assert!(matches!(
            classify(p, None, &promoted),
            Some(Verdict::FailoverBegun(_))
        ));
        // Right after a failover to this primary, the sentinels list the
        // old one as its replica before they have demoted it.
        let former = [("r:1".to_string(), promoted_from("older"))];
        assert!(matches!(
            classify(p, Some("ours"), &former),
            Some(Verdict::Down(_))
        ));
        let moved = [("r:1".to_string(), replica("127.0.0.1:6390", true))];
        assert!(matches!(
            classify(p, Some("ours"), &moved),
            Some(Verdict::FailoverBegun(_))
        ));
        // A cluster's slot primary is not known by address.
        assert_eq!(classify(None, Some("ours"), &moved), Some(Verdict::Slow));
        // Its replication id tells, whatever the replica calls its primary:
        // ours under a hostname is ours (slow), another's is a failover,
        // at our address or not, and on a cluster too.
        let by_name = [(
            "r:1".to_string(),
            replica_of("redis-0.redis:6379", true, Some("ours")),
        )];
        assert_eq!(classify(p, Some("ours"), &by_name), Some(Verdict::Slow));
        let new_stream = [(
            "r:1".to_string(),
            replica_of("127.0.0.1:6379", true, Some("new")),
        )];
        assert!(matches!(
            classify(p, Some("ours"), &new_stream),
            Some(Verdict::FailoverBegun(_))
        ));
        assert!(matches!(
            classify(None, Some("ours"), &new_stream),
            Some(Verdict::FailoverBegun(_))
        ));
        // A promotion wins over another replica that is only slow.
        let both = [
            ("r:1".to_string(), replica("127.0.0.1:6379", true)),
            ("r:2".to_string(), promoted_from("ours")),
        ];
        assert!(matches!(
            classify(p, Some("ours"), &both),
            Some(Verdict::FailoverBegun(_))
        ));
    }

    #[test]
    fn a_linked_replica_is_slow_and_only_unreachable_or_unlinked_ones_are_down() {
        let p = Some("127.0.0.1:6379");
        let slow = [
            ("r:1".to_string(), None),
            ("r:2".to_string(), replica("127.0.0.1:6379", true)),
        ];
        assert_eq!(classify(p, Some("ours"), &slow), Some(Verdict::Slow));
        let down = [
            ("r:1".to_string(), None),
            ("r:2".to_string(), replica("127.0.0.1:6379", false)),
            ("r:3".to_string(), replica("127.0.0.1:6390", false)),
        ];
        assert_eq!(
            classify(p, Some("ours"), &down),
            Some(Verdict::Down(
                "r:1 unreachable, r:2 not linked, r:3 not linked".into()
            ))
        );
        assert_eq!(classify(p, Some("ours"), &[]), None);
    }

    #[test]
    fn while_down_a_login_goes_on_only_while_its_primary_shows_the_same_replicas() {
        let ack = ReplicaAck::default();
        let stalled = view("ours", &[(6380, "online", 171)]);
        assert!(!ack.any_down(&mark(0)), "healthy: every login waits");
        ack.note_down(&mark(0), Some(stalled.clone()), "r:1 unreachable");
        assert!(ack.any_down(&mark(0)));
        assert!(ack.still_down(&stalled), "nothing changed: no wait");
        // The replica acknowledged something (woke from a stall).
        assert!(!ack.still_down(&view("ours", &[(6380, "online", 346)])));
        // It left the list (its link closed, or it was promoted).
        assert!(!ack.still_down(&view("ours", &[])));
        // Another replica appeared.
        let two = view("ours", &[(6380, "online", 171), (6381, "wait_bgsave", 0)]);
        assert!(!ack.still_down(&two));
        // Another primary (a failover; or another shard) with the same list.
        assert!(!ack.still_down(&view("theirs", &[(6380, "online", 171)])));

        // Per primary: another shard's outage is kept beside it, and one
        // shard's replica back does not end the other's.
        let other_shard = view("shard2", &[]);
        ack.note_down(&mark(0), Some(other_shard.clone()), "none known");
        assert!(ack.still_down(&stalled) && ack.still_down(&other_shard));
        ack.back_up(&stalled);
        assert!(!ack.still_down(&stalled), "back: its logins wait again");
        assert!(ack.still_down(&other_shard));

        // A primary switch forgets everything; a login older than the
        // switch keeps nothing.
        assert!(!ack.any_down(&mark(1)));
        assert!(!ack.still_down(&other_shard));
        ack.note_down(&mark(0), Some(other_shard.clone()), "none known");
        assert!(!ack.still_down(&other_shard));
        // Nothing kept when the primary did not show itself.
        ack.note_down(&mark(1), None, "r:1 unreachable");
        assert!(!ack.any_down(&mark(1)));
    }
}
