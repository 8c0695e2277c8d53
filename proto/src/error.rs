//! Framing errors.

use thiserror::Error;

/// Why a byte stream could not be cut into frames. Every variant except
/// [`FrameError::Io`] is the peer's fault: the connection is closed and no
/// other connection is affected.
#[derive(Debug, Error)]
pub enum FrameError {
    /// A length header of 0: the contract forbids empty frames.
    #[error("frame length 0 is a protocol error")]
    ZeroLength,
    /// A length header above the configured maximum. Nothing was allocated
    /// for it.
    #[error("frame length {len} exceeds the maximum of {max} bytes")]
    TooLarge {
        /// The announced body length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The underlying socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    /// A short static label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            FrameError::ZeroLength => "zero_length",
            FrameError::TooLarge { .. } => "too_large",
            FrameError::Io(_) => "io",
        }
    }
}
