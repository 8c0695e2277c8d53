//! `--redis` values: the forms in [`crate::redis`], parsed into a
//! [`Target`] without connecting, and shown redacted.

use redis::IntoConnectionInfo;

use super::RedisConnectError;

/// Sentinel's well-known port, for sentinel addresses given without one.
pub(crate) const SENTINEL_PORT: u16 = 26379;

/// A parsed `--redis` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// One Redis: the URL the redis crate parses itself.
    Direct {
        /// A `redis://` or `rediss://` URL.
        url: String,
        /// `rediss://`.
        tls: bool,
    },
    /// A primary named by sentinels.
    Sentinel {
        /// Sentinel addresses, in the order given.
        sentinels: Vec<(String, u16)>,
        /// The name the sentinels monitor the primary under.
        master: String,
        /// Database number on the data nodes.
        db: i64,
        /// Data nodes' ACL user.
        username: Option<String>,
        /// Data nodes' password.
        password: Option<String>,
        /// `rediss+sentinel://`.
        tls: bool,
    },
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Self, RedisConnectError> {
        let bad = |why: &str| {
            Err(RedisConnectError::Config(format!(
                "REDIS_CONNECTION {} is not a Redis address: {why}",
                redact(url)
            )))
        };
        let (scheme, rest) = match url.split_once("://") {
            Some((scheme, rest)) => (scheme, rest),
            None => ("redis", url),
        };
        match scheme {
            "redis" | "rediss" => {
                let url = if url.contains("://") {
                    url.to_string()
                } else {
                    format!("redis://{url}")
                };
                // The crate's own parse; its message is not shown, since
                // it may quote the URL.
                if url.as_str().into_connection_info().is_err() {
                    return bad("expected host:port or redis[s]://[user:pass@]host:port[/db]");
                }
                Ok(Target::Direct {
                    url,
                    tls: scheme == "rediss",
                })
            }
            "redis+sentinel" | "rediss+sentinel" => {
                let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
                let (userinfo, hosts) = match authority.rsplit_once('@') {
                    Some((u, h)) => (Some(u), h),
                    None => (None, authority),
                };
                let (username, password) = match userinfo {
                    None => (None, None),
                    Some(u) => match u.split_once(':') {
                        Some((user, pass)) => (
                            Some(percent_decode(user)).filter(|u| !u.is_empty()),
                            Some(percent_decode(pass)),
                        ),
                        // Like redis://pass@host: a lone userinfo is a password.
                        None => (None, Some(percent_decode(u))),
                    },
                };
                let mut sentinels = Vec::new();
                for host in hosts.split(',').filter(|h| !h.is_empty()) {
                    match split_host_port(host, SENTINEL_PORT) {
                        Some(hp) => sentinels.push(hp),
                        None => return bad(&format!("bad sentinel address {host:?}")),
                    }
                }
                if sentinels.is_empty() {
                    return bad("no sentinel address before the master name");
                }
                let mut parts = path.split('/');
                let master = percent_decode(parts.next().unwrap_or(""));
                if master.is_empty() {
                    return bad(
                        "the master name is missing (redis+sentinel://host:port/<master-name>)",
                    );
                }
                let db = match parts.next().filter(|d| !d.is_empty()) {
                    None => 0,
                    Some(d) => match d.parse() {
                        Ok(db) => db,
                        Err(_) => return bad(&format!("database {d:?} is not a number")),
                    },
                };
                Ok(Target::Sentinel {
                    sentinels,
                    master,
                    db,
                    username,
                    password,
                    tls: scheme == "rediss+sentinel",
                })
            }
            other => bad(&format!(
                "unknown scheme {other:?} (use redis, rediss, redis+sentinel or rediss+sentinel)"
            )),
        }
    }

    pub(crate) fn tls(&self) -> bool {
        match self {
            Target::Direct { tls, .. } | Target::Sentinel { tls, .. } => *tls,
        }
    }

    pub(crate) fn password(&self) -> Option<String> {
        match self {
            Target::Direct { url, .. } => url
                .as_str()
                .into_connection_info()
                .ok()
                .and_then(|i| i.redis_settings().password().map(str::to_string)),
            Target::Sentinel { password, .. } => password.clone(),
        }
    }
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

/// Decodes `%XX` escapes (URL userinfo and names); anything malformed is
/// kept as written.
fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The address with its password (and any query string) replaced by
/// `***`, for logs and errors: `redis://app:***@host:6379`. A lone userinfo
/// (`redis://secret@host`) is a password too and is hidden whole.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{hosts}"),
            None => format!("***@{hosts}"),
        },
        None => authority.to_string(),
    };
    let path = match path.split_once('?') {
        Some((p, _)) => format!("{p}?***"),
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
            Target::parse("127.0.0.1:6379").unwrap(),
            Target::Direct {
                url: "redis://127.0.0.1:6379".into(),
                tls: false
            }
        );
    }

    #[test]
    fn url_forms_are_recognised() {
        assert!(!Target::parse("redis://u:p@h:1/2").unwrap().tls());
        assert!(Target::parse("rediss://h:1").unwrap().tls());
        assert_eq!(
            Target::parse("redis+sentinel://app:p%40ss@s1:1,s2,[::1]:3/gm/4").unwrap(),
            Target::Sentinel {
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
            }
        );
        assert!(Target::parse("rediss+sentinel://:pw@s1:1/gm")
            .unwrap()
            .tls());
    }

    #[test]
    fn bad_addresses_are_refused_without_showing_the_password() {
        for url in [
            "redis+sentinel://:hunter2@s1:1/",
            "redis+sentinel://:hunter2@/gm",
            "redis+sentinel://:hunter2@s1:x/gm",
            "redis+sentinel://:hunter2@s1:1/gm/x",
            "memcached://:hunter2@h:1",
        ] {
            let e = Target::parse(url).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{e}");
            assert!(e.contains("is not a Redis address"), "{e}");
        }
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
        assert_eq!(redact("redis://h:1/0?password=x"), "redis://h:1/0?***");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%40b%3Ac"), "a@b:c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
