//! `bench --mode arena` against the mock arena: the bots join rooms of K,
//! move every tick, and the report counts what they saw; and when the
//! server skips ticks, the report says so.

mod support;

use std::time::Duration;

use gamemesh_test_client::load::{run_bench, BenchOptions, Mode};
use support::mock_arena::MockArena;

fn arena_opts(addr: &str, conns: usize, room_size: usize) -> BenchOptions {
    BenchOptions {
        mode: Mode::Arena,
        conns,
        room_size,
        duration: Duration::from_secs(2),
        timeout: Duration::from_secs(3),
        ..BenchOptions::new(addr)
    }
}

#[tokio::test]
async fn bots_join_rooms_of_k_move_every_tick_and_see_every_state_in_order() {
    let mock = MockArena::start(20).await;
    let report = run_bench(&arena_opts(&mock.addr, 25, 10)).await.unwrap();
    let arena = report.arena.clone().expect("arena numbers in an arena run");
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!((arena.players, arena.rooms, arena.room_size), (25, 3, 10));
    assert_eq!(arena.tick_hz, 20);
    // 25 bots x 20 states/s x 2 s, give or take a tick at each edge.
    let expected = 25.0 * 20.0 * 2.0;
    assert!(
        (report.msgs as f64) > expected * 0.8 && (report.msgs as f64) < expected * 1.2,
        "{report:?}"
    );
    assert_eq!((arena.ticks_missed, arena.ticks_out_of_order), (0, 0));
    assert_eq!(arena.states_unstamped, 0);
    assert!(
        arena.moves as f64 > expected * 0.8,
        "one move per tick: {report:?}"
    );
    // Sent moves per second: one per bot per tick, bar the ticks a late
    // bot skipped (each one counted).
    let due = 25.0 * 20.0;
    assert!(
        arena.moves_per_s > due * 0.8 && arena.moves_per_s <= due * 1.05,
        "{arena:?}"
    );
    assert!(
        (arena.moves_skipped as f64) < expected * 0.2,
        "skipped moves are the bots' shortfall: {arena:?}"
    );
    assert!(arena.tick_p50_us <= arena.tick_p99_us && arena.tick_p99_us <= arena.tick_max_us);
    assert_eq!(arena.tick_p99_us, report.p99_us);
    assert!(arena.move_p50_us > 0 && arena.move_p50_us <= arena.move_p99_us);

    // The JSON line carries the arena fields beside the usual ones.
    let line = report.to_json_line();
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    for key in [
        "mode",
        "msgs_per_s",
        "p99_us",
        "errors",
        "players",
        "pushes_per_s",
        "tick_p50_us",
        "tick_p99_us",
        "tick_max_us",
        "ticks_missed",
        "ticks_out_of_order",
        "move_p50_us",
        "move_p99_us",
        "moves_per_s",
        "moves_skipped",
    ] {
        assert!(value.get(key).is_some(), "{key} missing from {line}");
    }
    assert_eq!(value["mode"], "arena");
    let back: gamemesh_test_client::load::BenchReport = serde_json::from_str(&line).unwrap();
    assert_eq!(back, report);
    // The bots hung up; their rooms are in the mock until they time out
    // or leave, which the mock does not model: only their number matters.
    assert_eq!(mock.room_count(), 3);
}

#[tokio::test]
async fn skipped_ticks_are_reported_as_missed() {
    let mock = MockArena::start(20).await;
    mock.skip_ticks_every(5);
    let report = run_bench(&arena_opts(&mock.addr, 4, 2)).await.unwrap();
    let arena = report.arena.expect("arena numbers");
    // Every 5th tick is missing: about 2 s x 20/s / 5 = 8 per bot.
    assert!((4 * 5..=4 * 10).contains(&arena.ticks_missed), "{arena:?}");
    assert_eq!(arena.ticks_out_of_order, 0);
    assert_eq!(report.errors, 0);
}

#[tokio::test]
async fn a_server_without_the_arena_fails_the_run_with_a_reason() {
    // The bare echo server sends every request back: the login "works",
    // the join's echo is no JoinResponse, so no bot can join.
    use gamemesh_test_client::echo_server;
    let listener = echo_server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(echo_server::serve(listener, stop.clone()));
    let err = run_bench(&arena_opts(&addr, 3, 2)).await.unwrap_err();
    assert!(
        err.to_string().contains("no arena player could join"),
        "{err}"
    );
    stop.cancel();
    server.await.unwrap();
}
