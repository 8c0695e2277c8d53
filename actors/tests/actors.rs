//! The actor runtime's promises, each on a real multi-threaded tokio
//! runtime: exclusivity across awaits, per-sender order, a large fan-in,
//! deep post chains, fairness, stop semantics, timers, panics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use gamemesh_actors::{spawn, Actor, Addr, Builder, CallError, Context, PostError, Reply};
use gamemesh_test_support::wait_for;
use tokio::sync::{oneshot, Notify};

/// Generous bound for conditions in these tests: a failure guard on a
/// loaded machine, not a performance claim.
const PATIENCE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Exclusivity across awaits

/// Counts how many of its handlers run at once; each handler awaits a
/// timer and another actor in the middle.
struct Exclusive {
    running: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    handled: u64,
    echo: Addr<Echo>,
}

enum ExclusiveMsg {
    Work,
    Handled(Reply<u64>),
}

impl Actor for Exclusive {
    type Msg = ExclusiveMsg;

    async fn handle(&mut self, msg: ExclusiveMsg, _ctx: &mut Context<Self>) {
        match msg {
            ExclusiveMsg::Work => {
                let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
                self.most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_micros(100)).await;
                let _ = self.echo.call(|r| (7, r)).await;
                tokio::task::yield_now().await;
                self.handled += 1;
                self.running.fetch_sub(1, Ordering::SeqCst);
            }
            ExclusiveMsg::Handled(reply) => reply.send(self.handled),
        }
    }
}

/// Answers with what it got.
struct Echo;

impl Actor for Echo {
    type Msg = (u64, Reply<u64>);

    async fn handle(&mut self, (n, reply): (u64, Reply<u64>), _ctx: &mut Context<Self>) {
        reply.send(n);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_handler_that_awaits_keeps_its_actor_exclusive() {
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let actor = spawn(Exclusive {
        running: running.clone(),
        most: most.clone(),
        handled: 0,
        echo: spawn(Echo),
    });
    // Many posters at once, so messages are always waiting while a handler
    // is suspended in its awaits.
    let posters: Vec<_> = (0..8)
        .map(|_| {
            let a = actor.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    a.post(ExclusiveMsg::Work).await.unwrap();
                }
            })
        })
        .collect();
    for p in posters {
        p.await.unwrap();
    }
    assert_eq!(actor.call(ExclusiveMsg::Handled).await, Ok(400));
    assert_eq!(most.load(Ordering::SeqCst), 1, "two handlers overlapped");
}

// ---------------------------------------------------------------------------
// Ordering per sender

/// Checks that each sender's sequence numbers arrive in order.
#[derive(Default)]
struct OrderCheck {
    last: HashMap<u32, u64>,
    out_of_order: u64,
    total: u64,
}

enum OrderMsg {
    Item { sender: u32, seq: u64 },
    Report(Reply<(u64, u64)>),
}

impl Actor for OrderCheck {
    type Msg = OrderMsg;

    async fn handle(&mut self, msg: OrderMsg, _ctx: &mut Context<Self>) {
        match msg {
            OrderMsg::Item { sender, seq } => {
                let last = self.last.entry(sender).or_insert(0);
                if seq != *last + 1 {
                    self.out_of_order += 1;
                }
                *last = seq;
                self.total += 1;
                // Suspend now and then, so senders overtake each other.
                if seq % 100 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            OrderMsg::Report(r) => r.send((self.total, self.out_of_order)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_from_one_sender_are_handled_in_the_order_it_posted_them() {
    let checker = Builder::new().mailbox(64).spawn(OrderCheck::default());
    let senders: Vec<_> = (0..16u32)
        .map(|sender| {
            let c = checker.clone();
            tokio::spawn(async move {
                for seq in 1..=5_000 {
                    // Both flavours of posting: waiting for room, and
                    // retrying a full mailbox.
                    let mut msg = OrderMsg::Item { sender, seq };
                    if seq % 2 == 0 {
                        c.post(msg).await.unwrap();
                        continue;
                    }
                    loop {
                        match c.try_post(msg) {
                            Ok(()) => break,
                            Err(PostError::Full(m)) => {
                                msg = m;
                                tokio::task::yield_now().await;
                            }
                            Err(PostError::Stopped(_)) => panic!("checker stopped"),
                        }
                    }
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    assert_eq!(checker.call(OrderMsg::Report).await, Ok((80_000, 0)));
}

// ---------------------------------------------------------------------------
// Fan-in: 100,000 messages over 1,000 actors, all forwarded to one

/// Counts what it gets and forwards each message to the collector.
struct Worker {
    got: u64,
    collector: Addr<Collector>,
}

enum WorkerMsg {
    Job(u64),
    Count(Reply<u64>),
}

impl Actor for Worker {
    type Msg = WorkerMsg;

    async fn handle(&mut self, msg: WorkerMsg, _ctx: &mut Context<Self>) {
        match msg {
            WorkerMsg::Job(n) => {
                self.got += 1;
                // Waits for room: a full collector slows the workers down
                // instead of losing messages.
                self.collector.post(n).await.unwrap();
            }
            WorkerMsg::Count(r) => r.send(self.got),
        }
    }
}

/// Sums everything; says when it has seen `expect` messages.
struct Collector {
    count: u64,
    sum: u64,
    expect: u64,
    done: Option<oneshot::Sender<(u64, u64)>>,
}

impl Actor for Collector {
    type Msg = u64;

    async fn handle(&mut self, n: u64, _ctx: &mut Context<Self>) {
        self.count += 1;
        self.sum += n;
        if self.count == self.expect {
            if let Some(done) = self.done.take() {
                let _ = done.send((self.count, self.sum));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fan_in_of_100_000_messages_over_1_000_actors_all_complete() {
    const ACTORS: u64 = 1_000;
    const MESSAGES: u64 = 100_000;
    let (done_tx, done_rx) = oneshot::channel();
    let collector = Builder::new().mailbox(256).spawn(Collector {
        count: 0,
        sum: 0,
        expect: MESSAGES,
        done: Some(done_tx),
    });
    let workers: Arc<Vec<Addr<Worker>>> = Arc::new(
        (0..ACTORS)
            .map(|_| {
                Builder::new().mailbox(16).spawn(Worker {
                    got: 0,
                    collector: collector.clone(),
                })
            })
            .collect(),
    );
    let posters: Vec<_> = (0..100u64)
        .map(|p| {
            let workers = workers.clone();
            tokio::spawn(async move {
                for i in 0..MESSAGES / 100 {
                    let n = p * (MESSAGES / 100) + i;
                    workers[(n % ACTORS) as usize]
                        .post(WorkerMsg::Job(n))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for p in posters {
        p.await.unwrap();
    }
    let (count, sum) = tokio::time::timeout(PATIENCE, done_rx)
        .await
        .expect("the fan-in did not complete")
        .unwrap();
    assert_eq!(count, MESSAGES);
    assert_eq!(sum, MESSAGES * (MESSAGES - 1) / 2);
    for w in workers.iter() {
        assert_eq!(w.call(WorkerMsg::Count).await, Ok(MESSAGES / ACTORS));
    }
}

// ---------------------------------------------------------------------------
// Deep post chains

/// One link of a ring: passes the hop on to the next actor.
struct Link {
    next: Option<Addr<Link>>,
    stacks: Arc<Mutex<HashMap<ThreadId, (usize, usize)>>>,
}

enum LinkMsg {
    Connect(Addr<Link>),
    Hop {
        left: u64,
        done: Option<oneshot::Sender<()>>,
    },
}

impl Actor for Link {
    type Msg = LinkMsg;

    async fn handle(&mut self, msg: LinkMsg, _ctx: &mut Context<Self>) {
        match msg {
            LinkMsg::Connect(next) => self.next = Some(next),
            LinkMsg::Hop { left, done } => {
                // Where this handler's frame sits on the thread's stack. If
                // posting ran the next actor inline, this would move down
                // with every hop.
                let marker = 0u8;
                let here = std::ptr::addr_of!(marker) as usize;
                {
                    let mut stacks = self.stacks.lock().unwrap();
                    let e = stacks
                        .entry(std::thread::current().id())
                        .or_insert((here, here));
                    e.0 = e.0.min(here);
                    e.1 = e.1.max(here);
                }
                if left == 0 {
                    if let Some(d) = done {
                        let _ = d.send(());
                    }
                    return;
                }
                let next = self.next.as_ref().expect("ring connected");
                next.try_post(LinkMsg::Hop {
                    left: left - 1,
                    done,
                })
                .unwrap();
            }
        }
    }
}

#[test]
fn a_chain_of_100_000_posts_does_not_grow_the_stack() {
    // Small worker stacks: a chain that recursed would overflow them long
    // before 100,000 hops.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(256 * 1024)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let stacks = Arc::new(Mutex::new(HashMap::new()));
        let ring: Vec<_> = (0..1_000)
            .map(|_| {
                spawn(Link {
                    next: None,
                    stacks: stacks.clone(),
                })
            })
            .collect();
        for (i, a) in ring.iter().enumerate() {
            a.try_post(LinkMsg::Connect(ring[(i + 1) % ring.len()].clone()))
                .unwrap();
        }
        let (done_tx, done_rx) = oneshot::channel();
        ring[0]
            .try_post(LinkMsg::Hop {
                left: 100_000,
                done: Some(done_tx),
            })
            .unwrap();
        tokio::time::timeout(PATIENCE, done_rx)
            .await
            .expect("the chain did not finish")
            .unwrap();
        let stacks = stacks.lock().unwrap();
        assert!(!stacks.is_empty());
        for (thread, (low, high)) in stacks.iter() {
            assert!(
                high - low < 16 * 1024,
                "the stack of {thread:?} moved by {} bytes over the chain",
                high - low
            );
        }
    });
}

// ---------------------------------------------------------------------------
// Fairness

/// Posts to itself, never awaiting anything that is pending, until it has
/// run `SPINS` turns: an upper bound, so that a runtime that let it keep
/// the worker fails this test instead of hanging it.
struct Spinner {
    turns: Arc<AtomicU64>,
}

/// Far more turns than the echo calls need between the spinner's slices
/// (seconds of spinning in a debug build).
const SPINS: u64 = 10_000_000;

impl Actor for Spinner {
    type Msg = ();

    async fn started(&mut self, ctx: &mut Context<Self>) {
        for _ in 0..8 {
            ctx.addr().try_post(()).unwrap();
        }
    }

    async fn handle(&mut self, _: (), ctx: &mut Context<Self>) {
        if self.turns.fetch_add(1, Ordering::Relaxed) >= SPINS {
            ctx.stop();
            return;
        }
        // Full or stopping: either way, nothing to add.
        let _ = ctx.addr().try_post(());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_busy_actor_does_not_starve_another_on_the_same_worker() {
    // One worker: the spinner and the echo actor must share it.
    let turns = Arc::new(AtomicU64::new(0));
    let spinner = spawn(Spinner {
        turns: turns.clone(),
    });
    wait_for("the spinner to spin", PATIENCE, || {
        turns.load(Ordering::Relaxed) > 1_000
    })
    .await;
    let echo = spawn(Echo);
    for i in 0..100 {
        let answer = tokio::time::timeout(PATIENCE, echo.call(|r| (i, r)))
            .await
            .expect("the echo actor was starved");
        assert_eq!(answer, Ok(i));
    }
    assert!(
        !spinner.is_stopped(),
        "the echo calls were answered only after the spinner gave up"
    );
    spinner.stop();
    spinner.stopped().await;
}

// ---------------------------------------------------------------------------
// Stop semantics

/// A handler that can be held inside until released, and hooks that
/// report.
struct Gated {
    handled: Arc<AtomicU64>,
    stopped: Arc<AtomicBool>,
}

enum GatedMsg {
    /// Says it is inside, then waits until released.
    Hold {
        inside: oneshot::Sender<()>,
        release: Arc<Notify>,
    },
    Count,
    Get(Reply<u64>),
    /// Stops from inside, without answering.
    StopNow(Reply<u64>),
    Panic(Reply<u64>),
    Forget(Reply<u64>),
}

impl Actor for Gated {
    type Msg = GatedMsg;

    async fn handle(&mut self, msg: GatedMsg, ctx: &mut Context<Self>) {
        match msg {
            GatedMsg::Hold { inside, release } => {
                let _ = inside.send(());
                release.notified().await;
            }
            GatedMsg::Count => {
                self.handled.fetch_add(1, Ordering::SeqCst);
            }
            GatedMsg::Get(r) => r.send(self.handled.load(Ordering::SeqCst)),
            GatedMsg::StopNow(r) => {
                ctx.stop();
                drop(r);
            }
            GatedMsg::Panic(_r) => panic!("handler bug"),
            GatedMsg::Forget(r) => drop(r),
        }
    }

    async fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

fn gated() -> (Addr<Gated>, Arc<AtomicU64>, Arc<AtomicBool>) {
    let handled = Arc::new(AtomicU64::new(0));
    let stopped = Arc::new(AtomicBool::new(false));
    let addr = spawn(Gated {
        handled: handled.clone(),
        stopped: stopped.clone(),
    });
    (addr, handled, stopped)
}

/// Puts the actor inside a held handler; returns the release.
async fn hold(addr: &Addr<Gated>) -> Arc<Notify> {
    let release = Arc::new(Notify::new());
    let (inside_tx, inside_rx) = oneshot::channel();
    addr.try_post(GatedMsg::Hold {
        inside: inside_tx,
        release: release.clone(),
    })
    .unwrap();
    inside_rx.await.unwrap();
    release
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posting_to_a_stopped_actor_fails_with_stopped() {
    let (addr, _, stopped) = gated();
    addr.stop();
    assert!(addr.is_stopped());
    assert!(matches!(
        addr.try_post(GatedMsg::Count),
        Err(PostError::Stopped(GatedMsg::Count))
    ));
    assert!(addr.post(GatedMsg::Count).await.unwrap_err().is_stopped());
    assert_eq!(addr.call(GatedMsg::Get).await, Err(CallError::Stopped));
    addr.stopped().await;
    assert!(stopped.load(Ordering::SeqCst), "stopped hook ran");
    assert!(addr.try_post(GatedMsg::Count).unwrap_err().is_stopped());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_queued_behind_a_stop_gets_stopped_not_a_hang() {
    let (addr, handled, stopped) = gated();
    let release = hold(&addr).await;
    // Queued behind the held handler.
    addr.try_post(GatedMsg::Count).unwrap();
    let queued_call = {
        let a = addr.clone();
        tokio::spawn(async move { a.call(GatedMsg::Get).await })
    };
    wait_for("the call to be queued", PATIENCE, || addr.queued() == 2).await;
    addr.stop();
    release.notify_one();
    let answer = tokio::time::timeout(PATIENCE, queued_call)
        .await
        .expect("the queued call hung")
        .unwrap();
    assert_eq!(answer, Err(CallError::Stopped));
    addr.stopped().await;
    assert_eq!(handled.load(Ordering::SeqCst), 0, "queued messages dropped");
    assert!(stopped.load(Ordering::SeqCst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_from_inside_fails_the_call_and_the_queue() {
    let (addr, handled, stopped) = gated();
    let release = hold(&addr).await;
    let stop_call = {
        let a = addr.clone();
        tokio::spawn(async move { a.call(GatedMsg::StopNow).await })
    };
    wait_for("the stop to be queued", PATIENCE, || addr.queued() == 1).await;
    let later_call = {
        let a = addr.clone();
        tokio::spawn(async move { a.call(GatedMsg::Get).await })
    };
    wait_for("the call to be queued", PATIENCE, || addr.queued() == 2).await;
    release.notify_one();
    assert_eq!(stop_call.await.unwrap(), Err(CallError::Stopped));
    assert_eq!(later_call.await.unwrap(), Err(CallError::Stopped));
    addr.stopped().await;
    assert!(stopped.load(Ordering::SeqCst));
    assert_eq!(handled.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_handles_what_is_queued_then_stops() {
    let (addr, handled, stopped) = gated();
    let release = hold(&addr).await;
    for _ in 0..10 {
        addr.try_post(GatedMsg::Count).unwrap();
    }
    addr.close();
    assert!(addr.try_post(GatedMsg::Count).unwrap_err().is_stopped());
    release.notify_one();
    addr.stopped().await;
    assert_eq!(handled.load(Ordering::SeqCst), 10);
    assert!(stopped.load(Ordering::SeqCst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_handler_stops_the_actor_and_runs_stopped() {
    let (addr, _, stopped) = gated();
    assert_eq!(addr.call(GatedMsg::Panic).await, Err(CallError::Stopped));
    addr.stopped().await;
    assert!(stopped.load(Ordering::SeqCst));
    assert!(addr.try_post(GatedMsg::Count).unwrap_err().is_stopped());
    // Other actors are unaffected.
    assert_eq!(spawn(Echo).call(|r| (3, r)).await, Ok(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_dropped_by_a_running_actor_is_no_reply() {
    let (addr, _, _) = gated();
    assert_eq!(addr.call(GatedMsg::Forget).await, Err(CallError::NoReply));
    assert_eq!(addr.call(GatedMsg::Get).await, Ok(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_actor_can_be_owned_by_a_task_tracker() {
    let tracker = tokio_util::task::TaskTracker::new();
    let stopped = Arc::new(AtomicBool::new(false));
    let addr = Builder::new()
        .tracker(&tracker)
        .name("tracked")
        .spawn(Gated {
            handled: Arc::new(AtomicU64::new(0)),
            stopped: stopped.clone(),
        });
    tracker.close();
    addr.stop();
    tracker.wait().await;
    assert!(
        stopped.load(Ordering::SeqCst),
        "the tracker waited for stopped"
    );
}

// ---------------------------------------------------------------------------
// Timers

/// Counts timer messages.
struct Ticked {
    ticks: Arc<AtomicU64>,
}

enum TickMsg {
    Tick,
    /// Answers with the count, once everything queued before it ran.
    Flush(Reply<u64>),
}

impl Actor for Ticked {
    type Msg = TickMsg;

    async fn handle(&mut self, msg: TickMsg, _ctx: &mut Context<Self>) {
        match msg {
            TickMsg::Tick => {
                self.ticks.fetch_add(1, Ordering::SeqCst);
            }
            TickMsg::Flush(r) => r.send(self.ticks.load(Ordering::SeqCst)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_post_later_and_periodically_until_cancelled() {
    let ticks = Arc::new(AtomicU64::new(0));
    let addr = spawn(Ticked {
        ticks: ticks.clone(),
    });
    let once = addr.run_later(Duration::from_millis(5), TickMsg::Tick);
    wait_for("the delayed message", PATIENCE, || {
        ticks.load(Ordering::SeqCst) == 1
    })
    .await;
    wait_for("the one-shot timer to finish", PATIENCE, || {
        once.is_finished()
    })
    .await;
    let every = addr.run_interval(Duration::from_millis(2), || TickMsg::Tick);
    wait_for("periodic messages", PATIENCE, || {
        ticks.load(Ordering::SeqCst) >= 6
    })
    .await;
    every.cancel();
    wait_for("the periodic timer to end", PATIENCE, || {
        every.is_finished()
    })
    .await;
    // A tick already queued is still handled before the flush; after
    // that, nothing more comes from the cancelled timer.
    let after_cancel = addr.call(TickMsg::Flush).await.unwrap();
    let probe = addr.run_later(Duration::from_millis(20), TickMsg::Tick);
    wait_for("the probe", PATIENCE, || probe.is_finished()).await;
    assert_eq!(
        addr.call(TickMsg::Flush).await,
        Ok(after_cancel + 1),
        "only the probe came after the cancel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_end_when_their_actor_stops() {
    let ticks = Arc::new(AtomicU64::new(0));
    let addr = spawn(Ticked {
        ticks: ticks.clone(),
    });
    let every = addr.run_interval(Duration::from_millis(1), || TickMsg::Tick);
    let far = addr.run_later(Duration::from_secs(3600), TickMsg::Tick);
    wait_for("ticks", PATIENCE, || ticks.load(Ordering::SeqCst) >= 3).await;
    addr.stop();
    addr.stopped().await;
    wait_for("both timers to end with the actor", PATIENCE, || {
        every.is_finished() && far.is_finished()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_actor_has_its_own_id_shared_by_its_addresses() {
    let a = spawn(Echo);
    let b = spawn(Echo);
    let ids: std::collections::HashSet<_> = [a.id(), a.clone().id(), b.id()].into();
    assert_eq!(ids.len(), 2);
    assert!(a.same_actor(&a.clone()));
    assert!(!a.same_actor(&b));
}
