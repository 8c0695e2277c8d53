//! The runner: claims due jobs from the [`JobStore`] and runs them on a
//! fixed number of local workers, each under a lease it renews.
//!
//! One loop per game server, every `poll`: fire due cron ticks (each tick
//! once in the whole cluster, see [`JobStore::fire_due_crons`]), then claim
//! as many due jobs as there are free workers. A job's handler runs on its
//! own task; success completes it (releasing its continuations), an error
//! or a panic schedules a retry with backoff, or the failed list when out
//! of attempts. If this server dies, its leases expire and another server
//! claims the jobs again.
//!
//! Shutdown: no new claims; running jobs get `grace` to finish; those
//! still running then are stopped and released, due at once for another
//! server, their attempt not counted.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::job::{Backoff, Job};
use crate::store::{CronJob, FailOutcome, JobStore, Outcome};

/// The error a handler returns: any error, shown in the failed list.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

type Handler = Arc<dyn Fn(Job) -> BoxFuture<'static, Result<(), BoxError>> + Send + Sync>;

/// Handlers by job kind, and the recurring jobs this server registers.
#[derive(Default, Clone)]
pub struct Handlers {
    /// kind -> handler.
    by_kind: HashMap<String, Handler>,
    /// Registered at start (idempotent across servers and restarts).
    crons: Vec<CronJob>,
}

impl Handlers {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs jobs of `kind` with `f`. A later registration of the same kind
    /// replaces the earlier one.
    pub fn on<F, Fut>(&mut self, kind: impl Into<String>, f: F) -> &mut Self
    where
        F: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.by_kind
            .insert(kind.into(), Arc::new(move |job| f(job).boxed()));
        self
    }

    /// Registers a recurring job when the runner starts.
    pub fn cron(&mut self, job: CronJob) -> &mut Self {
        self.crons.push(job);
        self
    }
}

/// How the runner works.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Jobs run at once on this server.
    pub workers: usize,
    /// How often due jobs are looked for.
    pub poll: Duration,
    /// How long a claim holds without renewal; a dead runner's jobs are
    /// taken again after this. Renewed every third of it.
    pub lease: Duration,
    /// Delay between attempts.
    pub backoff: Backoff,
    /// How long running jobs may finish at shutdown before they are
    /// released.
    pub grace: Duration,
    /// Names this runner in leases and logs (node id and a random part,
    /// so a restarted server never mistakes its predecessor's leases for
    /// its own).
    pub owner: String,
}

impl RunnerConfig {
    /// Defaults for node `node_id`: 4 workers, poll 250 ms, lease 30 s,
    /// backoff 1 s .. 5 min, grace 2 s.
    pub fn new(node_id: u64) -> Self {
        Self {
            workers: 4,
            poll: Duration::from_millis(250),
            lease: Duration::from_secs(30),
            backoff: Backoff::default(),
            grace: Duration::from_secs(2),
            owner: format!("node-{node_id}:{}", uuid::Uuid::new_v4().simple()),
        }
    }
}

/// Starts the runner on `tracker`; it stops when `shutdown` is cancelled
/// (within `config.grace` plus one Redis call per running job).
pub async fn start(
    store: JobStore,
    handlers: Handlers,
    config: RunnerConfig,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> Result<(), crate::JobsError> {
    for c in &handlers.crons {
        store.register_cron(c).await?;
        info!("Recurring job {} registered: {} (UTC)", c.name, c.expr);
    }
    tracker.spawn(run(store, Arc::new(handlers), config, shutdown));
    Ok(())
}

async fn run(
    store: JobStore,
    handlers: Arc<Handlers>,
    config: RunnerConfig,
    shutdown: CancellationToken,
) {
    let workers = Arc::new(Semaphore::new(config.workers.max(1)));
    let running = TaskTracker::new();
    // Cancelled when the grace ran out: running jobs stop and are released.
    let hard_stop = CancellationToken::new();
    let mut tick = tokio::time::interval(config.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        match store.fire_due_crons().await {
            Ok(0) => {}
            Ok(n) => debug!("{n} recurring job occurrence(s) created"),
            Err(e) => warn!("Could not fire recurring jobs ({e}); retrying"),
        }
        let free = workers.available_permits();
        if free == 0 {
            continue;
        }
        let jobs = match store.claim(&config.owner, free, config.lease).await {
            Ok(jobs) => jobs,
            Err(e) => {
                warn!("Could not claim jobs ({e}); retrying");
                continue;
            }
        };
        for job in jobs {
            let Ok(permit) = workers.clone().try_acquire_owned() else {
                // Cannot happen (we claimed no more than were free); give
                // the job back rather than run it over the limit.
                let _ = store.release(&job.id, &config.owner).await;
                continue;
            };
            let ctx = JobRun {
                store: store.clone(),
                handler: handlers.by_kind.get(&job.kind).cloned(),
                config: config.clone(),
                hard_stop: hard_stop.clone(),
            };
            running.spawn(async move {
                ctx.run(job).await;
                drop(permit);
            });
        }
    }
    running.close();
    if !running.is_empty() {
        info!(
            "Waiting up to {:?} for {} running job(s)",
            config.grace,
            running.len()
        );
    }
    if tokio::time::timeout(config.grace, running.wait())
        .await
        .is_err()
    {
        warn!(
            "Jobs still running after {:?}: releasing them for another server",
            config.grace
        );
        hard_stop.cancel();
        running.wait().await;
    }
}

/// One claimed job on its way through its handler.
struct JobRun {
    store: JobStore,
    handler: Option<Handler>,
    config: RunnerConfig,
    hard_stop: CancellationToken,
}

impl JobRun {
    async fn run(self, job: Job) {
        let owner = &self.config.owner;
        let Some(handler) = self.handler.clone() else {
            self.failed(
                &job,
                format!("no handler for job kind {:?} on this server", job.kind),
            )
            .await;
            return;
        };
        debug!(
            "Job {} ({}) attempt {}/{}",
            job.id, job.kind, job.attempt, job.max_attempts
        );
        let work = AssertUnwindSafe(handler(job.clone())).catch_unwind();
        tokio::pin!(work);
        let mut renew = tokio::time::interval(self.config.lease / 3);
        renew.tick().await;
        let result = loop {
            tokio::select! {
                r = &mut work => break Some(r),
                _ = renew.tick() => {
                    match self.store.renew(&job.id, owner, self.config.lease).await {
                        Ok(Outcome::Done) => {}
                        Ok(Outcome::NotOwner) => warn!("Job {} lost its lease; another server may run it too", job.id),
                        Err(e) => warn!("Could not renew the lease of job {} ({e})", job.id),
                    }
                }
                _ = self.hard_stop.cancelled() => break None,
            }
        };
        match result {
            None => match self.store.release(&job.id, owner).await {
                Ok(_) => info!("Job {} ({}) released for another server", job.id, job.kind),
                Err(e) => warn!(
                    "Could not release job {} ({e}); its lease expires by itself",
                    job.id
                ),
            },
            Some(Ok(Ok(()))) => match self.store.complete(&job.id, owner).await {
                Ok(Outcome::Done) => {
                    metrics::counter!("gamemesh_jobs_completed_total", "kind" => job.kind.clone())
                        .increment(1);
                    debug!("Job {} ({}) done", job.id, job.kind)
                }
                Ok(Outcome::NotOwner) => {
                    warn!("Job {} finished after its lease was taken over", job.id)
                }
                Err(e) => warn!(
                    "Could not record job {} as done ({e}); it may run again after its lease",
                    job.id
                ),
            },
            Some(Ok(Err(e))) => self.failed(&job, e.to_string()).await,
            Some(Err(_panic)) => self.failed(&job, "the handler panicked".to_string()).await,
        }
    }

    async fn failed(&self, job: &Job, error: String) {
        metrics::counter!("gamemesh_jobs_attempts_failed_total", "kind" => job.kind.clone())
            .increment(1);
        let delay = self.config.backoff.delay(job.attempt);
        match self
            .store
            .fail(&job.id, &self.config.owner, &error, delay)
            .await
        {
            Ok(FailOutcome::Retry) => warn!(
                "Job {} ({}) failed attempt {}/{}: {error}; retrying in {delay:?}",
                job.id, job.kind, job.attempt, job.max_attempts
            ),
            Ok(FailOutcome::Failed) => {
                metrics::counter!("gamemesh_jobs_dead_total", "kind" => job.kind.clone())
                    .increment(1);
                warn!(
                    "Job {} ({}) failed its last attempt ({}): {error}; moved to the failed list",
                    job.id, job.kind, job.attempt
                )
            }
            Ok(FailOutcome::NotOwner) => {
                warn!(
                    "Job {} failed after its lease was taken over: {error}",
                    job.id
                )
            }
            Err(e) => warn!(
                "Could not record the failure of job {} ({e}); it runs again after its lease",
                job.id
            ),
        }
    }
}
