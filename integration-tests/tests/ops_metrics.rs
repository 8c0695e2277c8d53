//! The admin port's `/metrics` over real HTTP moves with a client's
//! traffic: gateway and game server counters, the session and link gauges,
//! and real histogram buckets.
//!
//! Every node in a process records into the one global recorder, so
//! `/metrics` shows the process's totals. This test is the only one in
//! its binary (`cargo test` runs a binary's tests side by side in one
//! process): what moves here is its own cluster's traffic and no other
//! test's, and the gauges are its own nodes' samples.

use gamemesh_integration_tests::{wait_for_async, Cluster, TIMEOUT};
use gamemesh_proto::client::{client_packet, ClientPacket, EchoRequest};
use gamemesh_test_client::top::{scrape, Scrape};
use std::time::Duration;

const HTTP: Duration = Duration::from_secs(5);

async fn metrics(addr: std::net::SocketAddr) -> Scrape {
    scrape(&addr.to_string(), HTTP).await.expect("scrape")
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

    // A check that `name{label}` moved by `by` since the scrape `before`.
    let moved = |before: &Scrape, name: &'static str, label: &'static str, by: f64| {
        let from = before.sum(name, label);
        move |s: &Scrape| s.sum(name, label) >= from + by
    };
    let gw_checks = [
        moved(&gw0, "gamemesh_gateway_connections_accepted_total", "", 1.0),
        moved(&gw0, "gamemesh_gateway_packets_in_total", "", 7.0),
        moved(&gw0, "gamemesh_gateway_packets_out_total", "", 7.0),
        moved(&gw0, "gamemesh_gateway_bytes_in_total", "", 5.0 * 16.0),
    ];
    wait_for_async("gateway counters move", TIMEOUT, || async {
        let s = metrics(gw).await;
        gw_checks.iter().all(|c| c(&s))
    })
    .await;
    let gs_checks = [
        moved(&gs0, "gamemesh_game_server_packets_in_total", "", 7.0),
        moved(
            &gs0,
            "gamemesh_game_server_logins_total",
            "result=\"ok\"",
            1.0,
        ),
        moved(
            &gs0,
            "gamemesh_game_server_handler_seconds_count",
            "kind=\"echo\"",
            5.0,
        ),
        moved(
            &gs0,
            "gamemesh_game_server_middleware_seconds_count",
            "middleware=\"idempotency\"",
            // Sampled: the connection's first packet, then one in 16.
            1.0,
        ),
        moved(&gs0, "gamemesh_game_server_duplicates_total", "", 1.0),
        moved(&gs0, "gamemesh_redis_command_seconds_count", "", 1.0),
        // The echoes dirtied the session; the flusher's pass saved it.
        moved(&gs0, "gamemesh_session_flush_saves_total", "", 1.0),
        moved(&gs0, "gamemesh_session_flush_seconds_count", "", 1.0),
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
