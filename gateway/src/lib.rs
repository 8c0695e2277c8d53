//! The gamemesh gateway: a dumb TCP proxy in front of game servers.
//!
//! It never parses a client's frame body. What it does:
//!
//! - [`listener`] accepts sockets on the TCP port and, with `--ws-port`,
//!   the WebSocket port (backlog 4096), refuses those over
//!   `--max-connections` or the per-IP connect rate, and gives each other
//!   a UUID.
//! - [`wire`] frames bodies on a socket: length-prefixed on TCP
//!   ([`gamemesh_proto::FrameCodec`]), one binary message each on a
//!   WebSocket (`ws://`, or `wss://` with a certificate).
//! - [`connection`] is one socket whatever its framing: it enforces the
//!   idle timeout, the login deadline, the frame size limit, the
//!   per-connection packet rate and the outbound queue bounds (frames and
//!   bytes), and writes frames back, everything queued in one write.
//! - `in_flight` tracks each socket's requests relayed and not yet
//!   answered, and answers `UNAVAILABLE` for those of a game server that is
//!   down or too slow.
//! - [`clients`] holds every open socket's bounded outbound queue
//!   (`ClientRegistry`): where the dispatcher delivers game servers'
//!   frames and each socket's task takes them from.
//! - [`limits`] holds the token bucket, the per-IP limiter and the
//!   counters of what the protections refused and kicked.
//! - [`pin_table`] remembers, per socket, the game server its frames go to
//!   and the session a game server pinned it to.
//! - [`metrics`] registers the gateway's Prometheus metrics, served with
//!   `/healthz` and `/readyz` on the admin port (`gamemesh_node::admin`).
//! - [`upstream`] owns the ZeroMQ link to game servers: hellos/heartbeats,
//!   liveness, round-robin routing of new sockets, and the dispatcher that
//!   obeys `SendToClient`, `PinSession` and `DisconnectClient`.
//!
//! Path of a client frame: socket -> `wire` (cut a body) -> `Connection`'s
//! read and relay steps (take a token from the socket's bucket or answer
//! `RATE_LIMITED`) ->
//! `pin_table` (which game server, which session) -> `upstream` (wrap in
//! `ClientFrame`, send on the link). Path of a reply: link -> `upstream`
//! dispatcher -> the socket's bounded queue -> `Connection`'s outbound step
//! -> `wire` -> socket.

pub mod clients;
pub mod config;
pub mod connection;
pub mod error;
pub(crate) mod in_flight;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod pacer;
pub mod pin_table;
pub mod upstream;
pub mod wire;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gamemesh_node::error::StartError;
use gamemesh_proto::client::KickReason;
use gamemesh_transport::Link;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

pub use config::Config;
pub use error::GatewayError;

use clients::ClientRegistry;
use gamemesh_node::log_throttle::LogThrottle;
use limits::{Counters, Refusal};
use pin_table::PinTable;
use upstream::Upstream;

/// State shared by the gateway's tasks.
pub(crate) struct Shared {
    /// The configuration it was started with.
    config: Config,
    /// socket -> (game server, session).
    pins: PinTable,
    /// socket -> its outbound queue.
    clients: ClientRegistry,
    /// The link to game servers.
    upstream: Upstream,
    /// Sockets admitted and not yet closed (`--max-connections`).
    open: Arc<AtomicUsize>,
    /// Per-source-address connect pace.
    connect_pacer: pacer::ConnectPacer,
    /// What the protections refused and kicked.
    counters: Counters,
    /// One "gateway is full" line a second at most.
    full_log: LogThrottle,
    /// One "connect rate" line a second at most.
    ip_rate_log: LogThrottle,
    /// One line per second when relays fail because a game server's pipe
    /// is at its high-water mark (each failure is answered and counted).
    hwm_log: LogThrottle,
    /// One "request timeout" line a second at most: a stuck game server
    /// times out requests on every one of its sockets at once.
    timeout_log: LogThrottle,
    /// One "WebSocket handshake failed" line a second at most.
    handshake_log: LogThrottle,
}

/// A started gateway.
pub struct RunningGateway {
    /// Where clients connect.
    pub client_addr: SocketAddr,
    /// Where WebSocket clients connect (`--ws-port`), if it is on.
    pub ws_addr: Option<SocketAddr>,
    /// Where game servers send (the ZeroMQ endpoint).
    pub p2p_endpoint: String,
    /// The admin port (`/metrics`, `/healthz`, `/readyz`) actually bound.
    pub admin_addr: SocketAddr,
    /// Number of live game servers, updated as hellos come and go.
    live_game_servers: watch::Receiver<usize>,
    /// Everything the gateway runs.
    tracker: TaskTracker,
    /// Shared state, kept for shutdown.
    shared: Arc<Shared>,
    /// Grace period for connections at shutdown.
    grace: Duration,
    /// The token that stops it.
    shutdown: CancellationToken,
}

impl RunningGateway {
    /// Waits until at least `n` game servers are linked and live.
    pub async fn wait_for_game_servers(&mut self, n: usize) {
        let _ = self.live_game_servers.wait_for(|c| *c >= n).await;
    }

    /// A receiver of the number of live game servers (it changes as game
    /// servers join, die and come back).
    pub fn live_game_servers(&self) -> watch::Receiver<usize> {
        self.live_game_servers.clone()
    }

    /// Number of open client sockets (those counted against
    /// `--max-connections`).
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::Acquire)
    }

    /// Sockets refused so far, for any reason (`--max-connections` or the
    /// per-IP connect rate).
    pub fn refused_connections(&self) -> u64 {
        self.shared.counters.refusals(Refusal::GatewayFull)
            + self.shared.counters.refusals(Refusal::IpRate)
    }

    /// Messages from game servers dropped because their pipe had not proved
    /// the cluster secret (`gamemesh_link_unauthenticated_total`).
    pub fn unauthenticated_messages(&self) -> u64 {
        self.shared.upstream.unauthenticated()
    }

    /// Sends to game servers refused at the high-water mark
    /// (`gamemesh_link_hwm_events_total`).
    pub fn link_hwm_events(&self) -> u64 {
        self.shared.upstream.hwm_events()
    }

    /// Everything the protections counted: refusals by reason, rate-limited
    /// frames, the gateway's own kicks by reason.
    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// Waits until shutdown is requested, then closes every client with
    /// `Kicked{SERVER_SHUTDOWN}` and stops, within the grace period.
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        info!(
            "Gateway shutting down: kicking {} clients",
            self.shared.clients.len()
        );
        self.shared.clients.close_all(
            clients::kick_body(KickReason::ServerShutdown, "gateway shutting down"),
            "shutdown",
        );
        self.tracker.close();
        if tokio::time::timeout(self.grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "Gateway shutdown grace of {:?} ran out; exiting anyway",
                self.grace
            );
        }
        self.shared.upstream.shutdown();
        info!("Gateway stopped");
    }
}

/// Binds the gateway's ports and starts its tasks.
pub async fn start(
    config: Config,
    shutdown: CancellationToken,
) -> Result<RunningGateway, GatewayError> {
    config.validate()?;
    // Before any metric handle is registered (`Counters` below), or those
    // handles would record nowhere.
    gamemesh_node::admin::install_recorder();
    let tls = match (&config.ws_tls_cert, &config.ws_tls_key) {
        (Some(cert), Some(key)) => {
            Some(wire::ws::tls_acceptor(cert, key).map_err(StartError::Config)?)
        }
        _ => None,
    };
    let listener = listener::bind(&config.client_bind, config.client_port, "--client-port")?;
    let client_addr = local_addr(&listener, &config, config.client_port, "--client-port")?;
    let ws_listener = match config.ws_port {
        Some(port) => {
            let l = listener::bind(&config.client_bind, port, "--ws-port")?;
            let addr = local_addr(&l, &config, port, "--ws-port")?;
            Some((l, addr))
        }
        None => None,
    };
    let ws_addr = ws_listener.as_ref().map(|(_, addr)| *addr);
    let (link, events) = config.node.bind_link(
        "gateway",
        &config.p2p_bind,
        config.p2p_port,
        ("P2P", "--p2p-port"),
    )?;
    let p2p_endpoint = link.local_endpoint().to_string();
    let p2p_port = p2p_endpoint
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string();
    let advertised = format!("tcp://{}:{p2p_port}", config.node.advertise_host);
    let upstream = Upstream::new(
        link,
        config.node.node_id,
        advertised,
        &config.game_servers,
        config.node.peer_timeout(),
        config.node.cluster_secret.clone(),
    )
    .map_err(StartError::from)?;
    config.node.warn_without_cluster_secret();
    let live_game_servers = upstream.live_count();
    let heartbeat = config.node.heartbeat();
    let grace = config.node.shutdown_grace();
    info!(
        "Gateway {} listening for clients on {client_addr}, P2P on {p2p_endpoint}, game servers {:?}",
        config.node.node_id, config.game_servers
    );
    if let Some(addr) = ws_addr {
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        info!(
            "Gateway {} listening for WebSocket clients on {scheme}://{addr}",
            config.node.node_id
        );
    }
    let shared = Arc::new(Shared {
        pins: PinTable::new(),
        clients: ClientRegistry::default(),
        upstream,
        open: Arc::new(AtomicUsize::new(0)),
        connect_pacer: pacer::ConnectPacer::new(
            config.max_connects_per_ip_per_sec,
            config.connect_burst_per_ip,
            config.connect_queue(),
        ),
        counters: Counters::default(),
        full_log: LogThrottle::new(Duration::from_secs(1)),
        ip_rate_log: LogThrottle::new(Duration::from_secs(1)),
        hwm_log: LogThrottle::new(Duration::from_secs(1)),
        timeout_log: LogThrottle::new(Duration::from_secs(1)),
        handshake_log: LogThrottle::new(Duration::from_secs(1)),
        config,
    });
    let tracker = TaskTracker::new();
    let admin = gamemesh_node::admin::serve(
        &shared.config.node.admin_bind,
        shared.config.node.admin_port,
        readiness(live_game_servers.clone()),
        &tracker,
        shutdown.clone(),
    )
    .await
    .inspect_err(|_| shared.upstream.shutdown())
    .map_err(StartError::from)?;
    tracker.spawn(upstream::dispatch_loop(
        shared.clone(),
        events,
        shutdown.clone(),
    ));
    tracker.spawn(upstream::heartbeat_loop(
        shared.clone(),
        heartbeat,
        shutdown.clone(),
    ));
    tracker.spawn(listener::accept_loop(
        listener,
        listener::ClientPort::Tcp,
        shared.clone(),
        tracker.clone(),
        shutdown.clone(),
    ));
    if let Some((ws_listener, _)) = ws_listener {
        tracker.spawn(listener::accept_loop(
            ws_listener,
            listener::ClientPort::Ws(tls),
            shared.clone(),
            tracker.clone(),
            shutdown.clone(),
        ));
    }
    Ok(RunningGateway {
        client_addr,
        ws_addr,
        p2p_endpoint,
        admin_addr: admin.addr,
        live_game_servers,
        tracker,
        shared,
        grace,
        shutdown,
    })
}

/// The address a client listener actually bound (port 0 picks one).
fn local_addr(
    listener: &tokio::net::TcpListener,
    config: &Config,
    port: u16,
    flag: &'static str,
) -> Result<SocketAddr, GatewayError> {
    listener
        .local_addr()
        .map_err(|source| GatewayError::ClientBind {
            addr: format!("{}:{port}", config.client_bind),
            flag,
            source,
        })
}

/// `/readyz`: a gateway can serve once at least one game server is linked
/// and live; before that every new client would be kicked.
fn readiness(live: watch::Receiver<usize>) -> gamemesh_node::admin::ReadyCheck {
    Arc::new(move || {
        let n = *live.borrow();
        Box::pin(async move {
            if n > 0 {
                Ok(())
            } else {
                Err("no game server is linked".to_string())
            }
        })
    })
}

/// Runs a gateway until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), GatewayError> {
    start(config, shutdown).await?.wait().await;
    Ok(())
}
