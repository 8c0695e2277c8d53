//! The arena as the client knows it, with no terminal and no socket: the
//! last `arena.state`, the tick sequence, the moves in flight and the
//! latencies measured on them. [`super::play`] feeds it packets and key
//! presses, [`super::ui`] draws it, [`super::bench`] reuses the tick and
//! latency pieces; all of it is plain data, so it is tested here without a
//! server.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::proto::{JoinResponse, MoveResponse, Player, State};

/// Side of the board: `x` and `y` are in `0..BOARD` (PROTOCOL.md, "The
/// sample game: arena").
pub const BOARD: i32 = 100;

/// How many recent tick-to-client samples the status line summarises:
/// about 3 seconds at 20 ticks a second, enough to show a stall without
/// remembering it forever.
const RECENT_SAMPLES: usize = 64;

/// The current wall clock in Unix microseconds, the unit of
/// `State.sent_unix_us`.
pub fn now_unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Tick-to-client latency of a state built at `sent_unix_us` and read at
/// `now_unix_us`, both on the same clock. `None` when the server does not
/// stamp its states (`sent_unix_us` 0: a server older than the field); a
/// state that seems to come from the future (clocks of two machines) counts
/// as 0 rather than as a huge unsigned number.
pub fn tick_latency_us(sent_unix_us: u64, now_unix_us: u64) -> Option<u64> {
    (sent_unix_us != 0).then(|| now_unix_us.saturating_sub(sent_unix_us))
}

/// What one tick number says about the sequence so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickEvent {
    /// The first state seen.
    First,
    /// Exactly one above the previous one, as the contract promises.
    Next,
    /// Above the previous one by more than 1: this many ticks were missed.
    Gap(u64),
    /// At or below the highest seen: a duplicate or out of order.
    Stale,
}

/// Checks that `tick` rises by exactly 1 from one state to the next, and
/// counts what does not.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickTracker {
    /// The highest tick seen (a stale tick does not lower it, so one late
    /// state counts once, not as a gap after it as well).
    pub last: Option<u64>,
    /// States seen.
    pub received: u64,
    /// Ticks skipped between states.
    pub missed: u64,
    /// States at or below the highest tick seen.
    pub out_of_order: u64,
}

impl TickTracker {
    /// Records one state's tick.
    pub fn observe(&mut self, tick: u64) -> TickEvent {
        self.received += 1;
        let event = match self.last {
            None => TickEvent::First,
            Some(last) if tick == last + 1 => TickEvent::Next,
            Some(last) if tick > last => TickEvent::Gap(tick - last - 1),
            Some(_) => TickEvent::Stale,
        };
        match event {
            TickEvent::Gap(n) => self.missed += n,
            TickEvent::Stale => self.out_of_order += 1,
            TickEvent::First | TickEvent::Next => {}
        }
        if event != TickEvent::Stale {
            self.last = Some(tick);
        }
        event
    }

    /// Forgets the previous tick but keeps the counts: after a resume the
    /// states missed while away are not the server's fault.
    pub fn restart(&mut self) {
        self.last = None;
    }
}

/// The last few samples of a latency, for a status line: the newest, the
/// median and the maximum of a short window.
#[derive(Debug, Clone, Default)]
pub struct Recent {
    /// Samples in µs, oldest first, at most [`RECENT_SAMPLES`].
    samples: VecDeque<u64>,
}

impl Recent {
    /// Adds a sample (µs), forgetting the oldest beyond the window.
    pub fn record(&mut self, us: u64) {
        if self.samples.len() == RECENT_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(us);
    }

    /// The newest sample.
    pub fn last(&self) -> Option<u64> {
        self.samples.back().copied()
    }

    /// The median of the window (the upper one of an even count).
    pub fn median(&self) -> Option<u64> {
        let mut sorted: Vec<u64> = self.samples.iter().copied().collect();
        sorted.sort_unstable();
        sorted.get(sorted.len() / 2).copied()
    }

    /// The largest sample of the window.
    pub fn max(&self) -> Option<u64> {
        self.samples.iter().copied().max()
    }
}

/// Moves sent and not yet answered, by sequence id, with when they left:
/// the round trip of each is measured when its reply comes.
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    /// Sequence id -> sent at.
    sent: HashMap<u64, Instant>,
}

impl InFlight {
    /// Notes a request sent at `at`.
    pub fn sent(&mut self, sequence_id: u64, at: Instant) {
        self.sent.insert(sequence_id, at);
    }

    /// The round trip of the request answered at `at`, if it was ours.
    pub fn answered(&mut self, sequence_id: u64, at: Instant) -> Option<Duration> {
        self.sent
            .remove(&sequence_id)
            .map(|sent| at.saturating_duration_since(sent))
    }

    /// Requests still waiting.
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// Forgets every request (a lost connection: their replies will not
    /// come on the next one).
    pub fn clear(&mut self) {
        self.sent.clear();
    }
}

/// One arrow key's worth of movement, as `MoveRequest` spells it. `y`
/// grows downwards, as rows do on a screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// dy = -1.
    Up,
    /// dy = +1.
    Down,
    /// dx = -1.
    Left,
    /// dx = +1.
    Right,
}

impl Direction {
    /// `(dx, dy)` of one step.
    pub fn step(self) -> (i32, i32) {
        match self {
            Direction::Up => (0, -1),
            Direction::Down => (0, 1),
            Direction::Left => (-1, 0),
            Direction::Right => (1, 0),
        }
    }
}

/// Where a step from `(x, y)` lands: clamped to the board, as the server
/// clamps it. Used to show a move at once, before its reply.
pub fn step((x, y): (i32, i32), (dx, dy): (i32, i32)) -> (i32, i32) {
    (
        x.saturating_add(dx).clamp(0, BOARD - 1),
        y.saturating_add(dy).clamp(0, BOARD - 1),
    )
}

/// A player as drawn: its glyph and whether it is this client's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// The player's user id.
    pub user_id: u64,
    /// Its position.
    pub pos: (i32, i32),
    /// `@` for this client, a letter for the others (stable for as long
    /// as the client runs).
    pub glyph: char,
    /// True for this client's own player.
    pub me: bool,
}

/// Labels handed to other players in order of first sight.
const LABELS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The arena as this client sees it.
#[derive(Debug, Clone)]
pub struct Game {
    /// This client's user id (its player is `@`).
    pub me: u64,
    /// The room joined.
    pub room: String,
    /// Ticks per second, from the join.
    pub tick_hz: u32,
    /// Own position: from the join, then whichever of a state and a move
    /// reply came last.
    pub pos: (i32, i32),
    /// Every player of the last state, in the order it listed them.
    pub players: Vec<Player>,
    /// The tick sequence.
    pub ticks: TickTracker,
    /// Tick-to-client latency of recent states (µs).
    pub tick_latency: Recent,
    /// Round trip of the last move answered.
    pub last_move_rtt: Option<Duration>,
    /// Moves waiting for their reply.
    pub moves: InFlight,
    /// Moves the server refused (their error is in `message`).
    pub moves_refused: u64,
    /// A line for the user: the last error, a reconnect, a notice.
    pub message: Option<String>,
    /// Glyphs of other players, by user id, handed out on first sight.
    labels: BTreeMap<u64, char>,
}

impl Game {
    /// The arena right after `arena.join` answered `join`.
    pub fn new(me: u64, join: &JoinResponse) -> Self {
        Self {
            me,
            room: join.room.clone(),
            tick_hz: join.tick_hz,
            pos: (join.x, join.y),
            players: vec![Player {
                user_id: me,
                x: join.x,
                y: join.y,
            }],
            ticks: TickTracker::default(),
            tick_latency: Recent::default(),
            last_move_rtt: None,
            moves: InFlight::default(),
            moves_refused: 0,
            message: None,
            labels: BTreeMap::new(),
        }
    }

    /// Applies one `arena.state` read at `now_unix_us`. A state of another
    /// room (left behind by an earlier join) or an out-of-order one changes
    /// nothing but the counts.
    pub fn apply_state(&mut self, state: State, now_unix_us: u64) -> TickEvent {
        if state.room != self.room {
            return TickEvent::Stale;
        }
        if let Some(us) = tick_latency_us(state.sent_unix_us, now_unix_us) {
            self.tick_latency.record(us);
        }
        let event = self.ticks.observe(state.tick);
        if event == TickEvent::Stale {
            return event;
        }
        if let Some(me) = state.players.iter().find(|p| p.user_id == self.me) {
            self.pos = (me.x, me.y);
        }
        for p in &state.players {
            self.label(p.user_id);
        }
        self.players = state.players;
        event
    }

    /// Notes a move sent as `sequence_id` at `at`.
    pub fn move_sent(&mut self, sequence_id: u64, at: Instant) {
        self.moves.sent(sequence_id, at);
    }

    /// Applies the reply to a move: its position, or its refusal. Returns
    /// false when `sequence_id` was not a move in flight.
    pub fn move_answered(
        &mut self,
        sequence_id: u64,
        reply: Result<MoveResponse, String>,
        at: Instant,
    ) -> bool {
        let Some(rtt) = self.moves.answered(sequence_id, at) else {
            return false;
        };
        self.last_move_rtt = Some(rtt);
        match reply {
            Ok(m) => {
                self.pos = (m.x, m.y);
                if let Some(me) = self.players.iter_mut().find(|p| p.user_id == self.me) {
                    (me.x, me.y) = (m.x, m.y);
                }
            }
            Err(why) => {
                self.moves_refused += 1;
                self.message = Some(format!("move refused: {why}"));
            }
        }
        true
    }

    /// After a resume: replies to moves sent before it will not come, and
    /// the tick sequence starts over from the next state.
    pub fn resumed(&mut self) {
        self.moves.clear();
        self.ticks.restart();
    }

    /// The glyph of `user_id`: `@` for this client, else a letter handed
    /// out on first sight (`?` once the letters run out, which 16 players
    /// a room cannot reach in a normal session).
    pub fn label(&mut self, user_id: u64) -> char {
        if user_id == self.me {
            return '@';
        }
        let next = self.labels.len();
        *self
            .labels
            .entry(user_id)
            .or_insert_with(|| LABELS.get(next).map_or('?', |&b| char::from(b)))
    }

    /// The players to draw: this client first, then the others by glyph.
    pub fn shown(&self) -> Vec<Shown> {
        let mut shown: Vec<Shown> = self
            .players
            .iter()
            .map(|p| {
                let me = p.user_id == self.me;
                Shown {
                    user_id: p.user_id,
                    pos: if me { self.pos } else { (p.x, p.y) },
                    glyph: if me {
                        '@'
                    } else {
                        self.labels.get(&p.user_id).copied().unwrap_or('?')
                    },
                    me,
                }
            })
            .collect();
        shown.sort_by_key(|s| (!s.me, s.glyph));
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(room: &str) -> JoinResponse {
        JoinResponse {
            room: room.into(),
            tick_hz: 20,
            x: 0,
            y: 0,
        }
    }

    fn state(tick: u64, players: &[(u64, i32, i32)]) -> State {
        State {
            room: "r".into(),
            tick,
            players: players
                .iter()
                .map(|&(user_id, x, y)| Player { user_id, x, y })
                .collect(),
            sent_unix_us: 1_000_000 + tick,
        }
    }

    #[test]
    fn ticks_rising_by_one_are_clean() {
        let mut t = TickTracker::default();
        assert_eq!(t.observe(7), TickEvent::First);
        for tick in 8..20 {
            assert_eq!(t.observe(tick), TickEvent::Next);
        }
        assert_eq!((t.received, t.missed, t.out_of_order), (13, 0, 0));
        assert_eq!(t.last, Some(19));
    }

    #[test]
    fn gaps_count_the_ticks_skipped_and_late_states_count_once() {
        let mut t = TickTracker::default();
        t.observe(1);
        assert_eq!(t.observe(4), TickEvent::Gap(2));
        // 3 arrives late: out of order, and 5 after it is still "next".
        assert_eq!(t.observe(3), TickEvent::Stale);
        assert_eq!(t.observe(5), TickEvent::Next);
        assert_eq!(t.observe(5), TickEvent::Stale, "a duplicate");
        assert_eq!(t.observe(10), TickEvent::Gap(4));
        assert_eq!((t.received, t.missed, t.out_of_order), (6, 6, 2));
        t.restart();
        assert_eq!(t.observe(100), TickEvent::First, "no gap across a resume");
        assert_eq!(t.missed, 6);
    }

    #[test]
    fn latency_from_the_stamp_on_one_clock() {
        assert_eq!(tick_latency_us(1_000, 1_250), Some(250));
        assert_eq!(tick_latency_us(2_000, 1_000), Some(0), "clock skew");
        assert_eq!(tick_latency_us(0, 1_000), None, "an unstamped state");
        let now = now_unix_us();
        assert!(now > 1_600_000_000_000_000, "{now} is not Unix µs");
    }

    #[test]
    fn recent_keeps_a_window() {
        let mut r = Recent::default();
        assert_eq!((r.last(), r.median(), r.max()), (None, None, None));
        for us in [5, 1, 9] {
            r.record(us);
        }
        assert_eq!((r.last(), r.median(), r.max()), (Some(9), Some(5), Some(9)));
        for _ in 0..RECENT_SAMPLES {
            r.record(2);
        }
        assert_eq!((r.median(), r.max()), (Some(2), Some(2)), "9 fell out");
    }

    #[test]
    fn steps_are_clamped_like_the_server_clamps_them() {
        assert_eq!(step((0, 0), Direction::Up.step()), (0, 0));
        assert_eq!(step((0, 0), Direction::Right.step()), (1, 0));
        assert_eq!(step((99, 5), Direction::Right.step()), (99, 5));
        assert_eq!(step((4, 99), Direction::Down.step()), (4, 99));
        assert_eq!(step((4, 9), Direction::Left.step()), (3, 9));
    }

    #[test]
    fn a_state_places_every_player_and_measures_its_latency() {
        let mut g = Game::new(1, &join("r"));
        assert_eq!(g.pos, (0, 0));
        let event = g.apply_state(state(10, &[(1, 3, 4), (2, 7, 7)]), 1_000_010 + 800);
        assert_eq!(event, TickEvent::First);
        assert_eq!(g.pos, (3, 4));
        assert_eq!(g.tick_latency.last(), Some(800));
        let shown = g.shown();
        assert_eq!(shown.len(), 2);
        assert_eq!(
            (shown[0].glyph, shown[0].me, shown[0].pos),
            ('@', true, (3, 4))
        );
        assert_eq!(
            (shown[1].glyph, shown[1].user_id, shown[1].pos),
            ('A', 2, (7, 7))
        );
    }

    #[test]
    fn labels_stay_with_their_player() {
        let mut g = Game::new(1, &join("r"));
        g.apply_state(state(1, &[(1, 0, 0), (5, 1, 1), (3, 2, 2)]), 0);
        g.apply_state(state(2, &[(1, 0, 0), (3, 2, 2)]), 0);
        g.apply_state(state(3, &[(9, 0, 0), (1, 0, 0), (3, 2, 2), (5, 1, 1)]), 0);
        let glyphs: Vec<(u64, char)> = g.shown().iter().map(|s| (s.user_id, s.glyph)).collect();
        assert_eq!(glyphs, [(1, '@'), (5, 'A'), (3, 'B'), (9, 'C')]);
    }

    #[test]
    fn stale_and_foreign_states_change_nothing_but_the_counts() {
        let mut g = Game::new(1, &join("r"));
        g.apply_state(state(5, &[(1, 5, 5)]), 0);
        assert_eq!(g.apply_state(state(4, &[(1, 0, 0)]), 0), TickEvent::Stale);
        assert_eq!(g.pos, (5, 5));
        let mut other = state(6, &[(1, 9, 9)]);
        other.room = "elsewhere".into();
        assert_eq!(g.apply_state(other, 0), TickEvent::Stale);
        assert_eq!(g.pos, (5, 5));
        assert_eq!(g.ticks.out_of_order, 1);
        assert_eq!(g.apply_state(state(6, &[(1, 6, 5)]), 0), TickEvent::Next);
    }

    #[test]
    fn a_move_reply_moves_the_player_and_times_the_round_trip() {
        let mut g = Game::new(1, &join("r"));
        let t0 = Instant::now();
        g.move_sent(2, t0);
        g.move_sent(3, t0);
        let later = t0 + Duration::from_millis(4);
        assert!(g.move_answered(2, Ok(MoveResponse { x: 1, y: 0 }), later));
        assert_eq!(g.pos, (1, 0));
        assert_eq!(g.shown()[0].pos, (1, 0));
        assert_eq!(g.last_move_rtt, Some(Duration::from_millis(4)));
        assert!(
            !g.move_answered(2, Ok(MoveResponse { x: 9, y: 9 }), later),
            "twice"
        );
        assert!(
            !g.move_answered(77, Ok(MoveResponse { x: 9, y: 9 }), later),
            "not a move"
        );
        assert_eq!(g.pos, (1, 0));
        let refused = Err("REFUSED (dx and dy must each be -1, 0 or 1)".to_owned());
        assert!(g.move_answered(3, refused, later + Duration::from_millis(1)));
        assert_eq!(g.moves_refused, 1);
        assert!(g.message.as_deref().unwrap().starts_with("move refused"));
        assert!(g.moves.is_empty());
    }

    #[test]
    fn a_resume_forgets_moves_in_flight_and_the_tick_baseline() {
        let mut g = Game::new(1, &join("r"));
        g.apply_state(state(5, &[(1, 0, 0)]), 0);
        g.move_sent(9, Instant::now());
        g.resumed();
        assert_eq!(g.moves.len(), 0);
        assert_eq!(g.apply_state(state(50, &[(1, 0, 0)]), 0), TickEvent::First);
        assert_eq!(g.ticks.missed, 0);
    }
}
