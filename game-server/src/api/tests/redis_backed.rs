//! The room runtime and player data on real Redis: failover through
//! leases and checkpoints in Redis, compare-and-set between game servers,
//! data across a restart. Real time (Redis expires leases on its clock).

use std::sync::Arc;
use std::time::Duration;

use gamemesh_jobs::source::PlainRedis;
use gamemesh_test_support::RedisServer;

use super::*;
use crate::api::data::redis::RedisPlayerData;
use crate::api::placement::rendezvous;
use crate::api::room::redis_store::RedisRoomStore;
use crate::api::testing::{MemoryCluster, MemoryParts};

async fn parts(redis: &RedisServer) -> MemoryParts {
    let source = Arc::new(
        PlainRedis::connect(&redis.url(), Duration::from_secs(2))
            .await
            .expect("connect to the test redis"),
    );
    MemoryParts::with_stores(
        Arc::new(RedisRoomStore::new(source.clone(), Duration::from_secs(2))),
        Arc::new(RedisPlayerData::new(source, Duration::from_secs(2))),
    )
}

fn settings() -> RoomSettings {
    RoomSettings {
        lease_ttl: Duration::from_millis(1200),
        ..fast()
    }
}

#[tokio::test]
async fn a_room_fails_over_through_its_lease_and_checkpoint_in_redis() {
    let redis = RedisServer::start();
    let c = MemoryCluster::with_parts(settings(), parts(&redis).await);
    for n in [1, 2] {
        c.start_node(n, app(Probe::default()));
    }
    let room = (0..)
        .map(|i| format!("r{i}"))
        .find(|r| rendezvous(&format!("counter:{r}"), [1, 2]) == Some(1))
        .unwrap();
    let a = c.login(1, 2);
    c.call::<_, Tock>(2, a, "probe.join", &text(&room))
        .await
        .unwrap();
    c.call::<_, Num>(2, a, "probe.add", &Num { n: 9 })
        .await
        .unwrap();
    let first = c
        .push_where::<Tock, _>(1, "probe.tock", |t| t.total == 9)
        .await;
    // Past a checkpoint (10 ticks), then a little more.
    let last = c
        .push_where::<Tock, _>(1, "probe.tock", |t| t.tick >= first.tick + 12)
        .await
        .tick;

    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let lease = format!("gm:{{room:counter:{room}}}:lease");
    let holder: String = redis::cmd("GET")
        .arg(&lease)
        .query_async(&mut conn)
        .await
        .unwrap();

    let died = std::time::Instant::now();
    c.crash(1).await;
    let back = c
        .push_where::<Tock, _>(1, "probe.tock", |t| t.tick > last)
        .await;
    let took = died.elapsed();
    assert_eq!(back.total, 9, "state from the checkpoint in Redis");
    assert!(took < Duration::from_secs(3), "back after {took:?}");
    let now: String = redis::cmd("GET")
        .arg(&lease)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_ne!(now, holder, "a new authority holds the lease");
    // Only the survivor runs it, and its ticks only rise.
    let mut prev = back.tick;
    for _ in 0..10 {
        let t = c.push_where::<Tock, _>(1, "probe.tock", |_| true).await;
        assert_eq!(t.tick, prev + 1);
        prev = t.tick;
    }
}

#[tokio::test]
async fn player_data_is_compare_and_set_across_game_servers_and_survives_a_restart() {
    let redis = RedisServer::start();
    {
        let c = MemoryCluster::with_parts(settings(), parts(&redis).await);
        for n in [1, 2] {
            c.start_node(n, app(Probe::default()));
        }
        let who = c.login(5, 1);
        // Twenty deposits from each game server at once: none lost.
        let deposits = |node: u64| {
            let c = &c;
            async move {
                for _ in 0..20 {
                    c.call::<_, Num>(node, who, "probe.deposit", &Num { n: 1 })
                        .await
                        .expect("deposit");
                }
            }
        };
        tokio::join!(deposits(1), deposits(2));
        let balance: Num = c
            .call(1, who, "probe.deposit", &Num { n: 0 })
            .await
            .unwrap();
        assert_eq!(balance.n, 40);
    }
    // Every game server restarted: the data is where it was.
    let c = MemoryCluster::with_parts(settings(), parts(&redis).await);
    c.start_node(3, app(Probe::default()));
    let who = c.login(5, 3);
    let balance: Num = c
        .call(3, who, "probe.deposit", &Num { n: 0 })
        .await
        .unwrap();
    assert_eq!(balance.n, 40);
}
