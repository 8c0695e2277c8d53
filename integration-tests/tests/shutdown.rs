//! Graceful shutdown: a game server that stops releases its sessions (saved
//! as resumable, clients kicked with `SERVER_SHUTDOWN`); a gateway that
//! stops kicks its clients with `SERVER_SHUTDOWN`.

use std::time::Duration;

use gamemesh_integration_tests::{wait_for, Cluster, RedisBackend, TIMEOUT};
use gamemesh_proto::client::{server_packet, KickReason};

fn kick_reason(p: &gamemesh_proto::client::ServerPacket) -> Option<i32> {
    match &p.body {
        Some(server_packet::Body::Kicked(k)) => Some(k.reason),
        _ => None,
    }
}

async fn a_stopping_game_server_kicks_its_clients_and_leaves_their_sessions_resumable(
    backend: RedisBackend,
) {
    let mut cluster = Cluster::start_on(backend, 1, 2).await;
    // Find a client served by game server 1.
    let (mut client, login) = loop {
        let mut c = cluster.client(0).await;
        let l = c.login(rand_user(), "dev").await.expect("login");
        if l.game_server_node_id == 1 {
            break (c, l);
        }
    };
    client.echo("before").await.expect("echo");
    let last = client.last_sequence();

    let gs1 = cluster.game_servers.remove(0);
    gs1.shutdown.cancel();
    let push = client
        .next_push(TIMEOUT)
        .await
        .expect("a push before the close");
    assert_eq!(kick_reason(&push), Some(KickReason::ServerShutdown as i32));
    assert!(
        client.wait_closed(TIMEOUT).await,
        "socket closed after the kick"
    );
    tokio::time::timeout(Duration::from_secs(10), gs1.task)
        .await
        .expect("game server stops within its grace")
        .expect("game server task");

    // The session survived as resumable and comes back on game server 2
    // with its sequence watermark.
    let mut again = cluster.client(0).await;
    let snapshot = again
        .resume(login.session_id, &login.resume_token)
        .await
        .expect("resume after the old owner stopped");
    assert_eq!(snapshot.last_sequence_id, last);
    assert_eq!(snapshot.game_server_node_id, 2);
    again.set_next_sequence(last + 1);
    assert_eq!(again.echo("after").await.expect("echo"), "after");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_gateway_kicks_its_clients_with_server_shutdown() {
    let cluster = Cluster::start(2, 1).await;
    let mut on_first = cluster.client(0).await;
    on_first.login(rand_user(), "dev").await.expect("login");
    let mut on_second = cluster.client(1).await;
    on_second.login(rand_user(), "dev").await.expect("login");

    cluster.gateways[0].shutdown.cancel();
    let push = on_first
        .next_push(TIMEOUT)
        .await
        .expect("a push before the close");
    assert_eq!(kick_reason(&push), Some(KickReason::ServerShutdown as i32));
    assert!(on_first.wait_closed(TIMEOUT).await);
    // The other gateway's client carries on.
    assert_eq!(
        on_second.echo("still here").await.expect("echo"),
        "still here"
    );
    // The stopped gateway's session is saved as disconnected (resumable).
    let keys = cluster.session_keys();
    wait_for("the kicked session is marked disconnected", TIMEOUT, || {
        let mut c = cluster.redis_conn();
        keys.iter()
            .any(|k| redis_connected(&mut c, k) == Some(false))
    })
    .await;
    cluster.shutdown().await;
}

fn redis_connected(c: &mut impl redis::ConnectionLike, key: &str) -> Option<bool> {
    let v: Option<String> = redis::cmd("HGET").arg(key).arg("connected").query(c).ok()?;
    v.map(|v| v == "1")
}

fn rand_user() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    1_000_000 + NEXT.fetch_add(1, Ordering::Relaxed) + u64::from(std::process::id()) * 1000
}

gamemesh_integration_tests::on_both_redis!(
    a_stopping_game_server_kicks_its_clients_and_leaves_their_sessions_resumable,
);
