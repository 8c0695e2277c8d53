//! The `gateway` binary's configuration and log format, run as a child
//! process with a clean environment: file values, env over file, command
//! line over env, unknown keys, `--print-config` round trip, `--help`
//! defaults, JSON log lines.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A temp file removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "gamemesh-gateway-cli-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).expect("write the config file");
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The binary with no inherited environment, so only what a test sets
/// counts.
fn gateway() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    cmd.env_clear();
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the gateway binary runs")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn config_file_values_replace_the_defaults() {
    let file = TempFile::new(
        "values",
        "client-port = 6001\ngame-servers = [\"10.0.0.1:9001\", \"10.0.0.2:9001\"]\nlog-format = \"json\"\n",
    );
    let out = stdout(&run(gateway().args([
        "--config",
        file.path(),
        "--print-config",
    ])));
    assert!(out.contains("client-port = 6001\n"), "{out}");
    assert!(
        out.contains("game-servers = [\"10.0.0.1:9001\", \"10.0.0.2:9001\"]"),
        "{out}"
    );
    assert!(out.contains("log-format = \"json\""), "{out}");
    assert!(out.contains("admin-port = 9190\n"), "defaults stay: {out}");
}

#[test]
fn env_overrides_the_file_and_the_command_line_overrides_env() {
    let file = TempFile::new("precedence", "client-port = 6001\nnode-id = 4\n");
    let out = stdout(&run(gateway()
        .env("GATEWAY_CONFIG", file.path())
        .env("GATEWAY_CLIENT_PORT", "6002")
        .arg("--print-config")));
    assert!(out.contains("client-port = 6002\n"), "env over file: {out}");
    assert!(
        out.contains("node-id = 4\n"),
        "the file is read from GATEWAY_CONFIG: {out}"
    );
    let out = stdout(&run(gateway()
        .env("GATEWAY_CONFIG", file.path())
        .env("GATEWAY_CLIENT_PORT", "6002")
        .args(["--client-port", "6003", "--print-config"])));
    assert!(out.contains("client-port = 6003\n"), "CLI over env: {out}");
}

#[test]
fn an_unknown_key_is_an_error_naming_it() {
    let file = TempFile::new("unknown", "client-prot = 6001\n");
    let o = run(gateway().args(["--config", file.path()]));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("gateway: unknown key `client-prot`"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one plain sentence: {err}");
}

#[test]
fn print_config_output_is_a_config_file_that_gives_the_same_config() {
    let first = stdout(&run(gateway().args([
        "--client-port",
        "7001",
        "--game-servers",
        "a:1,b:2",
        "--max-connections",
        "77",
        "--print-config",
    ])));
    let file = TempFile::new("roundtrip", &first);
    let second = stdout(&run(gateway().args([
        "--config",
        file.path(),
        "--print-config",
    ])));
    assert_eq!(first, second);
}

#[test]
fn help_names_each_default_and_env_twin() {
    let help = stdout(&run(gateway().arg("--help")));
    for want in [
        "--admin-port",
        "[env: GATEWAY_ADMIN_PORT=]",
        "[default: 9190]",
        "[env: GATEWAY_LOG_FORMAT=]",
        "--config",
        "[env: GATEWAY_CONFIG=]",
        "--print-config",
    ] {
        assert!(help.contains(want), "--help lacks {want}: {help}");
    }
}

#[test]
fn json_log_format_writes_one_parseable_object_per_line() {
    let mut child = gateway()
        .args([
            "--log-format",
            "json",
            "--client-bind",
            "127.0.0.1",
            "--client-port",
            "0",
            "--p2p-port",
            "0",
            "--admin-port",
            "0",
            // Nothing answers there; the gateway starts anyway.
            "--game-servers",
            "127.0.0.1:1",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the gateway");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let found = loop {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => {
                let v: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                let msg = v["fields"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                seen.push(line);
                if msg.starts_with("Gateway 1 listening for clients on 127.0.0.1:") {
                    break Some(v);
                }
            }
            Err(_) => break None,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let v = found.unwrap_or_else(|| panic!("no start-up line in JSON; saw {seen:#?}"));
    assert_eq!(v["level"], "INFO", "{v}");
    assert!(v["timestamp"].is_string(), "{v}");
}
