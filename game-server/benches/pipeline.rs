//! Nanoseconds per packet through the whole middleware pipeline
//! (exception, logging, authentication, idempotency, timing, router) for
//! an echo on a logged-in session, and for a replayed sequence id, with
//! the Prometheus recorder installed (metrics included).
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gamemesh_game_server::cluster::gateways::GatewayLinks;
use gamemesh_game_server::cluster::mesh::Mesh;
use gamemesh_game_server::pipeline::build;
use gamemesh_game_server::request::{ConnInfo, HubRequest};
use gamemesh_game_server::session::memory::MemoryStore;
use gamemesh_game_server::session::{LocalSession, LocalSessions};
use gamemesh_game_server::state::HubState;
use gamemesh_proto::client::{client_packet, ClientPacket, EchoRequest};
use gamemesh_proto::internal::NodeInfo;
use gamemesh_transport::{LinkConfig, ZmqLink};
use std::sync::atomic::AtomicBool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::{Service, ServiceExt};
use uuid::Uuid;

fn pipeline(c: &mut Criterion) {
    // As in a running game server: the metrics are recorded for real, so
    // their cost is in the numbers.
    gamemesh_node::admin::install_recorder();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (link, _events) = rt
        .block_on(async { ZmqLink::bind(LinkConfig::new("bench", 1, "127.0.0.1", 0)) })
        .unwrap();
    let (mesh_link, _mesh_events) = rt
        .block_on(async { ZmqLink::bind(LinkConfig::new("bench-mesh", 1, "127.0.0.1", 0)) })
        .unwrap();
    let store: Arc<MemoryStore> = Arc::new(MemoryStore::new());
    let state = Arc::new(HubState {
        node_id: 1,
        store: store.clone(),
        sessions: LocalSessions::default(),
        gateways: GatewayLinks::new(link, 1, "tcp://127.0.0.1:0".into(), None),
        mesh: Mesh::new(
            mesh_link,
            NodeInfo {
                node_id: 1,
                ..Default::default()
            },
            Duration::from_secs(3),
            None,
        ),
        pauses: gamemesh_game_server::cluster::pause::PauseWatch::new(Duration::from_secs(3)),
        accepting: AtomicBool::new(true),
        auth_secret: None,
        resume_grace: Duration::from_secs(60),
        live_ttl: Duration::from_secs(90),
        reply_cache: 32,
        violations: gamemesh_game_server::policy::violations::ViolationPolicy {
            kick_after: 10,
            window: Duration::from_secs(10),
        },
        game: std::sync::OnceLock::new(),
        // The bench saves nothing: the queue's receiver is dropped.
        save_retries: gamemesh_game_server::session::save_retry::SaveRetries::new(1).0,
        faults: Default::default(),
        session_starts: tokio::sync::Semaphore::new(
            gamemesh_game_server::state::SESSION_STARTS_IN_FLIGHT,
        ),
    });
    // Echo is a module: the built-ins, on memory stores, as a game server
    // with the memory session store has them.
    let mut app = gamemesh_game_server::api::App::new();
    gamemesh_game_server::modules::add_builtins(
        &mut app,
        Arc::downgrade(&state),
        &gamemesh_game_server::Config::default(),
    );
    let (tracker, tasks) = (TaskTracker::new(), CancellationToken::new());
    rt.block_on(async {
        gamemesh_game_server::game_host::start(
            &state,
            app,
            gamemesh_game_server::game_host::Stores {
                rooms: Arc::new(gamemesh_game_server::api::room::store::MemoryRoomStore::new()),
                data: Arc::new(gamemesh_game_server::api::data::memory::MemoryPlayerData::new()),
            },
            gamemesh_game_server::api::RoomSettings::default(),
            &tracker,
            tasks.clone(),
        )
    })
    .unwrap();
    let mut svc = build(
        state,
        Arc::new(gamemesh_game_server::policy::login_limits::LoginLimits::new(10, 60)),
    );
    let session = Arc::new(LocalSession::new(1, 1, 1, 0, Vec::new(), 0, 32));
    let conn = ConnInfo {
        gateway: 1,
        socket: Uuid::new_v4(),
    };
    let data = Bytes::from(vec![7u8; 64]);
    let request = |seq: u64| {
        HubRequest::decoded(
            conn,
            Some(session.clone()),
            ClientPacket {
                sequence_id: seq,
                body: Some(client_packet::Body::Echo(EchoRequest {
                    data: data.clone(),
                })),
            },
        )
    };

    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(1));
    let mut seq = 0u64;
    group.bench_function("echo_fresh_sequence", |b| {
        b.iter(|| {
            seq += 1;
            rt.block_on(async { svc.ready().await.unwrap().call(request(seq)).await.unwrap() })
        })
    });
    group.bench_function("echo_replayed_sequence", |b| {
        b.iter(|| {
            rt.block_on(async { svc.ready().await.unwrap().call(request(seq)).await.unwrap() })
        })
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
