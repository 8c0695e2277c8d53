//! "Kick after N in a window": counts events (frames answered
//! `RATE_LIMITED`, frames that are not the contract) in fixed windows, and
//! says when the count reaches the limit.
//!
//! The window is opened by the first event after the last window ran out,
//! not by the clock: simple, and at worst it lets 2 x (N - 1) through in
//! one window's length, which is still a bound. Owned by one connection's
//! task, so it needs no lock; the caller passes the time in.

use std::time::Duration;

use tokio::time::Instant;

/// One connection's count of recent events.
#[derive(Debug, Clone)]
pub struct FixedWindow {
    /// The event that trips (1: the first one).
    trip_at: u32,
    /// Length of a window.
    window: Duration,
    /// Start of the current window.
    start: Instant,
    /// Events in it (0: no window open).
    count: u32,
}

/// What one more event means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tally {
    /// The first event of a window (worth one log line).
    Opened,
    /// More in the same window, below the limit.
    Counted,
    /// The limit is reached: the caller kicks.
    Tripped,
}

impl FixedWindow {
    /// A window of `window` in which the `trip_at`-th event (at least the
    /// first) trips.
    pub fn new(trip_at: u32, window: Duration) -> Self {
        Self {
            trip_at: trip_at.max(1),
            window,
            start: Instant::now(),
            count: 0,
        }
    }

    /// Counts one event at `now`.
    pub fn record(&mut self, now: Instant) -> Tally {
        if self.count == 0 || now.saturating_duration_since(self.start) >= self.window {
            self.start = now;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        if self.count >= self.trip_at {
            Tally::Tripped
        } else if self.count == 1 {
            Tally::Opened
        } else {
            Tally::Counted
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);
    const WINDOW: Duration = Duration::from_secs(10);

    #[test]
    fn the_nth_event_within_the_window_trips() {
        let t = Instant::now();
        let mut w = FixedWindow::new(3, WINDOW);
        assert_eq!(w.record(t), Tally::Opened);
        assert_eq!(w.record(t + SEC), Tally::Counted);
        assert_eq!(w.record(t + 2 * SEC), Tally::Tripped);
    }

    #[test]
    fn a_new_window_starts_the_count_over() {
        let t = Instant::now();
        let mut w = FixedWindow::new(3, WINDOW);
        assert_eq!(w.record(t), Tally::Opened);
        assert_eq!(w.record(t), Tally::Counted);
        let t1 = t + WINDOW;
        assert_eq!(w.record(t1), Tally::Opened);
        assert_eq!(w.record(t1 + SEC), Tally::Counted);
        assert_eq!(w.record(t1 + 2 * SEC), Tally::Tripped);
    }

    #[test]
    fn events_spread_beyond_the_window_never_trip() {
        let t = Instant::now();
        let mut w = FixedWindow::new(3, WINDOW);
        for i in 0..10 {
            assert_ne!(w.record(t + 6 * i * SEC), Tally::Tripped, "event {i}");
        }
    }

    #[test]
    fn the_window_opens_at_the_first_event_not_at_creation() {
        let t = Instant::now();
        let mut w = FixedWindow::new(3, WINDOW);
        // Created at t; events at 9 s, 10.5 s and 11 s are one window.
        assert_eq!(w.record(t + 9 * SEC), Tally::Opened);
        assert_eq!(w.record(t + 10 * SEC + SEC / 2), Tally::Counted);
        assert_eq!(w.record(t + 11 * SEC), Tally::Tripped);
    }

    #[test]
    fn a_limit_of_one_trips_at_once_and_zero_means_one() {
        let t = Instant::now();
        assert_eq!(FixedWindow::new(1, WINDOW).record(t), Tally::Tripped);
        assert_eq!(FixedWindow::new(0, WINDOW).record(t), Tally::Tripped);
    }
}
