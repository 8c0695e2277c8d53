//! Authentication of the internal ports with a shared cluster secret.
//!
//! Every hello (`GatewayHello`, `ServerHello`, `MeshHello`) carries a
//! [`HelloProof`]: an HMAC-SHA256 under the cluster secret over the hello's
//! type, the ZeroMQ routing id of the pipe it travels on, and the whole
//! hello (node id, endpoint, incarnation, ...), plus a timestamp and a
//! random nonce. A receiver ([`PeerGate`]) accepts a hello only when the
//! MAC matches, the claimed node id is the one in the routing id, the
//! timestamp is within [`MAX_CLOCK_SKEW`] of its clock, and the nonce has not
//! been seen in that window. The routing id it arrived on then counts as
//! authenticated, and anything else from a routing id that is not is
//! dropped, logged (one line per peer per [`LOG_EVERY`]) and counted
//! (`gamemesh_link_unauthenticated_total{link, reason}`).
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
//! Without a secret ([`PeerGate::open`]) hellos go unsigned and everything
//! is admitted, as before this existed; the binaries warn at start-up.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use prost::Message;
use sha2::Sha256;
use thiserror::Error;
use tracing::warn;

use crate::internal::{
    gateway_to_server, mesh_message, server_to_gateway, GatewayHello, HelloProof, MeshHello,
    ServerHello,
};

type HmacSha256 = Hmac<Sha256>;

/// Largest accepted difference between a hello's timestamp and our clock.
/// Hellos go out every heartbeat (1 s), so the window only has to absorb
/// clock skew between machines (NTP keeps it far below this) and queueing.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(30);

/// At most one log line per unauthenticated peer (routing id) this often;
/// the rest are only counted.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// A routing id that sent no valid hello for this long is forgotten (its
/// peer has restarted or gone; live peers send one every heartbeat).
pub const FORGET_AFTER: Duration = Duration::from_secs(60);

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
/// timestamp only (no replay cache: see [`PeerGate`]). The MAC is compared
/// in constant time.
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

/// One receiving link's view of which peers have authenticated. Owned by
/// the single task that reads that link, so it needs no lock.
#[derive(Debug)]
pub struct PeerGate {
    /// The secret; `None` admits everything (development).
    secret: Option<ClusterSecret>,
    /// Names the link in logs and metrics (`p2p`, `mesh`, `gateway`).
    link: &'static str,
    /// Authenticated routing ids: their node and their last valid hello.
    authenticated: HashMap<Bytes, (u64, Instant)>,
    /// Nonces of accepted hellos, with their timestamps, for the window.
    nonces: HashMap<Bytes, u64>,
    /// When `nonces` and `authenticated` were last pruned.
    pruned: Instant,
    /// When each refused peer was last logged (rate limit).
    logged: HashMap<Bytes, Instant>,
    /// Messages refused so far (the metric's total for this link), shared
    /// with whoever wants to read it ([`PeerGate::counter`]).
    refused: Arc<AtomicU64>,
}

impl PeerGate {
    /// A gate that requires proofs made with `secret`.
    pub fn new(secret: ClusterSecret, link: &'static str) -> Self {
        Self::with(Some(secret), link)
    }

    /// A gate that admits everything (no secret configured).
    pub fn open(link: &'static str) -> Self {
        Self::with(None, link)
    }

    /// [`PeerGate::new`] or [`PeerGate::open`], as `secret` says.
    pub fn with(secret: Option<ClusterSecret>, link: &'static str) -> Self {
        Self {
            secret,
            link,
            authenticated: HashMap::new(),
            nonces: HashMap::new(),
            pruned: Instant::now(),
            logged: HashMap::new(),
            refused: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Counts refusals into `counter` (shared with, e.g., the state tests
    /// read) instead of a private one.
    pub fn counting_into(mut self, counter: Arc<AtomicU64>) -> Self {
        self.refused = counter;
        self
    }

    /// True when this gate requires proofs.
    pub fn is_enforcing(&self) -> bool {
        self.secret.is_some()
    }

    /// How many messages this gate has refused.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Admits a hello from node `from` (parsed from its routing id) on
    /// `routing_id`, or refuses it (logged and counted here). An admitted
    /// hello authenticates its routing id.
    pub fn admit_hello<H: SignedHello>(
        &mut self,
        from: u64,
        routing_id: &Bytes,
        hello: &H,
    ) -> Result<(), HelloRefused> {
        let result = self.check_hello(from, routing_id, hello, now_unix_ms(), Instant::now());
        if let Err(e) = &result {
            self.refuse(from, routing_id, e);
        }
        result
    }

    /// Admits any other message from `routing_id`, or refuses it (logged
    /// and counted here).
    pub fn admit(&mut self, from: u64, routing_id: &Bytes) -> bool {
        if self.secret.is_none() || self.authenticated.contains_key(routing_id) {
            return true;
        }
        self.refuse(from, routing_id, &HelloRefused::NotAuthenticated);
        false
    }

    fn check_hello<H: SignedHello>(
        &mut self,
        from: u64,
        routing_id: &Bytes,
        hello: &H,
        now_ms: u64,
        now: Instant,
    ) -> Result<(), HelloRefused> {
        let Some(secret) = &self.secret else {
            return Ok(());
        };
        if hello.claimed_node() != from {
            return Err(HelloRefused::WrongNode {
                claimed: hello.claimed_node(),
                pipe: from,
            });
        }
        verify_at(secret, routing_id, hello, now_ms)?;
        self.prune(now_ms, now);
        let proof = hello.proof().ok_or(HelloRefused::NoProof)?;
        // Only a secret holder gets this far, so the cache cannot be
        // flooded by strangers; it holds one entry per accepted hello in
        // the window.
        if self
            .nonces
            .insert(proof.nonce.clone(), proof.timestamp_ms)
            .is_some()
        {
            return Err(HelloRefused::Replayed);
        }
        self.authenticated.insert(routing_id.clone(), (from, now));
        Ok(())
    }

    /// Drops nonces older than the window and routing ids silent for
    /// [`FORGET_AFTER`], at most once a second.
    fn prune(&mut self, now_ms: u64, now: Instant) {
        if now.duration_since(self.pruned) < Duration::from_secs(1) {
            return;
        }
        self.pruned = now;
        let window = MAX_CLOCK_SKEW.as_millis() as u64;
        self.nonces.retain(|_, ts| now_ms.abs_diff(*ts) <= window);
        self.authenticated
            .retain(|_, (_, seen)| now.duration_since(*seen) < FORGET_AFTER);
        self.logged
            .retain(|_, at| now.duration_since(*at) < LOG_EVERY);
    }

    fn refuse(&mut self, from: u64, routing_id: &Bytes, why: &HelloRefused) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(
            "gamemesh_link_unauthenticated_total",
            "link" => self.link,
            "reason" => why.kind()
        )
        .increment(1);
        let now = Instant::now();
        let due = match self.logged.get(routing_id) {
            Some(at) => now.duration_since(*at) >= LOG_EVERY,
            None => true,
        };
        // Bound the rate-limit map against a flood of fresh routing ids:
        // past this many, strangers are only counted.
        if due && self.logged.len() < 4096 {
            self.logged.insert(routing_id.clone(), now);
            warn!(
                "Dropped a message on the {} port from node {from} (routing id {}): {why}; more from this peer are counted, not logged, for {} s",
                self.link,
                String::from_utf8_lossy(routing_id),
                LOG_EVERY.as_secs()
            );
        }
    }
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
    fn a_signed_hello_verifies_and_authenticates_its_pipe() {
        let secret = ClusterSecret::new("s3cret");
        let mut gate = PeerGate::new(secret.clone(), "test");
        let pipe = rid("gateway:7:0011223344556677");
        assert!(!gate.admit(7, &pipe), "nothing is admitted before a hello");
        let mut h = hello(7);
        sign(Some(&secret), &pipe, &mut h);
        gate.admit_hello(7, &pipe, &h).unwrap();
        assert!(gate.admit(7, &pipe));
        assert!(!gate.admit(7, &rid("gateway:7:ffffffffffffffff")));
        assert_eq!(gate.refused(), 2);
    }

    #[test]
    fn wrong_or_missing_secret_is_refused() {
        let mut gate = PeerGate::new(ClusterSecret::new("right"), "test");
        let pipe = rid("gateway:7:01");
        let mut h = hello(7);
        assert_eq!(gate.admit_hello(7, &pipe, &h), Err(HelloRefused::NoProof));
        sign(Some(&ClusterSecret::new("wrong")), &pipe, &mut h);
        assert_eq!(gate.admit_hello(7, &pipe, &h), Err(HelloRefused::BadMac));
        assert!(!gate.admit(7, &pipe));
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
    fn a_hello_replayed_on_the_same_pipe_is_refused() {
        let secret = ClusterSecret::new("s");
        let mut gate = PeerGate::new(secret.clone(), "test");
        let pipe = rid("gateway:7:01");
        let mut h = hello(7);
        sign(Some(&secret), &pipe, &mut h);
        gate.admit_hello(7, &pipe, &h).unwrap();
        assert_eq!(gate.admit_hello(7, &pipe, &h), Err(HelloRefused::Replayed));
    }

    #[test]
    fn a_hello_replayed_on_another_pipe_or_as_another_node_is_refused() {
        let secret = ClusterSecret::new("s");
        let mut gate = PeerGate::new(secret.clone(), "test");
        let mut h = hello(7);
        sign(Some(&secret), b"gateway:7:01", &mut h);
        // The attacker's own connection has its own routing id.
        assert_eq!(
            gate.admit_hello(7, &rid("gateway:7:02"), &h),
            Err(HelloRefused::BadMac)
        );
        // Or claims to be node 8 with node 7's hello.
        assert_eq!(
            gate.admit_hello(8, &rid("gateway:8:01"), &h),
            Err(HelloRefused::WrongNode {
                claimed: 7,
                pipe: 8
            })
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
    fn without_a_secret_everything_is_admitted() {
        let mut gate = PeerGate::open("test");
        let pipe = rid("gateway:7:01");
        assert!(gate.admit(7, &pipe));
        gate.admit_hello(7, &pipe, &hello(7)).unwrap();
        assert_eq!(gate.refused(), 0);
    }

    #[test]
    fn the_secret_is_not_printed() {
        assert_eq!(
            format!("{:?}", ClusterSecret::new("hunter2")),
            "ClusterSecret(<hidden>)"
        );
    }
}
