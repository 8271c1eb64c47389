//! The coordinator's configuration (`coordinator serve --config coordinator.json`).

use std::path::{Path, PathBuf};

use prover_core::wire::{BatchConfig, BundleConfig, ChunkConfig};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// Token lifetimes and the JWT secret.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 secret for challenge and login tokens.
    pub secret: String,
    /// Lifetime of a challenge token, seconds.
    #[serde(default = "default_expire_sec")]
    pub challenge_expire_sec: u64,
    /// Lifetime of a login token, seconds.
    #[serde(default = "default_expire_sec")]
    pub login_expire_sec: u64,
}

fn default_expire_sec() -> u64 {
    3600
}

/// The development genesis of the coordinator's account state (used when the store is empty).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GenesisConfig {
    /// Accounts `0..accounts` are created.
    pub accounts: u64,
    /// Initial balance of each account.
    pub balance: u64,
}

impl Default for GenesisConfig {
    fn default() -> Self {
        Self {
            accounts: 8,
            balance: 1_000_000,
        }
    }
}

/// Configuration of a coordinator.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// Address to listen on, e.g. `127.0.0.1:8390` (port 0 picks a free port).
    pub listen: String,
    /// The redb file holding all state (when `database_url` is not set).
    pub db_path: PathBuf,
    /// A PostgreSQL URL (`postgresql://user@host:port/db`): state is kept there instead of
    /// `db_path`, and several coordinator replicas can share it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// Connections to PostgreSQL this process keeps at most (with `database_url`). About twice
    /// the database server's cores over all the replicas together: more make the server's
    /// processes wait for cores while holding locks, and the tail grows.
    #[serde(default = "default_pool_size")]
    pub database_pool_size: usize,
    /// Directory of `kzg_bn254_{k}.srs` files (for verification and vk digests).
    pub params_dir: PathBuf,
    /// Proving/verifying key cache directory.
    pub keys_dir: PathBuf,
    pub auth: AuthConfig,
    /// Oldest prover version accepted at login (numeric dotted compare, a leading `v` and any
    /// `-suffix` ignored); empty accepts every version.
    #[serde(default)]
    pub min_prover_version: String,
    /// The chunk circuit of every chunk task this coordinator creates.
    pub chunk: ChunkConfig,
    /// The batch circuit; `null` (or `num_chunks` 0) disables batch creation.
    #[serde(default)]
    pub batch: Option<BatchConfig>,
    /// The bundle circuit; `null` (or `num_batches` 0) disables bundle creation. Needs batches;
    /// with `settlement`, each verified bundle is settled on L1, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleConfig>,
    /// Assignment timeout of chunk tasks, seconds.
    #[serde(default = "default_chunk_timeout")]
    pub chunk_timeout_sec: u64,
    /// Assignment timeout of batch tasks, seconds.
    #[serde(default = "default_batch_timeout")]
    pub batch_timeout_sec: u64,
    /// Assignment timeout of bundle tasks, seconds.
    #[serde(default = "default_bundle_timeout")]
    pub bundle_timeout_sec: u64,
    /// Failed or timed-out assignments after which a task is failed.
    #[serde(default = "default_session_attempts")]
    pub session_attempts: u32,
    /// Invalid proofs from one public key after which the key is blocked.
    #[serde(default = "default_max_invalid")]
    pub max_invalid_proofs: u32,
    /// A prover counts as "available" for the failed-prover rule if it asked for work this
    /// recently, seconds.
    #[serde(default = "default_prover_active")]
    pub prover_active_sec: u64,
    /// Largest accepted request body, bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Bytes of `submit_proof` bodies over the small limit read at once, all provers together;
    /// a submission that would go past it is told to retry later. At least `max_body_bytes`.
    #[serde(default = "default_large_body_budget")]
    pub large_body_budget_bytes: usize,
    /// Logins accepted from one client address (an IPv4 address, an IPv6 /64) a minute, in a
    /// burst or spread; past it a login is told to retry later. 0: no limit (behind a reverse
    /// proxy, where every client has the proxy's address).
    #[serde(default = "default_logins_per_minute")]
    pub logins_per_minute_per_client: u32,
    /// Account state created when the store is empty.
    #[serde(default)]
    pub genesis: GenesisConfig,
    /// Bearer token of the `/admin/v1` routes; empty disables them.
    #[serde(default)]
    pub admin_token: String,
    /// Timeouts, connection cap and shutdown grace of the HTTP server.
    #[serde(default)]
    pub http: crate::serve::HttpLimits,
    /// L1 settlement of verified items on the rollup contract (off when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement: Option<crate::settle::SettlementConfig>,
}

fn default_pool_size() -> usize {
    crate::store::pg::DEFAULT_POOL_SIZE
}
fn default_chunk_timeout() -> u64 {
    180
}
fn default_batch_timeout() -> u64 {
    600
}
fn default_bundle_timeout() -> u64 {
    900
}
fn default_session_attempts() -> u32 {
    5
}
fn default_max_invalid() -> u32 {
    3
}
fn default_prover_active() -> u64 {
    120
}
fn default_logins_per_minute() -> u32 {
    60
}
fn default_max_body() -> usize {
    64 << 20
}
/// The largest `database_pool_size` (PostgreSQL's own default `max_connections` is 100).
pub const MAX_POOL_SIZE: usize = 1000;

/// The largest `large_body_budget_bytes` (the budget is counted in KiB in a `u32`).
pub const MAX_LARGE_BODY_BUDGET: usize = (u32::MAX as usize) << 10;

fn default_large_body_budget() -> usize {
    256 << 20
}

/// 32 random bytes as hex.
pub fn random_secret() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

impl CoordinatorConfig {
    /// A loopback coordinator with a random secret and admin token, port 0, its store in `dir`.
    pub fn local(
        dir: &Path,
        params_dir: impl Into<PathBuf>,
        keys_dir: impl Into<PathBuf>,
        chunk: ChunkConfig,
        batch: Option<BatchConfig>,
    ) -> Self {
        Self {
            listen: "127.0.0.1:0".into(),
            db_path: dir.join("coordinator.redb"),
            database_url: None,
            database_pool_size: default_pool_size(),
            params_dir: params_dir.into(),
            keys_dir: keys_dir.into(),
            auth: AuthConfig {
                secret: random_secret(),
                challenge_expire_sec: default_expire_sec(),
                login_expire_sec: default_expire_sec(),
            },
            min_prover_version: String::new(),
            chunk,
            batch,
            bundle: None,
            chunk_timeout_sec: default_chunk_timeout(),
            batch_timeout_sec: default_batch_timeout(),
            bundle_timeout_sec: default_bundle_timeout(),
            session_attempts: default_session_attempts(),
            max_invalid_proofs: default_max_invalid(),
            prover_active_sec: default_prover_active(),
            max_body_bytes: default_max_body(),
            large_body_budget_bytes: default_large_body_budget(),
            logins_per_minute_per_client: default_logins_per_minute(),
            genesis: GenesisConfig::default(),
            admin_token: random_secret(),
            http: crate::serve::HttpLimits::default(),
            settlement: None,
        }
    }

    /// The batch configuration if batch creation is enabled.
    pub fn batch_enabled(&self) -> Option<BatchConfig> {
        self.batch.filter(|b| b.num_chunks > 0)
    }

    /// The bundle configuration if bundle creation is enabled.
    pub fn bundle_enabled(&self) -> Option<BundleConfig> {
        self.bundle.filter(|b| b.num_batches > 0)
    }

    /// Reads a JSON config file (unknown keys are an error).
    pub fn from_file(path: &Path) -> Result<Self, crate::CoordinatorError> {
        let text = std::fs::read_to_string(path).map_err(|source| crate::CoordinatorError::Io {
            what: format!("reading config {}", path.display()),
            source,
        })?;
        serde_json::from_str(&text)
            .map_err(|e| crate::CoordinatorError::Config(format!("{}: {e}", path.display())))
    }

    /// Rejects configurations that cannot work, before anything starts.
    pub fn validate(&self) -> Result<(), crate::CoordinatorError> {
        let bad = |m: String| Err(crate::CoordinatorError::Config(m));
        const HOW: &str = "make one with `openssl rand -hex 32`";
        let placeholder = |v: &str| v.to_ascii_uppercase().contains("CHANGE-ME");
        if placeholder(&self.auth.secret) {
            return bad(format!(
                "auth.secret is the example's placeholder; set a random secret ({HOW})"
            ));
        }
        if self.auth.secret.len() < 16 {
            return bad(format!(
                "auth.secret must be at least 16 characters ({HOW})"
            ));
        }
        if placeholder(&self.admin_token) {
            return bad(format!(
                "admin_token is the example's placeholder; set a random token ({HOW}), or \"\" \
                 to disable the admin API"
            ));
        }
        if !self.admin_token.is_empty() && self.admin_token.len() < 16 {
            return bad(format!(
                "admin_token must be at least 16 characters ({HOW}), or \"\" to disable the \
                 admin API"
            ));
        }
        if self.large_body_budget_bytes < self.max_body_bytes
            || self.large_body_budget_bytes > MAX_LARGE_BODY_BUDGET
        {
            return bad(format!(
                "large_body_budget_bytes {} must be at least max_body_bytes ({}) and at most {}",
                self.large_body_budget_bytes, self.max_body_bytes, MAX_LARGE_BODY_BUDGET
            ));
        }
        if crate::auth::version_numbers(&self.min_prover_version).is_none() {
            return bad(format!(
                "min_prover_version {:?}: a version number does not fit in 64 bits",
                self.min_prover_version
            ));
        }
        if let Err(e) = prover_core::rollup::check_config(&self.chunk) {
            return bad(format!("chunk: {e}"));
        }
        if let Some(b) = self.batch_enabled() {
            if b.chunk != self.chunk {
                return bad("batch.chunk must equal chunk".into());
            }
        }
        if let Some(b) = self.bundle_enabled() {
            if self.batch_enabled() != Some(b.batch) {
                return bad("bundle.batch must equal batch (and batches must be enabled)".into());
            }
            if let Err(e) =
                prover_core::core::check_spec(&prover_core::wire::CircuitSpec::Bundle { config: b })
            {
                return bad(format!("bundle: {e}"));
            }
        }
        if self.max_invalid_proofs == 0 {
            return bad("max_invalid_proofs must be at least 1".into());
        }
        if !(1..=MAX_POOL_SIZE).contains(&self.database_pool_size) {
            return bad(format!(
                "database_pool_size {} must be in 1..={MAX_POOL_SIZE}",
                self.database_pool_size
            ));
        }
        if self.session_attempts == 0 {
            return bad("session_attempts must be at least 1".into());
        }
        if self.chunk_timeout_sec == 0
            || self.batch_timeout_sec == 0
            || self.bundle_timeout_sec == 0
        {
            return bad("timeouts must be at least 1 second".into());
        }
        if let Err(e) = self.http.validate() {
            return bad(e);
        }
        if let Some(Err(e)) = self.settlement.as_ref().map(|s| s.validate()) {
            return bad(e);
        }
        if self.genesis.accounts == 0 || (self.genesis.accounts - 1) >> self.chunk.tree_depth != 0 {
            return bad(format!(
                "genesis.accounts {} must be in 1..=2^tree_depth",
                self.genesis.accounts
            ));
        }
        Ok(())
    }
}
