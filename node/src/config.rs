//! Configuration from four layers, for any clap `Parser`: command line >
//! environment > TOML file (`--config`) > built-in default.
//!
//! It works on the clap `Command`, not on a binary's fields, so a flag any
//! branch adds later is configurable from the file and printed by
//! `--print-config` with no extra code:
//!
//! - The file's keys are the long flag names (`client-port = 5000`). Each
//!   value is injected as that argument's default with `Command::mut_arg`,
//!   so clap's own order (command line, then `env`, then default) gives the
//!   precedence. A key that is no flag is an error naming it.
//! - `--print-config` renders the effective value of every flag as TOML
//!   that `--config` accepts. Flags marked `hide_env_values` (secrets) are
//!   printed as a comment, redacted, and so is the password of any URL
//!   (`redis://user:***@host`, by [`crate::redis_address::redact`]).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::redis_address::{redact, REDACTED};

/// Flags this module adds and handles itself; never file keys.
const CONFIG_ID: &str = "config";
const PRINT_ID: &str = "print-config";

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `--config` file cannot be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("the config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's explanation.
        message: String,
    },
    /// A key names no flag.
    #[error(
        "unknown key `{key}` in the config file {path}: keys are the long flag names, see --help"
    )]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A value of a type no flag takes (a table, a date).
    #[error("key `{key}` in the config file {path} must be a string, number, boolean or array")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// clap refused the result (also `--help` and `--version`, which
    /// [`clap::Error::exit`] prints and ends with status 0).
    #[error("{0}")]
    Clap(#[from] clap::Error),
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed<T> {
    /// Run with this configuration.
    Run(T),
    /// `--print-config`: print this TOML and exit.
    Print(String),
}

/// Parses the process's arguments and environment for the binary whose
/// config file variable is `config_env` (e.g. `GATEWAY_CONFIG`). Prints
/// `--help`, `--version`, clap errors and `--print-config` and exits;
/// a bad config file ends the process with one sentence and status 1.
pub fn parse<T: clap::Parser>(program: &str, config_env: &str) -> T {
    match try_parse_from::<T>(std::env::args_os(), config_env) {
        Ok(Parsed::Run(config)) => config,
        Ok(Parsed::Print(toml)) => {
            print!("{toml}");
            std::process::exit(0);
        }
        Err(ConfigError::Clap(e)) => e.exit(),
        Err(e) => {
            eprintln!("{program}: {e}");
            std::process::exit(1);
        }
    }
}

/// [`parse`] without exiting: `args` include the program name; the
/// environment is the process's (clap reads `env` twins itself).
pub fn try_parse_from<T: clap::Parser>(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    config_env: &str,
) -> Result<Parsed<T>, ConfigError> {
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let base = with_config_flags(T::command(), config_env);
    let mut cmd = base.clone();
    if let Some(path) = config_path(&args, config_env) {
        cmd = apply_file(cmd, &path)?;
    }
    let matches = cmd.try_get_matches_from(&args)?;
    if matches.get_flag(PRINT_ID) {
        // `mut_arg` moves the arguments it touched, so print in the order
        // of the unmodified command (the order of `--help`).
        return Ok(Parsed::Print(render(&base, &matches)));
    }
    Ok(Parsed::Run(T::from_arg_matches(&matches)?))
}

/// The full command line of the binary whose flags are `T` and whose
/// config file variable is `config_env`: `T`'s flags plus `--config` and
/// `--print-config`, exactly as [`parse`] accepts it (for tools that check
/// configurations against the binaries, like the deploy manifest lint).
pub fn command<T: clap::CommandFactory>(config_env: &str) -> Command {
    with_config_flags(T::command(), config_env)
}

fn with_config_flags(cmd: Command, config_env: &str) -> Command {
    cmd.arg(
        Arg::new(CONFIG_ID)
            .long(CONFIG_ID)
            .env(config_env.to_string())
            .value_name("FILE.toml")
            .help("TOML file of flag values, keys are the long flag names (e.g. `admin-port = 9190`); the command line and the environment override it"),
    )
    .arg(
        Arg::new(PRINT_ID)
            .long(PRINT_ID)
            .action(ArgAction::SetTrue)
            .help("Print the effective configuration as TOML (usable with --config; secrets redacted) and exit"),
    )
}

/// `--config` from the command line, else from the environment. Read
/// before clap parses, because the file's values must be in place as
/// defaults by then.
fn config_path(args: &[OsString], config_env: &str) -> Option<PathBuf> {
    let flag = format!("--{CONFIG_ID}");
    let prefix = format!("--{CONFIG_ID}=");
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let Some(s) = a.to_str() else { continue };
        if s == "--" {
            break;
        }
        if s == flag {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = s.strip_prefix(&prefix) {
            return Some(PathBuf::from(p));
        }
    }
    std::env::var_os(config_env)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Arguments a file may set: every one with a long name, except the ones
/// that only make sense on a command line.
fn settable(arg: &Arg) -> Option<&str> {
    let long = arg.get_long()?;
    match long {
        "help" | "version" | CONFIG_ID | PRINT_ID => None,
        _ => Some(long),
    }
}

fn apply_file(mut cmd: Command, path: &PathBuf) -> Result<Command, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: path.clone(),
            message: e.message().to_string(),
        })?;
    for (key, value) in table {
        let Some((id, delimiter)) = cmd
            .get_arguments()
            .find(|a| settable(a) == Some(key.as_str()))
            .map(|a| (a.get_id().clone(), a.get_value_delimiter()))
        else {
            return Err(ConfigError::UnknownKey {
                path: path.clone(),
                key,
            });
        };
        let bad = || ConfigError::BadValue {
            path: path.clone(),
            key: key.clone(),
        };
        let values: Vec<String> = match value {
            toml::Value::Array(items) => items
                .into_iter()
                .map(|v| scalar(v).ok_or_else(bad))
                .collect::<Result<_, _>>()?,
            v => vec![scalar(v).ok_or_else(bad)?],
        };
        cmd = cmd.mut_arg(id, |a| match (delimiter, values.len()) {
            // A delimited list (`--game-servers a,b`) takes its default as
            // one delimited string.
            (Some(d), _) => a.default_value(values.join(&d.to_string())),
            (None, 1) => a.default_value(values[0].clone()),
            (None, _) => a.default_values(values.clone()),
        });
    }
    Ok(cmd)
}

fn scalar(v: toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The effective value of every settable flag, one `key = value` line each,
/// in `--help` order.
fn render(cmd: &Command, matches: &ArgMatches) -> String {
    let mut out = String::from(
        "# Effective configuration: usable as --config; command line and environment override it.\n",
    );
    for arg in cmd.get_arguments() {
        let Some(key) = settable(arg) else { continue };
        let values: Vec<String> = matches
            .get_raw(arg.get_id().as_str())
            .map(|vs| vs.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        if values.is_empty() {
            let _ = writeln!(out, "# {key} is not set");
            continue;
        }
        if arg.is_hide_env_values_set() {
            let _ = writeln!(out, "# {key} = \"{REDACTED}\"");
            continue;
        }
        let values: Vec<String> = values.iter().map(|v| redact(v)).collect();
        let many = arg.get_value_delimiter().is_some()
            || matches!(arg.get_action(), ArgAction::Append)
            || values.len() > 1;
        let value = if many {
            toml::Value::Array(values.iter().map(|v| typed(v)).collect())
        } else {
            typed(&values[0])
        };
        let _ = writeln!(out, "{key} = {value}");
    }
    out
}

/// Numbers and booleans print as TOML numbers and booleans, so the file
/// reads naturally; anything is read back as text, so the type never
/// changes what a value means.
fn typed(v: &str) -> toml::Value {
    if let Ok(i) = v.parse::<i64>() {
        toml::Value::Integer(i)
    } else if let Ok(b) = v.parse::<bool>() {
        toml::Value::Boolean(b)
    } else {
        toml::Value::String(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Test flags; the env names are unique to these tests so the process
    /// environment never leaks in.
    #[derive(Debug, Parser)]
    #[command(name = "demo")]
    struct Demo {
        /// A port.
        #[arg(long, env = "GM_CFG_TEST_PORT", default_value_t = 5000)]
        port: u16,
        /// A list.
        #[arg(
            long,
            env = "GM_CFG_TEST_PEERS",
            value_delimiter = ',',
            default_value = "a:1"
        )]
        peers: Vec<String>,
        /// A secret.
        #[arg(long, env = "GM_CFG_TEST_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// A switch.
        #[arg(long, env = "GM_CFG_TEST_FAST")]
        fast: bool,
    }

    fn file(text: &str) -> (tempdir::Dir, String) {
        let dir = tempdir::Dir::new();
        let path = dir.0.join("demo.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path.to_string_lossy().into_owned())
    }

    /// A throw-away directory, removed on drop (no extra dependency).
    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                let p = std::env::temp_dir().join(format!(
                    "gamemesh-config-test-{}-{:?}",
                    std::process::id(),
                    std::thread::current().id()
                ));
                std::fs::create_dir_all(&p).unwrap();
                Self(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn run(args: &[&str]) -> Result<Demo, ConfigError> {
        match try_parse_from::<Demo>(args.iter().copied(), "GM_CFG_TEST_CONFIG")? {
            Parsed::Run(d) => Ok(d),
            Parsed::Print(p) => panic!("unexpected print: {p}"),
        }
    }

    #[test]
    fn file_values_replace_defaults_and_the_command_line_wins() {
        let (_d, path) = file("port = 6000\npeers = [\"x:1\", \"y:2\"]\nfast = true\n");
        let d = run(&["demo", "--config", &path]).unwrap();
        assert_eq!(d.port, 6000);
        assert_eq!(d.peers, ["x:1", "y:2"]);
        assert!(d.fast);
        let d = run(&["demo", "--config", &path, "--port", "7000"]).unwrap();
        assert_eq!(d.port, 7000);
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let (_d, path) = file("port = 1\nprot = 2\n");
        let e = run(&["demo", &format!("--config={path}")]).unwrap_err();
        assert!(e.to_string().contains("unknown key `prot`"), "{e}");
    }

    #[test]
    fn print_config_round_trips_and_redacts_secrets() {
        let args = [
            "demo",
            "--port",
            "6001",
            "--secret",
            "hunter2",
            "--print-config",
        ];
        let Parsed::Print(text) = try_parse_from::<Demo>(args, "GM_CFG_TEST_CONFIG").unwrap()
        else {
            panic!("expected --print-config output");
        };
        assert!(text.contains("port = 6001"), "{text}");
        assert!(text.contains("peers = [\"a:1\"]"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("# secret = \"***\""), "{text}");
        let (_d, path) = file(&text);
        let d = run(&["demo", "--config", &path]).unwrap();
        assert_eq!(d.port, 6001);
        assert_eq!(d.peers, ["a:1"]);
        assert_eq!(d.secret, None);
    }

    #[test]
    fn print_config_hides_url_passwords() {
        let args = ["demo", "--peers", "redis://app:pw@h:1", "--print-config"];
        let Parsed::Print(text) = try_parse_from::<Demo>(args, "GM_CFG_TEST_CONFIG").unwrap()
        else {
            panic!("expected --print-config output");
        };
        assert!(text.contains("peers = [\"redis://app:***@h:1\"]"), "{text}");
        assert!(!text.contains("pw"), "{text}");
    }
}
