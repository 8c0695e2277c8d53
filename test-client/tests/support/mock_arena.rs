//! A small in-process stand-in for a gateway in front of an arena server:
//! login, resume, heartbeat, logout, and the arena routes of PROTOCOL.md
//! ("The sample game: arena") with a tick loop pushing `arena.state`. It
//! lets the arena client and the bench mode be tested end to end on real
//! sockets without the game server, and it can be told to misbehave (skip
//! ticks, drop every connection) so the client's checks are shown to catch
//! what they claim to.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::replies::{self, reply};
use futures::{SinkExt, StreamExt};
use gamemesh_proto::client::{
    client_packet, server_packet, ClientPacket, ErrorCode, GamePush, GameResponse, KickReason,
    LogoutResponse, ServerPacket,
};
use gamemesh_proto::{packets, FrameCodec, Message};
use gamemesh_test_client::arena::proto::{
    JoinRequest, JoinResponse, LeaveResponse, MoveRequest, MoveResponse, Player, State,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

/// Players a room holds.
const MAX_PLAYERS: usize = 16;

/// What a connection task is told by others.
enum Out {
    Packet(ServerPacket),
    Close,
}

struct Session {
    user: u64,
    token: String,
    last_seq: u64,
    conn: Option<u64>,
    room: Option<String>,
}

#[derive(Default)]
struct Room {
    tick: u64,
    /// (session, position) in join order.
    players: Vec<(u64, (i32, i32))>,
}

#[derive(Default)]
struct World {
    next_id: u64,
    sessions: HashMap<u64, Session>,
    conns: HashMap<u64, mpsc::UnboundedSender<Out>>,
    rooms: HashMap<String, Room>,
}

impl World {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn leave(&mut self, session: u64) {
        let Some(room) = self.sessions.get_mut(&session).and_then(|s| s.room.take()) else {
            return;
        };
        if let Some(r) = self.rooms.get_mut(&room) {
            r.players.retain(|&(s, _)| s != session);
            if r.players.is_empty() {
                self.rooms.remove(&room);
            }
        }
    }
}

/// A running mock; stops on drop.
pub struct MockArena {
    /// Where clients connect.
    pub addr: String,
    world: Arc<Mutex<World>>,
    /// Ticks whose number is a multiple of this are not pushed (0: none).
    skip_every: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl Drop for MockArena {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl MockArena {
    /// Starts a mock ticking `tick_hz` times a second on 127.0.0.1:0.
    pub async fn start(tick_hz: u32) -> MockArena {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let world = Arc::new(Mutex::new(World::default()));
        let skip_every = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        tokio::spawn(accept(listener, world.clone(), tick_hz, stop.clone()));
        tokio::spawn(ticker(
            world.clone(),
            tick_hz,
            skip_every.clone(),
            stop.clone(),
        ));
        MockArena {
            addr,
            world,
            skip_every,
            stop,
        }
    }

    /// From now on, ticks that are multiples of `n` are not pushed.
    pub fn skip_ticks_every(&self, n: u64) {
        self.skip_every.store(n, Ordering::Relaxed);
    }

    /// Closes every client connection (sessions stay resumable).
    pub fn drop_connections(&self) {
        let mut w = self.world.lock().unwrap();
        for (_, tx) in w.conns.drain() {
            let _ = tx.send(Out::Close);
        }
        for s in w.sessions.values_mut() {
            s.conn = None;
        }
    }

    /// Kicks every connection of `user` with `reason`, then closes it.
    pub fn kick(&self, user: u64, reason: KickReason) {
        let w = self.world.lock().unwrap();
        for s in w.sessions.values().filter(|s| s.user == user) {
            if let Some(tx) = s.conn.and_then(|c| w.conns.get(&c)) {
                let _ = tx.send(Out::Packet(packets::kicked(reason, "")));
                let _ = tx.send(Out::Close);
            }
        }
    }

    /// The players of `room` (user id, position), in join order.
    pub fn players(&self, room: &str) -> Vec<(u64, (i32, i32))> {
        let w = self.world.lock().unwrap();
        w.rooms.get(room).map_or_else(Vec::new, |r| {
            r.players
                .iter()
                .map(|&(s, pos)| (w.sessions[&s].user, pos))
                .collect()
        })
    }

    /// How many rooms exist.
    pub fn room_count(&self) -> usize {
        self.world.lock().unwrap().rooms.len()
    }
}

fn now_unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

async fn ticker(
    world: Arc<Mutex<World>>,
    tick_hz: u32,
    skip_every: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let mut every = tokio::time::interval(Duration::from_secs(1) / tick_hz);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let skip = skip_every.load(Ordering::Relaxed);
        let mut w = world.lock().unwrap();
        let w = &mut *w;
        for (name, room) in &mut w.rooms {
            room.tick += 1;
            if skip != 0 && room.tick % skip == 0 {
                continue;
            }
            let state = State {
                room: name.clone(),
                tick: room.tick,
                players: room
                    .players
                    .iter()
                    .map(|&(s, (x, y))| Player {
                        user_id: w.sessions[&s].user,
                        x,
                        y,
                    })
                    .collect(),
                sent_unix_us: now_unix_us(),
            };
            let push = ServerPacket {
                sequence_id: 0,
                body: Some(server_packet::Body::GamePush(GamePush {
                    route: "arena.state".into(),
                    payload: state.encode_to_vec().into(),
                })),
            };
            for (s, _) in &room.players {
                let conn = w.sessions[s].conn;
                if let Some(tx) = conn.and_then(|c| w.conns.get(&c)) {
                    let _ = tx.send(Out::Packet(push.clone()));
                }
            }
        }
    }
}

async fn accept(
    listener: TcpListener,
    world: Arc<Mutex<World>>,
    tick_hz: u32,
    stop: CancellationToken,
) {
    loop {
        let socket = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted.unwrap().0,
        };
        socket.set_nodelay(true).unwrap();
        tokio::spawn(connection(socket, world.clone(), tick_hz, stop.clone()));
    }
}

async fn connection(
    socket: TcpStream,
    world: Arc<Mutex<World>>,
    tick_hz: u32,
    stop: CancellationToken,
) {
    let mut framed = Framed::new(socket, FrameCodec::default());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let me = {
        let mut w = world.lock().unwrap();
        let id = w.id();
        w.conns.insert(id, tx);
        id
    };
    let mut session = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            out = rx.recv() => match out {
                Some(Out::Packet(p)) => {
                    if framed.send(packets::encode(&p)).await.is_err() {
                        break;
                    }
                }
                Some(Out::Close) | None => break,
            },
            frame = framed.next() => {
                let Some(Ok(body)) = frame else { break };
                let reply = handle(&world, me, &mut session, &body, tick_hz);
                if framed.send(packets::encode(&reply)).await.is_err() {
                    break;
                }
            }
        }
    }
    let mut w = world.lock().unwrap();
    w.conns.remove(&me);
    if let Some(s) = session.and_then(|s| w.sessions.get_mut(&s)) {
        if s.conn == Some(me) {
            s.conn = None;
        }
    }
}

fn game_reply(sequence_id: u64, message: &impl Message) -> ServerPacket {
    reply(
        sequence_id,
        server_packet::Body::Game(GameResponse {
            payload: message.encode_to_vec().into(),
        }),
    )
}

fn handle(
    world: &Mutex<World>,
    me: u64,
    session: &mut Option<u64>,
    body: &[u8],
    tick_hz: u32,
) -> ServerPacket {
    use client_packet::Body as C;
    use server_packet::Body as S;
    let Ok(packet) = ClientPacket::decode(body) else {
        return packets::error(0, ErrorCode::MalformedPacket, "");
    };
    let seq = packet.sequence_id;
    let mut w = world.lock().unwrap();
    if let Some(s) = session.and_then(|s| w.sessions.get_mut(&s)) {
        s.last_seq = s.last_seq.max(seq);
    }
    match (packet.body, *session) {
        (Some(C::Login(l)), _) => {
            let id = w.id();
            let token = format!("token-{id}");
            w.sessions.insert(
                id,
                Session {
                    user: l.user_id,
                    token: token.clone(),
                    last_seq: seq,
                    conn: Some(me),
                    room: None,
                },
            );
            *session = Some(id);
            replies::login(seq, id, token, false)
        }
        (Some(C::Resume(r)), _) => {
            let Some(s) = w.sessions.get_mut(&r.session_id) else {
                return packets::error(seq, ErrorCode::SessionNotFound, "");
            };
            if s.token != r.resume_token {
                return packets::error(seq, ErrorCode::InvalidToken, "");
            }
            s.conn = Some(me);
            *session = Some(r.session_id);
            replies::resume(seq, r.session_id, s.user, s.last_seq)
        }
        (Some(C::Heartbeat(h)), _) => replies::heartbeat(seq, &h),
        (_, None) => packets::error(seq, ErrorCode::NotAuthenticated, ""),
        (Some(C::Logout(_)), Some(s)) => {
            w.leave(s);
            w.sessions.remove(&s);
            *session = None;
            reply(seq, S::Logout(LogoutResponse {}))
        }
        (Some(C::Game(g)), Some(s)) => game(&mut w, s, seq, &g.route, &g.payload, tick_hz),
        (_, Some(_)) => packets::error(seq, ErrorCode::UnknownMessage, ""),
    }
}

fn game(
    w: &mut World,
    session: u64,
    seq: u64,
    route: &str,
    payload: &[u8],
    tick_hz: u32,
) -> ServerPacket {
    let bad = || packets::error(seq, ErrorCode::BadPayload, "");
    let refuse = |why: &str| packets::error(seq, ErrorCode::Refused, why);
    match route {
        "arena.join" => {
            let Ok(j) = JoinRequest::decode(payload) else {
                return bad();
            };
            let current = w.sessions[&session].room.clone();
            if current.as_deref() != Some(j.room.as_str()) {
                if w.rooms
                    .get(&j.room)
                    .is_some_and(|r| r.players.len() >= MAX_PLAYERS)
                {
                    return refuse("room full");
                }
                w.leave(session);
                w.rooms
                    .entry(j.room.clone())
                    .or_default()
                    .players
                    .push((session, (0, 0)));
                w.sessions.get_mut(&session).unwrap().room = Some(j.room.clone());
            }
            let pos = w.rooms[&j.room]
                .players
                .iter()
                .find(|&&(s, _)| s == session)
                .map(|&(_, p)| p)
                .unwrap();
            game_reply(
                seq,
                &JoinResponse {
                    room: j.room,
                    tick_hz,
                    x: pos.0,
                    y: pos.1,
                },
            )
        }
        "arena.move" => {
            let Ok(m) = MoveRequest::decode(payload) else {
                return bad();
            };
            if !(-1..=1).contains(&m.dx) || !(-1..=1).contains(&m.dy) {
                return refuse("dx and dy must each be -1, 0 or 1");
            }
            let Some(room) = w.sessions[&session].room.clone() else {
                return refuse("not in an arena");
            };
            let r = w.rooms.get_mut(&room).unwrap();
            let (_, pos) = r.players.iter_mut().find(|(s, _)| *s == session).unwrap();
            *pos = ((pos.0 + m.dx).clamp(0, 99), (pos.1 + m.dy).clamp(0, 99));
            game_reply(seq, &MoveResponse { x: pos.0, y: pos.1 })
        }
        "arena.leave" => {
            w.leave(session);
            game_reply(seq, &LeaveResponse {})
        }
        _ => packets::error(seq, ErrorCode::UnknownRoute, ""),
    }
}
