//! What a job is: the spec an enqueuer writes, the claimed job a handler
//! gets, what an operator inspects, and the retry backoff.

use std::collections::HashMap;
use std::time::Duration;

/// Attempts a job gets unless its spec says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// Which handler runs it.
    pub kind: String,
    /// Handler input, opaque to the store (JSON by convention).
    pub payload: String,
    /// Attempts before the job moves to the failed list (at least 1).
    pub max_attempts: u32,
}

impl JobSpec {
    /// A job of `kind` with `payload` and the default attempts.
    pub fn new(kind: impl Into<String>, payload: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            payload: payload.into(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }

    /// The same job with `n` attempts (at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }
}

/// A job claimed by this runner, as its handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Its id (a UUID, or `cron:<name>:<tick ms>` for a cron occurrence).
    pub id: String,
    /// Which handler runs it.
    pub kind: String,
    /// Handler input.
    pub payload: String,
    /// This attempt, from 1.
    pub attempt: u32,
    /// Attempts it gets in all.
    pub max_attempts: u32,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for its time (or due now) in the due set.
    Queued,
    /// A continuation waiting for its parent to succeed.
    Waiting,
    /// Claimed by a runner, under a lease.
    Running,
    /// Failed, waiting for its next attempt.
    Retrying,
    /// Succeeded (kept for the retention, then gone).
    Done,
    /// Out of attempts: in the failed list.
    Failed,
}

impl JobState {
    /// The word stored in Redis and printed to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Waiting => "waiting",
            JobState::Running => "running",
            JobState::Retrying => "retrying",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }

    /// Parses a stored word.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => JobState::Queued,
            "waiting" => JobState::Waiting,
            "running" => JobState::Running,
            "retrying" => JobState::Retrying,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            _ => return None,
        })
    }
}

/// Everything stored about one job, for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    /// Its id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// Its state (`None` if the stored word is unknown).
    pub state: Option<JobState>,
    /// Attempts made so far.
    pub attempts: u32,
    /// Attempts it gets.
    pub max_attempts: u32,
    /// When it is (or was) due, Unix ms.
    pub run_at_ms: i64,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// Every stored field, as stored (payload, owner, parent, ...).
    pub fields: HashMap<String, String>,
}

impl JobInfo {
    /// Builds it from a job hash; `None` for an empty (missing) hash.
    pub(crate) fn from_fields(id: &str, fields: HashMap<String, String>) -> Option<Self> {
        if fields.is_empty() {
            return None;
        }
        let num = |k: &str| fields.get(k).and_then(|v| v.parse::<i64>().ok());
        Some(Self {
            id: id.to_string(),
            kind: fields.get("kind").cloned().unwrap_or_default(),
            state: fields.get("state").and_then(|s| JobState::parse(s)),
            attempts: num("attempts").unwrap_or(0).max(0) as u32,
            max_attempts: num("max_attempts").unwrap_or(0).max(0) as u32,
            run_at_ms: num("run_at").unwrap_or(0),
            last_error: fields.get("last_error").filter(|e| !e.is_empty()).cloned(),
            fields,
        })
    }
}

/// Exponential backoff with jitter between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure (before jitter).
    pub base: Duration,
    /// Ceiling of the delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The ceiling before jitter after failed attempt `attempt` (from 1):
    /// `base * 2^(attempt-1)`, capped at `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay after failed attempt `attempt`: uniformly between half the
    /// ceiling and the ceiling, so servers that failed together do not all
    /// retry in the same millisecond, while the delay still grows.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        let spread = (ceiling - half).as_millis() as u64;
        half + Duration::from_millis(rand::random_range(0..=spread))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_ceiling_with_jitter_below_it() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(b.ceiling(1), Duration::from_millis(100));
        assert_eq!(b.ceiling(2), Duration::from_millis(200));
        assert_eq!(b.ceiling(4), Duration::from_millis(800));
        assert_eq!(b.ceiling(5), Duration::from_secs(1));
        assert_eq!(b.ceiling(200), Duration::from_secs(1));
        for attempt in 1..10 {
            let d = b.delay(attempt);
            let c = b.ceiling(attempt);
            assert!(
                d >= c / 2 && d <= c,
                "attempt {attempt}: {d:?} not in [{:?}, {c:?}]",
                c / 2
            );
        }
    }

    #[test]
    fn states_round_trip_their_stored_words() {
        for s in [
            JobState::Queued,
            JobState::Waiting,
            JobState::Running,
            JobState::Retrying,
            JobState::Done,
            JobState::Failed,
        ] {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
        }
        assert_eq!(JobState::parse("lost"), None);
    }
}
