//! The gateway's Prometheus metrics (names in docs/OPERATIONS.md, "Metrics").
//!
//! Every handle is registered once, when the gateway starts, so the hot
//! path only bumps an atomic: no name lookup and no label allocation per
//! frame. Gauges that would need a shared atomic per frame (bytes queued
//! for clients) are sampled on the heartbeat instead.

use gamemesh_node::kick_metrics::KickCounters;
use gamemesh_proto::client::KickReason;
use metrics::{counter, gauge, Counter, Gauge};

/// Handles of every gateway metric.
#[derive(Debug, Clone)]
pub struct GatewayMetrics {
    /// `gamemesh_gateway_connections_accepted_total`.
    pub accepted: Counter,
    /// `gamemesh_gateway_connections_refused_total{reason="gateway_full"}`.
    pub refused_full: Counter,
    /// `gamemesh_gateway_connections_refused_total{reason="ip_rate"}`.
    pub refused_ip_rate: Counter,
    /// `gamemesh_gateway_connections_paced_total`: sockets that waited for
    /// their slot in their address's connect pace.
    pub paced: Counter,
    /// `gamemesh_gateway_connections_open`.
    pub open: Gauge,
    /// `gamemesh_gateway_packets_in_total`: frames from clients.
    pub packets_in: Counter,
    /// `gamemesh_gateway_bytes_in_total`: their body bytes.
    pub bytes_in: Counter,
    /// `gamemesh_gateway_packets_out_total`: frames written to clients.
    pub packets_out: Counter,
    /// `gamemesh_gateway_bytes_out_total`: their body bytes.
    pub bytes_out: Counter,
    /// `gamemesh_gateway_rate_limited_total`: frames answered
    /// `RATE_LIMITED`.
    pub rate_limited: Counter,
    /// `gamemesh_gateway_relay_failures_total`: frames a game server's pipe
    /// did not take (answered `UNAVAILABLE`).
    pub relay_failures: Counter,
    /// `gamemesh_gateway_kicks_total{reason}`, by `KickReason` value.
    kicks: KickCounters,
    /// `gamemesh_gateway_game_servers_live`.
    pub game_servers_live: Gauge,
    /// `gamemesh_gateway_outbound_queued_bytes`: reply bytes waiting for
    /// clients, summed over sockets (sampled every heartbeat).
    pub outbound_queued_bytes: Gauge,
}

impl GatewayMetrics {
    /// Registers the handles with the process's recorder (install it
    /// first: handles registered before it record nowhere).
    pub fn register() -> Self {
        let refused = |reason: &'static str| counter!("gamemesh_gateway_connections_refused_total", "reason" => reason);
        Self {
            accepted: counter!("gamemesh_gateway_connections_accepted_total"),
            refused_full: refused("gateway_full"),
            refused_ip_rate: refused("ip_rate"),
            paced: counter!("gamemesh_gateway_connections_paced_total"),
            open: gauge!("gamemesh_gateway_connections_open"),
            packets_in: counter!("gamemesh_gateway_packets_in_total"),
            bytes_in: counter!("gamemesh_gateway_bytes_in_total"),
            packets_out: counter!("gamemesh_gateway_packets_out_total"),
            bytes_out: counter!("gamemesh_gateway_bytes_out_total"),
            rate_limited: counter!("gamemesh_gateway_rate_limited_total"),
            relay_failures: counter!("gamemesh_gateway_relay_failures_total"),
            kicks: KickCounters::register("gamemesh_gateway_kicks_total"),
            game_servers_live: gauge!("gamemesh_gateway_game_servers_live"),
            outbound_queued_bytes: gauge!("gamemesh_gateway_outbound_queued_bytes"),
        }
    }

    /// Counts one kick.
    pub fn kicked(&self, reason: KickReason) {
        self.kicks.kicked(reason);
    }
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::register()
    }
}
