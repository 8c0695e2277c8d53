//! Link errors.

use thiserror::Error;

use crate::NodeId;

/// Why a link operation failed.
#[derive(Debug, Error)]
pub enum LinkError {
    /// The inbound port could not be bound (most often: already in use).
    #[error("cannot listen on {endpoint}: {source}")]
    Bind {
        /// The endpoint we tried to bind.
        endpoint: String,
        /// libzmq's reason.
        source: zmq::Error,
    },
    /// libzmq refused a socket operation.
    #[error("zeromq error: {0}")]
    Zmq(#[from] zmq::Error),
    /// No connected pipe to the peer.
    #[error("node {0} is unreachable (not connected)")]
    Unreachable(NodeId),
    /// The pipe to the peer is connected but holds its high-water mark of
    /// messages: the peer is not reading fast enough. Counted in
    /// `gamemesh_link_hwm_events_total`; the message was not queued.
    #[error("node {0} is not keeping up (its queue is at the high-water mark)")]
    Full(NodeId),
    /// The link has been shut down.
    #[error("link is closed")]
    Closed,
}

/// A [`crate::Link::send_many`] that handed over only some payloads.
#[derive(Debug, Error)]
#[error("{sent} payload(s) sent, then: {error}")]
pub struct SendManyError {
    /// How many payloads went (the first `sent`, in order).
    pub sent: usize,
    /// Why the next one did not (the rest were not tried).
    pub error: LinkError,
}

impl LinkError {
    /// A short static label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            LinkError::Bind { .. } => "bind",
            LinkError::Zmq(_) => "zmq",
            LinkError::Unreachable(_) => "unreachable",
            LinkError::Full(_) => "hwm",
            LinkError::Closed => "closed",
        }
    }

    /// True when the bind failed because the address is taken.
    pub fn is_addr_in_use(&self) -> bool {
        matches!(
            self,
            LinkError::Bind {
                source: zmq::Error::EADDRINUSE,
                ..
            }
        )
    }
}
