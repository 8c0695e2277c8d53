//! The gamemesh game server: the smart hub behind the gateways.
//!
//! Modules, in the order a packet meets them:
//!
//! - [`gateways`]: the ZeroMQ links to gateways (hellos, and the messages
//!   we send them: `SendToClient`, `PinSession`, `DisconnectClient`).
//! - [`hub`]: the dispatcher that hands each client frame to its
//!   connection actor, and the flusher that saves sessions behind them.
//! - [`connection`]: one actor per client socket; decodes the
//!   `ClientPacket`, counts a login against [`login_limits`] (per user and
//!   per client IP), and runs it through the pipeline, one at a time.
//! - [`pipeline`]: the tower stack, composed in one place:
//!   [`middleware::exception`] -> [`middleware::logging`] ->
//!   [`middleware::authentication`] -> [`middleware::idempotency`] ->
//!   [`middleware::timing`] -> [`handlers`] (the router).
//! - [`handlers`]: login, resume (and adoption), echo, heartbeat, logout,
//!   chat, increment.
//! - [`chat`]: chat rooms as actors, one per room across the cluster, and
//!   their store; pushes to members over the [`mesh`].
//! - [`violations`]: repeated frames that are not the contract get the
//!   connection kicked.
//! - [`session`]: the [`session::SessionStore`] trait (Redis and memory
//!   backends) and the sessions owned here.
//! - [`redis_connect`]: every Redis connection (plain, ACL user, TLS,
//!   Sentinel) and following the primary through a failover.
//! - [`metrics`]: the Prometheus metrics, served with `/healthz` and
//!   `/readyz` on the admin port (`gamemesh_node::admin`).
//! - [`config`], [`error`], [`state`]: flags, start-up errors, shared state.
//! - [`background`]: background jobs (runner), cluster events (listener)
//!   and the bounded work queue, from `gamemesh-jobs`; pushes notices to
//!   the sessions owned here.

pub mod background;
pub mod chat;
pub mod config;
pub mod connection;
pub mod error;
pub mod gateways;
pub mod handlers;
pub mod hub;
pub mod login_limits;
pub mod membership;
pub mod mesh;
pub mod metrics;
pub mod middleware;
pub mod pipeline;
pub mod redis_connect;
pub mod session;
pub mod state;
pub mod violations;

use std::sync::Arc;
use std::time::Duration;

use gamemesh_transport::{Link, LinkConfig, ZmqLink};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use config::{Config, StoreKind};
pub use error::GameServerError;

use gamemesh_proto::internal::NodeInfo;
use gateways::GatewayLinks;
use membership::{MemoryRegistry, NodeRegistry};
use mesh::Mesh;
use session::memory::MemoryStore;
use session::redis::RedisStore;
use session::{LocalSessions, SessionStore};
use state::HubState;
use std::sync::atomic::AtomicBool;

/// A started game server.
pub struct RunningGameServer {
    /// Where gateways send (ZeroMQ endpoint).
    pub p2p_endpoint: String,
    /// Where other game servers send.
    pub mesh_endpoint: String,
    /// The admin port (`/metrics`, `/healthz`, `/readyz`) actually bound.
    pub admin_addr: std::net::SocketAddr,
    /// Shared state (tests inspect sessions through it).
    pub state: Arc<HubState>,
    /// Owns every task.
    tracker: TaskTracker,
    /// Stops it (requested from outside).
    shutdown: CancellationToken,
    /// Stops the hub's own tasks, after the sessions were released.
    tasks: CancellationToken,
    /// Bound on the shutdown.
    grace: Duration,
    /// Where this node is announced, withdrawn from at shutdown.
    registry: Arc<dyn NodeRegistry>,
    /// Jobs, events and the work queue (`None` with the memory store:
    /// there is no Redis to keep them in).
    pub background: Option<background::Background>,
}

impl RunningGameServer {
    /// The P2P port actually bound.
    pub fn p2p_port(&self) -> u16 {
        port_of(&self.p2p_endpoint)
    }

    /// Waits until shutdown is requested, then releases every session
    /// (saved as resumable, clients kicked with `SERVER_SHUTDOWN`) and stops
    /// within the grace period.
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        info!("Game server shutting down: no new logins");
        // Stop taking logins and say so at once (gateways route new sockets
        // elsewhere, peers stop relaying us); leave the registry. Then
        // release sessions while the dispatcher still runs (so kicks reach
        // gateways and released sessions are marked ended, which the actors
        // then leave alone), and only then stop the tasks.
        self.state.stop_accepting();
        self.state.gateways.announce_draining();
        self.tracker.close();
        if tokio::time::timeout(self.grace, async {
            if let Err(e) = self.registry.withdraw(self.state.node_id).await {
                warn!("Could not leave the registry ({e}); the entry expires by itself");
            }
            hub::release_all(&self.state).await;
            self.tasks.cancel();
            self.tracker.wait().await;
        })
        .await
        .is_err()
        {
            warn!("Shutdown grace of {:?} ran out; exiting anyway", self.grace);
        }
        self.state.gateways.shutdown();
        self.state.mesh.shutdown();
        info!("Game server stopped");
    }
}

fn port_of(endpoint: &str) -> u16 {
    endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// Binds one ZeroMQ link, turning "address in use" into the sentence that
/// names the flag to change.
fn bind_link(
    role: &'static str,
    config: &Config,
    port: u16,
    what: &'static str,
    flag: &'static str,
) -> Result<(ZmqLink, gamemesh_transport::LinkReceiver), GameServerError> {
    let mut link_config = LinkConfig::new(role, config.node_id, &config.bind, port);
    link_config.sndhwm = config.link_sndhwm;
    link_config.rcvhwm = config.link_rcvhwm;
    ZmqLink::bind(link_config).map_err(|e| {
        if e.is_addr_in_use() {
            GameServerError::PortInUse { what, port, flag }
        } else {
            GameServerError::Link(e)
        }
    })
}

/// Connects the store, binds the ports and starts the hub.
pub async fn start(
    config: Config,
    shutdown: CancellationToken,
) -> Result<RunningGameServer, GameServerError> {
    config.validate()?;
    // Before any metric handle is registered, or those handles would
    // record nowhere.
    gamemesh_node::admin::install_recorder();
    // The Redis connection, kept to follow its primary through failovers.
    let mut redis = None;
    let (store, registry, chat_store): (
        Arc<dyn SessionStore>,
        Arc<dyn NodeRegistry>,
        Arc<dyn chat::ChatStore>,
    ) = match config.session_store {
        StoreKind::Redis => {
            let conn = redis_connect::RedisConn::connect(
                &redis_connect::RedisOptions::from_config(&config),
            )
            .await?;
            redis = Some(conn.clone());
            let s = Arc::new(RedisStore::new(conn));
            (s.clone(), s.clone(), s)
        }
        StoreKind::Memory => {
            warn!("Session store is IN MEMORY: sessions live in this process only (one game server, lost on restart)");
            let sessions: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
            (
                sessions.clone(),
                Arc::new(MemoryRegistry::default()),
                Arc::new(chat::store::MemoryChatStore::new(sessions)),
            )
        }
    };
    // The default rooms exist before the first client can ask (the chat
    // sweep keeps re-creating them, should Redis lose them).
    if let Err(e) = chat_store.create_rooms(&chat::DEFAULT_ROOMS).await {
        warn!("Could not create the default chat rooms yet ({e}); retrying in the background");
    }
    if config.auth_secret.is_none() {
        warn!("No --auth-secret set: ANY login token is accepted. Set AUTH_SECRET in production.");
    }
    if config.cluster_secret.is_none() {
        warn!("No --cluster-secret set: the P2P and mesh ports trust ANY peer that reaches them. Set CLUSTER_SECRET on every node in production.");
    }
    let (p2p, events) = bind_link("game-server", &config, config.p2p_port, "P2P", "--p2p-port")?;
    let (mesh, mesh_events) = bind_link("mesh", &config, config.mesh_port, "mesh", "--mesh-port")?;
    let p2p_endpoint = p2p.local_endpoint().to_string();
    let mesh_endpoint = mesh.local_endpoint().to_string();
    let advertised = format!("tcp://{}:{}", config.advertise_host, port_of(&p2p_endpoint));
    let me = NodeInfo {
        node_id: config.node_id,
        p2p_endpoint: advertised.clone(),
        mesh_endpoint: format!(
            "tcp://{}:{}",
            config.advertise_host,
            port_of(&mesh_endpoint)
        ),
    };
    let peer_timeout = Duration::from_millis(config.peer_timeout_ms);

    let tracker = TaskTracker::new();
    // The hub's tasks stop on their own token, cancelled by `wait` after the
    // sessions were released; the caller's token only starts the shutdown.
    let tasks = CancellationToken::new();
    let state = Arc::new(HubState {
        node_id: config.node_id,
        store,
        sessions: LocalSessions::default(),
        gateways: GatewayLinks::new(
            p2p,
            config.node_id,
            advertised,
            config.cluster_secret.clone(),
        ),
        mesh: Mesh::new(mesh, me, peer_timeout, config.cluster_secret.clone()),
        accepting: AtomicBool::new(true),
        auth_secret: config.auth_secret.as_ref().map(|s| s.as_bytes().to_vec()),
        resume_grace: config.resume_grace(),
        live_ttl: config.live_ttl(),
        reply_cache: config.reply_cache,
        chat: chat::Chat::new(
            chat_store,
            chat::ChatLimiter::new(config.chat_messages_per_sec, config.chat_burst),
            Duration::from_millis(config.chat_sweep_ms),
            tracker.clone(),
            tasks.clone(),
        ),
        violations: violations::ViolationPolicy {
            kick_after: config.protocol_error_kick_after,
            window: Duration::from_secs(config.protocol_error_window_secs),
        },
    });
    let service = pipeline::build(state.clone());
    info!(
        "GameServerHub initialized with {} middlewares",
        pipeline::MIDDLEWARE_COUNT
    );

    // The admin port lives as long as the hub's tasks, so while sessions
    // are released /readyz still answers, and says "draining".
    let admin = gamemesh_node::admin::serve(
        &config.admin_bind,
        config.admin_port,
        readiness(state.clone()),
        &tracker,
        tasks.clone(),
    )
    .await
    .inspect_err(|_| {
        state.gateways.shutdown();
        state.mesh.shutdown();
    })?;
    let login_limits = Arc::new(login_limits::LoginLimits::new(
        config.login_attempts_per_user_per_min,
        config.login_attempts_per_ip_per_min,
    ));
    let dispatcher = hub::Dispatcher::new(state.clone(), service, tracker.clone(), login_limits);
    tracker.spawn(dispatcher.run(
        events,
        Duration::from_millis(config.heartbeat_ms),
        peer_timeout,
        tasks.clone(),
    ));
    let heartbeat = Duration::from_millis(config.heartbeat_ms);
    tracker.spawn(mesh::registry_loop(
        state.clone(),
        registry.clone(),
        heartbeat,
        tasks.clone(),
    ));
    tracker.spawn(mesh::run(
        state.clone(),
        mesh_events,
        heartbeat,
        tasks.clone(),
    ));
    if let Some(redis) = redis.clone() {
        tracker.spawn(hub::resave_after_failover(
            state.clone(),
            redis.primary_changes(),
            tasks.clone(),
        ));
        tracker.spawn(redis.follow_primary(tasks.clone()));
    }
    tracker.spawn(chat::sweep_loop(
        state.clone(),
        Duration::from_millis(config.chat_sweep_ms),
        tasks.clone(),
    ));
    tracker.spawn(hub::flush_loop(
        state.clone(),
        Duration::from_millis(config.flush_interval_ms),
        config.live_ttl() / 9,
        tasks.clone(),
    ));
    // `redis` is there exactly when the session store is Redis.
    let background = match redis {
        Some(redis) => Some(
            background::start(
                state.clone(),
                redis,
                &config,
                &tracker,
                shutdown.clone(),
                tasks.clone(),
            )
            .await?,
        ),
        None => {
            warn!("No background jobs or cluster events: they need Redis (--session-store redis)");
            None
        }
    };
    info!(
        "Game server {} ready: P2P {p2p_endpoint}, mesh {mesh_endpoint}, session store {:?}",
        config.node_id, config.session_store
    );
    Ok(RunningGameServer {
        p2p_endpoint,
        mesh_endpoint,
        admin_addr: admin.addr,
        state,
        tracker,
        shutdown,
        tasks,
        grace: Duration::from_secs(config.shutdown_grace_secs),
        registry,
        background,
    })
}

/// `/readyz`: a game server can serve while it takes logins (not
/// draining) and its session store answers (`PING`, bounded by
/// `--redis-timeout-ms`). Without Redis every login and resume would fail.
fn readiness(state: Arc<HubState>) -> gamemesh_node::admin::ReadyCheck {
    Arc::new(move || {
        let state = state.clone();
        Box::pin(async move {
            if !state.is_accepting() {
                return Err("draining: shutting down, no new logins".to_string());
            }
            state
                .store
                .ping()
                .await
                .map_err(|e| format!("session store does not answer: {e}"))
        })
    })
}

/// Runs a game server until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), GameServerError> {
    start(config, shutdown).await?.wait().await;
    Ok(())
}
