//! Disconnect saves that failed, retried until the store answers again.
//!
//! When a socket closes, its session's final progress is saved as
//! disconnected and resumable (`SessionStore::disconnect`). If the store is
//! down at that moment the save used to be dropped: the record kept its
//! last flushed progress, still "connected", and a resume lost every id
//! executed since. Now the failed save is queued here and retried with
//! exponential backoff (100 ms doubling to 5 s) until it lands, is fenced
//! (the session moved on meanwhile), or its resume grace has passed (the
//! session would have expired by then anyway: saving it is pointless).
//! Each retry saves with what is left of the grace, so a session saved
//! late still expires when it would have.
//!
//! Bounded: at most [`CAPACITY`] saves wait; past that a failed save is
//! dropped, as before, and counted. One WARN line per burst of failures
//! (the node's [`LogThrottle`]), one INFO line per burst that landed, one
//! WARN line per batch given up. Metrics:
//! `gamemesh_game_server_save_retries_total{result}` (`queued`, `saved`,
//! `fenced`, `gave_up`, `dropped`) and the gauge
//! `gamemesh_game_server_save_retries_pending`.
//!
//! Only the disconnect save needs this: a connected session's progress is
//! saved again by the flusher's every pass (it stays dirty on failure).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gamemesh_node::log_throttle::LogThrottle;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Progress, SessionStore, StoreError};

/// Most failed saves waiting at once.
pub const CAPACITY: usize = 10_000;
/// Wait before the first retry.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Least time between two "save failed" lines.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// One failed disconnect save.
#[derive(Debug)]
pub struct Failed {
    /// What to save.
    progress: Progress,
    /// When the session disconnected: its grace counts from here.
    since: Instant,
    /// Its resume grace.
    grace: Duration,
}

impl Failed {
    /// The grace left now; `None` once it has passed.
    fn grace_left(&self) -> Option<Duration> {
        self.grace
            .checked_sub(self.since.elapsed())
            .filter(|d| !d.is_zero())
    }
}

/// The queue's sending side, kept in the game server's state.
#[derive(Debug)]
pub struct SaveRetries {
    /// To the retry task.
    tx: mpsc::Sender<Failed>,
    /// Saves queued and not yet landed, fenced or given up.
    pending: Arc<AtomicUsize>,
    /// One "save failed" line per burst.
    log: LogThrottle,
}

/// The queue's receiving side, for [`run`].
#[derive(Debug)]
pub struct Receiver {
    /// From [`SaveRetries::push`].
    rx: mpsc::Receiver<Failed>,
    /// Shared with [`SaveRetries`].
    pending: Arc<AtomicUsize>,
}

impl SaveRetries {
    /// A queue of at most `capacity` saves, and its receiving side.
    pub fn new(capacity: usize) -> (Self, Receiver) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let pending = Arc::new(AtomicUsize::new(0));
        let retries = Self {
            tx,
            pending: pending.clone(),
            log: LogThrottle::new(LOG_EVERY),
        };
        (retries, Receiver { rx, pending })
    }

    /// Queues the disconnect save of `progress` that failed with `error`,
    /// resumable for `grace` from now. False when the queue is full (or
    /// its task stopped): the save is dropped.
    pub fn push(&self, progress: Progress, grace: Duration, error: &StoreError) -> bool {
        let session_id = progress.session_id;
        let failed = Failed {
            progress,
            since: Instant::now(),
            grace,
        };
        // Counted before it is sent, so the task never sees it uncounted.
        self.pending.fetch_add(1, Ordering::AcqRel);
        if self.tx.try_send(failed).is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            count("dropped", 1);
            warn!(
                "Could not save disconnected SessionId={session_id}: {error}; the retry queue is full ({CAPACITY}), so it expires from the store by its TTL"
            );
            return false;
        }
        count("queued", 1);
        if let Some(held) = self.log.allow() {
            warn!(
                "Could not save disconnected SessionId={session_id}: {error}; retrying with backoff until the store answers ({held} more such failures since the last line)"
            );
        }
        true
    }

    /// Saves waiting (tests wait on it; the gauge reports it).
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }
}

fn count(result: &'static str, n: u64) {
    metrics::counter!("gamemesh_game_server_save_retries_total", "result" => result).increment(n);
}

/// Retries the queued saves on `store` until `shutdown`.
pub async fn run(store: Arc<dyn SessionStore>, mut queue: Receiver, shutdown: CancellationToken) {
    let mut waiting: VecDeque<Failed> = VecDeque::new();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let retry_at = (!waiting.is_empty()).then(|| Instant::now() + backoff);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            got = queue.rx.recv() => match got {
                Some(f) => {
                    // A fresh failure waits for the current backoff too.
                    waiting.push_back(f);
                    continue;
                }
                None => break,
            },
            _ = sleep_until(retry_at) => {}
        }
        give_up_expired(&mut waiting, &queue.pending);
        if waiting.is_empty() {
            backoff = FIRST_BACKOFF;
            continue;
        }
        backoff = match retry(store.as_ref(), &mut waiting, &queue.pending).await {
            Ok(()) => FIRST_BACKOFF,
            Err(()) => (backoff * 2).min(MAX_BACKOFF),
        };
        gauge(&queue.pending);
    }
    if !waiting.is_empty() {
        warn!(
            "Stopping with {} disconnected sessions still unsaved; they expire from the store by their TTL",
            waiting.len()
        );
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn gauge(pending: &AtomicUsize) {
    metrics::gauge!("gamemesh_game_server_save_retries_pending")
        .set(pending.load(Ordering::Acquire) as f64);
}

/// Drops the saves whose grace has passed, with one line for all.
fn give_up_expired(waiting: &mut VecDeque<Failed>, pending: &AtomicUsize) {
    let before = waiting.len();
    let first = waiting
        .iter()
        .find(|f| f.grace_left().is_none())
        .map(|f| f.progress.session_id);
    waiting.retain(|f| f.grace_left().is_some());
    let gone = before - waiting.len();
    if let Some(first) = first {
        pending.fetch_sub(gone, Ordering::AcqRel);
        count("gave_up", gone as u64);
        warn!(
            "Gave up saving {gone} disconnected sessions (SessionId={first}, ...): the store did not answer within their resume grace; they expire from the store by their TTL"
        );
    }
}

/// One round: the oldest save probes the store; if it lands, the rest
/// follow at once. `Err` when the store still fails.
async fn retry(
    store: &dyn SessionStore,
    waiting: &mut VecDeque<Failed>,
    pending: &AtomicUsize,
) -> Result<(), ()> {
    let Some(probe) = waiting.pop_front() else {
        return Ok(());
    };
    if save(store, &probe).await.is_err() {
        waiting.push_front(probe);
        return Err(());
    }
    let mut settled = vec![probe];
    let rest: Vec<Failed> = waiting.drain(..).collect();
    let results = futures::future::join_all(rest.iter().map(|f| save(store, f))).await;
    for (f, r) in rest.into_iter().zip(results) {
        match r {
            Ok(()) => settled.push(f),
            Err(()) => waiting.push_back(f),
        }
    }
    pending.fetch_sub(settled.len(), Ordering::AcqRel);
    info!(
        "Saved {} disconnected sessions after the store answered again ({} still waiting)",
        settled.len(),
        waiting.len()
    );
    if waiting.is_empty() {
        Ok(())
    } else {
        Err(())
    }
}

/// Saves one; `Err` when the store failed. Fenced counts as settled.
async fn save(store: &dyn SessionStore, f: &Failed) -> Result<(), ()> {
    let grace = f.grace_left().unwrap_or(Duration::from_millis(1));
    match store.disconnect(&f.progress, grace).await {
        Ok(true) => {
            count("saved", 1);
            Ok(())
        }
        Ok(false) => {
            // Moved on meanwhile (resumed elsewhere, replaced): its new
            // owner has it.
            count("fenced", 1);
            Ok(())
        }
        Err(_) => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::memory::MemoryStore;

    fn progress(session_id: u64) -> Progress {
        Progress {
            user_id: session_id,
            session_id,
            epoch: 1,
            last_seq: 3,
            replies: Vec::new(),
            first_reply: 0,
            keep: 32,
            counter: 0,
        }
    }

    fn failed(session_id: u64, grace: Duration) -> Failed {
        Failed {
            progress: progress(session_id),
            since: Instant::now(),
            grace,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn saves_past_their_grace_are_given_up_and_the_rest_kept() {
        let pending = AtomicUsize::new(2);
        let mut waiting: VecDeque<Failed> = [
            failed(1, Duration::from_secs(1)),
            failed(2, Duration::from_secs(60)),
        ]
        .into();
        tokio::time::advance(Duration::from_secs(2)).await;
        give_up_expired(&mut waiting, &pending);
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].progress.session_id, 2);
        assert_eq!(pending.load(Ordering::Acquire), 1);
    }

    #[tokio::test]
    async fn a_full_queue_drops_the_save_and_says_so() {
        let (retries, _rx) = SaveRetries::new(1);
        let e = StoreError::Unavailable("down".into());
        assert!(retries.push(progress(1), Duration::from_secs(60), &e));
        assert!(!retries.push(progress(2), Duration::from_secs(60), &e));
        assert_eq!(retries.pending(), 1);
    }

    #[tokio::test]
    async fn a_fenced_save_is_settled_not_retried() {
        // The memory store has no such session: the save is fenced.
        let store = MemoryStore::new();
        let pending = AtomicUsize::new(1);
        let mut waiting: VecDeque<Failed> = [failed(7, Duration::from_secs(60))].into();
        assert_eq!(retry(&store, &mut waiting, &pending).await, Ok(()));
        assert!(waiting.is_empty());
        assert_eq!(pending.load(Ordering::Acquire), 0);
    }
}
