//! `game-server` binary: flags, logging, signals; everything else is the
//! library.

use clap::Parser;
use gamemesh_game_server::{run, Config};

#[tokio::main]
async fn main() {
    let config = Config::parse();
    gamemesh_node::init_logging("info");
    let shutdown = gamemesh_node::shutdown_on_signal();
    gamemesh_node::exit_on_error("game-server", run(config, shutdown).await);
}
