//! The prover daemon (`prover run`): worker loops that log in to a coordinator, pull tasks, keep
//! them in a crash-safe redb stack, prove them, and deliver the proofs — plus `/health` and
//! `/metrics`.
//!
//! Entry points:
//! - [`run`]: start and wait until `shutdown` is cancelled and the workers drained;
//! - [`start`]: start and return a [`RunningDaemon`] (bound health address, `stop`, `wait`), with
//!   any [`TaskProver`] (the [`ProvingCore`] in production; tests may pass a stand-in).
//!
//! Files: [`client`] (coordinator HTTP API), [`stack`] (redb task stack), [`worker`] (one worker
//! loop), [`identity`] (key files), [`metrics`] and [`server`] (`/metrics`, `/health`).

pub mod client;
pub mod identity;
pub mod metrics;
pub mod server;
pub mod stack;
pub mod worker;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prover_core::disk::size;
use prover_core::wire::{CircuitSpec, ProofPayload, Task};
use prover_core::ProvingCore;
use rand_chacha::ChaCha20Rng;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{BackendChoice, ConfigError, EngineChoice, NodeConfig};
use client::{ClientError, CoordinatorClient, LoginInfo};
use identity::IdentityError;
use metrics::{Metrics, Total};
use server::{Shared, WorkerState, WorkerStatus};
use stack::{StackError, TaskStack};
use worker::{Worker, WorkerError, WorkerSettings};

/// A proving error, reported to the coordinator as failure_type 2.
pub type ProveError = Box<dyn std::error::Error + Send + Sync>;

/// What the daemon proves with. Blocking: called inside `spawn_blocking`.
pub trait TaskProver: Send + Sync + 'static {
    fn prove(&self, task: &Task, rng: ChaCha20Rng) -> Result<ProofPayload, ProveError>;
    /// The verifying-key digest announced in the login for `spec` (may generate keys).
    fn vk_digest(&self, spec: &CircuitSpec) -> Result<String, ProveError>;
    /// Called once at start, before any proof, with the compute backend the daemon selected for
    /// the native engine (the first device when there are several). The default ignores it.
    fn use_backend(&self, _backend: Arc<dyn gpu::ComputeBackend>) {}
    /// The device memory proving `spec` needs (`None`: no device is used, or unknown). May
    /// load or generate keys. The default says `None`.
    fn device_need(
        &self,
        _spec: &CircuitSpec,
    ) -> Result<Option<prover_core::native::memory::DeviceNeed>, ProveError> {
        Ok(None)
    }
    /// Proves on `backend` (a worker's own device) when given. The default ignores it.
    fn prove_on(
        &self,
        _backend: Option<&Arc<dyn gpu::ComputeBackend>>,
        task: &Task,
        rng: ChaCha20Rng,
    ) -> Result<ProofPayload, ProveError> {
        self.prove(task, rng)
    }
}

impl TaskProver for ProvingCore {
    fn prove(&self, task: &Task, rng: ChaCha20Rng) -> Result<ProofPayload, ProveError> {
        Ok(self.prove_task(task, rng)?)
    }
    fn vk_digest(&self, spec: &CircuitSpec) -> Result<String, ProveError> {
        Ok(ProvingCore::vk_digest(self, spec)?)
    }
    fn use_backend(&self, backend: Arc<dyn gpu::ComputeBackend>) {
        ProvingCore::use_backend(self, backend);
    }
    fn prove_on(
        &self,
        backend: Option<&Arc<dyn gpu::ComputeBackend>>,
        task: &Task,
        rng: ChaCha20Rng,
    ) -> Result<ProofPayload, ProveError> {
        Ok(self.prove_task_on(backend, task, rng)?)
    }
    fn device_need(
        &self,
        spec: &CircuitSpec,
    ) -> Result<Option<prover_core::native::memory::DeviceNeed>, ProveError> {
        if self.config().engine != prover_core::engine::EngineKind::Native {
            return Ok(None);
        }
        let keys = self.keys_for(spec)?;
        Ok(Some(prover_core::native::memory::device_need(&keys.pk)?))
    }
}

/// The daemon's prover: a task whose circuit is not one this node is configured for (its type
/// not in `node.task_types`, or a configuration other than the `circuits` section's) is refused
/// (reported as failure_type 2) before any key is loaded or generated for it, so a coordinator
/// cannot make the node build and keep keys for circuits it never announced. A task whose type
/// or payload does not decode goes on to the prover, which reports why.
struct Configured {
    inner: Arc<dyn TaskProver>,
    /// One circuit per task type the node proves.
    accepted: Vec<CircuitSpec>,
}

impl Configured {
    fn check(&self, task: &Task) -> Result<(), ProveError> {
        let Ok(kind) = task.kind() else {
            return Ok(());
        };
        let Some(want) = self.accepted.iter().find(|s| s.task_type() == kind) else {
            let types: Vec<u8> = self
                .accepted
                .iter()
                .map(|s| s.task_type().as_u8())
                .collect();
            return Err(format!(
                "task type {} ({}) is not one this node proves (node.task_types {types:?})",
                task.task_type,
                kind.name()
            )
            .into());
        };
        if let Ok(payload) = task.payload() {
            let got = payload.spec();
            if &got != want {
                let show = |s: &CircuitSpec| serde_json::to_string(s).unwrap_or_default();
                return Err(format!(
                    "the task's circuit {} is not the one this node is configured for, {} (its \
                     circuits section); it is not proved and no keys are made for it",
                    show(&got),
                    show(want)
                )
                .into());
            }
        }
        Ok(())
    }
}

impl TaskProver for Configured {
    fn prove(&self, task: &Task, rng: ChaCha20Rng) -> Result<ProofPayload, ProveError> {
        self.check(task)?;
        self.inner.prove(task, rng)
    }
    fn vk_digest(&self, spec: &CircuitSpec) -> Result<String, ProveError> {
        self.inner.vk_digest(spec)
    }
    fn use_backend(&self, backend: Arc<dyn gpu::ComputeBackend>) {
        self.inner.use_backend(backend)
    }
    fn device_need(
        &self,
        spec: &CircuitSpec,
    ) -> Result<Option<prover_core::native::memory::DeviceNeed>, ProveError> {
        self.inner.device_need(spec)
    }
    fn prove_on(
        &self,
        backend: Option<&Arc<dyn gpu::ComputeBackend>>,
        task: &Task,
        rng: ChaCha20Rng,
    ) -> Result<ProofPayload, ProveError> {
        self.check(task)?;
        self.inner.prove_on(backend, task, rng)
    }
}

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("compute backend {choice}: {source}")]
    Backend {
        choice: BackendChoice,
        source: gpu::BackendError,
    },
    #[error(
        "device {device} has {} free of {}, but this node needs {} there ({detail}): free memory \
         on the device, lower node.n_workers, or spread the workers over more devices \
         (node.devices)",
        size(*.free), size(*.total), size(*.needed)
    )]
    DeviceMemory {
        device: String,
        needed: u64,
        free: u64,
        total: u64,
        detail: String,
    },
    #[error("device memory: {0}")]
    DeviceInfo(String),
    #[error(transparent)]
    Stack(#[from] StackError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("verifying key of the {spec} circuit (login vks): {source}")]
    Keys { spec: String, source: ProveError },
    #[error("health/metrics server on {listen}: {source}")]
    Listen {
        listen: String,
        source: std::io::Error,
    },
    #[error("coordinator client: {0}")]
    Client(#[from] ClientError),
    #[error("worker {index}: {source}")]
    Worker { index: usize, source: WorkerError },
    #[error(
        "the task stack {stack} holds work of worker keys that are not among the {identity_dir} \
         keys of the configured workers: {entries}; restore their key files or raise node.n_workers \
         so that work is delivered"
    )]
    Orphans {
        stack: std::path::PathBuf,
        identity_dir: std::path::PathBuf,
        entries: String,
    },
    #[error("daemon task: {0}")]
    Join(String),
}

/// What the daemon did, returned after a graceful stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonSummary {
    pub workers: usize,
    pub backend: String,
    pub tasks_pulled: u64,
    pub tasks_proved: u64,
    pub tasks_failed: u64,
    pub submissions_accepted: u64,
    pub submissions_refused: u64,
    /// Entries left in the task stack (delivered or resumed at the next start).
    pub left_in_stack: u64,
}

/// A started daemon.
pub struct RunningDaemon {
    health_addr: SocketAddr,
    shutdown: CancellationToken,
    handle: JoinHandle<Result<DaemonSummary, DaemonError>>,
}

impl RunningDaemon {
    /// The bound address of `/health` and `/metrics`.
    pub fn health_addr(&self) -> SocketAddr {
        self.health_addr
    }

    /// Cancels the daemon's shutdown token and waits for the drain.
    pub async fn stop(self) -> Result<DaemonSummary, DaemonError> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the daemon stops (its token cancelled, or a fatal error).
    pub async fn wait(self) -> Result<DaemonSummary, DaemonError> {
        self.handle
            .await
            .map_err(|e| DaemonError::Join(e.to_string()))?
    }
}

/// Runs the daemon until `shutdown` is cancelled and the workers drained.
pub async fn run(
    config: NodeConfig,
    core: Arc<ProvingCore>,
    shutdown: CancellationToken,
) -> Result<DaemonSummary, DaemonError> {
    start(config, core, shutdown).await?.wait().await
}

/// Validates, opens the stack, loads identities and binds `/health` before returning; key
/// preparation (login vks), login and the workers run in the background.
pub async fn start(
    config: NodeConfig,
    prover: Arc<dyn TaskProver>,
    shutdown: CancellationToken,
) -> Result<RunningDaemon, DaemonError> {
    config.validate()?;
    let prover: Arc<dyn TaskProver> = Arc::new(Configured {
        inner: prover,
        accepted: config
            .node
            .task_types
            .iter()
            .filter_map(|&t| config.circuits.spec_for(t))
            .collect(),
    });
    let engine = config.node.engine;
    let choice = config.node.backend;
    let devices = config.node.devices.clone();
    let backends = blocking(move || select_backends(engine, choice, devices.as_deref())).await??;
    if let Some(first) = backends.first() {
        prover.use_backend(first.clone());
    }
    let device_names: Vec<String> = if backends.is_empty() {
        vec!["cpu".to_string()]
    } else {
        backends.iter().map(|b| b.name().to_string()).collect()
    };
    let backend_name = device_names.join(", ");
    // Worker i proves on device i mod len (the CPU for the reference engine).
    let worker_device = |i: usize| device_names[i % device_names.len()].clone();
    let worker_backend = |i: usize| {
        if backends.is_empty() {
            None
        } else {
            Some(backends[i % backends.len()].clone())
        }
    };
    if let Some(seed) = config.node.seed {
        tracing::warn!(
            seed,
            "node.seed is set: every proof uses the same fixed rng seed. This is for cross-checks \
             only: it BREAKS ZERO-KNOWLEDGE across tasks (proofs of related witnesses leak them); \
             never run a production node with a seed"
        );
    }
    warn_if_disk_short(&config);
    let db_path = config.node.db_path.clone();
    let stack = blocking(move || TaskStack::open(&db_path)).await??;
    let dir = config.node.identity_dir.clone();
    let n = config.node.n_workers;
    let identities = blocking(move || {
        (0..n)
            .map(|i| identity::load_or_create(&dir, i))
            .collect::<Result<Vec<_>, _>>()
    })
    .await??;
    // Work stored under a key that no configured worker owns would never be delivered: refuse to
    // start rather than strand it (fewer workers or another identity_dir than last time).
    let known: Vec<String> = identities.iter().map(|i| i.public_key.clone()).collect();
    let stack_check = stack.clone();
    let orphans: Vec<(String, String)> = blocking(move || stack_check.entries())
        .await??
        .into_iter()
        .filter(|(worker, _)| !known.contains(worker))
        .map(|(worker, entry)| (worker, entry.task.task_id))
        .collect();
    if !orphans.is_empty() {
        return Err(DaemonError::Orphans {
            stack: config.node.db_path.clone(),
            identity_dir: config.node.identity_dir.clone(),
            entries: orphans
                .iter()
                .map(|(w, t)| format!("task {t} of worker key {w}"))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let shared = Arc::new(Shared {
        backend: backend_name.clone(),
        workers: identities
            .iter()
            .map(|id| {
                Mutex::new(WorkerStatus {
                    index: id.index,
                    device: worker_device(id.index),
                    public_key: id.public_key.clone(),
                    state: WorkerState::Idle,
                    task_id: None,
                    attempt: None,
                })
            })
            .collect(),
        status: Mutex::new("starting"),
        metrics: Metrics::new(&device_names, engine.name(), watched_disks(&config)),
        stack: stack.clone(),
    });
    let server_stop = CancellationToken::new();
    let (health_addr, server) = server::serve(
        &config.metrics.listen,
        config.metrics.http_limits(),
        shared.clone(),
        server_stop.clone(),
    )
    .await
    .map_err(|source| DaemonError::Listen {
        listen: config.metrics.listen.clone(),
        source,
    })?;
    tracing::info!(%health_addr, backend = %backend_name, engine = %engine, workers = n, stack = %stack.path().display(), "health and metrics listening");
    let token = shutdown.clone();
    let worker_backends: Vec<Option<Arc<dyn gpu::ComputeBackend>>> = identities
        .iter()
        .map(|id| worker_backend(id.index))
        .collect();
    let handle = tokio::spawn(async move {
        let result = supervise(
            config,
            prover,
            identities,
            worker_backends,
            stack,
            shared.clone(),
            token,
        )
        .await;
        shared.set_status("stopping");
        server_stop.cancel();
        if let Err(e) = server.await {
            tracing::warn!(error = %e, "health server task failed");
        }
        result
    });
    Ok(RunningDaemon {
        health_addr,
        shutdown,
        handle,
    })
}

async fn supervise(
    config: NodeConfig,
    prover: Arc<dyn TaskProver>,
    identities: Vec<identity::Identity>,
    worker_backends: Vec<Option<Arc<dyn gpu::ComputeBackend>>>,
    stack: TaskStack,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> Result<DaemonSummary, DaemonError> {
    // Login vks: the verifying keys of the configured circuits (keygen on first start, cached).
    let mut vks = vec![];
    for t in &config.node.task_types {
        let Some(spec) = config.circuits.spec_for(*t) else {
            continue;
        };
        let p = prover.clone();
        let name = format!("{} ({})", spec.task_type(), spec_k(&spec));
        tracing::info!(circuit = %name, "preparing the verifying key for the login");
        let job = tokio::task::spawn_blocking(move || p.vk_digest(&spec));
        let digest = tokio::select! {
            r = job => r.map_err(|e| DaemonError::Join(e.to_string()))?
                .map_err(|source| DaemonError::Keys { spec: name, source })?,
            _ = shutdown.cancelled() => return summary(&config, &shared, &stack).await,
        };
        vks.push(digest);
    }
    check_device_memory(&config, prover.clone(), &worker_backends).await?;
    shared.set_status("ok");
    {
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            shared.set_status("stopping");
        });
    }
    let settings = WorkerSettings {
        max_attempts: config.node.max_attempts,
        poll_interval: Duration::from_millis(config.coordinator.poll_interval_ms),
        poll_jitter: Duration::from_millis(config.coordinator.poll_jitter_ms),
        retry_initial: Duration::from_millis(config.coordinator.retry_initial_ms),
        retry_max: Duration::from_millis(config.coordinator.retry_max_ms),
        drain_timeout: Duration::from_secs(config.node.drain_timeout_sec),
        backend: shared.backend.clone(),
        seed: config.node.seed,
    };
    // Workers stop on the daemon's token, or when one of them hits a storage error.
    let stop = shutdown.child_token();
    let mut handles = vec![];
    for (id, backend) in identities.into_iter().zip(worker_backends) {
        let login = LoginInfo {
            key: id.key.clone(),
            prover_name: format!("{}-{}", config.node.name, id.index),
            prover_version: config.prover_version(),
            provider_type: config.node.provider_type,
            prover_types: config.node.task_types.clone(),
            vks: vks.clone(),
        };
        let urls: Vec<&str> = std::iter::once(config.coordinator.base_url.as_str())
            .chain(config.coordinator.failover_urls.iter().map(String::as_str))
            .collect();
        let client = CoordinatorClient::with_failover(
            &urls,
            Duration::from_secs(config.coordinator.request_timeout_sec),
            login,
        )?
        .with_max_reply_bytes(
            usize::try_from(config.coordinator.max_reply_mib << 20).unwrap_or(usize::MAX),
        );
        let index = id.index;
        let worker = Worker {
            identity: id,
            client,
            stack: stack.clone(),
            prover: prover.clone(),
            shared: shared.clone(),
            settings: WorkerSettings {
                backend: backend
                    .as_ref()
                    .map_or_else(|| "cpu".to_string(), |b| b.name().to_string()),
                ..settings.clone()
            },
            device: backend,
            shutdown: stop.clone(),
        };
        let stop_all = stop.clone();
        handles.push(tokio::spawn(async move {
            let r = worker.run().await;
            if let Err(e) = &r {
                tracing::error!(worker = index, error = %e, "worker stopped on a storage error; stopping the daemon");
                stop_all.cancel();
            }
            r.map_err(|source| DaemonError::Worker { index, source })
        }));
    }
    let mut first_error = None;
    for h in handles {
        let r = h.await.map_err(|e| DaemonError::Join(e.to_string()));
        if let Err(e) = r.and_then(|r| r) {
            first_error.get_or_insert(e);
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    summary(&config, &shared, &stack).await
}

async fn summary(
    config: &NodeConfig,
    shared: &Shared,
    stack: &TaskStack,
) -> Result<DaemonSummary, DaemonError> {
    let s = stack.clone();
    let left_in_stack = blocking(move || s.len()).await??;
    let m = &shared.metrics;
    Ok(DaemonSummary {
        workers: config.node.n_workers,
        backend: shared.backend.clone(),
        tasks_pulled: m.total(Total::Pulled),
        tasks_proved: m.total(Total::Proved),
        tasks_failed: m.total(Total::Failed),
        submissions_accepted: m.total(Total::Submitted),
        submissions_refused: m.total(Total::Refused),
        left_in_stack,
    })
}

/// The compute backends of the native engine, selected once at start: one per device of
/// `devices` (every device the driver sees when `None`) for `cuda`, the CPU for `cpu`, and for
/// `auto` the CUDA devices when usable, else the CPU with a warning (`cuda` without a usable
/// device is an error). Empty for the reference engine, which proves on the CPU and never touches
/// a device.
pub fn select_backends(
    engine: EngineChoice,
    choice: BackendChoice,
    devices: Option<&[usize]>,
) -> Result<Vec<Arc<dyn gpu::ComputeBackend>>, DaemonError> {
    if engine == EngineChoice::Reference {
        return Ok(vec![]);
    }
    let selections = gpu::select_devices(choice, devices)
        .map_err(|source| DaemonError::Backend { choice, source })?;
    let backends: Vec<Arc<dyn gpu::ComputeBackend>> =
        selections.into_iter().map(|s| s.backend).collect();
    let names: Vec<String> = backends.iter().map(|b| b.name().to_string()).collect();
    tracing::info!(%choice, backends = %names.join(", "), "compute backends selected");
    Ok(backends)
}

/// The directories whose filesystems' free space `/metrics` reports: the key cache's and the
/// task stack's.
fn watched_disks(config: &NodeConfig) -> Vec<(String, std::path::PathBuf)> {
    let stack_dir = config
        .node
        .db_path
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    vec![
        ("keys_dir".to_string(), config.prover.keys_dir.clone()),
        ("task_stack".to_string(), stack_dir),
    ]
}

/// Says at start when a watched filesystem has less free than the caches' reserve: the key
/// caches are not written there (they are used from memory), and whatever else it holds (the
/// task stack, where it shares it) may be next.
fn warn_if_disk_short(config: &NodeConfig) {
    let reserve = config.prover.keys_disk_reserve_mib.saturating_mul(1 << 20);
    for (dir, path) in watched_disks(config) {
        if let Some(free) = prover_core::disk::free_bytes_for(&path) {
            if free < reserve {
                tracing::warn!(
                    dir,
                    path = %path.display(),
                    free = %size(free),
                    reserve = %size(reserve),
                    "disk: less free than prover.keys_disk_reserve_mib: no key or coset cache \
                     is written on this filesystem, and what else it holds may run out of space"
                );
            }
        }
    }
}

/// Refuses to go on when a device's free memory is less than what its workers need: the key
/// caches of every configured circuit, their SRS points and NTT tables, and one proof's peak per
/// worker on that device (the largest circuit's), plus the kernels' local memory where the
/// backend could not reserve it at open. A clear error now instead of an out-of-memory fault
/// mid-proof.
async fn check_device_memory(
    config: &NodeConfig,
    prover: Arc<dyn TaskProver>,
    worker_backends: &[Option<Arc<dyn gpu::ComputeBackend>>],
) -> Result<(), DaemonError> {
    let mut devices: Vec<(Arc<dyn gpu::ComputeBackend>, u64)> = vec![];
    for b in worker_backends.iter().flatten() {
        match devices.iter_mut().find(|(d, _)| Arc::ptr_eq(d, b)) {
            Some((_, workers)) => *workers += 1,
            None => devices.push((b.clone(), 1)),
        }
    }
    if devices.is_empty() {
        return Ok(());
    }
    let specs: Vec<CircuitSpec> = config
        .node
        .task_types
        .iter()
        .filter_map(|t| config.circuits.spec_for(*t))
        .collect();
    let needs = blocking(move || {
        specs
            .iter()
            .map(|s| prover.device_need(s).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?
    .map_err(DaemonError::DeviceInfo)?;
    let needs: Vec<_> = needs.into_iter().flatten().collect();
    if needs.is_empty() {
        return Ok(());
    }
    let key_caches: u64 = needs.iter().map(|n| n.key_cache).sum();
    let shared: u64 = needs.iter().map(|n| n.shared).sum();
    let per_proof = needs.iter().map(|n| n.per_proof).max().unwrap_or(0);
    for (backend, workers) in devices {
        let Some((free, total)) = backend
            .device_memory()
            .map_err(|e| DaemonError::DeviceInfo(format!("{}: {e}", backend.name())))?
        else {
            continue;
        };
        // The kernels' local memory when the backend could not reserve it at open: taken at
        // their first launch, not shown as used yet.
        let pending = backend
            .device_memory_pending()
            .map_err(|e| DaemonError::DeviceInfo(format!("{}: {e}", backend.name())))?;
        let needed = key_caches + shared + workers * per_proof + pending;
        let mut detail = format!(
            "key caches {}, SRS points and NTT tables {}, {workers} proof(s) at once × {}",
            size(key_caches),
            size(shared),
            size(per_proof)
        );
        if pending > 0 {
            detail += &format!(", the kernels' local memory {}", size(pending));
        }
        tracing::info!(device = %backend.name(), free = %size(free as u64), needed = %size(needed), %detail, "device memory");
        if needed > free as u64 {
            return Err(DaemonError::DeviceMemory {
                device: backend.name().to_string(),
                needed,
                free: free as u64,
                total: total as u64,
                detail,
            });
        }
    }
    Ok(())
}

fn spec_k(spec: &CircuitSpec) -> String {
    format!("k={}", spec.k())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, DaemonError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DaemonError::Join(e.to_string()))
}
