//! `game-server` binary: the stock game server with the built-in modules.
//! Flags (command line, environment, `--config` file), logging and signals
//! are the library's [`gamemesh_game_server::main`], the path a studio's
//! own binary takes too.

/// mimalloc rather than glibc's malloc: under load, malloc and free were
/// about a quarter of the game server's CPU (BENCHMARKS.md, "The
/// allocator"). A studio's binary declares its own allocator the same way.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    gamemesh_game_server::main("game-server", |server| server).await;
}
