//! Login attempt limits (issue 6, "Overload"): token buckets keyed by user
//! id and by client IP. A layer of the pipeline ([`LoginLimitLayer`])
//! checks them before the login handler, so an attempt over the limit
//! costs a map lookup, not an HMAC check and a Redis round trip: it is
//! answered `ErrorResponse{RATE_LIMITED}` with its sequence id, and
//! nothing else happens.
//!
//! - **What counts.** Every login that would run: successful or not
//!   (a bad token, a store outage). A re-sent login answered from the
//!   reply cache and a second login on a logged-in socket (which is
//!   kicked, see [`crate::handlers::login`]) are not attempts. A refused
//!   attempt takes no token, so a client that backs off is let in again
//!   as its buckets refill, whatever it sent while refused.
//! - **Keys.** The user id of the request, and the client's IP from the
//!   gateway's `ClientConnected`. IPv6 addresses are keyed by their /64,
//!   the block one subscriber is usually given (keying by /128 would let
//!   one host rotate through 2^64 keys). A socket whose `ClientConnected`
//!   went to another game server (its frames were re-routed here) has no
//!   known IP: only its user's limit applies.
//! - **Rate.** `--login-attempts-per-user-per-min` and
//!   `--login-attempts-per-ip-per-min`; the burst equals the per-minute
//!   figure, so a bucket is full again one idle minute after it was
//!   emptied.
//! - **Per game server.** The limits hold on each game server, not across
//!   the cluster: with N game servers a user or an IP (whose sockets the
//!   gateways spread round robin) gets up to N times the configured rate.
//!   A cluster-wide count would put a Redis call in front of every login,
//!   the very cost this check exists to avoid; per node, it bounds the
//!   work each node does for one user or IP, which is what protects it.
//! - **Bounded memory.** At most [`MAX_TRACKED_KEYS`] buckets are kept. Once
//!   a minute, buckets that are full again are dropped (an absent key
//!   counts as a full bucket, so dropping one changes nothing). Past the
//!   cap, new keys are let through untracked rather than refused: a flood
//!   of fresh keys (a botnet, or spoofed user ids) must not lock every
//!   new player out. Keys already tracked stay limited; the table-full
//!   condition is logged once a minute. (The buckets are
//!   `gamemesh_node::rate_limit::KeyedLimiter`, one table for both kinds
//!   of key, each at its own rate.)
//! - **Logging.** A refusal is logged once per key per minute at most
//!   ([`Refused::log`]), so a bot hammering the limit cannot flood the
//!   log.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use gamemesh_proto::client::{client_packet, ErrorCode};

use crate::middleware::guard::{Admit, GuardLayer};
use crate::request::{HubRequest, HubResponse};

use gamemesh_node::log_throttle::{KeyedLogThrottle, LogThrottle};
use gamemesh_node::rate_limit::{ip_key, KeyedLimiter, Rate};
use tracing::warn;

/// Most buckets kept at once (user and IP keys together); about 50 bytes
/// each, so a few MiB at most.
pub const MAX_TRACKED_KEYS: usize = 100_000;

/// How often buckets that are full again are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Shortest gap between two log lines about one key (or the full table).
const LOG_EVERY: Duration = Duration::from_secs(60);

/// What a bucket limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// Logins of one user id.
    User(u64),
    /// Logins from one client address (an IPv6 address reduced to its /64).
    Ip(IpAddr),
}

impl LimitKey {
    /// The key for a client address: IPv4 (also IPv4-mapped IPv6) as is,
    /// IPv6 by its /64.
    pub fn ip(addr: IpAddr) -> Self {
        LimitKey::Ip(ip_key(addr))
    }

    /// Which of [`LoginLimits`]' rates limits this key.
    fn rate_index(&self) -> usize {
        match self {
            LimitKey::User(_) => 0,
            LimitKey::Ip(_) => 1,
        }
    }
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitKey::User(u) => write!(f, "UserId={u}"),
            LimitKey::Ip(IpAddr::V6(a)) => write!(f, "Ip={a}/64"),
            LimitKey::Ip(a) => write!(f, "Ip={a}"),
        }
    }
}

/// A login attempt over a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// The bucket that was empty.
    pub key: LimitKey,
    /// True for the first refusal of this key in a minute: the caller logs
    /// it; later ones within the minute are not logged.
    pub log: bool,
}

/// The login attempt limits of one game server.
#[derive(Debug)]
pub struct LoginLimits {
    /// The buckets: users at the per-user rate, IPs at the per-IP rate.
    buckets: KeyedLimiter<LimitKey>,
    /// One refusal line per key per minute.
    refusal_log: KeyedLogThrottle<LimitKey>,
    /// One table-full line per minute.
    full_log: LogThrottle,
}

impl LoginLimits {
    /// Limits of `per_user` and `per_ip` attempts a minute (each also the
    /// burst), tracking at most [`MAX_TRACKED_KEYS`] keys.
    pub fn new(per_user: u32, per_ip: u32) -> Self {
        Self::with_max_keys(per_user, per_ip, MAX_TRACKED_KEYS)
    }

    /// As [`LoginLimits::new`], tracking at most `max_keys` keys.
    pub fn with_max_keys(per_user: u32, per_ip: u32, max_keys: usize) -> Self {
        let rates = [Rate::per_minute(per_user), Rate::per_minute(per_ip)];
        Self {
            buckets: KeyedLimiter::with_rates(&rates, LimitKey::rate_index)
                .max_keys(max_keys)
                .sweep_every(SWEEP_EVERY),
            refusal_log: KeyedLogThrottle::new(LOG_EVERY, max_keys),
            full_log: LogThrottle::new(LOG_EVERY),
        }
    }

    /// Counts one login attempt of `user_id` from `ip` (if known). Takes a
    /// token from each bucket when every one has one; otherwise takes none
    /// and says which bucket was empty.
    pub fn check(&self, user_id: u64, ip: Option<IpAddr>) -> Result<(), Refused> {
        let user = LimitKey::User(user_id);
        let both;
        let keys: &[LimitKey] = match ip {
            Some(ip) => {
                both = [user, LimitKey::ip(ip)];
                &both
            }
            None => std::slice::from_ref(&user),
        };
        match self.buckets.check_all(keys) {
            Ok(passed) => {
                if passed.untracked && self.full_log.allow().is_some() {
                    warn!(
                        "Login limit table full ({} keys): new users and IPs go unlimited until idle keys are swept",
                        self.buckets.len()
                    );
                }
                Ok(())
            }
            Err(i) => {
                let key = keys[i];
                let log = self.refusal_log.allow(&key).is_some();
                Err(Refused { key, log })
            }
        }
    }

    /// Drops the buckets that are full again now.
    pub fn sweep(&self) {
        self.buckets.sweep();
    }

    /// Number of keys tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

/// Adds the login limits to the pipeline: a login over them is answered
/// `RATE_LIMITED` and goes no further.
pub type LoginLimitLayer = GuardLayer<Arc<LoginLimits>>;

impl LoginLimitLayer {
    /// The layer over `limits`, the game server's buckets, shared by every
    /// connection.
    pub const fn new(limits: Arc<LoginLimits>) -> Self {
        Self::with(limits)
    }
}

/// What a client over the limit is told.
const TOO_MANY: &str = "too many login attempts; retry later";

/// Counts a login against the limits before it runs.
impl Admit for LoginLimits {
    fn refusal(&self, req: &mut HubRequest) -> Option<HubResponse> {
        // A login on a socket with a live session is no attempt: a re-sent
        // one is replayed from the reply cache, a new one closes the
        // socket (handlers::login). Every other login counts.
        if let Some(client_packet::Body::Login(login)) = &req.packet.body {
            if req.session.as_ref().is_none_or(|s| s.is_ended()) {
                if let Err(refused) = self.check(login.user_id, req.peer_ip) {
                    crate::metrics::hub().logins_failed.increment(1);
                    if refused.log {
                        warn!(
                            "Login attempts over the limit for {}: Socket={}, UserId={}; answering RATE_LIMITED (next line for this key in a minute at the earliest)",
                            refused.key, req.conn.socket, login.user_id
                        );
                    }
                    return Some(HubResponse::error(
                        req.packet.sequence_id,
                        ErrorCode::RateLimited,
                        TOO_MANY,
                    ));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));

    fn attempts(l: &LoginLimits, user: u64, ip: Option<IpAddr>, n: usize) -> usize {
        (0..n).filter(|_| l.check(user, ip).is_ok()).count()
    }

    #[tokio::test(start_paused = true)]
    async fn a_user_gets_the_burst_then_one_attempt_per_refill_interval() {
        let l = LoginLimits::new(10, 1000);
        assert_eq!(attempts(&l, 1, Some(IP), 10), 10, "the burst passes");
        let refused = l.check(1, Some(IP)).unwrap_err();
        assert_eq!(refused.key, LimitKey::User(1));
        // Another user from the same IP is not held back by user 1.
        assert!(l.check(2, Some(IP)).is_ok());
        // 10 a minute: one token every 6 s.
        tokio::time::advance(Duration::from_millis(5_900)).await;
        assert!(l.check(1, Some(IP)).is_err());
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(l.check(1, Some(IP)).is_ok());
        assert!(l.check(1, Some(IP)).is_err());
        // A full idle minute refills the whole burst, and no more.
        tokio::time::advance(Duration::from_secs(600)).await;
        assert_eq!(attempts(&l, 1, Some(IP), 20), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn an_ip_is_limited_across_users_and_refused_attempts_take_no_token() {
        let l = LoginLimits::new(10, 5);
        for user in 1..=5 {
            assert!(l.check(user, Some(IP)).is_ok());
        }
        let refused = l.check(6, Some(IP)).unwrap_err();
        assert_eq!(refused.key, LimitKey::Ip(IP));
        // User 6 was refused by its IP: its own bucket lost nothing, so
        // from another address it still has its whole burst.
        let other = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(attempts(&l, 6, Some(other), 20), 5, "other IP's burst");
        assert_eq!(attempts(&l, 6, None, 20), 5, "rest of user 6's burst");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_ip_is_limited_per_user_only() {
        let l = LoginLimits::new(3, 1);
        assert_eq!(attempts(&l, 1, None, 10), 3);
        assert_eq!(attempts(&l, 2, None, 10), 3);
        assert_eq!(l.tracked(), 2, "no IP key was made");
    }

    #[tokio::test(start_paused = true)]
    async fn ipv6_clients_are_keyed_by_their_64_and_mapped_ipv4_as_ipv4() {
        let l = LoginLimits::new(100, 2);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(l.check(1, Some(a)).is_ok());
        assert!(l.check(2, Some(b)).is_ok());
        let refused = l.check(3, Some(a)).unwrap_err();
        assert_eq!(refused.key.to_string(), "Ip=2001:db8:1:2::/64");
        assert!(l.check(4, Some(c)).is_ok(), "another /64 is another key");

        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert!(l.check(5, Some(mapped)).is_ok());
        assert!(l.check(6, Some(IP)).is_ok());
        assert_eq!(l.check(7, Some(IP)).unwrap_err().key, LimitKey::Ip(IP));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_key_is_logged_at_most_once_a_minute() {
        let l = LoginLimits::new(1, 100);
        assert!(l.check(1, None).is_ok());
        assert!(l.check(1, None).unwrap_err().log, "first refusal logs");
        for _ in 0..5 {
            assert!(!l.check(1, None).unwrap_err().log, "then it is quiet");
        }
        // Half a minute refills half a token: still refused, still quiet.
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(!l.check(1, None).unwrap_err().log);
        // The bucket refills in 60 s; the token is taken, then the next
        // refusal, a minute after the first log line, logs again.
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(l.check(1, None).is_ok());
        assert!(l.check(1, None).unwrap_err().log);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keys_are_swept_once_their_buckets_are_full() {
        let l = LoginLimits::new(10, 1000);
        for user in 1..=100 {
            assert!(l.check(user, Some(IP)).is_ok());
        }
        assert_eq!(l.tracked(), 101);
        // One attempt of 10 a minute refills in 6 s; the IP's 100 of 1000
        // a minute too. Before that, a sweep keeps every bucket.
        tokio::time::advance(Duration::from_secs(3)).await;
        l.sweep();
        assert_eq!(l.tracked(), 101);
        tokio::time::advance(Duration::from_secs(4)).await;
        l.sweep();
        assert_eq!(l.tracked(), 0, "full buckets are dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn checks_sweep_by_themselves_once_a_minute() {
        let l = LoginLimits::new(10, 1000);
        for user in 1..=100 {
            assert!(l.check(user, None).is_ok());
        }
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(l.check(500, None).is_ok());
        assert_eq!(l.tracked(), 101, "no sweep before a minute");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(l.check(501, None).is_ok());
        assert_eq!(l.tracked(), 2, "users 500 (not yet full) and 501");
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_cap_new_keys_pass_untracked_and_tracked_ones_stay_limited() {
        let l = LoginLimits::with_max_keys(1, 1000, 3);
        assert!(l.check(1, Some(IP)).is_ok()); // user 1 + IP
        assert!(l.check(2, None).is_ok()); // user 2: table full
        assert_eq!(l.tracked(), 3);
        // New users pass, every time: they are not tracked.
        for _ in 0..5 {
            assert!(l.check(3, None).is_ok());
        }
        assert_eq!(l.tracked(), 3);
        // Tracked users are still limited.
        assert_eq!(l.check(1, None).unwrap_err().key, LimitKey::User(1));
        assert_eq!(l.check(2, None).unwrap_err().key, LimitKey::User(2));
        // Once their buckets refill and are swept, new keys are tracked.
        tokio::time::advance(Duration::from_secs(61)).await;
        l.sweep();
        assert_eq!(l.tracked(), 0);
        assert!(l.check(3, None).is_ok());
        assert!(l.check(3, None).is_err());
    }
}
