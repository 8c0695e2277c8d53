//! The gamemesh wire contract, shared by every part.
//!
//! - [`client`]: the client <-> server messages of `proto/client.proto`, the
//!   fixed public contract (see `PROTOCOL.md`).
//! - [`internal`]: the gateway <-> game server and game server <-> game
//!   server envelopes of `proto/internal.proto`. Client bodies ride inside
//!   them as opaque bytes.
//! - [`codec`]: the `u32` big-endian length-prefixed framing used on client
//!   TCP sockets, as a tokio-util `Decoder`/`Encoder` that refuses a bad
//!   length header before allocating anything for it.
//! - [`auth`]: login tokens (HMAC-SHA256), minted by clients' login
//!   services and verified by game servers.
//! - [`cluster_auth`]: the cluster-secret proof in every node hello, and
//!   which message of each internal envelope is the hello (the gate that
//!   checks them is `gamemesh_node::peer_gate`).
//! - [`packets`]: small constructors for the server packets every part
//!   builds (errors, kicks), so their wording lives in one place.
//!
//! A client frame's path: socket bytes -> [`codec::FrameCodec`] (gateway) ->
//! [`internal::ClientFrame`] over ZeroMQ -> `ClientPacket::decode` (game
//! server) -> handler -> `ServerPacket` -> [`internal::SendToClient`] ->
//! [`codec::FrameCodec`] -> socket.

pub mod auth;
pub mod cluster_auth;
pub mod codec;
pub mod error;
pub mod packets;

pub use codec::{FrameCodec, DEFAULT_MAX_FRAME_BYTES, LENGTH_PREFIX_BYTES};
pub use error::FrameError;
pub use prost::Message;

/// Client contract messages (`gamemesh.client.v1`).
#[allow(missing_docs, clippy::all)]
pub mod client {
    include!(concat!(env!("OUT_DIR"), "/gamemesh.client.v1.rs"));
}

/// Node-to-node messages (`gamemesh.internal.v1`).
#[allow(missing_docs, clippy::all)]
pub mod internal {
    include!(concat!(env!("OUT_DIR"), "/gamemesh.internal.v1.rs"));
}
