//! `test-client arena` in a real terminal (tmux) against the mock arena:
//! the board comes up, arrow keys move the player, another player shows
//! with its label, a dropped connection is resumed, and `q` leaves the
//! room. The same walk against the real servers is `arena_e2e.rs`.

mod support;

use std::time::Duration;

use gamemesh_proto::client::KickReason;
use support::mock_arena::MockArena;
use support::other_player;
use support::tmux::{arena_command, Tmux, EXITED};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn arrows_move_the_player_others_show_a_drop_is_resumed_and_q_leaves() {
    let mock = MockArena::start(20).await;
    let tmux = Tmux::start("arena-play", &arena_command(&mock.addr, "r1", 7), 120, 40);

    // The board and the status line come up, ticking.
    tmux.wait_for_text("@ you 7 (0,0)", WAIT).await;
    tmux.wait_for("the tick to advance", WAIT, |s| {
        s.contains("room r1 | tick ") && !s.contains("room r1 | tick - ")
    })
    .await;

    // Arrow keys: two right, one down.
    tmux.send_keys(&["Right", "Right", "Down"]);
    let screen = tmux.wait_for_text("@ you 7 (2,1)", WAIT).await;
    assert!(screen.contains("move rtt"), "{screen}");
    assert_eq!(mock.players("r1"), vec![(7, (2, 1))]);

    // Another player: labelled on the board and in the legend.
    let _other = other_player(&mock.addr, "r1", 8, 3).await;
    let screen = tmux.wait_for_text("A user 8 (3,0)", WAIT).await;
    assert!(screen.contains("players 2"), "{screen}");
    assert!(screen.contains("·@·"), "the player on the board:\n{screen}");

    // A dropped connection is resumed; the states come back.
    mock.drop_connections();
    tmux.wait_for_text("resumed after: connection lost", WAIT)
        .await;
    tmux.send_keys(&["Up"]);
    tmux.wait_for_text("@ you 7 (2,0)", WAIT).await;

    // q leaves the room and exits 0 with a last line.
    tmux.send_keys(&["q"]);
    let screen = tmux.wait_for_text(EXITED, WAIT).await;
    assert!(screen.contains("left arena r1 at (2, 0)"), "{screen}");
    assert!(screen.contains("exit status 0"), "{screen}");
    assert_eq!(mock.players("r1"), vec![(8, (3, 0))], "7 left the room");
}

#[tokio::test]
async fn a_duplicate_login_kick_ends_the_game_with_its_reason() {
    let mock = MockArena::start(20).await;
    let tmux = Tmux::start("arena-kick", &arena_command(&mock.addr, "k", 7), 120, 30);
    tmux.wait_for_text("@ you 7 (0,0)", WAIT).await;
    mock.kick(7, KickReason::DuplicateLogin);
    let screen = tmux.wait_for_text(EXITED, WAIT).await;
    assert!(
        screen.contains("kicked (DUPLICATE_LOGIN); the game is over"),
        "{screen}"
    );
    assert!(screen.contains("exit status 1"), "{screen}");
}

#[tokio::test]
async fn a_come_back_kick_is_resumed_and_q_works_while_the_server_is_gone() {
    let mock = MockArena::start(20).await;
    let tmux = Tmux::start("arena-gone", &arena_command(&mock.addr, "g", 7), 120, 30);
    tmux.wait_for_text("@ you 7 (0,0)", WAIT).await;
    // SERVER_SHUTDOWN says "resume": the client comes back on its own.
    mock.kick(7, KickReason::ServerShutdown);
    tmux.wait_for_text("resumed after: kicked (SERVER_SHUTDOWN)", WAIT)
        .await;
    // Now the server goes away for good: the client keeps trying, and the
    // player can still quit.
    drop(mock);
    tmux.wait_for_text("resuming (attempt 2)", WAIT).await;
    tmux.send_keys(&["q"]);
    let screen = tmux.wait_for_text(EXITED, WAIT).await;
    assert!(screen.contains("quit while resuming"), "{screen}");
    assert!(screen.contains("exit status 1"), "{screen}");
}

#[tokio::test]
async fn a_refused_join_is_reported_plainly_before_the_terminal_is_taken() {
    let mock = MockArena::start(20).await;
    let mut players = Vec::new();
    for user in 100..116 {
        players.push(other_player(&mock.addr, "full", user, 0).await);
    }
    let tmux = Tmux::start("arena-full", &arena_command(&mock.addr, "full", 7), 120, 30);
    let screen = tmux.wait_for_text(EXITED, WAIT).await;
    assert!(
        screen.contains("joining arena full: REFUSED (room full)"),
        "{screen}"
    );
    assert!(screen.contains("exit status 1"), "{screen}");
}
