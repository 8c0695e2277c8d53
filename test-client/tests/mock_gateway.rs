//! Runs the scenario against a small in-process server that follows
//! docs/PROTOCOL.md, so the scenario's own logic is checked without the real
//! system, and against a deliberately broken one, so its checks are shown to
//! catch a real fault.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use gamemesh_proto::client::{
    client_packet, server_packet, ClientPacket, EchoResponse, ErrorCode, KickReason,
    LogoutResponse, ServerPacket,
};
use gamemesh_proto::{packets, FrameCodec, Message};
use gamemesh_test_client::scenario::{self, ScenarioOptions};
use support::replies::{self, reply};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::codec::Framed;

/// What a connection task is told to do by another connection.
enum Command {
    Send(ServerPacket),
    Close,
}

struct Session {
    user: u64,
    token: String,
    last_seq: u64,
    replies: HashMap<u64, ServerPacket>,
    conn: Option<u64>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    sessions: HashMap<u64, Session>,
    by_user: HashMap<u64, u64>,
    conns: HashMap<u64, mpsc::UnboundedSender<Command>>,
}

impl State {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Closes `conn` (if another connection holds it), with an optional
    /// push first.
    fn close(&mut self, conn: Option<u64>, push: Option<ServerPacket>) {
        if let Some(tx) = conn.and_then(|c| self.conns.remove(&c)) {
            if let Some(p) = push {
                let _ = tx.send(Command::Send(p));
            }
            let _ = tx.send(Command::Close);
        }
    }
}

/// Handles one frame body for connection `me`, pinned to `pinned`.
fn handle(
    state: &Mutex<State>,
    me: u64,
    pinned: &mut Option<u64>,
    body: &[u8],
    dedup: bool,
) -> ServerPacket {
    use client_packet::Body as C;
    use server_packet::Body as S;
    let Ok(packet) = ClientPacket::decode(body) else {
        let seq = packets::peek_sequence_id(body);
        return packets::error(seq, ErrorCode::MalformedPacket, "");
    };
    let seq = packet.sequence_id;
    let mut st = state.lock().unwrap();
    match (packet.body, *pinned) {
        (Some(C::Login(l)), _) => {
            let old = st.by_user.remove(&l.user_id);
            let replaced = old.is_some();
            if let Some(old) = old.and_then(|s| st.sessions.remove(&s)) {
                let kick = packets::kicked(KickReason::DuplicateLogin, "");
                st.close(old.conn, Some(kick));
            }
            let session_id = st.id();
            let token = format!("token-{session_id}");
            st.sessions.insert(
                session_id,
                Session {
                    user: l.user_id,
                    token: token.clone(),
                    last_seq: 0,
                    replies: HashMap::new(),
                    conn: Some(me),
                },
            );
            st.by_user.insert(l.user_id, session_id);
            *pinned = Some(session_id);
            replies::login(seq, session_id, token, replaced)
        }
        (Some(C::Resume(r)), _) => {
            let Some(s) = st.sessions.get_mut(&r.session_id) else {
                return packets::error(seq, ErrorCode::SessionNotFound, "");
            };
            if s.token != r.resume_token {
                return packets::error(seq, ErrorCode::InvalidToken, "");
            }
            let old = s.conn.replace(me).filter(|&c| c != me);
            let resumed = replies::resume(seq, r.session_id, s.user, s.last_seq);
            st.close(old, None);
            *pinned = Some(r.session_id);
            resumed
        }
        (Some(C::Heartbeat(h)), _) => replies::heartbeat(seq, &h),
        (_, None) => packets::error(seq, ErrorCode::NotAuthenticated, ""),
        (body, Some(session_id)) => {
            let Some(s) = st.sessions.get_mut(&session_id) else {
                return packets::error(seq, ErrorCode::SessionNotFound, "");
            };
            if dedup && seq != 0 && seq <= s.last_seq {
                return s
                    .replies
                    .get(&seq)
                    .cloned()
                    .unwrap_or_else(|| packets::error(seq, ErrorCode::DuplicateSequence, ""));
            }
            let out = match body {
                Some(C::Echo(e)) => reply(seq, S::Echo(EchoResponse { data: e.data })),
                Some(C::Logout(_)) => {
                    let user = s.user;
                    st.sessions.remove(&session_id);
                    st.by_user.remove(&user);
                    *pinned = None;
                    return reply(seq, S::Logout(LogoutResponse {}));
                }
                _ => packets::error(seq, ErrorCode::UnknownMessage, ""),
            };
            s.last_seq = s.last_seq.max(seq);
            s.replies.insert(seq, out.clone());
            out
        }
    }
}

/// Starts the mock; `dedup: false` makes it re-execute duplicate sequence
/// ids (the fault the scenario must catch).
async fn mock_gateway(dedup: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let state = Arc::new(Mutex::new(State::default()));
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let state = state.clone();
            tokio::spawn(async move {
                let (tx, mut rx) = mpsc::unbounded_channel();
                let me = {
                    let mut st = state.lock().unwrap();
                    let me = st.id();
                    st.conns.insert(me, tx);
                    me
                };
                let mut framed = Framed::new(socket, FrameCodec::default());
                let mut pinned = None;
                loop {
                    tokio::select! {
                        frame = framed.next() => {
                            let Some(Ok(body)) = frame else { break };
                            let out = handle(&state, me, &mut pinned, &body, dedup);
                            if framed.send(packets::encode(&out)).await.is_err() {
                                break;
                            }
                        }
                        cmd = rx.recv() => match cmd {
                            Some(Command::Send(p)) => {
                                let _ = framed.send(packets::encode(&p)).await;
                            }
                            Some(Command::Close) | None => break,
                        },
                    }
                }
                let mut st = state.lock().unwrap();
                st.conns.remove(&me);
                if let Some(s) = pinned.and_then(|id| st.sessions.get_mut(&id)) {
                    if s.conn == Some(me) {
                        s.conn = None;
                    }
                }
            });
        }
    });
    addr
}

fn options(addr: String) -> ScenarioOptions {
    ScenarioOptions {
        addr,
        addr2: None,
        auth_secret: None,
        user: None,
        timeout: Duration::from_secs(2),
    }
}

#[tokio::test]
async fn scenario_passes_against_a_conforming_server() {
    let addr = mock_gateway(true).await;
    assert!(scenario::run(&options(addr)).await.unwrap());
}

#[tokio::test]
async fn scenario_fails_when_duplicates_are_re_executed() {
    let addr = mock_gateway(false).await;
    assert!(!scenario::run(&options(addr)).await.unwrap());
}
