//! The built-in modules: gamemesh's own features, registered through the
//! same game API a studio's modules use ([`crate::api::App`]), so the
//! router knows none of them. Each answers bodies of the client contract
//! itself (`App::body`), not `GameRequest` routes.
//!
//! - [`echo`]: `EchoRequest` -> `EchoResponse`.
//! - [`increment`]: the session's write-through counter.
//! - [`chat`]: chat rooms across the cluster and whispers.

pub mod chat;
pub mod echo;
pub mod increment;

use std::sync::Weak;

use crate::api::App;
use crate::config::Config;
use crate::state::HubState;

/// Adds every built-in module to `app`, set up from `config`. `state` is
/// for the modules that work on this game server's own sessions
/// (increment).
pub fn add_builtins(app: &mut App, state: Weak<HubState>, config: &Config) {
    app.add_module(echo::Echo);
    app.add_module(increment::Increment::new(state));
    app.add_module(chat::Chat::new(
        config.chat_messages_per_sec,
        config.chat_burst,
    ));
}
