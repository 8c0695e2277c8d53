//! The errors a poster or caller can get back.

use std::fmt;

/// Why a message was not enqueued. The message comes back, so the poster
/// can answer for it (the hub turns a full session mailbox into
/// `RATE_LIMITED`) or try elsewhere.
#[derive(thiserror::Error)]
pub enum PostError<M> {
    /// The actor has stopped, or is stopping and takes no new messages.
    #[error("the actor has stopped")]
    Stopped(M),
    /// The mailbox is at capacity (only from `try_post`; `post` waits).
    #[error("the actor's mailbox is full")]
    Full(M),
}

impl<M> PostError<M> {
    /// The message that was not enqueued.
    pub fn into_inner(self) -> M {
        match self {
            Self::Stopped(m) | Self::Full(m) => m,
        }
    }

    /// True for [`PostError::Stopped`].
    pub fn is_stopped(&self) -> bool {
        matches!(self, Self::Stopped(_))
    }
}

// By hand: a derived Debug would require `M: Debug`, and messages often
// carry reply channels or payloads not worth printing.
impl<M> fmt::Debug for PostError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stopped(_) => f.write_str("Stopped(..)"),
            Self::Full(_) => f.write_str("Full(..)"),
        }
    }
}

/// Why a [`call`](crate::Addr::call) got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The actor stopped before it answered: it was stopped already, it was
    /// stopped with the request still queued, or its handler panicked.
    #[error("the actor stopped before it replied")]
    Stopped,
    /// The actor is running but its handler dropped the [`Reply`](crate::Reply)
    /// without answering: a bug in that handler.
    #[error("the actor dropped the request without replying")]
    NoReply,
}
