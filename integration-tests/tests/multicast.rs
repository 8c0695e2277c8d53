//! `SendToClients`: one link message from a game server carrying one body
//! for several sockets, which the gateway writes to each of them.
//!
//! A real gateway against a game server played by the test (a `ZmqLink`
//! that answers hellos and sends what the test scripts), and real client
//! sockets: every socket gets the body in order with the frames sent to it
//! alone, a socket that left is skipped, and a malformed list is dropped.
//! The other direction batches too: the frames of one client read reach
//! the game server in one link message.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gamemesh_integration_tests::{
    gateway_config, scripted, start_gateway, test_cluster_secret, TIMEOUT,
};
use gamemesh_proto::client::{ErrorCode, ServerPacket};
use gamemesh_proto::internal::{
    gateway_to_server, server_to_gateway, GatewayToServer, SendToClient, SendToClients,
    ServerToGateway,
};
use gamemesh_proto::{packets, Message};
use gamemesh_transport::{Link, LinkConfig, LinkEvent, NodeId, ZmqLink};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use uuid::Uuid;

/// What the scripted game server hears about client sockets.
#[derive(Debug)]
enum Heard {
    /// A client frame: the socket's id, the gateway it came through, its
    /// sequence id, and how many ZeroMQ messages the game server had
    /// received when it read it (its own included).
    Frame {
        socket: Uuid,
        gateway: NodeId,
        seq: u64,
        messages: u64,
    },
    /// A socket closed.
    Closed(Uuid),
}

/// A game server played by the test: answers every gateway hello (so the
/// gateway links it) and reports client frames and closes on `heard`.
fn scripted_game_server() -> (Arc<ZmqLink>, u16, mpsc::UnboundedReceiver<Heard>) {
    let (link, mut events) =
        ZmqLink::bind(LinkConfig::new("game-server", 1, "127.0.0.1", 0)).expect("binds");
    let link = Arc::new(link);
    let port = link
        .local_endpoint()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("endpoint has a port");
    let (tx, heard) = mpsc::unbounded_channel();
    let answering = link.clone();
    tokio::spawn(async move {
        let mut linked = std::collections::HashSet::new();
        while let Some(LinkEvent::Message { from, payload, .. }) = events.recv().await {
            let messages = events.messages_received();
            let Ok(GatewayToServer { kind: Some(kind) }) = GatewayToServer::decode(payload) else {
                continue;
            };
            match kind {
                gateway_to_server::Kind::Hello(h) => {
                    let secret = test_cluster_secret();
                    scripted::answer_hello(&answering, &mut linked, from, &h, secret.as_ref());
                }
                gateway_to_server::Kind::ClientFrame(f) => {
                    if let Ok(socket) = Uuid::from_slice(&f.socket_id) {
                        let _ = tx.send(Heard::Frame {
                            socket,
                            gateway: from,
                            seq: packets::peek_sequence_id(&f.body),
                            messages,
                        });
                    }
                }
                gateway_to_server::Kind::ClientDisconnected(d) => {
                    if let Ok(socket) = Uuid::from_slice(&d.socket_id) {
                        let _ = tx.send(Heard::Closed(socket));
                    }
                }
                gateway_to_server::Kind::ClientConnected(_) => {}
            }
        }
    });
    (link, port, heard)
}

fn encode(kind: server_to_gateway::Kind) -> Bytes {
    Bytes::from(ServerToGateway { kind: Some(kind) }.encode_to_vec())
}

/// A body the client can tell apart from the others: an error packet whose
/// detail is `name`, with `seq` as its sequence id (0 = a push).
fn body(seq: u64, name: &str) -> Bytes {
    packets::encode(&packets::error(seq, ErrorCode::Internal, name))
}

fn unicast(socket: Uuid, body: Bytes) -> Bytes {
    encode(server_to_gateway::Kind::Send(SendToClient {
        socket_id: Bytes::copy_from_slice(socket.as_bytes()),
        body,
    }))
}

fn multicast(sockets: &[Uuid], body: Bytes) -> Bytes {
    let ids: Vec<u8> = sockets.iter().flat_map(|s| *s.as_bytes()).collect();
    encode(server_to_gateway::Kind::Multicast(SendToClients {
        socket_ids: Bytes::from(ids),
        body,
    }))
}

/// An echo request with sequence id `seq`, framed as a client writes it
/// (`[u32 BE length][ClientPacket]`).
fn echo_frame(seq: u64, data: &'static [u8]) -> Vec<u8> {
    let echo = gamemesh_proto::client::ClientPacket {
        sequence_id: seq,
        body: Some(gamemesh_proto::client::client_packet::Body::Echo(
            gamemesh_proto::client::EchoRequest {
                data: Bytes::from_static(data),
            },
        )),
    }
    .encode_to_vec();
    let mut frame = (echo.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&echo);
    frame
}

/// The detail of the next frame on `stream` (see [`body`]).
async fn read_name(stream: &mut TcpStream) -> String {
    let read = async {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).await?;
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        stream.read_exact(&mut body).await?;
        Ok::<_, std::io::Error>(body)
    };
    let body = tokio::time::timeout(TIMEOUT, read)
        .await
        .expect("a frame in time")
        .expect("socket open");
    let packet = ServerPacket::decode(&body[..]).expect("a server packet");
    match packet.body {
        Some(gamemesh_proto::client::server_packet::Body::Error(e)) => e.detail,
        other => panic!("unexpected frame {other:?}"),
    }
}

/// Opens a client socket and sends one frame (sequence id 1), so the game
/// server learns its socket id.
async fn client(
    addr: &str,
    heard: &mut mpsc::UnboundedReceiver<Heard>,
) -> (TcpStream, Uuid, NodeId) {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    stream.write_all(&echo_frame(1, &[1])).await.expect("write");
    loop {
        match tokio::time::timeout(TIMEOUT, heard.recv()).await {
            Ok(Some(Heard::Frame {
                socket, gateway, ..
            })) => return (stream, socket, gateway),
            Ok(Some(Heard::Closed(_))) => {}
            other => panic!("no frame from the new client: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multicast_reaches_each_socket_in_order_with_its_own_frames_and_skips_one_that_left() {
    gamemesh_integration_tests::init_tracing();
    let (gs, port, mut heard) = scripted_game_server();
    let gw = start_gateway(gateway_config(5, &[port]), 1).await;

    let (mut a, sa, gateway) = client(&gw.addr, &mut heard).await;
    let (mut b, sb, _) = client(&gw.addr, &mut heard).await;
    let (c, sc, _) = client(&gw.addr, &mut heard).await;
    drop(c);
    loop {
        match tokio::time::timeout(TIMEOUT, heard.recv()).await {
            Ok(Some(Heard::Closed(s))) if s == sc => break,
            Ok(Some(_)) => {}
            other => panic!("the gateway never reported the closed socket: {other:?}"),
        }
    }

    // Unicast and multicast frames interleaved on the one pipe; a list that
    // is not whole socket ids is dropped without touching the others.
    let script = [
        unicast(sa, body(1, "a1")),
        multicast(&[sa, sb, sc], body(0, "p1")),
        unicast(sb, body(1, "b1")),
        encode(server_to_gateway::Kind::Multicast(SendToClients {
            socket_ids: Bytes::from(vec![0u8; 17]),
            body: body(0, "malformed"),
        })),
        multicast(&[sb, sa], body(0, "p2")),
        unicast(sa, body(0, "a2")),
        unicast(sb, body(0, "b2")),
    ];
    for message in script {
        gs.send(gateway, message)
            .expect("the pipe to the gateway takes it");
    }

    let mut got_a = Vec::new();
    for _ in 0..4 {
        got_a.push(read_name(&mut a).await);
    }
    assert_eq!(got_a, ["a1", "p1", "p2", "a2"]);
    let mut got_b = Vec::new();
    for _ in 0..4 {
        got_b.push(read_name(&mut b).await);
    }
    assert_eq!(got_b, ["p1", "b1", "p2", "b2"]);

    gw.shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), gw.task).await;
    gs.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_frames_of_one_client_write_reach_the_game_server_in_one_link_message_in_order() {
    gamemesh_integration_tests::init_tracing();
    let (_gs, port, mut heard) = scripted_game_server();
    let gw = start_gateway(gateway_config(5, &[port]), 1).await;
    let (mut stream, socket, _) = client(&gw.addr, &mut heard).await;
    // The game server's count of link messages once it has read the
    // client's first frame (a frame is reported only after the whole
    // read it came in, so this count already covers that read).
    stream
        .write_all(&echo_frame(1, b"ping"))
        .await
        .expect("write");
    let before = loop {
        match tokio::time::timeout(TIMEOUT, heard.recv()).await {
            Ok(Some(Heard::Frame {
                socket: s,
                messages,
                ..
            })) if s == socket => break messages,
            Ok(Some(_)) => {}
            other => panic!("the ping did not arrive: {other:?}"),
        }
    };

    // Eight frames in one write: the gateway reads them in one go (a
    // loopback write this small arrives whole) and relays them together.
    let burst: Vec<u8> = (2..10u64)
        .flat_map(|seq| echo_frame(seq, b"burst"))
        .collect();
    stream.write_all(&burst).await.expect("write");

    let mut seqs = Vec::new();
    let mut after = before;
    while seqs.len() < 8 {
        match tokio::time::timeout(TIMEOUT, heard.recv()).await {
            Ok(Some(Heard::Frame {
                socket: s,
                seq,
                messages,
                ..
            })) if s == socket => {
                seqs.push(seq);
                after = messages;
            }
            Ok(Some(_)) => {}
            other => panic!("the burst did not arrive: {other:?}"),
        }
    }
    assert_eq!(seqs, (2..10).collect::<Vec<_>>(), "in the order written");
    // One message for the burst; a gateway hello may come between, so
    // allow one more, but never one message per frame.
    let carried = after - before;
    assert!(
        carried <= 2,
        "8 frames of one write took {carried} link messages"
    );
}
