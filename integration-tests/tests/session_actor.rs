//! The game server's connection actors (on `gamemesh-actors`) seen from a
//! client: a session's pipelined requests are answered in the order sent,
//! and two sessions pipelining at once do not disturb each other's order.

use std::time::Duration;

use bytes::Bytes;
use gamemesh_integration_tests::{wait_relaying, Cluster, ClusterOptions};
use gamemesh_proto::client::{client_packet, server_packet, ClientPacket, EchoRequest};
use gamemesh_test_client::Client;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Requests sent before the first reply is read: below the gateway's
/// default packet burst (200), so no request is refused for rate.
const PIPELINED: u64 = 150;

/// A cluster of one gateway and one game server whose gateway relays
/// (see `start_ready` in foundation.rs for why a test waits for that).
async fn start_relaying() -> Cluster {
    let cluster = Cluster::start_with(ClusterOptions::default()).await;
    wait_relaying(cluster.gateway_addr(0)).await;
    cluster
}

/// Sends `PIPELINED` echoes without reading, then reads every reply and
/// returns (sequence id, echoed data) in arrival order.
async fn pipeline_echoes(client: &mut Client, tag: &str) -> Vec<(u64, Bytes, Bytes)> {
    let mut sent = Vec::new();
    for i in 0..PIPELINED {
        let data = Bytes::from(format!("{tag}-{i}"));
        let seq = client.allocate_sequence();
        client
            .send(&ClientPacket {
                sequence_id: seq,
                body: Some(client_packet::Body::Echo(EchoRequest {
                    data: data.clone(),
                })),
            })
            .await
            .expect("send");
        sent.push((seq, data));
    }
    let mut got = Vec::new();
    for (seq, data) in sent {
        let reply = client.recv(TIMEOUT).await.expect("a reply");
        let echoed = match reply.body {
            Some(server_packet::Body::Echo(e)) => e.data,
            other => panic!("expected an echo for seq {seq}, got {other:?}"),
        };
        assert_eq!(reply.sequence_id, seq, "replies out of order");
        got.push((reply.sequence_id, data, echoed));
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_of_one_session_are_answered_in_the_order_sent() {
    let cluster = start_relaying().await;
    let mut client = cluster.client(0).await;
    client.login(4001, "dev").await.expect("login");
    for (seq, sent, echoed) in pipeline_echoes(&mut client, "a").await {
        assert_eq!(
            sent, echoed,
            "seq {seq} answered with another request's data"
        );
    }
    drop(client);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_pipelining_at_once_each_keep_their_order() {
    let cluster = start_relaying().await;
    let mut a = cluster.client(0).await;
    let mut b = cluster.client(0).await;
    a.login(4002, "dev").await.expect("login a");
    b.login(4003, "dev").await.expect("login b");
    let (ra, rb) = tokio::join!(pipeline_echoes(&mut a, "a"), pipeline_echoes(&mut b, "b"));
    for (seq, sent, echoed) in ra.into_iter().chain(rb) {
        assert_eq!(
            sent, echoed,
            "seq {seq} answered with another request's data"
        );
    }
    drop((a, b));
    cluster.shutdown().await;
}
