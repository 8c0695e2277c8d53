//! Shared helpers for gamemesh tests (`publish = false`, dev-dependency only).
//!
//! Modules:
//!
//! - [`redis_server`]: [`RedisServer`], a real `redis-server` child process on
//!   a free port of 127.0.0.1, killed and reaped on `Drop`. Tests that need
//!   Redis use it and FAIL (never skip) when `redis-server` is missing.
//! - [`redis_sentinel`]: [`SentinelGroup`], a primary, replicas and
//!   sentinels (real processes), with a planned failover
//!   (`SENTINEL FAILOVER`) and a crash (the primary killed).
//! - [`redis_cluster`]: [`RedisCluster`], a real Redis Cluster (three
//!   primaries, three replicas) on free ports, with a primary killed and
//!   its replica's promotion awaited.
//! - [`redis_security`]: [`AclRedis`] (an ACL user with a password) and
//!   [`TlsRedis`] (TLS with certificates generated for the test; it fails,
//!   saying how to get one, when `redis-server` has no TLS).
//! - [`wait`]: [`wait_for`] / [`wait_for_async`], poll a condition with a
//!   deadline, so tests wait for what they need instead of sleeping for luck.
//! - here: [`free_port`] and [`init_tracing`].
//!
//! A typical async test:
//!
//! ```no_run
//! # async fn example() {
//! use gamemesh_test_support::{init_tracing, RedisServer};
//!
//! init_tracing();
//! let redis = RedisServer::start();
//! // hand `redis.url()` ("redis://127.0.0.1:P") to the code under test ...
//! drop(redis); // or let it fall out of scope: the child is killed and reaped
//! # }
//! ```

#![forbid(unsafe_code)]

pub mod process;
pub mod redis_cluster;
pub mod redis_security;
pub mod redis_sentinel;
pub mod redis_server;
pub mod wait;

use std::net::{Ipv4Addr, TcpListener};

pub use redis_cluster::{RedisCluster, RedisClusterOptions};
pub use redis_security::{AclRedis, TlsFiles, TlsRedis, ACL_RULE, ACL_USER};
pub use redis_sentinel::{SentinelGroup, SentinelOptions};
pub use redis_server::RedisServer;
pub use wait::{wait_for, wait_for_async};

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is found by binding `127.0.0.1:0` and dropping the listener, so
/// another process may take it before the caller binds it. Prefer binding
/// `127.0.0.1:0` directly when the code under test accepts a listener; use
/// this only for things configured by port number (child processes, CLIs).
///
/// # Panics
///
/// If no ephemeral port can be bound, which means the machine is unusable
/// for network tests anyway.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("free_port: cannot bind 127.0.0.1:0: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("free_port: no local address for 127.0.0.1:0: {e}"))
        .port()
}

/// Installs a `tracing` subscriber for tests; safe to call from every test.
///
/// Output goes through libtest's capture (`with_test_writer`), so logs show
/// only for failing tests. The filter comes from `RUST_LOG` and defaults to
/// `info`. `try_init` makes second and later calls no-ops instead of panics,
/// since tests in one binary share the global subscriber.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // An Err only means a subscriber is already installed: exactly the
    // idempotence we want.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        // It was free a moment ago; nobody else in this test should race us.
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("free_port gave a bindable port");
    }

    #[test]
    fn init_tracing_is_idempotent() {
        init_tracing();
        init_tracing();
        tracing::info!("tracing works after two init_tracing calls");
    }
}
