//! The link alone, A/B: 64-byte payloads from link A to link B, echoed
//! back, in one process (each side on its own thread and runtime, as two
//! nodes would be), on loopback.
//!
//! Cases (each for `--secs`, default 3):
//! - `lockstep`: one payload in flight; round-trip p50/p99 and msgs/s.
//! - `pipelined`: one sender keeps 64 payloads in flight; msgs/s.
//! - `concurrent`: 8 sender tasks on a 2-worker runtime share 64 in
//!   flight; msgs/s (several threads send on one pipe at once).
//!
//! `--consumer simple` handles one event at a time (`recv`, `send`), as
//! the gateway and game server do today; `--consumer batch` takes a
//! wake-up's worth (`recv_many`) and answers it with one `send_many`, as
//! they can with the new link. Both build against the old link too
//! (`old_api.rs`), so A/B compares the transports under the same consumer.
//!
//! Each case also prints `cpu_us_per_msg`: the whole process's CPU time
//! (both links, their libzmq I/O threads, the runtimes) per round trip.
//! On a shared machine throughput follows the CPU share the scheduler
//! grants, which grows with the number of busy threads; CPU per message
//! does not, so compare both.
//!
//! `cargo bench -p gamemesh-transport --bench link -- --case all --secs 3`
#![allow(missing_docs)]

mod api;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gamemesh_transport::{Link, LinkConfig, LinkError, LinkEvent, NodeId, ZmqLink};

const A: NodeId = 1;
const B: NodeId = 2;
const WINDOW: usize = 64;
const SENDERS: usize = 8;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Consumer {
    Simple,
    Batch,
}

struct Args {
    case: String,
    secs: u64,
    consumer: Consumer,
}

fn args() -> Args {
    let mut a = Args {
        case: "all".into(),
        secs: 3,
        consumer: Consumer::Simple,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--case" => a.case = it.next().expect("--case NAME"),
            "--secs" => a.secs = it.next().and_then(|s| s.parse().ok()).expect("--secs N"),
            "--consumer" => {
                a.consumer = match it.next().as_deref() {
                    Some("simple") => Consumer::Simple,
                    Some("batch") => Consumer::Batch,
                    other => panic!("--consumer simple|batch, not {other:?}"),
                }
            }
            "--bench" => {} // cargo bench passes it
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// CPU time this process has used so far (all threads), from
/// `/proc/self/stat` (user + system, in clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // After the name: state(0) ... utime(11) stime(12).
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// CPU microseconds per message since `start`.
fn cpu_per_msg(start: Duration, msgs: u64) -> f64 {
    (cpu_time() - start).as_secs_f64() * 1e6 / msgs.max(1) as f64
}

fn payload(event: LinkEvent) -> Bytes {
    match event {
        LinkEvent::Message { payload, .. } => payload,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Sends, retrying while the pipe is full or still connecting.
async fn send_all(link: &ZmqLink, peer: NodeId, mut payloads: &[Bytes]) {
    while !payloads.is_empty() {
        match api::send_many(link, peer, payloads) {
            Ok(()) => return,
            Err((sent, LinkError::Full(_) | LinkError::Unreachable(_))) => {
                payloads = &payloads[sent..];
                tokio::task::yield_now().await;
            }
            Err((_, e)) => panic!("send failed: {e}"),
        }
    }
}

/// B: echoes everything back to A until the link closes.
fn spawn_echo(
    b: ZmqLink,
    mut rx: api::Receiver,
    consumer: Consumer,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut events = Vec::new();
            let mut replies = Vec::new();
            loop {
                if api::recv_many(&mut rx, &mut events).await == 0 {
                    return;
                }
                match consumer {
                    Consumer::Simple => {
                        for e in events.drain(..) {
                            send_all(&b, A, &[payload(e)]).await;
                        }
                    }
                    Consumer::Batch => {
                        replies.extend(events.drain(..).map(payload));
                        send_all(&b, A, &replies).await;
                        replies.clear();
                    }
                }
            }
        })
    })
}

/// A's side of the link, connected both ways (a reply came back).
async fn warm_up(a: &ZmqLink, rx: &mut api::Receiver) {
    let mut events = Vec::new();
    loop {
        let _ = a.send(B, Bytes::from_static(b"warm-up"));
        if let Ok(n) =
            tokio::time::timeout(Duration::from_millis(50), api::recv_many(rx, &mut events)).await
        {
            assert!(n > 0, "link closed");
            break;
        }
    }
    // Late replies to earlier warm-ups.
    while tokio::time::timeout(Duration::from_millis(100), api::recv_many(rx, &mut events))
        .await
        .is_ok()
    {}
}

fn body() -> Bytes {
    Bytes::from(vec![0x5a; 64])
}

async fn lockstep(a: &ZmqLink, rx: &mut api::Receiver, secs: u64) {
    let mut rtts = Vec::new();
    let mut events = Vec::new();
    let p = body();
    let cpu = cpu_time();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let t = Instant::now();
        send_all(a, B, std::slice::from_ref(&p)).await;
        while events.is_empty() {
            assert!(api::recv_many(rx, &mut events).await > 0);
        }
        events.clear();
        rtts.push(t.elapsed().as_nanos() as u64);
    }
    rtts.sort_unstable();
    let at = |q: f64| rtts[((rtts.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    println!(
        "case=lockstep msgs_per_s={:.0} p50_us={:.1} p99_us={:.1} cpu_us_per_msg={:.2}",
        rtts.len() as f64 / secs as f64,
        at(0.5),
        at(0.99),
        cpu_per_msg(cpu, rtts.len() as u64)
    );
}

async fn pipelined(a: &ZmqLink, rx: &mut api::Receiver, secs: u64, consumer: Consumer) {
    let p = body();
    let window: Vec<Bytes> = (0..WINDOW).map(|_| p.clone()).collect();
    send_all(a, B, &window).await;
    let mut events = Vec::new();
    let mut done = 0u64;
    let cpu = cpu_time();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        assert!(api::recv_many(rx, &mut events).await > 0);
        done += events.len() as u64;
        match consumer {
            Consumer::Simple => {
                for _ in events.drain(..) {
                    send_all(a, B, std::slice::from_ref(&p)).await;
                }
            }
            Consumer::Batch => {
                let n = events.len();
                events.clear();
                send_all(a, B, &window[..n.min(WINDOW)]).await;
            }
        }
    }
    println!(
        "case=pipelined msgs_per_s={:.0} cpu_us_per_msg={:.2}",
        done as f64 / secs as f64,
        cpu_per_msg(cpu, done)
    );
    drain(rx).await;
}

/// Reads what is still in flight, so the next case starts clean.
async fn drain(rx: &mut api::Receiver) {
    let mut events = Vec::new();
    while tokio::time::timeout(Duration::from_millis(200), api::recv_many(rx, &mut events))
        .await
        .is_ok()
    {
        events.clear();
    }
}

/// Several tasks send at once (on a 2-worker runtime) while one task
/// receives; a semaphore keeps `WINDOW` in flight in total.
fn concurrent(a: Arc<ZmqLink>, mut rx: api::Receiver, secs: u64) -> api::Receiver {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let credit = Arc::new(tokio::sync::Semaphore::new(WINDOW));
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let senders: Vec<_> = (0..SENDERS)
            .map(|_| {
                let (a, credit, stop) = (a.clone(), credit.clone(), stop.clone());
                tokio::spawn(async move {
                    let p = body();
                    while !stop.load(Ordering::Relaxed) {
                        credit.acquire().await.unwrap().forget();
                        send_all(&a, B, std::slice::from_ref(&p)).await;
                    }
                })
            })
            .collect();
        let receiver = {
            let (credit, stop, received) = (credit.clone(), stop.clone(), received.clone());
            tokio::spawn(async move {
                let mut events = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = tokio::time::timeout(
                        Duration::from_millis(100),
                        api::recv_many(&mut rx, &mut events),
                    )
                    .await
                    {
                        assert!(n > 0);
                        received.fetch_add(events.len() as u64, Ordering::Relaxed);
                        credit.add_permits(events.len());
                        events.clear();
                    }
                }
                rx
            })
        };
        let start = received.load(Ordering::Relaxed);
        let cpu = cpu_time();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let done = received.load(Ordering::Relaxed) - start;
        let cpu_us = cpu_per_msg(cpu, done);
        stop.store(true, Ordering::Relaxed);
        credit.add_permits(SENDERS);
        for s in senders {
            s.await.unwrap();
        }
        let mut rx = receiver.await.unwrap();
        println!(
            "case=concurrent msgs_per_s={:.0} cpu_us_per_msg={:.2}",
            done as f64 / secs as f64,
            cpu_us
        );
        drain(&mut rx).await;
        rx
    })
}

fn main() {
    let args = args();
    let (a, mut a_rx) = ZmqLink::bind(LinkConfig::new("bench", A, "127.0.0.1", 0)).unwrap();
    let (b, b_rx) = ZmqLink::bind(LinkConfig::new("bench", B, "127.0.0.1", 0)).unwrap();
    a.connect(B, b.local_endpoint()).unwrap();
    b.connect(A, a.local_endpoint()).unwrap();
    let echo = spawn_echo(b, b_rx, args.consumer);
    let want = |case: &str| args.case == "all" || args.case == case;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(warm_up(&a, &mut a_rx));
    if want("lockstep") {
        rt.block_on(lockstep(&a, &mut a_rx, args.secs));
    }
    if want("pipelined") {
        rt.block_on(pipelined(&a, &mut a_rx, args.secs, args.consumer));
    }
    drop(rt);
    if want("concurrent") {
        let a = Arc::new(a);
        drop(concurrent(a.clone(), a_rx, args.secs));
        a.shutdown();
    } else {
        a.shutdown();
    }
    // The echo thread owns B and runs until the process ends.
    drop(echo);
}
