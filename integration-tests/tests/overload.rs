//! Overload protection end to end: one real `redis-server`, one game
//! server and one gateway in process, real TCP and ZeroMQ. Each test turns
//! one gateway protection down to a size a test can reach (login deadline,
//! `--max-connections`, per-IP connect rate, per-connection packet rate,
//! outbound bytes bound) and leaves the others generous, so exactly the
//! protection under test acts.
//!
//! The gateway is started here rather than through `Cluster`, because the
//! tests read its counters (`RunningGateway::counters`). Every wait is on a
//! condition with a bounded timeout; nothing sleeps for luck.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gamemesh_gateway::limits::Refusal;
use gamemesh_gateway::{Config as GwConfig, RunningGateway};
use gamemesh_integration_tests::{
    gateway_config, start_relaying_gateway, wait_for, Client, ClientError, Cluster, ClusterOptions,
    TIMEOUT,
};
use gamemesh_proto::client::{
    client_packet, server_packet, ClientPacket, EchoRequest, ErrorCode, HeartbeatRequest,
    KickReason, ServerPacket,
};
use gamemesh_proto::codec::encode_frame;
use gamemesh_proto::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

/// Upper bound for "the server closes the connection" waits.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A gateway of our own next to a one-game-server cluster.
struct Setup {
    cluster: Cluster,
    gateway: RunningGateway,
    shutdown: CancellationToken,
    addr: String,
}

impl Setup {
    /// Starts Redis, a game server and a gateway configured by `tweak`
    /// (applied over generous limits), and waits until the gateway relays.
    async fn start(tweak: impl FnOnce(&mut GwConfig)) -> Setup {
        let cluster = Cluster::start_with(ClusterOptions {
            gateways: 0,
            game_servers: 1,
            ..ClusterOptions::default()
        })
        .await;
        let mut config = gateway_config(1, &[cluster.game_servers[0].p2p_port]);
        generous(&mut config);
        tweak(&mut config);
        let (gateway, shutdown) = start_relaying_gateway(config, 1).await;
        let addr = gateway.client_addr.to_string();
        Setup {
            cluster,
            gateway,
            shutdown,
            addr,
        }
    }

    async fn client(&self) -> Client {
        Client::connect_with_timeout(&self.addr, TIMEOUT)
            .await
            .expect("client connects")
    }

    async fn logged_in(&self, user_id: u64) -> Client {
        let mut c = self.client().await;
        c.login(user_id, "dev").await.expect("login succeeds");
        c
    }

    async fn shutdown(self) {
        self.shutdown.cancel();
        self.gateway.wait().await;
        self.cluster.shutdown().await;
    }
}

/// Every protection far out of reach; each test then lowers one.
fn generous(c: &mut GwConfig) {
    c.login_deadline_secs = 600;
    c.max_connections = 10_000;
    c.max_connects_per_ip_per_sec = 100_000;
    c.max_packets_per_sec = 1_000_000;
    c.rate_limit_kick_after = 1_000_000;
    c.outbound_queue_bytes = 64 * 1024 * 1024;
    // A pipelined burst of 100 echoes can overflow the default 64-frame
    // queue before the socket task drains it.
    c.outbound_queue_frames = 100_000;
}

/// The `Kicked` body of `packet`, if it is one.
fn kicked(packet: &ServerPacket) -> Option<(KickReason, &str)> {
    match &packet.body {
        Some(server_packet::Body::Kicked(k)) => Some((k.reason(), k.detail.as_str())),
        _ => None,
    }
}

/// The error code of an `ErrorResponse`, if `packet` is one.
fn error_code(packet: &ServerPacket) -> Option<ErrorCode> {
    match &packet.body {
        Some(server_packet::Body::Error(e)) => Some(e.code()),
        _ => None,
    }
}

/// A socket not logged in within the deadline is kicked `PROTOCOL_ERROR`;
/// a logged-in socket, and one that logged in and out again, are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_deadline_kicks_a_silent_unauthenticated_socket_but_not_a_logged_in_one() {
    let setup = Setup::start(|c| c.login_deadline_secs = 1).await;

    // Both connect before the silent one, so when the silent one's
    // deadline has passed, theirs has too.
    let mut member = setup.logged_in(3001).await;
    let mut quitter = setup.logged_in(3002).await;
    quitter.logout().await.expect("logout answered");

    let started = Instant::now();
    let mut silent = setup.client().await;
    let push = silent
        .next_push(CLOSE_TIMEOUT)
        .await
        .expect("a kick arrives");
    assert_eq!(
        kicked(&push),
        Some((KickReason::ProtocolError, "no login within 1 s")),
        "{push:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "kicked after {:?}, before the 1 s deadline",
        started.elapsed()
    );
    assert!(silent.wait_closed(CLOSE_TIMEOUT).await, "closed after kick");

    assert_eq!(member.echo("still here").await.unwrap(), "still here");
    quitter
        .heartbeat()
        .await
        .expect("a socket that logged out is not under the deadline again");
    for p in member
        .take_queued()
        .iter()
        .chain(quitter.take_queued().iter())
    {
        assert_eq!(kicked(p), None, "unexpected kick {p:?}");
    }
    assert_eq!(
        setup.gateway.counters().kicks(KickReason::ProtocolError),
        1,
        "exactly the silent socket was kicked"
    );

    drop((member, quitter, silent));
    setup.shutdown().await;
}

/// With `--max-connections 3`, the fourth socket is refused with
/// `Kicked{SERVER_UNAVAILABLE}` and counted; once one closes, its slot is
/// reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_refuses_the_extra_socket_counts_it_and_a_freed_slot_is_reusable() {
    const MAX: usize = 3;
    let setup = Setup::start(|c| c.max_connections = MAX).await;
    let gw = &setup.gateway;
    wait_for("the readiness probe's socket is closed", TIMEOUT, || {
        gw.open_connections() == 0
    })
    .await;

    let mut admitted = Vec::new();
    for _ in 0..MAX {
        let mut c = setup.client().await;
        c.heartbeat().await.expect("admitted socket is served");
        admitted.push(c);
    }
    assert_eq!(gw.open_connections(), MAX);

    let mut extra = setup.client().await;
    let push = extra
        .next_push(CLOSE_TIMEOUT)
        .await
        .expect("a kick arrives");
    assert_eq!(
        kicked(&push),
        Some((KickReason::ServerUnavailable, "gateway is full")),
        "{push:?}"
    );
    assert!(
        extra.wait_closed(CLOSE_TIMEOUT).await,
        "refused socket closed"
    );
    assert_eq!(gw.refused_connections(), 1);
    assert_eq!(gw.counters().refusals(Refusal::GatewayFull), 1);

    // The admitted ones were not disturbed.
    for c in &mut admitted {
        c.heartbeat().await.expect("admitted socket still served");
    }

    // Free one slot; the next socket gets it.
    drop(admitted.pop());
    wait_for("the closed socket frees its slot", TIMEOUT, || {
        gw.open_connections() == MAX - 1
    })
    .await;
    let mut again = setup.client().await;
    again.heartbeat().await.expect("a freed slot is reusable");
    assert_eq!(gw.refused_connections(), 1, "nothing else was refused");

    drop((admitted, extra, again));
    setup.shutdown().await;
}

/// A socket from `src` (a loopback address) to `addr`.
async fn connect_from(src: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((src, 0)))
        .unwrap_or_else(|e| panic!("cannot bind {src}: {e} (is 127.0.0.0/8 on lo?)"));
    socket.connect(addr).await.expect("connect")
}

/// Reads one frame as a `ServerPacket`, or `None` on close or timeout.
async fn read_packet(stream: &mut TcpStream) -> Option<ServerPacket> {
    tokio::time::timeout(TIMEOUT, async {
        let len = stream.read_u32().await.ok()? as usize;
        let mut body = vec![0; len];
        stream.read_exact(&mut body).await.ok()?;
        ServerPacket::decode(&body[..]).ok()
    })
    .await
    .ok()
    .flatten()
}

/// A burst of connects from one address beyond its rate, with no queue
/// allowed (`--connect-queue-ms 0`), is refused with `Kicked{RATE_LIMITED}`
/// and counted, while another address connects normally. (Pacing with the
/// default queue: tests/storms.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_connect_rate_refuses_a_burst_beyond_the_limit() {
    const RATE: u32 = 5;
    const BURST: usize = 10;
    const ATTEMPTS: usize = 30;
    let setup = Setup::start(|c| {
        c.max_connects_per_ip_per_sec = RATE;
        c.connect_burst_per_ip = BURST as u32;
        c.connect_queue_ms = 0;
    })
    .await;
    let addr: SocketAddr = setup.addr.parse().unwrap();
    // The readiness probe connected from 127.0.0.1; the burst comes from a
    // fresh address.
    let flooder = Ipv4Addr::new(127, 0, 0, 2);

    let started = Instant::now();
    let mut sockets = Vec::new();
    for _ in 0..ATTEMPTS {
        sockets.push(connect_from(flooder, addr).await);
    }
    let elapsed = started.elapsed();

    // An admitted socket answers a heartbeat; a refused one has been sent
    // a kick and closed.
    let heartbeat = encode_frame(
        &ClientPacket {
            sequence_id: 1,
            body: Some(client_packet::Body::Heartbeat(HeartbeatRequest {
                client_time_ms: 1,
            })),
        }
        .encode_to_vec(),
    );
    let mut admitted = Vec::new();
    let mut refused = Vec::new();
    for (i, s) in sockets.iter_mut().enumerate() {
        let _ = s.write_all(&heartbeat).await; // may fail on a refused socket
        let first = read_packet(s)
            .await
            .unwrap_or_else(|| panic!("socket {i}: neither a reply nor a kick"));
        match (&first.body, kicked(&first)) {
            (Some(server_packet::Body::Heartbeat(_)), _) => admitted.push(i),
            (_, Some((KickReason::RateLimited, detail))) if detail.contains("rate") => {
                refused.push(i)
            }
            _ => panic!("socket {i}: unexpected {first:?}"),
        }
    }

    let allowed = BURST + (f64::from(RATE) * elapsed.as_secs_f64()).ceil() as usize;
    assert_eq!(
        admitted[..BURST],
        (0..BURST).collect::<Vec<_>>()[..],
        "the first {BURST} (the burst) are admitted"
    );
    assert!(
        admitted.len() <= allowed,
        "{} admitted in {elapsed:?}; at most {allowed} allowed",
        admitted.len()
    );
    assert!(!refused.is_empty(), "nothing refused");
    assert_eq!(
        setup.gateway.counters().refusals(Refusal::IpRate),
        refused.len() as u64
    );
    assert_eq!(setup.gateway.counters().refusals(Refusal::GatewayFull), 0);

    // Another address is not affected.
    let mut other = connect_from(Ipv4Addr::new(127, 0, 0, 3), addr).await;
    other.write_all(&heartbeat).await.unwrap();
    let reply = read_packet(&mut other).await.expect("reply");
    assert!(
        matches!(reply.body, Some(server_packet::Body::Heartbeat(_))),
        "{reply:?}"
    );

    drop((sockets, other));
    setup.shutdown().await;
}

/// An echo packet with `data`, sequence id from `c`.
fn echo_packet(c: &mut Client, data: &Bytes) -> ClientPacket {
    ClientPacket {
        sequence_id: c.allocate_sequence(),
        body: Some(client_packet::Body::Echo(EchoRequest {
            data: data.clone(),
        })),
    }
}

/// A flood over the per-connection packet rate gets `RATE_LIMITED` replies
/// carrying the flooded frames' sequence ids, then, past
/// `--rate-limit-kick-after`, `Kicked{PROTOCOL_ERROR}`; a neighbour's echo
/// works throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_flood_is_rate_limited_then_kicked_and_a_neighbour_is_unaffected() {
    const RATE: u32 = 50; // burst 100
    const KICK_AFTER: u32 = 50;
    const MAX_FLOOD: usize = 2000;
    let setup = Setup::start(|c| {
        c.max_packets_per_sec = RATE;
        c.rate_limit_kick_after = KICK_AFTER;
    })
    .await;
    let mut neighbour = setup.logged_in(3101).await;
    let mut flooder = setup.logged_in(3102).await;
    let data = Bytes::from_static(b"flood");
    let mut sent = HashSet::new();
    let mut received = Vec::new();

    // Phase 1: the burst and then some, until the first RATE_LIMITED reply
    // (well short of the kick: at most 2 x RATE + KICK_AFTER / 2 frames).
    for _ in 0..(2 * RATE + KICK_AFTER / 2) {
        let p = echo_packet(&mut flooder, &data);
        sent.insert(p.sequence_id);
        flooder.send(&p).await.expect("flood frame sent");
    }
    loop {
        let p = flooder.recv(TIMEOUT).await.expect("replies to the flood");
        let limited = error_code(&p) == Some(ErrorCode::RateLimited);
        received.push(p);
        if limited {
            break;
        }
    }

    // The flooder is being rate limited now; its neighbour is served.
    for i in 0..10 {
        let d = format!("neighbour {i}");
        assert_eq!(neighbour.echo(d.clone()).await.unwrap(), d);
    }

    // Phase 2: flood on until kicked, the neighbour echoing alongside.
    let flood = async {
        for _ in 0..MAX_FLOOD {
            let p = echo_packet(&mut flooder, &data);
            sent.insert(p.sequence_id);
            if let Err(e) = flooder.send(&p).await {
                assert!(matches!(e, ClientError::Closed), "send failed with {e}");
                break;
            }
        }
        loop {
            match flooder.recv(CLOSE_TIMEOUT).await {
                Ok(p) => received.push(p),
                Err(ClientError::Closed) => break,
                Err(e) => panic!("flooder was never closed: {e}"),
            }
        }
    };
    let neighbour_echoes = async {
        for i in 0..10 {
            let d = format!("during {i}");
            assert_eq!(neighbour.echo(d.clone()).await.unwrap(), d);
        }
    };
    tokio::join!(flood, neighbour_echoes);

    let limited: Vec<u64> = received
        .iter()
        .filter(|p| error_code(p) == Some(ErrorCode::RateLimited))
        .map(|p| p.sequence_id)
        .collect();
    let echoed: HashSet<u64> = received
        .iter()
        .filter(|p| matches!(p.body, Some(server_packet::Body::Echo(_))))
        .map(|p| p.sequence_id)
        .collect();
    assert_eq!(
        limited.len(),
        KICK_AFTER as usize,
        "every rate-limited frame before the kicking one is answered"
    );
    let distinct: HashSet<u64> = limited.iter().copied().collect();
    assert_eq!(distinct.len(), limited.len(), "one answer per frame");
    for seq in &limited {
        assert!(
            sent.contains(seq),
            "RATE_LIMITED for unsent sequence id {seq}"
        );
        assert!(
            !echoed.contains(seq),
            "sequence id {seq} both echoed and limited"
        );
    }
    let kick = received
        .iter()
        .find_map(kicked)
        .expect("the flooder is kicked");
    assert_eq!(kick, (KickReason::ProtocolError, "packet rate abuse"));
    let counters = setup.gateway.counters();
    assert_eq!(counters.rate_limited_frames(), u64::from(KICK_AFTER) + 1);
    assert_eq!(counters.kicks(KickReason::ProtocolError), 1);

    assert_eq!(neighbour.echo("after").await.unwrap(), "after");
    drop((neighbour, flooder));
    setup.shutdown().await;
}

/// A client that sends large echoes and never reads is kicked
/// `SLOW_CONSUMER` by the outbound bytes bound (the frame bound is set far
/// out of reach), and others carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_bytes_bound_kicks_a_non_reading_client_with_slow_consumer() {
    const PAYLOAD: usize = 60 * 1024;
    const MAX_REQUESTS: usize = 2000;
    let setup = Setup::start(|c| {
        c.outbound_queue_frames = 100_000;
        c.outbound_queue_bytes = 64 * 1024;
    })
    .await;
    let mut bystander = setup.logged_in(3201).await;
    let mut stalled = setup.logged_in(3202).await;

    // 2000 x 60 KiB of replies is far more than loopback buffers hold; once
    // the gateway's write blocks, the next reply crosses 64 KiB queued.
    let writer = tokio::spawn(async move {
        let data = Bytes::from(vec![b'b'; PAYLOAD]);
        for _ in 0..MAX_REQUESTS {
            let p = echo_packet(&mut stalled, &data);
            if let Err(e) = stalled.send(&p).await {
                return (stalled, Some(e));
            }
        }
        (stalled, None)
    });
    let (mut stalled, failed) = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("the stalled client's writes end within 30 s")
        .expect("writer task");
    if let Some(e) = failed {
        assert!(matches!(e, ClientError::Closed), "write failed with {e}");
    }
    assert!(
        stalled.wait_closed(Duration::from_secs(10)).await,
        "the gateway closed the non-reading client"
    );
    // The kick frame itself may not fit in the full buffers; if it did, it
    // says SLOW_CONSUMER.
    for p in stalled.take_queued() {
        if let Some((reason, _)) = kicked(&p) {
            assert_eq!(reason, KickReason::SlowConsumer);
        }
    }
    let counters = setup.gateway.counters();
    assert_eq!(counters.kicks(KickReason::SlowConsumer), 1);
    assert_eq!(counters.kicks(KickReason::IdleTimeout), 0);
    assert_eq!(counters.kicks(KickReason::ProtocolError), 0);

    assert_eq!(bystander.echo("fine").await.unwrap(), "fine");
    drop((bystander, stalled));
    setup.shutdown().await;
}
