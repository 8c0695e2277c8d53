//! Redis as production runs it: an ACL user with a password and least
//! privilege ([`AclRedis`]), and TLS with certificates made for the test
//! ([`TlsFiles`], [`TlsRedis`]).
//!
//! Certificates come from the `openssl` command line (a CA, and a server
//! certificate it signs for `127.0.0.1` and `localhost`), so no crypto
//! crate is compiled for tests. A `redis-server` built without TLS makes
//! [`TlsRedis::start`] panic with how to get one that has it (a test that
//! needs TLS fails, it never skips); so does anything else that stops it.
//!
//! ```no_run
//! use gamemesh_test_support::{AclRedis, TlsRedis};
//!
//! let acl = AclRedis::start();
//! let url = acl.url(); // "redis://gamemesh:<password>@127.0.0.1:P"
//!
//! let tls = TlsRedis::start(); // panics, saying how to get TLS, without it
//! let url = tls.url(); // "rediss://127.0.0.1:T"
//! let ca = tls.ca_file(); // trust this (the game server's --redis-ca-file)
//! ```

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{free_port, RedisServer};

/// The ACL user [`AclRedis`] creates.
pub const ACL_USER: &str = "gamemesh";

/// What [`ACL_USER`] may do, as `ACL SETUSER` words: keys and pub/sub
/// channels under `gm:` (the cluster events' channel is
/// `gm:{jobs}:events`; Redis 7 gives a new user no channel), every
/// command but the dangerous ones. What docs/OPERATIONS.md tells an
/// operator to give the game server.
pub const ACL_RULE: [&str; 4] = ["~gm:*", "&gm:*", "+@all", "-@dangerous"];

/// A `redis-server` whose default user needs a password and that has one
/// more user, [`ACL_USER`], allowed only keys and channels under `gm:` and
/// no dangerous commands ([`ACL_RULE`]): what an operator gives the game
/// server.
#[derive(Debug)]
pub struct AclRedis {
    /// The server.
    pub server: RedisServer,
    /// [`ACL_USER`]'s password.
    password: String,
    /// The default user's password (the admin, for inspection).
    admin_password: String,
}

impl AclRedis {
    /// Starts the server with the user in place.
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start`].
    pub fn start() -> AclRedis {
        let password = "gm-user-pw".to_string();
        let admin_password = "gm-admin-pw".to_string();
        let secret = format!(">{password}");
        // Each word of the ACL rule is its own argument: redis-server
        // quotes every argument it is given.
        let mut args = vec![
            "--requirepass",
            &admin_password,
            "--user",
            ACL_USER,
            "on",
            &secret,
        ];
        args.extend(ACL_RULE);
        let server = RedisServer::start_with_args(&args);
        AclRedis {
            server,
            password,
            admin_password,
        }
    }

    /// `redis://gamemesh:<password>@127.0.0.1:P`.
    pub fn url(&self) -> String {
        self.url_with_password(&self.password)
    }

    /// The same with another password (to see it refused).
    pub fn url_with_password(&self, password: &str) -> String {
        format!("redis://{ACL_USER}:{password}@{}", self.server.addr())
    }

    /// The ACL user's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// A connection as the default (admin) user, to inspect what is stored.
    ///
    /// # Panics
    ///
    /// If it cannot connect.
    pub fn admin_conn(&self) -> redis::Connection {
        redis::Client::open(format!(
            "redis://:{}@{}",
            self.admin_password,
            self.server.addr()
        ))
        .and_then(|c| c.get_connection())
        .unwrap_or_else(|e| panic!("admin connection to {}: {e}", self.server.addr()))
    }
}

/// A CA and a server certificate it signed (for `127.0.0.1` and
/// `localhost`), in a private directory removed on drop.
#[derive(Debug)]
pub struct TlsFiles {
    /// Where the files are.
    dir: PathBuf,
}

impl TlsFiles {
    /// Generates the files with the `openssl` command line.
    ///
    /// # Panics
    ///
    /// If `openssl` is missing (with install instructions) or fails.
    pub fn generate() -> TlsFiles {
        let dir = std::env::temp_dir().join(format!(
            "gamemesh-tls-{}-{}",
            std::process::id(),
            free_port()
        ));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let files = TlsFiles { dir };
        let ext = files.dir.join("server.ext");
        fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
             basicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth,clientAuth\n",
        )
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", ext.display()));
        let p = |name: &str| files.dir.join(name).display().to_string();
        // EC P-256: quick to generate, and every TLS stack speaks it.
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.crt"),
            "-days",
            "2",
            "-subj",
            "/CN=gamemesh test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &p("server.key"),
            "-out",
            &p("server.csr"),
            "-subj",
            "/CN=localhost",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p("server.csr"),
            "-CA",
            &p("ca.crt"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-out",
            &p("server.crt"),
            "-days",
            "2",
            "-extfile",
            &p("server.ext"),
        ]);
        files
    }

    /// The CA certificate (PEM): what a client trusts.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The server certificate (PEM).
    pub fn cert_file(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    /// The server's private key (PEM).
    pub fn key_file(&self) -> PathBuf {
        self.dir.join("server.key")
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The installed `redis-server` was built without TLS: the message of the
/// panic, with what to do about it.
#[derive(Debug)]
pub(crate) struct TlsUnsupported {
    /// The tail of its log, which says so.
    pub(crate) log: String,
}

impl fmt::Display for TlsUnsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the redis-server on PATH was built without TLS, which this test needs. \
             Debian's and Ubuntu's redis-server package (Redis 6 or later) has it: \
             apt-get install redis-server (./scripts/test.sh checks for it); a source \
             build needs `make BUILD_TLS=yes`. Put a redis-server with TLS first on PATH \
             and rerun. Its log:\n{}",
            self.log
        )
    }
}

/// A `redis-server` that also listens with TLS, on its own port, with a
/// certificate from [`TlsFiles`]. Its plain port stays open on 127.0.0.1
/// for readiness checks and for the test to inspect data; the code under
/// test is given [`url`](Self::url), the TLS port.
#[derive(Debug)]
pub struct TlsRedis {
    /// The server (its `port()` is the plain one).
    pub server: RedisServer,
    /// The TLS port.
    tls_port: u16,
    /// Certificates; removed on drop, after the server.
    files: TlsFiles,
}

impl TlsRedis {
    /// Generates certificates and starts the server, with `extra` arguments
    /// (e.g. a password) after the TLS ones.
    ///
    /// # Panics
    ///
    /// If `redis-server` has no TLS (saying how to get one that has), if it
    /// or `openssl` is missing, or if the server fails for another reason.
    pub fn start_with_args(extra: &[&str]) -> TlsRedis {
        let files = TlsFiles::generate();
        let tls_port = free_port();
        let (tls_port_s, cert, key, ca) = (
            tls_port.to_string(),
            files.cert_file().display().to_string(),
            files.key_file().display().to_string(),
            files.ca_file().display().to_string(),
        );
        let mut args = vec![
            "--tls-port",
            &tls_port_s,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            // Server authentication only; clients prove themselves with
            // their password.
            "--tls-auth-clients",
            "no",
        ];
        args.extend_from_slice(extra);
        match RedisServer::try_start(&args, None) {
            Ok(server) => TlsRedis {
                server,
                tls_port,
                files,
            },
            Err(log) if lacks_tls(&log) => panic!("{}", TlsUnsupported { log }),
            Err(msg) => panic!("{msg}"),
        }
    }

    /// [`start_with_args`](Self::start_with_args) with no extra arguments.
    ///
    /// # Panics
    ///
    /// As [`start_with_args`](Self::start_with_args).
    pub fn start() -> TlsRedis {
        Self::start_with_args(&[])
    }

    /// `rediss://127.0.0.1:T`.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.tls_port)
    }

    /// The TLS port.
    pub fn tls_port(&self) -> u16 {
        self.tls_port
    }

    /// The CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.files.ca_file()
    }

    /// The certificate files.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

/// A client for `url` (`rediss://...`) that trusts `ca` alone.
///
/// # Errors
///
/// If `ca` cannot be read or the URL is not one.
pub fn tls_client(url: &str, ca: &Path) -> redis::RedisResult<redis::Client> {
    // The redis crate enables rustls without a crypto provider (the game
    // server installs ring the same way). An Err means one is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pem = fs::read(ca)?;
    redis::Client::build_with_tls(
        url,
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        },
    )
}

/// Whether a failed start's log says TLS is not compiled in, as opposed to
/// a real failure. Redis builds without TLS refuse the `tls-*` directives
/// or say TLS is not supported/built.
pub(crate) fn lacks_tls(log: &str) -> bool {
    let l = log.to_ascii_lowercase();
    l.contains("tls")
        && (l.contains("not supported") || l.contains("not built") || l.contains("bad directive"))
}

/// Runs `openssl` with `args`, panicking with its output on failure.
fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run openssl ({e}): install it (apt-get install openssl) or run ./scripts/test.sh, \
             which installs it"
        )
    });
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acl_user_works_and_a_wrong_password_does_not() {
        let acl = AclRedis::start();
        let ok = redis::Client::open(acl.url())
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("SET").arg("gm:{u:1}:x").arg(1).exec(&mut c));
        assert!(ok.is_ok(), "{ok:?}");
        let outside = redis::Client::open(acl.url())
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("SET").arg("other").arg(1).exec(&mut c));
        assert!(outside.is_err(), "keys outside gm: are refused");
        let publish = |channel: &str| {
            redis::Client::open(acl.url())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PUBLISH").arg(channel).arg("x").exec(&mut c))
        };
        let events = publish("gm:{jobs}:events");
        assert!(events.is_ok(), "the events channel is allowed: {events:?}");
        assert!(
            publish("other").is_err(),
            "channels outside gm: are refused"
        );
        let wrong =
            redis::Client::open(acl.url_with_password("nope")).and_then(|c| c.get_connection());
        assert!(wrong.is_err(), "a wrong password is refused");
        let n: i64 = redis::cmd("DBSIZE")
            .query(&mut acl.admin_conn())
            .expect("DBSIZE");
        assert_eq!(n, 1);
    }

    #[test]
    fn tls_files_are_a_ca_and_a_certificate_it_signed() {
        let files = TlsFiles::generate();
        let out = Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(files.ca_file())
            .arg(files.cert_file())
            .output()
            .expect("openssl verify");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn a_redis_without_tls_is_recognised_and_the_failure_says_how_to_get_tls() {
        // What a redis-server built without TLS says about the directives.
        let log = "*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***\n\
                   >>> 'tls-port \"6380\"'\nBad directive or wrong number of arguments";
        assert!(lacks_tls(log));
        assert!(!lacks_tls("Address already in use"));
        let message = TlsUnsupported { log: log.into() }.to_string();
        assert!(message.contains("BUILD_TLS=yes"), "{message}");
        assert!(
            message.contains("apt-get install redis-server"),
            "{message}"
        );
        assert!(message.contains(log), "{message}");
    }

    #[test]
    fn a_tls_server_starts_on_its_own_port() {
        let tls = TlsRedis::start();
        assert_ne!(tls.tls_port(), tls.server.port());
        assert!(tls.url().starts_with("rediss://127.0.0.1:"));
        // The TLS port does not speak plain RESP.
        let plain = redis::Client::open(format!("redis://127.0.0.1:{}", tls.tls_port()))
            .and_then(|c| c.get_connection_with_timeout(std::time::Duration::from_secs(2)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
        assert!(
            plain.is_err(),
            "plain RESP on the TLS port fails: {plain:?}"
        );
    }
}
