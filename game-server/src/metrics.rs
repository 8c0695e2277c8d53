//! The game server's Prometheus metrics (names in docs/OPERATIONS.md, "Metrics").
//!
//! The handles are registered once per process, on first use, and kept in
//! a static: the hub, the middlewares, the Redis store and the mesh all
//! count without threading a handle through every constructor, and the hot
//! path only bumps an atomic (no name lookup, no label allocation). The
//! `metrics` recorder is process-wide anyway, so a static loses nothing;
//! [`crate::start`] installs the recorder before the first use.

use std::sync::OnceLock;

use gamemesh_node::kick_metrics::KickCounters;
use gamemesh_proto::client::KickReason;
use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

/// Packet kinds timed with their own label; any other kind (one a later
/// message adds before it is listed here) is timed as `other`.
const KINDS: [&str; 12] = [
    "login",
    "resume",
    "echo",
    "heartbeat",
    "logout",
    "chat_list_rooms",
    "chat_join",
    "chat_leave",
    "chat_say",
    "chat_whisper",
    "increment",
    "empty",
];

/// Handles of every game server metric.
#[derive(Debug)]
pub struct HubMetrics {
    /// `gamemesh_game_server_packets_in_total`: client frames from gateways.
    pub packets_in: Counter,
    /// `gamemesh_game_server_bytes_in_total`: their body bytes.
    pub bytes_in: Counter,
    /// `gamemesh_game_server_packets_out_total`: frames sent to clients.
    pub packets_out: Counter,
    /// `gamemesh_game_server_bytes_out_total`: their encoded bytes.
    pub bytes_out: Counter,
    /// `gamemesh_game_server_handler_seconds{kind}`, in [`KINDS`] order.
    handler: [Histogram; KINDS.len()],
    /// `gamemesh_game_server_handler_seconds{kind="other"}`.
    handler_other: Histogram,
    /// `gamemesh_game_server_logins_total{result="ok"}`.
    pub logins_ok: Counter,
    /// `gamemesh_game_server_logins_total{result="failed"}`.
    pub logins_failed: Counter,
    /// `gamemesh_game_server_resumes_total{result="ok"}`.
    pub resumes_ok: Counter,
    /// `gamemesh_game_server_resumes_total{result="failed"}`.
    pub resumes_failed: Counter,
    /// `gamemesh_game_server_duplicates_total`: re-sent sequence ids
    /// answered without running them.
    pub duplicates: Counter,
    /// `gamemesh_game_server_kicks_total{reason}`, by `KickReason` value.
    kicks: KickCounters,
    /// `gamemesh_game_server_mailbox_full_total`: frames refused because a
    /// connection actor's mailbox was full.
    pub mailbox_full: Counter,
    /// `gamemesh_game_server_sessions`: sessions owned here.
    pub sessions: Gauge,
    /// `gamemesh_game_server_connections`: client sockets with an actor here.
    pub connections: Gauge,
    /// `gamemesh_game_server_gateways_linked`.
    pub gateways_linked: Gauge,
    /// `gamemesh_redis_command_seconds`: every Redis call, including
    /// failed ones.
    pub redis_seconds: Histogram,
    /// `gamemesh_redis_errors_total{kind="error"}`.
    pub redis_errors: Counter,
    /// `gamemesh_redis_errors_total{kind="timeout"}`.
    pub redis_timeouts: Counter,
    /// `gamemesh_session_flush_seconds`: one flusher pass that had
    /// sessions to save. Above `--flush-interval-ms`, the flusher is
    /// behind and a crash loses more than one interval of progress.
    pub flush_seconds: Histogram,
    /// `gamemesh_session_flush_saves_total`: sessions the flusher wrote.
    pub flush_saves: Counter,
    /// `gamemesh_mesh_peers_up`: peer game servers live on the mesh.
    pub mesh_peers_up: Gauge,
    /// `gamemesh_mesh_peer_up_total`: a peer came up (first or again).
    pub mesh_peer_up: Counter,
    /// `gamemesh_mesh_peer_down_total`: a peer went silent.
    pub mesh_peer_down: Counter,
}

static HUB: OnceLock<HubMetrics> = OnceLock::new();

/// The game server's metric handles, registered on first use.
pub fn hub() -> &'static HubMetrics {
    HUB.get_or_init(HubMetrics::register)
}

impl HubMetrics {
    fn register() -> Self {
        let result = |name: &'static str, r: &'static str| counter!(name, "result" => r);
        Self {
            packets_in: counter!("gamemesh_game_server_packets_in_total"),
            bytes_in: counter!("gamemesh_game_server_bytes_in_total"),
            packets_out: counter!("gamemesh_game_server_packets_out_total"),
            bytes_out: counter!("gamemesh_game_server_bytes_out_total"),
            handler: KINDS.map(|k| histogram!("gamemesh_game_server_handler_seconds", "kind" => k)),
            handler_other: histogram!("gamemesh_game_server_handler_seconds", "kind" => "other"),
            logins_ok: result("gamemesh_game_server_logins_total", "ok"),
            logins_failed: result("gamemesh_game_server_logins_total", "failed"),
            resumes_ok: result("gamemesh_game_server_resumes_total", "ok"),
            resumes_failed: result("gamemesh_game_server_resumes_total", "failed"),
            duplicates: counter!("gamemesh_game_server_duplicates_total"),
            kicks: KickCounters::register("gamemesh_game_server_kicks_total"),
            mailbox_full: counter!("gamemesh_game_server_mailbox_full_total"),
            sessions: gauge!("gamemesh_game_server_sessions"),
            connections: gauge!("gamemesh_game_server_connections"),
            gateways_linked: gauge!("gamemesh_game_server_gateways_linked"),
            redis_seconds: histogram!("gamemesh_redis_command_seconds"),
            redis_errors: counter!("gamemesh_redis_errors_total", "kind" => "error"),
            redis_timeouts: counter!("gamemesh_redis_errors_total", "kind" => "timeout"),
            flush_seconds: histogram!("gamemesh_session_flush_seconds"),
            flush_saves: counter!("gamemesh_session_flush_saves_total"),
            mesh_peers_up: gauge!("gamemesh_mesh_peers_up"),
            mesh_peer_up: counter!("gamemesh_mesh_peer_up_total"),
            mesh_peer_down: counter!("gamemesh_mesh_peer_down_total"),
        }
    }

    /// The handler latency histogram of a packet kind
    /// ([`crate::request::HubRequest::kind`]).
    pub fn handler(&self, kind: &str) -> &Histogram {
        KINDS
            .iter()
            .position(|k| *k == kind)
            .map_or(&self.handler_other, |i| &self.handler[i])
    }

    /// Counts one kick.
    pub fn kicked(&self, reason: KickReason) {
        self.kicks.kicked(reason);
    }
}

/// A middleware's latency histogram,
/// `gamemesh_game_server_middleware_seconds{middleware}`.
pub fn middleware(name: &'static str) -> Histogram {
    histogram!("gamemesh_game_server_middleware_seconds", "middleware" => name)
}
