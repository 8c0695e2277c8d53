//! Chat across 2 gateways x 2 game servers: room pushes reach members on
//! both game servers in the order the room accepted them, whispers cross
//! nodes (or say the user is offline), membership follows the session
//! (kick, logout, expiry leave; resume stays), the input limits hold, and
//! a room moves on when the game server holding it stops.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use gamemesh_game_server::api::placement::rendezvous;
use gamemesh_game_server::game_host::placement::candidates;
use gamemesh_game_server::{Config as GsConfig, StoreKind};
use gamemesh_integration_tests::{
    free_port, game_server_config, gateway_config, init_tracing, start_game_server, start_gateway,
    wait_for, wait_relaying, Client, ClientError, Cluster, ClusterOptions, RedisBackend, TIMEOUT,
};
use gamemesh_proto::client::{
    client_packet, server_packet, ChatNoticeKind, ChatSayRequest, ClientPacket, ErrorCode,
    ServerPacket,
};

/// The error code of a refused call.
fn code(r: Result<impl std::fmt::Debug, ClientError>) -> ErrorCode {
    match r {
        Err(ClientError::Server { error, .. }) => {
            ErrorCode::try_from(error.code).expect("a known code")
        }
        other => panic!("expected an ErrorResponse, got {other:?}"),
    }
}

/// The next chat push (message, notice or whisper), skipping nothing else:
/// any other push fails the test.
async fn next_chat(c: &mut Client) -> ServerPacket {
    let p = c.next_push(TIMEOUT).await.expect("a chat push arrives");
    assert!(
        matches!(
            p.body,
            Some(server_packet::Body::ChatMessage(_))
                | Some(server_packet::Body::ChatNotice(_))
                | Some(server_packet::Body::ChatWhispered(_))
        ),
        "not a chat push: {p:?}"
    );
    p
}

/// Reads chat pushes until a notice of `kind` about `user` in `room`.
async fn expect_notice(c: &mut Client, room: &str, kind: ChatNoticeKind, user: u64) -> u64 {
    loop {
        if let Some(server_packet::Body::ChatNotice(n)) = next_chat(c).await.body {
            if n.room == room && n.kind == kind as i32 && n.user_id == user {
                return n.room_seq;
            }
        }
    }
}

/// Reads chat pushes until a message in `room` with `text`.
async fn expect_message(c: &mut Client, room: &str, text: &str) -> (u64, u64) {
    loop {
        if let Some(server_packet::Body::ChatMessage(m)) = next_chat(c).await.body {
            if m.room == room && m.text == text {
                return (m.room_seq, m.from_user_id);
            }
        }
    }
}

/// The names of the rooms `c` is shown.
async fn room_names(c: &mut Client) -> Vec<String> {
    c.chat_list_rooms()
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.name)
        .collect()
}

fn unlimited_chat(c: &mut GsConfig) {
    c.chat_messages_per_sec = 100_000;
    c.chat_burst = 100_000;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_rooms_exist_at_start() {
    let cluster = Cluster::start(2, 2).await;
    let mut c = cluster.client(1).await;
    c.login(1, "dev").await.expect("login");
    assert_eq!(room_names(&mut c).await, ["dev", "game", "general"]);
    cluster.shutdown().await;
}

/// `users`, logged in on gateway 0 and game server 1, gateway 0 and game
/// server 2, gateway 1 and game server 1, gateway 1 and game server 2 (in
/// that order), all joined to `room`. Everyone sees the later joiners
/// arrive; each has seen the last join.
async fn members_everywhere(cluster: &Cluster, users: [u64; 4], room: &str) -> Vec<(u64, Client)> {
    let places = [(0, 1), (0, 2), (1, 1), (1, 2)];
    let mut clients = Vec::new();
    for (user, (gateway, node)) in users.into_iter().zip(places) {
        clients.push((user, cluster.client_on(gateway, node, user).await));
    }
    for (_, c) in clients.iter_mut() {
        c.chat_join(room).await.expect("join");
    }
    for (_, c) in clients.iter_mut() {
        expect_notice(c, room, ChatNoticeKind::Joined, users[3]).await;
    }
    clients
}

async fn a_room_message_reaches_members_on_both_game_servers_and_gateways(backend: RedisBackend) {
    let cluster = Cluster::start_on(backend, 2, 2).await;
    let mut clients = members_everywhere(&cluster, [11, 12, 13, 14], "lobby").await;
    let seq = clients[0].1.chat_say("lobby", "hello").await.expect("say");
    for (user, c) in clients.iter_mut() {
        let (got_seq, from) = expect_message(c, "lobby", "hello").await;
        assert_eq!((got_seq, from), (seq, 11), "user {user}");
    }
    // Rooms list their members.
    let lobby = clients[3]
        .1
        .chat_list_rooms()
        .await
        .expect("list")
        .into_iter()
        .find(|r| r.name == "lobby")
        .expect("lobby exists");
    assert_eq!(lobby.member_count, 4);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_sees_the_room_order_under_concurrent_senders() {
    const EACH: usize = 25;
    let cluster = Cluster::start_with(ClusterOptions {
        gateways: 2,
        game_servers: 2,
        game_server: unlimited_chat,
        ..ClusterOptions::default()
    })
    .await;
    let clients = members_everywhere(&cluster, [21, 22, 23, 24], "race").await;
    // Every client sends EACH messages while the others do, then reads
    // what the room pushed until it has all of them.
    let total = EACH * clients.len();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|(user, mut c)| {
            tokio::spawn(async move {
                for i in 0..EACH {
                    c.chat_say("race", &format!("{user}:{i}"))
                        .await
                        .expect("say");
                }
                let mut seen = Vec::new();
                while seen.len() < total {
                    if let Some(server_packet::Body::ChatMessage(m)) = next_chat(&mut c).await.body
                    {
                        seen.push((m.room_seq, m.from_user_id, m.text));
                    }
                }
                (user, seen)
            })
        })
        .collect();
    let mut views = HashMap::new();
    for t in tasks {
        let (user, seen) = t.await.expect("client task");
        views.insert(user, seen);
    }
    let reference = &views[&21];
    for (user, seen) in &views {
        assert_eq!(seen, reference, "user {user} saw another order");
    }
    assert!(
        reference.windows(2).all(|w| w[0].0 < w[1].0),
        "room_seq rises with every push"
    );
    // Each sender's messages keep the order it sent them in.
    for sender in [21u64, 22, 23, 24] {
        let mine: Vec<&String> = reference
            .iter()
            .filter(|(_, from, _)| *from == sender)
            .map(|(_, _, t)| t)
            .collect();
        let expected: Vec<String> = (0..EACH).map(|i| format!("{sender}:{i}")).collect();
        assert_eq!(mine, expected.iter().collect::<Vec<_>>());
    }
    cluster.shutdown().await;
}

async fn whispers_reach_users_on_other_nodes_and_offline_users_are_an_error(backend: RedisBackend) {
    let cluster = Cluster::start_on(backend, 2, 2).await;
    let mut a = cluster.client_on(0, 1, 31).await;
    let mut b = cluster.client_on(1, 2, 32).await;

    a.chat_whisper(32, "psst").await.expect("whisper");
    match next_chat(&mut b).await.body {
        Some(server_packet::Body::ChatWhispered(w)) => {
            assert_eq!((w.from_user_id, w.text.as_str()), (31, "psst"))
        }
        other => panic!("expected a whisper, got {other:?}"),
    }
    b.chat_whisper(31, "hi back").await.expect("whisper back");
    match next_chat(&mut a).await.body {
        Some(server_packet::Body::ChatWhispered(w)) => {
            assert_eq!((w.from_user_id, w.text.as_str()), (32, "hi back"))
        }
        other => panic!("expected a whisper, got {other:?}"),
    }

    // Never logged in.
    assert_eq!(
        code(a.chat_whisper(39, "anyone?").await),
        ErrorCode::UserOffline
    );
    // Logged out.
    b.logout().await.expect("logout");
    assert_eq!(
        code(a.chat_whisper(32, "gone?").await),
        ErrorCode::UserOffline
    );
    cluster.shutdown().await;
}

async fn membership_follows_the_session_through_resume_kick_and_logout(backend: RedisBackend) {
    let cluster = Cluster::start_on(backend, 2, 2).await;
    let mut watcher = cluster.client_on(0, 1, 40).await;
    let mut a = cluster.client_on(0, 2, 41).await;
    let mut b = cluster.client_on(1, 1, 42).await;
    watcher.chat_join("club").await.expect("join");
    let a_login = {
        // `a` needs its resume token: log it in afresh on its socket.
        a.logout().await.expect("logout");
        a.login(41, "dev").await.expect("login")
    };
    a.chat_join("club").await.expect("join");
    b.chat_join("club").await.expect("join");
    expect_notice(&mut watcher, "club", ChatNoticeKind::Joined, 42).await;

    // Resume: a's connection drops and it resumes through the other
    // gateway; it is still in the room.
    drop(a);
    let mut a = cluster.client(1).await;
    let snap = a
        .resume(a_login.session_id, &a_login.resume_token)
        .await
        .expect("resume");
    a.set_next_sequence(snap.last_sequence_id + 1);
    let seq = watcher.chat_say("club", "still there?").await.expect("say");
    assert_eq!(expect_message(&mut a, "club", "still there?").await.0, seq);
    a.chat_say("club", "yes")
        .await
        .expect("a resumed member may speak");

    // Kick: user 42 logs in again elsewhere; the old session leaves.
    let mut b2 = cluster.client_on(0, 2, 42).await;
    assert!(b.wait_closed(TIMEOUT).await, "the old socket is kicked");
    expect_notice(&mut watcher, "club", ChatNoticeKind::Left, 42).await;
    assert_eq!(code(b2.chat_say("club", "me?").await), ErrorCode::NotInRoom);

    // Logout: the session leaves.
    a.logout().await.expect("logout");
    expect_notice(&mut watcher, "club", ChatNoticeKind::Left, 41).await;
    let club = watcher
        .chat_list_rooms()
        .await
        .expect("list")
        .into_iter()
        .find(|r| r.name == "club")
        .expect("club exists");
    assert_eq!(club.member_count, 1);
    cluster.shutdown().await;
}

/// The resume grace of [`an_expired_session_leaves_its_rooms`], in seconds.
const SHORT_GRACE_SECS: u64 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_leaves_its_rooms() {
    let cluster = Cluster::start_with(ClusterOptions {
        gateways: 2,
        game_servers: 2,
        game_server: |c| {
            c.resume_grace_secs = SHORT_GRACE_SECS;
            c.chat_sweep_ms = 200;
        },
        ..ClusterOptions::default()
    })
    .await;
    let mut watcher = cluster.client_on(0, 1, 50).await;
    let mut gone = cluster.client_on(1, 2, 51).await;
    watcher.chat_join("dev").await.expect("join");
    gone.chat_join("dev").await.expect("join");
    expect_notice(&mut watcher, "dev", ChatNoticeKind::Joined, 51).await;
    // Disconnected, never resumed: after the resume grace the record
    // expires and the room's sweep drops the member. Not before: during
    // the grace the session can still be resumed, with its rooms.
    let dropped = std::time::Instant::now();
    drop(gone);
    // The client's close comes before the server saves the session as
    // disconnected, so this is at most the time the record really had.
    expect_notice(&mut watcher, "dev", ChatNoticeKind::Left, 51).await;
    let waited = dropped.elapsed();
    assert!(
        waited >= std::time::Duration::from_secs(SHORT_GRACE_SECS),
        "the member left {waited:?} after disconnecting, before the {SHORT_GRACE_SECS} s resume grace ran out"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_long_texts_strangers_and_floods_are_refused() {
    let cluster = Cluster::start_with(ClusterOptions {
        gateways: 1,
        game_servers: 2,
        game_server: |c| {
            c.chat_messages_per_sec = 1;
            c.chat_burst = 3;
        },
        ..ClusterOptions::default()
    })
    .await;
    let mut c = cluster.client(0).await;
    c.login(60, "dev").await.expect("login");
    assert_eq!(
        code(c.chat_join("no spaces").await),
        ErrorCode::InvalidRoomName
    );
    assert_eq!(
        code(c.chat_join(&"r".repeat(33)).await),
        ErrorCode::InvalidRoomName
    );
    assert_eq!(code(c.chat_join("").await), ErrorCode::InvalidRoomName);
    assert_eq!(
        code(c.chat_say("general", "not joined").await),
        ErrorCode::NotInRoom
    );
    assert_eq!(code(c.chat_leave("general").await), ErrorCode::NotInRoom);
    c.chat_join(&"r".repeat(32))
        .await
        .expect("32 bytes is fine");
    c.chat_join("general").await.expect("join");
    assert_eq!(
        code(c.chat_say("general", &"x".repeat(513)).await),
        ErrorCode::InvalidText
    );
    assert_eq!(
        code(c.chat_say("general", "").await),
        ErrorCode::InvalidText
    );
    // A burst of 3, one of them taken by the say refused with NOT_IN_ROOM
    // (invalid input takes none): five more sends at once are too many.
    let mut limited = false;
    for i in 0..5 {
        match c.chat_say("general", &format!("flood {i}")).await {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(code(Err::<(), _>(e)), ErrorCode::RateLimited);
                limited = true;
            }
        }
    }
    assert!(limited, "five sends at once exceed a burst of three");
    // Unauthenticated sockets get nothing.
    let mut anon = cluster.client(0).await;
    assert_eq!(
        code(anon.chat_list_rooms().await),
        ErrorCode::NotAuthenticated
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_carries_on_when_the_game_server_holding_it_stops() {
    let cluster = Cluster::start(1, 2).await;
    // A room held by game server 1, with both members on game server 2.
    let room = (0..100)
        .map(|i| format!("moving-{i}"))
        .find(|r| rendezvous(&format!("chat:{r}"), [1, 2]) == Some(1))
        .expect("some room hashes to node 1");
    let mut a = cluster.client_on(0, 2, 71).await;
    let mut b = cluster.client_on(0, 2, 72).await;
    a.chat_join(&room).await.expect("join");
    b.chat_join(&room).await.expect("join");
    expect_notice(&mut a, &room, ChatNoticeKind::Joined, 72).await;
    let before = a.chat_say(&room, "before").await.expect("say");
    assert_eq!(expect_message(&mut b, &room, "before").await.0, before);

    // Game server 1 stops: it drains, so game server 2 takes the room,
    // loads its members from Redis and continues its sequence.
    cluster.game_servers[0].shutdown.cancel();
    let gs2 = cluster.game_servers[1].state.clone();
    wait_for("game server 2 holds the room", TIMEOUT, || {
        rendezvous(&format!("chat:{room}"), candidates(&gs2)) == Some(2)
    })
    .await;
    let after = a.chat_say(&room, "after").await.expect("say");
    assert_eq!(after, before + 1, "the sequence carries on");
    assert_eq!(expect_message(&mut b, &room, "after").await.0, after);
    cluster.shutdown().await;
}

/// The `ErrorResponse` of `reply`, or a failure naming what came instead.
fn error_of(reply: &ServerPacket) -> (ErrorCode, String) {
    match &reply.body {
        Some(server_packet::Body::Error(e)) => (
            ErrorCode::try_from(e.code).expect("a known code"),
            e.detail.clone(),
        ),
        other => panic!("expected an ErrorResponse, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_say_resent_after_unavailable_posts_at_most_once() {
    let cluster = Cluster::start_with(ClusterOptions {
        gateways: 1,
        game_servers: 2,
        game_server: unlimited_chat,
        ..ClusterOptions::default()
    })
    .await;
    // A room held by game server 2; the sayer's session is on game server
    // 1, so its say travels to the room over the mesh.
    let room = (0..100)
        .map(|i| format!("once-{i}"))
        .find(|r| rendezvous(&format!("chat:{r}"), [1, 2]) == Some(2))
        .expect("some room hashes to node 2");
    let mut watcher = cluster.client_on(0, 2, 91).await;
    let mut sayer = cluster.client_on(0, 1, 92).await;
    watcher.chat_join(&room).await.expect("join");
    sayer.chat_join(&room).await.expect("join");
    expect_notice(&mut watcher, &room, ChatNoticeKind::Joined, 92).await;

    // Game server 2 posts the say and its answer is lost: game server 1
    // waits out the room call timeout (2 s) and answers UNAVAILABLE.
    let faults = &cluster.game_servers[1].state.faults;
    faults.drop_room_replies.store(true, Ordering::Release);
    let say = ClientPacket {
        sequence_id: sayer.allocate_sequence(),
        body: Some(client_packet::Body::ChatSay(ChatSayRequest {
            room: room.clone(),
            text: "once".into(),
        })),
    };
    let first = sayer.request(&say).await.expect("a reply");
    let (code, detail) = error_of(&first);
    assert_eq!(code, ErrorCode::Unavailable, "{detail}");
    assert!(
        matches!(&first.body, Some(server_packet::Body::Error(e)) if e.outcome_unknown),
        "the client is told the say may have happened: {first:?}"
    );
    let (posted, from) = expect_message(&mut watcher, &room, "once").await;
    assert_eq!(from, 92, "the first attempt did post");
    faults.drop_room_replies.store(false, Ordering::Release);

    // The re-send, same id, now that the room answers again: the first
    // answer comes back and nothing runs.
    let again = sayer.request(&say).await.expect("a reply");
    assert_eq!(again, first, "the re-send replays the first answer");

    // The next say is the room's next number: nothing was accepted in
    // between, and the watcher sees "once" a single time.
    let next = sayer.chat_say(&room, "next").await.expect("say");
    assert_eq!(next, posted + 1, "the room accepted nothing in between");
    loop {
        match next_chat(&mut watcher).await.body {
            Some(server_packet::Body::ChatMessage(m)) if m.text == "next" => break,
            Some(server_packet::Body::ChatMessage(m)) => {
                panic!("a second message before \"next\": {m:?}")
            }
            _ => {}
        }
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_works_on_a_single_game_server_without_redis() {
    // No Redis anywhere: the address the game server is given has nothing
    // listening, so anything that still needed Redis would fail here.
    init_tracing();
    let mut config = game_server_config(1, &format!("127.0.0.1:{}", free_port()));
    config.session_store = StoreKind::Memory;
    let game_server = start_game_server(config).await;
    let gateway = start_gateway(gateway_config(1, &[game_server.p2p_port]), 1).await;
    let client = || async {
        Client::connect_with_timeout(&gateway.addr, TIMEOUT)
            .await
            .expect("client connects")
    };
    wait_relaying(&gateway.addr).await;
    let mut a = client().await;
    let mut b = client().await;
    a.login(81, "dev").await.expect("login");
    b.login(82, "dev").await.expect("login");
    assert_eq!(room_names(&mut a).await, ["dev", "game", "general"]);
    a.chat_join("game").await.expect("join");
    b.chat_join("game").await.expect("join");
    let seq = b.chat_say("game", "gg").await.expect("say");
    assert_eq!(expect_message(&mut a, "game", "gg").await, (seq, 82));
    b.chat_whisper(81, "wp").await.expect("whisper");
    assert!(matches!(
        next_chat(&mut a).await.body,
        Some(server_packet::Body::ChatWhispered(w)) if w.text == "wp"
    ));
    b.logout().await.expect("logout");
    expect_notice(&mut a, "game", ChatNoticeKind::Left, 82).await;
    gateway.shutdown.cancel();
    let _ = gateway.task.await;
    game_server.shutdown.cancel();
    let _ = game_server.task.await;
}

gamemesh_integration_tests::on_both_redis!(
    a_room_message_reaches_members_on_both_game_servers_and_gateways,
    whispers_reach_users_on_other_nodes_and_offline_users_are_an_error,
    membership_follows_the_session_through_resume_kick_and_logout,
);
