//! Stalling a server process for a test: SIGSTOP leaves it alive to the
//! kernel, its connections open, deaf to everyone (a frozen VM, a long
//! GC-like stall), and SIGCONT wakes it. `kill(1)` sends the signals: the
//! workspace forbids unsafe code, so no `libc::kill`.

use std::time::{Duration, Instant};

/// Sends `signal` (`-STOP`, `-CONT`, `-TERM`...) to `pid`.
///
/// # Panics
///
/// If `kill` fails (no such process).
pub fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid} failed");
}

/// SIGSTOP to `pid`, returning once every thread of it is stopped: `kill`
/// returns before the signal is delivered, and a request sent in between
/// would still be served. `what` names the process in the panic.
///
/// # Panics
///
/// If it is not stopped within `within`.
pub async fn stop_and_wait_stopped(pid: u32, within: Duration, what: &str) {
    signal(pid, "-STOP");
    let deadline = Instant::now() + within;
    loop {
        let states = thread_states(pid);
        if !states.is_empty() && states.iter().all(|s| *s == 'T') {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} (pid {pid}) not stopped {within:?} after SIGSTOP: thread states {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The scheduler state (`R`, `S`, `T`, ...) of every thread of process
/// `pid`, from `/proc/<pid>/task/*/stat` (Linux); empty if it is gone.
fn thread_states(pid: u32) -> Vec<char> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
        // "tid (comm) S ...": the command may hold spaces and parentheses,
        // so the state is the first field after the last ')'.
        .filter_map(|stat| stat.rsplit_once(')')?.1.trim_start().chars().next())
        .collect()
}
