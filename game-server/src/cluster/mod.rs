//! The game server's place in the cluster: the links to gateways, the
//! dispatcher that feeds client frames to their connection actors, the
//! service mesh to other game servers, and the registry that lists them.
//!
//! - [`gateways`]: hellos from gateways and what we send them
//!   (`SendToClient`, `PinSession`, `DisconnectClient`).
//! - [`hub`]: the dispatcher (one connection actor per client socket) and
//!   the flusher that saves sessions behind them.
//! - [`mesh`]: game server to game server (hellos, `SessionEnded`,
//!   release on resume, pushes to a user, the game API's rooms and
//!   pushes); [`mesh_host`]: what this game server does with the
//!   messages about its sessions.
//! - [`membership`]: the node registry in Redis (or memory).
//! - [`pause`]: noticing that this process was paused long enough for the
//!   cluster to give up on it.

pub mod gateways;
pub mod hub;
pub mod membership;
pub mod mesh;
pub mod mesh_host;
pub mod pause;
