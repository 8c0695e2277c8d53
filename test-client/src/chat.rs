//! `test-client chat`: an interactive chat over one connection, usable by
//! a person at a terminal or fed a script on stdin.
//!
//! It logs in, then reads commands from stdin while printing what the
//! server pushes, as it arrives:
//!
//! ```text
//! /join ROOM        join (and create) a room; it becomes the current room
//! /leave [ROOM]     leave a room (default: the current one)
//! /room ROOM        make ROOM the current room
//! /list             list the rooms and their member counts
//! /w USER TEXT      whisper TEXT to user id USER (also /whisper)
//! /say ROOM TEXT    say TEXT in ROOM
//! TEXT              say TEXT in the current room
//! /sleep MS         (scripts) wait MS milliseconds before the next command
//! /expect TEXT      (scripts) wait until a printed line contains TEXT; exit
//!                   status 1 if none does within --timeout-ms
//! /quit             leave (also end of input)
//! ```
//!
//! Output lines: `[general #12] user-5: hello`, `[general #13] * user-7
//! joined`, `[whisper] user-5: psst`, `joined general (3 members: ...)`,
//! `error: NOT_IN_ROOM (...)`. A heartbeat goes out every 10 s so an idle
//! terminal is not closed by the gateway's idle timeout.

use std::collections::HashMap;
use std::time::Duration;

use gamemesh_proto::client::{
    client_packet, server_packet, ChatJoinRequest, ChatLeaveRequest, ChatListRoomsRequest,
    ChatSayRequest, ChatWhisperRequest, ClientPacket, HeartbeatRequest, ServerPacket,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::Instant;

use crate::client::{error_code_name, kick_reason_name, Client, ClientError};

/// How often an idle chat sends a heartbeat (the gateway's idle timeout is
/// 30 s by default).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// What `chat` is given.
#[derive(Debug, Clone)]
pub struct ChatOptions {
    /// Gateway address.
    pub addr: String,
    /// Login secret, if the servers use one.
    pub auth_secret: Option<String>,
    /// User id to log in as.
    pub user: u64,
    /// A room to join at once.
    pub room: Option<String>,
    /// How long to keep printing pushes after the end of input.
    pub linger: Duration,
    /// Bound on connecting, logging in, and `/expect`.
    pub timeout: Duration,
    /// Reconnect until the gateway routes the socket to this game server
    /// (a demo aid: sockets are spread round robin).
    pub game_server: Option<u64>,
}

/// One parsed input line.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// `/join ROOM`.
    Join(String),
    /// `/leave [ROOM]`.
    Leave(Option<String>),
    /// `/room ROOM`.
    Room(String),
    /// `/list`.
    List,
    /// `/w USER TEXT`.
    Whisper(u64, String),
    /// `/say ROOM TEXT`, or plain text (room `None`: the current one).
    Say(Option<String>, String),
    /// `/sleep MS`.
    Sleep(Duration),
    /// `/expect TEXT`.
    Expect(String),
    /// `/quit`.
    Quit,
    /// `/help`.
    Help,
    /// An empty line.
    Nothing,
}

/// Parses one input line; `Err` is a message for the user.
pub fn parse(line: &str) -> Result<Input, String> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(Input::Nothing);
    }
    let Some(cmd) = line.strip_prefix('/') else {
        return Ok(Input::Say(None, line.to_owned()));
    };
    let (name, rest) = cmd.split_once(' ').unwrap_or((cmd, ""));
    let rest = rest.trim();
    let word_and_text = |usage: &str| {
        rest.split_once(' ')
            .map(|(a, b)| (a.to_owned(), b.trim().to_owned()))
            .filter(|(_, b)| !b.is_empty())
            .ok_or_else(|| format!("usage: {usage}"))
    };
    match name {
        "join" | "j" if !rest.is_empty() => Ok(Input::Join(rest.to_owned())),
        "join" | "j" => Err("usage: /join ROOM".into()),
        "leave" => Ok(Input::Leave((!rest.is_empty()).then(|| rest.to_owned()))),
        "room" if !rest.is_empty() => Ok(Input::Room(rest.to_owned())),
        "room" => Err("usage: /room ROOM".into()),
        "list" | "rooms" => Ok(Input::List),
        "w" | "whisper" | "msg" => {
            let (user, text) = word_and_text("/w USER TEXT")?;
            let user = user.parse().map_err(|_| format!("not a user id: {user}"))?;
            Ok(Input::Whisper(user, text))
        }
        "say" => {
            let (room, text) = word_and_text("/say ROOM TEXT")?;
            Ok(Input::Say(Some(room), text))
        }
        "sleep" => rest
            .parse()
            .map(|ms| Input::Sleep(Duration::from_millis(ms)))
            .map_err(|_| "usage: /sleep MILLISECONDS".into()),
        "expect" if !rest.is_empty() => Ok(Input::Expect(rest.to_owned())),
        "expect" => Err("usage: /expect TEXT".into()),
        "quit" | "exit" | "q" => Ok(Input::Quit),
        "help" | "h" | "?" => Ok(Input::Help),
        other => Err(format!("unknown command /{other}; /help lists them")),
    }
}

const HELP: &str = "commands: /join ROOM, /leave [ROOM], /room ROOM, /list, /w USER TEXT, \
/say ROOM TEXT, TEXT (to the current room), /sleep MS, /expect TEXT, /quit";

/// A request sent whose reply is still to come.
enum Asked {
    /// A join of this room.
    Join(String),
    /// Anything else: its reply describes itself.
    Other,
    /// A heartbeat: its reply is not shown.
    Heartbeat,
}

/// The running chat: the connection, what it printed, what it waits for.
struct Chat {
    /// The connection.
    client: Client,
    /// Room that plain text goes to.
    current: Option<String>,
    /// Replies still to come, by sequence id.
    asked: HashMap<u64, Asked>,
    /// Lines printed since the last `/expect` matched.
    printed: Vec<String>,
}

impl Chat {
    fn show(&mut self, line: String) {
        println!("{line}");
        self.printed.push(line);
    }

    async fn ask(&mut self, body: client_packet::Body, asked: Asked) -> Result<(), ClientError> {
        let sequence_id = self.client.allocate_sequence();
        self.asked.insert(sequence_id, asked);
        self.client
            .send(&ClientPacket {
                sequence_id,
                body: Some(body),
            })
            .await
    }

    /// Runs one input line. `Ok(false)`: quit.
    async fn input(&mut self, input: Input) -> Result<bool, ClientError> {
        match input {
            Input::Join(room) => {
                self.ask(
                    client_packet::Body::ChatJoin(ChatJoinRequest { room: room.clone() }),
                    Asked::Join(room),
                )
                .await?
            }
            Input::Leave(room) => match room.or_else(|| self.current.clone()) {
                Some(room) => {
                    if self.current.as_deref() == Some(&room) {
                        self.current = None;
                    }
                    self.ask(
                        client_packet::Body::ChatLeave(ChatLeaveRequest { room }),
                        Asked::Other,
                    )
                    .await?
                }
                None => self.show("no current room: /leave ROOM".into()),
            },
            Input::Room(room) => {
                self.show(format!("current room: {room}"));
                self.current = Some(room);
            }
            Input::List => {
                self.ask(
                    client_packet::Body::ChatListRooms(ChatListRoomsRequest {}),
                    Asked::Other,
                )
                .await?
            }
            Input::Whisper(to_user_id, text) => {
                self.ask(
                    client_packet::Body::ChatWhisper(ChatWhisperRequest { to_user_id, text }),
                    Asked::Other,
                )
                .await?
            }
            Input::Say(room, text) => match room.or_else(|| self.current.clone()) {
                Some(room) => {
                    self.ask(
                        client_packet::Body::ChatSay(ChatSayRequest { room, text }),
                        Asked::Other,
                    )
                    .await?
                }
                None => self.show("join a room first (/join ROOM), or /say ROOM TEXT".into()),
            },
            Input::Help => self.show(HELP.into()),
            Input::Quit => return Ok(false),
            // Handled by the loop.
            Input::Sleep(_) | Input::Expect(_) | Input::Nothing => {}
        }
        Ok(true)
    }

    /// Prints a packet from the server. `false` when it was a kick.
    fn received(&mut self, p: ServerPacket) -> bool {
        use server_packet::Body;
        let asked = self.asked.remove(&p.sequence_id);
        let line = match p.body {
            Some(Body::ChatMessage(m)) => {
                format!("[{} #{}] {}: {}", m.room, m.room_seq, m.from_name, m.text)
            }
            Some(Body::ChatNotice(n)) => format!("[{} #{}] * {}", n.room, n.room_seq, n.text),
            Some(Body::ChatWhispered(w)) => format!("[whisper] {}: {}", w.from_name, w.text),
            Some(Body::ChatJoin(j)) => {
                self.current = Some(j.room.clone());
                let members: Vec<String> = j
                    .member_user_ids
                    .iter()
                    .map(|u| format!("user-{u}"))
                    .collect();
                format!(
                    "joined {} ({} members: {})",
                    j.room,
                    members.len(),
                    members.join(", ")
                )
            }
            Some(Body::ChatLeave(l)) => format!("left {}", l.room),
            Some(Body::ChatListRooms(r)) => {
                let rooms: Vec<String> = r
                    .rooms
                    .iter()
                    .map(|r| format!("{} ({})", r.name, r.member_count))
                    .collect();
                format!("rooms: {}", rooms.join(", "))
            }
            // The message itself comes back as a push.
            Some(Body::ChatSay(_)) | Some(Body::Heartbeat(_)) => return true,
            Some(Body::ChatWhisper(w)) => format!("whisper to user-{} sent", w.to_user_id),
            Some(Body::Error(e)) => {
                if let Some(Asked::Join(room)) = asked {
                    if self.current.as_deref() == Some(&room) {
                        self.current = None;
                    }
                }
                let detail = if e.detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", e.detail)
                };
                format!("error: {}{detail}", error_code_name(e.code))
            }
            Some(Body::Kicked(k)) => {
                self.show(format!(
                    "kicked: {} {}",
                    kick_reason_name(k.reason),
                    k.detail
                ));
                return false;
            }
            other => format!("{other:?}"),
        };
        self.show(line);
        true
    }
}

/// Runs the chat until `/quit`, end of input (then `linger`), a kick, or
/// the connection closing. `Ok(false)` when an `/expect` failed or the
/// session was kicked.
pub async fn run(opts: &ChatOptions) -> anyhow::Result<bool> {
    let (client, login) = crate::commands::logged_in_on(
        &opts.addr,
        opts.auth_secret.as_deref(),
        opts.user,
        opts.timeout,
        opts.game_server,
    )
    .await?;
    println!(
        "logged in as user-{} (session {}) on game server {}; /help lists the commands",
        opts.user, login.session_id, login.game_server_node_id
    );
    let mut chat = Chat {
        client,
        current: None,
        asked: HashMap::new(),
        printed: Vec::new(),
    };
    if let Some(room) = &opts.room {
        chat.input(Input::Join(room.clone())).await?;
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    // While set, input waits: a /sleep, an /expect, or the linger at the end.
    let mut paused_until: Option<Instant> = None;
    let mut expecting: Option<String> = None;
    let mut heartbeat = tokio::time::interval_at(Instant::now() + HEARTBEAT_EVERY, HEARTBEAT_EVERY);
    loop {
        let reading = stdin_open && paused_until.is_none();
        tokio::select! {
            line = lines.next_line(), if reading => match line {
                Ok(Some(line)) => match parse(&line) {
                    Ok(Input::Sleep(d)) => paused_until = Some(Instant::now() + d),
                    Ok(Input::Expect(text)) => {
                        if let Some(i) = chat.printed.iter().position(|l| l.contains(&text)) {
                            chat.printed.drain(..=i);
                        } else {
                            expecting = Some(text);
                            paused_until = Some(Instant::now() + opts.timeout);
                        }
                    }
                    Ok(input) => {
                        if !chat.input(input).await? {
                            return Ok(true);
                        }
                    }
                    Err(msg) => chat.show(msg),
                },
                _ => {
                    stdin_open = false;
                    paused_until = Some(Instant::now() + opts.linger);
                }
            },
            p = chat.client.recv(Duration::from_secs(24 * 3600)) => match p {
                Ok(p) => {
                    if !chat.received(p) {
                        return Ok(false);
                    }
                    if let Some(text) = &expecting {
                        if let Some(i) = chat.printed.iter().position(|l| l.contains(text)) {
                            chat.printed.drain(..=i);
                            expecting = None;
                            paused_until = None;
                        }
                    }
                }
                Err(ClientError::Closed) => {
                    println!("connection closed by the server");
                    return Ok(false);
                }
                Err(e) => return Err(e.into()),
            },
            _ = heartbeat.tick() => {
                chat.ask(client_packet::Body::Heartbeat(HeartbeatRequest { client_time_ms: 0 }), Asked::Heartbeat).await?;
            }
            _ = tokio::time::sleep_until(paused_until.unwrap_or_else(Instant::now)), if paused_until.is_some() => {
                paused_until = None;
                if let Some(text) = expecting.take() {
                    println!("expected a line containing {text:?}; none came within {} ms", opts.timeout.as_millis());
                    return Ok(false);
                }
                if !stdin_open {
                    return Ok(true);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_lines_parse() {
        assert_eq!(
            parse("hello there"),
            Ok(Input::Say(None, "hello there".into()))
        );
        assert_eq!(parse("/join general"), Ok(Input::Join("general".into())));
        assert_eq!(parse("/leave"), Ok(Input::Leave(None)));
        assert_eq!(parse("/leave dev"), Ok(Input::Leave(Some("dev".into()))));
        assert_eq!(
            parse("/w 42 psst, you"),
            Ok(Input::Whisper(42, "psst, you".into()))
        );
        assert_eq!(
            parse("/say game gg all"),
            Ok(Input::Say(Some("game".into()), "gg all".into()))
        );
        assert_eq!(
            parse("/sleep 250"),
            Ok(Input::Sleep(Duration::from_millis(250)))
        );
        assert_eq!(
            parse("/expect user-2: hi"),
            Ok(Input::Expect("user-2: hi".into()))
        );
        assert_eq!(parse("  "), Ok(Input::Nothing));
        assert_eq!(parse("/quit"), Ok(Input::Quit));
        assert!(parse("/w bob hi").is_err());
        assert!(parse("/w 42").is_err());
        assert!(parse("/join").is_err());
        assert!(parse("/dance").is_err());
    }
}
