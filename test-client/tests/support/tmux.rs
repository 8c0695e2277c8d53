//! Driving a terminal program through tmux, as a person would: start it in
//! a detached session of a known size, press keys, read the screen.
//!
//! Every test gets its own tmux server on its own socket (`-S`, in the
//! temp directory), so it neither sees nor disturbs anyone's tmux; the
//! server is killed and the socket removed on drop.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// One tmux server with one session running a command.
pub struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Starts `command` (run by `sh -c`) in a detached `width` x `height`
    /// session. Fails, saying how to install it, when tmux is missing.
    pub fn start(name: &str, command: &str, width: u16, height: u16) -> Tmux {
        let tmux = Tmux {
            socket: std::env::temp_dir().join(format!("gm-tmux-{name}-{}", std::process::id())),
        };
        let out = tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "main",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            command,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run tmux ({e}): install it (apt-get install tmux) to run this test")
            })
    }

    /// Presses keys, in tmux's names (`Right`, `Up`, `q`).
    pub fn send_keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "main"];
        args.extend_from_slice(keys);
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "tmux send-keys failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The screen as text, one line per row.
    pub fn capture(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", "main"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls the screen until `wanted` holds, and returns it; panics with
    /// the last screen after `timeout`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.capture();
            if wanted(&screen) {
                return screen;
            }
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting for {what}; the screen:\n{screen}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for `text` on the screen; stops early when the program
    /// exited without showing it (see [`arena_command`]).
    pub async fn wait_for_text(&self, text: &str, timeout: Duration) -> String {
        let screen = self
            .wait_for(&format!("{text:?} on the screen"), timeout, |s| {
                s.contains(text) || s.contains(EXITED)
            })
            .await;
        assert!(
            screen.contains(text),
            "the program exited before {text:?} showed; the screen:\n{screen}"
        );
        screen
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// What [`arena_command`] prints when the program has exited.
pub const EXITED: &str = "exit status";

/// The shell command that runs `test-client arena` against `addr` and then
/// prints its exit status and stays, so the last screen can be read.
pub fn arena_command(addr: &str, room: &str, user: u64) -> String {
    format!(
        "{} --addr {addr} --timeout-ms 3000 arena --room {room} --user {user}; \
         echo \"{EXITED} $?\"; sleep 600",
        env!("CARGO_BIN_EXE_test-client")
    )
}
