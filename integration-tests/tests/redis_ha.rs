//! Sessions through a Redis primary failover (issue 9, "Redis HA"): a real
//! primary, replica(s) and sentinel(s) (`SentinelGroup`), two game servers
//! given only the `redis+sentinel://` address, one gateway, real clients.
//!
//! Each test logs [`USERS`] users in and lets their progress reach Redis
//! and the replica (`WAIT`), then fails the primary over: once as planned
//! (`SENTINEL FAILOVER`: the old primary is demoted and answers `READONLY`)
//! and once by killing it (SIGKILL: it is gone, and the sentinels must agree
//! it is down). Afterwards it counts what the issue promises:
//!
//! - every session logged in before is still there, on the new primary,
//!   and every client keeps being served;
//! - the game servers write to the new primary without a restart (a fresh
//!   echo's progress shows up there);
//! - a resume, a new login and a duplicate-login kick all work.
//!
//! How long following took is printed, not asserted (no timed assertions).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gamemesh_game_server::Config as GsConfig;
use gamemesh_integration_tests::{
    game_server_config, gateway_config, init_tracing, session_key, start_game_server,
    start_gateway, wait_for, wait_for_async, Client, GameServerNode, GatewayNode, TIMEOUT,
};
use gamemesh_jobs::{catalog, JobStore};
use gamemesh_proto::client::{server_packet, KickReason, LoginResponse};
use gamemesh_test_support::{SentinelGroup, SentinelOptions};

/// Users logged in before the failover.
const USERS: u64 = 6;

/// How long anything may take to settle after the failover: the game
/// servers follow within the sentinel poll (500 ms) plus a connect, and
/// the flusher retries every 20 ms in tests. Generous for a loaded machine.
const SETTLE: Duration = Duration::from_secs(15);

/// The user's record on the data node `conn` points at.
fn stored(conn: &mut impl redis::ConnectionLike, user_id: u64) -> HashMap<String, String> {
    let raw: HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
        .arg(session_key(user_id))
        .query(conn)
        .expect("HGETALL");
    raw.into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect()
}

/// Number of session records on the node.
fn session_count(conn: &mut impl redis::ConnectionLike) -> usize {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("gm:*:session")
        .query(conn)
        .expect("KEYS");
    keys.len()
}

/// Every session held live on any of `game_servers`: user -> the
/// (game server, session id) pairs holding one. A user with two entries
/// has a doubled session, whatever Redis says.
fn live_sessions(game_servers: &[GameServerNode]) -> BTreeMap<u64, Vec<(u64, u64)>> {
    let mut live: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    for g in game_servers {
        for a in g.state.sessions.all() {
            live.entry(a.session.user_id)
                .or_default()
                .push((g.node_id, a.session.session_id));
        }
    }
    for holders in live.values_mut() {
        holders.sort_unstable();
    }
    live
}

/// Waits until the game servers together hold exactly one live session per
/// user of `want` (user -> session id), and nothing else; fails with what
/// they hold when that does not settle.
async fn assert_one_live_session_each(game_servers: &[GameServerNode], want: &HashMap<u64, u64>) {
    let matches = |live: &BTreeMap<u64, Vec<(u64, u64)>>| {
        live.len() == want.len()
            && live
                .iter()
                .all(|(user, holders)| holders.len() == 1 && want.get(user) == Some(&holders[0].1))
    };
    let deadline = Instant::now() + SETTLE;
    let mut live = live_sessions(game_servers);
    // Kicks and replacements end sessions asynchronously: poll, bounded.
    while !matches(&live) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        live = live_sessions(game_servers);
    }
    let want: BTreeMap<_, _> = want.iter().map(|(u, s)| (*u, *s)).collect();
    assert!(
        matches(&live),
        "every user holds exactly one live session, on one game server, and it is the \
         session the client has: none doubled, none lost.\n want (user -> session id): \
         {want:?}\n live (user -> [(game server, session id)]): {live:?}"
    );
}

/// A logged-in client and what its login said.
struct Player {
    user: u64,
    client: Client,
    login: LoginResponse,
}

/// Two game servers that know Redis only by `url` (plus `tune`), and a
/// gateway linked to both.
async fn start_nodes(
    url: &str,
    tune: impl Fn(&mut GsConfig),
) -> (Vec<GameServerNode>, GatewayNode) {
    init_tracing();
    let mut game_servers = Vec::new();
    for id in 1..=2 {
        let mut c = game_server_config(id, url);
        // The flusher's periodic full pass (every ~1/9 of the live TTL)
        // would repair lost saves by itself; a long grace pushes it past
        // SETTLE, so what these tests see is the re-save on failover.
        c.resume_grace_secs = 600;
        tune(&mut c);
        game_servers.push(start_game_server(c).await);
    }
    let states: Vec<_> = game_servers.iter().map(|g| g.state.clone()).collect();
    wait_for("the two game servers see each other", SETTLE, || {
        states[0].mesh.is_live(2) && states[1].mesh.is_live(1)
    })
    .await;
    let ports: Vec<u16> = game_servers.iter().map(|g| g.p2p_port).collect();
    let gateway = start_gateway(gateway_config(1, &ports), 2).await;
    (game_servers, gateway)
}

async fn stop_nodes(game_servers: Vec<GameServerNode>, gateway: GatewayNode) {
    gateway.shutdown.cancel();
    let _ = gateway.task.await;
    for g in &game_servers {
        g.shutdown.cancel();
    }
    for g in game_servers {
        let _ = g.task.await;
    }
}

/// Logs users `1..=USERS` in and echoes once each (sequence ids 1 and 2).
async fn log_players_in(gateway: &GatewayNode) -> Vec<Player> {
    let mut players = Vec::new();
    for user in 1..=USERS {
        let mut client = Client::connect_with_timeout(&gateway.addr, TIMEOUT)
            .await
            .expect("connect");
        let login = client.login(user, "dev").await.expect("login");
        client
            .echo("before")
            .await
            .expect("echo before the failover");
        players.push(Player {
            user,
            client,
            login,
        });
    }
    players
}

/// Waits until every player's record on the node at `port` shows
/// `last_seq`.
async fn wait_saved(ha: &SentinelGroup, port: u16, players: &[Player], last_seq: u64, what: &str) {
    let want = last_seq.to_string();
    wait_for(what, SETTLE, || {
        let mut c = ha.data_conn(port);
        players
            .iter()
            .all(|p| stored(&mut c, p.user).get("last_seq") == Some(&want))
    })
    .await;
}

/// The part both failovers share: everything after the primary changed.
async fn sessions_keep_working(
    ha: &SentinelGroup,
    game_servers: &[GameServerNode],
    gateway: &GatewayNode,
    mut players: Vec<Player>,
    new_primary: u16,
    switched_at: Instant,
) {
    // 1. Every session is on the new primary (the replica had them all).
    let mut c = ha.data_conn(new_primary);
    assert_eq!(
        session_count(&mut c),
        USERS as usize,
        "every session logged in before the failover is on the new primary"
    );

    // 2. Every client is still served, and the game servers save to the
    //    new primary without a restart: sequence 3's progress lands there.
    for p in &mut players {
        let mut served = false;
        for _ in 0..3 {
            match p.client.echo("after").await {
                Ok(_) => {
                    served = true;
                    break;
                }
                // An echo needs no Redis, but say it plainly if it failed.
                Err(e) => eprintln!("user {}: echo after the failover: {e}", p.user),
            }
        }
        assert!(served, "user {} is served after the failover", p.user);
    }
    let last = players[0].client.last_sequence();
    assert!(players.iter().all(|p| p.client.last_sequence() == last));
    wait_saved(
        ha,
        new_primary,
        &players,
        last,
        "every session's newest progress is saved on the new primary",
    )
    .await;
    println!(
        "failover followed: progress of all {USERS} sessions on the new primary {:?} after the sentinels named it",
        switched_at.elapsed()
    );

    // 3. A resume: user 1 drops its connection and resumes on a new one.
    let Player {
        user,
        client: old,
        login,
    } = players.remove(0);
    drop(old);
    wait_for("user 1's session is saved as disconnected", SETTLE, || {
        stored(&mut ha.data_conn(new_primary), user).get("connected") == Some(&"0".to_string())
    })
    .await;
    let mut resumed = Client::connect_with_timeout(&gateway.addr, TIMEOUT)
        .await
        .expect("connect");
    let snap = resumed
        .resume(login.session_id, &login.resume_token)
        .await
        .expect("resume after the failover");
    assert_eq!(snap.session_id, login.session_id);
    assert_eq!(
        snap.last_sequence_id, last,
        "progress survived the failover"
    );
    resumed.set_next_sequence(snap.last_sequence_id + 1);
    resumed.echo("resumed").await.expect("echo after resume");

    // 4. A new login.
    let mut newcomer = Client::connect_with_timeout(&gateway.addr, TIMEOUT)
        .await
        .expect("connect");
    let newcomer_login = newcomer
        .login(USERS + 1, "dev")
        .await
        .expect("a new login after the failover");
    wait_for("the new login is stored on the new primary", SETTLE, || {
        !stored(&mut ha.data_conn(new_primary), USERS + 1).is_empty()
    })
    .await;

    // 5. A duplicate login kicks the session it replaces.
    let victim = players.remove(0);
    let mut intruder = Client::connect_with_timeout(&gateway.addr, TIMEOUT)
        .await
        .expect("connect");
    let second = intruder
        .login(victim.user, "dev")
        .await
        .expect("duplicate login");
    assert!(second.replaced_existing_session);
    let mut victim_client = victim.client;
    let push = victim_client
        .next_push(TIMEOUT)
        .await
        .expect("the replaced session gets a push");
    assert!(
        matches!(&push.body, Some(server_packet::Body::Kicked(k)) if k.reason() == KickReason::DuplicateLogin),
        "the replaced session is kicked with DUPLICATE_LOGIN: {push:?}"
    );
    assert!(victim_client.wait_closed(TIMEOUT).await);

    // 6. Nobody else noticed: the rest still echo.
    for p in &mut players {
        p.client.echo("still here").await.expect("still served");
    }
    let mut c = ha.data_conn(new_primary);
    assert_eq!(
        session_count(&mut c),
        USERS as usize + 1,
        "the {USERS} sessions plus the new login, and the duplicate replaced one: no record lost"
    );
    // One record per user cannot show a doubled session (two game servers
    // each serving one for the same user): the game servers' own tables
    // can.
    let mut want: HashMap<u64, u64> = players
        .iter()
        .map(|p| (p.user, p.login.session_id))
        .collect();
    want.insert(user, login.session_id);
    want.insert(USERS + 1, newcomer_login.session_id);
    want.insert(victim.user, second.session_id);
    assert_one_live_session_each(game_servers, &want).await;
    drop((resumed, newcomer, intruder));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_keep_working_through_a_planned_sentinel_failover() {
    let ha = SentinelGroup::start_with(SentinelOptions {
        password: Some("ha-data-pw".into()),
        sentinel_password: Some("ha-sentinel-pw".into()),
        ..SentinelOptions::default()
    });
    let (game_servers, gateway) = start_nodes(&ha.url(), |c| {
        c.redis_sentinel_password = Some("ha-sentinel-pw".into());
    })
    .await;
    let old = ha.primary_port();
    let players = log_players_in(&gateway).await;
    wait_saved(&ha, old, &players, 2, "every login and echo is saved").await;
    ha.wait_replicated();

    let new = ha.failover().await;
    let switched_at = Instant::now();
    assert_ne!(new, old);
    sessions_keep_working(&ha, &game_servers, &gateway, players, new, switched_at).await;
    stop_nodes(game_servers, gateway).await;
}

/// How many `WAIT` commands the data node at `port` has run
/// (`INFO commandstats`).
fn wait_calls(ha: &SentinelGroup, port: u16) -> u64 {
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut ha.data_conn(port))
        .expect("INFO commandstats");
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_wait:calls="))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// Logins back to back, each a new user on a new connection, until
/// [`finish`](Self::finish): what was acknowledged, and how many were
/// refused.
struct LoginStream {
    /// (user, session id) of every acknowledged login, in order.
    acked: Arc<Mutex<Vec<(u64, u64)>>>,
    /// Logins answered with an error (`UNAVAILABLE` while the primary
    /// moves): not acknowledged, so not counted.
    refused: Arc<AtomicU64>,
    /// Set to end the stream.
    stop: Arc<AtomicBool>,
    /// The stream; returns its clients, kept connected until the end.
    task: tokio::task::JoinHandle<Vec<Client>>,
}

impl LoginStream {
    fn start(gateway: &GatewayNode) -> Self {
        let acked: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
        let refused = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (acked, stop, refused) = (acked.clone(), stop.clone(), refused.clone());
            let addr = gateway.addr.clone();
            async move {
                let mut clients = Vec::new();
                for user in 100u64.. {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let mut c = Client::connect_with_timeout(&addr, TIMEOUT)
                        .await
                        .expect("connect");
                    match c.login(user, "dev").await {
                        Ok(l) => {
                            acked.lock().unwrap().push((user, l.session_id));
                            clients.push(c);
                        }
                        Err(_) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                clients
            }
        });
        Self {
            acked,
            refused,
            stop,
            task,
        }
    }

    fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn acked_len(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits until at least `n` logins were acknowledged.
    async fn wait_acked(&self, n: usize, what: &str) {
        wait_for(what, SETTLE, || self.acked_len() >= n).await;
    }

    /// Waits until logins land on the primary at `port`: sockets alternate
    /// between the two game servers, so four logins in a row stored there
    /// mean both follow it.
    async fn wait_landing_on(&self, ha: &SentinelGroup, port: u16) {
        wait_for("logins land on the new primary", SETTLE, || {
            let recent: Vec<_> = self
                .acked
                .lock()
                .unwrap()
                .iter()
                .rev()
                .take(4)
                .copied()
                .collect();
            let mut c = ha.data_conn(port);
            recent.len() == 4
                && recent
                    .iter()
                    .all(|(user, sid)| stored(&mut c, *user).get("sid") == Some(&sid.to_string()))
        })
        .await;
    }

    /// Stops the stream and asserts every acknowledged login is on the
    /// primary at `port`.
    async fn finish_all_on(self, ha: &SentinelGroup, port: u16) {
        self.stop.store(true, Ordering::Release);
        let clients = self.task.await.expect("the login task");
        let acked = self.acked.lock().unwrap().clone();
        let mut c = ha.data_conn(port);
        let missing: Vec<_> = acked
            .iter()
            .filter(|(user, sid)| stored(&mut c, *user).get("sid") != Some(&sid.to_string()))
            .collect();
        println!(
            "{} logins acknowledged around the failover, {} refused while it happened",
            acked.len(),
            self.refused.load(Ordering::Relaxed)
        );
        assert!(
            missing.is_empty(),
            "every acknowledged login is on the new primary; missing (user, session id): {missing:?}"
        );
        drop(clients);
    }
}

/// Logins acknowledged right before and during a planned failover: the
/// old primary keeps taking writes after its replica was promoted, until
/// it is demoted and the game servers follow, and whatever it took then is
/// thrown away. Each login waits for the replica (`WAIT`), and one that no
/// replica took because a failover began is refused, so every login a
/// client was told succeeded is on the new primary. (With the sentinels
/// asked only once after a missed `WAIT`, they still named the old primary
/// and this test found 174 of 328 acknowledged logins missing. With a
/// missed `WAIT` the sentinels did not explain skipping the next ones for
/// 5 s, a slow replica on a loaded machine started that skip and the
/// failover landed in it: 1 or 2 missing, about one run in three.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_acknowledged_around_a_planned_failover_are_on_the_new_primary() {
    let ha = SentinelGroup::start();
    let (game_servers, gateway) = start_nodes(&ha.url(), |_| {}).await;
    let old = ha.primary_port();
    // From just before the failover until well after the game servers
    // followed it.
    let logins = LoginStream::start(&gateway);
    logins.wait_acked(1, "a first login is acknowledged").await;
    let new = ha.failover().await;
    assert_ne!(new, old);
    logins.wait_landing_on(&ha, new).await;
    logins.finish_all_on(&ha, new).await;
    stop_nodes(game_servers, gateway).await;
}

/// A replica stalls (SIGSTOP), so logins miss their `WAIT`; it wakes, and
/// a planned failover follows at once. While it is stalled, logins go on
/// without a `WAIT` each and none is refused (an outage stays cheap).
/// Every login acknowledged around both is on the new primary: once the
/// replica answered again, its primary listed it acknowledging, the logins
/// waited for it, and the failover found them waiting, not skipping. (With
/// a 5 s skip of `WAIT` after a miss the sentinels did not explain, the
/// failover landed in the skip and the logins the old primary took after
/// the promotion were acknowledged and lost, hundreds of them: the cause
/// of the flaky test above, made certain. With one login every 250 ms
/// looking again while the replica was down and the others skipping, a
/// game server still skipping when the woken replica was promoted lost one
/// login about one run in five.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_acknowledged_after_a_stalled_replica_and_a_failover_are_on_the_new_primary() {
    let ha = SentinelGroup::start();
    let (game_servers, gateway) = start_nodes(&ha.url(), |_| {}).await;
    let replica = ha.replica_ports()[0];
    let logins = LoginStream::start(&gateway);
    logins.wait_acked(1, "a first login is acknowledged").await;

    let primary = ha.primary_port();
    ha.pause_node(replica).await;
    // Each game server misses a WAIT (sockets alternate between them, and
    // one login may have been in flight) and answers logins without the
    // replica.
    let during = logins.acked_len() + 3;
    logins
        .wait_acked(during, "logins acknowledged while the replica is stalled")
        .await;
    // Both found it down: the next logins run no WAIT, and none fails.
    let (waits, refused) = (wait_calls(&ha, primary), logins.refused());
    let more = logins.acked_len() + 10;
    logins
        .wait_acked(more, "ten more logins while the replica is stalled")
        .await;
    assert_eq!(
        wait_calls(&ha, primary) - waits,
        0,
        "logins while the replica is down wait for it"
    );
    assert_eq!(
        logins.refused(),
        refused,
        "logins refused during the outage"
    );
    ha.resume_node(replica).await;
    let new = ha.failover().await;
    assert_eq!(new, replica, "the stalled replica is promoted");
    logins.wait_landing_on(&ha, new).await;
    logins.finish_all_on(&ha, new).await;
    stop_nodes(game_servers, gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_keep_working_after_the_primary_is_killed() {
    // Three sentinels (quorum 2), as production runs them: the kill must be
    // agreed on, and the game servers are given all three addresses.
    let mut ha = SentinelGroup::start_with(SentinelOptions {
        sentinels: 3,
        ..SentinelOptions::default()
    });
    let (game_servers, gateway) = start_nodes(&ha.url(), |_| {}).await;
    let old = ha.primary_port();
    let players = log_players_in(&gateway).await;
    wait_saved(&ha, old, &players, 2, "every login and echo is saved").await;
    ha.wait_replicated();

    let new = ha.kill_primary().await;
    let switched_at = Instant::now();
    assert_ne!(new, old);
    sessions_keep_working(&ha, &game_servers, &gateway, players, new, switched_at).await;
    stop_nodes(game_servers, gateway).await;
}

/// The background jobs follow the failover with the sessions: an in-game
/// event scheduled on the NEW primary is claimed there by a game server
/// (on the old, demoted one its scripts would fail `READONLY`), and both
/// notices it publishes reach a player.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_jobs_and_events_follow_a_planned_sentinel_failover() {
    let ha = SentinelGroup::start();
    let (game_servers, gateway) = start_nodes(&ha.url(), |_| {}).await;
    let old = ha.primary_port();
    let new = ha.failover().await;
    assert_ne!(new, old);
    // Events are pub/sub, at most once per listening server: one published
    // before a game server's listener has moved to the new primary never
    // reaches it (docs/JOBS.md). So the event is
    // scheduled once both listeners are subscribed there.
    let primary = redis::Client::open(format!("redis://127.0.0.1:{new}")).expect("redis url");
    wait_for(
        "both event listeners subscribed on the new primary",
        SETTLE,
        || {
            let Ok(mut conn) = primary.get_connection() else {
                return false;
            };
            let counts: Vec<(String, u64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("gm:{jobs}:events")
                .query(&mut conn)
                .unwrap_or_default();
            counts.first().is_some_and(|(_, n)| *n == 2)
        },
    )
    .await;
    // The player logs in after the switch: what is under test is the jobs
    // and events following it (sessions across a failover are the other
    // tests' subject).
    let mut client = Client::connect_with_timeout(&gateway.addr, TIMEOUT)
        .await
        .expect("connect");
    client.login(1, "dev").await.expect("login");

    let store = JobStore::connect(&format!("127.0.0.1:{new}"), TIMEOUT)
        .await
        .expect("job store on the new primary");
    catalog::schedule_game_event(&store, "after-failover", Duration::ZERO, Duration::ZERO)
        .await
        .expect("schedule an event on the new primary");
    let mut kinds = Vec::new();
    let deadline = Instant::now() + SETTLE;
    while !(kinds.iter().any(|k| k == "event_start") && kinds.iter().any(|k| k == "event_end")) {
        let left = deadline.saturating_duration_since(Instant::now());
        let push = client
            .next_push(left)
            .await
            .unwrap_or_else(|e| panic!("waiting for the event's notices, got {kinds:?}: {e}"));
        if let Some(server_packet::Body::Notice(n)) = push.body {
            if n.text.contains("after-failover") {
                kinds.push(n.kind);
            }
        }
    }
    stop_nodes(game_servers, gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_sentinel_first_in_the_list_is_skipped() {
    let ha = SentinelGroup::start();
    // A port nothing listens on, listed before the real sentinel.
    let dead = gamemesh_test_support::free_port();
    let url = ha.url().replacen(
        "redis+sentinel://",
        &format!("redis+sentinel://127.0.0.1:{dead},"),
        1,
    );
    let node = start_game_server(game_server_config(1, &url)).await;
    let store = node.state.store.clone();
    wait_for_async(
        "the store answers through the live sentinel",
        SETTLE,
        || {
            let store = store.clone();
            async move { store.ping().await.is_ok() }
        },
    )
    .await;
    node.shutdown.cancel();
    let _ = node.task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_sentinel_password_fails_at_start_up_with_one_plain_sentence() {
    init_tracing();
    let ha = SentinelGroup::start_with(SentinelOptions {
        sentinel_password: Some("right-sentinel-pw".into()),
        ..SentinelOptions::default()
    });
    let mut config = game_server_config(1, &ha.url());
    config.redis_sentinel_password = Some("wrong-sentinel-pw".into());
    let e = match gamemesh_game_server::start(config, tokio_util::sync::CancellationToken::new())
        .await
    {
        Ok(_) => panic!("started with a wrong sentinel password"),
        Err(e) => e,
    };
    let message = e.to_string();
    assert!(
        matches!(e, gamemesh_game_server::GameServerError::RedisAuth { .. }),
        "an authentication error: {message}"
    );
    assert!(message.contains("--redis-sentinel-password"), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(!message.contains("wrong-sentinel-pw"), "{message}");
}
