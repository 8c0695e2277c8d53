//! `chaos`: many sessions incrementing their counters through two gateways
//! while an operator (or `scripts/chaos.sh`) kills, pauses and restarts
//! the parts of the cluster; at the end one JSON line and a table of what
//! must not happen.
//!
//! Each session is one worker with its own user. It sends
//! `IncrementRequest`s one at a time and retries a request with the SAME
//! sequence id until it is answered: on `UNAVAILABLE` (and other explicit
//! errors) on the same connection, on a closed connection by resuming
//! through the OTHER gateway first. The server's idempotency makes every
//! retry safe, so after `n` acknowledged increments the next answer must
//! be `n + 1`:
//!
//! - a higher value means an increment ran twice (`executed_twice`);
//! - a lower one means an acknowledged increment was lost (`lost`);
//! - a request attempt with no answer at all (neither a value nor an
//!   explicit error) within `--deadline-ms` is `hung`, and so is a request
//!   still refused after four deadlines of retries;
//! - `doubled` counts users left with two live sessions or connections:
//!   through Redis (`--redis`), a user whose session record names another
//!   session than the one their client holds at the end; through the
//!   clients, an old connection the worker left open when it moved on
//!   (after a request hung on it) that the server did not close when the
//!   session was resumed elsewhere.
//!
//! A session the cluster lost (resume says `SESSION_NOT_FOUND`) is logged
//! in again and its count starts over (`sessions_lost`); with Redis
//! persisting its data (chaos.sh runs it with an append-only file) that is
//! 0 too.
//!
//! With a faults file (`--faults-file`, written by the script that breaks
//! things) it also measures kill-to-served per fault ([`faults`]). With
//! `--mix` (the soak) sessions also resume now and then on their own
//! (checking the old connection is closed), and players who log in, echo
//! and leave, and chat rooms, run beside them ([`mix`]). Kicks seen by any
//! of them are counted by reason.

pub mod faults;
mod mix;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use gamemesh_node::redis_address::redact;
use gamemesh_proto::client::ErrorCode;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;

use self::faults::{Cursor, FaultSummary, Faults};
use crate::client::{kick_reason_name, token_for, Client, ClientError};
use gamemesh_proto::client::server_packet;

/// How `chaos` runs.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    /// The gateways (two, or one for a smoke run).
    pub addrs: Vec<String>,
    /// Login secret (`None`: the token "dev").
    pub auth_secret: Option<String>,
    /// Concurrent sessions.
    pub sessions: usize,
    /// User id of the first session; the others follow.
    pub first_user: u64,
    /// How long new requests are started.
    pub duration: Duration,
    /// Pause between one session's requests.
    pub interval: Duration,
    /// A request attempt not answered at all (neither a value nor an
    /// explicit error) within this long is hung.
    pub deadline: Duration,
    /// Redis URL for the doubled-session check (skipped without it).
    pub redis: Option<String>,
    /// The file the fault script appends `<unix ms> <name>` lines to; with
    /// it, kill-to-served is measured per fault.
    pub faults_file: Option<PathBuf>,
    /// The soak's mixed load: voluntary resumes, login churn and chat
    /// beside the incrementing sessions.
    pub mix: bool,
}

/// With `mix`, a session resumes on its own (through the other gateway)
/// after this many increments.
const RESUME_EVERY: u64 = 250;

/// What `chaos` counted.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct ChaosReport {
    /// Increments started (each retried until answered or hung).
    pub sent: u64,
    /// Increments answered with a value (or `DUPLICATE_SEQUENCE`: executed
    /// once, its cached reply gone).
    pub answered: u64,
    /// Explicit error answers received (`UNAVAILABLE`, ...); each was
    /// retried.
    pub explicitly_failed: u64,
    /// Requests with no answer within the deadline. Must be 0.
    pub hung: u64,
    /// Answers skipping ahead of the acknowledged count. Must be 0.
    pub executed_twice: u64,
    /// Answers behind the acknowledged count. Must be 0.
    pub lost: u64,
    /// Users left with another session than their client's. Must be 0.
    pub doubled: u64,
    /// Sessions the cluster lost (logged in again).
    pub sessions_lost: u64,
    /// Resumes on a new connection.
    pub resumes: u64,
    /// Resumes that went to the other gateway.
    pub gateway_switches: u64,
    /// Users whose record was checked in Redis (0 without `--redis`).
    pub checked_in_redis: u64,
    /// Resumes a session made on its own (`mix`), each checking the old
    /// connection was closed.
    pub voluntary_resumes: u64,
    /// Logins of the churning players (`mix`).
    pub logins: u64,
    /// Echoes of the churning players (`mix`).
    pub echoes: u64,
    /// Echoes answered with another payload. Must be 0.
    pub wrong_echoes: u64,
    /// Chat posts said (`mix`), each re-sent until answered.
    pub chat_said: u64,
    /// Chat posts a member received twice. Must be 0.
    pub chat_seen_twice: u64,
    /// Chat posts answered `UNAVAILABLE` with `outcome_unknown` (their game
    /// server went down holding them): not re-sent, as the contract says.
    pub chat_outcome_unknown: u64,
    /// `Kicked` pushes seen, by reason.
    pub kicks: BTreeMap<String, u64>,
    /// Kill-to-served per fault (with a faults file).
    pub faults: Vec<FaultSummary>,
}

impl ChaosReport {
    /// True when every must-be-zero is zero.
    pub fn passed(&self) -> bool {
        self.hung == 0
            && self.executed_twice == 0
            && self.lost == 0
            && self.doubled == 0
            && self.wrong_echoes == 0
            && self.chat_seen_twice == 0
    }

    /// One JSON line.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The table for people.
    pub fn table(&self) -> String {
        let row = |name: &str, v: u64, must_be_zero: bool| {
            let verdict = match (must_be_zero, v) {
                (false, _) => "",
                (true, 0) => "ok (must be 0)",
                (true, _) => "FAIL (must be 0)",
            };
            format!("| {name:<34} | {v:>9} | {verdict:<16} |\n")
        };
        let mut t = String::new();
        t.push_str(&format!(
            "| {:<34} | {:>9} | {:<16} |\n",
            "chaos", "count", ""
        ));
        t.push_str(&format!(
            "|{}|{}|{}|\n",
            "-".repeat(36),
            "-".repeat(11),
            "-".repeat(18)
        ));
        t.push_str(&row("requests sent", self.sent, false));
        t.push_str(&row("answered", self.answered, false));
        t.push_str(&row(
            "explicitly failed (then retried)",
            self.explicitly_failed,
            false,
        ));
        t.push_str(&row("hung", self.hung, true));
        t.push_str(&row("executed twice", self.executed_twice, true));
        t.push_str(&row("acknowledged increments lost", self.lost, true));
        t.push_str(&row("sessions left doubled", self.doubled, true));
        t.push_str(&row(
            "sessions lost (logged in again)",
            self.sessions_lost,
            false,
        ));
        t.push_str(&row("resumes", self.resumes, false));
        t.push_str(&row(
            "resumes through the other gateway",
            self.gateway_switches,
            false,
        ));
        t.push_str(&row("users checked in Redis", self.checked_in_redis, false));
        if self.logins + self.chat_said + self.voluntary_resumes > 0 {
            t.push_str(&row("voluntary resumes", self.voluntary_resumes, false));
            t.push_str(&row("logins (churn)", self.logins, false));
            t.push_str(&row("echoes (churn)", self.echoes, false));
            t.push_str(&row("echoes answered wrong", self.wrong_echoes, true));
            t.push_str(&row("chat posts said", self.chat_said, false));
            t.push_str(&row("chat posts seen twice", self.chat_seen_twice, true));
            t.push_str(&row(
                "chat posts outcome unknown",
                self.chat_outcome_unknown,
                false,
            ));
        }
        for (reason, n) in &self.kicks {
            t.push_str(&row(&format!("kicks: {reason}"), *n, false));
        }
        if !self.faults.is_empty() {
            t.push('\n');
            t.push_str(&faults::table(&self.faults));
        }
        t
    }
}

/// Shared counters of the workers.
#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    answered: AtomicU64,
    explicitly_failed: AtomicU64,
    hung: AtomicU64,
    executed_twice: AtomicU64,
    lost: AtomicU64,
    sessions_lost: AtomicU64,
    resumes: AtomicU64,
    gateway_switches: AtomicU64,
    doubled: AtomicU64,
    voluntary_resumes: AtomicU64,
    logins: AtomicU64,
    echoes: AtomicU64,
    wrong_echoes: AtomicU64,
    chat_said: AtomicU64,
    chat_seen_twice: AtomicU64,
    chat_outcome_unknown: AtomicU64,
    kicks: Mutex<BTreeMap<String, u64>>,
    /// The faults reported so far (empty without a faults file).
    faults: Arc<Faults>,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Counts a `Kicked` push by its reason.
fn count_kick(c: &Counters, reason: i32) {
    *c.kicks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(kick_reason_name(reason))
        .or_default() += 1;
}

/// Counts the kicks among a connection's queued pushes (and drops the
/// rest: this load reads no other push).
fn harvest(client: &mut Client, c: &Counters) {
    for p in client.take_queued() {
        if let Some(server_packet::Body::Kicked(k)) = p.body {
            count_kick(c, k.reason);
        }
    }
}

/// A request explicitly refused again and again is given up (and counted
/// hung) after this many deadlines.
const RETRY_DEADLINES: u32 = 4;

/// One session's state on the client side.
struct Session {
    /// The connection in use.
    client: Client,
    /// Index into `addrs` of its gateway.
    gateway: usize,
    /// The user.
    user: u64,
    /// From the login.
    session_id: u64,
    /// From the login.
    resume_token: String,
    /// Increments acknowledged in this session.
    acked: u64,
    /// Requests given up as hung: each may or may not have run.
    slack: u64,
    /// Connections left open when the session moved on; the resume must
    /// have closed them.
    left_open: Vec<Client>,
}

/// Runs the chaos load and returns what it counted.
pub async fn run(opts: &ChaosOptions) -> anyhow::Result<ChaosReport> {
    anyhow::ensure!(!opts.addrs.is_empty(), "chaos needs at least one gateway");
    let counters = Arc::new(Counters::default());
    let end = Instant::now() + opts.duration;
    let stop = tokio_util::sync::CancellationToken::new();
    let _stop_watching = stop.clone().drop_guard();
    if let Some(path) = &opts.faults_file {
        tokio::spawn(faults::watch(
            path.clone(),
            counters.faults.clone(),
            stop.clone(),
        ));
    }
    let mut others = JoinSet::new();
    if opts.mix {
        spawn_mix(opts, end, &counters, &mut others);
    }
    let mut tasks = JoinSet::new();
    for i in 0..opts.sessions {
        let opts = opts.clone();
        let counters = counters.clone();
        tasks.spawn(async move { worker(&opts, i, end, &counters).await });
    }
    let mut held = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r.context("a chaos worker panicked")? {
            Ok(s) => held.push(s),
            Err(e) => anyhow::bail!("a chaos session could not start: {e}"),
        }
    }
    while let Some(r) = others.join_next().await {
        r.context("a churn or chat worker panicked")?;
    }
    let c = &counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut report = ChaosReport {
        sent: get(&c.sent),
        answered: get(&c.answered),
        explicitly_failed: get(&c.explicitly_failed),
        hung: get(&c.hung),
        executed_twice: get(&c.executed_twice),
        lost: get(&c.lost),
        sessions_lost: get(&c.sessions_lost),
        resumes: get(&c.resumes),
        gateway_switches: get(&c.gateway_switches),
        doubled: get(&c.doubled),
        voluntary_resumes: get(&c.voluntary_resumes),
        logins: get(&c.logins),
        echoes: get(&c.echoes),
        wrong_echoes: get(&c.wrong_echoes),
        chat_said: get(&c.chat_said),
        chat_seen_twice: get(&c.chat_seen_twice),
        chat_outcome_unknown: get(&c.chat_outcome_unknown),
        kicks: c.kicks.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        faults: c.faults.summary(opts.sessions),
        ..ChaosReport::default()
    };
    if let Some(url) = &opts.redis {
        let (checked, doubled) = check_redis(url, &held).await?;
        report.checked_in_redis = checked;
        report.doubled += doubled;
    }
    Ok(report)
}

/// Starts the soak's other players: one churning player per five
/// sessions, and chat rooms of [`mix::ROOM_SIZE`] for as many.
fn spawn_mix(opts: &ChaosOptions, end: Instant, counters: &Arc<Counters>, set: &mut JoinSet<()>) {
    let others = (opts.sessions / 5).max(mix::ROOM_SIZE);
    for i in 0..others {
        let (o, c) = (opts.clone(), counters.clone());
        set.spawn(async move { mix::churn(&o, i, end, &c).await });
        let (o, c) = (opts.clone(), counters.clone());
        set.spawn(async move { mix::chat(&o, i, end, &c).await });
    }
}

/// (user, session id) of every session at the end, compared with the
/// record Redis holds for the user.
async fn check_redis(url: &str, held: &[(u64, u64)]) -> anyhow::Result<(u64, u64)> {
    let client =
        redis::Client::open(url).with_context(|| format!("bad Redis URL {:?}", redact(url)))?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("cannot reach Redis at {url} for the doubled-session check"))?;
    let mut doubled = 0;
    for (user, session_id) in held {
        let sid: Option<String> = redis::cmd("HGET")
            .arg(format!("gm:{{u:{user}}}:session"))
            .arg("sid")
            .query_async(&mut conn)
            .await
            .context("HGET of a session record")?;
        if sid.as_deref() != Some(session_id.to_string().as_str()) {
            tracing::warn!("user {user}: the client holds session {session_id}, Redis has {sid:?}");
            doubled += 1;
        }
    }
    Ok((held.len() as u64, doubled))
}

/// One session: increments until `end`, then returns (user, session id).
async fn worker(
    opts: &ChaosOptions,
    index: usize,
    end: Instant,
    c: &Counters,
) -> Result<(u64, u64), String> {
    let user = opts.first_user + index as u64;
    let gateway = index % opts.addrs.len();
    let mut s = login(opts, user, gateway, Instant::now() + opts.deadline)
        .await
        .map_err(|e| format!("user {user}: {e}"))?;
    let mut seq = s.client.last_sequence();
    let mut cursor = Cursor::default();
    let mut n = 0u64;
    while Instant::now() < end {
        seq += 1;
        n += 1;
        bump(&c.sent);
        let started = faults::now_ms();
        if increment(opts, &mut s, &mut seq, c).await {
            cursor.answered(&c.faults, started);
        }
        harvest(&mut s.client, c);
        if opts.mix && n.is_multiple_of(RESUME_EVERY) {
            resume_on_purpose(opts, &mut s, &mut seq, c).await;
        }
        tokio::time::sleep(opts.interval).await;
    }
    // Every connection this session left behind must have been closed by
    // the resume that replaced it.
    let mut doubled = 0;
    for mut old in s.left_open.drain(..) {
        if !old.wait_closed(Duration::from_secs(3)).await {
            tracing::warn!("user {user}: an old connection is still open after the resume");
            doubled += 1;
        }
    }
    c.doubled.fetch_add(doubled, Ordering::Relaxed);
    Ok((s.user, s.session_id))
}

/// Moves the session to a new connection through the other gateway, as a
/// player whose network changed does, and checks the server closes the
/// old one (else the session is doubled).
async fn resume_on_purpose(opts: &ChaosOptions, s: &mut Session, seq: &mut u64, c: &Counters) {
    let before = c.resumes.load(Ordering::Relaxed);
    let deadline = Instant::now() + opts.deadline;
    if reconnect(opts, s, seq, c, deadline, true).await.is_err() {
        return;
    }
    bump(&c.voluntary_resumes);
    if c.resumes.load(Ordering::Relaxed) == before {
        return; // logged in again: nothing was resumed
    }
    if let Some(mut old) = s.left_open.pop() {
        if !closed_within(&mut old, Duration::from_secs(3), c).await {
            tracing::warn!(
                "user {}: the old connection (to {}) is still open 3 s after a resume through {}",
                s.user,
                old.addr(),
                s.client.addr()
            );
            bump(&c.doubled);
        }
    }
}

/// True if the server closes `client` (an orderly close or a reset) within
/// `within`; counts the kicks it reads meanwhile.
async fn closed_within(client: &mut Client, within: Duration, c: &Counters) -> bool {
    let deadline = Instant::now() + within;
    loop {
        harvest(client, c);
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match client.recv(left).await {
            Ok(p) => {
                if let Some(server_packet::Body::Kicked(k)) = p.body {
                    count_kick(c, k.reason);
                }
            }
            Err(ClientError::Timeout(_)) => return false,
            Err(ClientError::Decode(_)) => {}
            Err(_) => return true,
        }
    }
}

/// Runs one increment to its end: answered (true), or hung. Each attempt
/// must be answered (a value or an explicit error) within the deadline;
/// retries after explicit errors go on for at most [`RETRY_DEADLINES`]
/// deadlines.
async fn increment(opts: &ChaosOptions, s: &mut Session, seq: &mut u64, c: &Counters) -> bool {
    let deadline = Instant::now() + opts.deadline * RETRY_DEADLINES;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            hung(s, *seq, c);
            return false;
        }
        s.client.set_timeout(left.min(opts.deadline));
        match s.client.increment_at(*seq).await {
            Ok(value) => {
                bump(&c.answered);
                let expected = s.acked + 1;
                if value > expected + s.slack {
                    tracing::warn!(
                        "user {}: increment {seq} answered {value}, expected {expected}: executed twice",
                        s.user
                    );
                    bump(&c.executed_twice);
                } else if value < expected {
                    tracing::warn!(
                        "user {}: increment {seq} answered {value}, expected {expected}: acknowledged increments lost",
                        s.user
                    );
                    bump(&c.lost);
                }
                s.acked = value;
                s.slack = 0;
                return true;
            }
            Err(ClientError::Timeout(_)) => {
                hung(s, *seq, c);
                // Whatever the old connection is doing, continue elsewhere.
                let _ = reconnect(opts, s, seq, c, Instant::now() + opts.deadline, true).await;
                return false;
            }
            Err(e) => match e.error_code() {
                Some(ErrorCode::DuplicateSequence) => {
                    // Executed once; its reply fell out of the cache.
                    bump(&c.answered);
                    s.acked += 1;
                    return true;
                }
                Some(ErrorCode::NotAuthenticated) => {
                    bump(&c.explicitly_failed);
                    if reconnect(opts, s, seq, c, deadline, false).await.is_err() {
                        hung(s, *seq, c);
                        return false;
                    }
                }
                Some(_) => {
                    // UNAVAILABLE, RATE_LIMITED, INTERNAL: retry the same id,
                    // even with `outcome_unknown`: an increment is safe to
                    // run again (its effect is the session's own state,
                    // saved with its sequence id and fenced by the epoch).
                    bump(&c.explicitly_failed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                None => {
                    // Closed, kicked, or the connection failed: resume.
                    if reconnect(opts, s, seq, c, deadline, false).await.is_err() {
                        hung(s, *seq, c);
                        return false;
                    }
                }
            },
        }
    }
}

fn hung(s: &mut Session, seq: u64, c: &Counters) {
    tracing::warn!("user {}: increment {seq} hung", s.user);
    bump(&c.hung);
    s.slack += 1;
}

/// Logs `user` in through `gateway` (or the other one), retrying until
/// `deadline`.
async fn login(
    opts: &ChaosOptions,
    user: u64,
    gateway: usize,
    deadline: Instant,
) -> Result<Session, String> {
    let token = token_for(opts.auth_secret.as_deref(), user);
    let mut last = String::new();
    let mut g = gateway;
    while Instant::now() < deadline {
        let addr = &opts.addrs[g];
        match Client::connect_with_timeout(addr, Duration::from_secs(2)).await {
            Ok(mut client) => match login_once(opts, &mut client, user, &token).await {
                Ok(l) => {
                    return Ok(Session {
                        client,
                        gateway: g,
                        user,
                        session_id: l.session_id,
                        resume_token: l.resume_token,
                        acked: 0,
                        slack: 0,
                        left_open: Vec::new(),
                    })
                }
                // No answer at all: hung, whatever the deadline left.
                Err(e @ ClientError::Timeout(_)) => return Err(e.to_string()),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        g = (g + 1) % opts.addrs.len();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("no login within the deadline: {last}"))
}

/// One login attempt, answered within the soak's deadline or timed out.
async fn login_once(
    opts: &ChaosOptions,
    client: &mut Client,
    user: u64,
    token: &str,
) -> Result<gamemesh_proto::client::LoginResponse, ClientError> {
    client.set_timeout(opts.deadline);
    client.login(user, token).await
}

/// Moves the session to a new connection: resume through the other
/// gateway first, then the same one; a session the cluster no longer has
/// is logged in again (its count starts over, and `seq` with it).
async fn reconnect(
    opts: &ChaosOptions,
    s: &mut Session,
    seq: &mut u64,
    c: &Counters,
    deadline: Instant,
    keep_old: bool,
) -> Result<(), ()> {
    let n = opts.addrs.len();
    let mut attempt = 0usize;
    while Instant::now() < deadline {
        let g = (s.gateway + 1 + attempt) % n;
        attempt += 1;
        let Ok(mut client) =
            Client::connect_with_timeout(&opts.addrs[g], Duration::from_secs(2)).await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        client.set_timeout(deadline.saturating_duration_since(Instant::now()));
        match client.resume(s.session_id, &s.resume_token).await {
            Ok(_) => {
                bump(&c.resumes);
                if g != s.gateway {
                    bump(&c.gateway_switches);
                }
                let old = std::mem::replace(&mut s.client, client);
                if keep_old {
                    s.left_open.push(old);
                }
                s.gateway = g;
                return Ok(());
            }
            Err(e) => match e.error_code() {
                Some(ErrorCode::SessionNotFound | ErrorCode::InvalidToken) => {
                    tracing::warn!(
                        "user {}: session {} lost; logging in again",
                        s.user,
                        s.session_id
                    );
                    bump(&c.sessions_lost);
                    let mut fresh = login(opts, s.user, g, deadline).await.map_err(|_| ())?;
                    fresh.left_open = std::mem::take(&mut s.left_open);
                    *s = fresh;
                    *seq = s.client.last_sequence() + 1;
                    return Ok(());
                }
                Some(_) => {
                    bump(&c.explicitly_failed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                None => tokio::time::sleep(Duration::from_millis(100)).await,
            },
        }
    }
    Err(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_fails_on_any_must_be_zero() {
        let ok = ChaosReport {
            sent: 10,
            answered: 10,
            explicitly_failed: 3,
            ..ChaosReport::default()
        };
        assert!(ok.passed());
        assert!(ok.table().contains("ok (must be 0)"));
        for bad in [
            ChaosReport {
                hung: 1,
                ..ok.clone()
            },
            ChaosReport {
                executed_twice: 1,
                ..ok.clone()
            },
            ChaosReport {
                lost: 1,
                ..ok.clone()
            },
            ChaosReport {
                doubled: 1,
                ..ok.clone()
            },
        ] {
            assert!(!bad.passed(), "{bad:?}");
            assert!(bad.table().contains("FAIL"));
        }
        assert!(ok.to_json_line().contains("\"executed_twice\":0"));
    }
}
