//! Keeps a flood from becoming a log flood: one line per interval, for the
//! whole process ([`LogThrottle`]) or per key ([`KeyedLogThrottle`]: a
//! peer, a user), counting the lines held back so the next one can say
//! how many there were.
//!
//! Time is tokio's clock, so paused-time tests drive it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// One line per interval.
#[derive(Debug)]
pub struct LogThrottle {
    /// Least time between two lines.
    every: Duration,
    /// The last line and what was held back since.
    slot: Mutex<Slot>,
}

impl LogThrottle {
    /// A throttle letting one line through per `every`.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            slot: Mutex::new(Slot::default()),
        }
    }

    /// `Some(n)` when a line may be logged now (`n` were held back since
    /// the last one), `None` when this one is held back.
    pub fn allow(&self) -> Option<u64> {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        slot.allow(Instant::now(), self.every)
    }
}

/// One line per key per interval, for at most a set number of keys: past
/// them (after forgetting the keys whose interval is over) lines about new
/// keys are held back, so a flood of fresh keys cannot grow the table.
#[derive(Debug)]
pub struct KeyedLogThrottle<K> {
    /// Least time between two lines about one key.
    every: Duration,
    /// Most keys remembered.
    max_keys: usize,
    /// Per key, its last line and what was held back since.
    slots: Mutex<HashMap<K, Slot>>,
}

impl<K: Hash + Eq + Clone> KeyedLogThrottle<K> {
    /// A throttle letting one line per key through per `every`,
    /// remembering at most `max_keys` keys.
    pub fn new(every: Duration, max_keys: usize) -> Self {
        Self {
            every,
            max_keys,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// As [`LogThrottle::allow`], for the lines about `key`.
    pub fn allow(&self, key: &K) -> Option<u64> {
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get_mut(key) {
            return slot.allow(now, self.every);
        }
        if slots.len() >= self.max_keys {
            // A key whose interval is over is the same as an absent one.
            slots.retain(|_, slot| !slot.is_over(now, self.every));
            if slots.len() >= self.max_keys {
                return None;
            }
        }
        slots.entry(key.clone()).or_default().allow(now, self.every)
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One throttled stream of lines.
#[derive(Debug, Default)]
struct Slot {
    /// When the last line went out.
    last: Option<Instant>,
    /// Lines held back since.
    held_back: u64,
}

impl Slot {
    fn allow(&mut self, now: Instant, every: Duration) -> Option<u64> {
        if self.is_over(now, every) {
            self.last = Some(now);
            Some(std::mem::take(&mut self.held_back))
        } else {
            self.held_back += 1;
            None
        }
    }

    /// True when a line may go out at `now`.
    fn is_over(&self, now: Instant, every: Duration) -> bool {
        self.last
            .is_none_or(|at| now.saturating_duration_since(at) >= every)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn one_line_per_interval_counting_what_it_holds_back() {
        let t = LogThrottle::new(SEC);
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), None);
        tokio::time::advance(SEC / 2).await;
        assert_eq!(t.allow(), None);
        tokio::time::advance(SEC / 2).await;
        assert_eq!(t.allow(), Some(2));
        assert_eq!(t.allow(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_throttled_apart() {
        let t = KeyedLogThrottle::new(60 * SEC, 100);
        assert_eq!(t.allow(&"a"), Some(0));
        assert_eq!(t.allow(&"b"), Some(0), "another key has its own line");
        assert_eq!(t.allow(&"a"), None);
        assert_eq!(t.allow(&"a"), None);
        tokio::time::advance(60 * SEC).await;
        assert_eq!(t.allow(&"a"), Some(2));
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_cap_new_keys_are_held_back_until_old_ones_expire() {
        let t = KeyedLogThrottle::new(10 * SEC, 2);
        assert_eq!(t.allow(&1), Some(0));
        assert_eq!(t.allow(&2), Some(0));
        assert_eq!(t.allow(&3), None, "table full");
        assert_eq!(t.len(), 2);
        tokio::time::advance(10 * SEC).await;
        assert_eq!(t.allow(&3), Some(0), "expired keys made room");
        assert_eq!(t.len(), 1);
    }
}
