//! The bench's link API for the transport before batching (a receive
//! thread and a channel, one message per payload). Not compiled here:
//! copy it over `api.rs` in a checkout of that commit to run the A/B.

use bytes::Bytes;
use gamemesh_transport::{Link, LinkError, LinkEvent, NodeId, ZmqLink};

/// What `ZmqLink::bind` handed back for receiving.
pub type Receiver = tokio::sync::mpsc::Receiver<LinkEvent>;

/// Appends what the channel holds (at least one); 0 when it closed.
pub async fn recv_many(rx: &mut Receiver, out: &mut Vec<LinkEvent>) -> usize {
    rx.recv_many(out, 1024).await
}

/// One send per payload: the old link had nothing else.
pub fn send_many(link: &ZmqLink, peer: NodeId, payloads: &[Bytes]) -> Result<(), (usize, LinkError)> {
    for (i, p) in payloads.iter().enumerate() {
        link.send(peer, p.clone()).map_err(|e| (i, e))?;
    }
    Ok(())
}
