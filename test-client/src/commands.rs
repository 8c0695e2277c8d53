//! The one-shot commands: `login` and `echo`.

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;

use gamemesh_proto::client::server_packet;

use crate::client::{describe, token_for, Client, ClientError};

/// A random user id, so ad-hoc runs do not kick each other.
pub fn random_user() -> u64 {
    rand::random_range(1..1_000_000_000_000u64)
}

/// Connects and logs in as `user`, printing nothing.
async fn logged_in(
    addr: &str,
    secret: Option<&str>,
    user: u64,
    timeout: Duration,
) -> anyhow::Result<(Client, gamemesh_proto::client::LoginResponse)> {
    logged_in_on(addr, secret, user, timeout, None).await
}

/// Connections tried before [`logged_in_on`] gives up on reaching the
/// wanted game server.
const TRIES_FOR_A_GAME_SERVER: usize = 20;

/// Connects and logs in as `user`; with `game_server`, on that game
/// server: the gateway places new sessions itself, so a login that lands
/// elsewhere is logged out and tried again on a new connection.
pub(crate) async fn logged_in_on(
    addr: &str,
    secret: Option<&str>,
    user: u64,
    timeout: Duration,
    game_server: Option<u64>,
) -> anyhow::Result<(Client, gamemesh_proto::client::LoginResponse)> {
    let token = token_for(secret, user);
    for _ in 0..TRIES_FOR_A_GAME_SERVER {
        let mut client = Client::connect_with_timeout(addr, timeout).await?;
        let login = client
            .login(user, &token)
            .await
            .with_context(|| format!("login as user {user} failed"))?;
        match game_server {
            Some(want) if login.game_server_node_id != want => client.logout().await?,
            _ => return Ok((client, login)),
        }
    }
    anyhow::bail!(
        "{TRIES_FOR_A_GAME_SERVER} connections to {addr} never reached game server {}; is it running?",
        game_server.unwrap_or_default()
    )
}

/// `login`: logs in once and prints the reply; with `listen` > 0, stays
/// connected that long and prints every server notice as it arrives.
pub async fn login(
    addr: &str,
    secret: Option<&str>,
    user: Option<u64>,
    listen: Duration,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let user = user.unwrap_or_else(random_user);
    let (mut client, login) = logged_in(addr, secret, user, timeout).await?;
    println!("logged in as user {user}");
    println!("session_id: {}", login.session_id);
    println!("resume_token: {}", login.resume_token);
    println!("game_server_node_id: {}", login.game_server_node_id);
    println!(
        "replaced_existing_session: {}",
        login.replaced_existing_session
    );
    println!("served by game server {}", login.game_server_node_id);
    if !listen.is_zero() {
        listen_for_notices(&mut client, user, listen).await?;
    }
    Ok(true)
}

/// Prints the pushes `client` receives for `listen`, sending a heartbeat
/// whenever it has been quiet for a while so the gateway's idle timeout
/// (30 s by default) does not close it.
async fn listen_for_notices(
    client: &mut Client,
    user: u64,
    listen: Duration,
) -> anyhow::Result<()> {
    const QUIET: Duration = Duration::from_secs(5);
    println!(
        "user {user}: listening for notices for {} s",
        listen.as_secs()
    );
    let end = Instant::now() + listen;
    for n in client.take_notices() {
        println!("user {user}: notice: {}: {}", n.kind, n.text);
    }
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        match client.next_push(left.min(QUIET)).await {
            Ok(p) => match p.body {
                Some(server_packet::Body::Notice(n)) => {
                    println!("user {user}: notice: {}: {}", n.kind, n.text)
                }
                Some(server_packet::Body::Kicked(_)) => {
                    println!("user {user}: {}", describe(&p));
                    return Ok(());
                }
                _ => println!("user {user}: push {}", describe(&p)),
            },
            Err(ClientError::Timeout(_)) => {
                client
                    .heartbeat()
                    .await
                    .context("heartbeat while listening")?;
                for n in client.take_notices() {
                    println!("user {user}: notice: {}: {}", n.kind, n.text);
                }
            }
            Err(e) => return Err(e).context("listening for notices"),
        }
    }
}

/// `echo`: logs in, echoes `text` `count` times, prints each reply with its
/// round-trip time and a min/avg/max line. `Ok(false)` if a reply differed.
pub async fn echo(
    addr: &str,
    secret: Option<&str>,
    user: Option<u64>,
    text: &str,
    count: u32,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let user = user.unwrap_or_else(random_user);
    let (mut client, login) = logged_in(addr, secret, user, timeout).await?;
    println!(
        "logged in as user {user}, session {}, served by game server {}",
        login.session_id, login.game_server_node_id
    );
    let data = Bytes::copy_from_slice(text.as_bytes());
    let mut all_match = true;
    let mut rtts = Vec::with_capacity(count as usize);
    for i in 1..=count {
        let started = Instant::now();
        let reply = client
            .echo(data.clone())
            .await
            .with_context(|| format!("echo {i} of {count} failed"))?;
        let rtt = started.elapsed();
        rtts.push(rtt);
        let mark = if reply == data {
            ""
        } else {
            all_match = false;
            "  MISMATCH"
        };
        println!(
            "reply {i}/{count}: {:?} in {:.3} ms{mark}",
            String::from_utf8_lossy(&reply),
            ms(rtt)
        );
    }
    if let Some((min, avg, max)) = summarize(&rtts) {
        println!(
            "{count} echoes, round trip min/avg/max {:.3}/{:.3}/{:.3} ms",
            ms(min),
            ms(avg),
            ms(max)
        );
    }
    Ok(all_match)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Minimum, mean and maximum of the round-trip times, if any.
fn summarize(rtts: &[Duration]) -> Option<(Duration, Duration, Duration)> {
    let min = *rtts.iter().min()?;
    let max = *rtts.iter().max()?;
    let avg = rtts.iter().sum::<Duration>() / rtts.len() as u32;
    Some((min, avg, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_round_trips() {
        assert_eq!(summarize(&[]), None);
        let ms = Duration::from_millis;
        assert_eq!(
            summarize(&[ms(3), ms(1), ms(2)]),
            Some((ms(1), ms(2), ms(3)))
        );
    }

    #[test]
    fn random_users_are_in_range() {
        for _ in 0..100 {
            assert!((1..1_000_000_000_000).contains(&random_user()));
        }
    }
}
