//! What handlers and the hub's tasks share.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use gamemesh_transport::NodeId;

use crate::api::GameRuntime;
use crate::cluster::gateways::GatewayLinks;
use crate::cluster::mesh::Mesh;
use crate::cluster::pause::PauseWatch;
use crate::policy::violations::ViolationPolicy;
use crate::session::save_retry::SaveRetries;
use crate::session::{LocalSessions, SessionStore};

/// Shared state of one game server.
pub struct HubState {
    /// Our node id (in `LoginResponse.game_server_node_id`).
    pub node_id: NodeId,
    /// The source of truth for sessions.
    pub store: Arc<dyn SessionStore>,
    /// Sessions owned here.
    pub sessions: LocalSessions,
    /// Links to gateways.
    pub gateways: GatewayLinks,
    /// Links to the other game servers.
    pub mesh: Mesh,
    /// This process's pauses: after one, sessions held here are confirmed
    /// in the store before they run another frame.
    pub pauses: PauseWatch,
    /// False once shutdown began: no new logins, gateways told to route
    /// new sockets elsewhere.
    pub accepting: AtomicBool,
    /// HMAC secret for login tokens; `None` accepts any token.
    pub auth_secret: Option<Vec<u8>>,
    /// Resume grace for disconnected sessions.
    pub resume_grace: Duration,
    /// Lifetime of a connected session's record (renewed while owned).
    pub live_ttl: Duration,
    /// Replies kept per session.
    pub reply_cache: usize,
    /// When a connection sending frames that are not the contract is
    /// kicked.
    pub violations: ViolationPolicy,
    /// The game: the modules' routes, rooms and jobs (set once at start,
    /// right after this state exists, because the game's seams hold a weak
    /// reference to it).
    pub game: OnceLock<GameRuntime>,
    /// Disconnect saves that failed, retried until the store answers.
    pub save_retries: SaveRetries,
    /// Failures tests switch on (nothing else sets them).
    pub faults: Faults,
    /// Logins and resumes running at once, at most
    /// [`SESSION_STARTS_IN_FLIGHT`]; the rest wait their turn before any
    /// of their work starts. In a storm (thousands of players reconnecting
    /// at once) every start would otherwise be in flight together: their
    /// store calls queue behind each other on the one Redis connection and
    /// the tasks crowd out the connection's own reader, so the last of
    /// them pass the store timeout and are answered "session store
    /// unavailable" while Redis itself is fine.
    pub session_starts: tokio::sync::Semaphore,
}

/// See [`HubState::session_starts`]: enough to keep the Redis pipeline
/// full, few enough that a store call is timed on the wire, not in our own
/// queue.
pub const SESSION_STARTS_IN_FLIGHT: usize = 64;

/// Failures a test makes happen on purpose, where no real fault can be
/// timed (a game server that does the work and then goes quiet). No flag
/// or setting reaches them: only code holding the state can.
#[derive(Debug, Default)]
pub struct Faults {
    /// Room requests forwarded here are served, and their replies dropped:
    /// the room did the work and the asking game server hears nothing, as
    /// when this one stalls right after its room answered.
    pub drop_room_replies: AtomicBool,
}

impl HubState {
    /// Whether new logins are taken.
    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    /// Stops taking new logins.
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::Release);
    }

    /// The game's runtime (`None` only while the server starts).
    pub fn game(&self) -> Option<&GameRuntime> {
        self.game.get()
    }
}
