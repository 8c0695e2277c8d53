//! Routes: typed answers, the caller, and every error a client can get.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::*;
use crate::api::testing::TestGame;
use crate::api::{BuildError, Caller};

#[tokio::test]
async fn a_route_answers_its_own_message_and_sees_its_caller() {
    let game = TestGame::start(app(Probe::default()));
    let alice = game.login(7);
    let out: Text = game.call(alice, "probe.echo", &text("hi")).await.unwrap();
    assert_eq!(out.s, format!("probe/7/{}: hi", alice.session_id));
}

#[tokio::test]
async fn unknown_and_badly_named_routes_are_unknown_route() {
    let game = TestGame::start(app(Probe::default()));
    let who = game.login(1);
    for route in [
        "probe.nope",
        "nope",
        "Probe.echo",
        "",
        "probe echo",
        &"a".repeat(65),
    ] {
        let e = game.call_raw(who, route, Bytes::new()).await.unwrap_err();
        assert_eq!(e.code_name(), "UNKNOWN_ROUTE", "{route:?}: {e}");
    }
}

#[tokio::test]
async fn a_payload_that_does_not_decode_is_bad_payload_and_the_handler_never_runs() {
    let probe = Probe::default();
    let calls = probe.calls.clone();
    let game = TestGame::start(app(probe));
    let who = game.login(1);
    // Field 1 of `Text` is a string; here it arrives as a varint.
    let e = game
        .call_raw(who, "probe.count", Bytes::from_static(b"\x08\x01"))
        .await
        .unwrap_err();
    assert_eq!(e.code_name(), "BAD_PAYLOAD", "{e}");
    assert!(
        e.detail().contains("Text"),
        "the detail names the message: {e}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler did not run");
    // An empty payload is the default message: it decodes, and runs.
    let n: Num = game.call(who, "probe.count", &text("")).await.unwrap();
    assert_eq!(n.n, 1);
}

#[tokio::test]
async fn a_refusal_carries_its_detail() {
    let game = TestGame::start(app(Probe::default()));
    let who = game.login(1);
    let e = game
        .call::<_, Text>(who, "probe.refuse", &text("not today"))
        .await
        .unwrap_err();
    assert_eq!(e, GameError::Refused("not today".into()));
}

#[tokio::test]
async fn a_panicking_handler_is_internal_and_the_game_goes_on() {
    let game = TestGame::start(app(Probe::default()));
    let who = game.login(1);
    let e = game
        .call::<_, Text>(who, "probe.panic", &text(""))
        .await
        .unwrap_err();
    assert_eq!(e.code_name(), "INTERNAL");
    let out: Text = game.call(who, "probe.echo", &text("still")).await.unwrap();
    assert!(out.s.ends_with("still"));
}

#[tokio::test]
async fn the_route_table_is_what_modules_registered() {
    let game = TestGame::start(app(Probe::default()));
    assert_eq!(
        game.runtime().routes(),
        [
            "probe.add",
            "probe.count",
            "probe.deposit",
            "probe.echo",
            "probe.join",
            "probe.leave",
            "probe.panic",
            "probe.refuse"
        ]
    );
    assert_eq!(game.runtime().room_kinds(), ["counter"]);
    assert_eq!(game.runtime().job_kinds(), ["probe.greet"]);
    assert_eq!(game.runtime().modules(), ["probe"]);
}

struct Named(&'static str, fn(&mut App));

impl Module for Named {
    fn name(&self) -> &str {
        self.0
    }
    fn build(&self, app: &mut App) {
        (self.1)(app)
    }
}

async fn nothing(_ctx: Ctx, _t: Text) -> Result<Text, GameError> {
    Ok(Text::default())
}

fn build_error(app: App) -> BuildError {
    let services = crate::api::testing::MemoryParts::new().services(
        1,
        std::sync::Arc::new(crate::api::SingleNode(1)),
        RoomSettings::default(),
    );
    match app.start(services) {
        Ok(_) => panic!("the app started"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn registration_mistakes_are_reported_together_at_start() {
    let mut a = App::new();
    a.add_module(Named("Bad", |_| {}));
    a.add_module(Named("m", |app| {
        app.route("m.x", nothing)
            .route("m.x", nothing)
            .route("other.y", nothing)
            .route("m.", nothing)
            .room(RoomKind::<Counter>::new("c"))
            .room(RoomKind::<Counter>::new("c2"))
            .room(RoomKind::<Counter>::new("Bad").max_members(0));
    }));
    a.add_module(Named("m", |_| {}));
    a.route("m.z", nothing);
    let e = build_error(a);
    let BuildError::Many(all) = &e else {
        panic!("not a list: {e}");
    };
    let expected = [
        BuildError::BadModule("Bad".into()),
        BuildError::DuplicateRoute("m.x".into()),
        BuildError::DuplicateRoomKind("c2".into()),
        BuildError::DuplicateModule("m".into()),
        BuildError::NoModule("m.z".into()),
    ];
    for x in &expected {
        assert!(all.contains(x), "{x:?} missing from {e}");
    }
    let bad_routes = all
        .iter()
        .filter(|e| matches!(e, BuildError::BadRoute { .. }))
        .count();
    assert_eq!(bad_routes, 2, "other.y and m. ({e})");
    assert!(
        all.iter()
            .any(|e| matches!(e, BuildError::BadRoomKind { kind, .. } if kind == "Bad")),
        "{e}"
    );
    assert_eq!(all.len(), expected.len() + 3, "{e}");
}

#[tokio::test]
async fn one_mistake_is_reported_as_itself() {
    let mut a = App::new();
    a.add_module(Named("m", |app| {
        app.route("m.x", nothing).route("m.x", nothing);
    }));
    assert_eq!(build_error(a), BuildError::DuplicateRoute("m.x".into()));
}

#[tokio::test]
async fn calls_from_two_sessions_of_one_user_are_told_apart() {
    let game = TestGame::start(app(Probe::default()));
    let a = game.login(5);
    let b = Caller {
        user_id: 5,
        session_id: a.session_id + 1,
    };
    let x: Text = game.call(a, "probe.echo", &text("")).await.unwrap();
    let y: Text = game.call(b, "probe.echo", &text("")).await.unwrap();
    assert_ne!(x.s, y.s);
}

#[tokio::test]
async fn a_kind_that_cannot_renew_its_lease_while_ticking_is_refused() {
    let mut a = App::new();
    a.add_module(Named("m", |app| {
        // 100 ticks at 20 Hz: 5 s between saves, against a 2 s lease.
        app.room(
            RoomKind::<Counter>::new("slow")
                .tick_hz(20)
                .checkpoint_ticks(100),
        );
    }));
    let e = build_error(a);
    assert!(
        matches!(&e, BuildError::BadRoomKind { kind, why } if kind == "slow" && why.contains("lease")),
        "{e}"
    );
}
