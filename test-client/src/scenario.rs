//! The protocol scenario: a fixed walk through the client contract against a
//! running system, printing `PASS <step>` / `FAIL <step>: <why>` per step
//! and a summary line.
//!
//! Steps share state (the logged-in connection, the second login's session)
//! but each checks as much as it can on its own: a failed step does not stop
//! the walk, and a step whose prerequisite failed prints `SKIP` instead of a
//! misleading second failure. Every wait is bounded by the timeout.

use std::fmt;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use gamemesh_proto::client::{server_packet, ErrorCode, KickReason, LoginResponse};

use crate::client::{describe, kick_reason_name, token_for, Client, ClientError};

/// What the scenario runs against.
#[derive(Debug, Clone)]
pub struct ScenarioOptions {
    /// The gateway most steps use.
    pub addr: String,
    /// A second gateway for the duplicate-login connection, so the kick and
    /// the resume cross gateways; `None` uses `addr` again.
    pub addr2: Option<String>,
    /// The shared login secret; `None` when the servers run without one.
    pub auth_secret: Option<String>,
    /// The user to log in; `None` picks a random one so runs do not collide.
    pub user: Option<u64>,
    /// The bound on every wait.
    pub timeout: Duration,
}

/// The step names, as printed (kept together so the output is greppable and
/// stable).
mod step {
    pub const REFUSED: &str = "packet before login is refused";
    pub const LOGIN: &str = "login";
    pub const ECHO: &str = "echo";
    pub const DUPLICATE_SEQUENCE: &str = "duplicate sequence id is not re-executed";
    pub const MALFORMED: &str = "malformed body gets MALFORMED_PACKET";
    pub const DUPLICATE_LOGIN: &str = "duplicate login kicks the old connection";
    pub const RESUME: &str = "resume with snapshot";
    pub const WRONG_TOKEN: &str = "resume with a wrong token is refused";
    pub const LOGOUT: &str = "logout";
}

/// Marks a step that could not run because an earlier one failed.
#[derive(Debug)]
struct Skipped(&'static str);

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Skipped {}

/// A step's result: `Ok(detail)` passes (the detail, if any, is printed
/// after the step name).
type StepResult = anyhow::Result<Option<String>>;

/// A session the scenario can resume: id and resume token.
#[derive(Debug, Clone)]
struct SessionKey {
    session_id: u64,
    resume_token: String,
}

impl From<&LoginResponse> for SessionKey {
    fn from(login: &LoginResponse) -> Self {
        Self {
            session_id: login.session_id,
            resume_token: login.resume_token.clone(),
        }
    }
}

/// Runs the scenario. Returns whether every step passed; never panics, and
/// reports every problem as a `FAIL` line rather than an error.
pub async fn run(opts: &ScenarioOptions) -> anyhow::Result<bool> {
    let user = opts
        .user
        .unwrap_or_else(|| rand::random_range(1..1_000_000_000_000u64));
    println!("scenario: user {user} via {}", opts.addr);
    let mut s = Scenario {
        opts: opts.clone(),
        user,
        tally: Tally::default(),
        unreachable: false,
        first: None,
        second: None,
        resumed: None,
    };
    let r = s.refused_before_login().await;
    s.record(step::REFUSED, r);
    let r = s.login().await;
    s.record(step::LOGIN, r);
    let r = s.echo().await;
    s.record(step::ECHO, r);
    let r = s.duplicate_sequence().await;
    s.record(step::DUPLICATE_SEQUENCE, r);
    let r = s.malformed().await;
    s.record(step::MALFORMED, r);
    let r = s.duplicate_login().await;
    s.record(step::DUPLICATE_LOGIN, r);
    let r = s.resume().await;
    s.record(step::RESUME, r);
    let r = s.wrong_token().await;
    s.record(step::WRONG_TOKEN, r);
    let r = s.logout().await;
    s.record(step::LOGOUT, r);
    s.print_notices();
    let t = &s.tally;
    let verdict = if t.failed == 0 { "OK" } else { "FAILED" };
    println!(
        "summary: {} passed, {} failed, {} skipped: {verdict}",
        t.passed, t.failed, t.skipped
    );
    Ok(t.failed == 0)
}

/// Step counts for the summary.
#[derive(Debug, Default)]
struct Tally {
    passed: u32,
    failed: u32,
    skipped: u32,
}

/// The state carried from step to step.
struct Scenario {
    /// Where and how to connect.
    opts: ScenarioOptions,
    /// The user every login uses (duplicate login needs one user throughout).
    user: u64,
    /// Results so far.
    tally: Tally,
    /// Set when the gateway refused a connection: later steps skip instead
    /// of repeating the same failure.
    unreachable: bool,
    /// The first logged-in connection (steps 2 to 6).
    first: Option<Client>,
    /// The duplicate login's connection and its session (steps 6 and 7).
    second: Option<(Client, LoginResponse)>,
    /// The connection that resumed the second session, and that session's
    /// key (steps 7 to 9).
    resumed: Option<(Client, SessionKey)>,
}

impl Scenario {
    /// Prints the server notices (daily reset, in-game events) any of the
    /// held connections received along the way: they are pushes, not part
    /// of a step.
    fn print_notices(&mut self) {
        let clients = [
            self.first.as_mut(),
            self.second.as_mut().map(|(c, _)| c),
            self.resumed.as_mut().map(|(c, _)| c),
        ];
        for c in clients.into_iter().flatten() {
            for n in c.take_notices() {
                println!("notice: {}: {}", n.kind, n.text);
            }
        }
    }

    fn record(&mut self, name: &str, result: StepResult) {
        match result {
            Ok(None) => {
                self.tally.passed += 1;
                println!("PASS {name}");
            }
            Ok(Some(detail)) => {
                self.tally.passed += 1;
                println!("PASS {name}: {detail}");
            }
            Err(e) if e.is::<Skipped>() => {
                self.tally.skipped += 1;
                println!("SKIP {name}: {e}");
            }
            Err(e) => {
                self.tally.failed += 1;
                let connect_failed = e.chain().any(|c| {
                    matches!(c.downcast_ref::<ClientError>(),
                        Some(ClientError::Connect { addr, .. }) if *addr == self.opts.addr)
                });
                if connect_failed {
                    self.unreachable = true;
                }
                println!("FAIL {name}: {e:#}");
            }
        }
    }

    async fn connect(&self, addr: &str) -> anyhow::Result<Client> {
        if self.unreachable {
            return Err(Skipped("the gateway is unreachable").into());
        }
        Ok(Client::connect_with_timeout(addr, self.opts.timeout).await?)
    }

    fn token(&self) -> String {
        token_for(self.opts.auth_secret.as_deref(), self.user)
    }

    fn first(&mut self) -> anyhow::Result<&mut Client> {
        self.first
            .as_mut()
            .ok_or_else(|| Skipped("needs the first login, which failed").into())
    }

    /// Step 1: a session packet on an unauthenticated connection is refused
    /// and the connection stays usable.
    async fn refused_before_login(&mut self) -> StepResult {
        let mut c = self.connect(&self.opts.addr).await?;
        match c.echo("before login").await {
            Err(e) if e.error_code() == Some(ErrorCode::NotAuthenticated) => {}
            Err(e) => bail!("expected NOT_AUTHENTICATED: {e}"),
            Ok(data) => bail!("the echo was executed before login (got {data:?} back)"),
        }
        c.heartbeat()
            .await
            .context("the connection did not stay usable: a heartbeat after the refusal failed")?;
        Ok(None)
    }

    /// Step 2: log in.
    async fn login(&mut self) -> StepResult {
        let mut c = self.connect(&self.opts.addr).await?;
        let login = c.login(self.user, &self.token()).await?;
        ensure!(login.session_id != 0, "session id is 0");
        ensure!(!login.resume_token.is_empty(), "resume token is empty");
        let detail = format!(
            "user {}, session {}, served by game server {}",
            self.user, login.session_id, login.game_server_node_id
        );
        self.first = Some(c);
        Ok(Some(detail))
    }

    /// Step 3: echo comes back identical.
    async fn echo(&mut self) -> StepResult {
        let c = self.first()?;
        let got = c.echo("hello gamemesh").await?;
        ensure!(got == "hello gamemesh", "got {got:?} back");
        Ok(None)
    }

    /// Step 4: a re-sent sequence id gets the first reply, never a second
    /// execution.
    async fn duplicate_sequence(&mut self) -> StepResult {
        let c = self.first()?;
        let seq = c.allocate_sequence();
        let first = Bytes::from(format!("first execution of {seq}"));
        let got = c.echo_at(seq, first.clone()).await?;
        ensure!(got == first, "the first echo came back as {got:?}");
        match c.echo_at(seq, "second execution").await {
            Ok(got) if got == first => Ok(Some("the cached reply came back".to_owned())),
            Ok(got) if got == "second execution" => {
                bail!("sequence id {seq} was executed twice")
            }
            Ok(got) => bail!("the re-sent sequence id {seq} got {got:?}"),
            Err(e) if e.error_code() == Some(ErrorCode::DuplicateSequence) => {
                Ok(Some("answered DUPLICATE_SEQUENCE".to_owned()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Step 5: an undecodable body gets MALFORMED_PACKET and the session
    /// goes on.
    async fn malformed(&mut self) -> StepResult {
        let timeout = self.opts.timeout;
        let c = self.first()?;
        c.send_raw(b"\xff\xff\xff garbage").await?;
        // The gateway cannot read a sequence id from garbage, so the error
        // may carry 0: take the first packet, whatever its sequence id.
        let reply = c
            .recv(timeout)
            .await
            .context("no answer to the malformed body")?;
        match &reply.body {
            Some(server_packet::Body::Error(e)) if e.code() == ErrorCode::MalformedPacket => {}
            _ => bail!("expected MALFORMED_PACKET, got {}", describe(&reply)),
        }
        let got = c
            .echo("still here")
            .await
            .context("the connection did not stay usable")?;
        ensure!(
            got == "still here",
            "the echo after it came back as {got:?}"
        );
        Ok(None)
    }

    /// Step 6: a second login of the same user kicks and closes the first
    /// connection.
    async fn duplicate_login(&mut self) -> StepResult {
        let timeout = self.opts.timeout;
        let mut first = self
            .first
            .take()
            .ok_or(Skipped("needs the first login, which failed"))?;
        let addr = self
            .opts
            .addr2
            .clone()
            .unwrap_or_else(|| self.opts.addr.clone());
        let mut second = self.connect(&addr).await?;
        let login = second
            .login(self.user, &self.token())
            .await
            .context("the second login failed")?;
        let replaced = login.replaced_existing_session;
        let detail = format!(
            "session {}, served by game server {}",
            login.session_id, login.game_server_node_id
        );
        // Keep the second session for the resume step even if the checks
        // below fail: they are about the first connection.
        self.second = Some((second, login));
        ensure!(replaced, "replaced_existing_session is false");
        let push = first
            .next_push(timeout)
            .await
            .context("the first connection got no Kicked push")?;
        match &push.body {
            Some(server_packet::Body::Kicked(k)) if k.reason() == KickReason::DuplicateLogin => {}
            Some(server_packet::Body::Kicked(k)) => {
                bail!("kicked with reason {}", kick_reason_name(k.reason))
            }
            _ => bail!("expected a Kicked push, got {}", describe(&push)),
        }
        ensure!(
            first.wait_closed(timeout).await,
            "the first connection was not closed within {timeout:?}"
        );
        Ok(Some(detail))
    }

    /// Step 7: drop the second connection, resume on a new one, and find the
    /// sequence where it was left.
    async fn resume(&mut self) -> StepResult {
        let (mut second, login) = self
            .second
            .take()
            .ok_or(Skipped("needs the second login, which failed"))?;
        let key = SessionKey::from(&login);
        let mut last = None;
        for i in 1..=3 {
            let data = Bytes::from(format!("before resume {i}"));
            let got = second.echo(data.clone()).await?;
            ensure!(got == data, "echo {i} came back as {got:?}");
            last = Some((second.last_sequence(), data));
        }
        let (last_seq, last_data) = last.context("no echo was sent")?;
        drop(second);

        let mut c = self.connect(&self.opts.addr).await?;
        let snapshot = c
            .resume(key.session_id, &key.resume_token)
            .await
            .context("resume failed")?;
        // From here on the resumed connection is usable by later steps even
        // if a check below fails.
        let mut checks = Vec::new();
        if snapshot.session_id != key.session_id {
            checks.push(format!(
                "snapshot session id {} != {}",
                snapshot.session_id, key.session_id
            ));
        }
        if snapshot.user_id != self.user {
            checks.push(format!(
                "snapshot user id {} != {}",
                snapshot.user_id, self.user
            ));
        }
        if snapshot.last_sequence_id != last_seq {
            checks.push(format!(
                "snapshot last sequence id {} != {last_seq}",
                snapshot.last_sequence_id
            ));
        }
        c.set_next_sequence(last_seq + 1);
        let result = Self::after_resume(&mut c, last_seq, &last_data).await;
        self.resumed = Some((c, key));
        if let Err(e) = result {
            checks.push(format!("{e:#}"));
        }
        ensure!(checks.is_empty(), "{}", checks.join("; "));
        Ok(Some(format!(
            "last sequence id {last_seq}, served by game server {}",
            snapshot.game_server_node_id
        )))
    }

    /// The resumed session continues the sequence and still refuses to
    /// re-execute the last packet before the resume.
    async fn after_resume(c: &mut Client, last_seq: u64, last_data: &Bytes) -> anyhow::Result<()> {
        let got = c
            .echo("after resume")
            .await
            .context("echo after resume failed")?;
        ensure!(
            got == "after resume",
            "echo after resume came back as {got:?}"
        );
        match c.echo_at(last_seq, "re-sent after resume").await {
            Ok(got) if got == *last_data => Ok(()),
            Ok(got) if got == "re-sent after resume" => {
                bail!("sequence id {last_seq} was executed again after the resume")
            }
            Ok(got) => bail!("re-sent sequence id {last_seq} got {got:?}"),
            Err(e) if e.error_code() == Some(ErrorCode::DuplicateSequence) => Ok(()),
            Err(e) => Err(e).context(format!("re-sending sequence id {last_seq}")),
        }
    }

    /// A session key to use for steps 8 and 9: the resumed one if step 7
    /// got that far.
    fn session_key(&self) -> Option<SessionKey> {
        self.resumed.as_ref().map(|(_, key)| key.clone())
    }

    /// Logs the user in on a fresh connection, for a step whose session
    /// from earlier steps is missing.
    async fn fresh_session(&self) -> anyhow::Result<(Client, SessionKey)> {
        let mut c = self.connect(&self.opts.addr).await?;
        let login = c
            .login(self.user, &self.token())
            .await
            .context("logging in for this step failed")?;
        Ok((c, SessionKey::from(&login)))
    }

    /// Step 8: a tampered resume token is refused.
    async fn wrong_token(&mut self) -> StepResult {
        let key = match self.session_key() {
            Some(key) => key,
            None => {
                let (c, key) = self.fresh_session().await?;
                // Keep it: step 9 logs it out.
                self.resumed = Some((c, key.clone()));
                key
            }
        };
        let mut c = self.connect(&self.opts.addr).await?;
        match c.resume(key.session_id, &tamper(&key.resume_token)).await {
            Err(e) if e.error_code() == Some(ErrorCode::InvalidToken) => Ok(None),
            Err(e) => bail!("expected INVALID_TOKEN: {e}"),
            Ok(_) => bail!("the session was resumed with a wrong token"),
        }
    }

    /// Step 9: logout ends the session for good.
    async fn logout(&mut self) -> StepResult {
        let (mut c, key) = match self.resumed.take() {
            Some(resumed) => resumed,
            None => self.fresh_session().await?,
        };
        c.logout().await.context("logout failed")?;
        drop(c);
        let mut again = self.connect(&self.opts.addr).await?;
        match again.resume(key.session_id, &key.resume_token).await {
            Err(e) if e.error_code() == Some(ErrorCode::SessionNotFound) => Ok(None),
            Err(e) => bail!("resume after logout: expected SESSION_NOT_FOUND: {e}"),
            Ok(_) => bail!("the session could be resumed after logout"),
        }
    }
}

/// A token that differs from `token` in its last character (or is one
/// character longer when empty), so it cannot match.
fn tamper(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    match chars.last_mut() {
        Some(c) => *c = if *c == 'A' { 'B' } else { 'A' },
        None => chars.push('A'),
    }
    chars.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tampered_tokens_differ_in_one_place() {
        for token in ["", "A", "abc", "0123456789abcdefA"] {
            let t = tamper(token);
            assert_ne!(t, token);
            assert_eq!(t.len(), token.len().max(1));
        }
    }

    #[tokio::test]
    async fn an_unreachable_gateway_fails_once_then_skips() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let opts = ScenarioOptions {
            addr,
            addr2: None,
            auth_secret: None,
            user: Some(7),
            timeout: Duration::from_millis(200),
        };
        assert!(!run(&opts).await.unwrap());
    }
}
