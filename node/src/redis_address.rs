//! Redis addresses as operators write them (`--redis`, `REDIS_CONNECTION`,
//! `test-client admin --redis`): parsed ([`RedisAddress::parse`]),
//! normalised to a URL the redis crate opens ([`normalise`]), and shown
//! with their secrets hidden ([`redact`]).
//!
//! | Form | Meaning |
//! |---|---|
//! | `host:port` | Plain TCP, no password (the original form). |
//! | `redis://[user:pass@]host:port[/db]` | Plain TCP, with `AUTH` when a password is given. |
//! | `rediss://[user:pass@]host:port[/db]` | TLS. |
//! | `redis+sentinel://[user:pass@]host:port[,host:port...]/<master-name>[/db]` | The primary the sentinels (port 26379 when left out) name for `<master-name>`; the user and password are the data nodes'. |
//! | `rediss+sentinel://...` | The same, with TLS to the sentinels and to the data nodes. |
//! | `redis+cluster://[user:pass@]host:port[,host:port...]` | Redis Cluster: any of its nodes (port 6379 when left out) as seeds; the client learns the rest and follows redirects and failovers. No database number: a cluster has only database 0. |
//! | `rediss+cluster://...` | The same, with TLS to every node. |
//!
//! The redis crate parses the plain forms and the credentials of the
//! Sentinel and Cluster forms (percent-decoding included); it has no
//! multi-host URL, so the host list and master name are split here (the
//! name decoded by `percent-encoding`).
//!
//! [`ClusterAddress::client_builder`] starts the cluster client the game
//! server and the jobs crate both connect with.
//!
//! [`cluster_slot`] is Redis Cluster's key-to-slot function, for tests
//! that check every script's keys share one slot.
//! [`redact`] is by hand because it must also work on text the crate
//! refuses: it is what an error about a bad address shows.

use std::time::Duration;

use percent_encoding::percent_decode_str;
use redis::cluster::ClusterClientBuilder;
use redis::IntoConnectionInfo;
use thiserror::Error;

/// Sentinel's well-known port, for sentinel addresses given without one.
pub const SENTINEL_PORT: u16 = 26379;

/// Redis's well-known port, for cluster seeds given without one.
pub const REDIS_PORT: u16 = 6379;

/// What stands in for a hidden secret.
pub const REDACTED: &str = "***";

/// A parsed Redis address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisAddress {
    /// One Redis.
    Direct {
        /// A `redis://` or `rediss://` URL the redis crate opens.
        url: String,
        /// `rediss://`.
        tls: bool,
    },
    /// A primary named by sentinels.
    Sentinel(SentinelAddress),
    /// A Redis Cluster, reached through any of its nodes.
    Cluster(ClusterAddress),
}

/// A `redis+cluster://` (or `rediss+cluster://`) address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterAddress {
    /// Seed nodes, in the order given: the client asks them for the slot
    /// map, so one reachable node is enough.
    pub nodes: Vec<(String, u16)>,
    /// The nodes' ACL user.
    pub username: Option<String>,
    /// The nodes' password.
    pub password: Option<String>,
    /// `rediss+cluster://`.
    pub tls: bool,
}

impl ClusterAddress {
    /// The seeds as URLs the redis crate opens (no credentials: the
    /// cluster client is given those once, for every node it learns).
    pub fn seed_urls(&self) -> Vec<String> {
        let scheme = if self.tls { "rediss" } else { "redis" };
        self.nodes
            .iter()
            .map(|(host, port)| {
                if host.contains(':') {
                    format!("{scheme}://[{host}]:{port}")
                } else {
                    format!("{scheme}://{host}:{port}")
                }
            })
            .collect()
    }

    /// A cluster client builder for these seeds and credentials: `timeout`
    /// bounds connecting and every reply; RESP3 when `resp3` (pub/sub
    /// pushes need it), else RESP2. TLS settings are the caller's.
    pub fn client_builder(&self, timeout: Duration, resp3: bool) -> ClusterClientBuilder {
        let mut b = ClusterClientBuilder::new(self.seed_urls())
            .connection_timeout(timeout)
            .response_timeout(timeout);
        if let Some(u) = &self.username {
            b = b.username(u);
        }
        if let Some(p) = &self.password {
            b = b.password(p);
        }
        if resp3 {
            b = b.use_protocol(redis::ProtocolVersion::RESP3);
        }
        b
    }
}

/// A `redis+sentinel://` (or `rediss+sentinel://`) address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelAddress {
    /// Sentinel addresses, in the order given.
    pub sentinels: Vec<(String, u16)>,
    /// The name the sentinels monitor the primary under.
    pub master: String,
    /// Database number on the data nodes.
    pub db: i64,
    /// Data nodes' ACL user.
    pub username: Option<String>,
    /// Data nodes' password.
    pub password: Option<String>,
    /// `rediss+sentinel://`.
    pub tls: bool,
}

/// An address that is not one of the forms. Its text shows the address
/// redacted, never a password.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{shown} is not a Redis address: {why}")]
pub struct BadAddress {
    /// The address, redacted.
    pub shown: String,
    /// What is wrong with it.
    pub why: String,
}

impl RedisAddress {
    /// Parses one of the forms in the module docs.
    pub fn parse(address: &str) -> Result<Self, BadAddress> {
        let bad = |why: String| BadAddress {
            shown: redact(address),
            why,
        };
        let (scheme, rest) = address.split_once("://").unwrap_or(("redis", address));
        match scheme {
            "redis" | "rediss" => {
                let url = normalise(address);
                // The crate's own parse; its message is not shown, since
                // it may quote the URL.
                if url.as_str().into_connection_info().is_err() {
                    return Err(bad(
                        "expected host:port or redis[s]://[user:pass@]host:port[/db]".into(),
                    ));
                }
                Ok(RedisAddress::Direct {
                    url,
                    tls: scheme == "rediss",
                })
            }
            "redis+sentinel" | "rediss+sentinel" => {
                parse_sentinel(rest, scheme == "rediss+sentinel").map_err(bad)
            }
            "redis+cluster" | "rediss+cluster" => {
                parse_cluster(rest, scheme == "rediss+cluster").map_err(bad)
            }
            other => Err(bad(format!(
                "unknown scheme {other:?} (use redis, rediss, redis+sentinel, rediss+sentinel, redis+cluster or rediss+cluster)"
            ))),
        }
    }

    /// True for the TLS forms.
    pub fn tls(&self) -> bool {
        match self {
            RedisAddress::Direct { tls, .. }
            | RedisAddress::Sentinel(SentinelAddress { tls, .. })
            | RedisAddress::Cluster(ClusterAddress { tls, .. }) => *tls,
        }
    }

    /// The data nodes' password, if the address carries one.
    pub fn password(&self) -> Option<String> {
        match self {
            RedisAddress::Direct { url, .. } => url
                .as_str()
                .into_connection_info()
                .ok()
                .and_then(|i| i.redis_settings().password().map(str::to_string)),
            RedisAddress::Sentinel(s) => s.password.clone(),
            RedisAddress::Cluster(c) => c.password.clone(),
        }
    }
}

/// The part of a Cluster address after `scheme://`.
fn parse_cluster(rest: &str, tls: bool) -> Result<RedisAddress, String> {
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if !path.is_empty() && path != "0" {
        return Err(format!(
            "a Redis Cluster has only database 0, not {path:?}: drop the /{path}"
        ));
    }
    let Hosts {
        username,
        password,
        hosts: nodes,
    } = hosts(
        authority,
        REDIS_PORT,
        "cluster node address",
        "no node address (redis+cluster://host:port[,host:port...])",
    )?;
    Ok(RedisAddress::Cluster(ClusterAddress {
        nodes,
        username,
        password,
        tls,
    }))
}

/// Redis Cluster's slot of `key`: CRC16/XMODEM of its hash tag (the text
/// between the first `{` and the next `}`, if not empty) or of the whole
/// key, mod 16384. Keys one script or one multi-key command touches must
/// share it; the stores' tests check theirs with this.
pub fn cluster_slot(key: &str) -> u16 {
    let hashed = match key.find('{') {
        Some(open) => match key[open + 1..].find('}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    let mut crc: u16 = 0;
    for &b in hashed.as_bytes() {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// The part of a Sentinel address after `scheme://`.
fn parse_sentinel(rest: &str, tls: bool) -> Result<RedisAddress, String> {
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Hosts {
        username,
        password,
        hosts: sentinels,
    } = hosts(
        authority,
        SENTINEL_PORT,
        "sentinel address",
        "no sentinel address before the master name",
    )?;
    let mut parts = path.split('/');
    let master = parts.next().unwrap_or("");
    if master.is_empty() {
        return Err("the master name is missing (redis+sentinel://host:port/<master-name>)".into());
    }
    let master = percent_decode_str(master).decode_utf8_lossy().into_owned();
    let db = match parts.next().filter(|d| !d.is_empty()) {
        None => 0,
        Some(d) => d
            .parse()
            .map_err(|_| format!("database {d:?} is not a number"))?,
    };
    Ok(RedisAddress::Sentinel(SentinelAddress {
        sentinels,
        master,
        db,
        username,
        password,
        tls,
    }))
}

/// The authority of a Sentinel or Cluster address, taken apart.
struct Hosts {
    /// The ACL user.
    username: Option<String>,
    /// The password.
    password: Option<String>,
    /// The hosts, in the order given.
    hosts: Vec<(String, u16)>,
}

/// Takes apart `[user:pass@]host[:port][,host[:port]...]`, a port left
/// out being `default_port`. A host that does not parse is a "bad
/// `what`"; no host at all, `none`.
fn hosts(authority: &str, default_port: u16, what: &str, none: &str) -> Result<Hosts, String> {
    let (userinfo, list) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (username, password) = credentials(userinfo)?;
    let mut hosts = Vec::new();
    for host in list.split(',').filter(|h| !h.is_empty()) {
        match split_host_port(host, default_port) {
            Some(hp) => hosts.push(hp),
            None => return Err(format!("bad {what} {host:?}")),
        }
    }
    if hosts.is_empty() {
        return Err(none.into());
    }
    Ok(Hosts {
        username,
        password,
        hosts,
    })
}

/// User and password of a Sentinel or Cluster address, decoded as the redis crate
/// decodes those of a `redis://` URL. A lone userinfo (`secret@host`) is
/// a password, as Sentinel users expect.
fn credentials(userinfo: Option<&str>) -> Result<(Option<String>, Option<String>), String> {
    let Some(userinfo) = userinfo else {
        return Ok((None, None));
    };
    let userinfo = if userinfo.contains(':') {
        userinfo.to_string()
    } else {
        format!(":{userinfo}")
    };
    let info = format!("redis://{userinfo}@localhost")
        .into_connection_info()
        .map_err(|_| "the user or password is not valid".to_string())?;
    let settings = info.redis_settings();
    let password = settings
        .password()
        .map(str::to_string)
        // `user:@host`: an empty password, as written.
        .or_else(|| userinfo.ends_with(':').then(String::new));
    Ok((settings.username().map(str::to_string), password))
}

/// `host:port` or `[v6]:port`; `default` when the port is left out.
fn split_host_port(s: &str, default: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        None => default,
        Some(p) => p.parse().ok()?,
    };
    Some((host.to_string(), port))
}

/// `host:port` as a `redis://` URL; anything with a scheme as written.
pub fn normalise(address: &str) -> String {
    if address.contains("://") {
        address.to_string()
    } else {
        format!("redis://{address}")
    }
}

/// The address with its password (and any query string) replaced by
/// [`REDACTED`], for logs, errors and `--print-config`:
/// `redis://app:***@host:6379`. A lone userinfo (`redis://secret@host`)
/// is a password too and is hidden whole. Text without `://` is returned
/// as is.
pub fn redact(address: &str) -> String {
    let Some((scheme, rest)) = address.split_once("://") else {
        return address.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:{REDACTED}@{hosts}"),
            None => format!("{REDACTED}@{hosts}"),
        },
        None => authority.to_string(),
    };
    let path = match path.split_once('?') {
        Some((p, _)) => format!("{p}?{REDACTED}"),
        None => path.to_string(),
    };
    format!("{scheme}://{authority}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_host_port_form_still_works() {
        assert_eq!(
            RedisAddress::parse("127.0.0.1:6379").unwrap(),
            RedisAddress::Direct {
                url: "redis://127.0.0.1:6379".into(),
                tls: false
            }
        );
    }

    #[test]
    fn url_forms_are_recognised() {
        let direct = RedisAddress::parse("redis://u:p%40ss@h:1/2").unwrap();
        assert!(!direct.tls());
        assert_eq!(direct.password().as_deref(), Some("p@ss"));
        assert!(RedisAddress::parse("rediss://h:1").unwrap().tls());
        assert_eq!(
            RedisAddress::parse("redis+sentinel://app:p%40ss@s1:1,s2,[::1]:3/gm/4").unwrap(),
            RedisAddress::Sentinel(SentinelAddress {
                sentinels: vec![
                    ("s1".into(), 1),
                    ("s2".into(), SENTINEL_PORT),
                    ("::1".into(), 3)
                ],
                master: "gm".into(),
                db: 4,
                username: Some("app".into()),
                password: Some("p@ss".into()),
                tls: false,
            })
        );
        assert!(RedisAddress::parse("rediss+sentinel://:pw@s1:1/gm")
            .unwrap()
            .tls());
    }

    #[test]
    fn sentinel_credentials_are_read_as_written() {
        let creds = |url: &str| match RedisAddress::parse(url).unwrap() {
            RedisAddress::Sentinel(s) => (s.username, s.password),
            other => panic!("{other:?}"),
        };
        let s = |v: &str| Some(v.to_string());
        assert_eq!(creds("redis+sentinel://s:1/gm"), (None, None));
        assert_eq!(creds("redis+sentinel://:pw@s:1/gm"), (None, s("pw")));
        assert_eq!(creds("redis+sentinel://pw@s:1/gm"), (None, s("pw")), "lone");
        assert_eq!(creds("redis+sentinel://u:p@ss@s:1/gm"), (s("u"), s("p@ss")));
        assert_eq!(creds("redis+sentinel://u:@s:1/gm"), (s("u"), s("")));
        assert_eq!(
            creds("redis+sentinel://a%3Ab:c%25d@s:1/gm"),
            (s("a:b"), s("c%d"))
        );
    }

    #[test]
    fn a_percent_encoded_master_name_is_decoded_and_a_stray_percent_kept() {
        let master = |url: &str| match RedisAddress::parse(url).unwrap() {
            RedisAddress::Sentinel(s) => s.master,
            other => panic!("{other:?}"),
        };
        assert_eq!(master("redis+sentinel://s:1/my%20master"), "my master");
        assert_eq!(master("redis+sentinel://s:1/100%"), "100%");
        assert_eq!(master("redis+sentinel://s:1/%zz"), "%zz");
    }

    #[test]
    fn bad_addresses_are_refused_without_showing_the_password() {
        for url in [
            "redis+sentinel://:hunter2@s1:1/",
            "redis+sentinel://:hunter2@/gm",
            "redis+sentinel://:hunter2@s1:x/gm",
            "redis+sentinel://:hunter2@s1:1/gm/x",
            "memcached://:hunter2@h:1",
            "redis://:hunter2@h:notaport",
        ] {
            let e = RedisAddress::parse(url).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{e}");
            assert!(e.contains("is not a Redis address"), "{e}");
        }
    }

    #[test]
    fn cluster_addresses_list_their_seeds() {
        assert_eq!(
            RedisAddress::parse("redis+cluster://app:p%40ss@n1:7000,n2,[::1]:7002").unwrap(),
            RedisAddress::Cluster(ClusterAddress {
                nodes: vec![
                    ("n1".into(), 7000),
                    ("n2".into(), REDIS_PORT),
                    ("::1".into(), 7002)
                ],
                username: Some("app".into()),
                password: Some("p@ss".into()),
                tls: false,
            })
        );
        let tls = RedisAddress::parse("rediss+cluster://:pw@n1:7000/").unwrap();
        assert!(tls.tls());
        assert_eq!(tls.password().as_deref(), Some("pw"));
        match RedisAddress::parse("rediss+cluster://n1:7000,[::1]:7001").unwrap() {
            RedisAddress::Cluster(c) => assert_eq!(
                c.seed_urls(),
                vec!["rediss://n1:7000", "rediss://[::1]:7001"]
            ),
            other => panic!("{other:?}"),
        }
        for bad in [
            "redis+cluster://:hunter2@/",
            "redis+cluster://:hunter2@n1:x",
            "redis+cluster://:hunter2@n1:7000/3",
        ] {
            let e = RedisAddress::parse(bad).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{e}");
        }
        assert_eq!(
            redact("redis+cluster://app:s3cret@a:1,b:2"),
            "redis+cluster://app:***@a:1,b:2"
        );
    }

    #[test]
    fn cluster_slot_matches_the_specification() {
        // The reference value from the Redis Cluster specification.
        assert_eq!(cluster_slot("123456789"), 0x31C3);
        assert_eq!(cluster_slot("a{123456789}b"), 0x31C3);
        // An empty tag hashes the whole key.
        assert_eq!(cluster_slot("{}123456789"), cluster_slot("{}123456789"));
        assert_ne!(cluster_slot("{}x"), cluster_slot("{}y"));
        assert_eq!(
            cluster_slot("{user1000}.following"),
            cluster_slot("{user1000}.followers")
        );
    }

    #[test]
    fn normalise_gives_host_port_a_scheme() {
        assert_eq!(normalise("h:1"), "redis://h:1");
        assert_eq!(normalise("rediss://h:1"), "rediss://h:1");
    }

    #[test]
    fn redact_hides_passwords_and_keeps_the_rest() {
        assert_eq!(redact("127.0.0.1:6379"), "127.0.0.1:6379");
        assert_eq!(redact("redis://h:1/2"), "redis://h:1/2");
        assert_eq!(redact("redis://app:s3cret@h:1/2"), "redis://app:***@h:1/2");
        assert_eq!(redact("rediss://:s3cret@h:1"), "rediss://:***@h:1");
        assert_eq!(redact("redis://s3cret@h:1"), "redis://***@h:1");
        assert_eq!(
            redact("redis+sentinel://app:s3:cret@a:1,b:2/gm"),
            "redis+sentinel://app:***@a:1,b:2/gm"
        );
        assert_eq!(
            redact("redis://app:pw@h:6379,h2:6379"),
            "redis://app:***@h:6379,h2:6379"
        );
        assert_eq!(redact("redis://h:1/0?password=x"), "redis://h:1/0?***");
    }
}
