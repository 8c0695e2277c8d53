//! `top`: a live view of a cluster from its nodes' admin ports. Every
//! interval it scrapes each `/metrics`, and prints one line per node:
//! role, connections, sessions, packets per second (from the counters'
//! change since the last scrape) and the p99 handler latency over that
//! interval (from the `gamemesh_game_server_handler_seconds` buckets).
//!
//! [`scrape`] and [`Scrape`] are also what the integration tests use to
//! read metrics over real HTTP.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a node could not be scraped.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// No connection, or it broke.
    #[error("cannot reach the admin port {addr}: {source}")]
    Io {
        /// The admin address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("the admin port {addr} did not answer within {timeout:?}")]
    Timeout {
        /// The admin address.
        addr: String,
        /// The bound.
        timeout: Duration,
    },
    /// Not a 200 answer.
    #[error("{addr}{path} answered: {status}")]
    Status {
        /// The admin address.
        addr: String,
        /// The path asked for.
        path: String,
        /// The status line.
        status: String,
    },
}

/// One HTTP/1.0 GET of `path` on the admin port `addr`: the status code and
/// the body. The admin port answers a handful of small documents, so one
/// request per connection is all a scraper needs.
pub async fn get(addr: &str, path: &str, timeout: Duration) -> Result<(u16, String), ScrapeError> {
    let io = |source| ScrapeError::Io {
        addr: addr.to_string(),
        source,
    };
    let fetch = async {
        let mut stream = TcpStream::connect(addr).await.map_err(io)?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .map_err(io)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.map_err(io)?;
        Ok(String::from_utf8_lossy(&raw).into_owned())
    };
    let text = tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| ScrapeError::Timeout {
            addr: addr.to_string(),
            timeout,
        })??;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status_line = head.lines().next().unwrap_or_default();
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_string()))
}

/// Scrapes `/metrics` from the admin port `addr`.
pub async fn scrape(addr: &str, timeout: Duration) -> Result<Scrape, ScrapeError> {
    match get(addr, "/metrics", timeout).await? {
        (200, body) => Ok(Scrape::parse(&body)),
        (code, body) => Err(ScrapeError::Status {
            addr: addr.to_string(),
            path: "/metrics".into(),
            status: format!("{code} {}", body.trim()),
        }),
    }
}

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name (`gamemesh_gateway_packets_in_total`).
    pub name: String,
    /// The label set as written, without braces (`kind="echo",le="0.001"`).
    pub labels: String,
    /// The value.
    pub value: f64,
}

/// The samples of one scrape.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// Every sample, in the order served.
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// Reads the Prometheus text format (comments and malformed lines are
    /// skipped).
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let value = value.parse().ok()?;
                let (name, labels) = match series.split_once('{') {
                    Some((n, rest)) => (n, rest.trim_end_matches('}')),
                    None => (series, ""),
                };
                Some(Sample {
                    name: name.to_string(),
                    labels: labels.to_string(),
                    value,
                })
            })
            .collect();
        Self { samples }
    }

    /// Whether any series of `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }

    /// The sum of every series of `name` whose labels contain `label`
    /// (e.g. `result="ok"`; `""` matches all). 0 when there is none.
    pub fn sum(&self, name: &str, label: &str) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name && s.labels.contains(label))
            .map(|s| s.value)
            .sum()
    }

    /// The cumulative buckets of histogram `name` summed over its other
    /// labels, as `(upper bound, count)` sorted by bound.
    pub fn buckets(&self, name: &str) -> Vec<(f64, f64)> {
        let bucket = format!("{name}_bucket");
        let mut by_le: HashMap<String, f64> = HashMap::new();
        for s in self.samples.iter().filter(|s| s.name == bucket) {
            if let Some(le) = s
                .labels
                .split(',')
                .find_map(|l| l.strip_prefix("le=\""))
                .map(|l| l.trim_end_matches('"').to_string())
            {
                *by_le.entry(le).or_default() += s.value;
            }
        }
        let mut out: Vec<(f64, f64)> = by_le
            .into_iter()
            .map(|(le, n)| (le.parse().unwrap_or(f64::INFINITY), n))
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }
}

/// The `q` quantile of the observations that went into histogram buckets
/// between two scrapes (`before` may be empty): the upper bound of the
/// first bucket that holds it, the usual bucket estimate. `None` when
/// nothing was observed in between.
pub fn quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let earlier = |le: f64| {
        before
            .iter()
            .find(|(b, _)| *b == le)
            .map_or(0.0, |(_, n)| *n)
    };
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| (*le, n - earlier(*le)))
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    delta
        .iter()
        .find(|(_, n)| *n >= q * total)
        .map(|(le, _)| *le)
}

/// One node's numbers for a `top` line.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLine {
    /// Admin address.
    pub addr: String,
    /// `gateway`, `game-server`, `both` (nodes in one process) or `down`.
    pub role: &'static str,
    /// Open client connections (gateway sockets, game server actors).
    pub connections: f64,
    /// Sessions owned (game servers).
    pub sessions: f64,
    /// Client packets in per second since the last scrape.
    pub packets_per_sec: Option<f64>,
    /// p99 handler latency since the last scrape, in milliseconds.
    pub p99_ms: Option<f64>,
    /// Linked peers: game servers (gateway) or gateways (game server).
    pub linked: f64,
}

const HANDLER: &str = "gamemesh_game_server_handler_seconds";

/// Packets a node counts coming in from clients, whatever its role.
fn packets_in(s: &Scrape) -> f64 {
    s.sum("gamemesh_gateway_packets_in_total", "")
        + s.sum("gamemesh_game_server_packets_in_total", "")
}

/// The `top` line of one node from its last two scrapes.
pub fn node_line(
    addr: &str,
    previous: Option<&(Instant, Scrape)>,
    now: Option<&(Instant, Scrape)>,
) -> NodeLine {
    let Some((t, s)) = now else {
        return NodeLine {
            addr: addr.to_string(),
            role: "down",
            connections: 0.0,
            sessions: 0.0,
            packets_per_sec: None,
            p99_ms: None,
            linked: 0.0,
        };
    };
    let gateway = s.has("gamemesh_gateway_packets_in_total");
    let game_server = s.has("gamemesh_game_server_packets_in_total");
    let role = match (gateway, game_server) {
        (true, true) => "both",
        (true, false) => "gateway",
        (false, true) => "game-server",
        (false, false) => "unknown",
    };
    let (packets_per_sec, p99_ms) = match previous {
        Some((t0, s0)) => {
            let secs = t.duration_since(*t0).as_secs_f64().max(1e-3);
            (
                Some((packets_in(s) - packets_in(s0)).max(0.0) / secs),
                quantile(&s0.buckets(HANDLER), &s.buckets(HANDLER), 0.99).map(|v| v * 1000.0),
            )
        }
        None => (None, None),
    };
    NodeLine {
        addr: addr.to_string(),
        role,
        connections: s.sum("gamemesh_gateway_connections_open", "")
            + s.sum("gamemesh_game_server_connections", ""),
        sessions: s.sum("gamemesh_game_server_sessions", ""),
        packets_per_sec,
        p99_ms,
        linked: s.sum("gamemesh_gateway_game_servers_live", "")
            + s.sum("gamemesh_game_server_gateways_linked", ""),
    }
}

/// The table `top` prints for `lines`.
pub fn render(lines: &[NodeLine]) -> String {
    let up = lines.iter().filter(|l| l.role != "down").count();
    let mut out = format!(
        "gamemesh top: {up}/{} nodes up, {} sessions, {:.0} packets/s\n\n",
        lines.len(),
        lines.iter().map(|l| l.sessions).sum::<f64>(),
        lines.iter().filter_map(|l| l.packets_per_sec).sum::<f64>()
    );
    let _ = writeln!(
        out,
        "{:<22} {:<12} {:>8} {:>9} {:>10} {:>10} {:>7}",
        "ADMIN", "ROLE", "CONNS", "SESSIONS", "PKTS/S", "P99 MS", "LINKED"
    );
    let opt = |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |v| format!("{v:.prec$}"));
    for l in lines {
        let _ = writeln!(
            out,
            "{:<22} {:<12} {:>8.0} {:>9.0} {:>10} {:>10} {:>7.0}",
            l.addr,
            l.role,
            l.connections,
            l.sessions,
            opt(l.packets_per_sec, 0),
            opt(l.p99_ms, 3),
            l.linked
        );
    }
    out
}

/// Runs `top` over `admins` every `interval`, `count` times (forever when
/// `None`). On a terminal each refresh replaces the last.
pub async fn run(
    admins: &[String],
    interval: Duration,
    count: Option<u64>,
) -> anyhow::Result<bool> {
    anyhow::ensure!(
        !admins.is_empty(),
        "give the admin ports to watch with --admin host:port,..."
    );
    let tty = std::io::stdout().is_terminal();
    let timeout = interval.max(Duration::from_millis(500));
    let mut previous: Vec<Option<(Instant, Scrape)>> = vec![None; admins.len()];
    let mut tick = tokio::time::interval(interval);
    let mut shown = 0u64;
    while count.is_none_or(|c| shown < c) {
        tick.tick().await;
        let scrapes = futures::future::join_all(admins.iter().map(|a| scrape(a, timeout))).await;
        let now = Instant::now();
        let mut lines = Vec::with_capacity(admins.len());
        for (i, r) in scrapes.into_iter().enumerate() {
            let current = r.ok().map(|s| (now, s));
            lines.push(node_line(
                &admins[i],
                previous[i].as_ref(),
                current.as_ref(),
            ));
            previous[i] = current;
        }
        if tty {
            // Clear the screen and go home, so the table refreshes in place.
            print!("\x1b[2J\x1b[H");
        }
        println!("{}", render(&lines));
        shown += 1;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE x counter\n\
        gamemesh_gateway_packets_in_total 10\n\
        gamemesh_game_server_handler_seconds_bucket{kind=\"echo\",le=\"0.001\"} 90\n\
        gamemesh_game_server_handler_seconds_bucket{kind=\"echo\",le=\"0.01\"} 99\n\
        gamemesh_game_server_handler_seconds_bucket{kind=\"echo\",le=\"+Inf\"} 100\n\
        gamemesh_game_server_handler_seconds_bucket{kind=\"login\",le=\"0.001\"} 0\n\
        gamemesh_game_server_handler_seconds_bucket{kind=\"login\",le=\"0.01\"} 0\n\
        gamemesh_game_server_handler_seconds_bucket{kind=\"login\",le=\"+Inf\"} 0\n\
        gamemesh_game_server_logins_total{result=\"ok\"} 3\n\
        gamemesh_game_server_logins_total{result=\"failed\"} 1\n";

    #[test]
    fn parses_sums_and_buckets() {
        let s = Scrape::parse(TEXT);
        assert_eq!(s.sum("gamemesh_gateway_packets_in_total", ""), 10.0);
        assert_eq!(
            s.sum("gamemesh_game_server_logins_total", "result=\"ok\""),
            3.0
        );
        assert_eq!(s.sum("gamemesh_game_server_logins_total", ""), 4.0);
        let b = s.buckets(HANDLER);
        assert_eq!(b, vec![(0.001, 90.0), (0.01, 99.0), (f64::INFINITY, 100.0)]);
    }

    #[test]
    fn quantile_is_over_the_interval_only() {
        let after = [(0.001, 190.0), (0.01, 199.0), (f64::INFINITY, 200.0)];
        // Everything before the interval was fast; the 100 new ones: 90
        // under 1 ms, 9 under 10 ms, 1 above.
        let before = [(0.001, 100.0), (0.01, 100.0), (f64::INFINITY, 100.0)];
        assert_eq!(quantile(&before, &after, 0.99), Some(0.01));
        assert_eq!(quantile(&before, &after, 0.5), Some(0.001));
        assert_eq!(quantile(&after, &after, 0.99), None, "nothing new");
    }
}
