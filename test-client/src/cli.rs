//! Command-line interface: flags (each with an environment twin) and the
//! dispatch to the commands. Lives in the library so it can be tested
//! without spawning the binary.

use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::{commands, scenario};

/// gamemesh test client: speaks the client protocol to a gateway.
#[derive(Debug, Parser)]
#[command(name = "test-client", version, about)]
pub struct Cli {
    /// Gateway address (host:port).
    #[arg(
        long,
        global = true,
        env = "GAMEMESH_ADDR",
        default_value = "127.0.0.1:5000"
    )]
    pub addr: String,

    /// Shared login secret; without it the token "dev" is sent, which only
    /// servers running without a secret accept.
    #[arg(long, global = true, env = "AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,

    /// Bound on every connect and wait, in milliseconds.
    #[arg(
        long,
        global = true,
        env = "GAMEMESH_TIMEOUT_MS",
        default_value_t = 5000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub timeout_ms: u64,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The bound on every wait.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// The subcommands. `bench`, `echo-server` and `chat` will join them as
/// further variants (load mode goes in `load.rs`).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in once and print the LoginResponse.
    Login {
        /// User id to log in as (random when absent).
        #[arg(long, env = "GAMEMESH_USER")]
        user: Option<u64>,
    },
    /// Log in, then echo TEXT and print each reply with its round-trip time.
    Echo {
        /// The text to echo.
        text: String,
        /// User id to log in as (random when absent).
        #[arg(long, env = "GAMEMESH_USER")]
        user: Option<u64>,
        /// How many echoes to send, one after the other.
        #[arg(
            long,
            env = "GAMEMESH_ECHO_COUNT",
            default_value_t = 1,
            value_parser = clap::value_parser!(u32).range(1..)
        )]
        count: u32,
    },
    /// Walk through the protocol contract, printing PASS/FAIL per step.
    Scenario {
        /// User id to use (random when absent).
        #[arg(long, env = "GAMEMESH_USER")]
        user: Option<u64>,
        /// A second gateway for the duplicate-login connection (defaults to
        /// --addr).
        #[arg(long, env = "GAMEMESH_ADDR2")]
        addr2: Option<String>,
    },
}

/// Runs the parsed command line. `Ok(false)` means the command ran but a
/// check failed (exit status 1); `Err` is a one-sentence reason it could
/// not run.
pub async fn run(cli: Cli) -> anyhow::Result<bool> {
    let timeout = cli.timeout();
    let secret = cli.auth_secret.as_deref();
    match cli.command {
        Command::Login { user } => commands::login(&cli.addr, secret, user, timeout).await,
        Command::Echo {
            ref text,
            user,
            count,
        } => commands::echo(&cli.addr, secret, user, text, count, timeout).await,
        Command::Scenario { user, ref addr2 } => {
            let opts = scenario::ScenarioOptions {
                addr: cli.addr.clone(),
                addr2: addr2.clone(),
                auth_secret: cli.auth_secret.clone(),
                user,
                timeout,
            };
            scenario::run(&opts).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "test-client",
            "echo",
            "hi",
            "--count",
            "3",
            "--addr",
            "10.0.0.1:7000",
            "--timeout-ms",
            "250",
        ])
        .unwrap();
        assert_eq!(cli.addr, "10.0.0.1:7000");
        assert_eq!(cli.timeout(), Duration::from_millis(250));
        assert!(
            matches!(cli.command, Command::Echo { ref text, count: 3, user: None } if text == "hi")
        );

        let cli =
            Cli::try_parse_from(["test-client", "--addr", "h:1", "scenario", "--addr2", "h:2"])
                .unwrap();
        assert_eq!(cli.addr, "h:1");
        assert!(matches!(cli.command, Command::Scenario { addr2: Some(ref a), .. } if a == "h:2"));
    }

    #[test]
    fn zero_counts_and_timeouts_are_refused() {
        assert!(Cli::try_parse_from(["test-client", "echo", "x", "--count", "0"]).is_err());
        assert!(Cli::try_parse_from(["test-client", "--timeout-ms", "0", "login"]).is_err());
    }
}
