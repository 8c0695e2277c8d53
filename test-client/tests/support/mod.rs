//! Helpers shared by the arena tests (not a test target of its own).

#![allow(dead_code)] // each test file uses its own part

pub mod mock_arena;
pub mod replies;
pub mod tmux;

use std::time::Duration;

use gamemesh_test_client::arena::demo;
use gamemesh_test_client::arena::proto::MoveRequest;
use gamemesh_test_client::arena::wire;
use gamemesh_test_client::Client;

/// Logs in and joins `room` as `user` with a plain client, then takes
/// `steps` to the right: the other player the arena tests look for.
pub async fn other_player(addr: &str, room: &str, user: u64, steps: usize) -> Client {
    let mut c = Client::connect(addr).await.unwrap();
    c.login(user, "dev").await.unwrap();
    demo::join(&mut c, room, Duration::from_secs(10))
        .await
        .unwrap();
    for _ in 0..steps {
        c.call(wire::request(wire::MOVE, &MoveRequest { dx: 1, dy: 0 }))
            .await
            .unwrap();
    }
    c
}
