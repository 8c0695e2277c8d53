//! One bucket per key, in a table that forgets idle keys and holds at
//! most a set number of them.
//!
//! governor decides each take (its GCRA cells); the table is ours, for
//! three things governor's keyed stores do not do:
//!
//! - **A cap on keys.** Past [`KeyedLimiter::max_keys`] a new key is let
//!   through untracked ([`Verdict::Untracked`]) rather than refused: a
//!   flood of fresh keys (a botnet, spoofed ids) must not lock every
//!   newcomer out, and keys already tracked stay limited.
//! - **Sweeping a key as soon as its bucket is full again.** A full bucket
//!   is the same as an absent one, so dropping it changes nothing but
//!   memory. (governor's `retain_recent` keeps a key one refill interval
//!   longer.)
//! - **All or nothing over several keys** ([`KeyedLimiter::check_all`]):
//!   a login counts against its user and its IP, and one refused by either
//!   takes a token from neither; governor has no way to give one back.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::RateLimiter;
use tokio::time::Instant;

use super::{Rate, TokioClock};

/// Shortest gap between two sweeps forced by a full table, so a flood of
/// new keys costs one pass over the table a second, not one per key.
const FULL_TABLE_SWEEP_GAP: Duration = Duration::from_secs(1);

/// What [`KeyedLimiter::check`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the key's rate; a token was taken.
    Allowed,
    /// Over the key's rate: refuse.
    Refused,
    /// The table holds [`KeyedLimiter::max_keys`] keys and this one is not
    /// among them: let through, untracked.
    Untracked,
}

/// What [`KeyedLimiter::check_all`] let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passed {
    /// Some key went untracked (the table was full).
    pub untracked: bool,
}

/// Buckets by key, one rate per class of key (for example users and IPs),
/// all in one table with one cap.
#[derive(Debug)]
pub struct KeyedLimiter<K: Hash + Eq + Clone> {
    /// One governor limiter per rate, every one over the same cells.
    limiters: Vec<Limiter<K>>,
    /// Which rate a key is limited by (an index into `limiters`).
    rate_of: fn(&K) -> usize,
    /// The cells, shared with the limiters.
    cells: Cells<K>,
    /// Most keys tracked.
    max_keys: usize,
    /// How often a check first sweeps full buckets (`None`: only
    /// [`KeyedLimiter::sweep`] does).
    sweep_every: Option<Duration>,
    /// When the table was last swept. Its lock also makes a check (and
    /// all the takes of a [`KeyedLimiter::check_all`]) one step.
    swept: Mutex<Instant>,
    /// Read just after the limiters were made: governor counts cell times
    /// from their making, so a cell time at or before "now since origin"
    /// is in the past (reading it after, never before, means a sweep can
    /// only err towards keeping a bucket).
    origin: std::time::Instant,
}

/// One rate's limiter and the rate (for giving a token back).
#[derive(Debug)]
struct Limiter<K: Hash + Eq + Clone> {
    /// The rate.
    rate: Rate,
    /// governor's limiter over the shared cells.
    gcra: RateLimiter<K, Cells<K>, TokioClock, NoOpMiddleware<std::time::Instant>>,
}

/// What one take did.
enum Take {
    /// A token was taken; `new` when the key was not tracked before.
    Taken { new: bool },
    /// The bucket was empty.
    Refused,
    /// Not tracked, table full.
    Untracked,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// Every key at `rate`, no cap, swept only by [`KeyedLimiter::sweep`].
    pub fn new(rate: Rate) -> Self {
        Self::with_rates(&[rate], |_| 0)
    }

    /// Keys at `rates[rate_of(key)]` (an index past the end means the last
    /// rate), no cap, swept only by [`KeyedLimiter::sweep`].
    pub fn with_rates(rates: &[Rate], rate_of: fn(&K) -> usize) -> Self {
        assert!(!rates.is_empty(), "a keyed limiter needs a rate");
        let cells = Cells::default();
        let limiters = rates
            .iter()
            .map(|&rate| Limiter {
                rate,
                gcra: RateLimiter::new(rate.quota(), cells.clone(), TokioClock),
            })
            .collect();
        Self {
            limiters,
            rate_of,
            cells,
            max_keys: usize::MAX,
            sweep_every: None,
            swept: Mutex::new(Instant::now()),
            origin: TokioClock.now(),
        }
    }

    /// Tracks at most `max_keys` keys; past them new keys go
    /// [`Verdict::Untracked`].
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// A check first sweeps full buckets when the last sweep is `every`
    /// old.
    pub fn sweep_every(mut self, every: Duration) -> Self {
        self.sweep_every = Some(every);
        self
    }

    /// Takes a token for `key`.
    pub fn check(&self, key: &K) -> Verdict {
        let mut swept = self.lock();
        self.sweep_if_due(&mut swept);
        match self.take(key, &mut swept) {
            Take::Taken { .. } => Verdict::Allowed,
            Take::Refused => Verdict::Refused,
            Take::Untracked => Verdict::Untracked,
        }
    }

    /// Takes a token for every key when each has one, else takes none and
    /// says which key (its index) was refused first.
    pub fn check_all(&self, keys: &[K]) -> Result<Passed, usize> {
        let mut swept = self.lock();
        self.sweep_if_due(&mut swept);
        let mut taken = Vec::with_capacity(keys.len());
        let mut untracked = false;
        for (i, key) in keys.iter().enumerate() {
            match self.take(key, &mut swept) {
                Take::Taken { new } => taken.push((key, new)),
                Take::Untracked => untracked = true,
                Take::Refused => {
                    for (key, new) in taken {
                        self.give_back(key, new);
                    }
                    return Err(i);
                }
            }
        }
        Ok(Passed { untracked })
    }

    /// Drops the buckets that are full again now.
    pub fn sweep(&self) {
        let mut swept = self.lock();
        self.sweep_locked(&mut swept);
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.cells.lock().len()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Instant> {
        self.swept.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn limiter(&self, key: &K) -> &Limiter<K> {
        let i = (self.rate_of)(key).min(self.limiters.len() - 1);
        &self.limiters[i]
    }

    fn take(&self, key: &K, swept: &mut Instant) -> Take {
        let tracked = self.cells.lock().contains_key(key);
        if !tracked && !self.has_room(swept) {
            return Take::Untracked;
        }
        match self.limiter(key).gcra.check_key(key) {
            Ok(()) => Take::Taken { new: !tracked },
            Err(_) => Take::Refused,
        }
    }

    /// Room for one more key, after a sweep if the table is full (at most
    /// one such sweep per [`FULL_TABLE_SWEEP_GAP`]).
    fn has_room(&self, swept: &mut Instant) -> bool {
        if self.len() < self.max_keys {
            return true;
        }
        if swept.elapsed() >= FULL_TABLE_SWEEP_GAP {
            self.sweep_locked(swept);
        }
        self.len() < self.max_keys
    }

    /// Undoes one take: a key that was new is forgotten again, any other
    /// gets its token back (its cell moves one interval earlier).
    fn give_back(&self, key: &K, new: bool) {
        let mut cells = self.cells.lock();
        if new {
            cells.remove(key);
        } else if let Some(at) = cells.get_mut(key) {
            *at = at.saturating_sub(self.limiter(key).rate.interval().into());
        }
    }

    fn sweep_if_due(&self, swept: &mut Instant) {
        if self
            .sweep_every
            .is_some_and(|every| swept.elapsed() >= every)
        {
            self.sweep_locked(swept);
        }
    }

    fn sweep_locked(&self, swept: &mut Instant) {
        let now = Nanos::from(TokioClock.now().saturating_duration_since(self.origin));
        self.cells.lock().retain(|_, full_at| *full_at > now);
        *swept = Instant::now();
    }
}

/// The cells: per key, when its bucket is full again (nanoseconds since
/// its limiter was made).
struct Cells<K>(Arc<Mutex<HashMap<K, Nanos>>>);

impl<K> Cells<K> {
    fn lock(&self) -> MutexGuard<'_, HashMap<K, Nanos>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<K> Clone for Cells<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K> Default for Cells<K> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(HashMap::new())))
    }
}

impl<K> std::fmt::Debug for Cells<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cells({} keys)", self.lock().len())
    }
}

impl<K: Hash + Eq + Clone> StateStore for Cells<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut cells = self.lock();
        match cells.get_mut(key) {
            Some(at) => {
                let (out, next) = f(Some(*at))?;
                *at = next;
                Ok(out)
            }
            None => {
                let (out, next) = f(None)?;
                cells.insert(key.clone(), next);
                Ok(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn takes(l: &KeyedLimiter<u64>, key: u64, n: usize) -> usize {
        (0..n).filter(|_| l.check(&key) == Verdict::Allowed).count()
    }

    #[tokio::test(start_paused = true)]
    async fn each_key_has_its_own_bucket() {
        let l = KeyedLimiter::new(Rate::per_second(2).burst(4));
        assert_eq!(takes(&l, 1, 5), 4);
        assert_eq!(l.check(&2), Verdict::Allowed, "neighbour unaffected");
        tokio::time::advance(SEC / 2).await;
        assert_eq!(l.check(&1), Verdict::Allowed, "one token per 500 ms");
        assert_eq!(l.check(&1), Verdict::Refused);
        assert_eq!(l.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sweep_drops_exactly_the_buckets_that_are_full_again() {
        // 10 a minute: a token every 6 s.
        let l = KeyedLimiter::new(Rate::per_minute(10));
        assert_eq!(takes(&l, 1, 1), 1);
        assert_eq!(takes(&l, 2, 2), 2);
        tokio::time::advance(Duration::from_millis(5_999)).await;
        l.sweep();
        assert_eq!(l.len(), 2, "key 1 is full at 6 s, not before");
        tokio::time::advance(Duration::from_millis(1)).await;
        l.sweep();
        assert_eq!(l.len(), 1, "key 1 is full: forgotten");
        tokio::time::advance(6 * SEC).await;
        l.sweep();
        assert!(l.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn checks_sweep_by_themselves_when_asked_to() {
        let l = KeyedLimiter::new(Rate::per_minute(10)).sweep_every(60 * SEC);
        for key in 1..=100 {
            assert_eq!(l.check(&key), Verdict::Allowed);
        }
        tokio::time::advance(59 * SEC).await;
        assert_eq!(l.check(&500), Verdict::Allowed);
        assert_eq!(l.len(), 101, "no sweep before a minute");
        tokio::time::advance(SEC).await;
        assert_eq!(l.check(&501), Verdict::Allowed);
        assert_eq!(l.len(), 2, "keys 500 (not yet full) and 501");
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_cap_new_keys_pass_untracked_and_tracked_ones_stay_limited() {
        let l = KeyedLimiter::new(Rate::per_minute(1)).max_keys(2);
        assert_eq!(l.check(&1), Verdict::Allowed);
        assert_eq!(l.check(&2), Verdict::Allowed);
        for _ in 0..5 {
            assert_eq!(l.check(&3), Verdict::Untracked);
        }
        assert_eq!(l.len(), 2);
        assert_eq!(l.check(&1), Verdict::Refused);
        // Once their buckets are full again a new key finds room (the full
        // table sweeps by itself).
        tokio::time::advance(60 * SEC).await;
        assert_eq!(l.check(&3), Verdict::Allowed);
        assert_eq!(l.check(&3), Verdict::Refused);
        assert_eq!(l.len(), 1);
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    enum Key {
        User(u64),
        Ip(u8),
    }

    fn two_rates(user: u32, ip: u32) -> KeyedLimiter<Key> {
        KeyedLimiter::with_rates(
            &[Rate::per_minute(user), Rate::per_minute(ip)],
            |k| match k {
                Key::User(_) => 0,
                Key::Ip(_) => 1,
            },
        )
    }

    #[tokio::test(start_paused = true)]
    async fn each_class_of_key_has_its_rate() {
        let l = two_rates(2, 3);
        let user = (0..5).filter(|_| l.check(&Key::User(1)) == Verdict::Allowed);
        assert_eq!(user.count(), 2);
        let ip = (0..5).filter(|_| l.check(&Key::Ip(1)) == Verdict::Allowed);
        assert_eq!(ip.count(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn check_all_takes_from_every_key_or_from_none() {
        let l = two_rates(10, 2);
        let ip = Key::Ip(7);
        assert_eq!(
            l.check_all(&[Key::User(1), ip]),
            Ok(Passed { untracked: false })
        );
        assert_eq!(
            l.check_all(&[Key::User(2), ip]),
            Ok(Passed { untracked: false })
        );
        // The IP is spent: user 3 (new) and user 1 (tracked) are refused
        // by it and lose nothing.
        assert_eq!(l.check_all(&[Key::User(3), ip]), Err(1));
        assert_eq!(l.check_all(&[Key::User(1), ip]), Err(1));
        assert_eq!(l.len(), 3, "user 3 was not left behind");
        let user1 = (0..20).filter(|_| l.check(&Key::User(1)) == Verdict::Allowed);
        assert_eq!(user1.count(), 9, "user 1 lost only the token it used");
        // A refusal of the first key takes nothing from the second.
        assert_eq!(l.check_all(&[Key::User(1), Key::Ip(8)]), Err(0));
        assert_eq!(l.len(), 3, "IP 8 was not tracked");
    }

    #[tokio::test(start_paused = true)]
    async fn check_all_reports_keys_let_through_untracked() {
        let l = two_rates(10, 10).max_keys(1);
        assert_eq!(
            l.check_all(&[Key::User(1)]),
            Ok(Passed { untracked: false })
        );
        assert_eq!(
            l.check_all(&[Key::User(1), Key::Ip(1)]),
            Ok(Passed { untracked: true })
        );
    }
}
