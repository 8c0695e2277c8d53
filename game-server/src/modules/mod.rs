//! The built-in modules: gamemesh's own features, registered through the
//! same game API a studio's modules use ([`crate::api::App`]), so the
//! router knows none of them. Each answers bodies of the client contract
//! itself (`App::body`), not `GameRequest` routes.
//!
//! - [`echo`]: `EchoRequest` -> `EchoResponse`.
//! - [`increment`]: the session's write-through counter.

pub mod echo;
pub mod increment;

use std::sync::Weak;

use crate::api::App;
use crate::state::HubState;

/// Adds every built-in module to `app`. `state` is for the modules that
/// work on this game server's own sessions (increment).
pub fn add_builtins(app: &mut App, state: Weak<HubState>) {
    app.add_module(echo::Echo);
    app.add_module(increment::Increment::new(state));
}
