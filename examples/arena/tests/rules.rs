//! The arena's rules (PROTOCOL.md, "The sample game: arena"), played on
//! the game API's in-memory game server: real routes, real rooms and
//! ticks, no network. Time is tokio's paused clock, so ticks are exact.

use gamemesh_arena::proto::{
    JoinRequest, JoinResponse, LeaveRequest, LeaveResponse, MoveRequest, MoveResponse, Player,
    State,
};
use gamemesh_arena::{rules, Arena, STATE_ROUTE};
use gamemesh_game_server::api::bytes::Bytes;
use gamemesh_game_server::api::testing::{MemoryCluster, TestGame};
use gamemesh_game_server::api::{refuse, App, Caller, GameError, RoomSettings, SessionAt};

fn arena() -> App {
    let mut app = App::new();
    app.add_module(Arena::default());
    app
}

fn game() -> TestGame {
    TestGame::start(arena())
}

async fn join(g: &TestGame, who: Caller, room: &str) -> Result<JoinResponse, GameError> {
    g.call(who, "arena.join", &JoinRequest { room: room.into() })
        .await
}

async fn step(g: &TestGame, who: Caller, dx: i32, dy: i32) -> Result<MoveResponse, GameError> {
    g.call(who, "arena.move", &MoveRequest { dx, dy }).await
}

async fn state(g: &TestGame, user: u64) -> State {
    g.push(user, STATE_ROUTE).await
}

fn positions(s: &State) -> Vec<(u64, i32, i32)> {
    s.players.iter().map(|p| (p.user_id, p.x, p.y)).collect()
}

#[tokio::test(start_paused = true)]
async fn a_new_player_starts_at_the_corner_of_a_room_that_ticks_20_times_a_second() {
    let g = game();
    let a = g.login(1);
    let r = join(&g, a, "r1").await.unwrap();
    assert_eq!(
        r,
        JoinResponse {
            room: "r1".into(),
            tick_hz: 20,
            x: 0,
            y: 0
        }
    );
}

#[tokio::test(start_paused = true)]
async fn moves_are_one_step_clamped_to_the_board() {
    let g = game();
    let a = g.login(1);
    join(&g, a, "r1").await.unwrap();
    assert_eq!(
        step(&g, a, -1, -1).await.unwrap(),
        MoveResponse { x: 0, y: 0 }
    );
    assert_eq!(
        step(&g, a, 1, 0).await.unwrap(),
        MoveResponse { x: 1, y: 0 }
    );
    assert_eq!(
        step(&g, a, 1, 1).await.unwrap(),
        MoveResponse { x: 2, y: 1 }
    );
    for (dx, dy) in [(2, 0), (0, -2), (5, 5), (i32::MIN, 0)] {
        assert_eq!(
            step(&g, a, dx, dy).await,
            Err(refuse("dx and dy must each be -1, 0 or 1")),
            "({dx}, {dy})"
        );
    }
    for _ in 0..150 {
        step(&g, a, 1, 1).await.unwrap();
    }
    let end = rules::BOARD - 1;
    assert_eq!(
        step(&g, a, 1, 1).await.unwrap(),
        MoveResponse { x: end, y: end }
    );
}

#[tokio::test(start_paused = true)]
async fn moving_or_leaving_outside_an_arena() {
    let g = game();
    let a = g.login(1);
    assert_eq!(
        step(&g, a, 1, 0).await,
        Err(refuse("not in an arena; join one first"))
    );
    let left: LeaveResponse = g.call(a, "arena.leave", &LeaveRequest {}).await.unwrap();
    assert_eq!(left, LeaveResponse {});
}

#[tokio::test(start_paused = true)]
async fn room_names_are_checked() {
    let g = game();
    let a = g.login(1);
    for bad in ["", "a.b", "has space", &"x".repeat(33)] {
        let e = join(&g, a, bad).await.unwrap_err();
        assert_eq!(e.code_name(), "REFUSED", "{bad:?}");
    }
    assert!(join(&g, a, &"x".repeat(32)).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_payload_that_is_not_the_route_message_is_bad_payload() {
    let g = game();
    let a = g.login(1);
    // MoveRequest.dx is a sint32 (varint); here field 1 is bytes.
    let e = g
        .call_raw(a, "arena.move", Bytes::from_static(b"\x0a\x01x"))
        .await
        .unwrap_err();
    assert_eq!(e.code_name(), "BAD_PAYLOAD");
}

#[tokio::test(start_paused = true)]
async fn the_17th_player_is_refused() {
    let g = game();
    for user in 1..=16 {
        join(&g, g.login(user), "full").await.unwrap();
    }
    let late = g.login(17);
    assert_eq!(join(&g, late, "full").await, Err(refuse("room full")));
    let s = state(&g, 1).await;
    assert_eq!(s.players.len(), 16);
    assert!(
        join(&g, late, "other").await.is_ok(),
        "other rooms have room"
    );
}

#[tokio::test(start_paused = true)]
async fn every_tick_every_member_gets_every_position_and_the_tick_rises_by_one() {
    let g = game();
    let (a, b) = (g.login(1), g.login(2));
    join(&g, a, "r1").await.unwrap();
    join(&g, b, "r1").await.unwrap();
    step(&g, b, 1, 1).await.unwrap();
    let first = g
        .push_where::<State, _>(1, STATE_ROUTE, |s| {
            s.players.len() == 2 && s.players[1].x == 1
        })
        .await;
    assert_eq!(positions(&first), vec![(1, 0, 0), (2, 1, 1)]);
    assert_eq!(first.room, "r1");
    g.push_where::<State, _>(2, STATE_ROUTE, |s| s.tick == first.tick)
        .await;
    for t in first.tick + 1..first.tick + 40 {
        let (x, y) = (state(&g, 1).await, state(&g, 2).await);
        assert_eq!((x.tick, y.tick), (t, t));
        assert_eq!(x, y, "both see the same state");
    }
}

#[tokio::test(start_paused = true)]
async fn joining_the_room_one_is_in_answers_its_position_and_another_leaves_the_first() {
    let g = game();
    let (a, b) = (g.login(1), g.login(2));
    join(&g, a, "r1").await.unwrap();
    join(&g, b, "r1").await.unwrap();
    step(&g, a, 1, 0).await.unwrap();
    let again = join(&g, a, "r1").await.unwrap();
    assert_eq!((again.x, again.y), (1, 0), "its current position");
    let moved = join(&g, a, "r2").await.unwrap();
    assert_eq!((moved.room.as_str(), moved.x, moved.y), ("r2", 0, 0));
    let s = g
        .push_where::<State, _>(2, STATE_ROUTE, |s| s.players.len() == 1)
        .await;
    assert_eq!(positions(&s), vec![(2, 0, 0)], "a left r1");
    let s = g
        .push_where::<State, _>(1, STATE_ROUTE, |s| s.room == "r2")
        .await;
    assert_eq!(positions(&s), vec![(1, 0, 0)]);
    assert_eq!(
        step(&g, a, 0, 1).await.unwrap(),
        MoveResponse { x: 0, y: 1 }
    );
}

#[tokio::test(start_paused = true)]
async fn leave_logout_a_replacing_login_and_expiry_remove_a_member() {
    let g = game();
    let users: Vec<Caller> = (1..=5).map(|u| g.login(u)).collect();
    for who in &users {
        join(&g, *who, "r1").await.unwrap();
    }
    let members = |s: &State| s.players.iter().map(|p| p.user_id).collect::<Vec<_>>();
    let wait = |expected: Vec<u64>| {
        let g = &g;
        async move {
            g.push_where::<State, _>(5, STATE_ROUTE, |s| members(s) == expected)
                .await
        }
    };
    g.call::<_, LeaveResponse>(users[0], "arena.leave", &LeaveRequest {})
        .await
        .unwrap();
    wait(vec![2, 3, 4, 5]).await;
    // Logout (the core tells the API the session ended).
    g.runtime().session_ended(2, users[1].session_id);
    wait(vec![3, 4, 5]).await;
    // A login elsewhere replaces user 3's session (the core says so too,
    // but the room's own sweep notices anyway).
    g.login(3);
    wait(vec![4, 5]).await;
    // Expiry: the session is simply gone.
    g.parts.sessions.end(4);
    wait(vec![5]).await;
}

#[tokio::test(start_paused = true)]
async fn a_disconnected_member_keeps_its_place_and_gets_states_again_after_resume() {
    let g = game();
    let (a, b) = (g.login(1), g.login(2));
    join(&g, a, "r1").await.unwrap();
    join(&g, b, "r1").await.unwrap();
    step(&g, a, 1, 1).await.unwrap();
    g.parts.sessions.disconnect(1);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    g.parts.pusher.take(1);
    let s = state(&g, 2).await;
    assert_eq!(
        positions(&s),
        vec![(1, 1, 1), (2, 0, 0)],
        "still in, in place"
    );
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(g.parts.pusher.take(1).is_empty(), "nothing while away");
    g.parts.sessions.set(
        1,
        SessionAt {
            session_id: a.session_id,
            node: gamemesh_game_server::api::testing::TEST_NODE,
        },
    );
    let back = state(&g, 1).await;
    assert_eq!(positions(&back), vec![(1, 1, 1), (2, 0, 0)]);
    assert_eq!(
        step(&g, a, 1, 0).await.unwrap(),
        MoveResponse { x: 2, y: 1 }
    );
}

#[tokio::test(start_paused = true)]
async fn an_arena_carries_on_from_its_checkpoint_when_its_game_server_dies() {
    let settings = RoomSettings {
        lease_ttl: std::time::Duration::from_millis(1200),
        restart_every: std::time::Duration::from_millis(50),
        ..RoomSettings::default()
    };
    let c = MemoryCluster::new(settings);
    for node in [1, 2] {
        c.start_node(node, arena());
    }
    let (a, b) = (c.login(1, 1), c.login(2, 2));
    for (who, node) in [(a, 1), (b, 2)] {
        c.call::<_, JoinResponse>(node, who, "arena.join", &JoinRequest { room: "r1".into() })
            .await
            .unwrap();
    }
    for _ in 0..3 {
        c.call::<_, MoveResponse>(2, b, "arena.move", &MoveRequest { dx: 1, dy: 0 })
            .await
            .unwrap();
    }
    // A second later the move is in a checkpoint.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let owner = if c.runtime(1).running_rooms().is_empty() {
        2
    } else {
        1
    };
    let (survivor, watcher, other) = if owner == 1 { (2, 2, a) } else { (1, 1, b) };
    let last = c
        .push_where::<State, _>(watcher, STATE_ROUTE, |_| true)
        .await
        .tick;
    let died = tokio::time::Instant::now();
    c.crash(owner).await;
    c.resume(other, survivor);
    let back = c
        .push_where::<State, _>(watcher, STATE_ROUTE, |s| s.tick > last)
        .await;
    assert!(died.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(
        back.players,
        vec![
            Player {
                user_id: 1,
                x: 0,
                y: 0
            },
            Player {
                user_id: 2,
                x: 3,
                y: 0
            }
        ],
        "the same members at the positions of the checkpoint"
    );
    c.push_where::<State, _>(other.user_id, STATE_ROUTE, |s| s.tick > last)
        .await;
}
