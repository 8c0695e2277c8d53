//! Node-to-node links for gamemesh.
//!
//! Every node binds one inbound socket and opens one outbound socket per
//! peer. Messages to a peer leave on the outbound socket and arrive on the
//! peer's inbound socket; the peer answers on *its* outbound socket to our
//! inbound one. So each direction is one ordered, independently reconnecting
//! pipe, and a node learns a peer's address from that peer's hello (no flag
//! lists gateways on a game server).
//!
//! [`Link`] is the small trait the rest of gamemesh uses;
//! [`zmq_link::ZmqLink`] implements it with libzmq (ROUTER in, one DEALER per
//! peer out), which reconnects by itself when a peer restarts, bounds every
//! queue with high-water marks and runs ZMTP heartbeats.
//!
//! Modules, in the order a payload meets them:
//! - [`zmq_link`]: the link, its sockets and options, and where a send
//!   finds its pipe;
//! - [`pipe`] (private): one outbound pipe; a send in progress takes along
//!   whatever other senders queued meanwhile, as one batch;
//! - [`batch`]: the wire format, one ZeroMQ message = a batch of payloads;
//! - [`receiver`]: the ROUTER, read on tokio through its FD by the one
//!   task that owns the [`LinkReceiver`], which splits each batch into
//!   [`LinkEvent`]s (slices of one buffer, no copy per payload);
//! - [`error`]: what can go wrong.

pub mod batch;
pub mod error;
mod pipe;
pub mod receiver;
pub mod zmq_link;

use bytes::Bytes;

pub use error::{LinkError, SendManyError};
pub use receiver::LinkReceiver;
pub use zmq_link::{curve_available, LinkConfig, ZmqLink, DEFAULT_RCVHWM, DEFAULT_SNDHWM};

/// This process's incarnation: its start time in Unix milliseconds, the
/// same for every link the process opens. Hellos carry it so a peer can
/// tell a restarted node (whose sockets and sessions are all gone) from
/// one that merely went quiet.
pub fn incarnation() -> u64 {
    static STARTED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *STARTED.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    })
}

/// A node id: unique per role (gateways and game servers each number from 1).
pub type NodeId = u64;

/// What a link reports to its owner.
#[derive(Debug)]
pub enum LinkEvent {
    /// A message from a peer.
    Message {
        /// The sender's node id, taken from its ZeroMQ routing id.
        from: NodeId,
        /// The sender's whole routing id (`<role>:<node id>:<token>`): one
        /// per outbound pipe of the sender. Authentication is bound to it.
        routing_id: Bytes,
        /// The payload, untouched: a slice of the batch it came in (no
        /// copy). Holding it holds that whole batch (up to
        /// [`LinkConfig::max_batch`] bytes); copy what is kept for long.
        payload: Bytes,
    },
    /// Our outbound pipe to `peer` lost its connection: the peer's process
    /// died or closed its socket (a killed process's TCP connections close
    /// at once), reported within milliseconds instead of after the peer
    /// timeout. Reported once per connection lost, and never for a pipe we
    /// closed ourselves. It may also be a transient break that the pipe
    /// repairs by reconnecting by itself: treat it as "not reachable
    /// now" (route elsewhere), not as "its state is gone"; a hello over
    /// the reconnected pipe brings the peer back. A stopped process
    /// (SIGSTOP) keeps its connections open and is not reported until
    /// ZMTP heartbeats give up on it.
    PeerDisconnected {
        /// The node id the pipe is filed under.
        peer: NodeId,
    },
}

impl LinkEvent {
    /// A message's sender, routing id and payload, for the owner that acts
    /// on messages and only takes note of lost connections: for
    /// [`LinkEvent::PeerDisconnected`] it calls `lost` with the peer and
    /// returns `None`.
    pub fn message_or(self, lost: impl FnOnce(NodeId)) -> Option<(NodeId, Bytes, Bytes)> {
        match self {
            LinkEvent::Message {
                from,
                routing_id,
                payload,
            } => Some((from, routing_id, payload)),
            LinkEvent::PeerDisconnected { peer } => {
                lost(peer);
                None
            }
        }
    }
}

/// A message transport between nodes. Implementations never block the
/// caller: `send` hands the message over or fails at once (the peer is not
/// connected, or its queue is full), so whoever waits on the message can
/// be answered (a client gets `UNAVAILABLE`, never silence).
pub trait Link: Send + Sync + 'static {
    /// Opens (or re-points) the outbound pipe to `peer`.
    fn connect(&self, peer: NodeId, endpoint: &str) -> Result<(), LinkError>;
    /// Files the open outbound pipe of `from` under `to` (the pipe itself,
    /// already connected, is kept). Used when a peer dialled by address
    /// turns out to be node `to`: a fresh pipe would drop messages until
    /// its handshake completes.
    fn rename(&self, from: NodeId, to: NodeId) -> Result<(), LinkError>;
    /// Closes the outbound pipe to `peer`, dropping what it still holds.
    fn disconnect(&self, peer: NodeId) -> Result<(), LinkError>;
    /// Hands `payload` to the pipe to `peer`, or fails without blocking.
    fn send(&self, peer: NodeId, payload: Bytes) -> Result<(), LinkError>;
    /// Hands `payloads` to the pipe to `peer`, in order, without blocking:
    /// a caller with several payloads for one peer at hand (a burst read
    /// from one client, the replies of one wake-up) sends them as few
    /// messages as the link allows. On a refusal, says how many went (a
    /// prefix) and why the next did not; the rest were not tried.
    fn send_many(&self, peer: NodeId, payloads: &[Bytes]) -> Result<(), SendManyError> {
        for (sent, payload) in payloads.iter().enumerate() {
            self.send(peer, payload.clone())
                .map_err(|error| SendManyError { sent, error })?;
        }
        Ok(())
    }
    /// Like [`Link::send`], with the payload built from the routing id of
    /// the pipe it will travel on, atomically with the send: a hello signs
    /// that routing id, so its proof is valid on that pipe only.
    fn send_signed(&self, peer: NodeId, build: &dyn Fn(&[u8]) -> Bytes) -> Result<(), LinkError>;
    /// The endpoint peers connect to, e.g. `tcp://127.0.0.1:8001`.
    fn local_endpoint(&self) -> &str;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_or_hands_a_message_on_and_reports_a_lost_peer() {
        let message = LinkEvent::Message {
            from: 7,
            routing_id: Bytes::from_static(b"gw:7:a"),
            payload: Bytes::from_static(b"hi"),
        };
        let got = message.message_or(|_| panic!("a message is no lost peer"));
        assert_eq!(
            got,
            Some((7, Bytes::from_static(b"gw:7:a"), Bytes::from_static(b"hi")))
        );

        let mut lost = None;
        let got = LinkEvent::PeerDisconnected { peer: 3 }.message_or(|p| lost = Some(p));
        assert_eq!((got, lost), (None, Some(3)));
    }
}
