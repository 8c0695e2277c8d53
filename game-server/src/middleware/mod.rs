//! The hub's tower middlewares, one file each, composed in
//! [`crate::pipeline::build`].

pub mod authentication;
pub mod exception;
pub mod idempotency;
pub mod logging;
pub mod timing;

pub use authentication::AuthenticationLayer;
pub use exception::ExceptionLayer;
pub use idempotency::IdempotencyLayer;
pub use logging::LoggingLayer;
pub use timing::{TimingLayer, Timings};
