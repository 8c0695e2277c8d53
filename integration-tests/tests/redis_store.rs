//! The Redis backends against a real redis-server: the session scripts'
//! fencing and ordering rules, and the node registry.

use std::time::Duration;

use bytes::Bytes;
use gamemesh_game_server::cluster::membership::NodeRegistry;
use gamemesh_game_server::session::redis::RedisStore;
use gamemesh_game_server::session::{Claim, NewSession, Placement, Progress, SessionStore};
use gamemesh_integration_tests::{wait_for_async, RedisServer};
use gamemesh_proto::internal::NodeInfo;
use uuid::Uuid;

const TTL: Duration = Duration::from_secs(60);

async fn store(redis: &RedisServer) -> RedisStore {
    RedisStore::connect(&redis.addr(), Duration::from_secs(1))
        .await
        .expect("connects")
}

fn new_session(session_id: u64, owner: u64) -> NewSession {
    NewSession {
        session_id,
        user_id: 7,
        token_hash: vec![1; 32],
        placement: Placement {
            owner,
            gateway: 1,
            socket: Uuid::new_v4(),
        },
        last_seq: 0,
    }
}

fn progress(session_id: u64, epoch: u64, last_seq: u64) -> Progress {
    Progress {
        user_id: 7,
        session_id,
        epoch,
        last_seq,
        replies: Bytes::new(),
        // Distinct from last_seq so a test can tell which field came back.
        counter: last_seq * 10,
    }
}

#[tokio::test]
async fn a_late_periodic_save_does_not_undo_the_disconnect_save() {
    let redis = RedisServer::start();
    let s = store(&redis).await;
    let epoch = s.login(new_session(1, 3), TTL).await.unwrap().epoch;
    assert!(s.save(&progress(1, epoch, 4), TTL).await.unwrap());
    assert!(s.disconnect(&progress(1, epoch, 5), TTL).await.unwrap());
    // Reordered behind the disconnect: accepted, but changes nothing.
    assert!(s.save(&progress(1, epoch, 3), TTL).await.unwrap());
    let r = s.get(7).await.unwrap().unwrap();
    assert_eq!((r.connected, r.placement.owner, r.last_seq), (false, 0, 5));
    assert_eq!(r.counter, 50, "the counter is saved with its watermark");
}

fn claim(user_id: u64, session_id: u64, expected_epoch: u64, to: Placement) -> Claim {
    Claim {
        user_id,
        session_id,
        expected_epoch,
        to,
    }
}

#[tokio::test]
async fn the_increment_counter_travels_with_the_session_through_a_take_over() {
    let redis = RedisServer::start();
    let s = store(&redis).await;
    let epoch = s.login(new_session(1, 1), TTL).await.unwrap().epoch;
    assert_eq!(s.get(7).await.unwrap().unwrap().counter, 0, "new session");
    assert!(s.save(&progress(1, epoch, 3), TTL).await.unwrap());
    let to = Placement {
        owner: 2,
        gateway: 1,
        socket: Uuid::new_v4(),
    };
    let t = s
        .take_over(claim(7, 1, epoch, to), TTL)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((t.last_seq, t.counter), (3, 30));
    // A new login starts a new counter.
    s.login(new_session(2, 1), TTL).await.unwrap();
    assert_eq!(s.get(7).await.unwrap().unwrap().counter, 0);
}

#[tokio::test]
async fn every_owner_write_is_fenced_by_session_and_epoch() {
    let redis = RedisServer::start();
    let s = store(&redis).await;
    let old = s.login(new_session(1, 1), TTL).await.unwrap().epoch;
    let to = Placement {
        owner: 2,
        gateway: 1,
        socket: Uuid::new_v4(),
    };
    let moved = s
        .take_over(claim(7, 1, old, to), TTL)
        .await
        .unwrap()
        .expect("taken");
    assert_eq!(moved.epoch, old + 1);
    // The old owner's writes are all refused.
    assert!(!s.save(&progress(1, old, 9), TTL).await.unwrap());
    assert!(!s.disconnect(&progress(1, old, 9), TTL).await.unwrap());
    assert!(!s.remove(7, 1, old).await.unwrap());
    assert!(s
        .take_over(claim(7, 1, old, to), TTL)
        .await
        .unwrap()
        .is_none());
    // The new owner's logout works.
    assert!(s.remove(7, 1, moved.epoch).await.unwrap());
    assert!(s.get(7).await.unwrap().is_none());
}

#[tokio::test]
async fn the_registry_lists_announced_nodes_until_they_expire_or_withdraw() {
    let redis = RedisServer::start();
    let s = store(&redis).await;
    let node = |id: u64| NodeInfo {
        node_id: id,
        p2p_endpoint: format!("tcp://127.0.0.1:{}", 9000 + id),
        mesh_endpoint: format!("tcp://127.0.0.1:{}", 9100 + id),
    };
    // Both listed: with a lifetime no stall of a loaded machine outlasts,
    // so the listing is checked, not the scheduler.
    s.announce(&node(1), TTL).await.unwrap();
    s.announce(&node(2), TTL).await.unwrap();
    let mut ids: Vec<u64> = s.nodes().await.unwrap().iter().map(|n| n.node_id).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2]);
    assert_eq!(
        s.nodes().await.unwrap().iter().find(|n| n.node_id == 1),
        Some(&node(1))
    );
    // Node 2 renews with a short lifetime (each announce sets it anew) and
    // then stops renewing: it drops out; node 1 stays.
    s.announce(&node(2), Duration::from_millis(200))
        .await
        .unwrap();
    wait_for_async(
        "node 2 expires from the registry",
        Duration::from_secs(5),
        || async { s.nodes().await.unwrap().iter().all(|n| n.node_id != 2) },
    )
    .await;
    let ids: Vec<u64> = s.nodes().await.unwrap().iter().map(|n| n.node_id).collect();
    assert_eq!(ids, vec![1], "only the node that stopped renewing expired");
    s.withdraw(1).await.unwrap();
    assert!(s.nodes().await.unwrap().is_empty());
}
