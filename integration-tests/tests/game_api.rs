//! The game API through the whole system (issue 15, "Tests"): real
//! gateways and game servers, real Redis, real TCP and ZeroMQ.
//!
//! - Route errors, through the whole pipeline: unknown route, bad route
//!   name, bad payload, refused, a panicking handler, a re-sent sequence
//!   id answered from the reply cache without running the handler again.
//! - The arena across 2 gateways x 2 game servers: players on different
//!   game servers in one room see the same ticks and each other's moves;
//!   the 17th player is refused; leave, logout, a duplicate-login kick and
//!   session expiry remove a member; a disconnected member resumes and
//!   gets `arena.state` again without joining.
//! - Player data: concurrent compare-and-set from two game servers (one
//!   wins, the other sees the conflict); data survives a game-server
//!   restart.
//!
//! Room failover with `kill -9` needs game servers as child processes:
//! it is in `examples/arena/tests/failover.rs`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use gamemesh_arena::Arena;
use gamemesh_game_server::api::{refuse, App, Ctx, DataError, Expect, GameError, Module};
use gamemesh_integration_tests::{
    start_game_server_with, Client, Cluster, ClusterOptions, RedisBackend, TIMEOUT,
};
use gamemesh_proto::client::{
    client_packet, server_packet, ClientPacket, ErrorCode, GameRequest, KickReason, ServerPacket,
};
// The client side speaks the arena's .proto as any client would (the
// test client's own build of it), not the module's types.
use gamemesh_test_client::arena::proto::{
    JoinRequest, JoinResponse, LeaveRequest, LeaveResponse, MoveRequest, MoveResponse, State,
};
use gamemesh_test_client::arena::wire;
use prost::Message;

// ------------------------------------------------------------ the probe

/// A note: text and a number.
#[derive(Clone, PartialEq, prost::Message)]
struct Note {
    #[prost(string, tag = "1")]
    s: String,
    #[prost(uint64, tag = "2")]
    n: u64,
}

/// A compare-and-set of per-player data: `expect` -1 any, 0 absent, else
/// the version; the answer carries the new version.
#[derive(Clone, PartialEq, prost::Message)]
struct Put {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
    #[prost(int64, tag = "3")]
    expect: i64,
    #[prost(uint64, tag = "4")]
    version: u64,
    /// Whose data (0: the caller's): a shared key two players write.
    #[prost(uint64, tag = "5")]
    user: u64,
}

/// How many times `probe.count` ran, per user (tests share the process).
static COUNTS: Mutex<Option<HashMap<u64, u64>>> = Mutex::new(None);

/// A test module: routes that count, refuse, panic and keep player data.
struct Probe;

async fn count(ctx: Ctx, _n: Note) -> Result<Note, GameError> {
    let mut counts = COUNTS.lock().unwrap();
    let c = counts
        .get_or_insert_with(HashMap::new)
        .entry(ctx.user_id())
        .or_insert(0);
    *c += 1;
    Ok(Note {
        s: format!("user {} session {}", ctx.user_id(), ctx.session_id()),
        n: *c,
    })
}

async fn refuse_it(_ctx: Ctx, n: Note) -> Result<Note, GameError> {
    Err(refuse(n.s))
}

async fn panic_it(_ctx: Ctx, _n: Note) -> Result<Note, GameError> {
    panic!("the probe was asked to panic")
}

async fn put(ctx: Ctx, p: Put) -> Result<Put, GameError> {
    let expect = match p.expect {
        -1 => Expect::Any,
        0 => Expect::Absent,
        v => Expect::Version(v as u64),
    };
    let user = if p.user == 0 { ctx.user_id() } else { p.user };
    match ctx.data().set(user, &p.key, p.value, expect).await {
        Ok(version) => Ok(Put {
            version,
            ..Put::default()
        }),
        Err(DataError::Conflict { current }) => Err(refuse(format!(
            "conflict: the value is at version {}",
            current.unwrap_or(0)
        ))),
        Err(e) => Err(e.into()),
    }
}

async fn get(ctx: Ctx, p: Put) -> Result<Put, GameError> {
    let user = if p.user == 0 { ctx.user_id() } else { p.user };
    let v = ctx.data().get(user, &p.key).await?;
    Ok(v.map(|v| Put {
        key: p.key,
        value: v.value.to_vec(),
        version: v.version,
        ..Put::default()
    })
    .unwrap_or_default())
}

impl Module for Probe {
    fn name(&self) -> &str {
        "probe"
    }

    fn build(&self, app: &mut App) {
        app.route("probe.count", count)
            .route("probe.refuse", refuse_it)
            .route("probe.panic", panic_it)
            .route("probe.put", put)
            .route("probe.get", get);
    }
}

// ------------------------------------------------------------ helpers

fn game(route: &str, payload: Bytes) -> client_packet::Body {
    client_packet::Body::Game(GameRequest {
        route: route.to_string(),
        payload,
    })
}

/// The answer to a game request: the payload, or the error code and
/// detail.
fn answer(p: &ServerPacket) -> Result<Bytes, (ErrorCode, String)> {
    match &p.body {
        Some(server_packet::Body::Game(g)) => Ok(g.payload.clone()),
        Some(server_packet::Body::Error(e)) => Err((e.code(), e.detail.clone())),
        other => panic!("not a game answer: {other:?}"),
    }
}

async fn call<Req: Message, Resp: Message + Default>(
    c: &mut Client,
    route: &str,
    req: &Req,
) -> Result<Resp, (ErrorCode, String)> {
    let reply = c
        .call(wire::request(route, req))
        .await
        .unwrap_or_else(|e| panic!("{route}: {e}"));
    answer(&reply).map(|b| Resp::decode(b).expect("the answer decodes"))
}

/// The next `arena.state` `c` receives that `pick` accepts.
async fn state_where(c: &mut Client, mut pick: impl FnMut(&State) -> bool) -> State {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let p = c
            .next_push(left)
            .await
            .unwrap_or_else(|e| panic!("no matching arena.state: {e}"));
        if let wire::Incoming::State(s) = wire::classify(p) {
            if pick(&s) {
                return s;
            }
        }
    }
}

fn arena_cluster(gateway: usize, game: usize) -> ClusterOptions {
    ClusterOptions {
        gateways: gateway,
        game_servers: game,
        modules: |s| s.module(Arena::default()).module(Probe),
        ..ClusterOptions::default()
    }
}

async fn join(c: &mut Client, room: &str) -> Result<JoinResponse, (ErrorCode, String)> {
    call(c, wire::JOIN, &JoinRequest { room: room.into() }).await
}

async fn step(c: &mut Client, dx: i32, dy: i32) -> MoveResponse {
    call(c, wire::MOVE, &MoveRequest { dx, dy })
        .await
        .expect("move")
}

fn users(s: &State) -> Vec<u64> {
    let mut u: Vec<u64> = s.players.iter().map(|p| p.user_id).collect();
    u.sort_unstable();
    u
}

// ------------------------------------------------------------ route errors

#[tokio::test]
async fn route_errors_through_the_whole_pipeline() {
    let cluster = Cluster::start_with(arena_cluster(1, 1)).await;
    let mut c = cluster.client(0).await;

    // Before login: NOT_AUTHENTICATED, like any request.
    let p = c.call(game("probe.count", Bytes::new())).await.unwrap();
    assert_eq!(answer(&p).unwrap_err().0, ErrorCode::NotAuthenticated);
    let login = c.login(101, "dev").await.unwrap();

    // A handler sees its caller.
    let n: Note = call(&mut c, "probe.count", &Note::default()).await.unwrap();
    assert_eq!(n.s, format!("user 101 session {}", login.session_id));

    // Unknown routes, bad route names.
    for route in [
        "probe.nope",
        "Probe.Count",
        "probe count",
        "",
        &"a".repeat(65),
    ] {
        let p = c.call(game(route, Bytes::new())).await.unwrap();
        assert_eq!(
            answer(&p).unwrap_err().0,
            ErrorCode::UnknownRoute,
            "{route:?}"
        );
    }

    // A payload that is not the route's message: the handler never runs.
    let p = c
        .call(game("probe.count", Bytes::from_static(b"\x0a\x05")))
        .await
        .unwrap();
    assert_eq!(answer(&p).unwrap_err().0, ErrorCode::BadPayload);

    // Refused, with the game's detail.
    let e = call::<_, Note>(
        &mut c,
        "probe.refuse",
        &Note {
            s: "not now".into(),
            n: 0,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e, (ErrorCode::Refused, "not now".to_string()));

    // A panicking handler: INTERNAL, and the session goes on.
    let e = call::<_, Note>(&mut c, "probe.panic", &Note::default())
        .await
        .unwrap_err();
    assert_eq!(e.0, ErrorCode::Internal);
    let n: Note = call(&mut c, "probe.count", &Note::default()).await.unwrap();
    assert_eq!(
        n.n, 2,
        "the bad payload did not count: only the two real calls"
    );

    // A re-sent sequence id: the cached reply, the handler not run again.
    let seq = c.allocate_sequence();
    let packet = ClientPacket {
        sequence_id: seq,
        body: Some(wire::request("probe.count", &Note::default())),
    };
    let first = c.request(&packet).await.unwrap();
    let again = c.request(&packet).await.unwrap();
    assert_eq!(first, again, "the same reply");
    let n = Note::decode(answer(&first).unwrap()).unwrap();
    assert_eq!(n.n, 3);
    let n: Note = call(&mut c, "probe.count", &Note::default()).await.unwrap();
    assert_eq!(n.n, 4, "the re-sent request did not run twice");
    cluster.shutdown().await;
}

// ------------------------------------------------------------ the arena

async fn players_on_two_game_servers_share_one_arena(backend: RedisBackend) {
    let cluster = Cluster::start_with(ClusterOptions {
        redis: backend,
        ..arena_cluster(2, 2)
    })
    .await;
    // Player 1 through gateway 0 on game server 1, player 2 through
    // gateway 1 on game server 2.
    let mut a = cluster.client_on(0, 1, 1).await;
    let mut b = cluster.client_on(1, 2, 2).await;
    let ja = join(&mut a, "shared").await.unwrap();
    assert_eq!(
        (ja.room.as_str(), ja.tick_hz, ja.x, ja.y),
        ("shared", 20, 0, 0)
    );
    join(&mut b, "shared").await.unwrap();
    assert_eq!(step(&mut b, 1, 1).await, MoveResponse { x: 1, y: 1 });
    assert_eq!(step(&mut a, 1, 0).await, MoveResponse { x: 1, y: 0 });

    // Both see both moves, in the same ticks.
    let seen = |s: &State| {
        s.players.len() == 2
            && s.players
                .iter()
                .all(|p| (p.x, p.y) == (1, 0) || (p.x, p.y) == (1, 1))
    };
    let sa = state_where(&mut a, seen).await;
    let sb = state_where(&mut b, |s| s.tick == sa.tick).await;
    assert_eq!(sa.players, sb.players);
    // Ticks rise by exactly 1 at every member.
    let (mut ta, mut tb) = (sa.tick, sb.tick);
    for _ in 0..40 {
        let x = state_where(&mut a, |_| true).await;
        let y = state_where(&mut b, |_| true).await;
        assert_eq!(
            (x.tick, y.tick),
            (ta + 1, tb + 1),
            "no tick skipped or repeated"
        );
        assert_eq!(x.room, "shared");
        (ta, tb) = (x.tick, y.tick);
    }
    assert!(ta.abs_diff(tb) <= 2, "the same ticks at both: {ta} vs {tb}");

    // One authority: the room's lease is one token in Redis.
    let mut redis = cluster.redis_conn();
    let holder: Option<String> = redis::cmd("GET")
        .arg("gm:{room:arena:shared}:lease")
        .query(&mut redis)
        .unwrap();
    assert!(holder.is_some(), "the room holds its lease");
    cluster.shutdown().await;
}

#[tokio::test]
async fn the_17th_player_is_refused() {
    let cluster = Cluster::start_with(arena_cluster(2, 2)).await;
    let mut players = Vec::new();
    for user in 1..=16u64 {
        let mut c = cluster.client((user % 2) as usize).await;
        c.login(300 + user, "dev").await.unwrap();
        join(&mut c, "crowded").await.unwrap();
        players.push(c);
    }
    let mut late = cluster.client(0).await;
    late.login(399, "dev").await.unwrap();
    assert_eq!(
        join(&mut late, "crowded").await.unwrap_err(),
        (ErrorCode::Refused, "room full".to_string())
    );
    // The refused player is not in it: states show the 16.
    let s = state_where(&mut players[0], |s| s.players.len() == 16).await;
    assert!(s.players.iter().all(|p| p.user_id != 399));
    cluster.shutdown().await;
}

#[tokio::test]
async fn leave_logout_a_duplicate_login_and_expiry_remove_a_member() {
    let cluster = Cluster::start_with(ClusterOptions {
        game_server: |c| c.resume_grace_secs = 1,
        ..arena_cluster(2, 2)
    })
    .await;
    let mut watcher = cluster.client(0).await;
    watcher.login(500, "dev").await.unwrap();
    join(&mut watcher, "exits").await.unwrap();
    let mut others = Vec::new();
    for user in 501..=504u64 {
        let mut c = cluster.client((user % 2) as usize).await;
        c.login(user, "dev").await.unwrap();
        join(&mut c, "exits").await.unwrap();
        others.push(c);
    }
    state_where(&mut watcher, |s| users(s) == [500, 501, 502, 503, 504]).await;

    // arena.leave
    let _: LeaveResponse = call(&mut others[0], wire::LEAVE, &LeaveRequest {})
        .await
        .unwrap();
    state_where(&mut watcher, |s| users(s) == [500, 502, 503, 504]).await;
    // logout
    others[1].logout().await.unwrap();
    state_where(&mut watcher, |s| users(s) == [500, 503, 504]).await;
    // a duplicate login kicks the old session
    let mut again = cluster.client(1).await;
    let login = again.login(503, "dev").await.unwrap();
    assert!(login.replaced_existing_session);
    let kicked = others[2].next_push(TIMEOUT).await;
    assert!(
        matches!(kicked, Ok(ServerPacket { body: Some(server_packet::Body::Kicked(ref k)), .. }) if k.reason() == KickReason::DuplicateLogin)
            || others[2].wait_closed(TIMEOUT).await,
        "{kicked:?}"
    );
    state_where(&mut watcher, |s| users(s) == [500, 504]).await;
    // expiry: the client goes away and its resume grace runs out
    drop(others.pop());
    state_where(&mut watcher, |s| users(s) == [500]).await;
    cluster.shutdown().await;
}

async fn a_disconnected_member_resumes_and_gets_states_again_without_joining(
    backend: RedisBackend,
) {
    let cluster = Cluster::start_with(ClusterOptions {
        redis: backend,
        ..arena_cluster(2, 2)
    })
    .await;
    let mut watcher = cluster.client(0).await;
    watcher.login(600, "dev").await.unwrap();
    join(&mut watcher, "back").await.unwrap();
    let mut away = cluster.client(1).await;
    let login = away.login(601, "dev").await.unwrap();
    join(&mut away, "back").await.unwrap();
    step(&mut away, 0, 1).await;
    state_where(&mut watcher, |s| {
        s.players.iter().any(|p| p.user_id == 601 && p.y == 1)
    })
    .await;
    let last_seq = away.last_sequence();
    // The connection drops; the session stays resumable and in the room.
    drop(away);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = state_where(&mut watcher, |_| true).await;
    assert_eq!(users(&s), vec![600, 601], "still a member while resumable");
    // Resumed through the other gateway: states come again, no join.
    let mut back = cluster.client(0).await;
    let snap = back
        .resume(login.session_id, &login.resume_token)
        .await
        .unwrap();
    assert!(snap.last_sequence_id >= last_seq);
    back.set_next_sequence(snap.last_sequence_id + 1);
    let s = state_where(&mut back, |_| true).await;
    assert!(
        s.players
            .iter()
            .any(|p| p.user_id == 601 && (p.x, p.y) == (0, 1)),
        "{s:?}"
    );
    assert_eq!(step(&mut back, 1, 0).await, MoveResponse { x: 1, y: 1 });
    cluster.shutdown().await;
}

// ------------------------------------------------------------ player data

fn gold(value: &[u8], expect: i64) -> Put {
    Put {
        key: "gold".into(),
        value: value.to_vec(),
        expect,
        user: 700,
        version: 0,
    }
}

async fn player_data_compare_and_set_across_game_servers_and_a_restart(backend: RedisBackend) {
    let mut cluster = Cluster::start_with(ClusterOptions {
        redis: backend,
        ..arena_cluster(1, 2)
    })
    .await;
    // Two players on two game servers write player 700's shared key.
    let mut a = cluster.client_on(0, 1, 701).await;
    let mut b = cluster.client_on(0, 2, 702).await;
    let mut last: Put = call(&mut a, "probe.put", &gold(b"0", 0)).await.unwrap();
    for round in 0..10 {
        // Both read the same version, then write on it at once.
        let (pa, pb) = (
            gold(b"a", last.version as i64),
            gold(b"b", last.version as i64),
        );
        let (ra, rb) = tokio::join!(
            call::<_, Put>(&mut a, "probe.put", &pa),
            call::<_, Put>(&mut b, "probe.put", &pb),
        );
        let (won, lost) = match (ra, rb) {
            (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
            other => panic!("round {round}: not exactly one winner: {other:?}"),
        };
        assert_eq!(lost.0, ErrorCode::Refused, "round {round}");
        assert!(
            lost.1.contains(&format!("version {}", won.version)),
            "the loser sees the winner's version: {lost:?}"
        );
        last = won;
    }
    drop((a, b));

    // Every game server restarted on the same Redis: the data is there.
    let redis = cluster.redis_address();
    for g in std::mem::take(&mut cluster.game_servers) {
        g.shutdown.cancel();
        let _ = g.task.await;
    }
    let gs = start_game_server_with(
        gamemesh_integration_tests::game_server_config(9, &redis),
        |s| s.module(Probe),
    )
    .await;
    let gw = gamemesh_integration_tests::start_gateway(
        gamemesh_integration_tests::gateway_config(9, &[gs.p2p_port]),
        1,
    )
    .await;
    let mut c = Client::connect_with_timeout(&gw.addr, TIMEOUT)
        .await
        .unwrap();
    c.login(701, "dev").await.unwrap();
    let got: Put = call(&mut c, "probe.get", &gold(b"", 0)).await.unwrap();
    assert_eq!(got.version, last.version, "the last write survived");
    gw.shutdown.cancel();
    gs.shutdown.cancel();
    let _ = gw.task.await;
    let _ = gs.task.await;
}

gamemesh_integration_tests::on_both_redis!(
    players_on_two_game_servers_share_one_arena,
    player_data_compare_and_set_across_game_servers_and_a_restart,
    a_disconnected_member_resumes_and_gets_states_again_without_joining,
);
