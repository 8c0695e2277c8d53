//! `game-server` binary: the stock game server with the built-in modules.
//! Flags (command line, environment, `--config` file), logging and signals
//! are the library's [`gamemesh_game_server::main`], the path a studio's
//! own binary takes too.

#[tokio::main]
async fn main() {
    gamemesh_game_server::main("game-server", |server| server).await;
}
