//! Gateway configuration: every flag has an environment twin, and tests
//! build a [`Config`] value directly (`Config::default()` plus overrides).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use gamemesh_node::error::StartError;
use gamemesh_node::flags::{NodeFlags, NodeRole};

use crate::error::GatewayError;

/// Default client port.
pub const DEFAULT_CLIENT_PORT: u16 = 5000;
/// Default ZeroMQ port game servers send to.
pub const DEFAULT_P2P_PORT: u16 = 8001;
/// Default admin (metrics, health) port.
pub const DEFAULT_ADMIN_PORT: u16 = 9190;

/// What a gateway sets in the shared node flags.
#[derive(Debug, Clone, Copy, Default)]
pub struct GatewayRole;

impl NodeRole for GatewayRole {
    const ENV_PREFIX: &'static str = "GATEWAY";
    const DEFAULT_ADMIN_PORT: u16 = DEFAULT_ADMIN_PORT;
    const UNGUARDED: &'static str = "the P2P port trusts ANY peer that reaches it";
}

/// How a gateway is run.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "gateway",
    version,
    about = "gamemesh gateway: relays game clients' frames to game servers"
)]
pub struct Config {
    /// The flags every node takes (node id, heartbeat, admin port, cluster
    /// secret, ...), with `GATEWAY_` env twins.
    #[command(flatten)]
    pub node: NodeFlags<GatewayRole>,
    /// Interface clients connect to.
    #[arg(long, env = "GATEWAY_CLIENT_BIND", default_value = "0.0.0.0")]
    pub client_bind: String,
    /// TCP port clients connect to (0: any free port).
    #[arg(long, env = "GATEWAY_CLIENT_PORT", default_value_t = DEFAULT_CLIENT_PORT)]
    pub client_port: u16,
    /// TCP port for WebSocket clients (browsers, Node), on --client-bind;
    /// off unless set (0: any free port). One binary message carries one
    /// client body; every limit of the TCP port applies the same way.
    #[arg(long, env = "GATEWAY_WS_PORT")]
    pub ws_port: Option<u16>,
    /// PEM certificate chain for `wss://` on --ws-port (with
    /// --ws-tls-key). Without both, the WebSocket port is plain `ws://`,
    /// for use behind a TLS-terminating load balancer or on a LAN.
    #[arg(long, env = "GATEWAY_WS_TLS_CERT", value_name = "FILE.pem")]
    pub ws_tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --ws-tls-cert.
    #[arg(long, env = "GATEWAY_WS_TLS_KEY", value_name = "FILE.pem")]
    pub ws_tls_key: Option<PathBuf>,
    /// Interface of the ZeroMQ port game servers send to. Loopback by
    /// default: the internal port must not face the internet.
    #[arg(long, env = "GATEWAY_P2P_BIND", default_value = "127.0.0.1")]
    pub p2p_bind: String,
    /// ZeroMQ port game servers send to (0: any free port).
    #[arg(long, env = "GATEWAY_P2P_PORT", default_value_t = DEFAULT_P2P_PORT)]
    pub p2p_port: u16,
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
    /// is kicked. The byte bound (`--outbound-queue-bytes`) is the main
    /// limit; this one only caps floods of tiny frames, and is well above
    /// the packet burst so a client that reads but pipelines a burst of
    /// requests is not mistaken for a slow one.
    #[arg(long, env = "GATEWAY_OUTBOUND_QUEUE_FRAMES", default_value_t = 1024)]
    pub outbound_queue_frames: usize,
    /// Bytes queued for one client (replies waiting to be written, plus the
    /// batch being written) before it counts as a slow consumer and is
    /// kicked. The frame bound alone lets 64 replies of 64 KiB (4 MiB) pile
    /// up per socket; this bounds the memory a client that stops reading
    /// can pin. A single frame is always accepted into an empty queue, so a
    /// reply larger than this bound still gets through to a reading client.
    /// Envoy's edge guide uses 32 KiB per connection; 64 KiB holds one
    /// maximum-size frame.
    #[arg(long, env = "GATEWAY_OUTBOUND_QUEUE_BYTES", default_value_t = 65_536)]
    pub outbound_queue_bytes: usize,
    /// A socket not logged in (pinned to a session by a game server) this
    /// long after connecting is kicked (`PROTOCOL_ERROR`). Without it an
    /// attacker holds sockets open for the full idle timeout by sending
    /// heartbeats and never logging in. Applies only until the first login:
    /// a socket that logs out later stays open.
    #[arg(long, env = "GATEWAY_LOGIN_DEADLINE_SECS", default_value_t = 10)]
    pub login_deadline_secs: u64,
    /// Open client sockets at most; a socket beyond it is sent
    /// `Kicked{SERVER_UNAVAILABLE}` and closed at once, and counted. Keeps a
    /// connection flood from exhausting file descriptors and memory, so the
    /// players already connected keep playing. Keep it below the process's
    /// open-file limit minus the gateway's own descriptors.
    #[arg(long, env = "GATEWAY_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// New sockets per second from one source address (one IPv4 address, or
    /// one IPv6 /64) once its burst (--connect-burst-per-ip) is spent:
    /// sockets past the burst wait their turn at this pace, in accept
    /// order, and only one that would wait longer than --connect-queue-ms
    /// is refused (`Kicked{RATE_LIMITED}`). Many players share an address
    /// (a campus, a LAN party, a carrier's NAT) and all reconnect at once
    /// when a gateway restarts: 200/s lets 600 of them in within the first
    /// second and still holds one host far below --max-connections.
    #[arg(
        long,
        env = "GATEWAY_MAX_CONNECTS_PER_IP_PER_SEC",
        default_value_t = 200
    )]
    pub max_connects_per_ip_per_sec: u32,
    /// New sockets one source address may open at once before the pace of
    /// --max-connects-per-ip-per-sec applies. 400 lets a 200-player LAN
    /// party in twice over without waiting.
    #[arg(long, env = "GATEWAY_CONNECT_BURST_PER_IP", default_value_t = 400)]
    pub connect_burst_per_ip: u32,
    /// Longest a socket past its address's burst waits for its turn before
    /// it is refused instead (0: refuse at once). Bounds what one address
    /// can hold waiting: this times the rate (400 sockets by default).
    #[arg(long, env = "GATEWAY_CONNECT_QUEUE_MS", default_value_t = 2000)]
    pub connect_queue_ms: u64,
    /// Frames per second one connection may send, with bursts of twice
    /// that; a frame over it is not relayed and is answered
    /// `ErrorResponse{RATE_LIMITED}`. A game client sends a few frames per
    /// second; 100/s leaves room for bursts while stopping one socket from
    /// flooding the game servers. Per connection, so neighbours are never
    /// slowed by it.
    #[arg(long, env = "GATEWAY_MAX_PACKETS_PER_SEC", default_value_t = 100)]
    pub max_packets_per_sec: u32,
    /// A connection that has more than this many frames rate limited
    /// within 10 s is kicked (`PROTOCOL_ERROR`, "packet rate abuse"): a
    /// client that ignores `RATE_LIMITED` is a bot or broken, and answering
    /// its flood costs us as much as relaying it.
    #[arg(long, env = "GATEWAY_RATE_LIMIT_KICK_AFTER", default_value_t = 50)]
    pub rate_limit_kick_after: u32,
    /// A request relayed to a game server and not answered within this
    /// long is answered `ErrorResponse{UNAVAILABLE}` by the gateway (a late
    /// real answer is then dropped; the client retries with the same
    /// sequence id and gets the cached reply). A game server that stops
    /// altogether is declared DOWN after --peer-timeout-ms and its requests
    /// are answered at once, so this is the backstop for one that still
    /// heartbeats but does not answer. The default (5000) is above the peer
    /// timeout (3000) plus a heartbeat, so DOWN, which also moves the
    /// socket, comes first; and above the game server's slowest healthy
    /// answer (a Redis call bounded by its --redis-timeout-ms 1000, twice
    /// for an adoption).
    #[arg(long, env = "GATEWAY_REQUEST_TIMEOUT_MS", default_value_t = 5000)]
    pub request_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        // The flag defaults, written out so tests never read environment
        // variables; `defaults_match_the_flags` keeps the two in step.
        Self {
            node: NodeFlags::default(),
            client_bind: "0.0.0.0".into(),
            client_port: DEFAULT_CLIENT_PORT,
            ws_port: None,
            ws_tls_cert: None,
            ws_tls_key: None,
            p2p_bind: "127.0.0.1".into(),
            p2p_port: DEFAULT_P2P_PORT,
            game_servers: vec!["127.0.0.1:9001".into()],
            max_frame_bytes: gamemesh_proto::DEFAULT_MAX_FRAME_BYTES,
            idle_timeout_secs: 30,
            outbound_queue_frames: 1024,
            outbound_queue_bytes: 65_536,
            login_deadline_secs: 10,
            max_connections: 10_000,
            max_connects_per_ip_per_sec: 200,
            connect_burst_per_ip: 400,
            connect_queue_ms: 2000,
            max_packets_per_sec: 100,
            rate_limit_kick_after: 50,
            request_timeout_ms: 5000,
        }
    }
}

impl Config {
    /// Checks values that clap cannot, before anything is bound.
    pub fn validate(&self) -> Result<(), GatewayError> {
        let bad = |m: String| Err(StartError::Config(m).into());
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
        // Counts and times where 0 would leave the gateway serving
        // nobody; checked in flag order, so the first bad one is named.
        let zero = [
            ("--idle-timeout-secs", self.idle_timeout_secs == 0),
            ("--outbound-queue-frames", self.outbound_queue_frames == 0),
            ("--outbound-queue-bytes", self.outbound_queue_bytes == 0),
            ("--login-deadline-secs", self.login_deadline_secs == 0),
            ("--max-connections", self.max_connections == 0),
            (
                "--max-connects-per-ip-per-sec",
                self.max_connects_per_ip_per_sec == 0,
            ),
            ("--connect-burst-per-ip", self.connect_burst_per_ip == 0),
            ("--max-packets-per-sec", self.max_packets_per_sec == 0),
        ];
        if let Some((flag, _)) = zero.iter().find(|(_, is_zero)| *is_zero) {
            return bad(format!("{flag} must be at least 1"));
        }
        if let Err(e) = self.node.validate() {
            return bad(e.to_string());
        }
        if self.request_timeout_ms == 0 {
            return bad("--request-timeout-ms must be at least 1".into());
        }
        match (&self.ws_tls_cert, &self.ws_tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                return bad(
                    "--ws-tls-cert and --ws-tls-key go together: give both for wss://, or neither for ws://".into(),
                )
            }
            (Some(_), Some(_)) if self.ws_port.is_none() => {
                return bad("--ws-tls-cert and --ws-tls-key need --ws-port".into())
            }
            _ => {}
        }
        Ok(())
    }

    /// The request timeout as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The idle timeout as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// The login deadline as a duration.
    pub fn login_deadline(&self) -> Duration {
        Duration::from_secs(self.login_deadline_secs)
    }

    /// The connect queue bound as a duration.
    pub fn connect_queue(&self) -> Duration {
        Duration::from_millis(self.connect_queue_ms)
    }

    /// Frame burst per connection: twice the rate.
    pub fn packet_burst(&self) -> u32 {
        self.max_packets_per_sec.saturating_mul(2)
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
        assert_eq!(parsed.outbound_queue_frames, d.outbound_queue_frames);
        assert_eq!(parsed.outbound_queue_bytes, d.outbound_queue_bytes);
        assert_eq!(parsed.login_deadline_secs, d.login_deadline_secs);
        assert_eq!(parsed.max_connections, d.max_connections);
        assert_eq!(
            parsed.max_connects_per_ip_per_sec,
            d.max_connects_per_ip_per_sec
        );
        assert_eq!(parsed.connect_burst_per_ip, d.connect_burst_per_ip);
        assert_eq!(parsed.connect_queue_ms, d.connect_queue_ms);
        assert_eq!(parsed.max_packets_per_sec, d.max_packets_per_sec);
        assert_eq!(parsed.rate_limit_kick_after, d.rate_limit_kick_after);
        assert_eq!(parsed.request_timeout_ms, d.request_timeout_ms);
        assert_eq!(parsed.ws_port, d.ws_port);
        assert_eq!(parsed.ws_tls_cert, d.ws_tls_cert);
        assert_eq!(parsed.ws_tls_key, d.ws_tls_key);
        assert_eq!(parsed.node.admin_port, DEFAULT_ADMIN_PORT);
        assert_eq!(parsed.node.admin_port, d.node.admin_port);
        d.validate().unwrap();
    }

    #[test]
    fn websocket_tls_flags_go_together_and_need_the_port() {
        let half = Config {
            ws_port: Some(0),
            ws_tls_cert: Some("cert.pem".into()),
            ..Config::default()
        };
        let msg = half.validate().unwrap_err().to_string();
        assert!(msg.contains("--ws-tls-key"), "{msg}");
        let no_port = Config {
            ws_tls_cert: Some("cert.pem".into()),
            ws_tls_key: Some("key.pem".into()),
            ..Config::default()
        };
        let msg = no_port.validate().unwrap_err().to_string();
        assert!(msg.contains("--ws-port"), "{msg}");
        let parsed = Config::try_parse_from(["gateway", "--ws-port", "0"]).unwrap();
        assert_eq!(parsed.ws_port, Some(0));
        parsed.validate().unwrap();
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

    #[test]
    fn zero_limits_are_refused_with_the_flag_name() {
        type Case = (fn(&mut Config), &'static str);
        let cases: [Case; 11] = [
            (|c| c.idle_timeout_secs = 0, "--idle-timeout-secs"),
            (|c| c.outbound_queue_frames = 0, "--outbound-queue-frames"),
            (|c| c.request_timeout_ms = 0, "--request-timeout-ms"),
            (|c| c.node.link_sndhwm = 0, "--link-sndhwm"),
            (|c| c.node.link_rcvhwm = 0, "--link-rcvhwm"),
            (|c| c.outbound_queue_bytes = 0, "--outbound-queue-bytes"),
            (|c| c.login_deadline_secs = 0, "--login-deadline-secs"),
            (|c| c.max_connections = 0, "--max-connections"),
            (
                |c| c.max_connects_per_ip_per_sec = 0,
                "--max-connects-per-ip-per-sec",
            ),
            (|c| c.connect_burst_per_ip = 0, "--connect-burst-per-ip"),
            (|c| c.max_packets_per_sec = 0, "--max-packets-per-sec"),
        ];
        for (set, flag) in cases {
            let mut c = Config::default();
            set(&mut c);
            let msg = c.validate().unwrap_err().to_string();
            assert!(msg.contains(flag), "{msg}");
        }
    }
}
