//! A Redis Cluster as production secures it (issue 19: "ACL and TLS work
//! with it as they do with the other schemes"), the cluster twin of
//! `redis_security.rs`:
//!
//! - `redis+cluster://gamemesh:<password>@...` on a cluster whose every
//!   node requires a password, the game server's user limited to `gm:*`
//!   keys and channels: logins, a duplicate login kicking the first
//!   session, resume, a job's notice over the sharded event channel;
//! - `rediss+cluster://...` on a cluster that speaks TLS only (clients,
//!   replication and the cluster bus), with the test's CA
//!   (`--redis-ca-file`), the same checks;
//! - a wrong or missing password, and an untrusted certificate, end
//!   start-up in one plain sentence that does not show the password;
//! - every login waits for a replica on the primary of its user's slot
//!   (`WAIT`, SESSION_LIFECYCLE.md "A login waits for a replica");
//! - `--print-config` does not show the cluster address's password.
//!
//! One cluster per test (nextest runs each test in its own process), each
//! test checks everything its cluster allows.

use std::time::Duration;

use gamemesh_game_server::{Config as GsConfig, GameServerError};
use gamemesh_integration_tests::{
    assert_plain_sentence, game_server_config, gateway_config, init_tracing, start_fails,
    start_game_server, start_gateway, wait_for, Client, TIMEOUT,
};
use gamemesh_node::config::{try_parse_from, Parsed};
use gamemesh_node::redis_address::cluster_slot;
use gamemesh_proto::client::{server_packet, ServerNotice};
use gamemesh_test_support::{RedisCluster, RedisClusterOptions};

const SETTLE: Duration = Duration::from_secs(10);

/// `--redis-timeout-ms` on these clusters (the connect may take twice
/// that). Connecting to a cluster is a connection to a seed, `CLUSTER
/// SLOTS`, then one connection per node: with a TLS handshake each, in a
/// debug build on a loaded 2-core machine, more than the suite's 500 ms
/// (which would then read "not reachable" instead of the error under
/// test).
const REDIS_TIMEOUT_MS: u64 = 5_000;

/// A cluster started off the async runtime (it blocks for a second or
/// two while the nodes agree).
async fn start_cluster(acl: bool, tls: bool) -> RedisCluster {
    tokio::task::spawn_blocking(move || {
        RedisCluster::start_with(RedisClusterOptions {
            acl,
            tls,
            ..RedisClusterOptions::default()
        })
    })
    .await
    .expect("the cluster starts")
}

/// The game server's config for `url` on `cluster`.
fn config(cluster: &RedisCluster, url: &str) -> GsConfig {
    let mut config = game_server_config(1, url);
    config.redis_ca_file = cluster.ca_file();
    config.redis_timeout_ms = REDIS_TIMEOUT_MS;
    // A job every second that publishes a notice: jobs and the sharded
    // event channel work for the ACL user, over TLS too.
    config.daily_reset_cron = "* * * * * *".into();
    config
}

/// Waits for the daily reset's notice (a job ran, its event was heard).
async fn a_daily_reset_notice_arrives(c: &mut Client) {
    let is_reset = |n: &ServerNotice| n.kind == "daily_reset";
    if c.take_notices().iter().any(is_reset) {
        return;
    }
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let p = c
            .next_push(left)
            .await
            .unwrap_or_else(|e| panic!("no daily reset notice within {SETTLE:?}: {e}"));
        if let Some(server_packet::Body::Notice(n)) = p.body {
            if is_reset(&n) {
                return;
            }
        }
    }
}

/// The session id Redis holds for `user_id`.
fn stored_session(cluster: &RedisCluster, user_id: u64) -> Option<String> {
    redis::cmd("HGET")
        .arg(format!("gm:{{u:{user_id}}}:session"))
        .arg("sid")
        .query(&mut cluster.admin_conn())
        .expect("HGET")
}

/// One game server and one gateway on `config`. A client logs in and
/// echoes; a second login of the same user kicks it; the second client
/// echoes, drops and resumes. Returns the session id that stays.
async fn login_kick_resume(config: GsConfig, user: u64) -> u64 {
    init_tracing();
    let node = start_game_server(config).await;
    let gateway = start_gateway(gateway_config(1, &[node.p2p_port]), 1).await;
    let connect = || Client::connect_with_timeout(&gateway.addr, TIMEOUT);

    let mut first = connect().await.expect("connect");
    let kicked = first.login(user, "dev").await.expect("login");
    first.echo("hello").await.expect("echo");

    let mut second = connect().await.expect("connect");
    let login = second.login(user, "dev").await.expect("second login");
    assert_ne!(login.session_id, kicked.session_id);
    assert!(
        login.replaced_existing_session,
        "the open session was replaced: {login:?}"
    );
    assert!(
        first.wait_closed(TIMEOUT).await,
        "the first session was kicked"
    );
    second.echo("hello").await.expect("echo");
    drop(second);

    let mut again = connect().await.expect("connect");
    // The resume may race the disconnect save; both orders must succeed.
    let snap = again
        .resume(login.session_id, &login.resume_token)
        .await
        .expect("resume");
    assert_eq!(snap.session_id, login.session_id);
    assert_eq!(snap.last_sequence_id, 2);
    again.echo("after resume").await.expect("echo");
    a_daily_reset_notice_arrives(&mut again).await;

    gateway.shutdown.cancel();
    let _ = gateway.task.await;
    node.shutdown.cancel();
    let _ = node.task.await;
    login.session_id
}

/// Sessions run as the ACL user, and the session Redis holds is the one
/// the client kept.
async fn sessions_run(cluster: &RedisCluster, user: u64) {
    let session_id = login_kick_resume(config(cluster, &cluster.url()), user).await;
    wait_for(
        "the session is stored under the ACL user's keys",
        SETTLE,
        || stored_session(cluster, user) == Some(session_id.to_string()),
    )
    .await;
    logins_waited_on_the_users_primary(cluster, user);
}

/// Every login waited for a replica on the primary of the user's slot
/// (`WAIT`, session/replica_ack.rs), and on no other primary.
fn logins_waited_on_the_users_primary(cluster: &RedisCluster, user: u64) {
    let owner = cluster
        .primary_of_slot(cluster_slot(&format!("gm:{{u:{user}}}:session")))
        .expect("a primary serves the user's slot");
    let waits: Vec<(u16, u64)> = cluster
        .commandstats()
        .into_iter()
        .map(|(port, stats)| {
            let calls = stats.iter().find(|(c, _)| c == "wait").map_or(0, |s| s.1);
            (port, calls)
        })
        .collect();
    for (port, calls) in &waits {
        if *port == owner {
            // Two logins; the second skips the wait if the first found no
            // replica in time (a loaded machine), so at least one.
            assert!(
                *calls >= 1,
                "no WAIT on the user's primary {owner}: {waits:?}"
            );
        } else {
            assert_eq!(*calls, 0, "WAIT on another primary {port}: {waits:?}");
        }
    }
}

/// A wrong password and no password each end start-up with one plain
/// sentence naming the variable to fix.
async fn bad_credentials_stop_start_up(cluster: &RedisCluster) {
    let wrong = "not-the-password-4711";
    let e = start_fails(config(cluster, &cluster.url_with_password(wrong))).await;
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
    assert!(
        message.contains("cluster://gamemesh:***@127.0.0.1:"),
        "names the cluster, redacted: {message}"
    );
    assert_plain_sentence(&message, wrong);

    let e = start_fails(config(cluster, &cluster.url_without_password())).await;
    assert!(
        matches!(e, GameServerError::RedisAuth { .. }),
        "an authentication error: {e}"
    );
    let password = cluster.password().expect("an ACL cluster");
    assert_plain_sentence(&e.to_string(), password);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_runs_sessions_on_a_cluster_and_a_wrong_password_stops_start_up() {
    let cluster = start_cluster(true, false).await;
    assert!(cluster.url().starts_with("redis+cluster://gamemesh:"));
    sessions_run(&cluster, 51).await;
    bad_credentials_stop_start_up(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_only_cluster_runs_sessions_and_an_untrusted_certificate_stops_start_up() {
    // Fails, saying how to get one, if redis-server has no TLS.
    let cluster = start_cluster(true, true).await;
    assert!(cluster.url().starts_with("rediss+cluster://gamemesh:"));
    sessions_run(&cluster, 52).await;
    bad_credentials_stop_start_up(&cluster).await;

    // No --redis-ca-file: the system roots do not know the test's CA.
    let mut untrusted = config(&cluster, &cluster.url());
    untrusted.redis_ca_file = None;
    let e = start_fails(untrusted).await;
    let message = e.to_string();
    assert!(
        matches!(e, GameServerError::RedisTls { .. }),
        "a TLS error: {message}"
    );
    assert!(
        message.contains("--redis-ca-file"),
        "says what to fix: {message}"
    );
    assert_plain_sentence(&message, cluster.password().expect("an ACL cluster"));

    // A plain client on a node's port gets nowhere: the cluster speaks
    // only TLS.
    let node = cluster.nodes()[0].addr();
    let plain = redis::Client::open(format!("redis://{node}"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    assert!(plain.is_err(), "plain RESP on a TLS node fails: {plain:?}");
}

#[test]
fn print_config_hides_the_cluster_password() {
    for url in [
        "redis+cluster://gamemesh:s3cret-pw@n1:7000,n2:7001",
        "rediss+cluster://:s3cret-pw@n1:7000",
    ] {
        let args = ["game-server", "--redis", url, "--print-config"];
        let Parsed::Print(text) =
            try_parse_from::<GsConfig>(args, "GAME_SERVER_CONFIG").expect("the flags parse")
        else {
            panic!("expected --print-config output");
        };
        assert!(!text.contains("s3cret-pw"), "{text}");
        // The whole address is hidden, as for every scheme (the flag
        // hides its value, environment twin included).
        assert!(text.contains("# redis = \"***\""), "{text}");
    }
}
