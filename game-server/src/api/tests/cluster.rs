//! Rooms across game servers ([`MemoryCluster`]): one authority per room,
//! members anywhere, failover from the checkpoint, hand-offs, a split
//! cluster. Time is tokio's paused clock.

use std::time::Duration;

use prost::Message;

use super::*;
use crate::api::placement::rendezvous;
use crate::api::room::wire::Checkpoint;
use crate::api::room::RoomKey;
use crate::api::testing::MemoryCluster;
use crate::api::{Caller, RoomStore};

/// A room name the placement gives to `node` among `nodes`.
fn room_on(node: u64, nodes: &[u64]) -> String {
    (0..)
        .map(|i| format!("r{i}"))
        .find(|r| rendezvous(&format!("counter:{r}"), nodes.iter().copied()) == Some(node))
        .expect("some name lands there")
}

fn cluster(nodes: &[u64]) -> MemoryCluster {
    let c = MemoryCluster::new(fast());
    for n in nodes {
        c.start_node(*n, app(Probe::default()));
    }
    c
}

async fn join(c: &MemoryCluster, node: u64, who: Caller, room: &str) -> Result<Tock, GameError> {
    c.call(node, who, "probe.join", &text(room)).await
}

async fn tock(c: &MemoryCluster, user: u64) -> Tock {
    c.push_where(user, "probe.tock", |_| true).await
}

/// Which nodes run `room`.
fn runners(c: &MemoryCluster, nodes: &[u64], room: &str) -> Vec<u64> {
    nodes
        .iter()
        .copied()
        .filter(|n| {
            c.runtime(*n)
                .running_rooms()
                .contains(&format!("counter:{room}"))
        })
        .collect()
}

async fn saved_total(c: &MemoryCluster, room: &str) -> i64 {
    let key = RoomKey::new("counter", room).unwrap();
    let cp = c.parts.rooms.load(&key).await.unwrap().unwrap();
    Num::decode(Checkpoint::decode(cp).unwrap().state)
        .unwrap()
        .n
}

#[tokio::test(start_paused = true)]
async fn a_room_runs_once_for_members_on_every_game_server() {
    let nodes = [1, 2, 3];
    let c = cluster(&nodes);
    let room = room_on(2, &nodes);
    let who: Vec<Caller> = nodes.iter().map(|n| c.login(10 + n, *n)).collect();
    for (w, n) in who.iter().zip(nodes) {
        join(&c, n, *w, &room).await.unwrap();
    }
    assert_eq!(runners(&c, &nodes, &room), vec![2]);
    let t = tock(&c, 11).await.tick;
    for user in [12, 13] {
        c.push_where::<Tock, _>(user, "probe.tock", |x| x.tick == t)
            .await;
    }
    for expected in t + 1..t + 20 {
        for user in [11, 12, 13] {
            let x = tock(&c, user).await;
            assert_eq!(x.tick, expected, "user {user}");
            assert_eq!(x.members, vec![11, 12, 13]);
        }
    }
    // A move from node 3 reaches the one room.
    let n: Num = c.call(3, who[2], "probe.add", &Num { n: 4 }).await.unwrap();
    assert_eq!(n.n, 4);
    c.push_where::<Tock, _>(11, "probe.tock", |x| x.total == 4)
        .await;
}

#[tokio::test(start_paused = true)]
async fn when_its_game_server_dies_the_room_carries_on_elsewhere_from_its_checkpoint() {
    let nodes = [1, 2];
    let c = cluster(&nodes);
    let room = room_on(1, &nodes);
    let far = c.login(21, 2); // connected to the survivor
    let near = c.login(22, 1); // connected to the node that dies
    join(&c, 2, far, &room).await.unwrap();
    join(&c, 1, near, &room).await.unwrap();
    c.call::<_, Num>(2, far, "probe.add", &Num { n: 5 })
        .await
        .unwrap();
    // Wait for the total to be in a checkpoint, then for a few more ticks.
    let t = tock(&c, 21).await.tick;
    c.push_where::<Tock, _>(21, "probe.tock", |x| x.tick >= t + 12)
        .await;
    assert_eq!(saved_total(&c, &room).await, 5);
    let last = tock(&c, 21).await.tick;

    let died = tokio::time::Instant::now();
    c.crash(1).await;
    c.resume(near, 2); // its client reconnects through the survivor
    let back = tock(&c, 21).await;
    let took = died.elapsed();
    assert!(back.tick > last, "tick {} after {last}", back.tick);
    assert_eq!(back.total, 5, "state from the checkpoint");
    assert_eq!(back.members, vec![21, 22], "with its members");
    assert!(
        took <= fast().lease_ttl + fast().restart_every * 2,
        "restarted after {took:?}"
    );
    assert_eq!(runners(&c, &[2], &room), vec![2]);
    // The member that was on the dead node gets the room again, without
    // joining.
    c.push_where::<Tock, _>(22, "probe.tock", |x| x.tick > last)
        .await;
    let n: Num = c.call(2, near, "probe.add", &Num { n: 1 }).await.unwrap();
    assert_eq!(n.n, 6);
}

#[tokio::test(start_paused = true)]
async fn ticks_only_rise_across_failovers() {
    let nodes = [1, 2, 3];
    let c = cluster(&nodes);
    // Placed on 1, then on 2 once 1 is dead, then on 3.
    let room = (0..)
        .map(|i| format!("r{i}"))
        .find(|r| {
            let tag = format!("counter:{r}");
            rendezvous(&tag, [1, 2, 3]) == Some(1) && rendezvous(&tag, [2, 3]) == Some(2)
        })
        .unwrap();
    let watcher = c.login(30, 3);
    join(&c, 3, watcher, &room).await.unwrap();
    let mut last = tock(&c, 30).await.tick;
    for victim in [1, 2] {
        assert_eq!(runners(&c, &nodes, &room), vec![victim]);
        c.crash(victim).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while tokio::time::Instant::now() < deadline {
            let x = tock(&c, 30).await;
            assert!(x.tick > last, "tick {} after {last}", x.tick);
            last = x.tick;
        }
    }
    assert_eq!(runners(&c, &[3], &room), vec![3]);
}

#[tokio::test(start_paused = true)]
async fn a_split_cluster_never_runs_a_room_twice() {
    let nodes = [1, 2];
    let c = cluster(&nodes);
    let room = room_on(1, &nodes);
    let a = c.login(41, 1);
    join(&c, 1, a, &room).await.unwrap();
    // Node 2 now believes it is alone: every room is its own.
    c.set_view(2, Some(vec![2]));
    let b = c.login(42, 2);
    let refused = join(&c, 2, b, &room).await;
    assert_eq!(
        refused.unwrap_err().code_name(),
        "UNAVAILABLE",
        "node 2 cannot take the room node 1 holds"
    );
    let key = RoomKey::new("counter", &room).unwrap();
    let holder = c.parts.rooms.holder(&key).await.unwrap();
    let mut last = tock(&c, 41).await.tick;
    for _ in 0..40 {
        let x = tock(&c, 41).await;
        assert_eq!(
            x.tick,
            last + 1,
            "one authority: no tick twice, none skipped"
        );
        last = x.tick;
        assert_eq!(runners(&c, &nodes, &room), vec![1]);
        assert_eq!(c.parts.rooms.holder(&key).await.unwrap(), holder);
    }
    // Healed: node 2's member joins the one room.
    c.set_view(2, None);
    join(&c, 2, b, &room).await.unwrap();
    c.push_where::<Tock, _>(41, "probe.tock", |x| x.members == [41, 42])
        .await;
}

#[tokio::test(start_paused = true)]
async fn a_graceful_stop_hands_rooms_over_at_once() {
    let nodes = [1, 2];
    let c = cluster(&nodes);
    let room = room_on(1, &nodes);
    let a = c.login(51, 2);
    join(&c, 2, a, &room).await.unwrap();
    c.call::<_, Num>(2, a, "probe.add", &Num { n: 3 })
        .await
        .unwrap();
    let last = tock(&c, 51).await.tick;
    let stopped = tokio::time::Instant::now();
    c.stop(1).await;
    let x = c
        .push_where::<Tock, _>(51, "probe.tock", |x| x.tick > last)
        .await;
    assert_eq!(x.total, 3, "saved at the hand-off: nothing lost");
    assert!(
        stopped.elapsed() < fast().lease_ttl,
        "no wait for the lease: {:?}",
        stopped.elapsed()
    );
    assert_eq!(runners(&c, &[2], &room), vec![2]);
}

#[tokio::test(start_paused = true)]
async fn a_new_game_server_takes_the_rooms_placed_on_it() {
    let c = cluster(&[1]);
    let room = room_on(2, &[1, 2]);
    let a = c.login(61, 1);
    join(&c, 1, a, &room).await.unwrap();
    c.call::<_, Num>(1, a, "probe.add", &Num { n: 8 })
        .await
        .unwrap();
    let mut last = tock(&c, 61).await.tick;
    c.start_node(2, app(Probe::default()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline {
        let x = tock(&c, 61).await;
        assert!(x.tick > last);
        assert_eq!(x.total, 8);
        last = x.tick;
    }
    assert_eq!(runners(&c, &[1, 2], &room), vec![2]);
}
