//! Limits on what a client may do, as layers of the pipeline (composed in
//! [`crate::pipeline::build`]) around the handlers.
//!
//! - [`violations`]: repeated frames that break the contract get the
//!   connection kicked (`PROTOCOL_ERROR`); [`violation_layer`] applies it.
//! - [`decode`]: the frame becomes a `ClientPacket`, or is answered
//!   `MALFORMED_PACKET`.
//! - [`adoption`]: a frame pinned to a session this game server does not
//!   hold for the socket takes it over first (a re-routed socket).
//! - [`ownership`]: after this process was paused, a held session is
//!   confirmed in the store before its next frame runs.
//! - [`login_limits`]: login attempts per user and per client address.

pub mod adoption;
pub mod decode;
pub mod login_limits;
pub mod ownership;
pub mod violation_layer;
pub mod violations;
