//! The Redis backends against a real redis-server: the session scripts'
//! fencing and ordering rules, and the node registry.

use std::time::Duration;

use bytes::Bytes;
use gamemesh_game_server::cluster::membership::NodeRegistry;
use gamemesh_game_server::session::redis::RedisStore;
use gamemesh_game_server::session::{Claim, NewSession, Placement, Progress, SessionStore};
use gamemesh_integration_tests::{wait_for_async, RedisServer};
use gamemesh_proto::internal::{CachedReply, NodeInfo, ReplyCache};
use gamemesh_proto::Message;
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
        replies: Vec::new(),
        first_reply: 0,
        keep: 32,
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

fn reply(seq: u64) -> CachedReply {
    CachedReply {
        sequence_id: seq,
        body: Bytes::from(format!("reply {seq}")),
    }
}

fn with_replies(mut p: Progress, seqs: &[u64], keep: usize) -> Progress {
    // In these tests reply n is the session's n-th.
    p.replies = seqs.iter().map(|s| reply(*s)).collect();
    p.first_reply = seqs.first().map_or(0, |s| s - 1);
    p.keep = keep;
    p
}

fn raw(redis: &RedisServer) -> redis::Connection {
    redis::Client::open(format!("redis://{}/", redis.addr()))
        .and_then(|c| c.get_connection())
        .expect("a plain connection")
}

/// A save sends only the replies recorded since the owner's last successful
/// one; Redis appends those above its watermark (a repeated or overlapping
/// save adds nothing twice), keeps the owner's `keep` newest, and a take-over
/// hands them back in order, bodies intact.
#[tokio::test]
async fn saves_append_only_unsaved_replies_and_a_take_over_reads_the_newest() {
    let redis = RedisServer::start();
    let s = store(&redis).await;
    let epoch = s.login(new_session(1, 1), TTL).await.unwrap().epoch;
    assert!(s
        .save(&with_replies(progress(1, epoch, 2), &[1, 2], 3), TTL)
        .await
        .unwrap());
    // Sent again after a timeout that had landed, plus one more.
    assert!(s
        .save(&with_replies(progress(1, epoch, 3), &[1, 2, 3], 3), TTL)
        .await
        .unwrap());
    let seqs = |r: &[CachedReply]| r.iter().map(|r| r.sequence_id).collect::<Vec<_>>();
    assert_eq!(seqs(&s.get(7).await.unwrap().unwrap().replies), [1, 2, 3]);
    assert!(s
        .save(&with_replies(progress(1, epoch, 5), &[4, 5], 3), TTL)
        .await
        .unwrap());
    let t = s
        .take_over(claim(7, 1, epoch, placement(2)), TTL)
        .await
        .unwrap()
        .expect("taken over");
    assert_eq!(seqs(&t.replies), [3, 4, 5], "the 3 newest, oldest first");
    assert_eq!(t.replies[2], reply(5));
    // The ring in the record holds 3 replies, not the 5 ever saved.
    let mut c = raw(&redis);
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg("gm:{u:7}:session")
        .query(&mut c)
        .unwrap();
    let held = fields.iter().filter(|f| f.starts_with("rep:")).count();
    assert_eq!(held, 3, "fields: {fields:?}");
    s.login(new_session(2, 1), TTL).await.unwrap();
    assert!(
        s.get(7).await.unwrap().unwrap().replies.is_empty(),
        "a new login starts empty"
    );
}

/// A record saved before the reply cache had its own key (the cache in the
/// hash's `replies` field) keeps its replies through a take-over.
#[tokio::test]
async fn a_take_over_reads_a_reply_cache_saved_in_the_old_layout() {
    let redis = RedisServer::start();
    let s = store(&redis).await;
    let epoch = s.login(new_session(1, 1), TTL).await.unwrap().epoch;
    assert!(s.save(&progress(1, epoch, 2), TTL).await.unwrap());
    let old = ReplyCache {
        replies: vec![reply(1), reply(2)],
    };
    let mut c = raw(&redis);
    let _: () = redis::cmd("HSET")
        .arg("gm:{u:7}:session")
        .arg("replies")
        .arg(old.encode_to_vec())
        .query(&mut c)
        .unwrap();
    let t = s
        .take_over(claim(7, 1, epoch, placement(2)), TTL)
        .await
        .unwrap()
        .expect("taken over");
    assert_eq!(t.replies, old.replies);
}

fn placement(owner: u64) -> Placement {
    Placement {
        owner,
        gateway: 1,
        socket: Uuid::new_v4(),
    }
}

fn user_session(user_id: u64) -> NewSession {
    NewSession {
        user_id,
        ..new_session(user_id, 1)
    }
}

/// The flusher's batched save: each entry's own replies (none, several,
/// one) land in its own record, a fenced entry is refused on its own, and a
/// pass bigger than one script call is split without losing an entry.
#[tokio::test]
async fn a_batched_save_keeps_each_sessions_replies_and_fences_each_on_its_own() {
    let redis = RedisServer::start();
    let s = store(&redis).await;
    let users: Vec<u64> = (100..250).collect();
    let mut batch = Vec::new();
    for &u in &users {
        let epoch = s.login(user_session(u), TTL).await.unwrap().epoch;
        let seqs: Vec<u64> = (1..=u % 4).collect();
        let mut p = with_replies(progress(u, epoch, seqs.len() as u64), &seqs, 32);
        p.user_id = u;
        batch.push(p);
    }
    // A stale epoch in the middle of the batch.
    batch[70].epoch += 1;
    let results = s.save_many(&batch, TTL).await;
    assert_eq!(results.len(), users.len());
    for (i, (&u, r)) in users.iter().zip(&results).enumerate() {
        let fenced = i == 70;
        assert_eq!(r.as_ref().ok(), Some(&!fenced), "user {u}");
        let record = s.get(u).await.unwrap().unwrap();
        let held: Vec<u64> = record.replies.iter().map(|r| r.sequence_id).collect();
        let want: Vec<u64> = if fenced {
            vec![]
        } else {
            (1..=u % 4).collect()
        };
        assert_eq!(held, want, "user {u}'s replies");
        assert_eq!(record.last_seq, if fenced { 0 } else { u % 4 }, "user {u}");
    }
}
