//! Login hardening (issue 6): one login per connection, and login attempts
//! limited per user and per client IP on each game server. Every test
//! sets its own small limits, so it does not depend on the harness's.

use std::time::Duration;

use gamemesh_integration_tests::{
    code_of, session_field, wait_for, Client, ClientError, Cluster, ClusterOptions, TIMEOUT,
};
use gamemesh_proto::client::{server_packet, ErrorCode, KickReason};
use gamemesh_test_client::client::{describe, token_for};

/// Time for a save or a disconnect to cross the cluster.
const SETTLE: Duration = Duration::from_secs(10);

const SECRET: &str = "login-limits-test-secret";

/// The `sid` field of a user's session record, if there is one.
fn stored_sid(cluster: &Cluster, user_id: u64) -> Option<String> {
    session_field(&mut cluster.redis_conn(), user_id, "sid")
}

/// The `connected` field of a user's session record.
fn stored_connected(cluster: &Cluster, user_id: u64) -> Option<String> {
    session_field(&mut cluster.redis_conn(), user_id, "connected")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_login_on_one_connection_closes_it_and_the_first_session_stays_resumable() {
    let cluster = Cluster::start_with(ClusterOptions {
        // A roomy limit: this test is about the protocol rule alone.
        game_server: |c| c.login_attempts_per_user_per_min = 100,
        ..ClusterOptions::default()
    })
    .await;
    let user = 61_001;
    let mut c = cluster.client(0).await;
    let first = c.login(user, "dev").await.expect("first login");
    c.echo("before").await.expect("echo after the login");
    let executed = c.last_sequence();

    // Another user or the same: either way the connection is closed and
    // the login gets no reply of its own.
    let second = c.login(user + 1, "dev").await;
    assert!(
        matches!(second, Err(ClientError::Closed)),
        "the second login gets no reply, only the close: {second:?}"
    );
    let push = c.next_push(TIMEOUT).await.expect("a Kicked push");
    match &push.body {
        Some(server_packet::Body::Kicked(k)) => {
            assert_eq!(k.reason(), KickReason::ProtocolError, "{}", describe(&push));
            assert_eq!(k.detail, "already logged in on this connection");
        }
        _ => panic!("expected Kicked, got {}", describe(&push)),
    }
    assert!(c.wait_closed(TIMEOUT).await, "the connection is closed");

    // Nothing was executed: no session for the other user, and the first
    // session is unchanged, saved as disconnected once the close arrived.
    assert_eq!(stored_sid(&cluster, user + 1), None, "no session created");
    wait_for("the first session is saved as disconnected", SETTLE, || {
        stored_connected(&cluster, user).as_deref() == Some("0")
    })
    .await;
    assert_eq!(
        stored_sid(&cluster, user),
        Some(first.session_id.to_string()),
        "the first session was not replaced"
    );

    // Its token resumes it on a new connection, at the last request it
    // really executed (not the refused login's sequence id).
    let mut back = cluster.client(0).await;
    let snapshot = back
        .resume(first.session_id, &first.resume_token)
        .await
        .expect("the first session resumes");
    assert_eq!(snapshot.session_id, first.session_id);
    assert_eq!(snapshot.user_id, user);
    assert_eq!(
        snapshot.last_sequence_id, executed,
        "the refused login was not executed"
    );
    back.set_next_sequence(snapshot.last_sequence_id + 1);
    assert_eq!(&back.echo("after").await.expect("echo")[..], b"after");

    // A logout leaves the socket open and logged out: logging in again on
    // it is allowed.
    back.logout().await.expect("logout");
    let again = back.login(user, "dev").await.expect("login after logout");
    assert_ne!(again.session_id, first.session_id);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_of_one_user_over_the_limit_are_rate_limited_before_the_token_is_checked() {
    const PER_USER: u32 = 3;
    let cluster = Cluster::start_with(ClusterOptions {
        game_server: |c| {
            c.login_attempts_per_user_per_min = PER_USER;
            c.login_attempts_per_ip_per_min = 1000;
            c.auth_secret = Some(SECRET.into());
        },
        ..ClusterOptions::default()
    })
    .await;
    let user = 62_001;
    let token = token_for(Some(SECRET), user);

    // A refused login (bad token) counts as an attempt too.
    let mut bad = cluster.client(0).await;
    assert_eq!(
        code_of(bad.login(user, "forged").await, "forged token"),
        ErrorCode::InvalidToken
    );
    // The rest of the burst: each login replaces the one before.
    let mut clients: Vec<Client> = Vec::new();
    let mut last = None;
    for i in 1..PER_USER {
        let mut c = cluster.client(0).await;
        last = Some(
            c.login(user, &token)
                .await
                .unwrap_or_else(|e| panic!("login {i} within the limit: {e}")),
        );
        clients.push(c);
    }
    let last = last.expect("at least one login");
    let sid = stored_sid(&cluster, user);
    assert_eq!(sid, Some(last.session_id.to_string()));

    // One more: RATE_LIMITED, with its own sequence id, before the token
    // is looked at (a valid and a forged one are answered alike) and
    // without touching the store.
    let mut over = cluster.client(0).await;
    let seq = over.next_sequence();
    match over.login(user, &token).await {
        Err(ClientError::Server { sequence_id, error }) => {
            assert_eq!(error.code(), ErrorCode::RateLimited, "{error:?}");
            assert_eq!(sequence_id, seq, "the refusal answers the login");
        }
        other => panic!("login over the limit: expected RATE_LIMITED, got {other:?}"),
    }
    assert_eq!(
        code_of(
            over.login(user, "forged").await,
            "forged token over the limit"
        ),
        ErrorCode::RateLimited
    );
    assert_eq!(
        stored_sid(&cluster, user),
        sid,
        "the session in the store is unchanged"
    );
    // The last session's connection was not kicked: nothing replaced it.
    let holder = clients.last_mut().expect("holder");
    assert_eq!(
        &holder.echo("still here").await.expect("echo")[..],
        b"still here"
    );
    // The socket that was refused stays open and other users log in on it.
    over.login(user + 1, &token_for(Some(SECRET), user + 1))
        .await
        .expect("another user is not limited by this one");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_from_one_ip_over_the_limit_are_rate_limited_whatever_the_user() {
    const PER_IP: u32 = 5;
    let cluster = Cluster::start_with(ClusterOptions {
        game_server: |c| {
            c.login_attempts_per_ip_per_min = PER_IP;
            c.login_attempts_per_user_per_min = 1000;
        },
        ..ClusterOptions::default()
    })
    .await;
    // Every test client connects from 127.0.0.1.
    let first_user = 63_001;
    let mut clients = Vec::new();
    for i in 0..u64::from(PER_IP) {
        let mut c = cluster.client(0).await;
        c.login(first_user + i, "dev")
            .await
            .unwrap_or_else(|e| panic!("login {i} within the per-IP limit: {e}"));
        clients.push(c);
    }
    for i in 0..3 {
        let user = first_user + 100 + i;
        let mut c = cluster.client(0).await;
        assert_eq!(
            code_of(c.login(user, "dev").await, "login over the per-IP limit"),
            ErrorCode::RateLimited
        );
        assert_eq!(
            stored_sid(&cluster, user),
            None,
            "nothing stored for {user}"
        );
        // Resume is not a login attempt: the limit does not touch it.
        assert_eq!(
            code_of(c.resume(1, "1.0").await, "resume of an unknown session"),
            ErrorCode::SessionNotFound
        );
    }
    assert_eq!(
        cluster.session_keys().len(),
        PER_IP as usize,
        "only the logins within the limit are stored"
    );
    // Logged-in clients carry on.
    for c in &mut clients {
        c.echo("ok").await.expect("echo of a logged-in client");
    }
    cluster.shutdown().await;
}
