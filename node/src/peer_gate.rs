//! The cluster-secret check on everything that arrives on an internal
//! port: [`PeerGate::admit`], called once per message by each receiving
//! loop (the gateway's dispatcher, the game server's hub and its mesh).
//!
//! A hello is admitted when its proof holds (see
//! `gamemesh_proto::cluster_auth`: the MAC, the node it claims, the
//! timestamp) and its nonce is new within the clock-skew window; its
//! routing id then counts as authenticated. Any other message is admitted
//! only from an authenticated routing id. What is refused is dropped,
//! logged (one line per peer per [`LOG_EVERY`]) and counted
//! (`gamemesh_link_unauthenticated_total{link, reason}`).
//!
//! Without a secret ([`PeerGate::open`]) everything is admitted, as before
//! the secret existed; the binaries warn at start-up
//! ([`crate::flags::NodeFlags::warn_without_cluster_secret`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gamemesh_proto::cluster_auth::{
    now_unix_ms, sign, verify_at, ClusterSecret, HelloRefused, PeerMessage, SignedHello,
    MAX_CLOCK_SKEW,
};
use tracing::warn;

use crate::log_throttle::KeyedLogThrottle;

/// At most one log line per refused peer (routing id) this often; the
/// rest are only counted.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// A routing id that sent no valid hello for this long is forgotten (its
/// peer has restarted or gone; live peers send one every heartbeat).
pub const FORGET_AFTER: Duration = Duration::from_secs(60);

/// Most refused peers remembered for the log's rate limit: past this many
/// (a flood of fresh routing ids), strangers are only counted.
const MAX_LOGGED_PEERS: usize = 4096;

/// One link's side of the cluster secret, kept by whoever owns the link:
/// it signs the hellos we send, makes the [`PeerGate`] of the task that
/// reads the link, and says how many messages that gate refused.
#[derive(Debug, Clone)]
pub struct LinkTrust {
    /// The secret; `None` signs nothing and admits everything.
    secret: Option<ClusterSecret>,
    /// Names the link in logs and metrics.
    link: &'static str,
    /// Messages refused by the gates made here.
    refused: Arc<AtomicU64>,
}

impl LinkTrust {
    /// The trust of the link named `link` (`p2p`, `mesh`, `gateway-p2p`).
    pub fn new(secret: Option<ClusterSecret>, link: &'static str) -> Self {
        Self {
            secret,
            link,
            refused: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The gate for what arrives on the link: it admits only pipes that
    /// proved the secret in a hello (everything without a secret).
    pub fn gate(&self) -> PeerGate {
        PeerGate::with(self.secret.clone(), self.link).counting_into(self.refused.clone())
    }

    /// Messages the link's gate dropped (also
    /// `gamemesh_link_unauthenticated_total{link}`).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Signs `hello` for the pipe `routing_id`; without a secret it leaves
    /// the hello unsigned.
    pub fn sign<H: SignedHello>(&self, routing_id: &[u8], hello: &mut H) {
        sign(self.secret.as_ref(), routing_id, hello);
    }
}

/// One receiving link's view of which peers have authenticated. Owned by
/// the single task that reads that link.
#[derive(Debug)]
pub struct PeerGate {
    /// The secret; `None` admits everything (development).
    secret: Option<ClusterSecret>,
    /// Names the link in logs and metrics (`p2p`, `mesh`, `gateway-p2p`).
    link: &'static str,
    /// Authenticated routing ids: their node and their last valid hello.
    authenticated: HashMap<Bytes, (u64, Instant)>,
    /// Nonces of accepted hellos, with their timestamps, for the window.
    nonces: HashMap<Bytes, u64>,
    /// When `nonces` and `authenticated` were last pruned.
    pruned: Instant,
    /// One line per refused peer per [`LOG_EVERY`].
    log: KeyedLogThrottle<Bytes>,
    /// Messages refused so far (the metric's total for this link), shared
    /// with whoever wants to read it ([`PeerGate::counting_into`]).
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
            log: KeyedLogThrottle::new(LOG_EVERY, MAX_LOGGED_PEERS),
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

    /// Admits `message` from node `from` (parsed from its routing id) on
    /// `routing_id`, or refuses it (logged and counted here): the one check
    /// every receiving loop makes before acting on anything.
    pub fn admit<M: PeerMessage>(&mut self, from: u64, routing_id: &Bytes, message: &M) -> bool {
        match message.hello() {
            Some(hello) => self.admit_hello(from, routing_id, hello).is_ok(),
            None => self.admit_from_authenticated(from, routing_id),
        }
    }

    /// Admits a hello, or refuses it (logged and counted here). An
    /// admitted hello authenticates its routing id.
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

    /// Admits a message other than a hello if `routing_id` has
    /// authenticated, or refuses it (logged and counted here).
    pub fn admit_from_authenticated(&mut self, from: u64, routing_id: &Bytes) -> bool {
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
    }

    fn refuse(&mut self, from: u64, routing_id: &Bytes, why: &HelloRefused) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(
            "gamemesh_link_unauthenticated_total",
            "link" => self.link,
            "reason" => why.kind()
        )
        .increment(1);
        if self.log.allow(routing_id).is_some() {
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
    use gamemesh_proto::internal::{gateway_to_server, ClientDisconnected, GatewayHello};

    fn hello(node: u64) -> GatewayHello {
        GatewayHello {
            gateway_node_id: node,
            ..GatewayHello::default()
        }
    }

    fn other() -> gateway_to_server::Kind {
        gateway_to_server::Kind::ClientDisconnected(ClientDisconnected::default())
    }

    fn rid(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn a_signed_hello_authenticates_its_pipe_and_only_that_pipe() {
        let secret = ClusterSecret::new("s3cret");
        let mut gate = PeerGate::new(secret.clone(), "test");
        let pipe = rid("gateway:7:0011223344556677");
        assert!(!gate.admit(7, &pipe, &other()), "nothing before a hello");
        let mut h = hello(7);
        sign(Some(&secret), &pipe, &mut h);
        assert!(gate.admit(7, &pipe, &gateway_to_server::Kind::Hello(h)));
        assert!(gate.admit(7, &pipe, &other()));
        assert!(!gate.admit(7, &rid("gateway:7:ffffffffffffffff"), &other()));
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
        assert!(!gate.admit_from_authenticated(7, &pipe));
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
    fn without_a_secret_everything_is_admitted() {
        let mut gate = PeerGate::open("test");
        let pipe = rid("gateway:7:01");
        assert!(!gate.is_enforcing());
        assert!(gate.admit(7, &pipe, &other()));
        assert!(gate.admit(7, &pipe, &gateway_to_server::Kind::Hello(hello(7))));
        assert_eq!(gate.refused(), 0);
    }

    #[test]
    fn a_link_trust_signs_what_its_gates_admit_and_counts_what_they_refuse() {
        let trust = LinkTrust::new(Some(ClusterSecret::new("s")), "test");
        let mut gate = trust.gate();
        for _ in 0..3 {
            assert!(!gate.admit(7, &rid("x:7:01"), &other()));
        }
        let mut h = hello(7);
        trust.sign(b"x:7:01", &mut h);
        assert!(gate.admit(7, &rid("x:7:01"), &gateway_to_server::Kind::Hello(h)));
        assert_eq!(trust.refused(), 3);
        assert_eq!(trust.gate().refused(), 3, "every gate counts into it");
    }
}
