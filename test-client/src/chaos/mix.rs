//! The rest of a soak's mixed load, beside the incrementing sessions of
//! [`super`]: players who log in, echo and leave ([`churn`]), and chat
//! rooms whose members say things and check no post reaches them twice
//! ([`chat`]). They count into the same [`Counters`]; what must not happen
//! here is an echo answered with another payload (`wrong_echoes`) and a
//! post seen twice (`chat_seen_twice`: a re-sent `chat_say` posted again).
//! Like the incrementing sessions, a request with no answer at all within
//! the deadline is `hung`.

use std::collections::HashSet;
use std::time::Duration;

use gamemesh_proto::client::{
    client_packet, server_packet, ChatJoinRequest, ChatSayRequest, ClientPacket, ErrorCode,
    ServerPacket,
};
use tokio::time::Instant;

use super::{bump, harvest, login, reconnect, ChaosOptions, Counters, Session};
use crate::client::{Client, ClientError};

/// Players of the churn: each logs in, echoes a few times and leaves.
const ECHOES_PER_LOGIN: u32 = 5;

/// Members of one chat room.
pub const ROOM_SIZE: usize = 4;

/// Pause between one chat member's posts.
const CHAT_INTERVAL: Duration = Duration::from_millis(200);

/// A user id range apart from the incrementing sessions'.
const CHURN_USERS: u64 = 500_000;
/// Likewise for chat members.
const CHAT_USERS: u64 = 700_000;

/// One churning player until `end`: connect (alternating gateways), log
/// in, echo [`ECHOES_PER_LOGIN`] times, log out; again.
pub async fn churn(opts: &ChaosOptions, index: usize, end: Instant, c: &Counters) {
    let user = opts.first_user + CHURN_USERS + index as u64;
    let mut gateway = index % opts.addrs.len();
    while Instant::now() < end {
        gateway = (gateway + 1) % opts.addrs.len();
        bump(&c.logins);
        // Refusals are retried for as long as a request's (the table's
        // "still refused after four deadlines").
        let deadline = Instant::now() + opts.deadline * super::RETRY_DEADLINES;
        let mut s = match login(opts, user, gateway, deadline).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("user {user}: churn login hung: {e}");
                bump(&c.hung);
                continue;
            }
        };
        for n in 0..ECHOES_PER_LOGIN {
            if !echo(opts, &mut s.client, &format!("{user}-{n}"), c).await {
                break;
            }
            tokio::time::sleep(opts.interval).await;
        }
        let _ = s.client.logout().await;
        harvest(&mut s.client, c);
    }
}

/// One echo, checked; false when the connection is no longer usable.
async fn echo(opts: &ChaosOptions, client: &mut Client, data: &str, c: &Counters) -> bool {
    bump(&c.echoes);
    client.set_timeout(opts.deadline);
    let r = client.echo(data.to_string()).await;
    harvest(client, c);
    match r {
        Ok(back) if back == data.as_bytes() => true,
        Ok(back) => {
            tracing::warn!("echo of {data:?} answered {back:?}");
            bump(&c.wrong_echoes);
            true
        }
        Err(ClientError::Timeout(_)) => {
            tracing::warn!("echo {data:?} hung");
            bump(&c.hung);
            false
        }
        Err(e) if e.error_code().is_some() => {
            bump(&c.explicitly_failed);
            true
        }
        Err(_) => false,
    }
}

/// One chat member until `end`: joins its room (`index / ROOM_SIZE`),
/// says something every [`CHAT_INTERVAL`], re-sending a post under the same
/// sequence id while it is answered with an error that says nothing
/// happened (never one with `outcome_unknown`), and reads what the room
/// pushes. A post (its text is unique) seen twice is counted.
pub async fn chat(opts: &ChaosOptions, index: usize, end: Instant, c: &Counters) {
    let user = opts.first_user + CHAT_USERS + index as u64;
    let room = format!("soak-{}", index / ROOM_SIZE);
    let deadline = Instant::now() + opts.deadline * super::RETRY_DEADLINES;
    let Ok(mut s) = login(opts, user, index % opts.addrs.len(), deadline).await else {
        tracing::warn!("user {user}: chat member's login hung");
        bump(&c.hung);
        return;
    };
    let mut seen = HashSet::new();
    let mut joined = false;
    let mut n = 0u64;
    // Sequence ids are ours (not the client's allocator): a re-sent post
    // keeps its id across a resume.
    let mut seq = s.client.last_sequence();
    while Instant::now() < end {
        if !joined {
            seq += 1;
            joined = join(opts, &mut s.client, seq, &room).await;
            if !joined {
                // Whatever failed, carry on from a fresh connection.
                harvest(&mut s.client, c);
                let deadline = Instant::now() + opts.deadline;
                let _ = reconnect(opts, &mut s, &mut seq, c, deadline, false).await;
            }
        }
        if joined {
            n += 1;
            seq += 1;
            let text = format!("{user}:{n}");
            joined = say(opts, &mut s, &mut seq, &room, &text, c).await;
        }
        read_posts(&mut s.client, &mut seen, c);
        tokio::time::sleep(CHAT_INTERVAL).await;
    }
}

/// Joins `room` under sequence id `seq`; false if it was not answered
/// with the join.
async fn join(opts: &ChaosOptions, client: &mut Client, seq: u64, room: &str) -> bool {
    client.set_timeout(opts.deadline);
    let packet = ClientPacket {
        sequence_id: seq,
        body: Some(client_packet::Body::ChatJoin(ChatJoinRequest {
            room: room.to_string(),
        })),
    };
    matches!(
        client.request(&packet).await,
        Ok(ServerPacket {
            body: Some(server_packet::Body::ChatJoin(_)),
            ..
        })
    )
}

/// Says `text` under sequence id `seq` until answered (or hung); false if
/// the session moved to a new connection (which must join again).
async fn say(
    opts: &ChaosOptions,
    s: &mut Session,
    seq: &mut u64,
    room: &str,
    text: &str,
    c: &Counters,
) -> bool {
    bump(&c.chat_said);
    let deadline = Instant::now() + opts.deadline * super::RETRY_DEADLINES;
    let packet = |seq| ClientPacket {
        sequence_id: seq,
        body: Some(client_packet::Body::ChatSay(ChatSayRequest {
            room: room.to_string(),
            text: text.to_string(),
        })),
    };
    let mut same_connection = true;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bump(&c.hung);
            return same_connection;
        }
        s.client.set_timeout(left.min(opts.deadline));
        match s.client.request(&packet(*seq)).await {
            Ok(p) => match p.body {
                Some(server_packet::Body::ChatSay(_)) => return same_connection,
                Some(server_packet::Body::Error(e))
                    if e.code == ErrorCode::DuplicateSequence as i32 =>
                {
                    return same_connection
                }
                Some(server_packet::Body::Error(e)) if e.outcome_unknown => {
                    // It may have posted (its game server went down
                    // holding it): the contract says not to re-send this
                    // id. The room's pushes show whether it did.
                    bump(&c.chat_outcome_unknown);
                    return same_connection;
                }
                Some(server_packet::Body::Error(e))
                    if e.code == ErrorCode::NotAuthenticated as i32 =>
                {
                    bump(&c.explicitly_failed);
                    if reconnect(opts, s, seq, c, deadline, false).await.is_err() {
                        bump(&c.hung);
                        return false;
                    }
                    same_connection = false;
                }
                Some(server_packet::Body::Error(_)) => {
                    // UNAVAILABLE and the like: "nothing happened", or so
                    // the reply says; the same post, again.
                    bump(&c.explicitly_failed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => return same_connection,
            },
            Err(ClientError::Timeout(_)) => {
                tracing::warn!("user {}: chat_say {seq} hung", s.user);
                bump(&c.hung);
                let _ = reconnect(opts, s, seq, c, Instant::now() + opts.deadline, false).await;
                return false;
            }
            Err(_) => {
                harvest(&mut s.client, c);
                if reconnect(opts, s, seq, c, deadline, false).await.is_err() {
                    bump(&c.hung);
                    return false;
                }
                same_connection = false;
            }
        }
    }
}

/// Takes the queued pushes: posts (each text at most once), kicks.
fn read_posts(client: &mut Client, seen: &mut HashSet<String>, c: &Counters) {
    for p in client.take_queued() {
        match p.body {
            Some(server_packet::Body::ChatMessage(m)) if !seen.insert(m.text.clone()) => {
                tracing::warn!("chat post {:?} in {} seen twice", m.text, m.room);
                bump(&c.chat_seen_twice);
            }
            Some(server_packet::Body::Kicked(k)) => super::count_kick(c, k.reason),
            _ => {}
        }
    }
}
