//! The admin port over real HTTP: the health endpoints follow what the
//! node can do, and `top` reads a node's rate and p99.
//!
//! Every node in this process records into the one global recorder, so
//! each `/metrics` shows the process's totals. Only the `top` test here
//! sends client traffic, so the packet counters and the handler histogram
//! it reads move with its own traffic alone, whether the tests of this
//! binary run one per process (nextest) or side by side (cargo test).
//! The test that checks the counters themselves is in `ops_metrics.rs`,
//! a binary of its own.

use std::time::Duration;

use gamemesh_integration_tests::{
    free_port, game_server_config, gateway_config, init_tracing, start_game_server, wait_for_async,
    Cluster, ClusterOptions, RedisServer, TIMEOUT,
};
use gamemesh_test_client::top::{get, node_line, render, scrape, Scrape};

const HTTP: Duration = Duration::from_secs(5);

async fn metrics(addr: std::net::SocketAddr) -> Scrape {
    scrape(&addr.to_string(), HTTP).await.expect("scrape")
}

async fn status(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    get(&addr.to_string(), path, HTTP).await.expect("GET")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_turns_ready_once_a_game_server_links() {
    init_tracing();
    let redis = RedisServer::start();
    let gs_port = free_port();
    let gateway = gamemesh_integration_tests::start_gateway(gateway_config(1, &[gs_port]), 0).await;
    let admin = gateway.admin_addr;
    assert_eq!(status(admin, "/healthz").await.0, 200, "alive at once");
    let (code, body) = status(admin, "/readyz").await;
    assert_eq!(code, 503, "not ready without a game server: {body}");
    assert!(body.contains("no game server"), "{body}");

    let mut config = game_server_config(1, &redis.addr());
    config.p2p_port = gs_port;
    let gs = start_game_server(config).await;
    wait_for_async("the gateway is ready", Duration::from_secs(10), || async {
        status(admin, "/readyz").await.0 == 200
    })
    .await;

    gateway.shutdown.cancel();
    let _ = gateway.task.await;
    gs.shutdown.cancel();
    let _ = gs.task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn game_server_is_not_ready_while_its_redis_is_down() {
    let mut cluster = Cluster::start_with(ClusterOptions {
        gateways: 0,
        game_servers: 1,
        ..ClusterOptions::default()
    })
    .await;
    let admin = cluster.game_servers[0].admin_addr;
    assert_eq!(status(admin, "/readyz").await.0, 200);

    cluster.redis.stop();
    wait_for_async("not ready without Redis", TIMEOUT, || async {
        let (code, body) = status(admin, "/readyz").await;
        code == 503 && body.contains("session store")
    })
    .await;
    assert_eq!(status(admin, "/healthz").await.0, 200, "still alive");

    cluster.redis.restart();
    wait_for_async(
        "ready again with Redis back",
        Duration::from_secs(10),
        || async { status(admin, "/readyz").await.0 == 200 },
    )
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_shows_a_node_with_its_packet_rate_and_p99() {
    let cluster = Cluster::start(1, 1).await;
    let addr = cluster.game_servers[0].admin_addr;
    let admin = addr.to_string();
    let first = (std::time::Instant::now(), metrics(addr).await);
    let mut client = cluster.client(0).await;
    client.login(7002, "dev").await.expect("login");
    client.echo(vec![1u8; 8]).await.expect("echo");
    // Counters only grow, so once a scrape shows the traffic every later
    // one does too.
    let line_now = || async {
        let now = (std::time::Instant::now(), metrics(addr).await);
        node_line(&admin, Some(&first), Some(&now))
    };
    wait_for_async("top sees the traffic", TIMEOUT, || async {
        let l = line_now().await;
        l.packets_per_sec.is_some_and(|p| p > 0.0) && l.p99_ms.is_some()
    })
    .await;
    let line = line_now().await;
    // In one process the gateway's metrics are in the same registry.
    assert!(matches!(line.role, "game-server" | "both"), "{line:?}");
    let table = render(std::slice::from_ref(&line));
    assert!(
        table.contains(&admin) && table.contains("1/1 nodes up"),
        "{table}"
    );
    cluster.shutdown().await;
}
