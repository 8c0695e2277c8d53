//! Process limits that decide how many connections a benchmark can hold.
//!
//! Both the load generator and the bare echo server raise their open-file
//! soft limit to the hard limit before anything else: the soft limit is often
//! 1,024 while the hard limit allows far more, and a benchmark that dies at
//! connection 1,021 with "too many open files" measures nothing.

use std::io;

/// File descriptors a process needs besides its sockets: stdio, the
/// runtime's epoll and wake-up descriptors, a few libraries' own files.
pub const FD_RESERVE: u64 = 64;

/// The open-file limit after [`raise_open_file_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimit {
    /// The limit in force now (raised to `hard` when that was allowed).
    pub soft: u64,
    /// The ceiling an unprivileged process cannot raise itself above.
    pub hard: u64,
}

impl OpenFileLimit {
    /// How many sockets fit beside [`FD_RESERVE`].
    pub fn sockets(&self) -> u64 {
        self.soft.saturating_sub(FD_RESERVE)
    }
}

/// Raises `RLIMIT_NOFILE`'s soft limit to its hard limit and returns both.
pub fn raise_open_file_limit() -> io::Result<OpenFileLimit> {
    let soft = rlimit::increase_nofile_limit(u64::MAX)?;
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    Ok(OpenFileLimit { soft, hard })
}

/// True for "this process has too many open files" (EMFILE) and "the
/// system has too many open files" (ENFILE).
pub fn is_fd_exhaustion(e: &io::Error) -> bool {
    // Linux values; the only platform these benchmarks run on.
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    matches!(e.raw_os_error(), Some(EMFILE | ENFILE))
}

/// True for "no local address/port left for this connection"
/// (EADDRNOTAVAIL from `connect`, EADDRINUSE from binding port 0).
pub fn is_port_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::AddrNotAvailable | io::ErrorKind::AddrInUse
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_never_lowers_and_reports_a_usable_limit() {
        let before = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        let limit = raise_open_file_limit().unwrap();
        assert!(limit.soft >= before.0);
        assert!(limit.soft <= limit.hard);
        assert_eq!(limit.sockets(), limit.soft.saturating_sub(FD_RESERVE));
    }

    #[test]
    fn classifies_limit_errors() {
        assert!(is_fd_exhaustion(&io::Error::from_raw_os_error(24)));
        assert!(is_fd_exhaustion(&io::Error::from_raw_os_error(23)));
        assert!(!is_fd_exhaustion(&io::Error::from_raw_os_error(111)));
        assert!(is_port_exhaustion(&io::Error::from_raw_os_error(99)));
        assert!(!is_port_exhaustion(&io::Error::from_raw_os_error(111)));
    }
}
