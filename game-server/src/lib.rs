//! The gamemesh game server: the smart hub behind the gateways.
//!
//! Modules, in the order a packet meets them:
//!
//! - [`cluster`]: the links to gateways ([`cluster::gateways`]), the
//!   dispatcher that hands each client frame to its connection actor
//!   ([`cluster::hub`]), the mesh to other game servers
//!   ([`cluster::mesh`]) and the node registry ([`cluster::membership`]).
//! - [`connection`]: one actor per client socket; decodes the
//!   `ClientPacket`, applies the [`policy`] limits (logins per user and per
//!   client IP, contract violations) and runs it through the pipeline, one
//!   at a time.
//! - [`pipeline`]: the tower stack, composed in one place:
//!   [`middleware::exception`] -> [`middleware::logging`] ->
//!   [`middleware::authentication`] -> [`middleware::idempotency`] ->
//!   [`middleware::timing`] -> [`handlers`] (the router). What flows
//!   through it ([`request::HubRequest`], [`request::HubResponse`]) lives
//!   in [`request`], so handlers and middleware never import the pipeline.
//! - [`handlers`]: the router and the core's own handlers: login, resume
//!   (and adoption), heartbeat, logout; everything else goes to the game
//!   ([`handlers::game`]): `GameRequest` routes and the contract bodies
//!   modules answer.
//! - [`api`]: the game API modules are written against (routes, rooms,
//!   pushes, player data, jobs); [`game_host`]: the core's side of it
//!   (pushes and room requests over the mesh, sessions for rooms);
//!   [`modules`]: the built-in modules on it (echo, increment, chat).
//! - [`session`]: the [`session::SessionStore`] trait (Redis and memory
//!   backends) and the sessions owned here.
//! - [`redis`]: every Redis connection (plain, ACL user, TLS, Sentinel):
//!   address parsing ([`redis::target`]), following the primary through a
//!   failover ([`redis::sentinel`]).
//! - [`metrics`]: the Prometheus metrics, served with `/healthz` and
//!   `/readyz` on the admin port (`gamemesh_node::admin`).
//! - [`config`], [`error`], [`state`]: flags, start-up errors, shared state.
//! - [`background`]: background jobs (runner), cluster events (listener)
//!   and the bounded work queue, from `gamemesh-jobs`; pushes notices to
//!   the sessions owned here.

pub mod api;
pub mod background;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod error;
pub mod game_host;
pub mod handlers;
pub mod metrics;
pub mod middleware;
pub mod modules;
pub mod pipeline;
pub mod policy;
pub mod redis;
pub mod request;
pub mod session;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use gamemesh_node::error::StartError;
use gamemesh_transport::Link;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use config::{Config, StoreKind};
pub use error::GameServerError;

use cluster::gateways::GatewayLinks;
use cluster::hub;
use cluster::membership::{MemoryRegistry, NodeRegistry};
use cluster::mesh::{self, Mesh};
use gamemesh_proto::internal::NodeInfo;
use policy::{login_limits, violations};
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
            // Rooms first, while the mesh still carries their last pushes:
            // each saves and lets go, and the game servers that stay take
            // them at once.
            if let Some(game) = self.state.game() {
                game.shutdown().await;
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

/// A game server to start: the stock configuration, the built-in
/// modules (echo, increment, chat) and a studio's own.
///
/// ```no_run
/// # async fn example(config: gamemesh_game_server::Config, my_game: impl gamemesh_game_server::api::Module) {
/// use gamemesh_game_server::GameServer;
///
/// let shutdown = tokio_util::sync::CancellationToken::new();
/// GameServer::new(config).module(my_game).run(shutdown).await.unwrap();
/// # }
/// ```
pub struct GameServer {
    /// Flags, environment and config file, as parsed.
    config: Config,
    /// The studio's modules (the built-ins are added at start).
    app: api::App,
}

impl GameServer {
    /// A game server with `config` and the built-in modules.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            app: api::App::new(),
        }
    }

    /// Adds a game module.
    pub fn module<M: api::Module>(mut self, module: M) -> Self {
        self.app.add_module(module);
        self
    }

    /// Connects the store, binds the ports and starts the hub with the
    /// modules.
    pub async fn start(
        self,
        shutdown: CancellationToken,
    ) -> Result<RunningGameServer, GameServerError> {
        start_with(self.config, self.app, shutdown).await
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), GameServerError> {
        self.start(shutdown).await?.wait().await;
        Ok(())
    }
}

/// The whole of a game server binary, the stock one and a studio's:
/// parses every flag, environment variable and `--config` key of
/// `game-server`, sets up logging and signals, lets `modules` add the
/// game's modules, and runs until SIGINT or SIGTERM.
///
/// ```no_run
/// # struct Arena;
/// # impl gamemesh_game_server::api::Module for Arena {
/// #     fn name(&self) -> &str { "arena" }
/// #     fn build(&self, _app: &mut gamemesh_game_server::api::App) {}
/// # }
/// #[tokio::main]
/// async fn main() {
///     gamemesh_game_server::main("arena-server", |server| server.module(Arena)).await;
/// }
/// ```
pub async fn main(program: &str, modules: impl FnOnce(GameServer) -> GameServer) {
    let config: Config = gamemesh_node::config::parse(program, "GAME_SERVER_CONFIG");
    gamemesh_node::init_logging_as("info", config.node.log_format);
    let shutdown = gamemesh_node::shutdown_on_signal();
    let server = modules(GameServer::new(config));
    gamemesh_node::exit_on_error(program, server.run(shutdown).await);
}

/// Connects the store, binds the ports and starts the hub with the
/// built-in modules only.
pub async fn start(
    config: Config,
    shutdown: CancellationToken,
) -> Result<RunningGameServer, GameServerError> {
    GameServer::new(config).start(shutdown).await
}

/// Where the game's rooms and player data go: Redis with the sessions, or
/// memory with the memory session store.
fn game_stores(redis: Option<&redis::RedisConn>, config: &Config) -> game_host::Stores {
    match redis {
        Some(conn) => {
            let source: Arc<dyn gamemesh_jobs::RedisSource> = Arc::new(conn.clone());
            let timeout = Duration::from_millis(config.redis_timeout_ms);
            game_host::Stores {
                rooms: Arc::new(api::room::redis_store::RedisRoomStore::new(
                    source.clone(),
                    timeout,
                )),
                data: Arc::new(api::data::redis::RedisPlayerData::new(source, timeout)),
            }
        }
        None => game_host::Stores {
            rooms: Arc::new(api::room::store::MemoryRoomStore::new()),
            data: Arc::new(api::data::memory::MemoryPlayerData::new()),
        },
    }
}

async fn start_with(
    config: Config,
    mut app: api::App,
    shutdown: CancellationToken,
) -> Result<RunningGameServer, GameServerError> {
    config.validate()?;
    // Before any metric handle is registered, or those handles would
    // record nowhere.
    gamemesh_node::admin::install_recorder();
    // The Redis connection, kept to follow its primary through failovers.
    let mut redis = None;
    let (store, registry): (Arc<dyn SessionStore>, Arc<dyn NodeRegistry>) = match config
        .session_store
    {
        StoreKind::Redis => {
            let conn = redis::RedisConn::connect(&config.redis_options()).await?;
            redis = Some(conn.clone());
            let s = Arc::new(RedisStore::new(conn));
            (s.clone(), s)
        }
        StoreKind::Memory => {
            warn!("Session store is IN MEMORY: sessions live in this process only (one game server, lost on restart)");
            (
                Arc::new(MemoryStore::new()),
                Arc::new(MemoryRegistry::default()),
            )
        }
    };
    if config.auth_secret.is_none() {
        warn!("No --auth-secret set: ANY login token is accepted. Set AUTH_SECRET in production.");
    }
    config.node.warn_without_cluster_secret();
    let node = &config.node;
    let (p2p, events) = node.bind_link(
        "game-server",
        &config.bind,
        config.p2p_port,
        ("P2P", "--p2p-port"),
    )?;
    let (mesh, mesh_events) = node.bind_link(
        "mesh",
        &config.bind,
        config.mesh_port,
        ("mesh", "--mesh-port"),
    )?;
    let p2p_endpoint = p2p.local_endpoint().to_string();
    let mesh_endpoint = mesh.local_endpoint().to_string();
    let advertised = format!(
        "tcp://{}:{}",
        config.node.advertise_host,
        port_of(&p2p_endpoint)
    );
    let me = NodeInfo {
        node_id: config.node.node_id,
        p2p_endpoint: advertised.clone(),
        mesh_endpoint: format!(
            "tcp://{}:{}",
            config.node.advertise_host,
            port_of(&mesh_endpoint)
        ),
    };
    let peer_timeout = config.node.peer_timeout();

    let tracker = TaskTracker::new();
    // The hub's tasks stop on their own token, cancelled by `wait` after the
    // sessions were released; the caller's token only starts the shutdown.
    let tasks = CancellationToken::new();
    let (save_retries, failed_saves) =
        session::save_retry::SaveRetries::new(session::save_retry::CAPACITY);
    let state = Arc::new(HubState {
        node_id: config.node.node_id,
        store,
        sessions: LocalSessions::default(),
        gateways: GatewayLinks::new(
            p2p,
            config.node.node_id,
            advertised,
            config.node.cluster_secret.clone(),
        ),
        mesh: Mesh::new(mesh, me, peer_timeout, config.node.cluster_secret.clone()),
        pauses: cluster::pause::PauseWatch::new(peer_timeout),
        accepting: AtomicBool::new(true),
        auth_secret: config.auth_secret.as_ref().map(|s| s.as_bytes().to_vec()),
        resume_grace: config.resume_grace(),
        live_ttl: config.live_ttl(),
        reply_cache: config.reply_cache,
        violations: violations::ViolationPolicy {
            kick_after: config.protocol_error_kick_after,
            window: Duration::from_secs(config.protocol_error_window_secs),
        },
        game: std::sync::OnceLock::new(),
        save_retries,
        faults: Default::default(),
        session_starts: tokio::sync::Semaphore::new(crate::state::SESSION_STARTS_IN_FLIGHT),
    });
    modules::add_builtins(&mut app, Arc::downgrade(&state), &config);
    if let Err(e) = game_host::start(
        &state,
        app,
        game_stores(redis.as_ref(), &config),
        config.room_settings(),
        &tracker,
        tasks.clone(),
    ) {
        state.gateways.shutdown();
        state.mesh.shutdown();
        return Err(e.into());
    }
    if let Some(game) = state.game() {
        info!(
            "Game modules: {} (routes: {}; room kinds: {})",
            game.modules().join(", "),
            game.routes().join(", "),
            game.room_kinds().join(", ")
        );
    }
    let login_limits = Arc::new(login_limits::LoginLimits::new(
        config.login_attempts_per_user_per_min,
        config.login_attempts_per_ip_per_min,
    ));
    let service = pipeline::build(state.clone(), login_limits);
    info!(
        "GameServerHub initialized with {} middlewares",
        pipeline::MIDDLEWARE_COUNT
    );

    // The admin port lives as long as the hub's tasks, so while sessions
    // are released /readyz still answers, and says "draining".
    let admin = gamemesh_node::admin::serve(
        &config.node.admin_bind,
        config.node.admin_port,
        readiness(state.clone()),
        &tracker,
        tasks.clone(),
    )
    .await
    .inspect_err(|_| {
        state.gateways.shutdown();
        state.mesh.shutdown();
    })
    .map_err(StartError::from)?;
    let dispatcher = hub::Dispatcher::new(state.clone(), service, tracker.clone());
    let heartbeat = config.node.heartbeat();
    tracker.spawn(dispatcher.run(events, heartbeat, peer_timeout, tasks.clone()));
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
    tracker.spawn(session::save_retry::run(
        state.store.clone(),
        failed_saves,
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
        config.node.node_id, config.session_store
    );
    Ok(RunningGameServer {
        p2p_endpoint,
        mesh_endpoint,
        admin_addr: admin.addr,
        state,
        tracker,
        shutdown,
        tasks,
        grace: config.node.shutdown_grace(),
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

/// Runs a game server with the built-in modules until `shutdown` is
/// cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), GameServerError> {
    GameServer::new(config).run(shutdown).await
}
