//! Modules' background jobs, cron schedules and cluster-event handlers.
//!
//! The job runner and event listener are the game server's own (from
//! `gamemesh-jobs`, on its Redis connection). Modules register what they
//! handle on the [`App`](super::App); when the game server starts them,
//! it asks the runtime to add the modules' handlers
//! ([`GameRuntime::install_jobs`](super::GameRuntime::install_jobs),
//! [`GameRuntime::install_events`](super::GameRuntime::install_events)).
//! Each handler gets the [`Game`] as its first argument, so a job can push
//! to players, touch player data or publish an event like a route can.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use gamemesh_jobs::{BoxError, CronJob, Event, EventHandlers, Handlers, Job};

use super::game::Game;

/// A job handler with the game to hand it.
type JobFn = Arc<dyn Fn(Game, Job) -> BoxFuture<'static, Result<(), BoxError>> + Send + Sync>;

/// Adds one event handler, given the game, to the listener's handlers.
type EventInstaller = Box<dyn Fn(&mut EventHandlers, Game) + Send + Sync>;

/// What modules registered for the background.
#[derive(Default)]
pub(crate) struct Registry {
    /// Job kind -> handler.
    jobs: Vec<(String, JobFn)>,
    /// Recurring jobs.
    crons: Vec<CronJob>,
    /// Event handlers.
    events: Vec<EventInstaller>,
}

impl Registry {
    pub(crate) fn job<F, Fut>(&mut self, kind: String, f: F)
    where
        F: Fn(Game, Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.jobs
            .push((kind, Arc::new(move |game, job| f(game, job).boxed())));
    }

    pub(crate) fn has_job(&self, kind: &str) -> bool {
        self.jobs.iter().any(|(k, _)| k == kind)
    }

    pub(crate) fn cron(&mut self, job: CronJob) {
        self.crons.push(job);
    }

    pub(crate) fn event<E, F, Fut>(&mut self, name: String, f: F)
    where
        E: Event,
        F: Fn(Game, E) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        let f = Arc::new(f);
        self.events.push(Box::new(move |handlers, game| {
            let f = f.clone();
            handlers.on::<E, _, _>(name.clone(), move |e| f(game.clone(), e));
        }));
    }

    /// Adds every job handler and cron schedule to `handlers`.
    pub(crate) fn install_jobs(&self, handlers: &mut Handlers, game: &Game) {
        for (kind, f) in &self.jobs {
            let (f, game) = (f.clone(), game.clone());
            handlers.on(kind.clone(), move |job| f(game.clone(), job));
        }
        for c in &self.crons {
            handlers.cron(c.clone());
        }
    }

    /// Adds every event handler to `handlers`.
    pub(crate) fn install_events(&self, handlers: &mut EventHandlers, game: &Game) {
        for install in &self.events {
            install(handlers, game.clone());
        }
    }

    /// Job kinds, sorted (start-up log).
    pub(crate) fn job_kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self.jobs.iter().map(|(k, _)| k.clone()).collect();
        kinds.sort();
        kinds
    }
}
