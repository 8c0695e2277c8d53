//! The room runtime: one actor per running room, on the game server the
//! placement names for it.
//!
//! Its life:
//!
//! 1. **Start** (`started`): take the room's lease in the store under a
//!    fresh random token (if another actor holds it, stop: requests are
//!    answered "retry" and the caller asks again), then restore the room
//!    from its checkpoint if it has one. A restored room continues at
//!    `tick + checkpoint_ticks` and saves that at once, so no tick number
//!    is ever sent twice, however many times it is restored.
//! 2. **Run**: one message at a time from the mailbox: members' requests
//!    (join, leave, a request to the room, relocate, broadcast), ticks,
//!    the checkpoint timer, the member sweep. A tick is posted by a timer
//!    task that never queues a second tick behind a pending one and keeps
//!    the schedule (`start + n * period`), so ticks neither drift nor
//!    burst.
//! 3. **Save**: a checkpoint (members, tick, the room's snapshot) every
//!    `checkpoint_ticks` ticks or `checkpoint_every`, and before a join or
//!    leave is acknowledged. A save renews the lease; a save refused
//!    because the lease is gone stops the room at once (another game
//!    server holds it). The room never runs more than `checkpoint_ticks`
//!    ticks past its last saved checkpoint: while saves fail, ticks wait.
//! 4. **End**: emptied (closed in the store), handed off (placement moved:
//!    saved, lease released), lost (lease gone: touches nothing), or a
//!    callback panicked (lease released, nothing saved: it restarts from
//!    the last checkpoint, since its state may be half-updated).

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gamemesh_actors::{Actor, Context, PostError, Reply};
use prost::Message;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::cx::{Effects, RoomCx, To};
use super::host::KindRuntime;
use super::members::Members;
use super::store::Lease;
use super::wire::{Checkpoint, RoomOp, RoomReply, RoomRequest, RoomStatus, WireLeave};
use super::{KindConfig, LeaveReason, Member, Room, RoomInit, RoomKey};
use crate::api::error::GameError;
use crate::api::game::Game;
use crate::api::push::{Push, Recipient};

/// What a room actor is asked to do.
pub(crate) enum RoomMsg {
    /// A member's request, and where its answer goes.
    Request(RoomRequest, Reply<RoomReply>),
    /// Run one tick.
    Tick,
    /// Save if a checkpoint is due by time (rooms that tick rarely or
    /// never still renew their lease).
    Maintain,
    /// Check where the members' sessions are; drop the ended ones.
    Sweep,
    /// The placement moved: save, let go, stop.
    HandOff,
}

/// What `stopped` does with the room's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Give it up, so the next holder need not wait for it to run out.
    Release,
    /// Leave the store alone: never held, lost to another holder, or
    /// already closed.
    Keep,
}

/// A running room's state.
struct Live<R> {
    /// The game's own state.
    room: R,
    /// Who is in it, and where.
    members: Members,
    /// The last tick run.
    tick: u64,
    /// The tick of the last checkpoint saved.
    saved_tick: u64,
    /// When it was saved.
    saved_at: Instant,
    /// Until when the lease surely holds: the moment the last successful
    /// save (or the acquisition) was sent, plus the lease's time to live.
    /// Past it (a frozen process, a Redis outage) another game server may
    /// hold the room, so nothing ticks until a save renews it.
    lease_until: Instant,
    /// The room is in the store's index (it was saved before).
    indexed: bool,
    /// Members changed since the last save: a join or leave is not
    /// acknowledged before they are saved.
    members_unsaved: bool,
}

/// One room, as an actor.
pub(crate) struct RoomActor<R: Room> {
    /// The kind's settings and table of running rooms.
    kind: Arc<KindRuntime<R>>,
    /// Pusher, stores, settings.
    game: Game,
    /// Which room.
    key: RoomKey,
    /// This activation's lease token (random, so a restarted game server
    /// with the same node id never mistakes an old lease for its own).
    token: String,
    /// `None` until the first join creates the room or a checkpoint
    /// restored it.
    live: Option<Live<R>>,
    /// Until when the lease taken at start holds (copied into `Live`).
    lease_until: Instant,
    /// A tick is posted and not handled yet.
    tick_pending: Arc<AtomicBool>,
    /// Stops the tick task.
    timers: CancellationToken,
    /// What `stopped` does with the lease.
    end: End,
    /// A callback panicked: the state is not to be saved.
    poisoned: bool,
    /// Consecutive failed saves (logged once per streak).
    failed_saves: u32,
    /// What the last `leave` callback answered (for the leave's reply).
    leave_answer: Option<Bytes>,
}

fn init<'a>(config: &'a KindConfig, key: &'a RoomKey) -> RoomInit<'a> {
    RoomInit {
        kind: &config.name,
        name: &key.name,
        tick_hz: config.tick_hz,
        max_members: config.max_members,
    }
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(not a string)".into())
}

/// Runs one callback on the room with a fresh [`RoomCx`]; a panic comes
/// back as its message. Also returns what the callback asked for (pushes,
/// removals, a save), for [`RoomActor::apply`].
fn run<R: Room, T>(
    game: &Game,
    init: RoomInit<'_>,
    live: &mut Live<R>,
    f: impl FnOnce(&mut R, &mut RoomCx<'_>) -> T,
) -> (Result<T, String>, Effects) {
    let mut cx = RoomCx {
        init,
        tick: live.tick,
        members: &live.members,
        game,
        effects: Effects::default(),
    };
    let room = &mut live.room;
    let out = catch_unwind(AssertUnwindSafe(|| f(room, &mut cx))).map_err(panic_message);
    (out, cx.effects)
}

fn error_reply(e: GameError) -> RoomReply {
    match e {
        GameError::Refused(d) => RoomReply::failed(RoomStatus::Refused, d),
        GameError::Unavailable(d) => RoomReply::failed(RoomStatus::Unavailable, d),
        GameError::NothingHappened(d) => RoomReply::retry(d),
        GameError::Code { code, detail } => RoomReply {
            code: code as i32,
            ..RoomReply::failed(RoomStatus::Code, detail)
        },
        other => RoomReply::failed(RoomStatus::Internal, other.detail()),
    }
}

fn leave_reason(wire: i32) -> LeaveReason {
    match WireLeave::try_from(wire) {
        Ok(WireLeave::Moved) => LeaveReason::Moved,
        Ok(WireLeave::SessionEnded) => LeaveReason::SessionEnded,
        _ => LeaveReason::Left,
    }
}

impl<R: Room> RoomActor<R> {
    pub(crate) fn new(kind: Arc<KindRuntime<R>>, game: Game, key: RoomKey) -> Self {
        Self {
            kind,
            game,
            key,
            token: uuid::Uuid::new_v4().simple().to_string(),
            live: None,
            lease_until: Instant::now(),
            tick_pending: Arc::new(AtomicBool::new(false)),
            timers: CancellationToken::new(),
            end: End::Keep,
            poisoned: false,
            failed_saves: 0,
            leave_answer: None,
        }
    }

    /// This activation's lease on the room, as the store takes it.
    fn lease(&self) -> Lease<'_> {
        Lease::new(&self.key, &self.token, self.game.settings().lease_ttl)
    }

    fn config(&self) -> &KindConfig {
        &self.kind.config
    }

    /// Takes the lease and restores the room if it was saved. `Ok(false)`:
    /// another actor holds the lease.
    async fn activate(&mut self) -> Result<bool, GameError> {
        let store = self.game.room_store();
        let ttl = self.game.settings().lease_ttl;
        let asked = Instant::now();
        if !store.acquire(self.lease()).await? {
            return Ok(false);
        }
        self.end = End::Release;
        self.lease_until = asked + ttl;
        let Some(bytes) = store.load(&self.key).await? else {
            return Ok(true);
        };
        let cp = Checkpoint::decode(bytes).map_err(|e| {
            GameError::internal(format!("checkpoint of {} unreadable: {e}", self.key))
        })?;
        let snapshot = R::Snapshot::decode(cp.state.clone()).map_err(|e| {
            GameError::internal(format!("snapshot of {} unreadable: {e}", self.key))
        })?;
        let room = R::restore(&init(&self.kind.config, &self.key), snapshot)?;
        // Continue above every tick the previous holder can have sent;
        // `saved_tick` stays at the checkpoint's, so nothing ticks before
        // that new base is saved.
        let bound = u64::from(cp.tick_bound.max(self.config().checkpoint_ticks));
        self.live = Some(Live {
            room,
            members: Members::from_wire(&cp.members),
            tick: cp.tick + bound,
            saved_tick: cp.tick,
            saved_at: Instant::now(),
            lease_until: self.lease_until,
            indexed: true,
            members_unsaved: false,
        });
        info!(
            room = %self.key,
            members = cp.members.len(),
            tick = cp.tick + bound,
            "Room restored from its checkpoint"
        );
        Ok(true)
    }

    /// Starts the tick task and the actor's own timers; called once the
    /// room is live.
    fn start_timers(&self, ctx: &Context<Self>) {
        let settings = self.game.settings();
        let maintain = (self.config().checkpoint_every / 2)
            .min(settings.lease_ttl / 6)
            .max(Duration::from_millis(5));
        ctx.run_interval(maintain, || RoomMsg::Maintain);
        ctx.run_interval(settings.members_every, || RoomMsg::Sweep);
        let Some(period) = self.config().tick_period() else {
            return;
        };
        let addr = ctx.addr().clone();
        let pending = self.tick_pending.clone();
        let cancel = self.timers.clone();
        self.game.tracker().spawn(async move {
            // Tick n is due at start + n * period: a late tick does not
            // push the later ones back (no drift), and ticks missed while
            // the room was busy are skipped, not run in a burst.
            let mut every = tokio::time::interval_at(Instant::now() + period, period);
            every.set_missed_tick_behavior(MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = every.tick() => {}
                }
                if pending.swap(true, Ordering::AcqRel) {
                    metrics::counter!("gamemesh_room_ticks_skipped_total").increment(1);
                    continue;
                }
                match addr.try_post(RoomMsg::Tick) {
                    Ok(()) => {}
                    Err(PostError::Full(_)) => pending.store(false, Ordering::Release),
                    Err(PostError::Stopped(_)) => return,
                }
            }
        });
    }

    /// The room breaks (a callback panicked): stop without saving, and let
    /// the lease go so it restarts from its last checkpoint.
    fn crash(&mut self, ctx: &Context<Self>, what: &str, why: &str) {
        error!(room = %self.key, "Room callback {what} panicked: {why}; the room restarts from its last checkpoint");
        metrics::counter!("gamemesh_room_panics_total", "kind" => self.config().name.clone())
            .increment(1);
        self.poisoned = true;
        self.end = End::Release;
        self.kind.forget(&self.key.name, ctx.addr());
        ctx.stop();
    }

    /// The lease is gone: another actor holds the room now.
    fn lost(&mut self, ctx: &Context<Self>) {
        warn!(room = %self.key, "Room lost its lease to another game server; stopping here");
        self.end = End::Keep;
        self.kind.forget(&self.key.name, ctx.addr());
        ctx.stop();
    }

    /// True when a checkpoint is due: members changed, or by ticks, or by
    /// time, or the lease needs renewing (a third of its time to live has
    /// passed: two more chances before it runs out).
    fn checkpoint_due(&self) -> bool {
        let renew = self.game.settings().lease_ttl / 3;
        self.live.as_ref().is_some_and(|l| {
            l.members_unsaved
                || l.tick - l.saved_tick >= u64::from(self.config().checkpoint_ticks)
                || l.saved_at.elapsed() >= self.config().checkpoint_every.min(renew)
        })
    }

    /// Saves a checkpoint (and renews the lease); true when saved.
    async fn checkpoint(&mut self, ctx: &Context<Self>) -> bool {
        if self.poisoned || self.game.is_crashed() || ctx.is_stopping() {
            return false;
        }
        let kind = self.kind.clone();
        let config = &kind.config;
        let Some(live) = self.live.as_mut() else {
            return false;
        };
        let (snapshot, _) = run(&self.game, init(config, &self.key), live, |room, _| {
            room.snapshot()
        });
        let snapshot = match snapshot {
            Ok(s) => s,
            Err(why) => {
                self.crash(ctx, "snapshot", &why);
                return false;
            }
        };
        let cp = Checkpoint {
            tick: live.tick,
            tick_bound: config.checkpoint_ticks,
            members: live.members.to_wire(),
            state: Bytes::from(snapshot.encode_to_vec()),
            saved_at_ms: crate::api::now_ms(),
        };
        let store = self.game.room_store();
        // In the index first: a room saved but not indexed would not be
        // found again if this game server died now.
        if !live.indexed {
            if let Err(e) = store.index(&self.key).await {
                self.save_failed(&e);
                return false;
            }
            live.indexed = true;
        }
        let ttl = self.game.settings().lease_ttl;
        let asked = Instant::now();
        let lease = Lease::new(&self.key, &self.token, ttl);
        let saved = store.save(lease, Bytes::from(cp.encode_to_vec())).await;
        let label = config.name.clone();
        match saved {
            Ok(true) => {
                live.saved_tick = live.tick;
                live.saved_at = Instant::now();
                live.lease_until = asked + ttl;
                live.members_unsaved = false;
                if self.failed_saves > 0 {
                    info!(room = %self.key, "Room checkpoints work again after {} failures", self.failed_saves);
                    self.failed_saves = 0;
                }
                metrics::counter!("gamemesh_room_checkpoints_total", "kind" => label, "outcome" => "saved").increment(1);
                true
            }
            Ok(false) => {
                metrics::counter!("gamemesh_room_checkpoints_total", "kind" => label, "outcome" => "lost").increment(1);
                self.lost(ctx);
                false
            }
            Err(e) => {
                metrics::counter!("gamemesh_room_checkpoints_total", "kind" => label, "outcome" => "failed").increment(1);
                self.save_failed(&e);
                false
            }
        }
    }

    fn save_failed(&mut self, e: &GameError) {
        if self.failed_saves == 0 {
            warn!(room = %self.key, "Room checkpoint failed ({e}); its ticks wait until one succeeds");
        }
        self.failed_saves += 1;
    }

    /// One tick, unless the room is as far past its last checkpoint as it
    /// may go, or its lease may be running out, and it cannot save.
    async fn tick(&mut self, ctx: &Context<Self>) {
        let bound = u64::from(self.config().checkpoint_ticks);
        // A tick's worth of margin: the tick must be out before the lease
        // could pass to another game server.
        let margin = self.config().tick_period().unwrap_or_default();
        let must_save = self.live.as_ref().is_some_and(|l| {
            l.tick - l.saved_tick >= bound || Instant::now() + margin >= l.lease_until
        });
        if must_save && !self.checkpoint(ctx).await {
            metrics::counter!("gamemesh_room_ticks_stalled_total").increment(1);
            return;
        }
        let kind = self.kind.clone();
        let config = &kind.config;
        let Some(live) = self.live.as_mut() else {
            return;
        };
        live.tick += 1;
        let (out, effects) = run(&self.game, init(config, &self.key), live, |room, cx| {
            room.tick(cx)
        });
        if let Err(why) = out {
            self.crash(ctx, "tick", &why);
            return;
        }
        kind.ticks().increment(1);
        self.apply(ctx, effects).await;
        if self.checkpoint_due() {
            self.checkpoint(ctx).await;
        }
    }

    /// Does what a callback asked for: a save first (if asked; false when
    /// it failed, and then nothing else goes out), its pushes, then its
    /// removals.
    async fn apply(&mut self, ctx: &Context<Self>, effects: Effects) -> bool {
        if effects.save && !self.checkpoint(ctx).await {
            return false;
        }
        self.flush(effects.outbox);
        self.remove_all(ctx, effects.removals, LeaveReason::Removed)
            .await;
        true
    }

    /// Sends a callback's pushes, in order, to the members they name.
    fn flush(&self, outbox: Vec<(To, Push)>) {
        let Some(live) = self.live.as_ref() else {
            return;
        };
        let pusher = self.game.pusher();
        for (to, push) in outbox {
            match to {
                To::All => pusher.to_sessions(live.members.recipients(), &push),
                To::One(user) => {
                    if let Some(r) = live.members.get(user) {
                        pusher.to_sessions(std::slice::from_ref(r), &push);
                    }
                }
                To::Others(user) => {
                    let others: Vec<Recipient> = live
                        .members
                        .recipients()
                        .iter()
                        .filter(|r| r.user_id != user)
                        .copied()
                        .collect();
                    pusher.to_sessions(&others, &push);
                }
            }
        }
    }

    /// Removes members, running `leave` for each (and for whoever those
    /// callbacks remove in turn).
    async fn remove_all(&mut self, ctx: &Context<Self>, users: Vec<u64>, why: LeaveReason) {
        let mut queue: VecDeque<(u64, LeaveReason)> = users.into_iter().map(|u| (u, why)).collect();
        while let Some((user, why)) = queue.pop_front() {
            let kind = self.kind.clone();
            let config = &kind.config;
            let Some(live) = self.live.as_mut() else {
                return;
            };
            let Some(r) = live.members.remove(user) else {
                continue;
            };
            live.members_unsaved = true;
            let member = Member {
                user_id: r.user_id,
                session_id: r.session_id,
            };
            let (out, effects) = run(&self.game, init(config, &self.key), live, |room, cx| {
                room.leave(cx, &member, why)
            });
            if let Err(e) = self
                .game
                .room_store()
                .remove_member(user, &self.key, r.session_id)
                .await
            {
                debug!(room = %self.key, user, "user's room entry not removed ({e}); its session's end cleans it");
            }
            if let Err(panic) = out {
                self.crash(ctx, "leave", &panic);
                return;
            }
            debug!(room = %self.key, user, ?why, "member left");
            // A leave's own pushes go out now; a save it asks for comes
            // with the leave's (a member change is always saved).
            self.leave_answer = effects.answer;
            // Saved first when the leave asks (its pushes carry numbers
            // that must not be handed out again after a restore).
            if effects.save {
                self.checkpoint(ctx).await;
            }
            self.flush(effects.outbox);
            queue.extend(
                effects
                    .removals
                    .into_iter()
                    .map(|u| (u, LeaveReason::Removed)),
            );
        }
    }

    async fn request(&mut self, req: RoomRequest, ctx: &Context<Self>) -> RoomReply {
        match RoomOp::try_from(req.op) {
            Ok(RoomOp::Join) => self.join(req, ctx).await,
            Ok(RoomOp::Leave) => self.leave(req, ctx).await,
            Ok(RoomOp::Request) => self.member_request(req, ctx).await,
            Ok(RoomOp::Relocate) => {
                if let Some(live) = self.live.as_mut() {
                    live.members.relocate(req.user_id, req.session_id, req.node);
                }
                RoomReply::ok(Bytes::new())
            }
            Ok(RoomOp::Broadcast) => self.broadcast(req),
            Ok(RoomOp::Ensure) => self.ensure(ctx).await,
            _ => RoomReply::failed(RoomStatus::Internal, "unknown room operation"),
        }
    }

    fn broadcast(&mut self, req: RoomRequest) -> RoomReply {
        let Some(live) = self.live.as_ref() else {
            return RoomReply::ok(Bytes::new());
        };
        match Push::from_encoded(req.payload) {
            Ok(push) => {
                self.game
                    .pusher()
                    .to_sessions(live.members.recipients(), &push);
                RoomReply::ok(Bytes::new())
            }
            Err(e) => RoomReply::failed(
                RoomStatus::Internal,
                format!("undecodable push to broadcast: {e}"),
            ),
        }
    }

    /// Creates the room on its first join; false (with the reply) when
    /// the kind refused to.
    fn create(&mut self, ctx: &Context<Self>) -> Result<(), RoomReply> {
        if self.live.is_some() {
            return Ok(());
        }
        let room = match catch_unwind(AssertUnwindSafe(|| {
            R::create(&init(&self.kind.config, &self.key))
        })) {
            Ok(Ok(room)) => room,
            Ok(Err(e)) => return Err(error_reply(e)),
            Err(panic) => {
                let why = panic_message(panic);
                self.crash(ctx, "create", &why);
                return Err(RoomReply::failed(RoomStatus::Internal, why));
            }
        };
        self.live = Some(Live {
            room,
            members: Members::default(),
            tick: 0,
            saved_tick: 0,
            saved_at: Instant::now(),
            lease_until: self.lease_until,
            indexed: false,
            members_unsaved: false,
        });
        metrics::gauge!("gamemesh_rooms_running", "kind" => self.config().name.clone())
            .increment(1.0);
        self.start_timers(ctx);
        Ok(())
    }

    async fn join(&mut self, req: RoomRequest, ctx: &Context<Self>) -> RoomReply {
        if let Err(reply) = self.create(ctx) {
            return reply;
        }
        let (user, session) = (req.user_id, req.session_id);
        let member = Member {
            user_id: user,
            session_id: session,
        };
        let again = match self.live.as_ref().and_then(|l| l.members.get(user)) {
            Some(r) if r.session_id == session => true,
            // The user's older session: it is gone (one session per user).
            Some(_) => {
                self.remove_all(ctx, vec![user], LeaveReason::SessionEnded)
                    .await;
                false
            }
            None => false,
        };
        let kind = self.kind.clone();
        let config = &kind.config;
        let Some(live) = self.live.as_mut() else {
            return RoomReply::retry("room restarting");
        };
        if again {
            live.members.relocate(user, session, req.node);
        } else {
            if live.members.len() >= config.max_members {
                return RoomReply::failed(RoomStatus::Refused, "room full");
            }
            live.members.push(Recipient {
                user_id: user,
                session_id: session,
                node: req.node,
            });
        }
        let (out, effects) = run(&self.game, init(config, &self.key), live, |room, cx| {
            room.join(cx, &member, again)
        });
        let reply = match out {
            Err(why) => {
                self.crash(ctx, "join", &why);
                return RoomReply::failed(RoomStatus::Internal, why);
            }
            Ok(Err(e)) => {
                if !again {
                    live.members.remove(user);
                }
                error_reply(e)
            }
            Ok(Ok(answer)) => {
                if !again {
                    live.members_unsaved = true;
                    if let Err(e) = self
                        .game
                        .room_store()
                        .add_member(user, &self.key, session)
                        .await
                    {
                        debug!(room = %self.key, user, "user's room entry not written ({e})");
                    }
                    debug!(room = %self.key, user, "member joined");
                }
                RoomReply::ok(Bytes::from(answer.encode_to_vec()))
            }
        };
        if !self.apply(ctx, effects).await {
            return RoomReply::failed(RoomStatus::Unavailable, "the room could not save; retry");
        }
        self.acknowledged(reply, ctx).await
    }

    /// A join or leave is answered `Ok` only once the members are saved,
    /// so a room restored elsewhere has every member it acknowledged.
    async fn acknowledged(&mut self, reply: RoomReply, ctx: &Context<Self>) -> RoomReply {
        let unsaved = self.live.as_ref().is_some_and(|l| l.members_unsaved);
        if reply.status() != RoomStatus::Ok || !unsaved || self.checkpoint(ctx).await {
            return reply;
        }
        RoomReply::failed(
            RoomStatus::Unavailable,
            "the room could not save its members; retry",
        )
    }

    async fn leave(&mut self, req: RoomRequest, ctx: &Context<Self>) -> RoomReply {
        let member = self
            .live
            .as_ref()
            .is_some_and(|l| l.members.has(req.user_id, req.session_id));
        if !member {
            return RoomReply::failed(RoomStatus::NotMember, "not a member");
        }
        self.leave_answer = None;
        self.remove_all(ctx, vec![req.user_id], leave_reason(req.leave))
            .await;
        // Left in memory whatever the save does: a leave cannot be
        // refused, and the next checkpoint carries it.
        self.checkpoint(ctx).await;
        RoomReply::ok(self.leave_answer.take().unwrap_or_default())
    }

    /// Creates the room if it does not exist, and saves it (so it is in
    /// the index and restarts wherever it is placed).
    async fn ensure(&mut self, ctx: &Context<Self>) -> RoomReply {
        if let Err(reply) = self.create(ctx) {
            return reply;
        }
        if let Some(live) = self.live.as_mut() {
            live.members_unsaved = true;
        }
        if self.checkpoint(ctx).await {
            RoomReply::ok(Bytes::new())
        } else {
            RoomReply::retry("the room could not be saved")
        }
    }

    async fn member_request(&mut self, req: RoomRequest, ctx: &Context<Self>) -> RoomReply {
        let kind = self.kind.clone();
        let config = &kind.config;
        let Some(live) = self.live.as_mut() else {
            return RoomReply::failed(RoomStatus::NotMember, "no such room");
        };
        if !live.members.has(req.user_id, req.session_id) {
            return RoomReply::failed(RoomStatus::NotMember, "not a member");
        }
        let member = Member {
            user_id: req.user_id,
            session_id: req.session_id,
        };
        let request = match R::Request::decode(req.payload) {
            Ok(r) => r,
            Err(e) => {
                return RoomReply::failed(
                    RoomStatus::Internal,
                    format!("room request does not decode: {e}"),
                )
            }
        };
        let (out, effects) = run(&self.game, init(config, &self.key), live, |room, cx| {
            room.request(cx, &member, request)
        });
        let reply = match out {
            Err(why) => {
                self.crash(ctx, "request", &why);
                return RoomReply::failed(RoomStatus::Internal, why);
            }
            Ok(Ok(answer)) => RoomReply::ok(Bytes::from(answer.encode_to_vec())),
            Ok(Err(e)) => error_reply(e),
        };
        if !self.apply(ctx, effects).await {
            return RoomReply::failed(RoomStatus::Unavailable, "the room could not save; retry");
        }
        reply
    }

    /// Drops members whose session ended; notes where the others are.
    async fn sweep(&mut self, ctx: &Context<Self>) {
        let Some(live) = self.live.as_ref() else {
            return;
        };
        let users: Vec<u64> = live.members.iter().map(|m| m.user_id).collect();
        if users.is_empty() {
            return;
        }
        let found = match self.game.sessions().locate(&users).await {
            Ok(f) => f,
            Err(e) => {
                debug!(room = %self.key, "member sweep skipped: {e}");
                return;
            }
        };
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let mut ended = Vec::new();
        for (user, at) in users.into_iter().zip(found) {
            let Some(member) = live.members.get(user).copied() else {
                continue;
            };
            match at {
                Some(s) if s.session_id == member.session_id => {
                    live.members.relocate(user, s.session_id, s.node);
                }
                _ => ended.push(user),
            }
        }
        if !ended.is_empty() {
            self.remove_all(ctx, ended, LeaveReason::SessionEnded).await;
            self.checkpoint(ctx).await;
        }
    }

    /// An empty room (or one never created) is forgotten: nothing to
    /// restore, nothing to tick.
    async fn close_if_empty(&mut self, ctx: &Context<Self>) {
        if ctx.is_stopping() || self.live.as_ref().is_some_and(|l| !l.members.is_empty()) {
            return;
        }
        // A kind whose rooms outlive their members keeps a room that
        // exists; only an actor that never had one closes.
        if self.config().keep_empty && self.live.is_some() {
            return;
        }
        // Out of the table first: a request that comes now starts a fresh
        // actor, which waits for this one's lease to go. Requests already
        // queued here are dropped with the mailbox, and their callers ask
        // again (`Stopped` is "retry").
        self.kind.forget(&self.key.name, ctx.addr());
        self.end = match self.game.room_store().close(self.lease()).await {
            Ok(_) => End::Keep,
            Err(e) => {
                debug!(room = %self.key, "closing the room in the store failed ({e})");
                End::Release
            }
        };
        debug!(room = %self.key, "room closed (empty)");
        ctx.stop();
    }
}

impl<R: Room> Actor for RoomActor<R> {
    type Msg = RoomMsg;

    async fn started(&mut self, ctx: &mut Context<Self>) {
        match self.activate().await {
            Ok(true) => {}
            Ok(false) => {
                debug!(room = %self.key, "room held by another game server; not starting here");
                self.kind.forget(&self.key.name, ctx.addr());
                ctx.stop();
                return;
            }
            Err(e) => {
                warn!(room = %self.key, "room cannot start: {e}");
                self.kind.forget(&self.key.name, ctx.addr());
                ctx.stop();
                return;
            }
        }
        if self.live.is_some() {
            metrics::gauge!("gamemesh_rooms_running", "kind" => self.config().name.clone())
                .increment(1.0);
            // The new tick base first; then where the members are now.
            self.checkpoint(ctx).await;
            self.start_timers(ctx);
        }
        // Restored: find the members' sessions now. Not restored and no
        // join waiting (the sweep started a room that was never saved):
        // the sweep closes it.
        let _ = ctx.addr().try_post(RoomMsg::Sweep);
    }

    async fn handle(&mut self, msg: RoomMsg, ctx: &mut Context<Self>) {
        match msg {
            RoomMsg::Request(req, reply) => {
                let out = self.request(req, ctx).await;
                reply.send(out);
                self.close_if_empty(ctx).await;
            }
            RoomMsg::Tick => {
                self.tick_pending.store(false, Ordering::Release);
                self.tick(ctx).await;
                self.close_if_empty(ctx).await;
            }
            RoomMsg::Maintain => {
                if self.checkpoint_due() {
                    self.checkpoint(ctx).await;
                }
            }
            RoomMsg::Sweep => {
                self.sweep(ctx).await;
                self.close_if_empty(ctx).await;
            }
            RoomMsg::HandOff => {
                debug!(room = %self.key, "room handed off: placement moved");
                self.checkpoint(ctx).await;
                self.end = End::Release;
                self.kind.forget(&self.key.name, ctx.addr());
                ctx.stop();
            }
        }
    }

    async fn stopped(&mut self, ctx: &mut Context<Self>) {
        self.timers.cancel();
        self.kind.forget(&self.key.name, ctx.addr());
        if self.live.is_some() {
            metrics::gauge!("gamemesh_rooms_running", "kind" => self.config().name.clone())
                .decrement(1.0);
        }
        if self.end == End::Release && !self.game.is_crashed() {
            if let Err(e) = self.game.room_store().release(self.lease()).await {
                debug!(room = %self.key, "lease not released ({e}); it runs out by itself");
            }
        }
    }
}
