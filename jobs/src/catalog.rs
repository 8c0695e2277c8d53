//! The job kinds and events the game server defines, shared with the
//! admin tool (`test-client admin`) so both spell them the same way.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::events::Event;
use crate::job::JobSpec;
use crate::store::JobStore;
use crate::JobsError;

/// Job kind of the daily reset (a recurring job).
pub const DAILY_RESET: &str = "daily_reset";
/// Name of the daily reset's recurring job.
pub const DAILY_RESET_CRON: &str = "daily-reset";
/// Job kind of the start of a timed in-game event.
pub const GAME_EVENT_START: &str = "game_event_start";
/// Job kind of the end of a timed in-game event.
pub const GAME_EVENT_END: &str = "game_event_end";

/// Payload of [`GAME_EVENT_START`] and [`GAME_EVENT_END`] jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameEvent {
    /// The event's name, shown to players.
    pub name: String,
    /// How long it lasts, in seconds (shown in the start notice).
    pub duration_secs: u64,
}

/// A notice for every online player, published cluster-wide; each game
/// server pushes it to the players connected to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// What it is about (`daily_reset`, `event_start`, `event_end`).
    pub kind: String,
    /// Text for the player.
    pub text: String,
    /// When it was sent, Unix ms.
    pub sent_at_ms: i64,
}

impl Event for Notice {
    const TYPE: &'static str = "notice";
}

/// Schedules a timed in-game event: its start job after `start_in`, and its
/// end job as a continuation of the start, `duration` after the start ran
/// (so an event that never started never ends either). Returns the ids of
/// both jobs.
pub async fn schedule_game_event(
    store: &JobStore,
    name: &str,
    start_in: Duration,
    duration: Duration,
) -> Result<(String, String), JobsError> {
    let payload = serde_json::to_string(&GameEvent {
        name: name.to_string(),
        duration_secs: duration.as_secs(),
    })?;
    let start = store
        .enqueue_in(&JobSpec::new(GAME_EVENT_START, payload.clone()), start_in)
        .await?;
    let end = store
        .enqueue_then(&start, &JobSpec::new(GAME_EVENT_END, payload), duration)
        .await?;
    Ok((start, end))
}
