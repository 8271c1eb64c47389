//! The coordinator of the prover node: the Scroll coordinator API v1 family (challenge, login,
//! get_task, submit_proof) over HTTP, a redb store, the scheduler, the proof verifier, a task
//! source (transfers → chunk tasks against the coordinator's own account state, and the chunk →
//! batch pipeline), Prometheus metrics and an admin API.
//!
//! `Coordinator::start` runs it inside any tokio runtime (the `coordinator` binary, `prover demo`,
//! tests); `RunningCoordinator::shutdown` stops it and releases the store file.
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
mod error;
mod http;
pub mod l1;
mod login_limit;
pub mod metrics;
pub mod scheduler;
pub mod serve;
pub mod settle;
pub mod store;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prover_core::rollup::{Account, RollupState};
use prover_core::wire::{CircuitSpec, Transfer};
use prover_core::ProvingCore;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use crate::auth::AcceptedVks;
pub use crate::config::{random_secret, AuthConfig, CoordinatorConfig, GenesisConfig};
pub use crate::error::CoordinatorError;
pub use crate::store::{Policy, Pruned, RequeueError, StatusReport, TaskRow, TaskState};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Body of `POST /admin/v1/enqueue`: either explicit transfers or `random` transfers from `seed`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct EnqueueRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfers: Option<Vec<Transfer>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// `data` of the enqueue reply.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnqueueReply {
    pub task_ids: Vec<String>,
}

/// Body of `POST /admin/v1/block` and `/admin/v1/unblock`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BlockRequest {
    pub public_key: String,
    #[serde(default)]
    pub reason: String,
}

/// Body of `POST /admin/v1/requeue`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RequeueRequest {
    pub task_id: String,
}

/// Body of `POST /admin/v1/prune`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PruneRequest {
    /// Remove finished tasks last changed more than this many seconds ago.
    pub older_than_sec: u64,
}

/// Shared state of a running coordinator.
pub(crate) struct App {
    pub config: CoordinatorConfig,
    pub policy: Policy,
    pub core: Arc<ProvingCore>,
    pub store: Arc<store::Store>,
    pub tokens: auth::Tokens,
    pub vks: AcceptedVks,
    pub metrics: metrics::Metrics,
    /// The rollup state after every enqueued chunk (persisted in the store).
    pub rollup: Mutex<Chain>,
    /// Assignments whose submission is being processed: a concurrent duplicate is turned away
    /// before it costs a verification.
    pub submitting: Mutex<std::collections::HashSet<String>>,
    /// Bounds concurrent proof verifications (CPU-bound) to the machine's parallelism.
    pub verify_slots: tokio::sync::Semaphore,
    /// Keys whose `submit_proof` body over the small limit is being read: one at a time a key.
    pub large_bodies: Mutex<std::collections::HashSet<String>>,
    /// KiB of such bodies that may be read at once (`large_body_budget_bytes`).
    pub large_body_budget: Arc<tokio::sync::Semaphore>,
    /// Logins per client address (`logins_per_minute_per_client`).
    pub login_limit: login_limit::LoginLimit,
}

/// The rollup state after the last enqueued chunk, and that chunk's successor's number.
pub(crate) struct Chain {
    pub state: RollupState,
    pub next_seq: u64,
}

impl Chain {
    /// From the store; the genesis state (written to it) when the store has no accounts.
    fn load(store: &store::Store, config: &CoordinatorConfig) -> Result<Self, CoordinatorError> {
        // Twice at most: an empty store gets the genesis accounts unless another replica's
        // first enqueue came first; then its accounts are read back.
        for _ in 0..2 {
            // The sequence number first: an enqueue committed between the two reads leaves the
            // accounts newer than the number, and the next enqueue is refused as stale, never
            // built on a mismatched pair.
            let next_seq = store.chunk_seq()?;
            let saved = store.load_accounts()?;
            let depth = config.chunk.tree_depth;
            if saved.is_empty() {
                let state =
                    RollupState::genesis(depth, config.genesis.accounts, config.genesis.balance)
                        .map_err(|e| CoordinatorError::Config(format!("genesis: {e}")))?;
                let accounts: Vec<(u64, Account)> =
                    state.accounts().map(|(i, a)| (*i, *a)).collect();
                if store.save_genesis(&accounts)? {
                    return Ok(Self { state, next_seq: 0 });
                }
                continue;
            }
            let mut state = RollupState::new(depth)
                .map_err(|e| CoordinatorError::Config(format!("account state: {e}")))?;
            for (i, a) in saved {
                state
                    .insert(i, a)
                    .map_err(|e| CoordinatorError::Config(format!("stored account {i}: {e}")))?;
            }
            return Ok(Self { state, next_seq });
        }
        Err(CoordinatorError::store(
            "load the account state",
            "the chain has chunks but the store has no accounts",
        ))
    }
}

/// Runs a blocking closure on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CoordinatorError> + Send + 'static,
) -> Result<T, CoordinatorError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CoordinatorError::Join(e.to_string()))?
}

impl App {
    /// `status` (every task) or the summary (`/metrics`: counts only), with the L1 view when
    /// settlement is configured.
    fn report(&self, full: bool) -> Result<StatusReport, CoordinatorError> {
        let mut report = if full {
            self.store.status()?
        } else {
            self.store.summary()?
        };
        if self.config.settlement.is_some() {
            report.l1 = Some(settle::summary(&self.store)?);
        }
        Ok(report)
    }

    fn enqueue(&self, transfers: Vec<Transfer>) -> Result<Vec<String>, CoordinatorError> {
        if transfers.is_empty() {
            return Err(CoordinatorError::InvalidTransfers("no transfers".into()));
        }
        let mut chain = self.rollup.lock().unwrap_or_else(|p| p.into_inner());
        // Replicas sharing a database each hold the state in memory: a stale one reloads it
        // and builds the chunks again (a few tries: each loses only to another enqueue).
        for _ in 0..8 {
            let mut next = chain.state.clone();
            let max = self.config.chunk.max_txs;
            let mut chunks = Vec::new();
            let mut touched = BTreeSet::new();
            let mut invalid = None;
            for (i, part) in transfers.chunks(max).enumerate() {
                match next.apply_chunk(self.config.chunk, part) {
                    Ok(data) => chunks.push(data),
                    Err(e) => {
                        invalid = Some(CoordinatorError::InvalidTransfers(format!(
                            "transfers {}..{} (chunk {i}): {e}",
                            i * max,
                            i * max + part.len()
                        )));
                        break;
                    }
                }
                touched.extend(part.iter().flat_map(|t| [t.from, t.to]));
            }
            if let Some(e) = invalid {
                // Invalid against this state; perhaps valid against a newer one.
                if self.store.chunk_seq()? == chain.next_seq {
                    return Err(e);
                }
                *chain = Chain::load(&self.store, &self.config)?;
                continue;
            }
            let accounts: Vec<(u64, Account)> = touched
                .into_iter()
                .filter_map(|i| next.account(i).map(|a| (i, *a)))
                .collect();
            match self
                .store
                .enqueue_chunks_at(chain.next_seq, &chunks, &accounts, now_ms())?
            {
                Ok(ids) => {
                    chain.next_seq += ids.len() as u64;
                    chain.state = next;
                    return Ok(ids);
                }
                Err(stale) => {
                    tracing::info!("{stale}");
                    *chain = Chain::load(&self.store, &self.config)?;
                }
            }
        }
        Err(CoordinatorError::store(
            "enqueue",
            "other replicas kept enqueueing first; try again",
        ))
    }

    fn random_transfers(&self, n: usize, seed: u64) -> Vec<Transfer> {
        let chain = self.rollup.lock().unwrap_or_else(|p| p.into_inner());
        let mut sim: HashMap<u64, (u64, u64)> = chain
            .state
            .accounts()
            .map(|(i, a)| (*i, (a.balance, a.nonce)))
            .collect();
        drop(chain);
        let indices: Vec<u64> = {
            let mut v: Vec<u64> = sim.keys().copied().collect();
            v.sort_unstable();
            v
        };
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        let mut out = Vec::with_capacity(n);
        let mut tries = 0usize;
        while out.len() < n && tries < n.saturating_mul(100).saturating_add(100) {
            tries += 1;
            let from = indices[rng.gen_range(0..indices.len())];
            let to = indices[rng.gen_range(0..indices.len())];
            let (balance, nonce) = sim[&from];
            if balance == 0 {
                continue;
            }
            let amount = rng.gen_range(1..=balance.min(999));
            let to_balance = sim[&to].0;
            if from != to && to_balance.checked_add(amount).is_none() {
                continue;
            }
            sim.insert(from, (balance - amount, nonce + 1));
            let (tb, tn) = sim[&to];
            sim.insert(to, (tb + amount, tn));
            out.push(Transfer {
                from,
                to,
                amount,
                nonce,
            });
        }
        out
    }
}

/// The state root the configured genesis accounts give (where the rollup contract starts).
pub fn genesis_root(
    config: &CoordinatorConfig,
) -> Result<alloy::primitives::B256, CoordinatorError> {
    let state = RollupState::genesis(
        config.chunk.tree_depth,
        config.genesis.accounts,
        config.genesis.balance,
    )
    .map_err(|e| CoordinatorError::Config(format!("genesis: {e}")))?;
    Ok(alloy::primitives::B256::from(prover_core::evm::fr_be(
        &state.root(),
    )))
}

/// Entry point: see [`Coordinator::start`].
pub struct Coordinator;

/// A coordinator serving HTTP in the background.
pub struct RunningCoordinator {
    app: Arc<App>,
    addr: SocketAddr,
    cancel: CancellationToken,
    server: JoinHandle<()>,
    sweeper: JoinHandle<()>,
    settler: Option<JoinHandle<()>>,
}

impl Coordinator {
    /// Validates the configuration, opens the store (restoring tasks, assignments and the account
    /// state), computes the verifying-key digests of its circuits (key generation on first use; the
    /// key cache makes it fast afterwards), binds the listener and starts serving.
    pub async fn start(
        config: CoordinatorConfig,
        core: Arc<ProvingCore>,
    ) -> Result<RunningCoordinator, CoordinatorError> {
        config.validate()?;
        // The settlement key is read now so that a missing or malformed key stops the start.
        if let Some(settlement) = &config.settlement {
            settlement.signer()?;
        }
        let store_config = config.clone();
        let (store, rollup) = blocking(move || {
            let store = store::Store::from_config(&store_config)?;
            let chain = Chain::load(&store, &store_config)?;
            Ok((store, chain))
        })
        .await?;
        let chunk_spec = CircuitSpec::Chunk {
            config: config.chunk,
        };
        let batch_spec = config
            .batch_enabled()
            .map(|config| CircuitSpec::Batch { config });
        let bundle_spec = config
            .bundle_enabled()
            .map(|config| CircuitSpec::Bundle { config });
        let vk_core = core.clone();
        let vks = blocking(move || {
            let chunk = vk_core.vk_digest(&chunk_spec)?;
            let batch = match batch_spec {
                Some(spec) => Some(vk_core.vk_digest(&spec)?),
                None => None,
            };
            let bundle = match bundle_spec {
                Some(spec) => Some(vk_core.vk_digest(&spec)?),
                None => None,
            };
            Ok(AcceptedVks {
                chunk,
                batch,
                bundle,
            })
        })
        .await?;
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .map_err(|source| CoordinatorError::Io {
                what: format!("binding {}", config.listen),
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| CoordinatorError::Io {
                what: "reading the bound address".into(),
                source,
            })?;
        let kib = config.large_body_budget_bytes >> 10;
        let login_limit = login_limit::LoginLimit::new(config.logins_per_minute_per_client);
        let app = Arc::new(App {
            policy: Policy::from_config(&config),
            tokens: auth::Tokens::new(&config.auth.secret),
            config,
            core,
            store: Arc::new(store),
            vks,
            metrics: metrics::Metrics::new(),
            rollup: Mutex::new(rollup),
            submitting: Mutex::new(Default::default()),
            verify_slots: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            large_bodies: Mutex::new(Default::default()),
            large_body_budget: Arc::new(tokio::sync::Semaphore::new(kib)),
            login_limit,
        });
        let cancel = CancellationToken::new();
        let router = http::router(app.clone());
        let server = serve::spawn(listener, router, app.config.http, cancel.clone());
        let sweeper = tokio::spawn(sweep_loop(app.clone(), cancel.clone()));
        let settler = app.config.settlement.clone().map(|cfg| {
            let (store, stats, cancel) = (
                app.store.clone(),
                app.metrics.settle.clone(),
                cancel.clone(),
            );
            tokio::spawn(async move {
                if let Err(e) = settle::Settler::run(store, cfg, stats, cancel).await {
                    tracing::error!(error = %e, "settlement stopped");
                }
            })
        });
        tracing::info!(%addr, "coordinator listening");
        Ok(RunningCoordinator {
            app,
            addr,
            cancel,
            server,
            sweeper,
            settler,
        })
    }
}

/// Returns timed-out assignments to the pool between `get_task` calls too.
async fn sweep_loop(app: Arc<App>, cancel: CancellationToken) {
    let p = &app.policy;
    let min_timeout = p
        .chunk_timeout_ms
        .min(p.batch_timeout_ms)
        .min(p.bundle_timeout_ms);
    let period = Duration::from_millis((min_timeout / 4).clamp(200, 10_000));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        app.login_limit.forget_idle();
        let a = app.clone();
        match blocking(move || a.store.sweep(&a.policy, now_ms())).await {
            Ok(effects) => {
                if effects.timed_out > 0 {
                    app.metrics.timeouts.inc_by(effects.timed_out);
                    tracing::info!(
                        timed_out = effects.timed_out,
                        failed = effects.tasks_failed,
                        "assignments timed out"
                    );
                }
            }
            Err(e) => tracing::error!("sweep failed: {e}"),
        }
    }
}

impl RunningCoordinator {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ip:port` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.app.config
    }

    /// The verifying-key digests a prover must present at login.
    pub fn accepted_vks(&self) -> AcceptedVks {
        self.app.vks.clone()
    }

    /// Turns transfers into chunk tasks (up to `chunk.max_txs` each) against the coordinator's
    /// account state; all or nothing. Returns the new task ids in chain order.
    pub async fn enqueue_transfers(
        &self,
        transfers: Vec<Transfer>,
    ) -> Result<Vec<String>, CoordinatorError> {
        let app = self.app.clone();
        blocking(move || app.enqueue(transfers)).await
    }

    /// `n_transfers` valid random transfers between the existing accounts, deterministic in `seed`
    /// and the current state, enqueued as chunk tasks.
    pub async fn enqueue_random(
        &self,
        n_transfers: usize,
        seed: u64,
    ) -> Result<Vec<String>, CoordinatorError> {
        let app = self.app.clone();
        blocking(move || {
            let transfers = app.random_transfers(n_transfers, seed);
            app.enqueue(transfers)
        })
        .await
    }

    pub async fn status(&self) -> Result<StatusReport, CoordinatorError> {
        let app = self.app.clone();
        blocking(move || app.report(true)).await
    }

    /// Blocks a prover's public key: its `get_task` calls get errcode 20002.
    pub async fn block(&self, public_key: &str) -> Result<(), CoordinatorError> {
        let app = self.app.clone();
        let key = public_key.to_string();
        blocking(move || app.store.block(&key, "blocked by the operator")).await
    }

    /// Unblocks a key and resets its invalid-proof count; returns whether it was blocked.
    pub async fn unblock(&self, public_key: &str) -> Result<bool, CoordinatorError> {
        let app = self.app.clone();
        let key = public_key.to_string();
        blocking(move || app.store.unblock(&key)).await
    }

    /// Puts a failed task back to pending (the operator's `requeue`).
    pub async fn requeue(
        &self,
        task_id: &str,
    ) -> Result<Result<(), RequeueError>, CoordinatorError> {
        let app = self.app.clone();
        let id = task_id.to_string();
        blocking(move || app.store.requeue(&id, now_ms())).await
    }

    /// Settlement item `index` (the verified bundles, in chain order).
    pub async fn settlement(
        &self,
        index: u64,
    ) -> Result<Option<crate::settle::Settlement>, CoordinatorError> {
        let app = self.app.clone();
        blocking(move || crate::settle::item(&app.store, index)).await
    }

    /// The stored proof of a verified task.
    pub async fn proof(
        &self,
        task_id: &str,
    ) -> Result<Option<prover_core::wire::ProofPayload>, CoordinatorError> {
        let app = self.app.clone();
        let id = task_id.to_string();
        blocking(move || app.store.proof(&id)).await
    }

    /// Stops accepting, lets requests in flight finish for at most `http.shutdown_grace_ms`
    /// (then drops their connections), stops the sweeper and closes the store, so the same file
    /// can be opened again at once. Blocking work (a verification) still holding the store at
    /// the deadline is logged and left: the store closes when it ends, and since every decision
    /// is one transaction, exiting the process then loses nothing.
    pub async fn shutdown(self) {
        let deadline = tokio::time::Instant::now() + self.app.config.http.shutdown_grace();
        self.cancel.cancel();
        if let Err(e) = self.server.await {
            tracing::error!("server task failed: {e}");
        }
        if let Err(e) = self.sweeper.await {
            tracing::error!("sweeper task failed: {e}");
        }
        if let Some(settler) = self.settler {
            if let Err(e) = settler.await {
                tracing::error!("settlement task failed: {e}");
            }
        }
        // Blocking work still running holds an `App` reference until it ends. Polled because
        // spawn_blocking work cannot be awaited from here once its request was dropped.
        while Arc::strong_count(&self.app) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let closed = Arc::strong_count(&self.app) == 1;
        drop(self.app);
        if closed {
            tracing::info!(addr = %self.addr, "coordinator stopped");
        } else {
            tracing::warn!(addr = %self.addr, "coordinator stopped; blocking work still running past the grace");
        }
    }
}
