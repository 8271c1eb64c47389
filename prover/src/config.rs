//! The node's configuration file (`config.json` at the repository root is the documented default).
//!
//! Sections (single words): `prover` (the proving core's directories; exactly
//! [`prover_core::CoreConfig`]'s shape, which the C ABI also reads), `node`, `circuits`,
//! `coordinator`, `metrics`. Unknown keys are an error: a misspelt key must not be silently ignored.
//!
//! Every key can be overridden by an environment variable `PROVER_<SECTION>_<KEY>` (upper case),
//! parsed with the key's type; a `PROVER_*` variable that names no key is an error. The variables
//! `PROVER_PARAMS_DIR` and `PROVER_KEYS_DIR` (the CLI flags' variables of `prove`, `verify`, `demo`)
//! are accepted as aliases of `PROVER_PROVER_PARAMS_DIR` and `PROVER_PROVER_KEYS_DIR`, which win
//! when both are set. [`NodeConfig::load`] reads, applies the environment, and validates.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use prover_core::wire::{BatchConfig, BundleConfig, ChunkConfig, CircuitSpec};
use serde::{Deserialize, Serialize};

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "PROVER_";

/// The largest `coordinator.max_reply_mib` (4 GiB): a reply is held in memory whole.
pub const MAX_REPLY_MIB: u64 = 4096;

/// CLI variables of other subcommands accepted as aliases: (variable, section, key).
const ENV_ALIASES: &[(&str, &str, &str)] = &[
    ("PROVER_PARAMS_DIR", "prover", "params_dir"),
    ("PROVER_KEYS_DIR", "prover", "keys_dir"),
    (
        "PROVER_KEYS_DISK_RESERVE_MIB",
        "prover",
        "keys_disk_reserve_mib",
    ),
];

/// Errors reading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("environment variable {var}: {reason}")]
    Env { var: String, reason: String },
    #[error("invalid configuration: {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// The whole file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub prover: ProverSection,
    #[serde(default)]
    pub node: NodeSection,
    #[serde(default)]
    pub circuits: CircuitsSection,
    #[serde(default)]
    pub coordinator: CoordinatorSection,
    #[serde(default)]
    pub metrics: MetricsSection,
}

/// Where the proving core finds parameters and keeps keys.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProverSection {
    /// Directory of `kzg_bn254_{k}.srs` parameter files.
    pub params_dir: PathBuf,
    /// Directory of the proving-key cache.
    pub keys_dir: PathBuf,
    /// Free space (MiB) the key and coset caches leave on `keys_dir`'s filesystem: a cache
    /// file that would leave less is not written (the keys and cosets are then used from memory).
    #[serde(default = "default_keys_disk_reserve_mib")]
    pub keys_disk_reserve_mib: u64,
}

fn default_keys_disk_reserve_mib() -> u64 {
    prover_core::disk::DEFAULT_RESERVE_MIB
}

impl Default for ProverSection {
    fn default() -> Self {
        Self {
            params_dir: "data/params".into(),
            keys_dir: "data/keys".into(),
            keys_disk_reserve_mib: default_keys_disk_reserve_mib(),
        }
    }
}

/// Compute backend choice (`auto`, `cpu`, `cuda`): the proving core's own type.
pub use gpu::BackendChoice;
/// Proving engine choice (`reference`, `native`): the proving core's own type.
pub use prover_core::engine::EngineKind as EngineChoice;

/// Keys whose value is an optional integer (`null` by default): their environment variables take
/// an integer or `null`.
const OPTIONAL_INTEGER_KEYS: &[(&str, &str)] = &[("node", "seed")];
/// Keys whose value is an optional list of integers (`null` by default): their environment
/// variables take `null` or a comma-separated list.
const OPTIONAL_LIST_KEYS: &[(&str, &str)] = &[("node", "devices")];

/// The daemon itself.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// Prover name sent in the login (worker i logs in as `{name}-{i}`).
    pub name: String,
    /// Number of worker loops, one identity each.
    pub n_workers: usize,
    /// Directory of the worker key files `worker-{i}.key` (created mode 0600 on first start).
    pub identity_dir: PathBuf,
    /// The redb file of the crash-safe task stack.
    pub db_path: PathBuf,
    /// Task types this node proves (1 chunk, 2 batch).
    pub task_types: Vec<u8>,
    /// Proving attempts per task; once spent, the task is reported as failure_type 1 (panic).
    pub max_attempts: u32,
    /// On SIGINT/SIGTERM, how long a running proof may still take before the node exits anyway
    /// (the task then stays in the stack for the next start).
    pub drain_timeout_sec: u64,
    /// `auto` (CUDA when usable, else the CPU with a warning), `cpu` or `cuda` (an error at start
    /// without a usable CUDA device). Used by the native engine.
    pub backend: BackendChoice,
    /// CUDA device ordinals to prove on (`null`: every device the driver sees). Worker i proves
    /// on device `devices[i mod len]`.
    pub devices: Option<Vec<usize>>,
    /// `native` (our prover, on `backend`) or `reference` (halo2-axiom's, on the CPU).
    pub engine: EngineChoice,
    /// A fixed rng seed for every proof (`null`: fresh OS randomness per proof). For
    /// cross-checks only: it breaks zero-knowledge across tasks.
    pub seed: Option<u64>,
    /// 1 internal, 2 external (login `prover_provider_type`).
    pub provider_type: u8,
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            name: "prover".into(),
            n_workers: 1,
            identity_dir: "data/identity".into(),
            db_path: "data/prover-stack.redb".into(),
            task_types: vec![1, 2],
            max_attempts: 3,
            drain_timeout_sec: 600,
            backend: BackendChoice::Auto,
            devices: None,
            engine: EngineChoice::Native,
            seed: None,
            provider_type: 1,
        }
    }
}

/// The circuit shapes this node proves: their verifying-key digests are the login `vks`.
/// A task carries its own circuit configuration; the daemon proves only tasks whose circuit is
/// the one configured here for their type (others are reported as failures, and no keys are made).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitsSection {
    pub chunk_k: u32,
    pub chunk_tree_depth: usize,
    pub chunk_max_txs: usize,
    pub batch_k: u32,
    pub batch_num_chunks: usize,
    pub bundle_k: u32,
    pub bundle_num_batches: usize,
}

impl Default for CircuitsSection {
    fn default() -> Self {
        let c = ChunkConfig::default();
        Self {
            chunk_k: c.k,
            chunk_tree_depth: c.tree_depth,
            chunk_max_txs: c.max_txs,
            batch_k: 20,
            batch_num_chunks: 2,
            bundle_k: 20,
            bundle_num_batches: 1,
        }
    }
}

impl CircuitsSection {
    pub fn chunk(&self) -> ChunkConfig {
        ChunkConfig {
            k: self.chunk_k,
            tree_depth: self.chunk_tree_depth,
            max_txs: self.chunk_max_txs,
        }
    }

    pub fn batch(&self) -> BatchConfig {
        BatchConfig {
            k: self.batch_k,
            num_chunks: self.batch_num_chunks,
            chunk: self.chunk(),
        }
    }

    pub fn bundle(&self) -> BundleConfig {
        BundleConfig {
            k: self.bundle_k,
            num_batches: self.bundle_num_batches,
            batch: self.batch(),
        }
    }

    /// The circuit announced for a task type (1 chunk, 2 batch, 3 bundle).
    pub fn spec_for(&self, task_type: u8) -> Option<CircuitSpec> {
        match task_type {
            1 => Some(CircuitSpec::Chunk {
                config: self.chunk(),
            }),
            2 => Some(CircuitSpec::Batch {
                config: self.batch(),
            }),
            3 => Some(CircuitSpec::Bundle {
                config: self.bundle(),
            }),
            _ => None,
        }
    }
}

/// The coordinator this node works for.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CoordinatorSection {
    /// Base URL, without `/coordinator/v1`.
    pub base_url: String,
    /// Other replicas of the same coordinator (sharing its database), tried in order after
    /// `base_url` when a call cannot reach it or gets a transient error.
    pub failover_urls: Vec<String>,
    /// Pause between `get_task` polls when there is no work or after an error.
    pub poll_interval_ms: u64,
    /// Random extra pause, uniform in `0..=poll_jitter_ms`, added to each poll pause.
    pub poll_jitter_ms: u64,
    /// Timeout of one HTTP request.
    pub request_timeout_sec: u64,
    /// Largest reply read from the coordinator, in MiB; a larger one is refused unread.
    pub max_reply_mib: u64,
    /// First delay of the exponential backoff while the coordinator is unreachable.
    pub retry_initial_ms: u64,
    /// Largest delay of that backoff.
    pub retry_max_ms: u64,
    /// Version sent in the login; `null` means this build's version.
    pub prover_version: Option<String>,
}

impl Default for CoordinatorSection {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8390".into(),
            failover_urls: Vec::new(),
            poll_interval_ms: 2000,
            poll_jitter_ms: 500,
            request_timeout_sec: 30,
            max_reply_mib: 64,
            retry_initial_ms: 500,
            retry_max_ms: 30_000,
            prover_version: None,
        }
    }
}

/// `/health` and `/metrics`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Listen address; port 0 picks a free port (logged at start).
    pub listen: String,
    /// Time a client has to send a request's headers, and the idle time allowed between requests
    /// on one connection, ms; slower or silent connections are closed.
    pub header_timeout_ms: u64,
    /// Open connections at most; further clients wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9391".into(),
            header_timeout_ms: 10_000,
            max_connections: 256,
        }
    }
}

impl MetricsSection {
    /// The limits of the `/health` and `/metrics` server.
    pub fn http_limits(&self) -> coordinator::serve::HttpLimits {
        coordinator::serve::HttpLimits {
            header_timeout_ms: self.header_timeout_ms,
            max_connections: self.max_connections,
            // Scrapes and health checks are quick; a stop should not wait for a stuck one.
            shutdown_grace_ms: 2_000,
            ..Default::default()
        }
    }
}

impl NodeConfig {
    /// Parses the file only (no environment, no validation): what `prove`/`verify`/`demo` use for
    /// the `prover` section.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = read_text(path)?;
        serde_json::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })
    }

    /// Reads the file, applies `PROVER_*` overrides from `env` (pass `std::env::vars()`), and
    /// validates: the configuration `prover run` uses.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = read_text(path)?;
        Self::from_json_str(&text, path, env)
    }

    /// As [`NodeConfig::load`], from text (`origin` names it in errors).
    pub fn from_json_str(
        text: &str,
        origin: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let parse_err = |source| ConfigError::Parse {
            path: origin.into(),
            source,
        };
        // Parse once as typed config so unknown keys and wrong types in the file are reported
        // against the file, before any environment override.
        let file: NodeConfig = serde_json::from_str(text).map_err(parse_err)?;
        let mut value = serde_json::to_value(&file).map_err(parse_err)?;
        apply_env(&mut value, env)?;
        let config: NodeConfig = serde_json::from_value(value).map_err(|e| ConfigError::Env {
            var: "PROVER_*".into(),
            reason: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Rejects configurations that cannot run.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &'static str, reason: String| Err(ConfigError::Invalid { key, reason });
        let n = &self.node;
        if n.name.trim().is_empty() {
            return bad("node.name", "must not be empty".into());
        }
        if !(1..=256).contains(&n.n_workers) {
            return bad(
                "node.n_workers",
                format!("{} is outside 1..=256", n.n_workers),
            );
        }
        if n.task_types.is_empty() {
            return bad("node.task_types", "must name at least one task type".into());
        }
        let mut seen = BTreeSet::new();
        for t in &n.task_types {
            if self.circuits.spec_for(*t).is_none() {
                return bad(
                    "node.task_types",
                    format!(
                        "unknown task type {t} (this prover proves 1 chunk, 2 batch, 3 bundle)"
                    ),
                );
            }
            if !seen.insert(*t) {
                return bad("node.task_types", format!("task type {t} is listed twice"));
            }
        }
        if n.max_attempts == 0 {
            return bad("node.max_attempts", "must be at least 1".into());
        }
        if n.engine == EngineChoice::Reference && n.backend == BackendChoice::Cuda {
            return bad(
                "node.backend",
                "cuda needs node.engine native (the reference engine proves on the CPU only)"
                    .into(),
            );
        }
        if let Some(devices) = &n.devices {
            if devices.is_empty() {
                return bad(
                    "node.devices",
                    "must name at least one device (null: every device)".into(),
                );
            }
            let mut seen = BTreeSet::new();
            if let Some(d) = devices.iter().find(|d| !seen.insert(**d)) {
                return bad("node.devices", format!("device {d} is listed twice"));
            }
            if n.backend == BackendChoice::Cpu || n.engine == EngineChoice::Reference {
                return bad(
                    "node.devices",
                    "names CUDA devices, but the node proves on the CPU (node.backend cpu or \
                     node.engine reference); remove it or set it to null"
                        .into(),
                );
            }
        }
        if !(n.provider_type == 1 || n.provider_type == 2) {
            return bad(
                "node.provider_type",
                format!("{} (expected 1 internal or 2 external)", n.provider_type),
            );
        }
        for (key, p) in [
            ("node.identity_dir", &n.identity_dir),
            ("node.db_path", &n.db_path),
            ("prover.params_dir", &self.prover.params_dir),
            ("prover.keys_dir", &self.prover.keys_dir),
        ] {
            if p.as_os_str().is_empty() {
                return bad(key, "must not be empty".into());
            }
        }
        let c = &self.coordinator;
        for (key, u) in std::iter::once(("coordinator.base_url", &c.base_url)).chain(
            c.failover_urls
                .iter()
                .map(|u| ("coordinator.failover_urls", u)),
        ) {
            match reqwest::Url::parse(u) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
                Ok(_) => return bad(key, format!("{u:?} is not an http(s) URL with a host")),
                Err(e) => return bad(key, format!("{u:?}: {e}")),
            }
        }
        if c.poll_interval_ms == 0 {
            return bad("coordinator.poll_interval_ms", "must be > 0".into());
        }
        if c.request_timeout_sec == 0 {
            return bad("coordinator.request_timeout_sec", "must be > 0".into());
        }
        if !(1..=MAX_REPLY_MIB).contains(&c.max_reply_mib) {
            return bad(
                "coordinator.max_reply_mib",
                format!("{} is not in 1..={MAX_REPLY_MIB}", c.max_reply_mib),
            );
        }
        if c.retry_initial_ms == 0 {
            return bad("coordinator.retry_initial_ms", "must be > 0".into());
        }
        if c.retry_max_ms < c.retry_initial_ms {
            return bad(
                "coordinator.retry_max_ms",
                format!(
                    "{} is below retry_initial_ms {}",
                    c.retry_max_ms, c.retry_initial_ms
                ),
            );
        }
        if let Some(v) = &c.prover_version {
            if v.trim().is_empty() {
                return bad(
                    "coordinator.prover_version",
                    "must not be empty (use null for this build's version)".into(),
                );
            }
        }
        if let Err(e) = self.metrics.http_limits().validate() {
            return bad("metrics", e);
        }
        if let Err(e) = self.metrics.listen.parse::<SocketAddr>() {
            return bad(
                "metrics.listen",
                format!("{:?} is not an address:port: {e}", self.metrics.listen),
            );
        }
        if let Err(e) = prover_core::rollup::check_config(&self.circuits.chunk()) {
            return bad("circuits.chunk_*", e.to_string());
        }
        let max = prover_core::core::MAX_CHUNKS_PER_BATCH;
        if !(1..=max).contains(&self.circuits.batch_num_chunks) {
            return bad(
                "circuits.batch_num_chunks",
                format!("{} is outside 1..={max}", self.circuits.batch_num_chunks),
            );
        }
        let max = prover_core::core::MAX_BATCHES_PER_BUNDLE;
        if !(1..=max).contains(&self.circuits.bundle_num_batches) {
            return bad(
                "circuits.bundle_num_batches",
                format!("{} is outside 1..={max}", self.circuits.bundle_num_batches),
            );
        }
        Ok(())
    }

    /// The proving core's configuration.
    pub fn core_config(&self) -> prover_core::CoreConfig {
        prover_core::CoreConfig {
            params_dir: self.prover.params_dir.clone(),
            keys_dir: self.prover.keys_dir.clone(),
            engine: self.node.engine,
            backend: self.node.backend,
            // The node verifies only the chunk proofs of its batch tasks, with the keys it proves
            // that batch's chunk circuit with.
            verify_allow: Vec::new(),
            keys_disk_reserve_mib: self.prover.keys_disk_reserve_mib,
        }
    }

    /// The login `prover_version`: the configured one, else this build's.
    pub fn prover_version(&self) -> String {
        self.coordinator
            .prover_version
            .clone()
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string())
    }
}

fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.into(),
        source,
    })
}

/// Every `PROVER_<SECTION>_<KEY>` variable the configuration knows, with its section and key.
pub fn env_keys() -> Vec<(String, &'static str, String)> {
    let value = match serde_json::to_value(full_default()) {
        Ok(v) => v,
        Err(_) => return vec![],
    };
    let mut out = vec![];
    if let serde_json::Value::Object(sections) = value {
        for (section, body) in sections {
            let section: &'static str = match section.as_str() {
                "prover" => "prover",
                "node" => "node",
                "circuits" => "circuits",
                "coordinator" => "coordinator",
                "metrics" => "metrics",
                _ => continue,
            };
            if let serde_json::Value::Object(keys) = body {
                for key in keys.keys() {
                    let var = format!("{ENV_PREFIX}{}_{}", section, key).to_ascii_uppercase();
                    out.push((var, section, key.clone()));
                }
            }
        }
    }
    out
}

fn full_default() -> NodeConfig {
    NodeConfig {
        prover: ProverSection::default(),
        node: NodeSection::default(),
        circuits: CircuitsSection::default(),
        coordinator: CoordinatorSection::default(),
        metrics: MetricsSection::default(),
    }
}

fn apply_env(
    value: &mut serde_json::Value,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let known = env_keys();
    let defaults = serde_json::to_value(full_default()).map_err(|e| ConfigError::Env {
        var: "PROVER_*".into(),
        reason: e.to_string(),
    })?;
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    // Aliases first, so the canonical variables win.
    vars.sort_by_key(|(k, _)| !ENV_ALIASES.iter().any(|(a, _, _)| a == k));
    for (var, raw) in vars {
        let target = ENV_ALIASES
            .iter()
            .find(|(a, _, _)| *a == var)
            .map(|(_, s, k)| (*s, k.to_string()))
            .or_else(|| {
                known
                    .iter()
                    .find(|(v, _, _)| *v == var)
                    .map(|(_, s, k)| (*s, k.clone()))
            });
        let Some((section, key)) = target else {
            return Err(ConfigError::Env {
                var,
                reason: format!(
                    "names no configuration key (known: {})",
                    known
                        .iter()
                        .map(|(v, _, _)| v.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        };
        let template = &defaults[section][key.as_str()];
        let parsed = if OPTIONAL_INTEGER_KEYS.contains(&(section, key.as_str())) {
            parse_optional_integer(&raw)
        } else if OPTIONAL_LIST_KEYS.contains(&(section, key.as_str())) {
            if raw.trim() == "null" {
                Ok(serde_json::Value::Null)
            } else {
                parse_env_value(&serde_json::Value::Array(vec![]), &raw)
            }
        } else {
            parse_env_value(template, &raw)
        }
        .map_err(|reason| ConfigError::Env {
            var: var.clone(),
            reason: format!("{raw:?}: {reason}"),
        })?;
        // Check the value against the key's type now, so an error names this variable.
        let mut probe = defaults.clone();
        probe[section][key.as_str()] = parsed.clone();
        if let Err(e) = serde_json::from_value::<NodeConfig>(probe) {
            return Err(ConfigError::Env {
                var,
                reason: format!("{raw:?}: {e}"),
            });
        }
        if let Some(obj) = value
            .get_mut(section)
            .and_then(|s| s.as_object_mut())
            .map(|s| s as &mut serde_json::Map<String, serde_json::Value>)
        {
            obj.insert(key, parsed);
        }
    }
    Ok(())
}

/// Parses an optional integer: `null` or an unsigned integer.
fn parse_optional_integer(raw: &str) -> Result<serde_json::Value, String> {
    let raw_t = raw.trim();
    if raw_t == "null" {
        return Ok(serde_json::Value::Null);
    }
    raw_t
        .parse::<u64>()
        .map(serde_json::Value::from)
        .map_err(|e| format!("expected an unsigned integer or null ({e})"))
}

/// Parses an environment value with the type of the key's default value.
fn parse_env_value(template: &serde_json::Value, raw: &str) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    let raw_t = raw.trim();
    match template {
        Value::Number(n) if n.is_u64() => raw_t
            .parse::<u64>()
            .map(Value::from)
            .map_err(|e| format!("expected an unsigned integer ({e})")),
        Value::Number(_) => raw_t
            .parse::<f64>()
            .map(Value::from)
            .map_err(|e| format!("expected a number ({e})")),
        Value::Bool(_) => raw_t
            .parse::<bool>()
            .map(Value::from)
            .map_err(|_| "expected true or false".to_string()),
        Value::Array(_) => {
            let items = raw_t.trim_start_matches('[').trim_end_matches(']');
            items
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<u64>()
                        .map(Value::from)
                        .map_err(|e| format!("expected a comma-separated list of integers ({e})"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        // Strings, paths, enums and optional strings (`null` default).
        Value::Null if raw_t == "null" => Ok(Value::Null),
        _ => Ok(Value::String(raw.to_string())),
    }
}
