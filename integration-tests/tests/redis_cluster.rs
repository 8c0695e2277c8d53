//! A Redis Cluster shard failover under load (issue 19): two game servers
//! and a gateway on a real 3-primary/3-replica cluster; players increment
//! their counters, drop their connections and resume, while new users log
//! in; then the primary serving most of the players is killed (SIGKILL)
//! and its replica takes over (`cluster-node-timeout` 1 s).
//!
//! What it checks (SESSION_LIFECYCLE.md, "Redis Cluster shard failover"):
//!
//! - nothing executed twice: every acknowledged increment is exactly the
//!   previous one plus one, and after a resume the counter continues from
//!   the value that went with the watermark the snapshot names (the two
//!   are saved together and fenced by the epoch);
//! - what an acknowledged write can lose is bounded: a resume's watermark
//!   is never ahead of what the client saw acknowledged, and only users
//!   whose keys live on the killed shard can find it behind;
//! - no session doubled: at the end every user holds exactly one live
//!   session, on one game server, and it is the one its client has;
//! - every client is served again after the failover.
//!
//! Losses, `UNAVAILABLE` counts and the failover time are printed, not
//! asserted on timing.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gamemesh_integration_tests::{
    Client, Cluster, ClusterOptions, GameServerNode, RedisBackend, TIMEOUT,
};
use gamemesh_node::redis_address::cluster_slot;
use gamemesh_proto::client::ErrorCode;

/// Players incrementing and resuming through the failover.
const PLAYERS: u64 = 12;

/// Users of the login stream start here.
const FIRST_NEW_USER: u64 = 1_000;

/// How long one request may stay `UNAVAILABLE` before the test fails: the
/// node timeout (1 s), the promotion and the crate's slot refresh, with a
/// generous margin for a loaded 2-core machine.
const RECOVER: Duration = Duration::from_secs(30);

fn session_key(user_id: u64) -> String {
    format!("gm:{{u:{user_id}}}:session")
}

/// Runs `$call` again while it answers `UNAVAILABLE` (a retryable
/// refusal), up to [`RECOVER`], counting the refusals in `$refused`.
macro_rules! until_available {
    ($what:expr, $refused:expr, $call:expr) => {{
        let deadline = Instant::now() + RECOVER;
        loop {
            match $call {
                Err(e) if e.error_code() == Some(ErrorCode::Unavailable) => {
                    $refused += 1;
                    assert!(
                        Instant::now() < deadline,
                        "{}: still UNAVAILABLE after {RECOVER:?}",
                        $what
                    );
                    // A retry interval: the next attempt is the check.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => break other,
            }
        }
    }};
}

/// What one player saw.
#[derive(Debug, Default)]
struct Seen {
    user: u64,
    /// The session its client holds at the end.
    session_id: u64,
    /// Increments acknowledged, in order: (sequence id, value).
    acked: Vec<(u64, u64)>,
    /// Acknowledged increments a resume's watermark no longer covered.
    lost: u64,
    /// Resumes done.
    resumes: u32,
    /// `UNAVAILABLE` answers retried.
    refused: u32,
    /// Broken rules, with what was seen.
    anomalies: Vec<String>,
    /// When its last increment was acknowledged.
    last_ack: Option<Instant>,
}

/// Increments in a loop, and every fifth time drops the connection and
/// resumes on a new one, until `stop`. The client is returned connected.
async fn play(addr: String, user: u64, stop: Arc<AtomicBool>) -> (Seen, Client) {
    let mut seen = Seen {
        user,
        ..Seen::default()
    };
    let mut c = Client::connect_with_timeout(&addr, TIMEOUT).await.unwrap();
    let login = until_available!("login", seen.refused, c.login(user, "dev").await).expect("login");
    seen.session_id = login.session_id;
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let seq = c.allocate_sequence();
        // The SAME sequence id on every retry, so it can never run twice.
        let value = until_available!("increment", seen.refused, c.increment_at(seq).await)
            .unwrap_or_else(|e| panic!("user {user}: increment {seq}: {e}"));
        if let Some((_, prev)) = seen.acked.last() {
            if value != prev + 1 {
                seen.anomalies.push(format!(
                    "increment {seq} answered {value} after {prev}: executed twice or lost"
                ));
            }
        }
        seen.acked.push((seq, value));
        seen.last_ack = Some(Instant::now());
        if round.is_multiple_of(5) {
            drop(c);
            c = Client::connect_with_timeout(&addr, TIMEOUT).await.unwrap();
            resume(&mut c, &mut seen, &login.resume_token).await;
        }
    }
    (seen, c)
}

/// Resumes the player's session on `c` and checks the snapshot against
/// what the client saw acknowledged.
async fn resume(c: &mut Client, seen: &mut Seen, token: &str) {
    let session_id = seen.session_id;
    let snapshot = until_available!("resume", seen.refused, c.resume(session_id, token).await)
        .unwrap_or_else(|e| panic!("user {}: resume: {e}", seen.user));
    seen.resumes += 1;
    let watermark = snapshot.last_sequence_id;
    let acked_up_to = seen.acked.last().map_or(0, |(s, _)| *s);
    if watermark < acked_up_to {
        seen.lost += seen.acked.iter().filter(|(s, _)| *s > watermark).count() as u64;
        // Continue from what the store says: the counter that went with
        // that watermark.
        seen.acked.retain(|(s, _)| *s <= watermark);
    }
    if watermark > acked_up_to + 1 {
        seen.anomalies.push(format!(
            "resume watermark {watermark} is ahead of the last acknowledged {acked_up_to}"
        ));
    }
    c.set_next_sequence(watermark + 1);
}

/// Logs new users in, one after another, until `stop`: users -> the
/// session id each login gave, the `UNAVAILABLE` count and the clients
/// (still connected).
async fn login_stream(
    addr: String,
    stop: Arc<AtomicBool>,
) -> (HashMap<u64, u64>, u32, Vec<Client>) {
    let mut sessions = HashMap::new();
    let mut refused = 0;
    let mut clients = Vec::new();
    let mut user = FIRST_NEW_USER;
    while !stop.load(Ordering::Relaxed) {
        let mut c = Client::connect_with_timeout(&addr, TIMEOUT).await.unwrap();
        let login = until_available!("stream login", refused, c.login(user, "dev").await)
            .unwrap_or_else(|e| panic!("user {user}: login: {e}"));
        sessions.insert(user, login.session_id);
        clients.push(c);
        user += 1;
    }
    (sessions, refused, clients)
}

/// Every session held live on the game servers: user -> the (game server,
/// session id) pairs holding one.
fn live_sessions(game_servers: &[GameServerNode]) -> BTreeMap<u64, Vec<(u64, u64)>> {
    let mut live: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    for g in game_servers {
        for a in g.state.sessions.all() {
            live.entry(a.session.user_id)
                .or_default()
                .push((g.node_id, a.session.session_id));
        }
    }
    live
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_failover_under_load_doubles_no_session_and_runs_nothing_twice() {
    let mut cluster = Cluster::start_with(ClusterOptions {
        redis: RedisBackend::Cluster,
        gateways: 1,
        game_servers: 2,
        ..ClusterOptions::default()
    })
    .await;
    let addr = cluster.gateway_addr(0).to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let players: Vec<_> = (1..=PLAYERS)
        .map(|u| tokio::spawn(play(addr.clone(), u, stop.clone())))
        .collect();
    let stream = tokio::spawn(login_stream(addr.clone(), stop.clone()));

    // The victim: the primary serving the most players' keys.
    let mut redis = cluster.redis_cluster.take().expect("a Redis Cluster");
    let mut per_primary: BTreeMap<u16, Vec<u64>> = BTreeMap::new();
    for u in 1..=PLAYERS {
        let port = redis
            .primary_of_slot(cluster_slot(&session_key(u)))
            .expect("every slot is served");
        per_primary.entry(port).or_default().push(u);
    }
    let (victim, on_victim) = per_primary
        .iter()
        .max_by_key(|(_, users)| users.len())
        .map(|(p, u)| (*p, u.clone()))
        .unwrap();
    // Load before the kill: let every player get some increments in.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed_at = Instant::now();
    let redis = tokio::task::spawn_blocking(move || {
        redis.kill(victim);
        redis.wait_for_failover(victim, RECOVER);
        redis
    })
    .await
    .unwrap();
    let promoted_after = killed_at.elapsed();
    eprintln!(
        "killed primary {victim} (players {on_victim:?}); the cluster was ok again after {promoted_after:?}"
    );
    // Load after the failover: every player must be served again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = Vec::new();
    let mut clients = Vec::new();
    for p in players {
        let (s, c) = p.await.expect("player task");
        seen.push(s);
        clients.push(c);
    }
    let (stream_sessions, stream_refused, stream_clients) = stream.await.expect("login stream");

    let mut lost_total = 0;
    for s in &seen {
        assert!(s.anomalies.is_empty(), "user {}: {:?}", s.user, s.anomalies);
        assert!(
            s.last_ack.is_some_and(|t| t > killed_at + promoted_after),
            "user {} was served again after the failover",
            s.user
        );
        if s.lost > 0 {
            assert!(
                on_victim.contains(&s.user),
                "user {} lost {} acknowledged increments but its keys were not on the killed shard",
                s.user,
                s.lost
            );
        }
        lost_total += s.lost;
    }
    eprintln!(
        "players: {} increments acknowledged, {} resumes, {} UNAVAILABLE retried, {} acknowledged increments lost; login stream: {} users logged in, {} UNAVAILABLE retried",
        seen.iter().map(|s| s.acked.len()).sum::<usize>(),
        seen.iter().map(|s| s.resumes).sum::<u32>(),
        seen.iter().map(|s| s.refused).sum::<u32>(),
        lost_total,
        stream_sessions.len(),
        stream_refused
    );

    // No session doubled: one live session per user, the one its client
    // has, and Redis names the same one.
    let mut want: HashMap<u64, u64> = stream_sessions;
    for s in &seen {
        want.insert(s.user, s.session_id);
    }
    let matches = |live: &BTreeMap<u64, Vec<(u64, u64)>>| {
        live.len() == want.len()
            && live
                .iter()
                .all(|(u, h)| h.len() == 1 && want.get(u) == Some(&h[0].1))
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut live = live_sessions(&cluster.game_servers);
    while !matches(&live) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        live = live_sessions(&cluster.game_servers);
    }
    assert!(
        matches(&live),
        "one live session per user, none doubled, none lost.\n want: {want:?}\n live: {live:?}"
    );
    cluster.redis_cluster = Some(redis);
    let mut conn = cluster.redis_conn();
    for (user, sid) in &want {
        let stored: Option<String> = redis::cmd("HGET")
            .arg(session_key(*user))
            .arg("sid")
            .query(&mut conn)
            .expect("HGET");
        assert_eq!(
            stored.as_deref(),
            Some(sid.to_string().as_str()),
            "user {user}: Redis names the session its client holds"
        );
    }
    drop((clients, stream_clients));
    cluster.shutdown().await;
}
