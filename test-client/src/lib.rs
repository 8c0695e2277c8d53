//! The gamemesh test client: a game client that speaks the wire contract of
//! `docs/PROTOCOL.md` and checks what the system answers.
//!
//! - [`client`]: [`Client`], one TCP connection to a gateway with framed
//!   `ClientPacket` / `ServerPacket` requests, matched by sequence id, and
//!   pushes kept in a queue; [`token_for`] mints login tokens.
//! - [`scenario`]: the contract walk printed as `PASS` / `FAIL` lines.
//! - [`commands`]: the one-shot `login` and `echo` commands (`login
//!   --listen-secs` stays to print server notices).
//! - [`admin`]: `admin jobs ...` and `admin event schedule`, operator
//!   commands on the background jobs in Redis.
//! - [`load`]: `bench`, the load generator: echo (lockstep or pipelined),
//!   login rate, kick and resume latency, idle sessions; one JSON line out.
//! - [`echo_server`]: `echo-server`, a bare echo server for the same
//!   framing, the baseline `bench` compares against.
//! - [`chaos`]: `chaos`, increments retried through faults, counting what
//!   hung, ran twice or was lost.
//! - [`limits`]: the open-file limit, raised before a benchmark.
//! - [`top`]: `top`, a live cluster view from the nodes' admin ports
//!   (`/metrics`), and the scraper the integration tests use.
//! - [`arena`]: the arena sample from the player's side: `arena` plays it
//!   in a terminal (ratatui), `bench --mode arena` with many bots.
//! - [`web`]: `web`, the arena in a browser: serves the TypeScript page
//!   (clients/typescript/web) that plays through a gateway's WebSocket port.
//! - [`cli`]: flags and dispatch for the `test-client` binary.
//!
//! A request's path: [`Client::echo`] builds a `ClientPacket` with the next
//! sequence id -> `FrameCodec` frames it onto the socket -> the gateway
//! relays it to the session's game server -> the `ServerPacket` reply comes
//! back on the socket -> [`Client`] returns it when its sequence id matches,
//! queueing any push that arrives first.
//!
//! Integration tests use [`Client`] directly; the binary is a thin shell over
//! [`cli::run`].

#![forbid(unsafe_code)]

pub mod admin;
pub mod arena;
pub mod chaos;
pub mod chat;
pub mod cli;
pub mod client;
pub mod commands;
pub mod echo_server;
pub mod limits;
pub mod load;
pub mod scenario;
pub mod top;
pub mod web;

pub use client::{token_for, Client, ClientError};
