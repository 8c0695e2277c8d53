//! Polling a condition with a deadline: "wait on a condition, never sleep for
//! luck".
//!
//! The deadline is measured with [`std::time::Instant`] (wall clock), not
//! tokio's clock. Under `tokio::time::pause()` tokio's clock jumps forward
//! whenever the runtime is idle, including while it waits on real I/O (a
//! redis-server, a ZeroMQ socket), so a tokio-clock deadline would expire at
//! once. With the wall clock the timeout means what it says in both modes;
//! the 10 ms poll sleep still uses tokio so other tasks run in between.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often conditions are re-checked: short enough that tests do not idle,
/// long enough not to spin a core.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Polls `f` every 10 ms until it returns `true`.
///
/// `f` is checked once more at the deadline, so a condition that became true
/// during the last sleep is not reported as a timeout.
///
/// # Panics
///
/// If `f` is still `false` after `timeout`, with a message naming `what`
/// (write it as the thing awaited: "session stored in redis").
pub async fn wait_for<F: FnMut() -> bool>(what: &str, timeout: Duration, mut f: F) {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return;
        }
        if Instant::now() >= deadline {
            // One last look: the sleep may have overshot the deadline.
            if f() {
                return;
            }
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Like [`wait_for`], for conditions that must `.await` (a Redis `GET`, a
/// request to a server). `f` is called again for each check.
///
/// A single check that hangs is not interrupted; give the I/O inside `f` its
/// own timeout if it can block.
///
/// # Panics
///
/// If no check returned `true` within `timeout`, with a message naming
/// `what`.
pub async fn wait_for_async<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return;
        }
        if Instant::now() >= deadline {
            if f().await {
                return;
            }
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn returns_once_condition_holds() {
        let flag = Arc::new(AtomicBool::new(false));
        let setter = Arc::clone(&flag);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            setter.store(true, Ordering::SeqCst);
        });
        wait_for(
            "flag set by the spawned task",
            Duration::from_secs(5),
            || flag.load(Ordering::SeqCst),
        )
        .await;
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for: the impossible")]
    async fn panics_with_what_on_timeout() {
        wait_for("the impossible", Duration::from_millis(50), || false).await;
    }

    #[tokio::test]
    async fn async_variant_polls_until_true() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        wait_for_async("third check", Duration::from_secs(5), move || {
            let c = Arc::clone(&c);
            async move { c.fetch_add(1, Ordering::SeqCst) + 1 >= 3 }
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for: never ready")]
    async fn async_variant_panics_on_timeout() {
        wait_for_async("never ready", Duration::from_millis(50), || async { false }).await;
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_is_wall_clock_under_paused_time() {
        // With tokio's clock paused, a tokio-clock deadline would be reached
        // in virtual time at once; the wall-clock one lets a real thread
        // finish its work.
        let flag = Arc::new(AtomicBool::new(false));
        let setter = Arc::clone(&flag);
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            setter.store(true, Ordering::SeqCst);
        });
        wait_for("flag set by a real thread", Duration::from_secs(5), || {
            flag.load(Ordering::SeqCst)
        })
        .await;
        thread.join().expect("setter thread");
    }
}
