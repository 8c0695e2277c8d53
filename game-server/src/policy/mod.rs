//! Limits on what a client may do, applied before a packet reaches the
//! pipeline's handlers.
//!
//! - [`login_limits`]: login attempts per user and per client address.
//! - [`violations`]: repeated frames that break the contract get the
//!   connection kicked (`PROTOCOL_ERROR`).

pub mod login_limits;
pub mod violations;
