//! `test-client arena-demo`: one scripted arena player that prints what it
//! sees, for `run-sample.sh` (two of them, through different gateways and
//! game servers, in one room).
//!
//! It logs in (reconnecting until the gateway routes it to
//! `--on-game-server`, when given), joins the room, makes its moves one
//! every 200 ms while reading the room's states, and keeps watching for
//! `--secs`. It prints a line per move and every 20th state, and ends
//! with a verdict: every `--see` user showed up in a state, and the ticks
//! it received rose by exactly 1 (exit status 1 otherwise).

use std::time::Duration;

use anyhow::bail;
use gamemesh_proto::client::{client_packet, server_packet, ClientPacket, ErrorCode};
use tokio::time::Instant;

use super::proto::{JoinRequest, JoinResponse, LeaveRequest, MoveRequest, MoveResponse, State};
use super::wire::{self, Incoming};
use crate::client::Client;

/// What `arena-demo` is given.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Gateway address.
    pub addr: String,
    /// Login secret, if the servers use one.
    pub auth_secret: Option<String>,
    /// User id.
    pub user: u64,
    /// The room.
    pub room: String,
    /// Reconnect until routed to this game server.
    pub game_server: Option<u64>,
    /// Moves: `R`, `L`, `U`, `D`, one every 200 ms.
    pub moves: String,
    /// Users that must show up in the states.
    pub see: Vec<u64>,
    /// How long to watch after the moves.
    pub watch: Duration,
    /// Bound on each reply.
    pub timeout: Duration,
}

/// The step of a move letter.
fn step(c: char) -> Option<(i32, i32)> {
    match c.to_ascii_uppercase() {
        'R' => Some((1, 0)),
        'L' => Some((-1, 0)),
        'U' => Some((0, -1)),
        'D' => Some((0, 1)),
        _ => None,
    }
}

/// One line for a state: `tick 120: user 1 (3,0), user 2 (0,2)`.
fn describe(s: &State) -> String {
    let players: Vec<String> = s
        .players
        .iter()
        .map(|p| format!("user {} ({},{})", p.user_id, p.x, p.y))
        .collect();
    format!("tick {}: {}", s.tick, players.join(", "))
}

/// Connects and logs in, on the wanted game server if one is given.
async fn login(opts: &DemoOptions) -> anyhow::Result<(Client, u64)> {
    let (c, login) = crate::commands::logged_in_on(
        &opts.addr,
        opts.auth_secret.as_deref(),
        opts.user,
        opts.timeout,
        opts.game_server,
    )
    .await?;
    Ok((c, login.game_server_node_id))
}

/// Sends a game request and returns its payload, or the error as a line.
async fn ask(
    c: &mut Client,
    route: &str,
    msg: &impl prost::Message,
) -> anyhow::Result<Result<bytes::Bytes, (ErrorCode, String)>> {
    let reply = c.call(wire::request(route, msg)).await?;
    Ok(match reply.body {
        Some(server_packet::Body::Game(g)) => Ok(g.payload),
        Some(server_packet::Body::Error(e)) => Err((e.code(), e.detail)),
        other => bail!("{route}: not a game reply: {other:?}"),
    })
}

/// Joins `room`, retrying for up to `patience` while the room's game
/// server is not settled yet (it answers UNAVAILABLE until the game
/// servers agree where the room runs). Public for the arena tests, which
/// join the same way.
pub async fn join(c: &mut Client, room: &str, patience: Duration) -> anyhow::Result<JoinResponse> {
    let deadline = Instant::now() + patience;
    loop {
        match ask(c, wire::JOIN, &JoinRequest { room: room.into() }).await? {
            Ok(p) => return Ok(prost::Message::decode(p)?),
            Err((ErrorCode::Unavailable, _)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err((code, detail)) => bail!("join {room}: {} ({detail})", code.as_str_name()),
        }
    }
}

/// What the states showed.
#[derive(Debug, Default)]
struct Seen {
    /// Every user in any state.
    users: std::collections::BTreeSet<u64>,
    /// First and last tick.
    first: Option<u64>,
    last: u64,
    /// States received.
    states: u64,
    /// Ticks that were not the last + 1.
    out_of_order: u64,
}

impl Seen {
    fn state(&mut self, s: &State) {
        if self.first.is_none() {
            self.first = Some(s.tick);
        } else if s.tick != self.last + 1 {
            self.out_of_order += 1;
        }
        self.last = s.tick;
        self.states += 1;
        self.users.extend(s.players.iter().map(|p| p.user_id));
        if self.states % 20 == 1 {
            println!("{}", describe(s));
        }
    }
}

/// Reads what arrived within `wait`, taking states into `seen`.
async fn read(c: &mut Client, seen: &mut Seen, wait: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + wait;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        match c.recv(left).await {
            Ok(p) => match wire::classify(p) {
                Incoming::State(s) => seen.state(&s),
                Incoming::Kicked(k) => bail!("kicked: {:?} {}", k.reason(), k.detail),
                _ => {}
            },
            Err(crate::client::ClientError::Timeout(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Plays the script; `Ok(false)` when what it saw is not what it should.
pub async fn run(opts: &DemoOptions) -> anyhow::Result<bool> {
    let (mut c, node) = login(opts).await?;
    let joined = join(&mut c, &opts.room, Duration::from_secs(10)).await?;
    println!(
        "user {} on game server {node} joined {} at ({},{}), {} ticks/s",
        opts.user, joined.room, joined.x, joined.y, joined.tick_hz
    );
    let mut seen = Seen::default();
    for m in opts.moves.chars().filter_map(step) {
        let reply = ask(&mut c, wire::MOVE, &MoveRequest { dx: m.0, dy: m.1 }).await?;
        match reply {
            Ok(p) => {
                let at: MoveResponse = prost::Message::decode(p)?;
                println!("user {} moved to ({},{})", opts.user, at.x, at.y);
            }
            Err((code, detail)) => println!("move refused: {} ({detail})", code.as_str_name()),
        }
        read(&mut c, &mut seen, Duration::from_millis(200)).await?;
    }
    let mut left = opts.watch;
    while !left.is_zero() {
        let slice = left.min(Duration::from_secs(1));
        read(&mut c, &mut seen, slice).await?;
        left -= slice;
        // A heartbeat now and then, as any idle client sends.
        let hb = ClientPacket {
            sequence_id: 0,
            body: Some(client_packet::Body::Heartbeat(Default::default())),
        };
        c.send(&hb).await?;
    }
    let _ = ask(&mut c, wire::LEAVE, &LeaveRequest {}).await?;
    let missing: Vec<u64> = opts
        .see
        .iter()
        .copied()
        .filter(|u| !seen.users.contains(u))
        .collect();
    println!(
        "user {}: {} states, ticks {}..{}, {} out of order; saw users {:?}",
        opts.user,
        seen.states,
        seen.first.unwrap_or(0),
        seen.last,
        seen.out_of_order,
        seen.users
    );
    if !missing.is_empty() {
        println!("FAILED: never saw users {missing:?}");
        return Ok(false);
    }
    if seen.states == 0 || seen.out_of_order > 0 {
        println!("FAILED: the ticks did not rise by exactly 1");
        return Ok(false);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arena::proto::Player;

    #[test]
    fn moves_and_states_read_as_lines() {
        assert_eq!(step('r'), Some((1, 0)));
        assert_eq!(step('U'), Some((0, -1)));
        assert_eq!(step('x'), None);
        let s = State {
            tick: 7,
            players: vec![
                Player {
                    user_id: 1,
                    x: 3,
                    y: 0,
                },
                Player {
                    user_id: 2,
                    x: 0,
                    y: 2,
                },
            ],
            ..State::default()
        };
        assert_eq!(describe(&s), "tick 7: user 1 (3,0), user 2 (0,2)");
    }

    #[test]
    fn a_tick_that_is_not_the_next_counts() {
        let mut seen = Seen::default();
        for t in [5, 6, 8, 9] {
            seen.state(&State {
                tick: t,
                ..State::default()
            });
        }
        assert_eq!((seen.states, seen.out_of_order, seen.last), (4, 1, 9));
    }
}
