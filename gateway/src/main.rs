//! `gateway` binary: flags (command line, environment, `--config` file),
//! logging, signals; everything else is the library.

use gamemesh_gateway::{run, Config};

/// mimalloc rather than glibc's malloc, as in the game server (BENCHMARKS.md,
/// "The allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let config: Config = gamemesh_node::config::parse("gateway", "GATEWAY_CONFIG");
    gamemesh_node::init_logging_as("info", config.node.log_format);
    let shutdown = gamemesh_node::shutdown_on_signal();
    gamemesh_node::exit_on_error("gateway", run(config, shutdown).await);
}
