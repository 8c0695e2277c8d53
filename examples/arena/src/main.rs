//! `arena-server`: the stock game server plus the arena module. It takes
//! every flag, environment variable and `--config` key `game-server`
//! takes (see `arena-server --help`); this file is all a studio's binary
//! needs.

use gamemesh_arena::Arena;

/// mimalloc rather than glibc's malloc: under load, malloc and free were
/// about a quarter of the game server's CPU (BENCHMARKS.md, "The
/// allocator"). A studio's binary declares its own allocator the same way.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    gamemesh_game_server::main("arena-server", |server| server.module(Arena::default())).await;
}
