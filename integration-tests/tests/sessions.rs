//! Sessions end to end (docs/PROTOCOL.md, "Rules" and "Authentication"): login,
//! duplicate login, resume, sequence ids across a resume, logout, login
//! tokens and a Redis outage, each on its own cluster of real gateways, game
//! servers and a real `redis-server`.
//!
//! What the tests look at, besides the client's view:
//!
//! - the Redis record, one hash per user at `gm:{u:<user_id>}:session`
//!   (fields `sid`, `uid`, `connected`, `owner`, `gateway`, `last_seq`, ...),
//!   read with a plain connection so the product's own store code is not the
//!   judge of itself;
//! - which game server holds a session in memory
//!   (`game_servers[i].state.sessions`).
//!
//! Placement: a gateway routes each new socket round robin over the live
//! game servers, so with two game servers consecutive sockets of one gateway
//! alternate. [`client_on`] uses that to get a socket on a chosen game
//! server, and every test that relies on it asserts the node it was served
//! by (`game_server_node_id` in the reply), so a routing change fails loudly
//! instead of silently testing the easy same-server path.
//!
//! Every wait is on a condition or a bounded reply timeout; nothing sleeps
//! for luck.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gamemesh_integration_tests::{
    code_of, session_key, wait_for, Client, ClientError, Cluster, ClusterOptions, GameServerNode,
    RedisBackend, TIMEOUT,
};
use gamemesh_proto::auth::mint_token;
use gamemesh_proto::client::{server_packet, ErrorCode, KickReason, LoginResponse, ServerPacket};
use gamemesh_test_client::client::{describe, token_for};

/// The shared secret of the authentication test.
const SECRET: &str = "s3cret";

/// How long a condition that depends on a save, a kick or a disconnect
/// crossing the cluster may take. Generous: these are sub-second normally.
const SETTLE: Duration = Duration::from_secs(10);

/// User ids for [`client_on`]'s probe logins, far from the tests' own users.
static NEXT_PROBE_USER: AtomicU64 = AtomicU64::new(9_000_000);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The user's session record as text (binary fields such as `replies` come
/// out lossy), or `None` when there is no key.
fn stored(conn: &mut impl redis::ConnectionLike, user_id: u64) -> Option<HashMap<String, String>> {
    let raw: HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
        .arg(session_key(user_id))
        .query(conn)
        .expect("HGETALL session record");
    if raw.is_empty() {
        return None;
    }
    Some(
        raw.into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect(),
    )
}

/// One field of the user's record (`None`: no key or no such field).
fn field(conn: &mut impl redis::ConnectionLike, user_id: u64, name: &str) -> Option<String> {
    stored(conn, user_id).and_then(|mut r| r.remove(name))
}

/// Whether the user has a session key at all.
fn key_exists(conn: &mut impl redis::ConnectionLike, user_id: u64) -> bool {
    let n: i64 = redis::cmd("EXISTS")
        .arg(session_key(user_id))
        .query(conn)
        .expect("EXISTS");
    n == 1
}

/// Session ids of every record in Redis that belongs to `user_id`, whatever
/// its key: "exactly one session for U" is checked over all records, not by
/// trusting the one-key-per-user layout.
fn stored_sessions_of(cluster: &Cluster, user_id: u64) -> Vec<u64> {
    let mut conn = cluster.redis_conn();
    let mut sids = Vec::new();
    for key in cluster.session_keys() {
        let uid: Option<String> = redis::cmd("HGET")
            .arg(&key)
            .arg("uid")
            .query(&mut conn)
            .expect("HGET uid");
        if uid.as_deref() == Some(user_id.to_string().as_str()) {
            let sid: Option<String> = redis::cmd("HGET")
                .arg(&key)
                .arg("sid")
                .query(&mut conn)
                .expect("HGET sid");
            let sid = sid.unwrap_or_default();
            sids.push(
                sid.parse()
                    .unwrap_or_else(|_| panic!("{key}: sid {sid:?} is not a number")),
            );
        }
    }
    sids
}

/// The game server with node id `node`.
fn game_server(cluster: &Cluster, node: u64) -> &GameServerNode {
    cluster
        .game_servers
        .iter()
        .find(|g| g.node_id == node)
        .unwrap_or_else(|| panic!("no game server with node id {node}"))
}

/// Node ids of the game servers holding `session_id` in memory.
fn holders(cluster: &Cluster, session_id: u64) -> Vec<u64> {
    cluster
        .game_servers
        .iter()
        .filter(|g| g.state.sessions.get(session_id).is_some())
        .map(|g| g.node_id)
        .collect()
}

/// The game server that is not `node` (the clusters here have two).
fn other_node(cluster: &Cluster, node: u64) -> u64 {
    cluster
        .game_servers
        .iter()
        .map(|g| g.node_id)
        .find(|&n| n != node)
        .expect("a second game server")
}

/// A fresh, never logged-in socket on `gateway` that the gateway routed to
/// game server `node` (two game servers assumed; callers assert the node
/// from the reply they get).
///
/// A probe socket logs a throw-away user in to learn where it landed, then
/// logs out (no record is left). The login's reply proves the gateway had
/// routed the probe before the next socket connects, so round robin puts
/// the next socket on the other game server; a heartbeat does the same for
/// a third socket when the probe was already on `node`.
async fn client_on(cluster: &Cluster, gateway: usize, node: u64) -> Client {
    let mut probe = cluster.client(gateway).await;
    let user = NEXT_PROBE_USER.fetch_add(1, Ordering::Relaxed);
    let probe_node = probe
        .login(user, &token_for(None, user))
        .await
        .expect("probe login")
        .game_server_node_id;
    probe.logout().await.expect("probe logout");
    let mut next = cluster.client(gateway).await;
    if probe_node != node {
        return next;
    }
    next.heartbeat()
        .await
        .expect("heartbeat on the second socket");
    cluster.client(gateway).await
}

/// Logs `user_id` in (no-secret clusters) and checks the basics of the reply.
async fn login(client: &mut Client, user_id: u64) -> LoginResponse {
    let reply = client
        .login(user_id, &token_for(None, user_id))
        .await
        .unwrap_or_else(|e| panic!("login of user {user_id}: {e}"));
    assert_ne!(reply.session_id, 0, "session id 0 is reserved");
    assert!(!reply.resume_token.is_empty(), "a resume token is given");
    reply
}

/// True when `packet` is a `Kicked` push with `reason`.
fn is_kick(packet: &ServerPacket, reason: KickReason) -> bool {
    packet.sequence_id == 0
        && matches!(&packet.body, Some(server_packet::Body::Kicked(k)) if k.reason() == reason)
}

/// The next push must be a `Kicked` (with `reason`, when given) and the
/// connection must then be closed by the server.
async fn expect_kicked_and_closed(client: &mut Client, reason: Option<KickReason>, who: &str) {
    let push = client
        .next_push(TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{who}: expected a Kicked push, got {e}"));
    match (&push.body, reason) {
        (Some(server_packet::Body::Kicked(k)), Some(r)) => assert_eq!(
            k.reason(),
            r,
            "{who}: kicked for the wrong reason: {}",
            describe(&push)
        ),
        (Some(server_packet::Body::Kicked(_)), None) => {}
        _ => panic!("{who}: expected a Kicked push, got {}", describe(&push)),
    }
    assert!(
        client.wait_closed(TIMEOUT).await,
        "{who}: the connection stays open after {}",
        describe(&push)
    );
}

/// A resume of `l` by a fresh client on gateway 1 finds no session.
async fn assert_not_resumable(cluster: &Cluster, l: &LoginResponse, what: &str) {
    let mut c = cluster.client(1).await;
    assert_eq!(
        code_of(c.resume(l.session_id, &l.resume_token).await, what),
        ErrorCode::SessionNotFound
    );
}

/// Echoes and checks the data came back.
async fn echo_ok(client: &mut Client, data: &str, who: &str) {
    let got = client
        .echo(data.to_owned())
        .await
        .unwrap_or_else(|e| panic!("{who}: echo failed: {e}"));
    assert_eq!(&got[..], data.as_bytes(), "{who}: echo data");
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn two_by_two() -> ClusterOptions {
    ClusterOptions {
        gateways: 2,
        game_servers: 2,
        ..ClusterOptions::default()
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

async fn duplicate_login_across_gateways_and_game_servers_kicks_the_old_connection(
    backend: RedisBackend,
) {
    let cluster = Cluster::start_on(backend, 2, 2).await;
    let user = 1001;

    let mut first = cluster.client(0).await;
    let l1 = login(&mut first, user).await;
    assert!(!l1.replaced_existing_session, "nothing to replace yet");
    let node_a = l1.game_server_node_id;
    assert_eq!(holders(&cluster, l1.session_id), vec![node_a]);

    // Another gateway, another game server.
    let node_b = other_node(&cluster, node_a);
    let mut second = client_on(&cluster, 1, node_b).await;
    let l2 = login(&mut second, user).await;
    assert_eq!(
        l2.game_server_node_id, node_b,
        "the second login must be served by the other game server"
    );
    assert!(l2.replaced_existing_session, "{l2:?}");
    assert_ne!(l2.session_id, l1.session_id);

    expect_kicked_and_closed(&mut first, Some(KickReason::DuplicateLogin), "first socket").await;

    assert_eq!(
        stored_sessions_of(&cluster, user),
        vec![l2.session_id],
        "exactly one session for the user in Redis: the new one"
    );
    let mut redis = cluster.redis_conn();
    let rec = stored(&mut redis, user).expect("record");
    assert_eq!(rec["connected"], "1", "{rec:?}");
    assert_eq!(rec["owner"], node_b.to_string(), "{rec:?}");
    assert_eq!(rec["gateway"], cluster.gateways[1].node_id.to_string());

    wait_for("the old owner drops the replaced session", SETTLE, || {
        game_server(&cluster, node_a)
            .state
            .sessions
            .get(l1.session_id)
            .is_none()
    })
    .await;
    assert!(holders(&cluster, l1.session_id).is_empty());
    assert_eq!(holders(&cluster, l2.session_id), vec![node_b]);
    echo_ok(&mut second, "still mine", "second socket").await;

    // And the same-game-server case: log in again on gateway 0 through a
    // socket served by node B, which owns the current session.
    let mut third = client_on(&cluster, 0, node_b).await;
    let l3 = login(&mut third, user).await;
    assert_eq!(l3.game_server_node_id, node_b);
    assert!(l3.replaced_existing_session);
    expect_kicked_and_closed(
        &mut second,
        Some(KickReason::DuplicateLogin),
        "second socket",
    )
    .await;
    assert_eq!(stored_sessions_of(&cluster, user), vec![l3.session_id]);
    wait_for("node B drops the session it replaced", SETTLE, || {
        holders(&cluster, l2.session_id).is_empty()
    })
    .await;
    echo_ok(&mut third, "third", "third socket").await;

    cluster.shutdown().await;
}

async fn racing_24_logins_of_one_user_leave_exactly_one_session(backend: RedisBackend) {
    const RACERS: usize = 24;
    let cluster = Cluster::start_on(backend, 2, 2).await;
    let user = 2002;

    let mut clients = Vec::with_capacity(RACERS);
    for i in 0..RACERS {
        clients.push(cluster.client(i % 2).await);
    }
    // Connected first, then released together, so the logins really race.
    let start = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let result = client.login(user, &token_for(None, user)).await;
                (client, result)
            })
        })
        .collect();
    let mut results = Vec::with_capacity(RACERS);
    for task in tasks {
        results.push(task.await.expect("login task"));
    }

    // Every login was either answered or cut off by a kick; either way its
    // store write is done, so Redis is settled now.
    let keys = cluster.session_keys();
    assert_eq!(keys, vec![session_key(user)], "one key, the user's");
    let sids = stored_sessions_of(&cluster, user);
    assert_eq!(sids.len(), 1, "{sids:?}");
    let live_sid = sids[0];

    let answered: Vec<u64> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().map(|l| l.session_id))
        .collect();
    let survivors: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, (_, r))| matches!(r, Ok(l) if l.session_id == live_sid))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        survivors.len(),
        1,
        "the stored session {live_sid} must be the LoginResponse of exactly one client; \
         answered session ids: {answered:?}"
    );
    let survivor = survivors[0];
    let not_replacing = results
        .iter()
        .filter(|(_, r)| matches!(r, Ok(l) if !l.replaced_existing_session))
        .count();
    assert!(
        not_replacing <= 1,
        "only the first login can have replaced nothing; {not_replacing} say so"
    );

    let mut survivor_client = None;
    for (i, (mut client, result)) in results.into_iter().enumerate() {
        let who = format!("racer {i}");
        if i == survivor {
            survivor_client = Some(client);
            continue;
        }
        match result {
            Ok(_) => {
                expect_kicked_and_closed(&mut client, Some(KickReason::DuplicateLogin), &who).await
            }
            // Kicked before its reply got through: the kick is queued, the
            // connection is gone.
            Err(ClientError::Closed) => {
                let queued: Vec<String> = client.queued().map(describe).collect();
                assert!(
                    client
                        .queued()
                        .any(|p| is_kick(p, KickReason::DuplicateLogin)),
                    "{who}: closed before its reply without Kicked{{DUPLICATE_LOGIN}}; \
                     got {queued:?}"
                );
            }
            Err(e) => panic!("{who}: login neither answered nor kicked: {e}"),
        }
    }

    wait_for(
        "the game servers hold only the surviving session",
        SETTLE,
        || {
            cluster
                .game_servers
                .iter()
                .map(|g| g.state.sessions.len())
                .sum::<usize>()
                == 1
        },
    )
    .await;
    assert_eq!(holders(&cluster, live_sid).len(), 1);

    let mut survivor_client = survivor_client.expect("survivor");
    echo_ok(&mut survivor_client, "I won", "survivor").await;
    let kicks: Vec<String> = survivor_client
        .queued()
        .filter(|p| matches!(p.body, Some(server_packet::Body::Kicked(_))))
        .map(describe)
        .collect();
    assert!(kicks.is_empty(), "the survivor was kicked: {kicks:?}");
    assert_eq!(stored_sessions_of(&cluster, user), vec![live_sid]);

    cluster.shutdown().await;
}

async fn resume_on_the_other_gateway_returns_the_snapshot_and_continues_the_sequence(
    backend: RedisBackend,
) {
    let cluster = Cluster::start_on(backend, 2, 2).await;
    let user = 3003;

    let mut client = cluster.client(0).await;
    let l = login(&mut client, user).await;
    assert_eq!(client.last_sequence(), 1, "the login used sequence id 1");
    for seq in 2..=5u64 {
        echo_ok(&mut client, &format!("echo {seq}"), "before the drop").await;
        assert_eq!(client.last_sequence(), seq);
    }
    drop(client);

    let mut redis = cluster.redis_conn();
    wait_for("Redis shows the session disconnected", SETTLE, || {
        stored(&mut redis, user)
            .is_some_and(|r| r["sid"] == l.session_id.to_string() && r["connected"] == "0")
    })
    .await;
    assert_eq!(field(&mut redis, user, "last_seq").as_deref(), Some("5"));

    // Another gateway and another game server: the snapshot must come from
    // the store, not from the first owner's memory.
    let away = other_node(&cluster, l.game_server_node_id);
    let mut resumed = client_on(&cluster, 1, away).await;
    let snap = resumed
        .resume(l.session_id, &l.resume_token)
        .await
        .expect("resume");
    assert_eq!(snap.session_id, l.session_id);
    assert_eq!(snap.user_id, user);
    assert_eq!(snap.last_sequence_id, 5);
    assert_eq!(snap.game_server_node_id, away, "resumed on the other node");

    resumed.set_next_sequence(snap.last_sequence_id + 1);
    echo_ok(&mut resumed, "after the resume", "resumed socket").await;
    assert_eq!(resumed.last_sequence(), 6);

    let rec = stored(&mut redis, user).expect("record");
    assert_eq!(rec["sid"], l.session_id.to_string());
    assert_eq!(rec["connected"], "1", "{rec:?}");
    assert_eq!(rec["owner"], away.to_string());
    assert_eq!(rec["gateway"], cluster.gateways[1].node_id.to_string());

    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_while_the_old_socket_is_open_closes_the_old_socket() {
    let cluster = Cluster::start(2, 2).await;
    let user = 4004;

    let mut old = cluster.client(0).await;
    let l = login(&mut old, user).await;
    echo_ok(&mut old, "one", "old socket").await;
    let node_a = l.game_server_node_id;
    let node_b = other_node(&cluster, node_a);
    let mut new = client_on(&cluster, 1, node_b).await;

    let snap = new
        .resume(l.session_id, &l.resume_token)
        .await
        .expect("resume while the old socket is open");
    assert_eq!(snap.session_id, l.session_id);
    assert_eq!(snap.user_id, user);
    assert_eq!(snap.game_server_node_id, node_b);

    expect_kicked_and_closed(&mut old, None, "old socket").await;

    new.set_next_sequence(snap.last_sequence_id + 1);
    echo_ok(&mut new, "two", "new socket").await;
    wait_for("the old owner lets the session go", SETTLE, || {
        holders(&cluster, l.session_id) == vec![node_b]
    })
    .await;
    let mut redis = cluster.redis_conn();
    let rec = stored(&mut redis, user).expect("record");
    assert_eq!(rec["sid"], l.session_id.to_string());
    assert_eq!(rec["owner"], node_b.to_string());
    assert_eq!(rec["connected"], "1", "{rec:?}");
    echo_ok(&mut new, "three", "new socket").await;

    cluster.shutdown().await;
}

/// The store can name a socket the session is not on: a resume's
/// take-over that landed in Redis just before Redis died, its reply lost
/// and its connection closed by the client (seen in a soak). The next
/// resume must still close the connection the session was really on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_closes_the_socket_the_session_was_on_when_the_store_names_another() {
    let cluster = Cluster::start(2, 2).await;
    let user = 4005;

    let mut old = cluster.client(0).await;
    let l = login(&mut old, user).await;
    echo_ok(&mut old, "one", "old socket").await;
    let mut redis = cluster.redis_conn();
    redis::cmd("HSET")
        .arg(session_key(user))
        .arg("socket")
        .arg(uuid::Uuid::new_v4().to_string())
        .query::<()>(&mut redis)
        .expect("HSET socket");

    let node_b = other_node(&cluster, l.game_server_node_id);
    let mut new = client_on(&cluster, 1, node_b).await;
    let snap = new
        .resume(l.session_id, &l.resume_token)
        .await
        .expect("resume on the other game server");
    assert_eq!(snap.game_server_node_id, node_b);
    expect_kicked_and_closed(
        &mut old,
        Some(KickReason::DuplicateLogin),
        "the socket the session was on",
    )
    .await;
    new.set_next_sequence(snap.last_sequence_id + 1);
    echo_ok(&mut new, "two", "new socket").await;
    cluster.shutdown().await;
}

/// An owner whose save is fenced off because the session moved to another
/// game server and another socket closes the socket it held it on: the
/// new owner only knows the socket the store named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_fenced_off_closes_the_socket_the_session_moved_away_from() {
    let cluster = Cluster::start(1, 1).await;
    let user = 4006;

    let mut old = cluster.client(0).await;
    login(&mut old, user).await;
    echo_ok(&mut old, "one", "old socket").await;
    // "one" is saved before the record moves: a session still dirty then
    // would be fenced off by the flush of "one", and kicked before "two".
    let mut redis = cluster.redis_conn();
    let one = old.last_sequence();
    wait_for("the flusher saves \"one\"", SETTLE, || {
        stored(&mut redis, user)
            .and_then(|r| r.get("last_seq")?.parse::<u64>().ok())
            .is_some_and(|saved| saved >= one)
    })
    .await;
    // Another game server took the session to another socket, as a
    // take-over does: new owner, new socket, epoch + 1.
    redis::pipe()
        .cmd("HSET")
        .arg(session_key(user))
        .arg("owner")
        .arg(99)
        .arg("socket")
        .arg(uuid::Uuid::new_v4().to_string())
        .ignore()
        .cmd("HINCRBY")
        .arg(session_key(user))
        .arg("epoch")
        .arg(1)
        .ignore()
        .query::<()>(&mut redis)
        .expect("move the record");
    // The next packet dirties the session; the flush that follows is
    // fenced off.
    echo_ok(&mut old, "two", "old socket").await;
    expect_kicked_and_closed(
        &mut old,
        Some(KickReason::DuplicateLogin),
        "the socket the session moved away from",
    )
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_is_refused_for_a_wrong_token_an_unknown_session_and_after_the_grace_period() {
    let cluster = Cluster::start_with(ClusterOptions {
        game_server: |c| c.resume_grace_secs = 1,
        ..two_by_two()
    })
    .await;
    let user = 5005;
    let mut redis = cluster.redis_conn();

    let mut owner = cluster.client(0).await;
    let l = login(&mut owner, user).await;
    let before = stored(&mut redis, user).expect("record");

    // A wrong token: right shape (user prefix), wrong secret; and garbage.
    let mut other = cluster.client(1).await;
    let forged = format!("{user}.{}", "0".repeat(32));
    assert_eq!(
        code_of(other.resume(l.session_id, &forged).await, "wrong token"),
        ErrorCode::InvalidToken
    );
    assert_eq!(
        code_of(other.resume(l.session_id, "garbage").await, "garbage token"),
        ErrorCode::InvalidToken
    );

    // Unknown session ids: another id of this user, and a user with none.
    let unknown_sid = l.session_id.wrapping_add(1).max(1);
    assert_eq!(
        code_of(
            other.resume(unknown_sid, &l.resume_token).await,
            "unknown session id"
        ),
        ErrorCode::SessionNotFound
    );
    let stranger = 5999;
    let stranger_token = format!("{stranger}.{}", "ab".repeat(16));
    assert_eq!(
        code_of(
            other.resume(123_456, &stranger_token).await,
            "session of a user without one"
        ),
        ErrorCode::SessionNotFound
    );
    assert!(!key_exists(&mut redis, stranger));

    // None of that disturbed the real session (`last_seq` and `replies`
    // are left out: the owner saves them behind, whenever it likes).
    let after = stored(&mut redis, user).expect("record still there");
    for name in [
        "sid",
        "uid",
        "epoch",
        "token",
        "owner",
        "gateway",
        "socket",
        "connected",
    ] {
        assert_eq!(after.get(name), before.get(name), "field {name}");
    }
    echo_ok(&mut owner, "unharmed", "owner").await;
    assert!(
        !owner
            .queued()
            .any(|p| matches!(p.body, Some(server_packet::Body::Kicked(_)))),
        "the owner was kicked by a refused resume"
    );

    // After the grace period (1 s) the record expires from Redis.
    drop(owner);
    wait_for("Redis shows the session disconnected", SETTLE, || {
        field(&mut redis, user, "connected").as_deref() != Some("1")
    })
    .await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg(session_key(user))
        .query(&mut redis)
        .expect("PTTL");
    assert!(
        pttl <= 1000,
        "a disconnected record lives for the grace: {pttl} ms"
    );
    wait_for("the record expires from Redis", SETTLE, || {
        !key_exists(&mut redis, user)
    })
    .await;

    assert_not_resumable(&cluster, &l, "resume after the grace period").await;
    assert!(!key_exists(&mut redis, user), "no key is left for the user");
    assert!(holders(&cluster, l.session_id).is_empty());

    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_sequence_id_after_a_resume_elsewhere_returns_the_first_reply() {
    let cluster = Cluster::start(2, 2).await;
    let user = 6006;

    let mut client = cluster.client(0).await;
    let l = login(&mut client, user).await;
    let got = client.echo_at(5, "a").await.expect("echo 5");
    assert_eq!(&got[..], b"a");
    drop(client);

    let mut redis = cluster.redis_conn();
    wait_for("Redis shows the session disconnected", SETTLE, || {
        stored(&mut redis, user).is_some_and(|r| r["connected"] == "0")
    })
    .await;

    let away = other_node(&cluster, l.game_server_node_id);
    let mut resumed = client_on(&cluster, 1, away).await;
    let snap = resumed
        .resume(l.session_id, &l.resume_token)
        .await
        .expect("resume");
    assert_eq!(snap.game_server_node_id, away, "resumed on the other node");
    assert_eq!(snap.last_sequence_id, 5);

    let got = resumed.echo_at(5, "b").await.expect("replayed echo 5");
    assert_eq!(
        String::from_utf8_lossy(&got),
        "a",
        "sequence id 5 was executed before: its first reply comes back"
    );
    let got = resumed.echo_at(6, "c").await.expect("echo 6");
    assert_eq!(&got[..], b"c", "a new sequence id still executes");

    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_tokens_are_checked_and_refused_logins_store_nothing() {
    let cluster = Cluster::start_with(ClusterOptions {
        game_server: |c| c.auth_secret = Some(SECRET.into()),
        ..two_by_two()
    })
    .await;
    let mut redis = cluster.redis_conn();

    let good_user = 7001;
    let mut good = cluster.client(0).await;
    let l = good
        .login(good_user, &token_for(Some(SECRET), good_user))
        .await
        .expect("a valid minted token logs in");
    assert_eq!(
        field(&mut redis, good_user, "sid"),
        Some(l.session_id.to_string())
    );

    let now = now_secs();
    let cases: Vec<(u64, String, &str)> = vec![
        (
            7002,
            mint_token(b"not-the-secret", 7002, now + 3600),
            "forged",
        ),
        (
            7003,
            mint_token(SECRET.as_bytes(), 7003, now - 60),
            "expired",
        ),
        (
            7004,
            token_for(Some(SECRET), good_user),
            "another user's token",
        ),
        (7005, String::new(), "empty"),
        (7006, "abc".into(), "malformed abc"),
        (7007, "123.zz".into(), "malformed 123.zz"),
    ];
    for (i, (user, token, what)) in cases.iter().enumerate() {
        let mut client = cluster.client(i % 2).await;
        assert_eq!(
            code_of(client.login(*user, token).await, what),
            ErrorCode::InvalidToken,
            "{what} token"
        );
        // The refusal is the reply: anything stored would be stored by now.
        assert!(
            !key_exists(&mut redis, *user),
            "{what} token created a session record"
        );
    }
    assert_eq!(
        cluster.session_keys(),
        vec![session_key(good_user)],
        "only the valid login is stored"
    );
    echo_ok(&mut good, "authenticated", "valid login").await;

    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_fails_logins_fast_keeps_echo_and_recovers_after_restart() {
    let mut cluster = Cluster::start(2, 2).await;

    let mut a = cluster.client(0).await;
    login(&mut a, 8001).await;
    echo_ok(&mut a, "before", "client A").await;

    cluster.redis.stop();

    // "Fast" means the game server answers on its own account, within its
    // Redis timeout (500 ms in tests), rather than the gateway answering
    // for it once its request timeout (5 s) ran out: the reply's detail
    // says which. The client waits longer than that request timeout, so a
    // game server that hung on Redis shows up as the gateway's answer
    // instead of a client timeout.
    let mut b = cluster.client(1).await;
    b.set_timeout(Duration::from_secs(10));
    let started = Instant::now();
    let refused = b.login(8002, &token_for(None, 8002)).await;
    let took = started.elapsed();
    match &refused {
        Err(ClientError::Server { error, .. }) => assert!(
            error.detail.contains("session store"),
            "the game server itself refuses the login with Redis down, not the gateway's \
             request timeout; got {error:?} after {took:?}"
        ),
        other => panic!("a login with Redis down must get an ErrorResponse, got {other:?}"),
    }
    assert_eq!(
        code_of(refused, "login with Redis down"),
        ErrorCode::Unavailable
    );
    eprintln!("login with Redis down refused by the game server after {took:?}");

    echo_ok(&mut a, "during", "client A with Redis down").await;

    cluster.redis.restart();

    // The game servers' Redis client reconnects by itself; retry the login
    // until it does. Each attempt is bounded by the client timeout.
    let deadline = Instant::now() + Duration::from_secs(10);
    let user = 8003;
    let mut c = cluster.client(1).await;
    let l = loop {
        match c.login(user, &token_for(None, user)).await {
            Ok(l) => break l,
            Err(e) if e.error_code() == Some(ErrorCode::Unavailable) => {
                assert!(
                    Instant::now() < deadline,
                    "logins still UNAVAILABLE 10 s after Redis came back: {e}"
                );
                // A retry interval, not a wait for luck: the condition is
                // checked again by the next login.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("login after the Redis restart: {e}"),
        }
    };
    let mut redis = cluster.redis_conn();
    assert_eq!(
        field(&mut redis, user, "sid"),
        Some(l.session_id.to_string()),
        "the new login is stored in the restarted Redis"
    );
    echo_ok(&mut c, "after", "client C").await;

    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_save_that_failed_while_redis_was_down_lands_once_it_is_back() {
    // Append-only with fsync on every write, so the restarted Redis still
    // has the session as it was saved before the kill.
    let mut cluster = Cluster::start_with(ClusterOptions {
        redis_args: &["--appendonly", "yes", "--appendfsync", "always"],
        ..ClusterOptions::default()
    })
    .await;
    let user = 8101;
    let mut a = cluster.client(0).await;
    let l = login(&mut a, user).await;
    echo_ok(&mut a, "before", "client A").await;
    let mut redis = cluster.redis_conn();
    let saved_before = a.last_sequence().to_string();
    wait_for("the flusher stored the progress so far", SETTLE, || {
        field(&mut redis, user, "last_seq").as_deref() == Some(saved_before.as_str())
    })
    .await;

    cluster.redis.stop();
    // Executed, in memory only: the flusher cannot save them.
    echo_ok(&mut a, "during 1", "client A with Redis down").await;
    echo_ok(&mut a, "during 2", "client A with Redis down").await;
    let executed = a.last_sequence();
    drop(a);
    let retries = &cluster.game_servers[0].state.save_retries;
    wait_for("the disconnect save failed and is queued", SETTLE, || {
        retries.pending() == 1
    })
    .await;

    cluster.redis.restart();
    let mut redis = cluster.redis_conn();
    assert_eq!(
        field(&mut redis, user, "sid"),
        Some(l.session_id.to_string()),
        "the restarted Redis kept the record (append-only file)"
    );
    wait_for("the queued disconnect save lands", SETTLE, || {
        retries.pending() == 0
    })
    .await;
    let record = stored(&mut redis, user).expect("the record");
    assert_eq!(
        record["connected"], "0",
        "saved as disconnected: {record:?}"
    );
    assert_eq!(record["last_seq"], executed.to_string(), "{record:?}");

    // And the client sees it: the resume continues after the ids it ran
    // while Redis was down.
    let mut b = cluster.client(0).await;
    let snap = b
        .resume(l.session_id, &l.resume_token)
        .await
        .expect("resume");
    assert_eq!(snap.last_sequence_id, executed);
    cluster.shutdown().await;
}

async fn logout_removes_the_session_and_its_token_no_longer_resumes(backend: RedisBackend) {
    let cluster = Cluster::start_on(backend, 2, 2).await;
    let user = 9009;
    let mut redis = cluster.redis_conn();

    let mut client = cluster.client(0).await;
    let l = login(&mut client, user).await;
    echo_ok(&mut client, "hello", "client").await;
    assert!(key_exists(&mut redis, user));

    client.logout().await.expect("logout");
    // The delete is done before the reply.
    assert!(!key_exists(&mut redis, user), "logout removes the record");
    wait_for("the owner drops the logged-out session", SETTLE, || {
        holders(&cluster, l.session_id).is_empty()
    })
    .await;

    assert_not_resumable(&cluster, &l, "resume after logout").await;
    assert!(!key_exists(&mut redis, user), "nothing was recreated");

    cluster.shutdown().await;
}

async fn resume_from_a_live_owner_on_another_game_server_keeps_its_latest_sequence(
    backend: RedisBackend,
) {
    // Sequence ids (docs/PROTOCOL.md): an executed id is never executed again,
    // and the snapshot's last_sequence_id is the highest executed. Here the
    // resume lands on game server B while A, the owner, is alive and has
    // just executed sequence id 2, with no wait for A's periodic save.
    let cluster = Cluster::start_on(backend, 2, 2).await;
    let user = 10_010;
    let node_a = cluster.game_servers[0].node_id;
    let node_b = other_node(&cluster, node_a);
    // Both sockets are ready before anything runs, so the resume follows
    // the echo at once.
    let mut old = client_on(&cluster, 0, node_a).await;
    let mut new = client_on(&cluster, 1, node_b).await;
    let l = login(&mut old, user).await;
    assert_eq!(l.game_server_node_id, node_a);
    let got = old.echo_at(2, "first").await.expect("echo 2");
    assert_eq!(&got[..], b"first");

    let snap = new
        .resume(l.session_id, &l.resume_token)
        .await
        .expect("resume");
    assert_eq!(snap.game_server_node_id, node_b);
    assert_eq!(
        snap.last_sequence_id, 2,
        "sequence id 2 was executed and answered before the resume"
    );
    let got = new.echo_at(2, "second").await.expect("re-sent echo 2");
    assert_eq!(
        String::from_utf8_lossy(&got),
        "first",
        "a re-sent sequence id after the resume gets its first reply, not a new execution"
    );

    cluster.shutdown().await;
}

gamemesh_integration_tests::on_both_redis!(
    duplicate_login_across_gateways_and_game_servers_kicks_the_old_connection,
    racing_24_logins_of_one_user_leave_exactly_one_session,
    resume_on_the_other_gateway_returns_the_snapshot_and_continues_the_sequence,
    resume_from_a_live_owner_on_another_game_server_keeps_its_latest_sequence,
    logout_removes_the_session_and_its_token_no_longer_resumes,
);
