//! The internal ports only act on peers that prove the cluster secret, and
//! the internal links never buffer without bound (high-water marks); a burst
//! of one socket's frames is answered in one link message.
//!
//! Forged, replaying and stalled nodes are played by real ZeroMQ sockets
//! (`ZmqLink`, or a raw DEALER where a routing id must be copied) against
//! real gateways and game servers; the test cluster itself runs with
//! `TEST_CLUSTER_SECRET`.

use std::time::Duration;

use bytes::Bytes;
use gamemesh_gateway::RunningGateway;
use gamemesh_integration_tests::{
    free_port, game_server_config, gateway_config, scripted, session_key, start_game_server,
    test_cluster_secret, wait_for, wait_for_async, Client, Cluster, GameServerNode, TIMEOUT,
};
use gamemesh_proto::client::{
    client_packet, server_packet, ClientPacket, EchoRequest, ErrorCode, KickReason, LoginRequest,
    ServerPacket,
};
use gamemesh_proto::cluster_auth::{self, ClusterSecret};
use gamemesh_proto::internal::{
    gateway_to_server, server_to_gateway, ClientConnected, ClientFrame, GatewayHello,
    GatewayToServer, ServerToGateway,
};
use gamemesh_proto::{packets, Message};
use gamemesh_transport::{Link, LinkConfig, LinkEvent, LinkReceiver, ZmqLink};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);

/// The P2P endpoint of a game server started in this process.
fn p2p_of(gs: &GameServerNode) -> String {
    format!("tcp://127.0.0.1:{}", gs.p2p_port)
}

/// Whether Redis holds a session record for `user`.
fn has_session(cluster: &Cluster, user: u64) -> bool {
    let mut c = cluster.redis_conn();
    redis::cmd("EXISTS")
        .arg(session_key(user))
        .query::<bool>(&mut c)
        .expect("EXISTS")
}

/// `TIME_WAIT` in `/proc/net/tcp`: the connection's end that closed first,
/// once the other end has closed too.
const TCP_TIME_WAIT: u8 = 0x06;

/// The state of the IPv4 TCP connection from local port `local` to remote
/// port `remote`, both on 127.0.0.1, as `/proc/net/tcp` shows it (Linux).
fn tcp_state(local: u16, remote: u16) -> Option<u8> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let port = |addr: &str| {
        addr.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    table.lines().skip(1).find_map(|line| {
        // "sl local_address rem_address st ...", addresses as HEXIP:HEXPORT.
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (l, r, st) = (fields.get(1)?, fields.get(2)?, fields.get(3)?);
        (port(l)? == local && port(r)? == remote)
            .then(|| u8::from_str_radix(st, 16).ok())
            .flatten()
    })
}

/// A gateway played by the test: its own ZeroMQ link, speaking the
/// internal protocol by hand.
struct FakeGateway {
    node_id: u64,
    link: ZmqLink,
    events: LinkReceiver,
    secret: Option<ClusterSecret>,
}

/// The synthetic id our fake gateway files the game server's pipe under.
const GS: u64 = 1;

impl FakeGateway {
    fn start(node_id: u64, secret: Option<ClusterSecret>, config: fn(&mut LinkConfig)) -> Self {
        let mut c = LinkConfig::new("gateway", node_id, "127.0.0.1", 0);
        config(&mut c);
        let (link, events) = ZmqLink::bind(c).expect("fake gateway binds");
        Self {
            node_id,
            link,
            events,
            secret,
        }
    }

    fn hello_at(&self, routing_id: &[u8]) -> Bytes {
        let mut hello = GatewayHello {
            gateway_node_id: self.node_id,
            p2p_endpoint: self.link.local_endpoint().to_string(),
            incarnation: 1,
            open_connections: 0,
            probe: GS,
            proof: None,
        };
        cluster_auth::sign(self.secret.as_ref(), routing_id, &mut hello);
        encode_gw(gateway_to_server::Kind::Hello(hello))
    }

    /// Sends a hello on the pipe to the game server; returns its bytes.
    fn hello(&self) -> Option<Bytes> {
        let sent = std::sync::Mutex::new(None);
        let ok = self
            .link
            .send_signed(GS, &|rid| {
                let b = self.hello_at(rid);
                *sent.lock().unwrap() = Some(b.clone());
                b
            })
            .is_ok();
        ok.then(|| sent.into_inner().unwrap()).flatten()
    }

    /// The routing id of our pipe to the game server (as a hello signs it).
    fn routing_id(&self) -> Vec<u8> {
        let rid = std::sync::Mutex::new(Vec::new());
        let _ = self.link.send_signed(GS, &|r| {
            *rid.lock().unwrap() = r.to_vec();
            self.hello_at(r)
        });
        rid.into_inner().unwrap()
    }

    fn send(&self, kind: gateway_to_server::Kind) -> bool {
        self.link.send(GS, encode_gw(kind)).is_ok()
    }

    /// Says hello until the game server answers with a `ServerHello`.
    async fn link_to(&mut self, gs: &GameServerNode) {
        self.link.connect(GS, &p2p_of(gs)).unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            self.hello();
            let got = tokio::time::timeout(Duration::from_millis(100), self.events.recv()).await;
            if let Ok(Some(LinkEvent::Message { payload, .. })) = got {
                if let Ok(ServerToGateway {
                    kind: Some(server_to_gateway::Kind::Hello(_)),
                }) = ServerToGateway::decode(payload)
                {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the game server never answered our hello"
            );
        }
    }

    /// The next message from the game server that `pick` accepts.
    async fn next<T>(&mut self, mut pick: impl FnMut(server_to_gateway::Kind) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = tokio::time::timeout(left, self.events.recv())
                .await
                .expect("the game server answered in time")
                .expect("link open");
            let LinkEvent::Message { payload, .. } = event else {
                continue; // a lost connection: keep waiting for the answer
            };
            if let Ok(ServerToGateway { kind: Some(kind) }) = ServerToGateway::decode(payload) {
                if let Some(t) = pick(kind) {
                    return t;
                }
            }
        }
    }
}

fn encode_gw(kind: gateway_to_server::Kind) -> Bytes {
    Bytes::from(GatewayToServer { kind: Some(kind) }.encode_to_vec())
}

fn client_frame(
    socket: &Uuid,
    session_id: u64,
    user_id: u64,
    packet: &ClientPacket,
) -> gateway_to_server::Kind {
    gateway_to_server::Kind::ClientFrame(ClientFrame {
        socket_id: Bytes::copy_from_slice(socket.as_bytes()),
        session_id,
        user_id,
        body: Bytes::from(packet.encode_to_vec()),
    })
}

fn login(seq: u64, user_id: u64) -> ClientPacket {
    ClientPacket {
        sequence_id: seq,
        body: Some(client_packet::Body::Login(LoginRequest {
            user_id,
            token: "dev".into(),
        })),
    }
}

fn echo(seq: u64, data: Vec<u8>) -> ClientPacket {
    ClientPacket {
        sequence_id: seq,
        body: Some(client_packet::Body::Echo(EchoRequest { data: data.into() })),
    }
}

/// A gateway started directly (the harness's `start_gateway` waits for it
/// to link, which a gateway with the wrong secret never does).
async fn unlinked_gateway(
    node_id: u64,
    gs: &GameServerNode,
    secret: Option<ClusterSecret>,
) -> (RunningGateway, CancellationToken) {
    let mut c = gateway_config(node_id, &[gs.p2p_port]);
    c.node.cluster_secret = secret;
    let shutdown = CancellationToken::new();
    let running = gamemesh_gateway::start(c, shutdown.clone())
        .await
        .expect("gateway starts");
    (running, shutdown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_right_secret_everything_works() {
    let cluster = Cluster::start(2, 2).await;
    for i in 0..2 {
        let mut c = cluster.client(i).await;
        c.login(100 + i as u64, "dev").await.unwrap();
        assert_eq!(
            c.echo("through the authenticated links").await.unwrap(),
            "through the authenticated links"
        );
    }
    for gs in &cluster.game_servers {
        assert_eq!(gs.state.gateways.trust().refused(), 0);
        assert_eq!(gs.state.mesh.trust().refused(), 0);
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_with_the_wrong_secret_or_none_is_not_linked() {
    let cluster = Cluster::start(0, 1).await;
    let gs = &cluster.game_servers[0];
    let (wrong, stop_wrong) =
        unlinked_gateway(11, gs, Some(ClusterSecret::new("not the cluster secret"))).await;
    let (none, stop_none) = unlinked_gateway(12, gs, None).await;
    // Each says hello every 100 ms while it has no game server.
    wait_for(
        "the game server refuses both gateways' hellos",
        WAIT,
        || gs.state.gateways.trust().refused() >= 10,
    )
    .await;
    assert!(
        gs.state.gateways.ids().is_empty(),
        "no gateway was linked: {:?}",
        gs.state.gateways.ids()
    );
    assert_eq!(*wrong.live_game_servers().borrow(), 0);
    assert_eq!(*none.live_game_servers().borrow(), 0);
    // A client of such a gateway is told there is no game server.
    let mut client = Client::connect_with_timeout(&wrong.client_addr.to_string(), TIMEOUT)
        .await
        .unwrap();
    let err = client.login(7, "dev").await.unwrap_err();
    assert!(
        err.to_string().contains("closed")
            || err.to_string().contains("SERVER_UNAVAILABLE")
            || err.to_string().contains("unavailable"),
        "{err}"
    );
    stop_wrong.cancel();
    stop_none.cancel();
    wrong.wait().await;
    none.wait().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_from_an_unauthenticated_peer_are_dropped_and_counted() {
    let cluster = Cluster::start(0, 1).await;
    let gs = &cluster.game_servers[0];
    let fake = FakeGateway::start(21, Some(ClusterSecret::new("wrong")), |_| {});
    fake.link.connect(GS, &p2p_of(gs)).unwrap();
    let socket = Uuid::new_v4();
    // Its hello (wrong secret), then what a gateway would send for a
    // client: none of it may be acted on.
    wait_for("the pipe to connect", WAIT, || fake.hello().is_some()).await;
    assert!(
        fake.send(gateway_to_server::Kind::ClientConnected(ClientConnected {
            socket_id: Bytes::copy_from_slice(socket.as_bytes()),
            peer_addr: "127.0.0.1:4000".into(),
        }))
    );
    assert!(fake.send(client_frame(&socket, 0, 0, &login(1, 4242))));
    wait_for(
        "the hello, ClientConnected and the login are refused",
        WAIT,
        || gs.state.gateways.trust().refused() >= 3,
    )
    .await;
    assert!(gs.state.gateways.ids().is_empty(), "the forger was linked");
    assert!(!has_session(&cluster, 4242), "a forged login was executed");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_hello_cannot_take_over_a_live_gateway() {
    let cluster = Cluster::start(1, 1).await;
    let gs = &cluster.game_servers[0];
    let mut client = cluster.client(0).await;
    client.login(31, "dev").await.unwrap();

    // A stranger claims to be gateway 1 (restarted, at its own endpoint):
    // accepted, this would drop every socket of the real gateway 1.
    let forger = FakeGateway::start(1, Some(ClusterSecret::new("guessed")), |_| {});
    forger.link.connect(GS, &p2p_of(gs)).unwrap();
    wait_for("the forger's pipe to connect", WAIT, || {
        forger.hello().is_some()
    })
    .await;
    wait_for("the forged hello is refused", WAIT, || {
        gs.state.gateways.trust().refused() >= 1
    })
    .await;
    // The real gateway's client carries on, on the same session.
    assert_eq!(client.echo("still here").await.unwrap(), "still here");
    assert_eq!(gs.state.gateways.ids(), vec![1]);

    // A stranger copying the routing id of an authenticated pipe is not
    // heard at all (ROUTER_HANDOVER is off): its login never runs, while
    // the real pipe's login, sent after it, does.
    //
    // Nothing counts what is not heard (libzmq leaves a pipe whose routing
    // id is taken unnamed, and never reads it), so "not heard" is checked
    // once the game server has read the thief's login off the wire: the
    // thief sends it, closes its connection with the login flushed, and
    // waits until the game server has closed its end too, which it does
    // only after reading everything before the end. Had the login been
    // heard, it would have reached the game server's dispatcher before the
    // real pipe's login was even sent.
    let mut legit = FakeGateway::start(5, test_cluster_secret(), |_| {});
    legit.link_to(gs).await;
    let stolen = legit.routing_id();
    let thief_port = free_port();
    let mut ctx = zmq::Context::new();
    let thief = ctx.socket(zmq::DEALER).unwrap();
    thief.set_identity(&stolen).unwrap();
    thief.set_immediate(true).unwrap();
    // Closing waits (up to this long) until the login is written.
    thief.set_linger(10_000).unwrap();
    // From a port of our own, to find the connection in the kernel's table.
    thief
        .connect(&format!(
            "tcp://127.0.0.1:{thief_port};127.0.0.1:{}",
            gs.p2p_port
        ))
        .unwrap();
    let stolen_login = encode_gw(client_frame(&Uuid::new_v4(), 0, 0, &login(1, 5151)));
    wait_for("the thief's connection completes", WAIT, || {
        thief.send(&stolen_login[..], zmq::DONTWAIT).is_ok()
    })
    .await;
    tokio::task::spawn_blocking(move || {
        drop(thief);
        // zmq_ctx_term: returns once every socket's queue is written.
        ctx.destroy().expect("the thief's context ends");
    })
    .await
    .expect("closing the thief");
    wait_for(
        "the game server reads the thief's connection to its end and closes it",
        WAIT,
        || tcp_state(thief_port, gs.p2p_port) == Some(TCP_TIME_WAIT),
    )
    .await;
    assert!(
        !has_session(&cluster, 5151),
        "the copied routing id was heard: the thief's login ran"
    );
    let socket = Uuid::new_v4();
    assert!(legit.send(client_frame(&socket, 0, 0, &login(1, 5152))));
    legit
        .next(|k| match k {
            server_to_gateway::Kind::Pin(p) if p.user_id == 5152 => Some(()),
            _ => None,
        })
        .await;
    assert!(has_session(&cluster, 5152));
    assert!(
        !has_session(&cluster, 5151),
        "the copied routing id was heard"
    );
    let mut linked = gs.state.gateways.ids();
    linked.sort_unstable();
    assert_eq!(linked, vec![1, 5], "only the real gateways are linked");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replayed_hello_is_refused() {
    let cluster = Cluster::start(0, 1).await;
    let gs = &cluster.game_servers[0];
    let mut legit = FakeGateway::start(5, test_cluster_secret(), |_| {});
    legit.link_to(gs).await;
    let captured = legit.hello().expect("hello sent");
    wait_for("the game server answers the captured hello", WAIT, || {
        gs.state.gateways.ids() == vec![5]
    })
    .await;
    let before = gs.state.gateways.trust().refused();

    // The same bytes again, on the same pipe: the nonce was seen.
    assert!(legit.link.send(GS, captured.clone()).is_ok());
    wait_for("a replay on the same pipe is refused", WAIT, || {
        gs.state.gateways.trust().refused() > before
    })
    .await;

    // The same bytes on a connection of the attacker's own (same node id,
    // its own routing id): the proof names another pipe.
    let attacker = FakeGateway::start(5, None, |_| {});
    attacker.link.connect(GS, &p2p_of(gs)).unwrap();
    wait_for(
        "the attacker's pipe connects and the replay is sent",
        WAIT,
        || attacker.link.send(GS, captured.clone()).is_ok(),
    )
    .await;
    wait_for("a replay on another pipe is refused", WAIT, || {
        gs.state.gateways.trust().refused() >= before + 2
    })
    .await;
    // So the attacker's pipe is not authenticated: its login is dropped.
    let frame = client_frame(&Uuid::new_v4(), 0, 0, &login(1, 6161));
    assert!(attacker.send(frame));
    wait_for("the attacker's login is dropped", WAIT, || {
        gs.state.gateways.trust().refused() >= before + 3
    })
    .await;
    assert!(!has_session(&cluster, 6161));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_game_server_with_the_wrong_secret_is_not_linked_on_the_mesh() {
    let cluster = Cluster::start(1, 1).await;
    let gs1 = &cluster.game_servers[0];
    let mut c = game_server_config(2, &cluster.redis.addr());
    c.node.cluster_secret = Some(ClusterSecret::new("another cluster"));
    let gs2 = start_game_server(c).await;
    // They find each other in the shared registry and say hello every
    // 100 ms while the mesh is forming.
    wait_for("both refuse each other's mesh hellos", WAIT, || {
        gs1.state.mesh.trust().refused() >= 3 && gs2.state.mesh.trust().refused() >= 3
    })
    .await;
    assert!(!gs1.state.mesh.is_live(2));
    assert!(!gs2.state.mesh.is_live(1));
    assert!(
        gs1.state.mesh.live_peers().is_empty(),
        "2 would be gossiped to gateways"
    );
    gs2.shutdown.cancel();
    let _ = gs2.task.await;
    cluster.shutdown().await;
}

/// A game server played by the test: answers gateway hellos (so the
/// gateway links it) until `stall` is cancelled, then reads nothing until
/// `resume` is cancelled, then reads (and records the last client sequence
/// id in `seen`) until `stop`. Reading again before the gateway goes keeps
/// libzmq away from tearing down a connection whose input is stopped at
/// the high-water mark while output is pending (libzmq 4.3.4 can assert
/// there: zeromq/libzmq#4841).
async fn stalling_game_server(
    stall: CancellationToken,
    resume: CancellationToken,
    stop: CancellationToken,
    seen: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> String {
    let mut c = LinkConfig::new("game-server", 1, "127.0.0.1", 0);
    c.rcvhwm = 1;
    c.recv_queue = 1;
    let (link, mut events) = ZmqLink::bind(c).unwrap();
    let endpoint = link.local_endpoint().to_string();
    tokio::spawn(async move {
        let secret = test_cluster_secret();
        let mut linked = std::collections::HashSet::new();
        loop {
            let event = tokio::select! {
                _ = stall.cancelled() => break,
                e = events.recv() => match e { Some(e) => e, None => return },
            };
            let LinkEvent::Message { from, payload, .. } = event else {
                continue;
            };
            let Ok(GatewayToServer {
                kind: Some(gateway_to_server::Kind::Hello(h)),
            }) = GatewayToServer::decode(payload)
            else {
                continue;
            };
            scripted::answer_hello(&link, &mut linked, from, &h, secret.as_ref());
        }
        resume.cancelled().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                e = events.recv() => match e {
                    Some(LinkEvent::Message { payload, .. }) => {
                        if let Ok(GatewayToServer { kind: Some(gateway_to_server::Kind::ClientFrame(f)) }) = GatewayToServer::decode(payload) {
                            seen.store(packets::peek_sequence_id(&f.body), std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    Some(LinkEvent::PeerDisconnected { .. }) => {}
                    None => break,
                },
            }
        }
        link.shutdown();
    });
    endpoint
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_game_server_that_stops_reading_gets_its_clients_unavailable_not_silence() {
    gamemesh_integration_tests::init_tracing();
    let (stall, resume, stop) = (
        CancellationToken::new(),
        CancellationToken::new(),
        CancellationToken::new(),
    );
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let endpoint =
        stalling_game_server(stall.clone(), resume.clone(), stop.clone(), seen.clone()).await;
    let port: u16 = endpoint.rsplit(':').next().unwrap().parse().unwrap();
    let mut c = gateway_config(1, &[port]);
    c.node.link_sndhwm = 2;
    c.max_packets_per_sec = 1_000_000;
    let shutdown = CancellationToken::new();
    let mut gw = gamemesh_gateway::start(c, shutdown.clone()).await.unwrap();
    tokio::time::timeout(WAIT, gw.wait_for_game_servers(1))
        .await
        .expect("the gateway links the fake game server");
    stall.cancel();

    let mut client = Client::connect_with_timeout(&gw.client_addr.to_string(), TIMEOUT)
        .await
        .unwrap();
    // Big frames fill the kernel buffers quickly; the gateway relays
    // without parsing, so before login is fine.
    let mut unavailable = Vec::new();
    let mut seq = 0;
    while unavailable.is_empty() {
        for _ in 0..20 {
            seq += 1;
            client.send(&echo(seq, vec![1; 60_000])).await.unwrap();
        }
        assert!(seq < 5_000, "the gateway never refused a frame");
        while let Ok(p) = client.recv(Duration::from_millis(5)).await {
            unavailable.push(p);
        }
    }
    for p in &unavailable {
        let ServerPacket {
            sequence_id,
            body: Some(server_packet::Body::Error(e)),
        } = p
        else {
            panic!("unexpected answer {p:?}");
        };
        assert_eq!(e.code, ErrorCode::Unavailable as i32, "{e:?}");
        assert!(e.detail.contains("overloaded"), "{e:?}");
        assert!((1..=seq).contains(sequence_id));
    }
    assert!(gw.link_hwm_events() >= unavailable.len() as u64);

    // Once the game server reads again, frames flow again.
    resume.cancel();
    const AFTER: u64 = 1_000_000;
    let mut got = false;
    for _ in 0..1000 {
        client.send(&echo(AFTER, vec![3])).await.unwrap();
        let _ = client.recv(Duration::from_millis(10)).await;
        if seen.load(std::sync::atomic::Ordering::Relaxed) == AFTER {
            got = true;
            break;
        }
    }
    assert!(got, "no frame got through after the game server read again");
    shutdown.cancel();
    gw.wait().await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_that_stops_reading_gets_its_clients_kicked_slow_consumer() {
    let cluster = Cluster::start_with(gamemesh_integration_tests::ClusterOptions {
        gateways: 0,
        game_servers: 1,
        game_server: |c| c.node.link_sndhwm = 2,
        ..Default::default()
    })
    .await;
    let gs = &cluster.game_servers[0];
    let mut fake = FakeGateway::start(9, test_cluster_secret(), |c| {
        c.rcvhwm = 1;
        c.recv_queue = 1;
    });
    fake.link_to(gs).await;
    let socket = Uuid::new_v4();
    assert!(fake.send(client_frame(&socket, 0, 0, &login(1, 9191))));
    let session = fake
        .next(|k| match k {
            server_to_gateway::Kind::Pin(p) => Some(p.session_id),
            _ => None,
        })
        .await;

    // Now the fake gateway stops reading; its echoes pile up on the game
    // server's pipe until the high-water mark refuses one.
    let mut seq = 1;
    wait_for_async("the game server's pipe to the gateway fills", WAIT, || {
        seq += 1;
        let sent = fake.send(client_frame(
            &socket,
            session,
            9191,
            &echo(seq, vec![2; 60_000]),
        ));
        let owed = gs.state.gateways.owed_kicks();
        async move { sent && owed > 0 }
    })
    .await;
    assert!(gs.state.gateways.hwm_events() >= 1);

    // Reading again, the gateway gets the kick for that client.
    let kick = fake
        .next(|k| match k {
            server_to_gateway::Kind::Disconnect(d) if d.socket_id == socket.as_bytes()[..] => {
                Some(d.last_frame)
            }
            _ => None,
        })
        .await;
    let kicked = ServerPacket::decode(kick).unwrap();
    let Some(server_packet::Body::Kicked(k)) = kicked.body else {
        panic!("not a kick: {kicked:?}");
    };
    assert_eq!(k.reason, KickReason::SlowConsumer as i32);
    wait_for("nothing is owed any more", WAIT, || {
        gs.state.gateways.owed_kicks() == 0
    })
    .await;
    // Keep reading while the game server stops, so no connection is torn
    // down with its input stopped at the mark (see stalling_game_server).
    let stop = CancellationToken::new();
    let drain = tokio::spawn({
        let stop = stop.clone();
        async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    e = fake.events.recv() => if e.is_none() { break },
                }
            }
            fake.link.shutdown();
        }
    });
    cluster.shutdown().await;
    stop.cancel();
    drain.await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn the_replies_to_a_burst_from_one_socket_leave_in_one_link_message_in_order() {
    // One thread: the dispatcher posts the whole burst to the socket's
    // actor before the actor runs, as on a busy server.
    let cluster = Cluster::start(0, 1).await;
    let gs = &cluster.game_servers[0];
    let mut fake = FakeGateway::start(31, test_cluster_secret(), |_| {});
    fake.link_to(gs).await;
    let socket = Uuid::new_v4();
    assert!(fake.send(client_frame(&socket, 0, 0, &login(1, 3131))));
    let session_id = fake
        .next(|k| match k {
            server_to_gateway::Kind::Pin(p) => Some(p.session_id),
            _ => None,
        })
        .await;
    let reply_seq = |k| match k {
        server_to_gateway::Kind::Send(m) => {
            ServerPacket::decode(m.body).ok().map(|p| p.sequence_id)
        }
        _ => None,
    };
    assert_eq!(fake.next(reply_seq).await, 1, "the login's reply");

    // Eight echoes in one link message, as a gateway relays one read.
    let before = fake.events.messages_received();
    let burst: Vec<Bytes> = (2..10u64)
        .map(|seq| encode_gw(client_frame(&socket, session_id, 3131, &echo(seq, vec![1]))))
        .collect();
    fake.link
        .send_many(GS, &burst)
        .expect("the pipe takes the burst");
    let mut seqs = Vec::new();
    while seqs.len() < 8 {
        seqs.push(fake.next(reply_seq).await);
    }
    assert_eq!(seqs, (2..10).collect::<Vec<_>>(), "every reply, in order");
    // One message for the eight replies; a hello of the game server's
    // may come between, but never one message per reply.
    let carried = fake.events.messages_received() - before;
    assert!(carried <= 2, "8 replies took {carried} link messages");
    cluster.shutdown().await;
}
