//! Gateway configuration: every flag has an environment twin, and tests
//! build a [`Config`] value directly (`Config::default()` plus overrides).

use std::time::Duration;

use clap::Parser;

use crate::error::GatewayError;

/// Default client port.
pub const DEFAULT_CLIENT_PORT: u16 = 5000;
/// Default ZeroMQ port game servers send to.
pub const DEFAULT_P2P_PORT: u16 = 8001;

/// How a gateway is run.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "gateway",
    version,
    about = "gamemesh gateway: relays game clients' frames to game servers"
)]
pub struct Config {
    /// This gateway's node id, unique among gateways.
    #[arg(long, env = "GATEWAY_NODE_ID", default_value_t = 1)]
    pub node_id: u64,
    /// Interface clients connect to.
    #[arg(long, env = "GATEWAY_CLIENT_BIND", default_value = "0.0.0.0")]
    pub client_bind: String,
    /// TCP port clients connect to (0: any free port).
    #[arg(long, env = "GATEWAY_CLIENT_PORT", default_value_t = DEFAULT_CLIENT_PORT)]
    pub client_port: u16,
    /// Interface of the ZeroMQ port game servers send to. Loopback by
    /// default: the internal port must not face the internet.
    #[arg(long, env = "GATEWAY_P2P_BIND", default_value = "127.0.0.1")]
    pub p2p_bind: String,
    /// ZeroMQ port game servers send to (0: any free port).
    #[arg(long, env = "GATEWAY_P2P_PORT", default_value_t = DEFAULT_P2P_PORT)]
    pub p2p_port: u16,
    /// Host name game servers use to reach this gateway's P2P port.
    #[arg(long, env = "GATEWAY_ADVERTISE_HOST", default_value = "127.0.0.1")]
    pub advertise_host: String,
    /// Game servers to link to at start, `host:port` of their P2P ports,
    /// comma separated. A listed game server that starts later is linked
    /// as soon as it answers.
    #[arg(
        long,
        env = "GAME_SERVERS",
        value_delimiter = ',',
        default_value = "127.0.0.1:9001"
    )]
    pub game_servers: Vec<String>,
    /// Largest frame body accepted from a client, in bytes.
    #[arg(long, env = "GATEWAY_MAX_FRAME_BYTES", default_value_t = gamemesh_proto::DEFAULT_MAX_FRAME_BYTES)]
    pub max_frame_bytes: usize,
    /// A connection with no complete frame for this long is kicked.
    #[arg(long, env = "GATEWAY_IDLE_TIMEOUT_SECS", default_value_t = 30)]
    pub idle_timeout_secs: u64,
    /// Frames queued for one client before it counts as a slow consumer and
    /// is kicked.
    #[arg(long, env = "GATEWAY_OUTBOUND_QUEUE_FRAMES", default_value_t = 64)]
    pub outbound_queue_frames: usize,
    /// Interval of the hello/heartbeat sent to each game server.
    #[arg(long, env = "GATEWAY_HEARTBEAT_MS", default_value_t = 1000)]
    pub heartbeat_ms: u64,
    /// A game server silent for this long is declared down.
    #[arg(long, env = "GATEWAY_PEER_TIMEOUT_MS", default_value_t = 3000)]
    pub peer_timeout_ms: u64,
    /// Longest wait for connections to close on shutdown.
    #[arg(long, env = "GATEWAY_SHUTDOWN_GRACE_SECS", default_value_t = 5)]
    pub shutdown_grace_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        // The flag defaults, written out so tests never read environment
        // variables; `defaults_match_the_flags` keeps the two in step.
        Self {
            node_id: 1,
            client_bind: "0.0.0.0".into(),
            client_port: DEFAULT_CLIENT_PORT,
            p2p_bind: "127.0.0.1".into(),
            p2p_port: DEFAULT_P2P_PORT,
            advertise_host: "127.0.0.1".into(),
            game_servers: vec!["127.0.0.1:9001".into()],
            max_frame_bytes: gamemesh_proto::DEFAULT_MAX_FRAME_BYTES,
            idle_timeout_secs: 30,
            outbound_queue_frames: 64,
            heartbeat_ms: 1000,
            peer_timeout_ms: 3000,
            shutdown_grace_secs: 5,
        }
    }
}

impl Config {
    /// Checks values that clap cannot, before anything is bound.
    pub fn validate(&self) -> Result<(), GatewayError> {
        let bad = |m: String| Err(GatewayError::Config(m));
        if self.max_frame_bytes == 0 || self.max_frame_bytes > 16 * 1024 * 1024 {
            return bad(format!(
                "--max-frame-bytes must be between 1 and 16777216, not {}",
                self.max_frame_bytes
            ));
        }
        if self.game_servers.is_empty() {
            return bad("--game-servers needs at least one host:port".into());
        }
        for gs in &self.game_servers {
            let ok = gs
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok {
                return bad(format!("--game-servers entry {gs:?} is not host:port"));
            }
        }
        if self.idle_timeout_secs == 0 {
            return bad("--idle-timeout-secs must be at least 1".into());
        }
        if self.outbound_queue_frames == 0 {
            return bad("--outbound-queue-frames must be at least 1".into());
        }
        if self.heartbeat_ms == 0 || self.peer_timeout_ms <= self.heartbeat_ms {
            return bad("--peer-timeout-ms must be larger than --heartbeat-ms (> 0)".into());
        }
        Ok(())
    }

    /// The idle timeout as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_flags() {
        let parsed = Config::try_parse_from(["gateway"]).unwrap();
        let d = Config::default();
        assert_eq!(parsed.client_port, d.client_port);
        assert_eq!(parsed.p2p_port, d.p2p_port);
        assert_eq!(parsed.game_servers, d.game_servers);
        assert_eq!(parsed.max_frame_bytes, d.max_frame_bytes);
        assert_eq!(parsed.idle_timeout_secs, d.idle_timeout_secs);
        d.validate().unwrap();
    }

    #[test]
    fn bad_game_server_list_is_explained() {
        let c = Config {
            game_servers: vec!["nonsense".into()],
            ..Config::default()
        };
        let msg = c.validate().unwrap_err().to_string();
        assert!(msg.contains("--game-servers"), "{msg}");
    }
}
