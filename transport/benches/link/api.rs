//! The link API the bench uses, for the current transport. `old_api.rs`
//! is the same for the transport before batching (issue 16), so one bench
//! runs against both: copy it over this file in a checkout of that commit.

use bytes::Bytes;
use gamemesh_transport::{Link, LinkError, LinkEvent, NodeId, ZmqLink};

/// What `ZmqLink::bind` hands back for receiving.
pub type Receiver = gamemesh_transport::LinkReceiver;

/// Appends what one wake-up brings; 0 when the link closed.
pub async fn recv_many(rx: &mut Receiver, out: &mut Vec<LinkEvent>) -> usize {
    rx.recv_many(out).await
}

/// Sends a burst; on a refusal, how many went and why the next did not.
pub fn send_many(
    link: &ZmqLink,
    peer: NodeId,
    payloads: &[Bytes],
) -> Result<(), (usize, LinkError)> {
    link.send_many(peer, payloads)
        .map_err(|e| (e.sent, e.error))
}
