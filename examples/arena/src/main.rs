//! `arena-server`: the stock game server plus the arena module. It takes
//! every flag, environment variable and `--config` key `game-server`
//! takes (see `arena-server --help`); this file is all a studio's binary
//! needs.

use gamemesh_arena::Arena;

#[tokio::main]
async fn main() {
    gamemesh_game_server::main("arena-server", |server| server.module(Arena::default())).await;
}
