//! What every gamemesh process shares, so `gateway`, `game-server` and
//! `test-client` start, log and stop the same way, and each small building
//! block exists once.
//!
//! The edge:
//!
//! - [`init_logging`] / [`init_logging_as`]: logs filtered by `RUST_LOG`,
//!   human-readable or JSON lines ([`LogFormat`], `--log-format`).
//! - [`config`]: flags from the command line, the environment and a TOML
//!   file (`--config`), and `--print-config`, for any clap parser.
//! - [`flags`]: the flags both nodes take (node id, heartbeat, admin port,
//!   cluster secret, ...), declared once, and the start-up warning of a
//!   node without a cluster secret.
//! - [`admin`]: the admin port (`/metrics`, `/healthz`, `/readyz`) and the
//!   process's one Prometheus recorder.
//! - [`wait_for_signal`] / [`shutdown_on_signal`]: SIGINT (Ctrl-C) and
//!   SIGTERM become one `CancellationToken`, the only shutdown path the
//!   libraries know.
//! - [`exit_on_error`]: a start-up failure ends the process with one plain
//!   sentence and status 1, never a backtrace; [`error::StartError`] holds
//!   the failures every node can have.
//!
//! The building blocks:
//!
//! - [`rate_limit`]: a token bucket, and buckets per key (IP, user,
//!   session) with idle sweep and a cap on keys.
//! - [`fixed_window`]: "kick after N in a window".
//! - [`log_throttle`]: one log line per interval, globally or per key.
//! - [`kick_metrics`]: the kicks-by-reason counters both nodes export.
//! - [`redis_address`]: Redis addresses parsed, normalised and redacted.
//! - [`redis_connection`]: one connection type over one Redis, Sentinel
//!   and Redis Cluster, for every store built on Redis.
//! - [`peer_gate`]: the cluster-secret check on every message that arrives
//!   on an internal port.

pub mod admin;
pub mod config;
pub mod error;
pub mod fixed_window;
pub mod flags;
pub mod http_server;
pub mod kick_metrics;
pub mod log_throttle;
pub mod peer_gate;
pub mod rate_limit;
pub mod redis_address;
pub mod redis_connection;

use std::fmt::Display;

use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event (the default).
    #[default]
    Text,
    /// One JSON object per line, for log shippers (Loki, Elasticsearch,
    /// Cloud Logging): the message keeps its wording under `fields.message`.
    Json,
}

/// Logs human-readable lines to stderr (stdout stays for a program's own
/// output, e.g. the test client's PASS/FAIL lines or bench JSON), filtered
/// by `RUST_LOG`, or by `default_filter` when it is unset or invalid.
pub fn init_logging(default_filter: &str) {
    init_logging_as(default_filter, LogFormat::Text);
}

/// [`init_logging`] in the given format.
pub fn init_logging_as(default_filter: &str, format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM. Errors only if the signal
/// handlers cannot be installed.
pub async fn wait_for_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// A token cancelled on the first SIGINT or SIGTERM. The listening task
/// lives as long as the process: it is the process's own edge, not work a
/// library owns.
pub fn shutdown_on_signal() -> CancellationToken {
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        match wait_for_signal().await {
            Ok(()) => tracing::info!("Shutdown requested"),
            Err(e) => tracing::warn!("Cannot watch SIGINT/SIGTERM ({e}); stopping"),
        }
        on_signal.cancel();
    });
    shutdown
}

/// Ends the process with `<program>: <error>` and status 1 if `result` is
/// an error.
pub fn exit_on_error<E: Display>(program: &str, result: Result<(), E>) {
    if let Err(e) = result {
        eprintln!("{program}: {e}");
        std::process::exit(1);
    }
}
