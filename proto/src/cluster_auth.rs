//! Authentication of the internal ports with a shared cluster secret.
//!
//! Every hello (`GatewayHello`, `ServerHello`, `MeshHello`) carries a
//! [`HelloProof`]: an HMAC-SHA256 under the cluster secret over the hello's
//! type, the ZeroMQ routing id of the pipe it travels on, and the whole
//! hello (node id, endpoint, incarnation, ...), plus a timestamp and a
//! random nonce. A receiver (`gamemesh_node::peer_gate::PeerGate`) accepts
//! a hello only when the MAC matches, the claimed node id is the one in the
//! routing id, the timestamp is within [`MAX_CLOCK_SKEW`] of its clock, and
//! the nonce has not been seen in that window. The routing id it arrived on
//! then counts as authenticated, and anything else from a routing id that
//! is not is dropped. Which message of each internal envelope is the hello
//! is said here, by [`PeerMessage`].
//!
//! Why this holds: only a holder of the secret can make a valid proof; the
//! proof names one pipe's routing id (random per pipe, see
//! `gamemesh_transport`), so replaying it on a connection of one's own
//! fails; a replay on the same pipe is refused by the nonce; and libzmq
//! (with `ROUTER_HANDOVER` off) ignores a second connection presenting a
//! routing id that is already connected, so an authenticated pipe cannot
//! be taken over. What it does not do: encrypt, or stop an attacker who
//! sits on the path and rewrites TCP. SECURITY.md says so.
//!
//! Without a secret hellos go unsigned and everything is admitted, as
//! before this existed; the binaries warn at start-up.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use prost::Message;
use sha2::Sha256;
use thiserror::Error;

use crate::internal::{
    gateway_to_server, mesh_message, server_to_gateway, GatewayHello, HelloProof, MeshHello,
    ServerHello,
};

type HmacSha256 = Hmac<Sha256>;

/// Largest accepted difference between a hello's timestamp and our clock.
/// Hellos go out every heartbeat (1 s), so the window only has to absorb
/// clock skew between machines (NTP keeps it far below this) and queueing.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(30);

/// Bytes of random nonce per hello.
const NONCE_BYTES: usize = 16;

/// The shared secret of a cluster. Its `Debug` never shows the bytes.
#[derive(Clone)]
pub struct ClusterSecret(Arc<[u8]>);

impl ClusterSecret {
    /// Wraps the secret's bytes.
    pub fn new(bytes: impl AsRef<[u8]>) -> Self {
        Self(Arc::from(bytes.as_ref()))
    }

    /// Parses `--cluster-secret` (both binaries' flag): any non-empty
    /// string, as a clap `value_parser`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("the cluster secret must not be empty".into());
        }
        Ok(Self::new(s))
    }

    fn mac(&self, domain: &[u8], routing_id: &[u8], body: &[u8]) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        m.update(domain);
        m.update(&(routing_id.len() as u32).to_be_bytes());
        m.update(routing_id);
        m.update(body);
        m
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(<hidden>)")
    }
}

/// A hello that carries a [`HelloProof`].
pub trait SignedHello: Message + Clone {
    /// Names the hello type inside the MAC, so a proof for one type is
    /// never valid for another.
    const DOMAIN: &'static [u8];
    /// The node id the hello claims.
    fn claimed_node(&self) -> u64;
    /// The proof it carries.
    fn proof(&self) -> Option<&HelloProof>;
    /// Replaces the proof.
    fn set_proof(&mut self, proof: Option<HelloProof>);
}

macro_rules! signed_hello {
    ($ty:ty, $domain:literal, $node:ident) => {
        impl SignedHello for $ty {
            const DOMAIN: &'static [u8] = $domain;
            fn claimed_node(&self) -> u64 {
                self.$node
            }
            fn proof(&self) -> Option<&HelloProof> {
                self.proof.as_ref()
            }
            fn set_proof(&mut self, proof: Option<HelloProof>) {
                self.proof = proof;
            }
        }
    };
}

signed_hello!(GatewayHello, b"gamemesh/GatewayHello/v1", gateway_node_id);
signed_hello!(ServerHello, b"gamemesh/ServerHello/v1", game_server_node_id);
signed_hello!(MeshHello, b"gamemesh/MeshHello/v1", node_id);

/// A message of an internal envelope (what one node sends another): its
/// hello, which must carry a proof, or anything else, which is acted on
/// only from a pipe whose hello was admitted.
pub trait PeerMessage {
    /// The envelope's hello.
    type Hello: SignedHello;
    /// The hello, if this message is one.
    fn hello(&self) -> Option<&Self::Hello>;
}

macro_rules! peer_message {
    ($envelope:ident, $hello:ty) => {
        impl PeerMessage for $envelope::Kind {
            type Hello = $hello;
            fn hello(&self) -> Option<&$hello> {
                match self {
                    $envelope::Kind::Hello(h) => Some(h),
                    _ => None,
                }
            }
        }
    };
}

peer_message!(gateway_to_server, GatewayHello);
peer_message!(server_to_gateway, ServerHello);
peer_message!(mesh_message, MeshHello);

/// Unix time in milliseconds.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The bytes the MAC covers besides domain and routing id: the hello with
/// the proof's MAC emptied.
fn signed_body<H: SignedHello>(hello: &H) -> Vec<u8> {
    let mut unsigned = hello.clone();
    if let Some(mut p) = unsigned.proof().cloned() {
        p.mac = Bytes::new();
        unsigned.set_proof(Some(p));
    }
    unsigned.encode_to_vec()
}

/// Signs `hello` for the pipe whose routing id is `routing_id`, at
/// `now_ms` (Unix milliseconds), with a fresh nonce.
pub fn sign_at<H: SignedHello>(
    secret: &ClusterSecret,
    routing_id: &[u8],
    hello: &mut H,
    now_ms: u64,
) {
    let nonce: [u8; NONCE_BYTES] = rand::random();
    hello.set_proof(Some(HelloProof {
        timestamp_ms: now_ms,
        nonce: Bytes::copy_from_slice(&nonce),
        mac: Bytes::new(),
    }));
    let body = signed_body(hello);
    let mac = secret
        .mac(H::DOMAIN, routing_id, &body)
        .finalize()
        .into_bytes();
    if let Some(mut p) = hello.proof().cloned() {
        p.mac = Bytes::copy_from_slice(&mac);
        hello.set_proof(Some(p));
    }
}

/// Signs `hello` for the pipe `routing_id` now; without a secret it leaves
/// the hello unsigned.
pub fn sign<H: SignedHello>(secret: Option<&ClusterSecret>, routing_id: &[u8], hello: &mut H) {
    if let Some(secret) = secret {
        sign_at(secret, routing_id, hello, now_unix_ms());
    }
}

/// Why a hello (or a message) from a peer was refused. Each variant's
/// [`HelloRefused::kind`] is the `reason` label of the drop counter.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HelloRefused {
    /// The hello has no proof, but this node requires one.
    #[error("no cluster-secret proof (is --cluster-secret set on that node?)")]
    NoProof,
    /// The MAC does not match: another secret, or a changed field, or a
    /// proof made for another pipe.
    #[error(
        "cluster-secret proof does not match (another secret, or a hello signed for another pipe)"
    )]
    BadMac,
    /// The timestamp is outside the window.
    #[error("hello timestamp is {skew_ms} ms away from our clock (more than the allowed skew)")]
    Stale {
        /// Distance from our clock.
        skew_ms: u64,
    },
    /// The nonce was seen before within the window.
    #[error("hello was already received once (replay)")]
    Replayed,
    /// The hello claims a node id other than the one in its routing id.
    #[error("hello claims node {claimed} but arrived on a pipe of node {pipe}")]
    WrongNode {
        /// The node id in the hello.
        claimed: u64,
        /// The node id in the routing id.
        pipe: u64,
    },
    /// A message other than a hello, from a routing id that has not
    /// authenticated.
    #[error("message from a peer that has not authenticated")]
    NotAuthenticated,
}

impl HelloRefused {
    /// A short static label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            HelloRefused::NoProof => "no_proof",
            HelloRefused::BadMac => "bad_mac",
            HelloRefused::Stale { .. } => "stale",
            HelloRefused::Replayed => "replayed",
            HelloRefused::WrongNode { .. } => "wrong_node",
            HelloRefused::NotAuthenticated => "not_authenticated",
        }
    }
}

/// Checks a hello's proof for the pipe `routing_id` at `now_ms`, MAC and
/// timestamp only (the replay cache is the receiver's). The MAC is
/// compared in constant time.
pub fn verify_at<H: SignedHello>(
    secret: &ClusterSecret,
    routing_id: &[u8],
    hello: &H,
    now_ms: u64,
) -> Result<(), HelloRefused> {
    let proof = hello.proof().ok_or(HelloRefused::NoProof)?;
    secret
        .mac(H::DOMAIN, routing_id, &signed_body(hello))
        .verify_slice(&proof.mac)
        .map_err(|_| HelloRefused::BadMac)?;
    let skew_ms = now_ms.abs_diff(proof.timestamp_ms);
    if skew_ms > MAX_CLOCK_SKEW.as_millis() as u64 {
        return Err(HelloRefused::Stale { skew_ms });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(node: u64) -> GatewayHello {
        GatewayHello {
            gateway_node_id: node,
            p2p_endpoint: "tcp://127.0.0.1:8001".into(),
            incarnation: 42,
            open_connections: 0,
            probe: 1,
            proof: None,
        }
    }

    fn rid(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn a_signed_hello_verifies_for_its_pipe_only() {
        let secret = ClusterSecret::new("s3cret");
        let pipe = rid("gateway:7:0011223344556677");
        let mut h = hello(7);
        sign(Some(&secret), &pipe, &mut h);
        verify_at(&secret, &pipe, &h, now_unix_ms()).unwrap();
        assert_eq!(
            verify_at(&secret, b"gateway:7:ff", &h, now_unix_ms()),
            Err(HelloRefused::BadMac)
        );
        assert_eq!(
            verify_at(&ClusterSecret::new("wrong"), &pipe, &h, now_unix_ms()),
            Err(HelloRefused::BadMac)
        );
    }

    #[test]
    fn each_envelope_names_its_hello() {
        let h = hello(7);
        assert!(gateway_to_server::Kind::Hello(h).hello().is_some());
        let other = gateway_to_server::Kind::ClientDisconnected(Default::default());
        assert!(other.hello().is_none());
        let mesh = mesh_message::Kind::Hello(MeshHello::default());
        assert!(mesh.hello().is_some());
        let server = server_to_gateway::Kind::Send(Default::default());
        assert!(server.hello().is_none());
    }

    #[test]
    fn a_changed_field_breaks_the_proof() {
        let secret = ClusterSecret::new("s");
        let pipe = rid("gateway:7:01");
        let mut h = hello(7);
        sign(Some(&secret), &pipe, &mut h);
        h.p2p_endpoint = "tcp://10.0.0.66:8001".into();
        assert_eq!(
            verify_at(&secret, &pipe, &h, now_unix_ms()),
            Err(HelloRefused::BadMac)
        );
    }

    #[test]
    fn an_old_or_future_hello_is_refused() {
        let secret = ClusterSecret::new("s");
        let pipe = rid("gateway:7:01");
        let now = now_unix_ms();
        for ts in [now - 31_000, now + 31_000] {
            let mut h = hello(7);
            sign_at(&secret, &pipe, &mut h, ts);
            assert!(matches!(
                verify_at(&secret, &pipe, &h, now),
                Err(HelloRefused::Stale { .. })
            ));
        }
        let mut h = hello(7);
        sign_at(&secret, &pipe, &mut h, now - 29_000);
        verify_at(&secret, &pipe, &h, now).unwrap();
    }

    #[test]
    fn a_proof_for_one_hello_type_is_not_valid_for_another() {
        let secret = ClusterSecret::new("s");
        let pipe = rid("x:7:01");
        let mut g = hello(7);
        sign(Some(&secret), &pipe, &mut g);
        // Same field numbers and values, another type.
        let as_mesh = MeshHello::decode(g.encode_to_vec().as_slice()).unwrap();
        assert_eq!(
            verify_at(&secret, &pipe, &as_mesh, now_unix_ms()),
            Err(HelloRefused::BadMac)
        );
    }

    #[test]
    fn the_secret_is_not_printed() {
        assert_eq!(
            format!("{:?}", ClusterSecret::new("hunter2")),
            "ClusterSecret(<hidden>)"
        );
    }
}
