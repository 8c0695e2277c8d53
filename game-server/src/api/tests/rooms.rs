//! Rooms on one game server: joins, caps, ticks, checkpoints, members
//! whose sessions end, callbacks that fail. Time is tokio's paused clock,
//! so ticks are exact.

use std::time::Duration;

use bytes::Bytes;
use prost::Message;

use super::*;
use crate::api::room::wire::Checkpoint;
use crate::api::room::RoomKey;
use crate::api::testing::{TestGame, TEST_NODE};
use crate::api::{Caller, SessionAt};

fn game(probe: Probe) -> TestGame {
    TestGame::start_with(app(probe), fast())
}

async fn join(g: &TestGame, who: Caller, room: &str) -> Result<Tock, GameError> {
    g.call(who, "probe.join", &text(room)).await
}

async fn add(g: &TestGame, who: Caller, n: i64) -> Result<Num, GameError> {
    g.call(who, "probe.add", &Num { n }).await
}

/// The next tock `user` receives.
async fn tock(g: &TestGame, user: u64) -> Tock {
    g.push(user, "probe.tock").await
}

/// The ticks of the tocks pushed to `user` since the last look, taken.
fn ticks_pushed(g: &TestGame, user: u64) -> Vec<u64> {
    g.parts
        .pusher
        .take(user)
        .iter()
        .map(|p| p.decode::<Tock>().unwrap().tick)
        .collect()
}

async fn checkpoint(g: &TestGame, room: &str) -> Option<Checkpoint> {
    use crate::api::RoomStore;
    let key = RoomKey::new("counter", room).unwrap();
    let bytes = g.parts.rooms.load(&key).await.unwrap()?;
    Some(Checkpoint::decode(bytes).unwrap())
}

#[tokio::test(start_paused = true)]
async fn every_member_gets_every_tick_in_order() {
    let g = game(Probe::default());
    let (a, b) = (g.login(1), g.login(2));
    let first = join(&g, a, "r").await.unwrap();
    assert_eq!(
        (first.room.as_str(), first.members.as_slice()),
        ("r", &[1][..])
    );
    join(&g, b, "r").await.unwrap();
    let start = tock(&g, 1).await.tick;
    g.push_where::<Tock, _>(2, "probe.tock", |t| t.tick == start)
        .await;
    for expected in start + 1..start + 30 {
        let (x, y) = (tock(&g, 1).await, tock(&g, 2).await);
        assert_eq!(
            (x.tick, y.tick),
            (expected, expected),
            "ticks rise by exactly 1"
        );
        assert_eq!(x.members, vec![1, 2]);
    }
}

#[tokio::test(start_paused = true)]
async fn ticks_keep_their_schedule() {
    let g = game(Probe::default());
    let a = g.login(1);
    join(&g, a, "r").await.unwrap();
    let t0 = tock(&g, 1).await.tick;
    let started = tokio::time::Instant::now();
    let mut last = t0;
    while last < t0 + 100 {
        last = tock(&g, 1).await.tick;
    }
    // 100 ticks at 20 a second: 5 s, not a millisecond more (no drift).
    assert_eq!(started.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_room_is_full_at_its_cap() {
    let g = game(Probe {
        max_members: 2,
        ..Probe::default()
    });
    let (a, b, c) = (g.login(1), g.login(2), g.login(3));
    join(&g, a, "r").await.unwrap();
    join(&g, b, "r").await.unwrap();
    assert_eq!(join(&g, c, "r").await, Err(refuse("room full")));
    // Joining again is no new member: never full.
    assert!(join(&g, b, "r").await.unwrap().again);
    // A leave makes room.
    let left: Num = g.call(a, "probe.leave", &text("")).await.unwrap();
    assert_eq!(left.n, 1);
    assert_eq!(join(&g, c, "r").await.unwrap().members, vec![2, 3]);
}

#[tokio::test(start_paused = true)]
async fn joining_the_room_one_is_in_changes_nothing() {
    let g = game(Probe::default());
    let a = g.login(1);
    assert!(!join(&g, a, "r").await.unwrap().again);
    add(&g, a, 5).await.unwrap();
    let again = join(&g, a, "r").await.unwrap();
    assert!(again.again);
    assert_eq!((again.total, again.members), (5, vec![1]));
}

#[tokio::test(start_paused = true)]
async fn a_session_is_in_one_room_of_a_kind_and_empty_rooms_close() {
    use crate::api::RoomStore;
    let g = game(Probe::default());
    let (a, b) = (g.login(1), g.login(2));
    join(&g, a, "x").await.unwrap();
    join(&g, b, "x").await.unwrap();
    join(&g, a, "y").await.unwrap();
    let t = g
        .push_where::<Tock, _>(2, "probe.tock", |t| t.members == [2])
        .await;
    assert_eq!(t.room, "x", "a left x when it joined y");
    assert_eq!(add(&g, a, 2).await.unwrap().n, 2, "a's adds go to y");
    // b leaves x: empty, forgotten.
    g.call::<_, Num>(b, "probe.leave", &text("")).await.unwrap();
    assert_eq!(g.parts.rooms.rooms("counter").await.unwrap(), vec!["y"]);
    assert!(checkpoint(&g, "x").await.is_none());
}

#[tokio::test(start_paused = true)]
async fn the_room_refuses_and_requests_need_membership() {
    let g = game(Probe::default());
    let a = g.login(1);
    assert_eq!(add(&g, a, 1).await, Err(refuse("not in a counter room")));
    assert_eq!(
        join(&g, a, "nope").await,
        Err(refuse("rooms starting with no cannot exist"))
    );
    assert_eq!(
        join(&g, a, "bad:name").await.unwrap_err().code_name(),
        "REFUSED"
    );
    join(&g, a, "r").await.unwrap();
    assert_eq!(add(&g, a, 0).await, Err(refuse("zero adds nothing")));
    assert_eq!(add(&g, a, 4).await.unwrap().n, 4);
}

#[tokio::test(start_paused = true)]
async fn joins_are_saved_before_they_are_answered_and_ticks_every_n() {
    let g = game(Probe::default());
    let (a, b) = (g.login(1), g.login(2));
    join(&g, a, "r").await.unwrap();
    let cp = checkpoint(&g, "r").await.expect("saved at the join");
    assert_eq!(cp.members.len(), 1);
    join(&g, b, "r").await.unwrap();
    assert_eq!(checkpoint(&g, "r").await.unwrap().members.len(), 2);
    add(&g, a, 7).await.unwrap();
    // At most 10 ticks later the total is saved too.
    let t = tock(&g, 1).await.tick;
    g.push_where::<Tock, _>(1, "probe.tock", |x| x.tick == t + 10)
        .await;
    let cp = checkpoint(&g, "r").await.unwrap();
    assert!(cp.tick >= t && cp.tick <= t + 10, "{} vs {t}", cp.tick);
    assert_eq!(Num::decode(cp.state).unwrap().n, 7);
    assert_eq!(cp.tick_bound, 10);
}

#[tokio::test(start_paused = true)]
async fn a_room_without_ticks_still_saves_and_renews_its_lease() {
    use crate::api::RoomStore;
    let g = game(Probe {
        tick_hz: 0,
        ..Probe::default()
    });
    let a = g.login(1);
    join(&g, a, "quiet").await.unwrap();
    add(&g, a, 3).await.unwrap();
    let key = RoomKey::new("counter", "quiet").unwrap();
    let holder = g.parts.rooms.holder(&key).await.unwrap();
    for _ in 0..10 {
        tokio::time::sleep(fast().lease_ttl).await;
        assert_eq!(
            g.parts.rooms.holder(&key).await.unwrap(),
            holder,
            "lease kept"
        );
    }
    assert_eq!(
        Num::decode(checkpoint(&g, "quiet").await.unwrap().state)
            .unwrap()
            .n,
        3
    );
    assert!(g.parts.pusher.pushes(1).is_empty(), "no ticks, no tocks");
}

#[tokio::test(start_paused = true)]
async fn while_checkpoints_fail_ticks_wait_at_the_bound() {
    let g = game(Probe::default());
    let a = g.login(1);
    join(&g, a, "r").await.unwrap();
    tock(&g, 1).await;
    g.parts.rooms.set_down(true);
    let saved = checkpoint_tick_while_down(&g).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = ticks_pushed(&g, 1);
    let max = *seen.iter().max().unwrap();
    assert!(max <= saved + 10, "ran to {max}, past {saved} + 10");
    assert!(max >= saved + 9, "ran to {max}: it may run up to the bound");
    g.parts.rooms.set_down(false);
    let next = tock(&g, 1).await.tick;
    assert_eq!(next, max + 1, "it carries on where it stopped");
}

/// The tick of the last checkpoint saved before the store went down (read
/// from the pushes: the store answers nothing now).
async fn checkpoint_tick_while_down(g: &TestGame) -> u64 {
    g.parts.rooms.set_down(false);
    let cp = checkpoint(g, "r").await.unwrap().tick;
    g.parts.rooms.set_down(true);
    cp
}

#[tokio::test(start_paused = true)]
async fn a_panicking_room_restarts_from_its_checkpoint() {
    let g = game(Probe::default());
    let a = g.login(1);
    join(&g, a, "r").await.unwrap();
    add(&g, a, 5).await.unwrap();
    let t = tock(&g, 1).await.tick;
    g.push_where::<Tock, _>(1, "probe.tock", |x| x.tick >= t + 10)
        .await;
    let e = add(&g, a, 13).await.unwrap_err();
    assert_eq!(e.code_name(), "INTERNAL");
    // Restarted from the checkpoint (total 5), the member still in it.
    assert_eq!(add(&g, a, 1).await.unwrap().n, 6);
    let after = g
        .push_where::<Tock, _>(1, "probe.tock", |x| x.total == 6)
        .await;
    assert!(after.tick > t + 10, "ticks continue above the old ones");
}

#[tokio::test(start_paused = true)]
async fn the_room_can_remove_a_member() {
    let g = game(Probe::default());
    let (a, b) = (g.login(1), g.login(2));
    join(&g, a, "r").await.unwrap();
    join(&g, b, "r").await.unwrap();
    add(&g, a, 99).await.unwrap();
    g.push_where::<Tock, _>(2, "probe.tock", |t| t.members == [2])
        .await;
    assert_eq!(add(&g, a, 1).await, Err(refuse("not in room r")));
    assert_eq!(add(&g, a, 1).await, Err(refuse("not in a counter room")));
}

#[tokio::test(start_paused = true)]
async fn a_member_whose_session_ends_leaves() {
    let g = game(Probe::default());
    let (a, b, c) = (g.login(1), g.login(2), g.login(3));
    for who in [a, b, c] {
        join(&g, who, "r").await.unwrap();
    }
    // Logout or a replacing login: the core says so.
    g.runtime().session_ended(a.user_id, a.session_id);
    g.push_where::<Tock, _>(3, "probe.tock", |t| t.members == [2, 3])
        .await;
    // Expiry: nobody says so; the room's sweep finds out.
    g.parts.sessions.end(b.user_id);
    g.push_where::<Tock, _>(3, "probe.tock", |t| t.members == [3])
        .await;
    // A new login of c replaces its session: the old one is no member,
    // and the emptied room is forgotten.
    let _c2 = g.login(3);
    wait_until(|| async {
        use crate::api::RoomStore;
        g.parts.rooms.rooms("counter").await.unwrap().is_empty()
    })
    .await;
    assert_eq!(
        g.game().session_rooms().len(),
        2,
        "the sessions that did not end here are still remembered"
    );
    g.runtime().session_released(b.session_id);
    g.runtime().session_released(c.session_id);
    assert_eq!(g.game().session_rooms().len(), 0);
}

/// Polls `f` on the paused clock until it holds (fails after 10 s).
async fn wait_until<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_disconnected_member_stays_and_gets_pushes_again_after_resume() {
    let g = game(Probe::default());
    let (a, b) = (g.login(1), g.login(2));
    join(&g, a, "r").await.unwrap();
    join(&g, b, "r").await.unwrap();
    g.parts.sessions.disconnect(a.user_id);
    tokio::time::sleep(Duration::from_secs(1)).await;
    g.parts.pusher.take(1);
    let t = tock(&g, 2).await;
    assert_eq!(t.members, vec![1, 2], "still a member while resumable");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(g.parts.pusher.take(1).is_empty(), "no pushes while away");
    // Resumed (here): pushes again, without joining.
    g.parts.sessions.set(
        a.user_id,
        SessionAt {
            session_id: a.session_id,
            node: TEST_NODE,
        },
    );
    g.runtime()
        .session_moved(a.user_id, a.session_id, TEST_NODE);
    let back = tock(&g, 1).await;
    assert_eq!(back.members, vec![1, 2]);
    assert_eq!(add(&g, a, 2).await.unwrap().n, 2);
}

#[tokio::test(start_paused = true)]
async fn game_code_pushes_to_a_user_a_room_and_everyone() {
    let g = game(Probe {
        tick_hz: 0,
        ..Probe::default()
    });
    let (a, b) = (g.login(1), g.login(2));
    let _c = g.login(3);
    join(&g, a, "r").await.unwrap();
    join(&g, b, "r").await.unwrap();
    let push = g.game().push();
    assert!(push.to_user(3, "probe.note", &text("you")).await.unwrap());
    assert!(!push
        .to_user(9, "probe.note", &text("nobody"))
        .await
        .unwrap());
    push.to_room::<Counter, _>("r", "probe.note", &text("room"))
        .await
        .unwrap();
    push.to_room::<Counter, _>("empty", "probe.note", &text("none"))
        .await
        .unwrap();
    push.to_everyone("probe.note", &text("all")).unwrap();
    let got = |user| -> Vec<String> {
        g.parts
            .pusher
            .take(user)
            .iter()
            .map(|p| p.decode::<Text>().unwrap().s)
            .collect()
    };
    assert_eq!(got(1), ["room", "all"]);
    assert_eq!(got(2), ["room", "all"]);
    assert_eq!(got(3), ["you", "all"]);
    assert_eq!(
        push.to_everyone("Bad Route", &text(""))
            .unwrap_err()
            .code_name(),
        "INTERNAL"
    );
    let _ = Bytes::new();
}

#[tokio::test(start_paused = true)]
async fn a_room_that_outlived_its_lease_never_ticks_again() {
    use crate::api::room::store::Lease;
    use crate::api::RoomStore;
    let g = game(Probe::default());
    let a = g.login(1);
    join(&g, a, "r").await.unwrap();
    let before = tock(&g, 1).await.tick;
    // The process froze past its lease (a SIGSTOP, a stalled VM), and
    // another game server took the room meanwhile.
    let key = RoomKey::new("counter", "r").unwrap();
    tokio::time::advance(fast().lease_ttl * 2).await;
    assert!(g
        .parts
        .rooms
        .acquire(Lease::new(&key, "elsewhere", fast().lease_ttl))
        .await
        .unwrap());
    // Thawed: it must find out before it ticks again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let late = ticks_pushed(&g, 1);
    assert!(
        late.iter().all(|t| *t <= before),
        "ticked on without its lease: {late:?} after {before}"
    );
    assert!(g.runtime().running_rooms().is_empty(), "it stopped");
    assert_eq!(
        g.parts.rooms.holder(&key).await.unwrap().as_deref(),
        Some("elsewhere"),
        "and left the new holder alone"
    );
}
