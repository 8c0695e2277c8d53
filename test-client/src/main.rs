//! `test-client`: parses flags, sets up logging, runs the command, and
//! turns the outcome into an exit status (0 all good, 1 otherwise).
//!
//! No `#[tokio::main]`: each command picks its runtime (`bench` must run
//! on a current-thread one), see [`cli::execute`].

use std::process::ExitCode;

use clap::Parser;
use gamemesh_test_client::cli::{self, Cli};

/// mimalloc, as the servers use: the load generator shares the cores with
/// the servers it measures, so what it spends in malloc is taken from them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr at `warn` unless RUST_LOG says otherwise, so stdout
    // is just the command's own lines (PASS/FAIL for the scenario, the JSON
    // line for bench).
    gamemesh_node::init_logging("warn");
    match cli::execute(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            // One plain line: every error in the chain, no backtrace.
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
