//! Background jobs and cluster events through real game servers: notices
//! reach players on every game server, due jobs run once however many game
//! servers race for them, and a delayed job outlives a game-server restart.

use std::time::Duration;

use gamemesh_integration_tests::{
    game_server_config, gateway_config, start_game_server, start_gateway, wait_for_async, Client,
    Cluster, ClusterOptions, RedisBackend, TIMEOUT,
};
use gamemesh_jobs::catalog::{self, GameEvent, Notice};
use gamemesh_jobs::{EventBus, JobSpec, JobState, JobStore};
use gamemesh_proto::client::{server_packet, ServerNotice};

const WAIT: Duration = Duration::from_secs(15);

/// Reads notices until `done` holds for those read so far; fails after
/// `WAIT`.
async fn notices_until(
    c: &mut Client,
    done: impl Fn(&[ServerNotice]) -> bool,
) -> Vec<ServerNotice> {
    let mut seen = c.take_notices();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done(&seen) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let p = c
            .next_push(left)
            .await
            .unwrap_or_else(|e| panic!("waiting for notices, got {seen:?}: {e}"));
        if let Some(server_packet::Body::Notice(n)) = p.body {
            seen.push(n);
        }
    }
    seen
}

fn count(notices: &[ServerNotice], kind: &str, text_has: &str) -> usize {
    notices
        .iter()
        .filter(|n| n.kind == kind && n.text.contains(text_has))
        .count()
}

async fn job_store(cluster: &Cluster) -> JobStore {
    JobStore::connect(&cluster.redis_address(), Duration::from_secs(2))
        .await
        .expect("job store")
}

async fn the_daily_reset_reaches_players_on_both_game_servers(backend: RedisBackend) {
    let cluster = Cluster::start_with(ClusterOptions {
        redis: backend,
        game_servers: 2,
        game_server: |c| c.daily_reset_cron = "* * * * * *".into(),
        ..ClusterOptions::default()
    })
    .await;
    let mut a = cluster.client_on(0, 1, 31).await;
    let mut b = cluster.client_on(0, 2, 32).await;
    for c in [&mut a, &mut b] {
        let got = notices_until(c, |n| count(n, "daily_reset", "Daily reset") >= 1).await;
        assert!(got[0].sent_at_ms > 0);
    }
    cluster.shutdown().await;
}

async fn an_event_published_once_is_handled_on_every_game_server(backend: RedisBackend) {
    let cluster = Cluster::start_on(backend, 1, 2).await;
    let mut a = cluster.client_on(0, 1, 21).await;
    let mut b = cluster.client_on(0, 2, 22).await;
    // Published by another node (an admin tool, a third server): both game
    // servers' listeners hand it to their notice handler.
    let bus = EventBus::new(job_store(&cluster).await, 99);
    let listening = bus
        .publish(&Notice {
            kind: "maintenance".into(),
            text: "Maintenance in 10 minutes".into(),
            sent_at_ms: 1,
        })
        .await
        .unwrap();
    assert_eq!(listening, 2, "both game servers are subscribed");
    for c in [&mut a, &mut b] {
        let got = notices_until(c, |n| count(n, "maintenance", "Maintenance") == 1).await;
        assert_eq!(got.len(), 1, "{got:?}");
    }
    cluster.shutdown().await;
}

async fn two_game_servers_racing_run_each_due_job_once(backend: RedisBackend) {
    let cluster = Cluster::start_on(backend, 1, 2).await;
    let mut a = cluster.client_on(0, 1, 41).await;
    let mut b = cluster.client_on(0, 2, 42).await;
    let store = job_store(&cluster).await;
    // Twenty events, all due at once: 20 start jobs, then 20 end jobs as
    // their continuations, for both game servers' runners to race for.
    let mut ids = Vec::new();
    for i in 0..20 {
        let (start, end) = catalog::schedule_game_event(
            &store,
            &format!("race-{i}"),
            Duration::ZERO,
            Duration::ZERO,
        )
        .await
        .unwrap();
        ids.push(start);
        ids.push(end);
    }
    for c in [&mut a, &mut b] {
        let got = notices_until(c, |n| count(n, "event_end", "race-") == 20).await;
        for i in 0..20 {
            let name = format!("\"race-{i}\"");
            assert_eq!(
                count(&got, "event_start", &name),
                1,
                "start of {name}: {got:?}"
            );
            assert_eq!(count(&got, "event_end", &name), 1, "end of {name}: {got:?}");
        }
    }
    for id in &ids {
        wait_for_async("the job is recorded as done", WAIT, || {
            let store = store.clone();
            let id = id.clone();
            async move { store.inspect(&id).await.unwrap().unwrap().state == Some(JobState::Done) }
        })
        .await;
        assert_eq!(
            store.inspect(id).await.unwrap().unwrap().attempts,
            1,
            "{id}"
        );
    }
    cluster.shutdown().await;
}

async fn a_delayed_job_survives_a_game_server_restart_and_runs_once(backend: RedisBackend) {
    let mut cluster = Cluster::start_on(backend, 1, 1).await;
    let store = job_store(&cluster).await;
    let payload = serde_json::to_string(&GameEvent {
        name: "restart".into(),
        duration_secs: 0,
    })
    .unwrap();
    let start = store
        .enqueue_in(
            &JobSpec::new(catalog::GAME_EVENT_START, payload.clone()),
            Duration::from_secs(4),
        )
        .await
        .unwrap();
    let end = store
        .enqueue_then(
            &start,
            &JobSpec::new(catalog::GAME_EVENT_END, payload),
            Duration::ZERO,
        )
        .await
        .unwrap();

    // The whole cluster's only game server stops before the job is due...
    for g in cluster.gateways.drain(..) {
        g.shutdown.cancel();
        g.task.await.unwrap();
    }
    for g in cluster.game_servers.drain(..) {
        g.shutdown.cancel();
        g.task.await.unwrap();
    }
    let info = store.inspect(&start).await.unwrap().unwrap();
    assert_eq!(
        info.state,
        Some(JobState::Queued),
        "the restart must happen before the job is due"
    );

    // ... and a new one (new process state, new ports) comes up.
    let gs = start_game_server(game_server_config(1, &cluster.redis_address())).await;
    let gw = start_gateway(gateway_config(1, &[gs.p2p_port]), 1).await;
    let mut c = Client::connect_with_timeout(&gw.addr, TIMEOUT)
        .await
        .unwrap();
    c.login(51, "dev").await.unwrap();
    let got = notices_until(&mut c, |n| count(n, "event_end", "restart") == 1).await;
    assert_eq!(count(&got, "event_start", "restart"), 1, "{got:?}");
    for id in [&start, &end] {
        wait_for_async("the job is recorded as done", WAIT, || {
            let store = store.clone();
            let id = id.clone();
            async move { store.inspect(&id).await.unwrap().unwrap().state == Some(JobState::Done) }
        })
        .await;
        assert_eq!(store.inspect(id).await.unwrap().unwrap().attempts, 1);
    }
    gw.shutdown.cancel();
    gw.task.await.unwrap();
    gs.shutdown.cancel();
    gs.task.await.unwrap();
}

gamemesh_integration_tests::on_both_redis!(
    the_daily_reset_reaches_players_on_both_game_servers,
    an_event_published_once_is_handled_on_every_game_server,
    two_game_servers_racing_run_each_due_job_once,
    a_delayed_job_survives_a_game_server_restart_and_runs_once,
);
