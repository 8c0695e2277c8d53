//! Tests of the API as a module sees it: [`Probe`], a small module with
//! routes that answer, refuse, panic and count, and a room kind
//! ([`Counter`]) that sums what members send and pushes its total every
//! tick, run on [`TestGame`](super::testing::TestGame) and
//! [`MemoryCluster`](super::testing::MemoryCluster).

mod background;
mod cluster;
mod redis_backed;
mod rooms;
mod routes;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::prelude::*;
use super::RoomSettings;

/// A number.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Num {
    #[prost(int64, tag = "1")]
    pub n: i64,
}

/// A text.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Text {
    #[prost(string, tag = "1")]
    pub s: String,
}

/// What a counter room pushes every tick (`probe.tock`) and answers a join.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Tock {
    #[prost(string, tag = "1")]
    pub room: String,
    #[prost(uint64, tag = "2")]
    pub tick: u64,
    #[prost(int64, tag = "3")]
    pub total: i64,
    #[prost(uint64, repeated, tag = "4")]
    pub members: Vec<u64>,
    #[prost(bool, tag = "5")]
    pub again: bool,
}

/// A room that sums what its members send. `n` 0 is refused, 13 panics,
/// 99 removes the sender.
pub(crate) struct Counter {
    name: String,
    total: i64,
}

impl Counter {
    fn tock(&self, cx: &RoomCx<'_>, again: bool) -> Tock {
        Tock {
            room: self.name.clone(),
            tick: cx.tick(),
            total: self.total,
            members: cx.members().map(|m| m.user_id).collect(),
            again,
        }
    }
}

impl Room for Counter {
    type JoinReply = Tock;
    type Request = Num;
    type Reply = Num;
    type Snapshot = Num;

    fn create(init: &RoomInit<'_>) -> Result<Self, GameError> {
        if init.name.starts_with("no") {
            return Err(refuse("rooms starting with no cannot exist"));
        }
        Ok(Self {
            name: init.name.to_string(),
            total: 0,
        })
    }

    fn restore(init: &RoomInit<'_>, snapshot: Num) -> Result<Self, GameError> {
        Ok(Self {
            name: init.name.to_string(),
            total: snapshot.n,
        })
    }

    fn snapshot(&self) -> Num {
        Num { n: self.total }
    }

    fn join(
        &mut self,
        cx: &mut RoomCx<'_>,
        _member: &Member,
        again: bool,
    ) -> Result<Tock, GameError> {
        Ok(self.tock(cx, again))
    }

    fn request(
        &mut self,
        cx: &mut RoomCx<'_>,
        member: &Member,
        req: Num,
    ) -> Result<Num, GameError> {
        match req.n {
            0 => return Err(refuse("zero adds nothing")),
            13 => panic!("thirteen is unlucky"),
            99 => cx.remove(member.user_id),
            n => self.total += n,
        }
        Ok(Num { n: self.total })
    }

    fn tick(&mut self, cx: &mut RoomCx<'_>) {
        let t = self.tock(cx, false);
        cx.push_all("probe.tock", &t);
    }
}

/// The test module.
#[derive(Clone)]
pub(crate) struct Probe {
    /// Counter rooms' tick rate.
    pub tick_hz: u32,
    /// Counter rooms' cap.
    pub max_members: usize,
    /// Calls of `probe.count` that ran.
    pub calls: Arc<AtomicU64>,
}

impl Default for Probe {
    fn default() -> Self {
        Self {
            tick_hz: 20,
            max_members: 3,
            calls: Arc::new(AtomicU64::new(0)),
        }
    }
}

async fn echo(ctx: Ctx, t: Text) -> Result<Text, GameError> {
    Ok(Text {
        s: format!(
            "{}/{}/{}: {}",
            ctx.module(),
            ctx.user_id(),
            ctx.session_id(),
            t.s
        ),
    })
}

async fn refuse_it(_ctx: Ctx, t: Text) -> Result<Text, GameError> {
    Err(refuse(t.s))
}

async fn panic_it(_ctx: Ctx, _t: Text) -> Result<Text, GameError> {
    panic!("the handler asked to panic")
}

async fn join(ctx: Ctx, t: Text) -> Result<Tock, GameError> {
    ctx.rooms::<Counter>().join(&t.s).await
}

async fn add(ctx: Ctx, n: Num) -> Result<Num, GameError> {
    let rooms = ctx.rooms::<Counter>();
    let room = rooms
        .current()
        .await?
        .ok_or_else(|| refuse("not in a counter room"))?;
    rooms.send(&room, &n).await
}

async fn leave(ctx: Ctx, _t: Text) -> Result<Num, GameError> {
    let rooms = ctx.rooms::<Counter>();
    let mut left = 0;
    for room in rooms.joined().await? {
        if rooms.leave(&room).await? {
            left += 1;
        }
    }
    Ok(Num { n: left })
}

/// Puts `n` coins in the caller's purse (per-player data, compare-and-set)
/// and answers the balance.
async fn deposit(ctx: Ctx, n: Num) -> Result<Num, GameError> {
    let (purse, _) = ctx
        .data()
        .update::<Num, _>(ctx.user_id(), "coins", |p| {
            p.n += n.n;
            Ok(())
        })
        .await?;
    Ok(purse)
}

/// Job `probe.greet`: pushes a greeting to the user its payload names.
async fn greet(game: Game, job: gamemesh_jobs::Job) -> Result<(), gamemesh_jobs::BoxError> {
    let user: u64 = job.payload.parse()?;
    game.push()
        .to_user(user, "probe.note", &text("hello from a job"))
        .await?;
    Ok(())
}

/// On every cluster notice: pushes its text to everyone connected.
async fn relay(
    game: Game,
    notice: gamemesh_jobs::catalog::Notice,
) -> Result<(), gamemesh_jobs::BoxError> {
    game.push().to_everyone("probe.note", &text(&notice.text))?;
    Ok(())
}

impl Module for Probe {
    fn name(&self) -> &str {
        "probe"
    }

    fn build(&self, app: &mut App) {
        let calls = self.calls.clone();
        app.route("probe.echo", echo)
            .route("probe.refuse", refuse_it)
            .route("probe.panic", panic_it)
            .route("probe.count", move |_ctx: Ctx, _t: Text| {
                let calls = calls.clone();
                async move {
                    Ok::<_, GameError>(Num {
                        n: calls.fetch_add(1, Ordering::SeqCst) as i64 + 1,
                    })
                }
            })
            .route("probe.join", join)
            .route("probe.add", add)
            .route("probe.leave", leave)
            .route("probe.deposit", deposit)
            .job("probe.greet", greet)
            .on_event("relay", relay)
            .room(
                RoomKind::<Counter>::new("counter")
                    .tick_hz(self.tick_hz)
                    .max_members(self.max_members)
                    .one_per_session(),
            );
    }
}

/// An app with the probe module.
pub(crate) fn app(probe: Probe) -> App {
    let mut app = App::new();
    app.add_module(probe);
    app
}

/// Room timing short enough for tests.
pub(crate) fn fast() -> RoomSettings {
    RoomSettings {
        lease_ttl: Duration::from_millis(1200),
        restart_every: Duration::from_millis(50),
        members_every: Duration::from_millis(100),
        call_timeout: Duration::from_secs(2),
    }
}

pub(crate) fn text(s: &str) -> Text {
    Text { s: s.to_string() }
}
