//! Jobs and cluster events of modules, on the game server's own runner
//! and listener (real Redis), with the game handle in every handler.

use std::time::Duration;

use gamemesh_jobs::catalog::Notice;
use gamemesh_jobs::runner::{self, RunnerConfig};
use gamemesh_jobs::{EventBus, EventHandlers, Handlers, JobSpec, JobStore, WorkQueue};
use gamemesh_test_support::RedisServer;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::*;
use crate::api::testing::TestGame;

#[tokio::test]
async fn jobs_and_events_of_modules_reach_players() {
    let redis = RedisServer::start();
    let g = TestGame::start(app(Probe::default()));
    let (a, b) = (g.login(1), g.login(2));
    assert_eq!(
        g.game().jobs().err().map(|e| e.code_name()),
        Some("UNAVAILABLE"),
        "no jobs before the core attaches them"
    );

    let store = JobStore::connect(&redis.url(), Duration::from_secs(2))
        .await
        .unwrap();
    let bus = EventBus::new(store.clone(), 1);
    let (tracker, stop) = (TaskTracker::new(), CancellationToken::new());
    let mut jobs = Handlers::new();
    g.runtime().install_jobs(&mut jobs);
    let mut events = EventHandlers::new();
    g.runtime().install_events(&mut events);
    let config = RunnerConfig {
        poll: Duration::from_millis(20),
        ..RunnerConfig::new(1)
    };
    runner::start(store.clone(), jobs, config, &tracker, stop.clone())
        .await
        .unwrap();
    let queue = WorkQueue::start(2, 16, &tracker, stop.clone());
    bus.listen(events, queue, &tracker, stop.clone());
    bus.wait_subscribed().await;
    g.runtime().attach_background(store, bus);

    // A job enqueued from game code runs and pushes to its user.
    g.game()
        .jobs()
        .unwrap()
        .enqueue(&JobSpec::new("probe.greet", a.user_id.to_string()))
        .await
        .unwrap();
    let note: Text = g.push(a.user_id, "probe.note").await;
    assert_eq!(note.s, "hello from a job");

    // An event published from game code reaches every handler, which
    // pushes to everyone.
    let listening = g
        .game()
        .publish(&Notice {
            kind: "test".into(),
            text: "to all".into(),
            sent_at_ms: 0,
        })
        .await
        .unwrap();
    assert_eq!(listening, 1);
    for user in [a.user_id, b.user_id] {
        let n: Text = g.push(user, "probe.note").await;
        assert_eq!(n.s, "to all");
    }
    stop.cancel();
    tracker.close();
    tracker.wait().await;
}
