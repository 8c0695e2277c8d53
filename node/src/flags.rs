//! The flags every cluster node takes, declared once: a binary's `Config`
//! flattens [`NodeFlags`] (`#[command(flatten)] pub node:
//! NodeFlags<MyRole>`) and its [`NodeRole`] says what differs: the prefix
//! of the environment twins (`GATEWAY_NODE_ID`, `GAME_SERVER_NODE_ID`),
//! the admin port's default, and which ports a missing cluster secret
//! leaves open. The long flag names (and so the config file keys) are the
//! field names; `--cluster-secret` is `CLUSTER_SECRET` on every node.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::time::Duration;

use clap::Args;
use gamemesh_proto::cluster_auth::ClusterSecret;
use gamemesh_transport::{LinkConfig, LinkReceiver, ZmqLink, DEFAULT_RCVHWM, DEFAULT_SNDHWM};

use crate::error::StartError;
use crate::LogFormat;

/// What one kind of node sets in the shared flags.
pub trait NodeRole: Clone + Debug + Default + Send + Sync + 'static {
    /// Prefix of the environment twins: `GATEWAY` gives `GATEWAY_NODE_ID`.
    const ENV_PREFIX: &'static str;
    /// Default of `--admin-port`.
    const DEFAULT_ADMIN_PORT: u16;
    /// What is open to anyone without `--cluster-secret`, completing "No
    /// --cluster-secret set: ..." (e.g. "the P2P port trusts ANY peer that
    /// reaches it").
    const UNGUARDED: &'static str;
}

fn env<R: NodeRole>(name: &str) -> String {
    format!("{}_{name}", R::ENV_PREFIX)
}

/// The flags a gateway and a game server share.
#[derive(Debug, Clone, Args)]
pub struct NodeFlags<R: NodeRole> {
    /// This node's id, unique among the nodes of its kind (gateways, or
    /// game servers, where it must not be 0).
    #[arg(long, env = env::<R>("NODE_ID"), default_value_t = 1)]
    pub node_id: u64,
    /// Host name the other nodes use to reach this node's ZeroMQ ports.
    #[arg(long, env = env::<R>("ADVERTISE_HOST"), default_value = "127.0.0.1")]
    pub advertise_host: String,
    /// Interval of the hellos (heartbeats) sent to every linked node.
    #[arg(long, env = env::<R>("HEARTBEAT_MS"), default_value_t = 1000)]
    pub heartbeat_ms: u64,
    /// A linked node silent for this long is declared down (on a game
    /// server, the sockets of a gateway declared down count as
    /// disconnected).
    #[arg(long, env = env::<R>("PEER_TIMEOUT_MS"), default_value_t = 3000)]
    pub peer_timeout_ms: u64,
    /// Longest wait on shutdown for the work in hand: connections to close
    /// (gateway), sessions to be saved (game server).
    #[arg(long, env = env::<R>("SHUTDOWN_GRACE_SECS"), default_value_t = 5)]
    pub shutdown_grace_secs: u64,
    /// Interface of the admin port (`/metrics`, `/healthz`, `/readyz`).
    /// Loopback by default: metrics are for the operator, not the internet.
    #[arg(long, env = env::<R>("ADMIN_BIND"), default_value = "127.0.0.1")]
    pub admin_bind: String,
    /// HTTP admin port: Prometheus `/metrics`, `/healthz` (alive) and
    /// `/readyz` (ready for traffic: a gateway with a game server linked, a
    /// game server with Redis answering and not draining) (0: any free
    /// port).
    #[arg(long, env = env::<R>("ADMIN_PORT"), default_value_t = R::DEFAULT_ADMIN_PORT)]
    pub admin_port: u16,
    /// Log line format: `text` for people, `json` for log shippers.
    /// `RUST_LOG` picks what is logged.
    #[arg(long, env = env::<R>("LOG_FORMAT"), value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Shared secret every gateway and game server of the cluster holds:
    /// hellos on the internal ports (P2P, mesh) prove it, and nothing from
    /// an unproven peer is acted on. Unset: any peer that reaches those
    /// ports is trusted (development).
    #[arg(long, env = "CLUSTER_SECRET", hide_env_values = true, value_parser = ClusterSecret::parse)]
    pub cluster_secret: Option<ClusterSecret>,
    /// Messages one outbound ZeroMQ pipe (to one linked node) holds; beyond
    /// it a send fails (a gateway answers the frame `UNAVAILABLE`). See
    /// `gamemesh_transport::DEFAULT_SNDHWM` and SECURITY.md.
    #[arg(long, env = env::<R>("LINK_SNDHWM"), default_value_t = DEFAULT_SNDHWM)]
    pub link_sndhwm: i32,
    /// Messages one inbound ZeroMQ pipe (from one linked node) holds.
    #[arg(long, env = env::<R>("LINK_RCVHWM"), default_value_t = DEFAULT_RCVHWM)]
    pub link_rcvhwm: i32,
    /// Which kind of node these are the flags of.
    #[arg(skip)]
    pub role: PhantomData<R>,
}

impl<R: NodeRole> Default for NodeFlags<R> {
    fn default() -> Self {
        // The flag defaults, written out so tests never read environment
        // variables; `defaults_match_the_flags` keeps the two in step.
        Self {
            node_id: 1,
            advertise_host: "127.0.0.1".into(),
            heartbeat_ms: 1000,
            peer_timeout_ms: 3000,
            shutdown_grace_secs: 5,
            admin_bind: "127.0.0.1".into(),
            admin_port: R::DEFAULT_ADMIN_PORT,
            log_format: LogFormat::Text,
            cluster_secret: None,
            link_sndhwm: DEFAULT_SNDHWM,
            link_rcvhwm: DEFAULT_RCVHWM,
            role: PhantomData,
        }
    }
}

/// A shared flag whose value cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadNodeFlag(pub &'static str);

impl<R: NodeRole> NodeFlags<R> {
    /// Checks what clap cannot, before anything is bound.
    pub fn validate(&self) -> Result<(), BadNodeFlag> {
        if self.link_sndhwm < 1 || self.link_rcvhwm < 1 {
            // 0 would mean "no limit" to libzmq: unbounded memory.
            return Err(BadNodeFlag(
                "--link-sndhwm and --link-rcvhwm must be at least 1",
            ));
        }
        if self.heartbeat_ms == 0 || self.peer_timeout_ms <= self.heartbeat_ms {
            return Err(BadNodeFlag(
                "--peer-timeout-ms must be larger than --heartbeat-ms (> 0)",
            ));
        }
        Ok(())
    }

    /// `--heartbeat-ms` as a duration.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    /// `--peer-timeout-ms` as a duration.
    pub fn peer_timeout(&self) -> Duration {
        Duration::from_millis(self.peer_timeout_ms)
    }

    /// `--shutdown-grace-secs` as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// Binds one of this node's ZeroMQ ports (`role` names the link, e.g.
    /// `gateway`, `mesh`) on `host:port` with the pipe bounds of these
    /// flags; a port in use becomes the sentence naming `what` and the
    /// `flag` that changes it.
    pub fn bind_link(
        &self,
        role: &'static str,
        host: &str,
        port: u16,
        (what, flag): (&'static str, &'static str),
    ) -> Result<(ZmqLink, LinkReceiver), StartError> {
        let mut link = LinkConfig::new(role, self.node_id, host, port);
        link.sndhwm = self.link_sndhwm;
        link.rcvhwm = self.link_rcvhwm;
        ZmqLink::bind(link).map_err(|e| {
            if e.is_addr_in_use() {
                StartError::PortInUse { what, port, flag }
            } else {
                StartError::Link(e)
            }
        })
    }

    /// The start-up warning of a node with no `--cluster-secret` (nothing
    /// when it has one).
    pub fn warn_without_cluster_secret(&self) {
        if let Some(line) = self.missing_secret_warning() {
            tracing::warn!("{line}");
        }
    }

    fn missing_secret_warning(&self) -> Option<String> {
        self.cluster_secret.is_none().then(|| {
            format!(
                "No --cluster-secret set: {}. Set CLUSTER_SECRET on every node in production.",
                R::UNGUARDED
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Clone, Default)]
    struct Demo;

    impl NodeRole for Demo {
        const ENV_PREFIX: &'static str = "GM_FLAGS_TEST";
        const DEFAULT_ADMIN_PORT: u16 = 9999;
        const UNGUARDED: &'static str = "the demo port trusts ANY peer that reaches it";
    }

    #[derive(Debug, Parser)]
    struct DemoConfig {
        #[command(flatten)]
        node: NodeFlags<Demo>,
    }

    #[test]
    fn defaults_match_the_flags() {
        let parsed = DemoConfig::try_parse_from(["demo"]).unwrap().node;
        let d = NodeFlags::<Demo>::default();
        assert_eq!(parsed.node_id, d.node_id);
        assert_eq!(parsed.advertise_host, d.advertise_host);
        assert_eq!(parsed.heartbeat_ms, d.heartbeat_ms);
        assert_eq!(parsed.peer_timeout_ms, d.peer_timeout_ms);
        assert_eq!(parsed.shutdown_grace_secs, d.shutdown_grace_secs);
        assert_eq!(parsed.admin_bind, d.admin_bind);
        assert_eq!(parsed.admin_port, 9999);
        assert_eq!(parsed.admin_port, d.admin_port);
        assert_eq!(parsed.log_format, d.log_format);
        assert!(parsed.cluster_secret.is_none() && d.cluster_secret.is_none());
        assert_eq!(parsed.link_sndhwm, d.link_sndhwm);
        assert_eq!(parsed.link_rcvhwm, d.link_rcvhwm);
        d.validate().unwrap();
    }

    #[test]
    fn env_twins_carry_the_role_prefix_except_the_cluster_secret() {
        let cmd = <DemoConfig as clap::CommandFactory>::command();
        let envs: Vec<(String, String)> = cmd
            .get_arguments()
            .filter_map(|a| {
                let env = a.get_env()?.to_string_lossy().into_owned();
                Some((a.get_long()?.to_string(), env))
            })
            .collect();
        let env_of = |long: &str| {
            envs.iter()
                .find(|(l, _)| l == long)
                .map(|(_, e)| e.as_str())
        };
        assert_eq!(env_of("node-id"), Some("GM_FLAGS_TEST_NODE_ID"));
        assert_eq!(env_of("link-rcvhwm"), Some("GM_FLAGS_TEST_LINK_RCVHWM"));
        assert_eq!(env_of("cluster-secret"), Some("CLUSTER_SECRET"));
        assert_eq!(envs.len(), 11, "{envs:?}");
    }

    #[test]
    fn values_that_cannot_work_are_refused_with_the_flag_name() {
        let mut f = NodeFlags::<Demo> {
            link_sndhwm: 0,
            ..NodeFlags::default()
        };
        assert!(f.validate().unwrap_err().0.contains("--link-sndhwm"));
        f.link_sndhwm = 1;
        f.peer_timeout_ms = f.heartbeat_ms;
        assert!(f.validate().unwrap_err().0.contains("--peer-timeout-ms"));
    }

    #[test]
    fn a_taken_port_is_refused_naming_its_flag() {
        use gamemesh_transport::Link;
        let flags = NodeFlags::<Demo>::default();
        let (link, _events) = flags
            .bind_link("demo", "127.0.0.1", 0, ("demo", "--demo-port"))
            .unwrap();
        let port: u16 = link
            .local_endpoint()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap();
        let Err(e) = flags.bind_link("demo", "127.0.0.1", port, ("demo", "--demo-port")) else {
            panic!("port {port} bound twice");
        };
        assert!(matches!(e, StartError::PortInUse { port: p, .. } if p == port));
        assert!(e.to_string().contains("--demo-port"), "{e}");
    }

    #[test]
    fn the_missing_secret_warning_names_what_is_open() {
        let open = NodeFlags::<Demo>::default();
        assert_eq!(
            open.missing_secret_warning().as_deref(),
            Some("No --cluster-secret set: the demo port trusts ANY peer that reaches it. Set CLUSTER_SECRET on every node in production.")
        );
        let closed = NodeFlags::<Demo> {
            cluster_secret: Some(ClusterSecret::new("s")),
            ..NodeFlags::default()
        };
        assert_eq!(closed.missing_secret_warning(), None);
    }
}
