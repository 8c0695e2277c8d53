//! Frames that are not the contract, repeated: the connection is kicked
//! (`PROTOCOL_ERROR`) after `--protocol-error-kick-after` of them within
//! the window; fewer are only answered. The increment's exactly-once
//! behaviour on a re-sent sequence id is checked here too, in process.

use gamemesh_integration_tests::{Client, Cluster, TIMEOUT};
use gamemesh_proto::client::{server_packet, ErrorCode, KickReason, ServerPacket};

fn error_code(p: &ServerPacket) -> Option<ErrorCode> {
    match &p.body {
        Some(server_packet::Body::Error(e)) => ErrorCode::try_from(e.code).ok(),
        _ => None,
    }
}

/// Garbage that does not decode as a `ClientPacket` (a truncated field).
const GARBAGE: &[u8] = b"\x0a\xff\xff";
/// A body this contract does not know (field 999, as a newer client might
/// send): decodes, but carries no request. Sequence id 0, so it does not
/// move the session's watermark.
const UNKNOWN_BODY: &[u8] = b"\xb8\x3e\x01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_frames_that_are_not_the_contract_get_the_connection_kicked() {
    let cluster = Cluster::start(1, 1).await;
    let kick_after = cluster.game_servers[0].state.violations.kick_after;
    let mut c = cluster.client(0).await;
    c.login(61, "dev").await.expect("login");
    // One short of the limit: each is answered and the connection lives.
    for i in 0..kick_after - 1 {
        let body = if i % 2 == 0 { GARBAGE } else { UNKNOWN_BODY };
        c.send_raw(body).await.expect("send");
        let reply = c.recv(TIMEOUT).await.expect("an answer");
        let code = error_code(&reply);
        assert!(
            matches!(
                code,
                Some(ErrorCode::MalformedPacket | ErrorCode::UnknownMessage)
            ),
            "frame {i}: {reply:?}"
        );
    }
    assert_eq!(c.echo("still here").await.expect("echo"), "still here");
    // The one that reaches the limit: answered, then kicked and closed.
    c.send_raw(GARBAGE).await.expect("send");
    // Its MALFORMED_PACKET answer (sequence id 0: garbage has none to
    // peek) comes first, then the kick.
    let answer = c.recv(TIMEOUT).await.expect("the answer");
    assert_eq!(error_code(&answer), Some(ErrorCode::MalformedPacket));
    let push = c.recv(TIMEOUT).await.expect("the kick arrives");
    match push.body {
        Some(server_packet::Body::Kicked(k)) => {
            assert_eq!(k.reason, KickReason::ProtocolError as i32, "{k:?}")
        }
        other => panic!("expected Kicked, got {other:?}"),
    }
    assert!(c.wait_closed(TIMEOUT).await, "the connection is closed");

    // Its neighbours are not affected.
    let mut other = cluster.client(0).await;
    other
        .login(62, "dev")
        .await
        .expect("another client logs in");
    assert_eq!(other.echo("fine").await.expect("echo"), "fine");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_increment_is_answered_from_the_cache_and_never_runs_twice() {
    let cluster = Cluster::start(1, 1).await;
    let mut c: Client = cluster.client(0).await;
    c.login(63, "dev").await.expect("login");
    let first = c.allocate_sequence();
    assert_eq!(c.increment_at(first).await.expect("increment"), 1);
    assert_eq!(
        c.increment_at(first).await.expect("re-sent"),
        1,
        "replayed, not run again"
    );
    let second = c.allocate_sequence();
    assert_eq!(c.increment_at(second).await.expect("increment"), 2);
    cluster.shutdown().await;
}
