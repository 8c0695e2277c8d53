//! Background jobs, cron schedules and cluster events for gamemesh, with
//! Redis as the store. Used by the game server (runner and listener) and by
//! `test-client admin` (operators).
//!
//! Modules:
//!
//! - [`store`]: [`JobStore`], the jobs in Redis: enqueue now, after a
//!   delay, at a time, or after another job succeeded; atomic claims under
//!   leases; retries; the failed list; recurring jobs (one occurrence per
//!   tick across the cluster). Every change is one Lua script.
//! - [`runner`]: claims due jobs and runs them on a fixed number of
//!   workers, renewing leases; retries with [`Backoff`]; releases running
//!   jobs on shutdown.
//! - [`schedule`]: cron expressions (UTC) and their next run.
//! - [`job`]: [`JobSpec`], [`Job`], [`JobInfo`], [`Backoff`].
//! - [`queue`]: [`WorkQueue`], the bounded local work queue.
//! - [`events`]: [`EventBus`], typed events over Redis pub/sub, handled on
//!   every server through the work queue.
//! - [`source`]: [`RedisSource`], where the store gets its connections
//!   (the game server's own, which follow a Sentinel failover), and
//!   [`source::PlainRedis`] for one plain address.
//! - [`catalog`]: the job kinds and events the game server defines.
//!
//! The path of a job: `enqueue_in` writes `gm:{jobs}:job:<id>` and puts the
//! id in `gm:{jobs}:due`; when due, one runner's `claim` moves it to
//! `gm:{jobs}:running` with a lease and runs its handler; `complete` marks
//! it done and makes its continuations due, `fail` schedules a retry or
//! moves it to `gm:{jobs}:failed`.

pub mod catalog;
pub mod error;
pub mod events;
pub mod job;
pub mod queue;
pub mod runner;
pub mod schedule;
pub mod source;
pub mod store;

pub use error::JobsError;
pub use events::{Event, EventBus, EventHandlers};
pub use job::{Backoff, Job, JobInfo, JobSpec, JobState};
pub use queue::{QueueError, WorkQueue};
pub use runner::{BoxError, Handlers, RunnerConfig};
pub use schedule::CronSchedule;
pub use source::RedisSource;
pub use store::{CronJob, JobStore};
