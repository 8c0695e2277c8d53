//! The bounded local work queue: long work a request handler hands off,
//! run by a fixed number of workers.
//!
//! Memory is bounded by `capacity` waiting items. When the queue is full a
//! producer either waits ([`WorkQueue::submit`]) or is refused at once with
//! [`QueueError::Busy`] ([`WorkQueue::try_submit`]), which a request handler
//! answers with `RATE_LIMITED`.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

/// Why work was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// Every worker is busy and the queue is full: try again later.
    #[error("the work queue is full; try again later")]
    Busy,
    /// The queue is shutting down.
    #[error("the work queue is shut down")]
    Closed,
}

type Work = BoxFuture<'static, ()>;

/// A bounded queue with a fixed set of workers; cheap to clone.
#[derive(Clone)]
pub struct WorkQueue {
    /// Into the queue; its bound is the queue's capacity.
    tx: mpsc::Sender<Work>,
}

impl WorkQueue {
    /// Starts `workers` workers on `tracker`, over a queue of `capacity`
    /// waiting items. Workers stop when `shutdown` is cancelled, after the
    /// item each is running; items still waiting are dropped.
    pub fn start(
        workers: usize,
        capacity: usize,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<Work>(capacity.max(1));
        // Workers take turns at the one receiver; holding the lock while
        // waiting is what makes an idle worker the next to take an item.
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..workers.max(1) {
            let rx = rx.clone();
            let shutdown = shutdown.clone();
            tracker.spawn(async move {
                loop {
                    let work = tokio::select! {
                        _ = shutdown.cancelled() => break,
                        w = async { rx.lock().await.recv().await } => match w {
                            Some(w) => w,
                            None => break,
                        },
                    };
                    // A panic is one item's failure, not the worker's end.
                    if AssertUnwindSafe(work).catch_unwind().await.is_err() {
                        warn!("A work queue item panicked");
                    }
                }
            });
        }
        Self { tx }
    }

    /// Queues `work`, waiting while the queue is full.
    pub async fn submit<F>(&self, work: F) -> Result<(), QueueError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tx
            .send(work.boxed())
            .await
            .map_err(|_| QueueError::Closed)
    }

    /// Queues `work`, or refuses it at once when the queue is full.
    pub fn try_submit<F>(&self, work: F) -> Result<(), QueueError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tx.try_send(work.boxed()).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                metrics::counter!("gamemesh_work_queue_rejected_total").increment(1);
                QueueError::Busy
            }
            mpsc::error::TrySendError::Closed(_) => QueueError::Closed,
        })
    }

    /// Free places in the queue now.
    pub fn free(&self) -> usize {
        self.tx.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tokio::sync::Semaphore;

    #[tokio::test]
    async fn a_full_queue_refuses_then_takes_work_again() {
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let q = WorkQueue::start(1, 2, &tracker, shutdown.clone());
        // The one worker blocks on the gate; two items fill the queue.
        let gate = Arc::new(Semaphore::new(0));
        let started = Arc::new(Semaphore::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let item = |gate: Arc<Semaphore>, started: Arc<Semaphore>, done: Arc<AtomicUsize>| async move {
            started.add_permits(1);
            let _ = gate.acquire().await.map(|p| p.forget());
            done.fetch_add(1, Ordering::SeqCst);
        };
        q.try_submit(item(gate.clone(), started.clone(), done.clone()))
            .unwrap();
        // Wait until the worker took the first item out of the queue.
        let _ = started.acquire().await.unwrap();
        q.try_submit(item(gate.clone(), started.clone(), done.clone()))
            .unwrap();
        q.try_submit(item(gate.clone(), started.clone(), done.clone()))
            .unwrap();
        assert_eq!(
            q.try_submit(async {}),
            Err(QueueError::Busy),
            "a third waiting item is refused"
        );
        // A waiting producer gets in once the worker moves on.
        let waiter = {
            let q = q.clone();
            let (g, s, d) = (gate.clone(), started.clone(), done.clone());
            tokio::spawn(async move { q.submit(item(g, s, d)).await })
        };
        gate.add_permits(4);
        waiter.await.unwrap().unwrap();
        gamemesh_test_support::wait_for("all four items ran", Duration::from_secs(5), || {
            done.load(Ordering::SeqCst) == 4
        })
        .await;
        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
        assert_eq!(q.try_submit(async {}), Err(QueueError::Closed));
    }

    #[tokio::test]
    async fn a_panicking_item_does_not_stop_its_worker() {
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let q = WorkQueue::start(1, 4, &tracker, shutdown.clone());
        q.submit(async { panic!("boom") }).await.unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        q.submit(async move {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .unwrap();
        gamemesh_test_support::wait_for("the next item ran", Duration::from_secs(5), || {
            ran.load(Ordering::SeqCst) == 1
        })
        .await;
        shutdown.cancel();
    }
}
