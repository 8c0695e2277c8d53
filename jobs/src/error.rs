//! The errors of the jobs crate.

/// What can go wrong talking to the job store or the event bus.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// Redis could not be reached or answered with an error.
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A Redis call took longer than its bound.
    #[error("Redis did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The Redis address could not be parsed.
    #[error("bad Redis address {addr:?}: {reason}")]
    BadAddress {
        /// The address as given, its password hidden.
        addr: String,
        /// Why it was refused.
        reason: String,
    },
    /// A cron expression that does not parse.
    #[error("bad cron expression {expr:?}: {reason} (six fields, seconds first, UTC: e.g. \"0 0 0 * * *\" for midnight)")]
    BadCron {
        /// The expression as given.
        expr: String,
        /// What the parser said.
        reason: String,
    },
    /// A cron expression that never fires again.
    #[error("cron expression {0:?} has no future occurrence")]
    CronExhausted(String),
    /// A continuation named a parent job that is not stored (never was, or
    /// finished longer ago than the retention).
    #[error("no job {0:?} to continue from")]
    UnknownParent(String),
    /// A payload or event that does not (de)serialize.
    #[error("payload: {0}")]
    Payload(#[from] serde_json::Error),
}
