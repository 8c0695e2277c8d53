//! Kill-to-served: how long after each fault every session is served again.
//!
//! The script that breaks things (`scripts/chaos.sh`, `scripts/soak.sh`)
//! appends one line per fault to a file, `<unix ms> <name>`, written right
//! before it acts (`date +%s%3N`: the script and this client share the
//! machine's clock). A task here reads new lines as they come
//! ([`watch`]); each session, after each answered request, settles the
//! faults it has not settled yet ([`Cursor::answered`]): its kill-to-served
//! for a fault is the time from the fault until the answer to its first
//! request *started* after it. That is "its next request is answered", for
//! every session, hit or not: the issue's "time from the kill until all
//! clients are served again" is the largest of them.
//!
//! Faults of the same name (a soak repeats its schedule) are pooled in the
//! table: p50, p99 and max over every session of every occurrence.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// How often the faults file is read for new lines.
const POLL: Duration = Duration::from_millis(10);

/// Answers a session remembers, so a fault it learns of late (one poll
/// after it happened) still finds the first request started after it.
const RECENT: usize = 64;

/// Now, in Unix milliseconds (the faults file's clock).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One fault the script reported.
#[derive(Debug)]
struct Fault {
    /// Its name, as the script wrote it ("kill -9 game server 1").
    name: String,
    /// When, in Unix ms.
    at_ms: u64,
    /// Kill-to-served of each session that settled it, in ms.
    served_ms: Mutex<Vec<u64>>,
}

/// The faults seen so far, shared by the watcher and the sessions.
#[derive(Debug, Default)]
pub struct Faults {
    /// In the order the script wrote them (their times increase).
    list: RwLock<Vec<Arc<Fault>>>,
}

impl Faults {
    fn push(&self, name: String, at_ms: u64) {
        self.list
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::new(Fault {
                name,
                at_ms,
                served_ms: Mutex::new(Vec::new()),
            }));
    }

    fn get(&self, i: usize) -> Option<Arc<Fault>> {
        self.list
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(i)
            .cloned()
    }

    /// The table rows, one per fault name in order of first occurrence.
    /// `sessions` is how many sessions ran: a fault some of them never
    /// settled (the run ended first, or they gave up) says how many.
    pub fn summary(&self, sessions: usize) -> Vec<FaultSummary> {
        let list = self.list.read().unwrap_or_else(|p| p.into_inner());
        let mut order: Vec<String> = Vec::new();
        let mut pooled: BTreeMap<String, (u64, Vec<u64>, u64)> = BTreeMap::new();
        for f in list.iter() {
            let served = f.served_ms.lock().unwrap_or_else(|p| p.into_inner());
            let entry = pooled.entry(f.name.clone()).or_insert_with(|| {
                order.push(f.name.clone());
                (0, Vec::new(), 0)
            });
            entry.0 += 1;
            entry.1.extend(served.iter().copied());
            entry.2 += sessions.saturating_sub(served.len()) as u64;
        }
        order
            .into_iter()
            .filter_map(|name| {
                let (times, mut ms, unserved) = pooled.remove(&name)?;
                ms.sort_unstable();
                Some(FaultSummary {
                    fault: name,
                    times,
                    samples: ms.len() as u64,
                    unserved,
                    p50_ms: percentile(&ms, 50),
                    p99_ms: percentile(&ms, 99),
                    max_ms: ms.last().copied().unwrap_or(0),
                })
            })
            .collect()
    }
}

/// Kill-to-served of one fault name, pooled over its occurrences.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FaultSummary {
    /// The fault's name.
    pub fault: String,
    /// How many times it happened.
    pub times: u64,
    /// Sessions served after it (summed over occurrences).
    pub samples: u64,
    /// Sessions that were never served after it before the run ended.
    pub unserved: u64,
    /// Kill-to-served, 50th percentile, ms.
    pub p50_ms: u64,
    /// 99th percentile, ms.
    pub p99_ms: u64,
    /// Largest, ms.
    pub max_ms: u64,
}

/// The `p`th percentile (nearest rank) of `sorted`; 0 when empty.
fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// The faults table (markdown, like the chaos table).
pub fn table(rows: &[FaultSummary]) -> String {
    let mut t = format!(
        "| {:<34} | {:>5} | {:>8} | {:>8} | {:>8} | {:>8} | {:>8} |\n",
        "fault (kill-to-served, ms)", "times", "sessions", "unserved", "p50", "p99", "max"
    );
    t.push_str(&format!(
        "|{}|{}|{}|{}|{}|{}|{}|\n",
        "-".repeat(36),
        "-".repeat(7),
        "-".repeat(10),
        "-".repeat(10),
        "-".repeat(10),
        "-".repeat(10),
        "-".repeat(10)
    ));
    for r in rows {
        t.push_str(&format!(
            "| {:<34} | {:>5} | {:>8} | {:>8} | {:>8} | {:>8} | {:>8} |\n",
            r.fault, r.times, r.samples, r.unserved, r.p50_ms, r.p99_ms, r.max_ms
        ));
    }
    t
}

/// Reads `path` every [`POLL`] until `stop`, adding each new complete line
/// `<unix ms> <name>` to `faults`. A missing file is no fault yet.
pub async fn watch(path: PathBuf, faults: Arc<Faults>, stop: tokio_util::sync::CancellationToken) {
    let mut read = 0usize;
    loop {
        if let Ok(text) = tokio::fs::read_to_string(&path).await {
            let complete = text.rfind('\n').map_or(0, |i| i + 1);
            if complete > read {
                for line in text[read..complete].lines() {
                    if let Some((at, name)) = line.trim().split_once(' ') {
                        if let Ok(at_ms) = at.parse() {
                            faults.push(name.trim().to_string(), at_ms);
                        }
                    }
                }
                read = complete;
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// One session's place in the fault list and its last answers.
#[derive(Debug, Default)]
pub struct Cursor {
    /// Faults this session has settled (a prefix of the list).
    settled: usize,
    /// (started, answered) Unix ms of its last answered requests.
    recent: VecDeque<(u64, u64)>,
}

impl Cursor {
    /// Records an answer to a request started at `started_ms` and settles
    /// every fault it can: those with a request started after them among
    /// the recent answers.
    pub fn answered(&mut self, faults: &Faults, started_ms: u64) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((started_ms, now_ms()));
        while let Some(f) = faults.get(self.settled) {
            let Some(&(_, answered)) = self.recent.iter().find(|(s, _)| *s >= f.at_ms) else {
                return;
            };
            f.served_ms
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(answered.saturating_sub(f.at_ms));
            self.settled += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_is_settled_by_the_first_request_started_after_it() {
        let faults = Faults::default();
        let mut c = Cursor::default();
        let t0 = now_ms();
        c.answered(&faults, t0 - 50); // before the fault
        faults.push("kill".into(), t0 - 40);
        c.answered(&faults, t0 - 45); // started before it: does not settle
        assert_eq!(faults.summary(1)[0].samples, 0);
        c.answered(&faults, t0 - 30); // started after it
        let s = faults.summary(1);
        assert_eq!((s[0].samples, s[0].unserved), (1, 0));
        assert!(s[0].max_ms >= 40, "{s:?}");
        // A second occurrence pools under the same name.
        faults.push("kill".into(), now_ms());
        let s = faults.summary(2);
        assert_eq!((s[0].times, s[0].samples, s[0].unserved), (2, 1, 3));
        assert!(table(&s).contains("| kill"));
    }
}
