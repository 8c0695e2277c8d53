//! `test-client bench --mode arena`: N players of the arena sample in rooms
//! of K, each moving once per tick, on the load generator's current-thread
//! runtime (see [`crate::load`]).
//!
//! A run has two phases:
//!
//! 1. **Set-up, untimed.** Every bot connects (a semaphore bounds how many
//!    are connecting at once), logs in a distinct user and joins its room,
//!    `a<run>-<n>`, bots `n*K .. n*K+K-1` together. From then on it reads
//!    every state the room pushes, so nothing backs up while the others
//!    join.
//! 2. **The window.** When every bot has joined (or failed to), the clock
//!    starts. Each bot sends one `arena.move` per tick, at the rate its
//!    `JoinResponse.tick_hz` gives (the first at a random point of the
//!    first tick, so a room's bots do not all send at once), and reads
//!    states. Counted inside the window: states received, their
//!    tick-to-client latency (now minus `State.sent_unix_us`: the server
//!    and the bots share this machine's clock), ticks missed (a tick more
//!    than 1 above the last) or out of order (at or below it), and move
//!    round trips. After the window each bot waits for its moves still in
//!    flight, then hangs up.
//!
//! The report is the usual JSON line (`msgs` = states, `p50_us`.. =
//! tick-to-client) plus [`ArenaReport`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use gamemesh_proto::client::ServerPacket;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::game::{now_unix_us, tick_latency_us, TickTracker};
use super::proto::{JoinRequest, JoinResponse, MoveRequest, State};
use super::wire::{self, Incoming};
use crate::client::kick_reason_name;
use crate::load::{micros, Conn, Failure, Run, Tally, HISTOGRAM_MAX_US, SETUP_CONCURRENCY};

/// Players an arena room holds (PROTOCOL.md): the largest `--room-size`.
pub const MAX_ROOM_SIZE: usize = 16;

/// What arena mode adds to the JSON line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArenaReport {
    /// Bots that joined their room (the others count as errors).
    pub players: usize,
    /// `--room-size`.
    pub room_size: usize,
    /// Rooms the players were spread over.
    pub rooms: usize,
    /// Ticks per second, as the first `JoinResponse` gave it.
    pub tick_hz: u32,
    /// `arena.state` pushes received in the window, per second.
    pub pushes_per_s: f64,
    /// Tick-to-client latency, 50th percentile, µs (the same as `p50_us`).
    pub tick_p50_us: u64,
    /// 99th percentile.
    pub tick_p99_us: u64,
    /// Largest.
    pub tick_max_us: u64,
    /// Ticks skipped between consecutive states of one bot, summed.
    pub ticks_missed: u64,
    /// States at or below a tick the bot had already seen.
    pub ticks_out_of_order: u64,
    /// States that carried no `sent_unix_us` (a server without the field;
    /// their latency is not counted).
    pub states_unstamped: u64,
    /// Moves answered (either way).
    pub moves: u64,
    /// Moves the bots sent in the window, per second. Every player moving
    /// every tick is players x `tick_hz`; less means the bots fell behind.
    #[serde(default)]
    pub moves_per_s: f64,
    /// Ticks at which a bot sent no move because it woke too late (its
    /// ticker skips what it missed, as a real client's frame loop would):
    /// the machine could not carry the load the run asked for.
    #[serde(default)]
    pub moves_skipped: u64,
    /// Move round trip, 50th percentile, µs.
    pub move_p50_us: u64,
    /// 99th percentile.
    pub move_p99_us: u64,
}

/// What one bot counted.
#[derive(Debug, Default, Clone, Copy)]
struct BotTally {
    /// States in the window (`msgs`) and errors.
    tally: Tally,
    /// Whether it joined.
    joined: bool,
    /// Its tick sequence within the window.
    ticks: TickTracker,
    /// States without a stamp.
    unstamped: u64,
    /// Moves answered.
    moves: u64,
    /// Moves sent in the window.
    moves_sent: u64,
    /// Ticks of the window at which it sent no move (it woke too late).
    moves_skipped: u64,
}

/// The window, once every bot is ready.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

/// What the bots of one run share besides [`Run`].
struct Arena {
    /// Room names start with this (`a<run>-`), so runs never share rooms.
    prefix: String,
    /// Move round trips, µs.
    moves: Mutex<Histogram<u64>>,
    /// The tick rate the first join reported.
    tick_hz: Mutex<Option<u32>>,
}

impl Arena {
    fn room(&self, bot: usize, room_size: usize) -> String {
        format!("{}{}", self.prefix, bot / room_size)
    }
}

/// Runs arena mode on `run`'s options; returns every bot's tally and the
/// arena numbers (the tick-to-client latencies are in `run`'s histogram).
pub(crate) async fn run(run: &Arc<Run>) -> anyhow::Result<(Vec<Tally>, ArenaReport)> {
    let n = run.opts.conns;
    let k = run.opts.room_size;
    let arena = Arc::new(Arena {
        prefix: format!("a{:06x}-", rand::random::<u32>() & 0xff_ffff),
        moves: Mutex::new(Histogram::new_with_max(HISTOGRAM_MAX_US, 3).expect("valid bounds")),
        tick_hz: Mutex::new(None),
    });
    eprintln!(
        "bench: {n} arena players in rooms of {k} ({}0 ..), joining",
        arena.prefix
    );
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Result<(), Failure>>();
    let (window_tx, window_rx) = watch::channel(None::<Window>);
    let mut bots = JoinSet::new();
    for i in 0..n {
        bots.spawn(bot(
            run.clone(),
            arena.clone(),
            i,
            permits.clone(),
            ready_tx.clone(),
            window_rx.clone(),
        ));
    }
    drop(ready_tx);
    let (joined, first_error) = wait_ready(run, &mut ready_rx, n).await?;
    if joined == 0 {
        bail!(
            "bench: no arena player could join: {}",
            first_error.map_or("no reason".into(), |e| e.to_string())
        );
    }
    let start = Instant::now();
    let window = Window {
        start,
        end: start + run.opts.duration,
    };
    eprintln!(
        "bench: {joined} of {n} players joined in {:.2} s; measuring for {:?}",
        started.elapsed().as_secs_f64(),
        run.opts.duration
    );
    // Receivers only go away with their bot; a closed channel is fine.
    let _ = window_tx.send(Some(window));
    let mut tallies = Vec::with_capacity(n);
    while let Some(done) = bots.join_next().await {
        tallies.push(done.context("an arena bot panicked")?);
    }
    let report = arena_report(run, &arena, &tallies);
    Ok((tallies.iter().map(|t| t.tally).collect(), report))
}

/// Waits until every bot has joined or failed; returns how many joined and
/// the first failure. A limit (open files, ports) stops the run.
async fn wait_ready(
    run: &Run,
    ready: &mut mpsc::UnboundedReceiver<Result<(), Failure>>,
    n: usize,
) -> anyhow::Result<(usize, Option<Failure>)> {
    let mut joined = 0;
    let mut first_error = None;
    for _ in 0..n {
        match ready.recv().await {
            Some(Ok(())) => joined += 1,
            Some(Err(Failure::Limit(reason))) => {
                run.fail(format!("bench: {reason}"));
                bail!("bench: {reason}");
            }
            Some(Err(e)) => {
                first_error.get_or_insert(e);
            }
            None => break,
        }
    }
    Ok((joined, first_error))
}

fn arena_report(run: &Run, arena: &Arena, tallies: &[BotTally]) -> ArenaReport {
    let secs = run.opts.duration.as_secs_f64();
    let players = tallies.iter().filter(|t| t.joined).count();
    let sum = |f: fn(&BotTally) -> u64| tallies.iter().map(f).sum::<u64>();
    let pushes = sum(|t| t.tally.msgs);
    let (tick_p50_us, tick_p99_us, tick_max_us) = run.quantiles();
    let moves = arena.moves.lock().unwrap_or_else(|e| e.into_inner());
    let at = |q| {
        if moves.is_empty() {
            0
        } else {
            moves.value_at_quantile(q)
        }
    };
    ArenaReport {
        players,
        room_size: run.opts.room_size,
        rooms: players.div_ceil(run.opts.room_size),
        tick_hz: arena
            .tick_hz
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or(0),
        pushes_per_s: (pushes as f64 / secs * 10.0).round() / 10.0,
        tick_p50_us,
        tick_p99_us,
        tick_max_us,
        ticks_missed: sum(|t| t.ticks.missed),
        ticks_out_of_order: sum(|t| t.ticks.out_of_order),
        states_unstamped: sum(|t| t.unstamped),
        moves: sum(|t| t.moves),
        moves_per_s: (sum(|t| t.moves_sent) as f64 / secs * 10.0).round() / 10.0,
        moves_skipped: sum(|t| t.moves_skipped),
        move_p50_us: at(0.5),
        move_p99_us: at(0.99),
    }
}

/// One bot: set-up, then the window, then the moves still in flight.
async fn bot(
    run: Arc<Run>,
    arena: Arc<Arena>,
    i: usize,
    permits: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<Result<(), Failure>>,
    window: watch::Receiver<Option<Window>>,
) -> BotTally {
    let mut out = BotTally::default();
    let set_up = async {
        let _permit = permits.acquire().await.map_err(|_| Failure::Closed)?;
        join(&run, &arena, i).await
    };
    let (conn, join) = match set_up.await {
        Ok(joined) => joined,
        Err(e) => {
            out.tally.errors += 1;
            if !matches!(e, Failure::Limit(_)) {
                run.note_error(format_args!("arena set-up: {e}"));
            }
            let _ = ready.send(Err(e));
            return out;
        }
    };
    out.joined = true;
    let _ = ready.send(Ok(()));
    // Every bot lets go of its sender once it has reported, so the channel
    // closes (and the wait ends) even if a bot dies without reporting.
    drop(ready);
    let mut player = Player::new(&run, &arena, conn, join.room);
    if let Err(e) = player.play(join.tick_hz, window, &mut out).await {
        out.tally.errors += 1;
        run.note_error(e);
    }
    out.tally.errors += player.refused;
    out
}

/// Connects, logs in a new user and joins bot `i`'s room.
async fn join(run: &Run, arena: &Arena, i: usize) -> Result<(Conn, JoinResponse), Failure> {
    let mut conn = run.connect().await?;
    conn.login(run, run.next_user()).await?;
    let room = arena.room(i, run.opts.room_size);
    let seq = conn.queue(wire::request(wire::JOIN, &JoinRequest { room }));
    conn.flush().await?;
    let deadline = Instant::now() + run.opts.timeout;
    loop {
        let packet = conn.read_packet(deadline).await?;
        match wire::classify(packet) {
            // A state of the room can overtake the join's reply.
            Incoming::State(_) => continue,
            Incoming::Reply {
                sequence_id,
                payload,
            } if sequence_id == seq => {
                let join: JoinResponse =
                    wire::decode_reply("join", payload).map_err(|got| Failure::Unexpected {
                        expected: "a JoinResponse",
                        got,
                    })?;
                arena
                    .tick_hz
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(join.tick_hz);
                return Ok((conn, join));
            }
            other => return Err(unexpected("the reply to arena.join", other)),
        }
    }
}

/// The failure for a packet that should not have come.
fn unexpected(expected: &'static str, got: Incoming) -> Failure {
    let got = match got {
        Incoming::Kicked(k) => format!("kicked ({})", kick_reason_name(k.reason)),
        Incoming::Other { what, .. } => what,
        other => format!("{other:?}"),
    };
    Failure::Unexpected { expected, got }
}

/// The ticks of a ticker that starts at `first` with `period` that fall
/// before `end`: the moves a bot owes the window. With
/// [`MissedTickBehavior::Skip`] a late bot keeps to that schedule and
/// moves at fewer of them; the difference is its skipped moves.
fn ticks_due(first: Instant, period: Duration, end: Instant) -> u64 {
    if end <= first {
        return 0;
    }
    let span = (end - first).as_nanos();
    let period = period.as_nanos().max(1);
    span.div_ceil(period) as u64
}

/// A bot that has joined: its connection and what it waits for.
struct Player<'a> {
    run: &'a Run,
    arena: &'a Arena,
    conn: Conn,
    /// Its room (states of any other are errors).
    room: String,
    /// Moves in flight: sequence id -> sent at.
    moves: HashMap<u64, Instant>,
    /// Moves the server refused.
    refused: u64,
}

impl<'a> Player<'a> {
    fn new(run: &'a Run, arena: &'a Arena, conn: Conn, room: String) -> Self {
        Self {
            run,
            arena,
            conn,
            room,
            moves: HashMap::new(),
            refused: 0,
        }
    }

    /// Reads states until the window opens, moves once per tick inside
    /// it, then waits for the moves in flight.
    async fn play(
        &mut self,
        tick_hz: u32,
        mut window: watch::Receiver<Option<Window>>,
        out: &mut BotTally,
    ) -> Result<(), Failure> {
        let timeout = self.run.opts.timeout;
        // Before the window: read (and count nothing) until it is known.
        let w = loop {
            if let Some(w) = *window.borrow_and_update() {
                break w;
            }
            tokio::select! {
                changed = window.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
                packet = self.conn.read_packet(Instant::now() + timeout * 4) => {
                    self.received(packet?, None, out)?;
                }
            }
        };
        // The window starts the tick count afresh (keeping the last tick,
        // so the first state inside it is checked against the one before).
        out.ticks = TickTracker {
            last: out.ticks.last,
            ..TickTracker::default()
        };
        let period = Duration::from_secs(1) / tick_hz.max(1);
        let first = w.start + period.mul_f64(rand::random::<f64>());
        let mut ticker = tokio::time::interval_at(first, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                biased;
                packet = self.conn.read_packet(w.end + timeout) => {
                    self.received(packet?, Some(w), out)?;
                }
                now = ticker.tick() => {
                    if now >= w.end {
                        break;
                    }
                    self.expire_moves(now)?;
                    self.send_move().await?;
                    out.moves_sent += 1;
                }
            }
        }
        out.moves_skipped = ticks_due(first, period, w.end).saturating_sub(out.moves_sent);
        // Drain: the moves in flight get their round trip recorded.
        let deadline = Instant::now() + timeout;
        while !self.moves.is_empty() {
            let packet = self.conn.read_packet(deadline).await?;
            self.received(packet, None, out)?;
        }
        Ok(())
    }

    /// One random step (never 0, 0: every tick is a real move).
    async fn send_move(&mut self) -> Result<(), Failure> {
        let (dx, dy) = loop {
            let step = (rand::random_range(-1..=1), rand::random_range(-1..=1));
            if step != (0, 0) {
                break step;
            }
        };
        let seq = self
            .conn
            .queue(wire::request(wire::MOVE, &MoveRequest { dx, dy }));
        self.moves.insert(seq, Instant::now());
        self.conn.flush().await
    }

    /// A move unanswered for `--timeout-ms` fails the bot: the server is
    /// not keeping up, and counting on would hide it.
    fn expire_moves(&mut self, now: Instant) -> Result<(), Failure> {
        let timeout = self.run.opts.timeout;
        if self.moves.values().any(|&sent| now >= sent + timeout) {
            return Err(Failure::Timeout);
        }
        Ok(())
    }

    /// Applies one packet; `window` is set while states count.
    fn received(
        &mut self,
        packet: ServerPacket,
        window: Option<Window>,
        out: &mut BotTally,
    ) -> Result<(), Failure> {
        let now = Instant::now();
        match wire::classify(packet) {
            Incoming::State(state) => self.state(state, window, now, out),
            Incoming::Reply {
                sequence_id,
                payload,
            } => {
                let Some(sent) = self.moves.remove(&sequence_id) else {
                    return Err(Failure::Unexpected {
                        expected: "a reply to a move",
                        got: format!("a reply to request {sequence_id}"),
                    });
                };
                if let Err(why) = payload {
                    self.refused += 1;
                    self.run.note_error(format_args!("move refused: {why}"));
                }
                out.moves += 1;
                let rtt = micros(now - sent);
                let mut h = self.arena.moves.lock().unwrap_or_else(|e| e.into_inner());
                h.saturating_record(rtt);
                Ok(())
            }
            // A notice or a push of something else: not ours to judge.
            Incoming::Other { sequence_id: 0, .. } => Ok(()),
            other => Err(unexpected("a state or a move reply", other)),
        }
    }

    fn state(
        &mut self,
        state: State,
        window: Option<Window>,
        now: Instant,
        out: &mut BotTally,
    ) -> Result<(), Failure> {
        if state.room != self.room {
            return Err(Failure::Unexpected {
                expected: "a state of the bot's own room",
                got: format!("a state of room {}", state.room),
            });
        }
        let in_window = window.is_some_and(|w| now >= w.start && now <= w.end);
        if !in_window {
            // Outside the window only the tick baseline moves.
            out.ticks.last = Some(out.ticks.last.map_or(state.tick, |t| t.max(state.tick)));
            return Ok(());
        }
        out.ticks.observe(state.tick);
        out.tally.msgs += 1;
        match tick_latency_us(state.sent_unix_us, now_unix_us()) {
            Some(us) => self.run.record(&[us]),
            None => out.unstamped += 1,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_owes_a_move_at_every_tick_before_its_end() {
        let period = Duration::from_millis(50);
        let first = Instant::now();
        assert_eq!(ticks_due(first, period, first), 0);
        assert_eq!(
            ticks_due(first, period, first + Duration::from_millis(1)),
            1
        );
        // Ticks at 0, 50, 100 and 150 ms; the one at 200 ms is the end.
        assert_eq!(ticks_due(first, period, first + period * 4), 4);
        assert_eq!(
            ticks_due(first, period, first + Duration::from_millis(201)),
            5
        );
        assert_eq!(ticks_due(first + period, period, first), 0);
    }
}
