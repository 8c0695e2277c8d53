//! The job store, runner and event bus against a real `redis-server`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gamemesh_jobs::runner::{self, Handlers, RunnerConfig};
use gamemesh_jobs::{
    Backoff, BoxError, CronJob, Event, EventBus, EventHandlers, JobSpec, JobState, JobStore,
    WorkQueue,
};
use gamemesh_test_support::{wait_for, wait_for_async, RedisServer};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const WAIT: Duration = Duration::from_secs(10);

async fn store(redis: &RedisServer) -> JobStore {
    JobStore::connect(&redis.addr(), Duration::from_secs(2))
        .await
        .expect("job store connects")
}

fn fast(node: u64) -> RunnerConfig {
    RunnerConfig {
        poll: Duration::from_millis(20),
        backoff: Backoff {
            base: Duration::from_millis(20),
            max: Duration::from_millis(100),
        },
        ..RunnerConfig::new(node)
    }
}

/// A runner on its own tracker, stopped by `stop`.
struct Running {
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Running {
    async fn start(store: &JobStore, handlers: Handlers, config: RunnerConfig) -> Running {
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        runner::start(store.clone(), handlers, config, &tracker, shutdown.clone())
            .await
            .expect("runner starts");
        Running { tracker, shutdown }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Counts runs per payload.
#[derive(Clone, Default)]
struct Counter(Arc<Mutex<HashMap<String, usize>>>);

impl Counter {
    fn handlers(&self, kind: &str) -> Handlers {
        let mut h = Handlers::new();
        let me = self.clone();
        h.on(kind, move |job| {
            let me = me.clone();
            async move {
                *me.0.lock().unwrap().entry(job.payload).or_default() += 1;
                Ok::<(), BoxError>(())
            }
        });
        h
    }

    fn get(&self, payload: &str) -> usize {
        self.0.lock().unwrap().get(payload).copied().unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.0.lock().unwrap().values().sum()
    }
}

#[tokio::test]
async fn a_delayed_job_survives_a_runner_restart_and_runs_once() {
    let redis = RedisServer::start();
    let s = store(&redis).await;
    let counter = Counter::default();
    let first = Running::start(&s, counter.handlers("t"), fast(1)).await;
    let id = s
        .enqueue_in(&JobSpec::new("t", "later"), Duration::from_millis(700))
        .await
        .unwrap();
    // The server stops before the job is due, and a new one (a new owner,
    // a new connection) starts.
    first.stop().await;
    assert_eq!(counter.get("later"), 0);
    let s2 = store(&redis).await;
    let second = Running::start(&s2, counter.handlers("t"), fast(1)).await;
    wait_for("the delayed job ran", WAIT, || counter.get("later") == 1).await;
    wait_for_async("it is recorded as done", WAIT, || {
        let s2 = s2.clone();
        let id = id.clone();
        async move { s2.inspect(&id).await.unwrap().unwrap().state == Some(JobState::Done) }
    })
    .await;
    // Done is final: nothing is left to claim, so it never runs again.
    assert!(s2.list().await.unwrap().is_empty());
    assert_eq!(counter.get("later"), 1);
    second.stop().await;
}

#[tokio::test]
async fn two_runners_racing_run_each_due_job_exactly_once() {
    let redis = RedisServer::start();
    let s = store(&redis).await;
    let counter = Counter::default();
    for i in 0..200 {
        s.enqueue(&JobSpec::new("t", format!("job-{i}")))
            .await
            .unwrap();
    }
    let a = Running::start(&s, counter.handlers("t"), fast(1)).await;
    let b = Running::start(&store(&redis).await, counter.handlers("t"), fast(2)).await;
    wait_for("200 jobs ran", WAIT, || counter.total() >= 200).await;
    wait_for_async("nothing is queued or running", WAIT, || {
        let s = s.clone();
        async move { s.list().await.unwrap().is_empty() }
    })
    .await;
    for i in 0..200 {
        assert_eq!(counter.get(&format!("job-{i}")), 1, "job-{i}");
    }
    assert!(s.list().await.unwrap().is_empty());
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_failing_job_is_retried_then_failed_then_requeued() {
    let redis = RedisServer::start();
    let s = store(&redis).await;
    let attempts = Arc::new(AtomicUsize::new(0));
    // Fails its first three attempts, succeeds after.
    let mut h = Handlers::new();
    let a = attempts.clone();
    h.on("flaky", move |job| {
        let a = a.clone();
        async move {
            let n = a.fetch_add(1, Ordering::SeqCst) + 1;
            if n <= 3 {
                Err(format!("attempt {} broke", job.attempt).into())
            } else {
                Ok::<(), BoxError>(())
            }
        }
    });
    let r = Running::start(&s, h, fast(1)).await;
    let id = s
        .enqueue(&JobSpec::new("flaky", "{}").max_attempts(3))
        .await
        .unwrap();
    wait_for_async("the job is in the failed list", WAIT, || {
        let s = s.clone();
        async move { !s.failed().await.unwrap().is_empty() }
    })
    .await;
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        3,
        "three attempts, no more"
    );
    let failed = s.failed().await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].id, id);
    assert_eq!(failed[0].state, Some(JobState::Failed));
    assert_eq!(failed[0].attempts, 3);
    assert_eq!(failed[0].last_error.as_deref(), Some("attempt 3 broke"));

    assert!(s.requeue(&id).await.unwrap());
    assert!(
        !s.requeue(&id).await.unwrap(),
        "only a failed job is re-queued"
    );
    wait_for_async("the re-queued job succeeded", WAIT, || {
        let s = s.clone();
        let id = id.clone();
        async move { s.inspect(&id).await.unwrap().unwrap().state == Some(JobState::Done) }
    })
    .await;
    assert_eq!(attempts.load(Ordering::SeqCst), 4);
    assert!(s.failed().await.unwrap().is_empty());
    r.stop().await;
}

#[tokio::test]
async fn a_dead_runners_job_is_picked_up_after_its_lease() {
    let redis = RedisServer::start();
    let s = store(&redis).await;
    let id = s.enqueue(&JobSpec::new("t", "orphan")).await.unwrap();
    // A runner claims it and dies without a word.
    let claimed = s
        .claim("dead-runner", 10, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        s.inspect(&id).await.unwrap().unwrap().state,
        Some(JobState::Running)
    );
    let counter = Counter::default();
    let r = Running::start(&s, counter.handlers("t"), fast(2)).await;
    wait_for("the orphaned job ran elsewhere", WAIT, || {
        counter.get("orphan") == 1
    })
    .await;
    // The dead runner's late word is refused.
    assert_eq!(
        s.complete(&id, "dead-runner").await.unwrap(),
        gamemesh_jobs::store::Outcome::NotOwner
    );
    r.stop().await;
}

#[tokio::test]
async fn a_running_job_is_released_at_shutdown_for_another_server() {
    let redis = RedisServer::start();
    let s = store(&redis).await;
    let mut slow = Handlers::new();
    let started = Arc::new(AtomicUsize::new(0));
    let st = started.clone();
    slow.on("t", move |_| {
        let st = st.clone();
        async move {
            st.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
            Ok::<(), BoxError>(())
        }
    });
    let a = Running::start(
        &s,
        slow,
        RunnerConfig {
            grace: Duration::from_millis(100),
            ..fast(1)
        },
    )
    .await;
    let id = s.enqueue(&JobSpec::new("t", "long")).await.unwrap();
    wait_for("the slow job started", WAIT, || {
        started.load(Ordering::SeqCst) == 1
    })
    .await;
    a.stop().await;
    let info = s.inspect(&id).await.unwrap().unwrap();
    assert_eq!(
        info.state,
        Some(JobState::Queued),
        "released, not left running"
    );
    assert_eq!(info.attempts, 0, "the released attempt is not counted");
    let counter = Counter::default();
    let b = Running::start(&s, counter.handlers("t"), fast(2)).await;
    wait_for("another server ran it", WAIT, || counter.get("long") == 1).await;
    b.stop().await;
}

#[tokio::test]
async fn a_continuation_runs_only_after_its_parent_succeeded() {
    let redis = RedisServer::start();
    let s = store(&redis).await;
    let order = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut h = Handlers::new();
    let o = order.clone();
    h.on("t", move |job| {
        let o = o.clone();
        async move {
            o.lock().unwrap().push(job.payload);
            Ok::<(), BoxError>(())
        }
    });
    let a = s
        .enqueue_in(&JobSpec::new("t", "A"), Duration::from_millis(300))
        .await
        .unwrap();
    let b = s
        .enqueue_then(&a, &JobSpec::new("t", "B"), Duration::from_millis(50))
        .await
        .unwrap();
    assert_eq!(
        s.inspect(&b).await.unwrap().unwrap().state,
        Some(JobState::Waiting)
    );
    let listed: Vec<_> = s.list().await.unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(
        listed,
        vec![a.clone(), b.clone()],
        "operators see the waiting job"
    );
    let r = Running::start(&s, h, fast(1)).await;
    wait_for("both ran", WAIT, || order.lock().unwrap().len() == 2).await;
    assert_eq!(*order.lock().unwrap(), vec!["A", "B"]);
    wait_for_async("nothing is left waiting", WAIT, || {
        let s = s.clone();
        async move { s.list().await.unwrap().is_empty() }
    })
    .await;
    // A continuation of a job that already succeeded is due at once.
    let c = s
        .enqueue_then(&a, &JobSpec::new("t", "C"), Duration::ZERO)
        .await
        .unwrap();
    wait_for("C ran", WAIT, || order.lock().unwrap().len() == 3).await;
    assert!(s.inspect(&c).await.unwrap().is_some());
    assert!(matches!(
        s.enqueue_then("no-such-job", &JobSpec::new("t", "D"), Duration::ZERO)
            .await,
        Err(gamemesh_jobs::JobsError::UnknownParent(_))
    ));
    r.stop().await;
}

#[tokio::test]
async fn a_cron_tick_fires_once_across_two_runners() {
    let redis = RedisServer::start();
    let s = store(&redis).await;
    // Counts runs per job id: every occurrence is its own job.
    let counter = Counter::default();
    let by_id = |c: &Counter| {
        let mut h = Handlers::new();
        let c = c.clone();
        h.on("t", move |job| {
            let c = c.clone();
            async move {
                *c.0.lock().unwrap().entry(job.id).or_default() += 1;
                Ok::<(), BoxError>(())
            }
        });
        h
    };
    let cron = CronJob {
        name: "every-second".into(),
        expr: "* * * * * *".into(),
        kind: "t".into(),
        payload: "tick".into(),
        max_attempts: 1,
    };
    let mut ha = by_id(&counter);
    ha.cron(cron.clone());
    let mut hb = by_id(&counter);
    hb.cron(cron.clone());
    let a = Running::start(&s, ha, fast(1)).await;
    let b = Running::start(&store(&redis).await, hb, fast(2)).await;
    wait_for("three ticks ran", WAIT, || {
        counter.0.lock().unwrap().len() >= 3
    })
    .await;
    a.stop().await;
    b.stop().await;
    // Every occurrence is one job named by its tick, run once; and the
    // ticks are distinct seconds.
    let runs = counter.0.lock().unwrap().clone();
    for (id, n) in &runs {
        assert!(id.starts_with("cron:every-second:"), "{id}");
        assert_eq!(*n, 1, "{id} ran {n} times");
    }
    let mut ticks: Vec<i64> = runs
        .keys()
        .map(|id| id.rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    ticks.sort();
    assert!(ticks.windows(2).all(|w| w[1] - w[0] >= 1000), "{ticks:?}");
}

#[tokio::test]
async fn a_cron_job_after_downtime_fires_once_not_for_every_missed_tick() {
    let redis = RedisServer::start();
    let s = store(&redis).await;
    s.register_cron(&CronJob {
        name: "often".into(),
        expr: "* * * * * *".into(),
        kind: "t".into(),
        payload: "tick".into(),
        max_attempts: 1,
    })
    .await
    .unwrap();
    // Nobody fires until at least two ticks are due (the downtime under
    // test), however slowly this machine runs.
    let (_, first) = s.crons().await.unwrap().remove(0);
    wait_for("two ticks of the cron job are due", WAIT, || {
        gamemesh_jobs::store::now_ms() >= first + 1000
    })
    .await;
    let before = gamemesh_jobs::store::now_ms();
    assert_eq!(
        s.fire_due_crons().await.unwrap(),
        1,
        "one catch-up occurrence for all the missed ticks"
    );
    // Every missed tick is skipped: the next one is after the catch-up
    // began, not one of the ticks missed during the downtime.
    let (_, next) = s.crons().await.unwrap().remove(0);
    assert!(
        next > before,
        "next tick {next} is not after the catch-up began ({before}): a missed tick is still due"
    );
    // Firing again finds nothing due unless the clock has since reached
    // that next tick (a loaded machine can take a second here); either way
    // at most that one new occurrence.
    let again = s.fire_due_crons().await.unwrap();
    let after = gamemesh_jobs::store::now_ms();
    if after < next {
        assert_eq!(again, 0, "nothing is due before the next tick {next}");
    } else {
        assert!(again <= 1, "{again} occurrences for one new tick");
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ping {
    n: u32,
}

impl Event for Ping {
    const TYPE: &'static str = "ping";
}

#[tokio::test]
async fn an_event_published_on_one_server_is_handled_on_the_other() {
    let redis = RedisServer::start();
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let got = Arc::new(Mutex::new(Vec::<(u64, u32)>::new()));
    let mut buses = Vec::new();
    for node in [1u64, 2] {
        let bus = EventBus::new(store(&redis).await, node);
        let mut handlers = EventHandlers::new();
        // A failing handler first: it must not keep the next one from
        // running.
        handlers.on("broken", |_: Ping| async {
            Err::<(), BoxError>("broken on purpose".into())
        });
        let g = got.clone();
        handlers.on("record", move |p: Ping| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push((node, p.n));
                Ok::<(), BoxError>(())
            }
        });
        let queue = WorkQueue::start(2, 16, &tracker, shutdown.clone());
        bus.listen(handlers, queue, &tracker, shutdown.clone());
        bus.wait_subscribed().await;
        buses.push(bus);
    }
    assert_eq!(buses[0].publish(&Ping { n: 7 }).await.unwrap(), 2);
    wait_for("both servers handled it", WAIT, || {
        got.lock().unwrap().len() == 2
    })
    .await;
    let mut seen = got.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, vec![(1, 7), (2, 7)]);
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}
