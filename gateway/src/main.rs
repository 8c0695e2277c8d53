//! `gateway` binary: flags, logging, signals; everything else is the
//! library.

use clap::Parser;
use gamemesh_gateway::{run, Config};

#[tokio::main]
async fn main() {
    let config = Config::parse();
    gamemesh_node::init_logging("info");
    let shutdown = gamemesh_node::shutdown_on_signal();
    gamemesh_node::exit_on_error("gateway", run(config, shutdown).await);
}
