//! The admin port over real HTTP: metrics move with traffic, and the
//! health endpoints follow what the node can do.
//!
//! Every node in this process records into the one global recorder, so
//! each `/metrics` shows the process's totals: the tests compare numbers
//! before and after their own traffic and never expect exact values.

use std::time::Duration;

use gamemesh_integration_tests::{
    free_port, game_server_config, gateway_config, init_tracing, start_game_server, wait_for_async,
    Cluster, ClusterOptions, RedisServer, TIMEOUT,
};
use gamemesh_proto::client::{client_packet, ClientPacket, EchoRequest};
use gamemesh_test_client::top::{get, node_line, render, scrape, Scrape};

const HTTP: Duration = Duration::from_secs(5);

async fn metrics(addr: std::net::SocketAddr) -> Scrape {
    scrape(&addr.to_string(), HTTP).await.expect("scrape")
}

async fn status(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    get(&addr.to_string(), path, HTTP).await.expect("GET")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_scraped_over_http_move_with_traffic() {
    let cluster = Cluster::start(1, 1).await;
    let gw = cluster.gateways[0].admin_addr;
    let gs = cluster.game_servers[0].admin_addr;
    let gw0 = metrics(gw).await;
    let gs0 = metrics(gs).await;

    let mut client = cluster.client(0).await;
    client.login(7001, "dev").await.expect("login");
    for i in 0..5u8 {
        client.echo(vec![i; 16]).await.expect("echo");
    }
    // A re-sent sequence id is a duplicate the idempotency layer catches.
    let seq = client.last_sequence();
    let dup = ClientPacket {
        sequence_id: seq,
        body: Some(client_packet::Body::Echo(EchoRequest {
            data: vec![4u8; 16].into(),
        })),
    };
    client.send(&dup).await.expect("re-send");
    client.recv(TIMEOUT).await.expect("replayed reply");

    let moved = |name: &'static str, label: &'static str, before: f64, by: f64| {
        move |s: &Scrape| s.sum(name, label) >= before + by
    };
    let gw_checks = [
        moved(
            "gamemesh_gateway_connections_accepted_total",
            "",
            gw0.sum("gamemesh_gateway_connections_accepted_total", ""),
            1.0,
        ),
        moved(
            "gamemesh_gateway_packets_in_total",
            "",
            gw0.sum("gamemesh_gateway_packets_in_total", ""),
            7.0,
        ),
        moved(
            "gamemesh_gateway_packets_out_total",
            "",
            gw0.sum("gamemesh_gateway_packets_out_total", ""),
            7.0,
        ),
        moved(
            "gamemesh_gateway_bytes_in_total",
            "",
            gw0.sum("gamemesh_gateway_bytes_in_total", ""),
            5.0 * 16.0,
        ),
    ];
    wait_for_async("gateway counters move", TIMEOUT, || async {
        let s = metrics(gw).await;
        gw_checks.iter().all(|c| c(&s))
    })
    .await;
    let gs_checks = [
        moved(
            "gamemesh_game_server_packets_in_total",
            "",
            gs0.sum("gamemesh_game_server_packets_in_total", ""),
            7.0,
        ),
        moved(
            "gamemesh_game_server_logins_total",
            "result=\"ok\"",
            gs0.sum("gamemesh_game_server_logins_total", "result=\"ok\""),
            1.0,
        ),
        moved(
            "gamemesh_game_server_handler_seconds_count",
            "kind=\"echo\"",
            gs0.sum(
                "gamemesh_game_server_handler_seconds_count",
                "kind=\"echo\"",
            ),
            5.0,
        ),
        moved(
            "gamemesh_game_server_middleware_seconds_count",
            "middleware=\"idempotency\"",
            gs0.sum(
                "gamemesh_game_server_middleware_seconds_count",
                "middleware=\"idempotency\"",
            ),
            // Sampled: the connection's first packet, then one in 16.
            1.0,
        ),
        moved(
            "gamemesh_game_server_duplicates_total",
            "",
            gs0.sum("gamemesh_game_server_duplicates_total", ""),
            1.0,
        ),
        moved(
            "gamemesh_redis_command_seconds_count",
            "",
            gs0.sum("gamemesh_redis_command_seconds_count", ""),
            1.0,
        ),
    ];
    wait_for_async("game server counters move", TIMEOUT, || async {
        let s = metrics(gs).await;
        gs_checks.iter().all(|c| c(&s))
    })
    .await;
    // Gauges are sampled every heartbeat (100 ms in tests).
    wait_for_async("session and link gauges are sampled", TIMEOUT, || async {
        let s = metrics(gs).await;
        s.sum("gamemesh_game_server_sessions", "") >= 1.0
            && s.sum("gamemesh_gateway_game_servers_live", "") >= 1.0
            && s.sum("gamemesh_game_server_gateways_linked", "") >= 1.0
    })
    .await;
    // The latency histograms have real buckets, so Prometheus can sum
    // them across nodes and `top` can take a p99.
    let s = metrics(gs).await;
    assert!(!s.buckets("gamemesh_game_server_handler_seconds").is_empty());
    cluster.shutdown().await;
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
