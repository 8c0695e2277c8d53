//! `test-client arena`: one player in a terminal. It logs in, joins the
//! room, then loops over three sources until the player quits:
//!
//! - the keyboard (arrows send `arena.move`, `z` zooms, `q` / Esc /
//!   Ctrl-C leave the room and quit);
//! - the socket (states redraw the board, move replies time the round
//!   trip, a kick ends the game with its reason);
//! - a heartbeat every 10 s, so a player who stands still is not closed
//!   for idling.
//!
//! A dropped connection, or a kick that says to come back
//! (`SERVER_SHUTDOWN`, `IDLE_TIMEOUT`, `SLOW_CONSUMER`), is resumed on a
//! new connection for up to [`RESUME_FOR`]; the room keeps a resumable
//! member, so states simply start again. Anything else ends the game and
//! the reason is printed after the terminal is restored.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context as _};
use crossterm::event::{Event, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use futures::StreamExt;
use gamemesh_proto::client::{client_packet, ClientPacket, HeartbeatRequest, KickReason};
use ratatui::DefaultTerminal;
use tokio::time::Instant;

use super::game::{now_unix_us, Direction, Game};
use super::proto::{JoinRequest, JoinResponse, LeaveRequest, MoveRequest, MoveResponse};
use super::ui::{self, Screen, Zoom};
use super::wire::{self, Incoming};
use crate::client::{kick_reason_name, token_for, Client, ClientError};

/// How often a heartbeat goes out (the gateway's idle timeout is 30 s by
/// default).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// How long a lost session is tried for before the game gives up.
pub const RESUME_FOR: Duration = Duration::from_secs(30);

/// Pause between two resume attempts.
const RESUME_PAUSE: Duration = Duration::from_millis(250);

/// What `arena` is given.
#[derive(Debug, Clone)]
pub struct ArenaOptions {
    /// Gateway address.
    pub addr: String,
    /// Login secret, if the servers use one.
    pub auth_secret: Option<String>,
    /// User id to log in as.
    pub user: u64,
    /// The room to join (created if it does not exist).
    pub room: String,
    /// Bound on connecting, logging in, joining and each reply.
    pub timeout: Duration,
}

/// What a key press asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// One step.
    Move(Direction),
    /// Switch between the cropped and the whole board.
    Zoom,
    /// Leave the room and stop.
    Quit,
}

/// The action of a key event, if it has one (key releases and repeats of
/// keys that are not arrows have none).
pub fn action(key: &KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    match key.code {
        KeyCode::Up => Some(Action::Move(Direction::Up)),
        KeyCode::Down => Some(Action::Move(Direction::Down)),
        KeyCode::Left => Some(Action::Move(Direction::Left)),
        KeyCode::Right => Some(Action::Move(Direction::Right)),
        KeyCode::Char('z') => Some(Action::Zoom),
        KeyCode::Char('q') | KeyCode::Esc => Some(Action::Quit),
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Some(Action::Quit),
        _ => None,
    }
}

/// Whether a kick says the session can be resumed (docs/PROTOCOL.md,
/// "Kicks": the client action is "reconnect and resume").
pub fn resumable(reason: i32) -> bool {
    matches!(
        KickReason::try_from(reason),
        Ok(KickReason::ServerShutdown | KickReason::IdleTimeout | KickReason::SlowConsumer)
    )
}

/// A request whose reply is still to come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// `arena.move` (its round trip is timed by [`Game`]).
    Move,
    /// Anything whose reply only matters if it is an error.
    Other,
}

/// The session as far as resuming it needs.
#[derive(Debug, Clone)]
struct Session {
    /// From the login.
    id: u64,
    /// From the login.
    resume_token: String,
}

/// Why the connection is over.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lost {
    /// The server kicked the session with this reason; the line says it.
    Kicked(i32, String),
    /// The connection dropped or failed; the line says how.
    Dropped(String),
}

impl Lost {
    fn line(&self) -> &str {
        match self {
            Lost::Kicked(_, line) | Lost::Dropped(line) => line,
        }
    }
}

/// Why the game loop stopped.
#[derive(Debug)]
enum End {
    /// The player quit.
    Quit,
    /// The server ended it (a kick or a lost session); the line says how.
    Ended(String),
}

/// The running game: the connection, the arena, the view.
struct Play {
    /// Options as given.
    opts: ArenaOptions,
    /// The connection.
    client: Client,
    /// The session, to resume it.
    session: Session,
    /// The arena as seen.
    game: Game,
    /// The view's own state.
    screen: Screen,
    /// Requests in flight by sequence id.
    asked: HashMap<u64, Asked>,
}

/// Runs the game in the terminal until the player quits (`Ok(true)`) or
/// the server ends it (`Ok(false)`, with the reason printed).
pub async fn run(opts: &ArenaOptions) -> anyhow::Result<bool> {
    let (client, session, join) = enter(opts).await?;
    let mut play = Play {
        opts: opts.clone(),
        client,
        session,
        game: Game::new(opts.user, &join),
        screen: Screen {
            zoom: Zoom::Near,
            connection: None,
        },
        asked: HashMap::new(),
    };
    // Switches to the alternate screen in raw mode and installs a panic
    // hook that restores the terminal first.
    let mut terminal = ratatui::try_init().context(
        "cannot take over the terminal (arena needs an interactive terminal: run it in one, or in tmux)",
    )?;
    let end = play.run(&mut terminal).await;
    ratatui::restore();
    match end? {
        End::Quit => {
            play.leave().await;
            println!(
                "left arena {} at ({}, {}) after tick {}",
                play.game.room,
                play.game.pos.0,
                play.game.pos.1,
                play.game.ticks.last.unwrap_or(0)
            );
            Ok(true)
        }
        End::Ended(why) => {
            println!("{why}");
            Ok(false)
        }
    }
}

/// Connects, logs in and joins: everything that must work before the
/// terminal is taken over, so a failure prints plainly.
async fn enter(opts: &ArenaOptions) -> anyhow::Result<(Client, Session, JoinResponse)> {
    let mut client = Client::connect_with_timeout(&opts.addr, opts.timeout).await?;
    let token = token_for(opts.auth_secret.as_deref(), opts.user);
    let login = client
        .login(opts.user, &token)
        .await
        .with_context(|| format!("logging in as user {}", opts.user))?;
    let reply = client
        .call(wire::request(
            wire::JOIN,
            &JoinRequest {
                room: opts.room.clone(),
            },
        ))
        .await
        .with_context(|| format!("joining arena {}", opts.room))?;
    let join: JoinResponse = match wire::classify(reply) {
        Incoming::Reply { payload, .. } => wire::decode_reply("join", payload)
            .map_err(|why| anyhow::anyhow!("joining arena {}: {why}", opts.room))?,
        other => bail!("joining arena {}: unexpected {other:?}", opts.room),
    };
    let session = Session {
        id: login.session_id,
        resume_token: login.resume_token,
    };
    Ok((client, session, join))
}

impl Play {
    /// The loop: keys, packets and heartbeats, redrawing after each.
    async fn run(&mut self, terminal: &mut DefaultTerminal) -> anyhow::Result<End> {
        let mut keys = EventStream::new();
        let mut heartbeat =
            tokio::time::interval_at(Instant::now() + HEARTBEAT_EVERY, HEARTBEAT_EVERY);
        loop {
            terminal.draw(|f| ui::draw(f, &self.game, &self.screen))?;
            tokio::select! {
                event = keys.next() => {
                    match event {
                        Some(Ok(Event::Key(key))) => match action(&key) {
                            Some(Action::Quit) => return Ok(End::Quit),
                            Some(Action::Zoom) => self.screen.zoom = self.screen.zoom.toggled(),
                            Some(Action::Move(d)) => self.send_move(d).await,
                            None => {}
                        },
                        // A resize redraws at the top of the loop.
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(e).context("reading the keyboard"),
                        None => return Ok(End::Quit),
                    }
                }
                packet = self.client.recv(HEARTBEAT_EVERY * 3) => {
                    let lost = match packet {
                        Ok(p) => self.received(wire::classify(p)).err(),
                        Err(ClientError::Timeout(_)) => None,
                        Err(e) => Some(Lost::Dropped(format!("connection lost: {e}"))),
                    };
                    if let Some(why) = lost {
                        if let Err(end) = self.resume(terminal, &mut keys, why).await {
                            return Ok(end);
                        }
                    }
                }
                _ = heartbeat.tick() => {
                    let client_time_ms = now_unix_us() / 1000;
                    self.send(client_packet::Body::Heartbeat(HeartbeatRequest { client_time_ms }), Asked::Other).await;
                }
            }
        }
    }

    /// Sends a request, noting it as `asked`. A failed send is not handled
    /// here: the read that follows sees the connection gone.
    async fn send(&mut self, body: client_packet::Body, asked: Asked) -> Option<u64> {
        let sequence_id = self.client.allocate_sequence();
        let packet = ClientPacket {
            sequence_id,
            body: Some(body),
        };
        match self.client.send(&packet).await {
            Ok(()) => {
                self.asked.insert(sequence_id, asked);
                Some(sequence_id)
            }
            Err(e) => {
                self.game.message = Some(format!("send failed: {e}"));
                None
            }
        }
    }

    async fn send_move(&mut self, d: Direction) {
        let (dx, dy) = d.step();
        let body = wire::request(wire::MOVE, &MoveRequest { dx, dy });
        if let Some(seq) = self.send(body, Asked::Move).await {
            self.game.move_sent(seq, Instant::now().into_std());
        }
    }

    /// Applies one packet. `Err` is why the connection is over: a kick
    /// (resumable or not, [`Play::resume`] decides).
    fn received(&mut self, incoming: Incoming) -> Result<(), Lost> {
        match incoming {
            Incoming::State(state) => {
                self.game.apply_state(state, now_unix_us());
            }
            Incoming::Reply {
                sequence_id,
                payload,
            } => match self.asked.remove(&sequence_id) {
                Some(Asked::Move) => {
                    let reply = wire::decode_reply::<MoveResponse>("move", payload);
                    self.game
                        .move_answered(sequence_id, reply, Instant::now().into_std());
                }
                Some(Asked::Other) | None => {
                    if let Err(why) = payload {
                        self.game.message = Some(why);
                    }
                }
            },
            Incoming::Kicked(k) => {
                let detail = if k.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", k.detail)
                };
                let line = format!("kicked ({}{detail})", kick_reason_name(k.reason));
                return Err(Lost::Kicked(k.reason, line));
            }
            // A push we do not play (a notice, another game's): shown.
            Incoming::Other {
                sequence_id: 0,
                what,
            } => self.game.message = Some(what),
            // The reply to a heartbeat (or a stray one): nothing to show.
            Incoming::Other { sequence_id, .. } => {
                self.asked.remove(&sequence_id);
            }
        }
        Ok(())
    }

    /// Resumes the session on a new connection after `lost` (a drop or a
    /// kick), unless it is a kick that says not to. `Err` ends the game.
    /// The player can quit while it tries.
    async fn resume(
        &mut self,
        terminal: &mut DefaultTerminal,
        keys: &mut EventStream,
        lost: Lost,
    ) -> Result<(), End> {
        let why = lost.line().to_owned();
        if let Lost::Kicked(reason, _) = lost {
            if !resumable(reason) {
                return Err(End::Ended(format!("{why}; the game is over")));
            }
        }
        let deadline = Instant::now() + RESUME_FOR;
        let mut attempt = 0u32;
        while Instant::now() < deadline {
            attempt += 1;
            self.screen.connection = Some(format!("{why}; resuming (attempt {attempt})..."));
            let _ = terminal.draw(|f| ui::draw(f, &self.game, &self.screen));
            let attempt = tokio::select! {
                attempt = self.try_resume() => attempt,
                () = quit_pressed(keys) => {
                    return Err(End::Ended(format!("{why}; quit while resuming")));
                }
            };
            match attempt {
                Ok(()) => {
                    self.screen.connection = None;
                    self.game.message = Some(format!("resumed after: {why}"));
                    return Ok(());
                }
                Err(e) if matches!(e.error_code(), Some(c) if is_final(c)) => {
                    return Err(End::Ended(format!("{why}; resume refused: {e}")));
                }
                Err(_) => {
                    tokio::select! {
                        () = tokio::time::sleep(RESUME_PAUSE) => {}
                        () = quit_pressed(keys) => {
                            return Err(End::Ended(format!("{why}; quit while resuming")));
                        }
                    }
                }
            }
        }
        Err(End::Ended(format!(
            "{why}; could not resume within {RESUME_FOR:?}"
        )))
    }

    /// One resume attempt on a new connection.
    async fn try_resume(&mut self) -> Result<(), ClientError> {
        let mut client = Client::connect_with_timeout(&self.opts.addr, self.opts.timeout).await?;
        // The resume continues the session's sequence.
        client.set_next_sequence(self.client.next_sequence());
        let snapshot = client
            .resume(self.session.id, &self.session.resume_token)
            .await?;
        client.set_next_sequence(client.next_sequence().max(snapshot.last_sequence_id + 1));
        self.client = client;
        // Moves sent before are not re-sent: a step the player pressed a
        // while ago is not one they still want.
        self.asked.clear();
        self.game.resumed();
        Ok(())
    }

    /// Leaves the room (and logs out, so the session does not linger);
    /// bounded, and quiet about failures: the player is leaving anyway.
    async fn leave(&mut self) {
        self.client
            .set_timeout(self.opts.timeout.min(Duration::from_secs(2)));
        let _ = self
            .client
            .call(wire::request(wire::LEAVE, &LeaveRequest {}))
            .await;
        let _ = self.client.logout().await;
    }
}

/// Completes when the player asks to quit (or the keyboard is gone);
/// other keys are ignored.
async fn quit_pressed(keys: &mut EventStream) {
    while let Some(event) = keys.next().await {
        match event {
            Ok(Event::Key(key)) if action(&key) == Some(Action::Quit) => return,
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// Resume errors that more attempts will not fix.
fn is_final(code: gamemesh_proto::client::ErrorCode) -> bool {
    use gamemesh_proto::client::ErrorCode;
    matches!(code, ErrorCode::SessionNotFound | ErrorCode::InvalidToken)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn arrows_move_and_q_quits() {
        assert_eq!(action(&key(KeyCode::Up)), Some(Action::Move(Direction::Up)));
        assert_eq!(
            action(&key(KeyCode::Left)),
            Some(Action::Move(Direction::Left))
        );
        assert_eq!(action(&key(KeyCode::Char('q'))), Some(Action::Quit));
        assert_eq!(action(&key(KeyCode::Esc)), Some(Action::Quit));
        assert_eq!(
            action(&KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(action(&key(KeyCode::Char('c'))), None);
        assert_eq!(action(&key(KeyCode::Char('z'))), Some(Action::Zoom));
        let mut release = key(KeyCode::Right);
        release.kind = KeyEventKind::Release;
        assert_eq!(action(&release), None);
    }

    #[test]
    fn only_kicks_that_say_come_back_are_resumed() {
        for r in [
            KickReason::ServerShutdown,
            KickReason::IdleTimeout,
            KickReason::SlowConsumer,
        ] {
            assert!(resumable(r as i32), "{r:?}");
        }
        for r in [
            KickReason::DuplicateLogin,
            KickReason::SessionExpired,
            KickReason::ProtocolError,
        ] {
            assert!(!resumable(r as i32), "{r:?}");
        }
    }
}
