//! Messages per second through the actor runtime, and nanoseconds per
//! message: through one actor, across 1,000 actors, a call round trip, and
//! a bare tokio channel into a task as the floor the runtime builds on.
//!
//! Runs on a 2-worker multi-threaded runtime, like the game server on
//! these machines, and the one-actor cases also on a current-thread
//! runtime (the runtime's own cost, without cross-thread wake-ups).
//! Numbers are for comparing cases within one run (see
//! /work/shared/BENCH-NOTES.md on noise).
//!
//! `cargo bench -p gamemesh-actors`, 2 vCPUs shared with other builds
//! (load average 16), medians of the second of two runs:
//!
//! | case | per message | messages/s |
//! |---|---|---|
//! | one actor, multi-thread, `post` | 484 ns | 2.07 M |
//! | bare tokio channel into a task, multi-thread | 256 ns | 3.90 M |
//! | one actor, current-thread, `post` | 258 ns | 3.87 M |
//! | bare tokio channel, current-thread | 204 ns | 4.90 M |
//! | 1,000 actors x 100, `try_post` round robin | 213 ns | 4.69 M |
//! | `call` round trip (multi-thread) | 20.8 us | 48 k |
//!
//! So the runtime adds about 50 ns per message over the bare channel it
//! is built on (mode check, turn counting, the handler future); the rest
//! is the channel and the wake-up. The first run, under heavier load, gave
//! 1.5x to 2.7x slower numbers in every case.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gamemesh_actors::{spawn, Actor, Addr, Builder, Context, Reply};
use tokio::sync::{mpsc, oneshot, Notify};

/// Counts messages; a `Flush` answers once everything before it ran.
struct Sink {
    n: u64,
}

enum SinkMsg {
    Item(u64),
    Flush(Reply<u64>),
}

impl Actor for Sink {
    type Msg = SinkMsg;

    async fn handle(&mut self, msg: SinkMsg, _ctx: &mut Context<Self>) {
        match msg {
            SinkMsg::Item(x) => self.n = self.n.wrapping_add(x),
            SinkMsg::Flush(r) => r.send(self.n),
        }
    }
}

/// Counts down a shared latch; the last message wakes the benchmark.
struct Countdown {
    left: Arc<AtomicUsize>,
    done: Arc<Notify>,
}

impl Actor for Countdown {
    type Msg = ();

    async fn handle(&mut self, _: (), _ctx: &mut Context<Self>) {
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_one();
        }
    }
}

/// The same one-actor cases on a current-thread runtime: poster and actor
/// take turns on one thread, so this is the runtime's own cost per message
/// without cross-thread wake-ups.
fn one_actor_current_thread(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    post_then_flush(c, "one_actor_current_thread", &rt);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn one_actor(c: &mut Criterion) {
    post_then_flush(c, "one_actor", &runtime());
}

/// 10k posts then a call into one actor on `rt`, next to the floor: the
/// same messages through a bare bounded channel into a task, without the
/// actor's mode checks, hooks and fairness.
fn post_then_flush(c: &mut Criterion, group: &str, rt: &tokio::runtime::Runtime) {
    const N: u64 = 10_000;
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(N));
    let sink = rt.block_on(async { Builder::new().mailbox(1024).spawn(Sink { n: 0 }) });
    g.bench_function("post_10k_then_flush", |b| {
        b.to_async(rt).iter(|| async {
            for i in 0..N {
                sink.post(SinkMsg::Item(i)).await.unwrap();
            }
            sink.call(SinkMsg::Flush).await.unwrap()
        })
    });
    let (tx, mut rx) = mpsc::channel::<BareMsg>(1024);
    rt.spawn(async move {
        let mut n = 0u64;
        while let Some(m) = rx.recv().await {
            match m {
                BareMsg::Item(x) => n = n.wrapping_add(x),
                BareMsg::Flush(r) => {
                    let _ = r.send(n);
                }
            }
        }
    });
    g.bench_function("bare_channel_10k_then_flush", |b| {
        b.to_async(rt).iter(|| async {
            for i in 0..N {
                tx.send(BareMsg::Item(i)).await.unwrap();
            }
            let (r_tx, r_rx) = oneshot::channel();
            tx.send(BareMsg::Flush(r_tx)).await.unwrap();
            r_rx.await.unwrap()
        })
    });
    g.finish();
}

/// The baseline's messages.
enum BareMsg {
    Item(u64),
    Flush(oneshot::Sender<u64>),
}

fn many_actors(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("many_actors");
    for &(actors, per) in &[(1_000usize, 10usize), (1_000, 100)] {
        let left = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(Notify::new());
        let addrs: Vec<Addr<Countdown>> = rt.block_on(async {
            (0..actors)
                .map(|_| {
                    Builder::new().mailbox(per).spawn(Countdown {
                        left: left.clone(),
                        done: done.clone(),
                    })
                })
                .collect()
        });
        g.throughput(Throughput::Elements((actors * per) as u64));
        g.bench_with_input(
            BenchmarkId::new("round_robin", format!("{actors}x{per}")),
            &per,
            |b, &per| {
                b.to_async(&rt).iter(|| async {
                    left.store(actors * per, Ordering::Release);
                    for _ in 0..per {
                        for a in &addrs {
                            a.try_post(()).unwrap();
                        }
                    }
                    done.notified().await;
                })
            },
        );
        for a in &addrs {
            a.stop();
        }
    }
    g.finish();
}

fn call_round_trip(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("call");
    g.throughput(Throughput::Elements(1));
    let sink = rt.block_on(async { spawn(Sink { n: 0 }) });
    g.bench_function("round_trip", |b| {
        b.to_async(&rt)
            .iter(|| async { sink.call(SinkMsg::Flush).await.unwrap() })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = one_actor, one_actor_current_thread, many_actors, call_round_trip
}
criterion_main!(benches);
