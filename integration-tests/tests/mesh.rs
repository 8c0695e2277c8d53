//! The service mesh between game servers: a push for a user reaches it on
//! whatever game server and gateway its session lives; a duplicate login
//! tells the old owner over the mesh to drop the session.

use gamemesh_game_server::api::Push;
use gamemesh_game_server::state::HubState;
use gamemesh_integration_tests::{wait_for, Cluster, RedisBackend, TIMEOUT};
use gamemesh_proto::client::{server_packet, EchoResponse, ServerPacket};

fn push(data: &'static [u8]) -> ServerPacket {
    ServerPacket {
        sequence_id: 0,
        body: Some(server_packet::Body::Echo(EchoResponse {
            data: bytes::Bytes::from_static(data),
        })),
    }
}

/// A push to `user` from game server `from`, through the game API's
/// pusher (as game code pushes); whether the user was connected.
async fn push_to(from: &HubState, user: u64, packet: ServerPacket) -> bool {
    let game = from.game().expect("the game runs");
    let push = Push::packet(packet.body.expect("a body"));
    game.game()
        .push()
        .send_to_user(user, &push)
        .await
        .expect("the session store answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_reaches_a_user_on_another_game_server_and_gateway() {
    let cluster = Cluster::start(2, 2).await;
    let _sender = cluster.client_on(0, 1, 71).await;
    let mut receiver = cluster.client_on(1, 2, 72).await;

    // From game server 1, where user 72 is not: through the mesh to 2.
    let from_gs1 = &cluster.game_servers[0].state;
    assert!(from_gs1.sessions.by_user(72).is_none());
    assert!(push_to(from_gs1, 72, push(b"hello from node 1")).await);
    let got = receiver.next_push(TIMEOUT).await.expect("the push arrives");
    assert_eq!(got, push(b"hello from node 1"));

    // A user with no session is offline.
    assert!(!push_to(from_gs1, 73, push(b"x")).await);
    cluster.shutdown().await;
}

async fn a_duplicate_login_elsewhere_tells_the_old_owner_to_drop_the_session(
    backend: RedisBackend,
) {
    let cluster = Cluster::start_on(backend, 1, 2).await;
    let mut first = cluster.client_on(0, 1, 81).await;
    let old = cluster.game_servers[0]
        .state
        .sessions
        .by_user(81)
        .expect("owned by game server 1")
        .session;
    let _second = cluster.client_on(0, 2, 81).await;
    assert!(first.wait_closed(TIMEOUT).await, "the old socket is kicked");
    let gs1 = cluster.game_servers[0].state.clone();
    wait_for("game server 1 drops the replaced session", TIMEOUT, || {
        old.is_ended() && gs1.sessions.by_user(81).is_none()
    })
    .await;
    cluster.shutdown().await;
}

gamemesh_integration_tests::on_both_redis!(
    a_duplicate_login_elsewhere_tells_the_old_owner_to_drop_the_session,
);
