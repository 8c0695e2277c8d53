//! WebSocket clients on the gateway (`--ws-port`), with real WebSocket
//! clients: one binary message carries one body; login, echo and chat work
//! as over TCP, and with TCP clients in the same room; bad input (a text
//! message, an oversized message, a ping flood) closes only the client
//! that sent it, with a `Kicked` first; `wss://` with a certificate made
//! in the test.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use gamemesh_gateway::Config as GwConfig;
use gamemesh_integration_tests::{
    gateway_config, start_gateway, Cluster, ClusterOptions, GatewayNode, TIMEOUT,
};
use gamemesh_proto::client::{
    client_packet, server_packet, ChatJoinRequest, ChatSayRequest, ClientPacket, EchoRequest,
    KickReason, Kicked, LoginRequest, LoginResponse, ServerPacket,
};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A minimal WebSocket game client: one `ClientPacket` per binary message.
struct WsClient<S> {
    /// The socket.
    ws: WebSocketStream<S>,
    /// The last sequence id used.
    seq: u64,
    /// Pushes read while waiting for a reply.
    pushes: Vec<ServerPacket>,
}

/// What ended a client's connection.
#[derive(Debug)]
struct Ended {
    /// The `Kicked` the gateway sent, if one came.
    kicked: Option<Kicked>,
    /// Whether a WebSocket close frame came after it.
    close_frame: bool,
}

impl WsClient<TcpStream> {
    /// Connects to `ws://addr/`.
    async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("tcp connect");
        let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), stream)
            .await
            .expect("websocket upgrade");
        Self::new(ws)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsClient<S> {
    fn new(ws: WebSocketStream<S>) -> Self {
        Self {
            ws,
            seq: 0,
            pushes: Vec::new(),
        }
    }

    /// The next server packet; pings and pongs are skipped.
    async fn recv(&mut self) -> ServerPacket {
        loop {
            let msg = tokio::time::timeout(TIMEOUT, self.ws.next())
                .await
                .expect("a message within the timeout")
                .expect("the socket is open")
                .expect("a message");
            match msg {
                Message::Binary(body) => {
                    return ServerPacket::decode(body).expect("a ServerPacket");
                }
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected message {other:?}"),
            }
        }
    }

    /// Sends `body` with the next sequence id and returns its reply;
    /// pushes read meanwhile are kept.
    async fn call(&mut self, body: client_packet::Body) -> server_packet::Body {
        self.seq += 1;
        let packet = ClientPacket {
            sequence_id: self.seq,
            body: Some(body),
        };
        self.ws
            .send(Message::Binary(Bytes::from(packet.encode_to_vec())))
            .await
            .expect("send");
        loop {
            let p = self.recv().await;
            if p.sequence_id == self.seq {
                return p.body.expect("a reply body");
            }
            self.pushes.push(p);
        }
    }

    async fn login(&mut self, user_id: u64) -> LoginResponse {
        match self
            .call(client_packet::Body::Login(LoginRequest {
                user_id,
                token: "dev".into(),
            }))
            .await
        {
            server_packet::Body::Login(r) => r,
            other => panic!("login answered {other:?}"),
        }
    }

    async fn echo(&mut self, data: &[u8]) -> Bytes {
        match self
            .call(client_packet::Body::Echo(EchoRequest {
                data: Bytes::copy_from_slice(data),
            }))
            .await
        {
            server_packet::Body::Echo(r) => r.data,
            other => panic!("echo answered {other:?}"),
        }
    }

    /// Reads until the gateway ends the connection: the `Kicked` it sent
    /// and whether a close frame followed.
    async fn ended(&mut self) -> Ended {
        let mut ended = Ended {
            kicked: None,
            close_frame: false,
        };
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("the gateway closes the connection within the timeout");
            match next {
                Some(Ok(Message::Binary(body))) => {
                    let p = ServerPacket::decode(body).expect("a ServerPacket");
                    if let Some(server_packet::Body::Kicked(k)) = p.body {
                        ended.kicked = Some(k);
                    }
                }
                Some(Ok(Message::Close(_))) => ended.close_frame = true,
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return ended,
            }
        }
    }
}

/// A cluster with the WebSocket port on.
async fn ws_cluster() -> Cluster {
    Cluster::start_with(ClusterOptions {
        gateway: |c| c.ws_port = Some(0),
        ..ClusterOptions::default()
    })
    .await
}

fn ws_addr(cluster: &Cluster) -> SocketAddr {
    cluster.gateways[0].ws_addr.expect("--ws-port is on")
}

/// The kick a client got, checked to be followed by a close.
fn kicked(ended: Ended) -> Kicked {
    assert!(ended.close_frame, "a close frame follows the kick");
    ended.kicked.expect("a Kicked message before the close")
}

#[tokio::test]
async fn login_and_echo_over_websocket() {
    let cluster = ws_cluster().await;
    let mut c = WsClient::connect(ws_addr(&cluster)).await;
    let login = c.login(7001).await;
    assert_ne!(login.session_id, 0);
    assert_eq!(&c.echo(b"hello over ws").await[..], b"hello over ws");
    // Many messages in flight at once come back, each its own message.
    for i in 0..50u32 {
        c.seq += 1;
        let p = ClientPacket {
            sequence_id: c.seq,
            body: Some(client_packet::Body::Echo(EchoRequest {
                data: Bytes::from(i.to_be_bytes().to_vec()),
            })),
        };
        c.ws.feed(Message::Binary(Bytes::from(p.encode_to_vec())))
            .await
            .unwrap();
    }
    c.ws.flush().await.unwrap();
    let first = c.seq - 49;
    for i in 0..50u32 {
        let p = c.recv().await;
        assert_eq!(p.sequence_id, first + u64::from(i));
        match p.body {
            Some(server_packet::Body::Echo(e)) => assert_eq!(&e.data[..], i.to_be_bytes()),
            other => panic!("{other:?}"),
        }
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_websocket_client_and_a_tcp_client_chat_in_one_room() {
    let cluster = ws_cluster().await;
    let mut ws = WsClient::connect(ws_addr(&cluster)).await;
    ws.login(7101).await;
    let mut tcp = cluster.client(0).await;
    tcp.login(7102, "dev").await.expect("tcp login");
    let room = "ws-and-tcp";
    match ws
        .call(client_packet::Body::ChatJoin(ChatJoinRequest {
            room: room.into(),
        }))
        .await
    {
        server_packet::Body::ChatJoin(_) => {}
        other => panic!("join answered {other:?}"),
    }
    tcp.chat_join(room).await.expect("tcp joins");

    tcp.chat_say(room, "from tcp").await.expect("tcp says");
    let heard = next_chat_message(&mut ws).await;
    assert_eq!((heard.0.as_str(), heard.1), ("from tcp", 7102));

    match ws
        .call(client_packet::Body::ChatSay(ChatSayRequest {
            room: room.into(),
            text: "from ws".into(),
        }))
        .await
    {
        server_packet::Body::ChatSay(_) => {}
        other => panic!("say answered {other:?}"),
    }
    loop {
        let p = tcp.next_push(TIMEOUT).await.expect("a push on tcp");
        if let Some(server_packet::Body::ChatMessage(m)) = p.body {
            if m.text == "from ws" {
                assert_eq!(m.from_user_id, 7101);
                break;
            }
        }
    }
    cluster.shutdown().await;
}

/// The next chat message a WebSocket client sees: (text, from user).
async fn next_chat_message<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut WsClient<S>,
) -> (String, u64) {
    loop {
        let p = if c.pushes.is_empty() {
            c.recv().await
        } else {
            c.pushes.remove(0)
        };
        if let Some(server_packet::Body::ChatMessage(m)) = p.body {
            return (m.text, m.from_user_id);
        }
    }
}

/// Logs in a bystander on the same gateway, runs `bad` on another
/// client, and checks the bystander still echoes.
async fn bystander(cluster: &Cluster, user: u64) -> WsClient<TcpStream> {
    let mut bystander = WsClient::connect(ws_addr(cluster)).await;
    bystander.login(user).await;
    bystander
}

#[tokio::test]
async fn a_text_message_closes_only_that_client() {
    let cluster = ws_cluster().await;
    let mut bystander = bystander(&cluster, 7201).await;
    let mut bad = WsClient::connect(ws_addr(&cluster)).await;
    bad.login(7202).await;
    bad.ws
        .send(Message::Text("{\"login\": 1}".into()))
        .await
        .expect("send text");
    let kick = kicked(bad.ended().await);
    assert_eq!(kick.reason, KickReason::ProtocolError as i32);
    assert!(kick.detail.contains("text"), "{}", kick.detail);
    assert_eq!(&bystander.echo(b"still here").await[..], b"still here");
    cluster.shutdown().await;
}

#[tokio::test]
async fn an_oversized_message_closes_only_that_client() {
    let cluster = ws_cluster().await;
    let max = GwConfig::default().max_frame_bytes;
    let mut bystander = bystander(&cluster, 7301).await;
    let mut bad = WsClient::connect(ws_addr(&cluster)).await;
    // A message of exactly the maximum is a body like any other (the game
    // server answers it, here with an error: it is no ClientPacket)...
    bad.ws
        .send(Message::Binary(Bytes::from(vec![0xff; max])))
        .await
        .expect("send max");
    let p = bad.recv().await;
    assert!(
        matches!(p.body, Some(server_packet::Body::Error(_))),
        "{p:?}"
    );
    // ...one byte more is a protocol error.
    bad.ws
        .send(Message::Binary(Bytes::from(vec![0; max + 1])))
        .await
        .expect("send oversized");
    let kick = kicked(bad.ended().await);
    assert_eq!(kick.reason, KickReason::ProtocolError as i32);
    assert!(kick.detail.contains("too long"), "{}", kick.detail);
    assert_eq!(&bystander.echo(b"still here").await[..], b"still here");
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_ping_flood_closes_only_that_client() {
    let cluster = ws_cluster().await;
    let mut bystander = bystander(&cluster, 7401).await;
    let mut bad = WsClient::connect(ws_addr(&cluster)).await;
    bad.login(7402).await;
    // Far past the burst (200) plus --rate-limit-kick-after (50), sent
    // without reading; the gateway may close before all are out.
    for _ in 0..5_000 {
        if bad
            .ws
            .feed(Message::Ping(Bytes::from_static(b"p")))
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = bad.ws.flush().await;
    let kick = kicked(bad.ended().await);
    assert_eq!(kick.reason, KickReason::ProtocolError as i32);
    assert!(kick.detail.contains("rate"), "{}", kick.detail);
    assert_eq!(&bystander.echo(b"still here").await[..], b"still here");
    cluster.shutdown().await;
}

#[tokio::test]
async fn wss_with_a_certificate_logs_in_and_echoes() {
    let cluster = Cluster::start(1, 1).await;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("self-signed certificate");
    let dir = tempfile::tempdir().expect("temp dir");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let ports: Vec<u16> = cluster.game_servers.iter().map(|g| g.p2p_port).collect();
    let config = GwConfig {
        ws_port: Some(0),
        ws_tls_cert: Some(cert_path),
        ws_tls_key: Some(key_path),
        ..gateway_config(9, &ports)
    };
    let gateway: GatewayNode = start_gateway(config, ports.len()).await;
    let addr = gateway.ws_addr.expect("--ws-port is on");

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = connector.connect(name, tcp).await.expect("TLS handshake");
    let (ws, _) =
        tokio_tungstenite::client_async(format!("wss://localhost:{}/", addr.port()), stream)
            .await
            .expect("websocket upgrade over TLS");
    let mut c = WsClient::new(ws);
    c.login(7501).await;
    assert_eq!(&c.echo(b"hello over wss").await[..], b"hello over wss");

    // A plain-text client on the TLS port gets nowhere, and the port
    // still serves.
    let plain = TcpStream::connect(addr).await.unwrap();
    assert!(
        tokio_tungstenite::client_async(format!("ws://{addr}/"), plain)
            .await
            .is_err(),
        "a plain WebSocket upgrade on the wss:// port fails"
    );
    assert_eq!(&c.echo(b"again").await[..], b"again");

    gateway.shutdown.cancel();
    let _ = gateway.task.await;
    cluster.shutdown().await;
}
