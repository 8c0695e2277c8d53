//! Background work of the game server: the job runner, the event listener
//! and the bounded work queue (all from `gamemesh-jobs`), wired to the
//! sample jobs and to the players connected here.
//!
//! The path of a notice: a job (the daily reset from its cron schedule, or
//! the start or end of a timed in-game event an operator scheduled with
//! `test-client admin event schedule`) is claimed by ONE game server, whose
//! handler publishes a [`Notice`] event. EVERY game server's listener hands
//! it to the work queue, where [`push_to_local`] sends a `ServerNotice`
//! push to each session owned there. So each online player gets one
//! notice, wherever it is connected, and no request waits for any of it.

use std::sync::Arc;
use std::time::Duration;

use gamemesh_jobs::catalog::{self, GameEvent, Notice};
use gamemesh_jobs::runner::{self, Handlers, RunnerConfig};
use gamemesh_jobs::store::now_ms;
use gamemesh_jobs::{
    Backoff, BoxError, CronJob, EventBus, EventHandlers, JobStore, QueueError, RedisSource,
    WorkQueue,
};
use gamemesh_proto::client::{server_packet, ErrorCode, ServerNotice, ServerPacket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::config::Config;
use crate::error::GameServerError;
use crate::redis::RedisConn;
use crate::state::HubState;

/// The jobs go through the server's own connection, so they reach Redis
/// however it is addressed (ACL user, TLS with `--redis-ca-file`,
/// Sentinel) and follow the primary through a failover with the sessions.
impl RedisSource for RedisConn {
    fn connection(&self) -> gamemesh_node::redis_connection::SharedConnection {
        RedisConn::connection(self)
    }

    fn client(&self) -> gamemesh_node::redis_connection::PubSubClient {
        self.primary_client()
    }

    fn primary_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(RedisConn::primary_changes(self))
    }

    fn command_failed(&self) {
        self.suspect_primary();
    }
}

/// The running background parts, for whoever needs to enqueue or publish.
#[derive(Clone)]
pub struct Background {
    /// The job store (enqueue, inspect).
    pub store: JobStore,
    /// The cluster event bus (publish).
    pub bus: EventBus,
    /// The bounded local work queue (hand off long work; `Busy` maps to
    /// `RATE_LIMITED`, see [`busy_reply`]).
    pub queue: WorkQueue,
}

/// Starts the runner, the work queue and the event listener on `tracker`,
/// all on `redis`, the server's connection.
///
/// The runner stops claiming when `shutdown` (the server's own token) is
/// cancelled and gives running jobs half the shutdown grace before it
/// releases them, so the whole stop fits in the grace. The listener and the
/// queue's workers stop on `tasks`, with the hub's other tasks.
pub async fn start(
    state: Arc<HubState>,
    redis: RedisConn,
    config: &Config,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
    tasks: CancellationToken,
) -> Result<Background, GameServerError> {
    let timeout = Duration::from_millis(config.redis_timeout_ms);
    // `target` is the address with its password redacted.
    let target = redis.target().to_string();
    let unreachable = |e: gamemesh_jobs::JobsError| GameServerError::RedisUnreachable {
        addr: target.clone(),
        reason: e.to_string(),
    };
    let store = JobStore::with_source(Arc::new(redis), timeout);
    let bus = EventBus::new(store.clone(), config.node.node_id);
    let queue = WorkQueue::start(
        config.work_queue_workers,
        config.work_queue_capacity,
        tracker,
        tasks.clone(),
    );

    let mut events = EventHandlers::new();
    let s = state.clone();
    events.on("push-notice", move |n: Notice| {
        let s = s.clone();
        async move {
            let pushed = push_to_local(&s, &n);
            metrics::counter!("gamemesh_notices_pushed_total").increment(pushed as u64);
            info!("Notice {} pushed to {pushed} local session(s)", n.kind);
            Ok::<(), BoxError>(())
        }
    });
    // The game modules' event handlers ride the same listener.
    if let Some(game) = state.game() {
        game.install_events(&mut events);
    }
    bus.listen(events, queue.clone(), tracker, tasks);
    // Ready means hearing events: without this, a notice published right
    // after start-up could miss this server.
    if tokio::time::timeout(timeout * 2, bus.wait_subscribed())
        .await
        .is_err()
    {
        tracing::warn!("Event listener not subscribed yet; notices are missed until it is");
    }

    let mut jobs = Handlers::new();
    let b = bus.clone();
    jobs.on(catalog::DAILY_RESET, move |_job| {
        let b = b.clone();
        async move {
            publish(
                &b,
                "daily_reset",
                "Daily reset: quests and daily rewards are renewed",
            )
            .await
        }
    });
    let b = bus.clone();
    jobs.on(catalog::GAME_EVENT_START, move |job| {
        let b = b.clone();
        async move {
            let e: GameEvent = serde_json::from_str(&job.payload)?;
            let text = format!(
                "Event \"{}\" has started! It lasts {} s",
                e.name, e.duration_secs
            );
            publish(&b, "event_start", &text).await
        }
    });
    let b = bus.clone();
    jobs.on(catalog::GAME_EVENT_END, move |job| {
        let b = b.clone();
        async move {
            let e: GameEvent = serde_json::from_str(&job.payload)?;
            publish(&b, "event_end", &format!("Event \"{}\" has ended", e.name)).await
        }
    });
    jobs.cron(CronJob {
        name: catalog::DAILY_RESET_CRON.into(),
        expr: config.daily_reset_cron.clone(),
        kind: catalog::DAILY_RESET.into(),
        payload: "{}".into(),
        max_attempts: 5,
    });
    let runner_config = RunnerConfig {
        workers: config.job_workers,
        poll: Duration::from_millis(config.job_poll_ms),
        lease: Duration::from_secs(config.job_lease_secs),
        backoff: Backoff::default(),
        grace: config.node.shutdown_grace() / 2,
        ..RunnerConfig::new(config.node.node_id)
    };
    // And their jobs the same runner; game code enqueues and publishes
    // through the store and bus handed to the game.
    if let Some(game) = state.game() {
        game.install_jobs(&mut jobs);
        game.attach_background(store.clone(), bus.clone());
    }
    runner::start(store.clone(), jobs, runner_config, tracker, shutdown)
        .await
        .map_err(unreachable)?;
    info!(
        "Background jobs started: {} workers, daily reset at \"{}\" (UTC)",
        config.job_workers, config.daily_reset_cron
    );
    Ok(Background { store, bus, queue })
}

async fn publish(bus: &EventBus, kind: &str, text: &str) -> Result<(), BoxError> {
    bus.publish(&Notice {
        kind: kind.to_string(),
        text: text.to_string(),
        sent_at_ms: now_ms(),
    })
    .await?;
    Ok(())
}

/// The push a client gets for `notice`.
pub fn notice_packet(notice: &Notice) -> ServerPacket {
    ServerPacket {
        sequence_id: 0,
        body: Some(server_packet::Body::Notice(ServerNotice {
            kind: notice.kind.clone(),
            text: notice.text.clone(),
            sent_at_ms: notice.sent_at_ms.max(0) as u64,
        })),
    }
}

/// Pushes `notice` to every session owned by this game server; returns how
/// many were sent.
pub fn push_to_local(state: &HubState, notice: &Notice) -> usize {
    let packet = notice_packet(notice);
    let sessions = state.sessions.all();
    for a in &sessions {
        state.gateways.send_to_client(a.gateway, &a.socket, &packet);
    }
    sessions.len()
}

/// The answer to request `sequence_id` whose work the queue refused:
/// `RATE_LIMITED` when it is full (the client may retry later),
/// `UNAVAILABLE` when it is shutting down.
pub fn busy_reply(sequence_id: u64, error: QueueError) -> ServerPacket {
    let code = match error {
        QueueError::Busy => ErrorCode::RateLimited,
        QueueError::Closed => ErrorCode::Unavailable,
    };
    gamemesh_proto::packets::error(sequence_id, code, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_is_rate_limited_and_a_closed_one_unavailable() {
        let code = |p: ServerPacket| match p.body {
            Some(server_packet::Body::Error(e)) => (p.sequence_id, e.code()),
            other => panic!("not an error: {other:?}"),
        };
        assert_eq!(
            code(busy_reply(7, QueueError::Busy)),
            (7, ErrorCode::RateLimited)
        );
        assert_eq!(
            code(busy_reply(8, QueueError::Closed)),
            (8, ErrorCode::Unavailable)
        );
    }

    #[test]
    fn a_notice_is_a_push() {
        let p = notice_packet(&Notice {
            kind: "daily_reset".into(),
            text: "hi".into(),
            sent_at_ms: 5,
        });
        assert_eq!(p.sequence_id, 0);
        assert!(
            matches!(p.body, Some(server_packet::Body::Notice(ref n)) if n.kind == "daily_reset" && n.sent_at_ms == 5)
        );
    }
}
