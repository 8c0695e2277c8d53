//! `LoginResponse.replaced_existing_session` means what docs/PROTOCOL.md says:
//! true when an older session was kicked, false when the login replaced a
//! disconnected (resumable) session that no connection held.

use gamemesh_integration_tests::{session_field, wait_for, Cluster, TIMEOUT};

fn connected(cluster: &Cluster, user: u64) -> Option<String> {
    session_field(&mut cluster.redis_conn(), user, "connected")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_disconnected_session_kicks_no_one_and_says_so() {
    let cluster = Cluster::start(1, 1).await;
    let mut first = cluster.client(0).await;
    let old = first.login(91, "dev").await.expect("login");
    drop(first);
    wait_for(
        "the dropped session is saved as disconnected",
        TIMEOUT,
        || connected(&cluster, 91).as_deref() == Some("0"),
    )
    .await;

    let mut again = cluster.client(0).await;
    let new = again.login(91, "dev").await.expect("login again");
    assert_ne!(new.session_id, old.session_id);
    assert!(
        !new.replaced_existing_session,
        "nobody was kicked, so nothing counts as replaced: {new:?}"
    );

    // With the old connection still open, the flag is set.
    let mut third = cluster.client(0).await;
    let newest = third.login(91, "dev").await.expect("third login");
    assert!(newest.replaced_existing_session, "{newest:?}");
    assert!(
        again.wait_closed(TIMEOUT).await,
        "the open session was kicked"
    );
    cluster.shutdown().await;
}
