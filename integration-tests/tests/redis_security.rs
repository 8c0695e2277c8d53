//! Redis as production secures it (issue 6, "Redis with a password/ACL user
//! and TLS works"): an ACL user with a password and only `gm:*` keys, a
//! wrong or missing password refused at start-up in one plain sentence that
//! does not show the password, and `rediss://` end to end with a CA the
//! test generated (`--redis-ca-file`), refused without it.

use std::collections::HashMap;
use std::time::Duration;

use gamemesh_game_server::{Config as GsConfig, GameServerError};
use gamemesh_integration_tests::{
    assert_plain_sentence, game_server_config, gateway_config, init_tracing, start_fails,
    start_game_server, start_gateway, wait_for, Client, TIMEOUT,
};
use gamemesh_test_support::{AclRedis, TlsRedis};

const SETTLE: Duration = Duration::from_secs(10);

/// `--redis-timeout-ms` for the TLS tests (the connect may take twice
/// that). A TLS handshake in a debug build on a loaded 2-core machine has
/// taken over the test default's 1 s connect bound, which then reads
/// "Redis is NOT running" instead of the TLS error under test.
const TLS_REDIS_TIMEOUT_MS: u64 = 5_000;

/// The user's record as text (the binary `replies` field comes out lossy).
fn stored(conn: &mut impl redis::ConnectionLike, user_id: u64) -> HashMap<String, String> {
    let raw: HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
        .arg(format!("gm:{{u:{user_id}}}:session"))
        .query(conn)
        .expect("HGETALL");
    raw.into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect()
}

/// One game server and one gateway on `config`; a client logs in, echoes,
/// drops and resumes. Returns the user's session id.
async fn login_echo_resume(config: GsConfig, user: u64) -> u64 {
    init_tracing();
    let node = start_game_server(config).await;
    let gateway = start_gateway(gateway_config(1, &[node.p2p_port]), 1).await;
    let mut client = Client::connect_with_timeout(&gateway.addr, TIMEOUT)
        .await
        .expect("connect");
    let login = client.login(user, "dev").await.expect("login");
    client.echo("hello").await.expect("echo");
    drop(client);
    let mut again = Client::connect_with_timeout(&gateway.addr, TIMEOUT)
        .await
        .expect("connect");
    // The resume may race the disconnect save; both orders must succeed.
    let snap = again
        .resume(login.session_id, &login.resume_token)
        .await
        .expect("resume");
    assert_eq!(snap.session_id, login.session_id);
    assert_eq!(snap.last_sequence_id, 2);
    gateway.shutdown.cancel();
    let _ = gateway.task.await;
    node.shutdown.cancel();
    let _ = node.task.await;
    login.session_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_with_a_password_runs_sessions() {
    let acl = AclRedis::start();
    let session_id = login_echo_resume(game_server_config(1, &acl.url()), 41).await;
    let mut admin = acl.admin_conn();
    wait_for(
        "the session is stored under the ACL user's keys",
        SETTLE,
        || stored(&mut admin, 41).get("sid") == Some(&session_id.to_string()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_at_start_up_with_one_plain_sentence() {
    let acl = AclRedis::start();
    let wrong = "not-the-password-4711";
    let e = start_fails(game_server_config(1, &acl.url_with_password(wrong))).await;
    let message = e.to_string();
    assert!(
        matches!(e, GameServerError::RedisAuth { .. }),
        "an authentication error: {message}"
    );
    assert!(message.contains("refused our credentials"), "{message}");
    assert!(
        message.contains("REDIS_CONNECTION"),
        "says what to fix: {message}"
    );
    assert_plain_sentence(&message, wrong);

    // No password at all, on a server that needs one: the same sentence.
    let e = start_fails(game_server_config(1, &acl.server.addr())).await;
    assert!(
        matches!(e, GameServerError::RedisAuth { .. }),
        "an authentication error: {e}"
    );
    assert_plain_sentence(&e.to_string(), acl.password());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_works_end_to_end() {
    // Fails, saying how to get one, if redis-server has no TLS.
    let tls = TlsRedis::start_with_args(&["--requirepass", "tls-pw"]);
    let url = tls.url().replacen("rediss://", "rediss://:tls-pw@", 1);
    let mut config = game_server_config(1, &url);
    config.redis_ca_file = Some(tls.ca_file());
    config.redis_timeout_ms = TLS_REDIS_TIMEOUT_MS;
    let session_id = login_echo_resume(config, 42).await;
    // Read back over the plain port: what went over TLS is really there.
    let mut plain = redis::Client::open(format!("redis://:tls-pw@{}", tls.server.addr()))
        .and_then(|c| c.get_connection())
        .expect("plain connection");
    assert_eq!(
        stored(&mut plain, 42).get("sid"),
        Some(&session_id.to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_an_untrusted_certificate_fails_at_start_up() {
    let tls = TlsRedis::start();
    // No --redis-ca-file: the system roots do not know the test's CA.
    let mut config = game_server_config(1, &tls.url());
    config.redis_timeout_ms = TLS_REDIS_TIMEOUT_MS;
    let e = start_fails(config).await;
    let message = e.to_string();
    assert!(
        matches!(e, GameServerError::RedisTls { .. }),
        "a TLS error: {message}"
    );
    assert!(
        message.contains("--redis-ca-file"),
        "says what to fix: {message}"
    );
    assert_plain_sentence(&message, "-----BEGIN");
}
