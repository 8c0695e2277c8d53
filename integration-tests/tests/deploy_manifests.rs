//! Lint of the deployment examples in `deploy/` (issue 9). They are not run
//! here, so this is what keeps them true to the binaries:
//!
//! - every YAML document under `deploy/kubernetes/` is a typed Kubernetes
//!   object (k8s-openapi) with no unknown or misspelt field: the typed
//!   object is serialized back and must hold every field the YAML had,
//!   because k8s-openapi, like the API server's lenient decoding, silently
//!   drops fields it does not know;
//! - every flag, environment variable and TOML key the manifests and the
//!   systemd units give our binaries exists in their clap `Command`, and the
//!   values parse there (so the effective configuration is computed by the
//!   binaries' own parser, not guessed);
//! - ports, bind addresses, probe paths, grace periods, selectors and
//!   hardening agree with the binaries and with each other;
//! - the systemd units pass `systemd-analyze verify`;
//! - `deploy/redis/gamemesh.conf` is a configuration `redis-server` takes,
//!   and gives a Redis that persists (append-only file) and never evicts.
//!
//! Offline and quick: nothing is applied to a cluster, and the only thing
//! started is one local `redis-server` for the Redis settings.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodTemplateSpec, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::Resource;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Flags (and their environment twins) the manifests may use before the
/// binaries have them (a flag being added on another branch): the checks
/// accept them without finding them in the binaries. Keep it empty on
/// `main`, so every flag is checked.
const PENDING_FLAGS: &[(&str, &[&str])] = &[];

/// Environment variables the manifests set that are not our flags' twins:
/// inputs to Kubernetes' `$(VAR)` expansion, and the log filter.
const HELPER_ENV: &[&str] = &["POD_IP", "POD_NAME", "POD_NAMESPACE", "RUST_LOG"];

/// What the helper variables stand for when the effective configuration is
/// computed: one pod's values.
const SAMPLE_POD: &[(&str, &str)] = &[
    ("POD_IP", "10.1.2.3"),
    ("POD_NAME", "gamemesh-game-server-1"),
    ("POD_NAMESPACE", "games"),
];

/// Admin ports agreed for `--admin-port` (not in the binaries yet).
const GATEWAY_ADMIN_PORT: u16 = 9190;
/// See [`GATEWAY_ADMIN_PORT`].
const GAME_SERVER_ADMIN_PORT: u16 = 9191;

/// The directory of the deployment examples.
fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Files in `dir` whose name ends with `suffix`, sorted.
fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------
// The binaries
// ---------------------------------------------------------------------------

/// One of our binaries, as the manifests run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binary {
    Gateway,
    GameServer,
}

impl Binary {
    /// Its executable's name (and its container's name).
    fn name(self) -> &'static str {
        match self {
            Binary::Gateway => "gateway",
            Binary::GameServer => "game-server",
        }
    }

    fn from_name(name: &str) -> Option<Binary> {
        [Binary::Gateway, Binary::GameServer]
            .into_iter()
            .find(|b| b.name() == name)
    }

    /// Its clap command, the single source of its flags.
    fn command(self) -> clap::Command {
        match self {
            Binary::Gateway => {
                gamemesh_node::config::command::<gamemesh_gateway::Config>("GATEWAY_CONFIG")
            }
            Binary::GameServer => {
                gamemesh_node::config::command::<gamemesh_game_server::Config>("GAME_SERVER_CONFIG")
            }
        }
    }

    fn admin_port(self) -> u16 {
        match self {
            Binary::Gateway => GATEWAY_ADMIN_PORT,
            Binary::GameServer => GAME_SERVER_ADMIN_PORT,
        }
    }

    /// Long flag names of the binary.
    fn flags(self) -> BTreeSet<String> {
        self.command()
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string))
            .collect()
    }

    /// Environment twin -> long flag.
    fn env_twins(self) -> BTreeMap<String, String> {
        self.command()
            .get_arguments()
            .filter_map(|a| {
                let env = a.get_env()?.to_string_lossy().into_owned();
                Some((env, a.get_long()?.to_string()))
            })
            .collect()
    }

    /// Checks a flag name; `Ok(false)` for a pending one.
    fn check_flag(self, flag: &str) -> Result<bool, String> {
        if self.flags().contains(flag) {
            Ok(true)
        } else if PENDING_FLAGS.iter().any(|(f, _)| *f == flag) {
            Ok(false)
        } else {
            Err(format!("{} has no flag --{flag}", self.name()))
        }
    }

    /// Checks an environment variable: the long flag it sets, `None` for a
    /// pending or helper variable.
    fn check_env(self, env: &str) -> Result<Option<String>, String> {
        if let Some(flag) = self.env_twins().get(env) {
            Ok(Some(flag.clone()))
        } else if PENDING_FLAGS.iter().any(|(_, envs)| envs.contains(&env))
            || HELPER_ENV.contains(&env)
        {
            Ok(None)
        } else {
            Err(format!(
                "{} reads no environment variable {env}",
                self.name()
            ))
        }
    }
}

/// Flag values in order of precedence: later calls to `set` win, like the
/// binaries' own flag > environment > file order.
#[derive(Debug, Default, Clone)]
struct Settings(BTreeMap<String, String>);

impl Settings {
    fn set(&mut self, flag: &str, value: &str) {
        self.0.insert(flag.to_string(), value.to_string());
    }

    fn get(&self, flag: &str) -> Option<&str> {
        self.0.get(flag).map(String::as_str)
    }

    /// The command line the settings make, without pending flags (the
    /// binaries would refuse them today) and without `--config`, whose file
    /// exists only in the pod and whose keys are in `self` already.
    fn argv(&self, bin: Binary) -> Vec<String> {
        let mut argv = vec![bin.name().to_string()];
        for (flag, value) in &self.0 {
            if flag != "config" && bin.check_flag(flag) == Ok(true) {
                argv.push(format!("--{flag}"));
                argv.push(value.clone());
            }
        }
        argv
    }

    fn gateway(&self) -> gamemesh_gateway::Config {
        let argv = self.argv(Binary::Gateway);
        let c = parse_hermetic::<gamemesh_gateway::Config>(&argv)
            .unwrap_or_else(|e| panic!("gateway refuses {argv:?}: {e}"));
        c.validate()
            .unwrap_or_else(|e| panic!("gateway refuses {argv:?}: {e}"));
        c
    }

    fn game_server(&self) -> gamemesh_game_server::Config {
        let argv = self.argv(Binary::GameServer);
        let c = parse_hermetic::<gamemesh_game_server::Config>(&argv)
            .unwrap_or_else(|e| panic!("game-server refuses {argv:?}: {e}"));
        c.validate()
            .unwrap_or_else(|e| panic!("game-server refuses {argv:?}: {e}"));
        c
    }
}

/// Parses `argv` with a binary's flags but without their environment
/// twins: the environment of whoever runs the tests (a `REDIS_CONNECTION`
/// left exported, say) must not leak into the configuration checked.
fn parse_hermetic<C: clap::Parser>(argv: &[String]) -> Result<C, clap::Error> {
    let command = C::command().mut_args(|a| a.env(None::<&'static str>));
    C::from_arg_matches(&command.try_get_matches_from(argv)?)
}

/// `--flag value` / `--flag=value` pairs of a command line.
fn flag_pairs(args: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let Some(flag) = arg.strip_prefix("--") else {
            return Err(format!(
                "{arg:?} is not a --flag (every flag of ours takes a value)"
            ));
        };
        match flag.split_once('=') {
            Some((f, v)) => pairs.push((f.to_string(), v.to_string())),
            None => {
                let value = it.next().ok_or(format!("--{flag} has no value"))?;
                pairs.push((flag.to_string(), value.clone()));
            }
        }
    }
    Ok(pairs)
}

/// Kubernetes' `$(VAR)` expansion with the sample pod's values.
fn expand_sample(s: &str) -> String {
    SAMPLE_POD
        .iter()
        .fold(s.to_string(), |s, (k, v)| s.replace(&format!("$({k})"), v))
}

/// The keys of a TOML config file as flag settings (arrays comma-joined,
/// the way the flags take lists).
fn toml_settings(bin: Binary, text: &str, what: &str) -> (Settings, Vec<String>) {
    let table: toml::Table = toml::from_str(text).unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut settings = Settings::default();
    let mut problems = Vec::new();
    for (key, value) in &table {
        if let Err(e) = bin.check_flag(key) {
            problems.push(format!("{what}: key {key:?}: {e}"));
        }
        let value = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(","),
            other => {
                problems.push(format!(
                    "{what}: key {key:?} has a value no flag takes: {other}"
                ));
                continue;
            }
        };
        settings.set(key, &value);
    }
    (settings, problems)
}

// ---------------------------------------------------------------------------
// Kubernetes documents
// ---------------------------------------------------------------------------

/// One YAML document of a manifest file.
struct Doc {
    file: String,
    value: Value,
}

impl Doc {
    fn describe(&self) -> String {
        let kind = self.value["kind"].as_str().unwrap_or("?");
        let name = self.value["metadata"]["name"].as_str().unwrap_or("?");
        format!("{}: {kind} {name}", self.file)
    }
}

/// Every YAML document under `deploy/kubernetes/` except the kustomization.
fn k8s_docs() -> Vec<Doc> {
    let dir = deploy_dir().join("kubernetes");
    let mut docs = Vec::new();
    for path in files_ending(&dir, ".yaml") {
        let file = file_name(&path);
        if file == "kustomization.yaml" {
            continue;
        }
        let text = read(&path);
        for de in serde_norway::Deserializer::from_str(&text) {
            let value = Value::deserialize(de).unwrap_or_else(|e| panic!("{file}: {e}"));
            if !value.is_null() {
                docs.push(Doc {
                    file: file.clone(),
                    value,
                });
            }
        }
    }
    assert!(!docs.is_empty(), "no manifests under {}", dir.display());
    docs
}

/// Deserializes `value` as `T` and serializes it back: any field of the
/// YAML that did not survive is unknown to the schema (or misspelt).
fn typed<T: DeserializeOwned + Serialize>(value: &Value) -> Result<T, String> {
    let object: T = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&object).map_err(|e| e.to_string())?;
    let mut lost = Vec::new();
    lost_fields("", value, &back, &mut lost);
    if lost.is_empty() {
        Ok(object)
    } else {
        Err(format!("unknown or misspelt: {}", lost.join("; ")))
    }
}

/// Paths of `original` that `back` does not hold with the same value.
fn lost_fields(path: &str, original: &Value, back: &Value, lost: &mut Vec<String>) {
    match (original, back) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, va) in a {
                let p = format!("{path}.{key}");
                match b.get(key) {
                    Some(vb) => lost_fields(&p, va, vb, lost),
                    None => lost.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                lost_fields(&format!("{path}[{i}]"), va, vb, lost);
            }
        }
        _ if original == back => {}
        // A quantity (`cpu: 1`) may be a YAML number; the typed object
        // keeps it as the string the API server would.
        (Value::Number(n), Value::String(s)) if n.to_string() == *s => {}
        _ => lost.push(format!("{path} ({original} came back as {back})")),
    }
}

/// The kinds the examples use, typed.
enum Object {
    ConfigMap(ConfigMap),
    Secret(Secret),
    Service(Service),
    Deployment(Deployment),
    StatefulSet(StatefulSet),
    PodDisruptionBudget(PodDisruptionBudget),
}

fn is<T: Resource>(api_version: &str, kind: &str) -> bool {
    api_version == T::API_VERSION && kind == T::KIND
}

impl Object {
    fn parse(value: &Value) -> Result<Object, String> {
        let api_version = value["apiVersion"].as_str().unwrap_or_default();
        let kind = value["kind"].as_str().unwrap_or_default();
        if is::<ConfigMap>(api_version, kind) {
            typed(value).map(Object::ConfigMap)
        } else if is::<Secret>(api_version, kind) {
            typed(value).map(Object::Secret)
        } else if is::<Service>(api_version, kind) {
            typed(value).map(Object::Service)
        } else if is::<Deployment>(api_version, kind) {
            typed(value).map(Object::Deployment)
        } else if is::<StatefulSet>(api_version, kind) {
            typed(value).map(Object::StatefulSet)
        } else if is::<PodDisruptionBudget>(api_version, kind) {
            typed(value).map(Object::PodDisruptionBudget)
        } else {
            Err(format!(
                "apiVersion {api_version:?} kind {kind:?} is not one this lint knows; add it to Object"
            ))
        }
    }
}

/// Every manifest, typed, sorted by kind; panics on the first bad one (the
/// schema test reports all of them).
#[derive(Default)]
struct Manifests {
    config_maps: Vec<ConfigMap>,
    secrets: Vec<Secret>,
    services: Vec<Service>,
    workloads: Vec<Workload>,
    budgets: Vec<PodDisruptionBudget>,
}

/// A Deployment or a StatefulSet: what runs our binaries.
struct Workload {
    kind: &'static str,
    name: String,
    selector: BTreeMap<String, String>,
    template: PodTemplateSpec,
    statefulset: Option<StatefulSet>,
}

impl Workload {
    fn labels(&self) -> BTreeMap<String, String> {
        self.template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default()
    }

    fn containers(&self) -> &[Container] {
        &self.template.spec.as_ref().expect("pod spec").containers
    }

    fn describe(&self) -> String {
        format!("{} {}", self.kind, self.name)
    }
}

fn manifests() -> Manifests {
    let mut m = Manifests::default();
    for doc in k8s_docs() {
        let object =
            Object::parse(&doc.value).unwrap_or_else(|e| panic!("{}: {e}", doc.describe()));
        match object {
            Object::ConfigMap(c) => m.config_maps.push(c),
            Object::Secret(s) => m.secrets.push(s),
            Object::Service(s) => m.services.push(s),
            Object::PodDisruptionBudget(p) => m.budgets.push(p),
            Object::Deployment(d) => {
                let spec = d.spec.clone().expect("Deployment spec");
                m.workloads.push(Workload {
                    kind: "Deployment",
                    name: d.metadata.name.clone().unwrap_or_default(),
                    selector: spec.selector.match_labels.unwrap_or_default(),
                    template: spec.template,
                    statefulset: None,
                });
            }
            Object::StatefulSet(s) => {
                let spec = s.spec.clone().expect("StatefulSet spec");
                m.workloads.push(Workload {
                    kind: "StatefulSet",
                    name: s.metadata.name.clone().unwrap_or_default(),
                    selector: spec.selector.match_labels.unwrap_or_default(),
                    template: spec.template,
                    statefulset: Some(s),
                });
            }
        }
    }
    m
}

impl Manifests {
    /// The workload whose container runs `bin`, and that container.
    fn running(&self, bin: Binary) -> (&Workload, &Container) {
        self.workloads
            .iter()
            .find_map(|w| {
                w.containers()
                    .iter()
                    .find(|c| c.name == bin.name())
                    .map(|c| (w, c))
            })
            .unwrap_or_else(|| panic!("no workload runs a container named {}", bin.name()))
    }

    fn config_map_file(&self, name: &str, key: &str) -> &str {
        self.config_maps
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no ConfigMap {name}"))
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .unwrap_or_else(|| panic!("ConfigMap {name} has no key {key}"))
    }

    fn service(&self, name: &str) -> &Service {
        self.services
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no Service {name}"))
    }

    /// Keys of the example Secret, by Secret name.
    fn secret_keys(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.secrets
            .iter()
            .map(|s| {
                let mut keys: BTreeSet<String> = s
                    .string_data
                    .as_ref()
                    .map(|d| d.keys().cloned().collect())
                    .unwrap_or_default();
                keys.extend(s.data.iter().flat_map(|d| d.keys().cloned()));
                (s.metadata.name.clone().unwrap_or_default(), keys)
            })
            .collect()
    }

    /// What `bin`'s container is configured with, checked flag by flag:
    /// the TOML file its `--config` names, then its env, then its args.
    fn settings(&self, bin: Binary) -> Result<Settings, Vec<String>> {
        let (workload, container) = self.running(bin);
        let what = format!("{} container {}", workload.describe(), container.name);
        let mut problems = Vec::new();
        let args = match container_args(bin, container) {
            Ok(a) => a,
            Err(e) => return Err(vec![format!("{what}: {e}")]),
        };
        let pairs = flag_pairs(&args).map_err(|e| vec![format!("{what}: {e}")])?;
        let mut settings = Settings::default();

        // The file first: flags and env override it.
        if let Some((_, path)) = pairs.iter().find(|(f, _)| f == "config") {
            match self.mounted_config(workload, container, path) {
                Ok((map, key)) => {
                    let (file, p) = toml_settings(
                        bin,
                        self.config_map_file(&map, &key),
                        &format!("{map}/{key}"),
                    );
                    problems.extend(p);
                    settings = file;
                }
                Err(e) => problems.push(format!("{what}: {e}")),
            }
        }

        let secrets = self.secret_keys();
        for env in container.env.iter().flatten() {
            let flag = match bin.check_env(&env.name) {
                Ok(f) => f,
                Err(e) => {
                    problems.push(format!("{what}: {e}"));
                    continue;
                }
            };
            if let Some(value) = &env.value {
                if let Some(flag) = &flag {
                    settings.set(flag, &expand_sample(value));
                }
            }
            let Some(from) = &env.value_from else {
                continue;
            };
            if let Some(secret) = &from.secret_key_ref {
                let known = secrets.get(&secret.name);
                if !known.is_some_and(|keys| keys.contains(&secret.key)) {
                    problems.push(format!(
                        "{what}: env {} reads key {} of Secret {}, which the example Secret does not have",
                        env.name, secret.key, secret.name
                    ));
                }
                if let Some(flag) = &flag {
                    settings.set(flag, &format!("secret-{}", secret.key));
                }
            }
            if let Some(field) = &from.field_ref {
                if env.name == "GAME_SERVER_NODE_ID" {
                    match node_id_from_ordinal(workload, &field.field_path) {
                        Ok(id) => settings.set("node-id", &id.to_string()),
                        Err(e) => problems.push(format!("{what}: {e}")),
                    }
                }
            }
        }

        for (flag, value) in &pairs {
            if let Err(e) = bin.check_flag(flag) {
                problems.push(format!("{what}: {e}"));
            }
            settings.set(flag, &expand_sample(value));
        }
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(problems)
        }
    }

    /// The ConfigMap and key mounted at the directory of `path`.
    fn mounted_config(
        &self,
        workload: &Workload,
        container: &Container,
        path: &str,
    ) -> Result<(String, String), String> {
        let (dir, key) = path
            .rsplit_once('/')
            .ok_or(format!("--config {path} is not an absolute path"))?;
        let mount = container
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == dir)
            .ok_or(format!("--config {path}: nothing is mounted at {dir}"))?;
        let volume = workload
            .template
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .and_then(|v| v.iter().find(|v| v.name == mount.name))
            .ok_or(format!("volume {} is not in the pod", mount.name))?;
        let map = volume
            .config_map
            .as_ref()
            .ok_or(format!("volume {} is not a ConfigMap", mount.name))?;
        Ok((map.name.clone(), key.to_string()))
    }
}

/// The node id a game server pod gets from its ordinal label.
fn node_id_from_ordinal(workload: &Workload, field_path: &str) -> Result<i32, String> {
    if field_path != "metadata.labels['apps.kubernetes.io/pod-index']" {
        return Err(format!(
            "GAME_SERVER_NODE_ID comes from {field_path}, not the pod-index label"
        ));
    }
    let start = workload
        .statefulset
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0);
    if start < 1 {
        return Err(format!(
            "{}: ordinals start at {start}, but node id 0 is refused: set spec.ordinals.start: 1",
            workload.describe()
        ));
    }
    Ok(start)
}

/// The arguments a container passes to our binary: its `args` after a
/// `command` that is the binary itself, or a `/bin/sh -c` script that ends
/// by exec'ing it with `"$@"`.
fn container_args(bin: Binary, c: &Container) -> Result<Vec<String>, String> {
    let command = c.command.clone().unwrap_or_default();
    let runs_bin = match command.as_slice() {
        [only] => only == bin.name(),
        [sh, dash_c, script, zero] if sh == "/bin/sh" && dash_c == "-c" => {
            zero == bin.name()
                && script
                    .trim_end()
                    .ends_with(&format!("exec {} \"$@\"", bin.name()))
        }
        _ => false,
    };
    if !runs_bin {
        return Err(format!(
            "command {command:?} does not run {} (give the binary's name as the command, \
             or a /bin/sh -c script ending in `exec {} \"$@\"`)",
            bin.name(),
            bin.name()
        ));
    }
    Ok(c.args.clone().unwrap_or_default())
}

fn port_named(c: &Container, name: &str) -> Option<u16> {
    c.ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(name))
        .map(|p| u16::try_from(p.container_port).expect("port in range"))
}

fn is_subset(small: &BTreeMap<String, String>, big: &BTreeMap<String, String>) -> bool {
    !small.is_empty() && small.iter().all(|(k, v)| big.get(k) == Some(v))
}

// ---------------------------------------------------------------------------
// Tests: Kubernetes
// ---------------------------------------------------------------------------

#[test]
fn every_kubernetes_document_is_a_typed_object_without_unknown_fields() {
    let problems: Vec<String> = k8s_docs()
        .iter()
        .filter_map(|d| {
            Object::parse(&d.value)
                .err()
                .map(|e| format!("{}: {e}", d.describe()))
        })
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_misspelt_field_is_caught_by_the_round_trip() {
    // k8s-openapi ignores unknown fields when it deserializes; the lint
    // relies on the round trip to see them.
    let yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers: [{name: c, image: i, imagePullPolice: Always}]\n";
    let value: Value = serde_norway::from_str(yaml).unwrap();
    let err = Object::parse(&value)
        .err()
        .expect("misspelt fields must be refused");
    assert!(err.contains(".spec.replica"), "{err}");
    assert!(err.contains("imagePullPolice"), "{err}");
}

#[test]
fn kustomization_lists_every_manifest_but_the_examples() {
    /// The part of kustomize's Kustomization the examples use; anything
    /// else in the file is refused, so a typo does not go unseen.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Kustomization {
        api_version: String,
        kind: String,
        resources: Vec<String>,
        #[serde(default)]
        images: Vec<Image>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Image {
        name: String,
        new_name: Option<String>,
        new_tag: Option<String>,
    }

    let dir = deploy_dir().join("kubernetes");
    let k: Kustomization = serde_norway::from_str(&read(&dir.join("kustomization.yaml")))
        .unwrap_or_else(|e| panic!("kustomization.yaml: {e}"));
    assert_eq!(k.api_version, "kustomize.config.k8s.io/v1beta1");
    assert_eq!(k.kind, "Kustomization");

    let listed: BTreeSet<String> = k.resources.iter().cloned().collect();
    // Examples (the Secret with placeholder values) must never be applied
    // by `kubectl apply -k`: the operator makes their own.
    let expected: BTreeSet<String> = files_ending(&dir, ".yaml")
        .iter()
        .map(|p| file_name(p))
        .filter(|f| f != "kustomization.yaml" && !f.ends_with(".example.yaml"))
        .collect();
    assert_eq!(
        listed, expected,
        "kustomization.yaml resources vs the files beside it"
    );
    assert_eq!(
        listed.len(),
        k.resources.len(),
        "a resource is listed twice"
    );

    // The image override must name the image the containers use.
    let m = manifests();
    for image in &k.images {
        assert!(
            image.new_name.is_some() || image.new_tag.is_some(),
            "{} changes nothing",
            image.name
        );
    }
    for w in &m.workloads {
        for c in w.containers() {
            let image = c.image.as_deref().unwrap_or_default();
            let name = image.split(':').next().unwrap_or_default();
            assert!(
                k.images.iter().any(|i| i.name == name),
                "{}: image {image} is not in kustomization.yaml's images",
                w.describe()
            );
        }
    }
}

#[test]
fn container_flags_env_and_config_keys_exist_in_the_binaries() {
    let m = manifests();
    let mut problems = Vec::new();
    for w in &m.workloads {
        for c in w.containers() {
            if Binary::from_name(&c.name).is_none() {
                problems.push(format!(
                    "{}: container {} is not named after one of our binaries",
                    w.describe(),
                    c.name
                ));
            }
        }
    }
    for bin in [Binary::Gateway, Binary::GameServer] {
        match m.settings(bin) {
            Err(p) => problems.extend(p),
            // The binary's own parser and validation take the values
            // (panics with the binary's message otherwise).
            Ok(s) => match bin {
                Binary::Gateway => drop(s.gateway()),
                Binary::GameServer => drop(s.game_server()),
            },
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn gateway_ports_binds_and_seeds_agree_with_the_binaries() {
    let m = manifests();
    let s = m
        .settings(Binary::Gateway)
        .unwrap_or_else(|p| panic!("{}", p.join("\n")));
    let gw = s.gateway();
    let gs = m
        .settings(Binary::GameServer)
        .unwrap_or_else(|p| panic!("{}", p.join("\n")));
    let gs = gs.game_server();
    let (_, c) = m.running(Binary::Gateway);

    assert_eq!(
        gw.client_port,
        gamemesh_gateway::config::DEFAULT_CLIENT_PORT
    );
    assert_eq!(
        port_named(c, "client"),
        Some(gw.client_port),
        "container port client"
    );
    assert_eq!(gw.p2p_port, gamemesh_gateway::config::DEFAULT_P2P_PORT);
    assert_eq!(
        port_named(c, "p2p"),
        Some(gw.p2p_port),
        "container port p2p"
    );
    // Clients come from outside the pod, and game servers dial the pod IP.
    assert_eq!(gw.client_bind, "0.0.0.0");
    assert_eq!(
        gw.p2p_bind, "0.0.0.0",
        "the P2P port must not stay on loopback in a pod"
    );
    assert_eq!(gw.node.advertise_host, expand_sample("$(POD_IP)"));

    // The public Service exposes the client port and nothing else.
    let public = m.service("gamemesh-gateway");
    let spec = public.spec.as_ref().unwrap();
    assert!(matches!(
        spec.type_.as_deref(),
        Some("LoadBalancer" | "NodePort")
    ));
    let ports = spec.ports.as_ref().unwrap();
    assert_eq!(ports.len(), 1, "only the client port may face the internet");
    assert_eq!(ports[0].port, i32::from(gw.client_port));

    // Every seed is a game server pod's stable name and its P2P port.
    let (gs_workload, _) = m.running(Binary::GameServer);
    let sts = gs_workload
        .statefulset
        .as_ref()
        .expect("game servers are a StatefulSet");
    let spec = sts.spec.as_ref().unwrap();
    let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
    let replicas = spec.replicas.unwrap_or(1);
    let service = spec.service_name.as_deref().expect("serviceName");
    let pods: Vec<String> = (start..start + replicas)
        .map(|i| {
            format!(
                "{}-{i}.{service}.{}.svc",
                gs_workload.name,
                expand_sample("$(POD_NAMESPACE)")
            )
        })
        .collect();
    for seed in &gw.game_servers {
        let (host, port) = seed.rsplit_once(':').unwrap();
        assert_eq!(
            port,
            gs.p2p_port.to_string(),
            "seed {seed}: not the game servers' P2P port"
        );
        assert!(
            pods.iter().any(|p| p == host),
            "seed {seed} is none of {pods:?}"
        );
    }
}

#[test]
fn game_server_ports_binds_and_identity_agree_with_the_binaries() {
    let m = manifests();
    let s = m
        .settings(Binary::GameServer)
        .unwrap_or_else(|p| panic!("{}", p.join("\n")));
    let gs = s.game_server();
    let defaults = gamemesh_game_server::Config::default();
    let (w, c) = m.running(Binary::GameServer);

    assert_eq!(gs.p2p_port, defaults.p2p_port);
    assert_eq!(gs.mesh_port, defaults.mesh_port);
    assert_eq!(
        port_named(c, "p2p"),
        Some(gs.p2p_port),
        "container port p2p"
    );
    assert_eq!(
        port_named(c, "mesh"),
        Some(gs.mesh_port),
        "container port mesh"
    );
    // The internal ports default to loopback; in a pod they must not.
    assert_eq!(
        gs.bind, "0.0.0.0",
        "game-server must bind its internal ports beyond loopback"
    );
    assert_eq!(gs.session_store, gamemesh_game_server::StoreKind::Redis);
    assert!(gs.node.node_id >= 1, "node id from the ordinal");

    // It advertises its stable DNS name, which the headless Service makes.
    let sts = w.statefulset.as_ref().unwrap();
    let service_name = sts.spec.as_ref().unwrap().service_name.clone().unwrap();
    assert_eq!(
        gs.node.advertise_host,
        format!(
            "{}.{service_name}.{}.svc",
            expand_sample("$(POD_NAME)"),
            expand_sample("$(POD_NAMESPACE)")
        )
    );
    let headless = m.service(&service_name);
    let spec = headless.spec.as_ref().unwrap();
    assert_eq!(
        spec.cluster_ip.as_deref(),
        Some("None"),
        "{service_name} must be headless"
    );
    assert_eq!(
        spec.publish_not_ready_addresses,
        Some(true),
        "peers and gateways must resolve a game server before it is ready"
    );
    let service_ports: BTreeSet<i32> = spec.ports.iter().flatten().map(|p| p.port).collect();
    for port in [gs.p2p_port, gs.mesh_port] {
        assert!(
            service_ports.contains(&i32::from(port)),
            "{service_name} lacks port {port}"
        );
    }
}

#[test]
fn probes_and_scrape_annotations_use_the_admin_port() {
    let m = manifests();
    for bin in [Binary::Gateway, Binary::GameServer] {
        let (w, c) = m.running(bin);
        let what = w.describe();
        let settings = m
            .settings(bin)
            .unwrap_or_else(|p| panic!("{}", p.join("\n")));
        let admin = port_named(c, "admin").unwrap_or_else(|| panic!("{what}: no port named admin"));
        assert_eq!(
            admin,
            bin.admin_port(),
            "{what}: the agreed --admin-port default"
        );
        assert_eq!(
            settings.get("admin-port"),
            Some(admin.to_string().as_str()),
            "{what}: admin-port"
        );
        assert_eq!(
            settings.get("admin-bind"),
            Some("0.0.0.0"),
            "{what}: the kubelet probes the pod IP"
        );

        for (probe, path) in [
            (&c.liveness_probe, "/healthz"),
            (&c.readiness_probe, "/readyz"),
        ] {
            let get = probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .unwrap_or_else(|| panic!("{what}: no {path} probe"));
            assert_eq!(get.path.as_deref(), Some(path), "{what}");
            let port = match &get.port {
                IntOrString::Int(p) => u16::try_from(*p).unwrap(),
                IntOrString::String(name) => {
                    port_named(c, name).unwrap_or_else(|| panic!("{what}: no port {name}"))
                }
            };
            assert_eq!(port, admin, "{what}: {path} probe port");
        }

        let annotations = w
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.clone())
            .unwrap_or_default();
        assert_eq!(
            annotations.get("prometheus.io/scrape").map(String::as_str),
            Some("true"),
            "{what}"
        );
        assert_eq!(
            annotations.get("prometheus.io/port"),
            Some(&admin.to_string()),
            "{what}"
        );
        assert_eq!(
            annotations.get("prometheus.io/path").map(String::as_str),
            Some("/metrics"),
            "{what}"
        );
    }
}

#[test]
fn termination_grace_outlasts_pre_stop_and_shutdown_grace() {
    let m = manifests();
    for bin in [Binary::Gateway, Binary::GameServer] {
        let (w, c) = m.running(bin);
        let grace = match bin {
            Binary::Gateway => m.settings(bin).unwrap().gateway().node.shutdown_grace_secs,
            Binary::GameServer => {
                m.settings(bin)
                    .unwrap()
                    .game_server()
                    .node
                    .shutdown_grace_secs
            }
        };
        let pre_stop = c
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .and_then(|h| h.sleep.as_ref())
            .map_or(0, |s| s.seconds);
        let termination = w
            .template
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        let needed = pre_stop + i64::try_from(grace).unwrap();
        assert!(
            termination > needed,
            "{}: terminationGracePeriodSeconds {termination} must exceed preStop {pre_stop} s + shutdown grace {grace} s",
            w.describe()
        );
    }
}

#[test]
fn pods_are_hardened_and_sized() {
    let m = manifests();
    for w in &m.workloads {
        let what = w.describe();
        let pod = w.template.spec.as_ref().unwrap();
        let psc = pod
            .security_context
            .as_ref()
            .unwrap_or_else(|| panic!("{what}: no pod securityContext"));
        assert_eq!(psc.run_as_non_root, Some(true), "{what}: runAsNonRoot");
        assert_eq!(
            pod.automount_service_account_token,
            Some(false),
            "{what}: no API token needed"
        );
        for c in w.containers() {
            let sc = c
                .security_context
                .as_ref()
                .unwrap_or_else(|| panic!("{what}: no securityContext"));
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{what}");
            assert_eq!(sc.read_only_root_filesystem, Some(true), "{what}");
            let dropped = sc
                .capabilities
                .as_ref()
                .and_then(|c| c.drop.clone())
                .unwrap_or_default();
            assert!(
                dropped.iter().any(|d| d == "ALL"),
                "{what}: capabilities must drop ALL"
            );
            let r = c
                .resources
                .as_ref()
                .unwrap_or_else(|| panic!("{what}: no resources"));
            let requests = r.requests.clone().unwrap_or_default();
            let limits = r.limits.clone().unwrap_or_default();
            assert!(
                requests.contains_key("cpu") && requests.contains_key("memory"),
                "{what}: requests"
            );
            assert!(limits.contains_key("memory"), "{what}: memory limit");
        }
    }
}

#[test]
fn services_and_budgets_select_the_pods() {
    let m = manifests();
    let problems: Vec<String> = m
        .workloads
        .iter()
        .filter(|w| !is_subset(&w.selector, &w.labels()))
        .map(|w| {
            format!(
                "{}: selector does not match its own pod labels",
                w.describe()
            )
        })
        .chain(m.services.iter().filter_map(|s| {
            let name = s.metadata.name.clone().unwrap_or_default();
            let spec = s.spec.as_ref()?;
            let selector = spec.selector.clone().unwrap_or_default();
            let Some(w) = m
                .workloads
                .iter()
                .find(|w| is_subset(&selector, &w.labels()))
            else {
                return Some(format!("Service {name} selects no workload's pods"));
            };
            spec.ports
                .iter()
                .flatten()
                .find_map(|p| match &p.target_port {
                    Some(IntOrString::String(port))
                        if w.containers().iter().all(|c| port_named(c, port).is_none()) =>
                    {
                        Some(format!(
                            "Service {name}: {} has no port named {port}",
                            w.describe()
                        ))
                    }
                    _ => None,
                })
        }))
        .chain(m.budgets.iter().filter_map(|b| {
            let name = b.metadata.name.clone().unwrap_or_default();
            let selector = b
                .spec
                .as_ref()?
                .selector
                .as_ref()?
                .match_labels
                .clone()
                .unwrap_or_default();
            (!m.workloads
                .iter()
                .any(|w| is_subset(&selector, &w.labels())))
            .then(|| format!("PodDisruptionBudget {name} selects no workload's pods"))
        }))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for w in &m.workloads {
        assert!(
            m.budgets.iter().any(|b| {
                let sel = b
                    .spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .and_then(|s| s.match_labels.clone());
                sel.is_some_and(|sel| is_subset(&sel, &w.labels()))
            }),
            "{} has no PodDisruptionBudget",
            w.describe()
        );
    }
}

/// The gateway container's `/bin/sh -c` script as the shell gets it, and
/// its `$0`.
fn gateway_script() -> (String, String) {
    let m = manifests();
    let (_, c) = m.running(Binary::Gateway);
    let command = c.command.clone().unwrap();
    let [_, _, script, zero] = command.as_slice() else {
        panic!("the gateway's command is not a /bin/sh -c script: {command:?}");
    };
    // Kubernetes turns "$$" into "$" before the shell sees the script.
    (script.replace("$$", "$"), zero.clone())
}

#[test]
fn gateway_node_id_script_passes_shellcheck() {
    let (script, _) = gateway_script();
    let child = Command::new("shellcheck")
        .args(["--shell=sh", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        panic!(
            "shellcheck is not installed: run `apt-get install shellcheck` (scripts/test.sh does)"
        );
    };
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "shellcheck on the gateway's command:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn gateway_node_id_script_numbers_the_pod_ip() {
    let (script, zero) = gateway_script();
    let zero = zero.as_str();
    let dir = tempfile::tempdir().unwrap();
    // A stand-in gateway that prints what the script gave it.
    let fake = dir.path().join("gateway");
    std::fs::write(&fake, "#!/bin/sh\necho \"$GATEWAY_NODE_ID $*\"\n").unwrap();
    let run = |pod_ip: &str| {
        Command::new("/bin/sh")
            .args(["-c", &script, zero, "--advertise-host", pod_ip])
            .env("POD_IP", pod_ip)
            .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
            .output()
            .expect("run /bin/sh")
    };
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    let out = run("10.1.2.3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = (10u64 << 24) + (1 << 16) + (2 << 8) + 3;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{expected} --advertise-host 10.1.2.3")
    );

    let out = run("fd00::1");
    assert!(
        !out.status.success(),
        "an IPv6 pod IP must stop the pod, not make a node id"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("IPv6"));
}

// ---------------------------------------------------------------------------
// Tests: systemd
// ---------------------------------------------------------------------------

/// A unit file: section -> (key, value) in order (keys may repeat).
fn parse_unit(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut sections: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {line}"));
        sections
            .entry(current.clone())
            .or_default()
            .push((k.trim().to_string(), v.trim().to_string()));
    }
    sections
}

/// `KEY=value` lines of an env file.
fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not KEY=value: {l}"));
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect()
}

/// The systemd units and the binary each runs.
fn units() -> Vec<(PathBuf, Binary)> {
    let dir = deploy_dir().join("systemd");
    let units: Vec<(PathBuf, Binary)> = files_ending(&dir, ".service")
        .into_iter()
        .map(|p| {
            let bin = if file_name(&p).starts_with("gamemesh-gateway") {
                Binary::Gateway
            } else if file_name(&p).starts_with("gamemesh-game-server@") {
                Binary::GameServer
            } else {
                panic!("{}: which binary does it run?", p.display());
            };
            (p, bin)
        })
        .collect();
    assert_eq!(
        units.len(),
        2,
        "the gateway unit and the game server template"
    );
    units
}

/// The env files of a binary: `gateway*.env` or `game-server*.env`, the
/// shared one first.
fn env_files(bin: Binary) -> Vec<PathBuf> {
    let shared = format!("{}.env", bin.name());
    let mut files: Vec<PathBuf> = files_ending(&deploy_dir().join("systemd"), ".env")
        .into_iter()
        .filter(|p| {
            let f = file_name(p);
            f == shared || f.starts_with(&format!("{}-", bin.name()))
        })
        .collect();
    // By name "game-server-2.env" sorts before "game-server.env".
    files.sort_by_key(|p| file_name(p) != shared);
    assert_eq!(
        files.first().map(|p| file_name(p)),
        Some(shared.clone()),
        "deploy/systemd/{shared} is missing"
    );
    files
}

/// Settings from env files, later files overriding earlier ones.
fn env_settings(bin: Binary, files: &[PathBuf]) -> Result<Settings, Vec<String>> {
    let mut settings = Settings::default();
    let mut problems = Vec::new();
    for path in files {
        for (key, value) in parse_env_file(&read(path)) {
            match bin.check_env(&key) {
                Ok(Some(flag)) => settings.set(&flag, &value),
                Ok(None) => {}
                Err(e) => problems.push(format!("{}: {e}", file_name(path))),
            }
            // A pending flag's value still counts (admin-port below).
            for (flag, envs) in PENDING_FLAGS {
                if envs.contains(&key.as_str()) {
                    settings.set(flag, &value);
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(settings)
    } else {
        Err(problems)
    }
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        panic!("systemd-analyze is not installed: run `apt-get install systemd` (scripts/test.sh does)");
    };
    assert!(version.status.success());
    // verify also checks that ExecStart's program exists: point it at a
    // stand-in, in a copy of the units.
    let dir = tempfile::tempdir().unwrap();
    let stub = dir.path().join("stub");
    std::fs::write(&stub, "#!/bin/sh\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut names = Vec::new();
    for (path, bin) in units() {
        let text = read(&path).replace(
            &format!("/usr/local/bin/{}", bin.name()),
            &stub.to_string_lossy(),
        );
        let name = file_name(&path);
        std::fs::write(dir.path().join(&name), text).unwrap();
        // A template is verified as one of its instances.
        names.push(dir.path().join(name.replace("@.", "@1.")));
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&names)
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unknown keys are only warnings to systemd: refuse them here.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("gamemesh")).collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify:\n{stderr}"
    );
}

#[test]
fn systemd_units_stop_gracefully_restart_and_are_hardened() {
    for (path, bin) in units() {
        let what = file_name(&path);
        let unit = parse_unit(&read(&path));
        let service = unit
            .get("Service")
            .unwrap_or_else(|| panic!("{what}: no [Service]"));
        let get = |k: &str| -> Vec<&str> {
            service
                .iter()
                .filter(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        let one = |k: &str| -> &str { get(k).last().unwrap_or_else(|| panic!("{what}: no {k}=")) };

        assert_eq!(one("KillSignal"), "SIGTERM", "{what}");
        assert!(
            matches!(one("Restart"), "on-failure" | "always"),
            "{what}: Restart"
        );
        assert!(
            one("DynamicUser") == "yes" || !get("User").is_empty(),
            "{what}: DynamicUser or User"
        );
        for (key, value) in [
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("CapabilityBoundingSet", ""),
        ] {
            assert_eq!(one(key), value, "{what}: {key}");
        }
        assert!(
            unit.get("Install")
                .is_some_and(|i| i.iter().any(|(k, _)| k == "WantedBy")),
            "{what}: [Install] WantedBy"
        );

        // ExecStart runs our binary with flags it has.
        let exec = one("ExecStart");
        let mut words = exec.split_whitespace();
        assert_eq!(
            words.next(),
            Some(format!("/usr/local/bin/{}", bin.name()).as_str()),
            "{what}"
        );
        let args: Vec<String> = words.map(str::to_string).collect();
        let pairs = flag_pairs(&args).unwrap_or_else(|e| panic!("{what}: {e}"));
        for (flag, _) in &pairs {
            bin.check_flag(flag)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        }
        if bin == Binary::GameServer {
            assert!(
                pairs.contains(&("node-id".into(), "%i".into())),
                "{what}: the instance is the node id"
            );
        }

        // The stop timeout outlasts the shutdown grace the env file sets.
        let files = env_files(bin);
        let settings =
            env_settings(bin, &files[..1]).unwrap_or_else(|p| panic!("{}", p.join("\n")));
        let grace: u64 = match bin {
            Binary::Gateway => settings.gateway().node.shutdown_grace_secs,
            Binary::GameServer => settings.game_server().node.shutdown_grace_secs,
        };
        let stop: u64 = one("TimeoutStopSec")
            .trim_end_matches('s')
            .parse()
            .expect("TimeoutStopSec in seconds");
        assert!(
            stop > grace,
            "{what}: TimeoutStopSec {stop} must exceed the shutdown grace {grace}"
        );

        // Every EnvironmentFile is one of the examples, installed under
        // /etc/gamemesh.
        for env in get("EnvironmentFile") {
            let installed = env.trim_start_matches('-');
            let file = installed
                .strip_prefix("/etc/gamemesh/")
                .unwrap_or_else(|| panic!("{what}: {env}"));
            let example = file.replace("%i", "2");
            assert!(
                deploy_dir().join("systemd").join(&example).exists(),
                "{what}: EnvironmentFile {env} has no example deploy/systemd/{example}"
            );
        }
    }
}

#[test]
fn systemd_env_files_hold_only_known_variables_with_valid_values() {
    let mut cluster_secrets = BTreeSet::new();
    for bin in [Binary::Gateway, Binary::GameServer] {
        let files = env_files(bin);
        assert!(!files.is_empty(), "no env file for {}", bin.name());
        for i in 0..files.len() {
            // The shared file alone, and with each per-instance file.
            let mut chosen = vec![files[0].clone()];
            if i > 0 {
                chosen.push(files[i].clone());
            }
            let mut settings =
                env_settings(bin, &chosen).unwrap_or_else(|p| panic!("{}", p.join("\n")));
            match bin {
                Binary::Gateway => drop(settings.gateway()),
                Binary::GameServer => {
                    // What ExecStart adds: the instance's node id.
                    let node = file_name(&files[i])
                        .trim_start_matches("game-server-")
                        .trim_end_matches(".env")
                        .parse()
                        .unwrap_or(1u64);
                    settings.set("node-id", &node.to_string());
                    let c = settings.game_server();
                    assert_eq!(c.node.node_id, node);
                }
            }
        }
        let shared = parse_env_file(&read(&files[0]));
        if bin == Binary::GameServer {
            assert!(
                shared.iter().all(|(k, _)| k != "GAME_SERVER_NODE_ID"),
                "game-server.env is shared by every instance: the node id is the instance name"
            );
        }
        cluster_secrets.extend(
            shared
                .iter()
                .filter(|(k, _)| k == "CLUSTER_SECRET")
                .map(|(_, v)| v.clone()),
        );
    }
    assert_eq!(
        cluster_secrets.len(),
        1,
        "CLUSTER_SECRET must be the same on every node: {cluster_secrets:?}"
    );
}

/// `CONFIG GET name` on `conn`.
fn redis_config(conn: &mut impl redis::ConnectionLike, name: &str) -> String {
    let pair: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query(conn)
        .unwrap_or_else(|e| panic!("CONFIG GET {name}: {e}"));
    pair.get(1)
        .cloned()
        .unwrap_or_else(|| panic!("CONFIG GET {name}: no value in {pair:?}"))
}

/// The Redis settings file is what docs/OPERATIONS.md ("Redis
/// persistence") says gamemesh needs, and a real `redis-server` takes it
/// (an unknown or misspelt directive stops it): append-only persistence
/// fsynced every second or always, no eviction. And it does what it is
/// for: a write acknowledged before a kill -9 is there after the restart.
#[test]
fn the_redis_settings_make_a_redis_that_persists_and_never_evicts() {
    let file = deploy_dir().join("redis/gamemesh.conf");
    let path = file
        .canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    // After the test server's own defaults (`--appendonly no`), so the
    // file's settings are the ones in force.
    let mut server = gamemesh_test_support::RedisServer::start_with_args(&[
        "--include",
        path.to_str().expect("a UTF-8 path"),
    ]);
    let client = redis::Client::open(server.url()).expect("redis url");
    let mut conn = client.get_connection().expect("connect");
    assert_eq!(redis_config(&mut conn, "appendonly"), "yes");
    let fsync = redis_config(&mut conn, "appendfsync");
    assert!(
        fsync == "everysec" || fsync == "always",
        "appendfsync {fsync}: everysec or always, never no"
    );
    assert_eq!(redis_config(&mut conn, "maxmemory-policy"), "noeviction");

    redis::cmd("SET")
        .arg("gm:{u:1}:session")
        .arg("kept")
        .exec(&mut conn)
        .expect("SET");
    server.restart(); // SIGKILL, then the same flags, port and directory
    let mut conn = client.get_connection().expect("reconnect");
    let kept: Option<String> = redis::cmd("GET")
        .arg("gm:{u:1}:session")
        .query(&mut conn)
        .expect("GET");
    assert_eq!(
        kept.as_deref(),
        Some("kept"),
        "an acknowledged write survives kill -9 of Redis"
    );
}
