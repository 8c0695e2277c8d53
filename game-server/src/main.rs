//! `game-server` binary: flags (command line, environment, `--config`
//! file), logging, signals; everything else is the library.

use gamemesh_game_server::{run, Config};

#[tokio::main]
async fn main() {
    let config: Config = gamemesh_node::config::parse("game-server", "GAME_SERVER_CONFIG");
    gamemesh_node::init_logging_as("info", config.node.log_format);
    let shutdown = gamemesh_node::shutdown_on_signal();
    gamemesh_node::exit_on_error("game-server", run(config, shutdown).await);
}
