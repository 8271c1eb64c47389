//! The proving core: task in, proof out; proof in, verdict out. The CLI, the daemon, the coordinator's
//! verifier and the C ABI all go through this one type.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use group::Group;
use halo2_base::gates::circuit::builder::BaseCircuitBuilder;
use halo2_base::gates::circuit::CircuitBuilderStage;
use halo2_proofs::plonk::{keygen_pk, keygen_vk, Circuit};
use halo2curves::bn256::{Bn256, Fq, Fr, G1Affine};
use halo2curves::pairing::{MillerLoopResult, MultiMillerLoop};
use halo2curves::CurveAffine;
use rand_core::RngCore;
use snark_verifier_sdk::halo2::aggregation::{AggregationCircuit, AggregationConfigParams};
use snark_verifier_sdk::halo2::gen_dummy_snark_from_protocol;
use snark_verifier_sdk::snark_verifier::system::halo2::{compile, Config};
use snark_verifier_sdk::snark_verifier::util::arithmetic::fe_from_limbs;
use snark_verifier_sdk::{Snark, BITS, LIMBS, SHPLONK};

use crate::circuits::{batch, bundle, chunk};
use crate::compute::{Compute, SelectError};
use crate::engine::{self, EngineError, EngineKind, Transcript};
use crate::keys::{CircuitKeys, Generated, KeyError, KeyStore};
use crate::native::CosetFile;
use crate::rollup::{check_chunk, check_shape, ChunkError};
use crate::wire::{
    Base64Bytes, BatchConfig, BatchTaskData, BundleConfig, BundleTaskData, ChunkConfig,
    ChunkTaskData, CircuitSpec, FrHex, ProofMeta, ProofPayload, Task, TaskPayload, WireError,
    PROOF_VERSION,
};

/// Rows halo2 reserves at the bottom of every circuit (blinding and the last rows).
const MINIMUM_ROWS: usize = 20;
/// Most chunks one batch may aggregate.
pub const MAX_CHUNKS_PER_BATCH: usize = 16;
/// Most batches one bundle may aggregate.
pub const MAX_BATCHES_PER_BUNDLE: usize = 16;

/// Errors of the proving core. Each says which input was at fault.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("invalid chunk: {0}")]
    Chunk(#[from] ChunkError),
    #[error("invalid batch: {0}")]
    Batch(String),
    #[error("invalid bundle: {0}")]
    Bundle(String),
    #[error("parameters: {0}")]
    Params(#[from] params::ParamsError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The configured compute backend cannot be used (e.g. `cuda` without a CUDA driver or device).
    #[error(transparent)]
    Backend(#[from] SelectError),
    /// A proof for a circuit configuration whose keys this verifier does not have and may not
    /// generate: verification never runs keygen for a configuration an untrusted proof names.
    #[error(
        "no keys for the circuit {} in the key cache {}, and it is not in `verify_allow`: \
         verification never generates keys for a circuit a proof names. If you trust this \
         configuration, add it to `verify_allow` in the core configuration (`prover verify \
         --allow-keygen` on the command line), or make its keys by proving a task of it",
        spec_json(.spec),
        .keys_dir.display()
    )]
    UnknownCircuit {
        spec: Box<CircuitSpec>,
        keys_dir: PathBuf,
    },
    #[error("proof is for a verifying key with digest {found}, this prover's key for that circuit is {expected}")]
    VkMismatch { expected: String, found: String },
    #[error("proof carries {found} public inputs, the {circuit} circuit has {expected}")]
    InstanceCount {
        circuit: &'static str,
        expected: usize,
        found: usize,
    },
    #[error(
        "the accumulator in the aggregation's public inputs is not a valid pair of curve points"
    )]
    BadAccumulator,
    #[error("proof rejected: the KZG accumulator pairing check of the aggregated proofs failed")]
    AccumulatorPairing,
    #[error("{0}")]
    Evm(String),
}

impl CoreError {
    /// Whether this error of [`ProvingCore::verify`] means "the proof is invalid", as opposed to
    /// "the proof could not be checked here" (parameters, key cache, backend, or a circuit this
    /// verifier has no keys for).
    pub fn is_rejection(&self) -> bool {
        !matches!(
            self,
            CoreError::Params(_)
                | CoreError::Keys(_)
                | CoreError::Backend(_)
                | CoreError::UnknownCircuit { .. }
        )
    }
}

/// A circuit specification as the JSON `verify_allow` takes.
fn spec_json(spec: &CircuitSpec) -> String {
    serde_json::to_string(spec).unwrap_or_else(|_| format!("{spec:?}"))
}

/// Where the core finds parameters and keeps keys, and what it proves with. Also the JSON shape
/// the C ABI takes (`engine`, `backend` and `verify_allow` may be omitted).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoreConfig {
    /// Directory of `kzg_bn254_{k}.srs` files.
    pub params_dir: PathBuf,
    /// Directory of the proving-key cache.
    pub keys_dir: PathBuf,
    /// Proving engine (`native` by default; `reference` is halo2-axiom's prover, for cross-checks).
    #[serde(default)]
    pub engine: EngineKind,
    /// Compute backend of the native engine (`auto` by default). The reference engine ignores it.
    #[serde(default)]
    pub backend: gpu::BackendChoice,
    /// Circuit configurations [`ProvingCore::verify`] may generate keys for when they are not in
    /// the key cache (empty by default). Any other configuration is verified only with cached keys
    /// and refused ([`CoreError::UnknownCircuit`]) without them: a proof names its own circuit, so
    /// an untrusted proof must not be able to start a keygen (minutes of CPU, gigabytes on disk).
    #[serde(default)]
    pub verify_allow: Vec<CircuitSpec>,
    /// Free space (MiB) the key and coset caches leave on the keys directory's filesystem
    /// ([`crate::disk`]): a cache file that would leave less is not written, and the keys and
    /// cosets are used from memory. 0 writes every file that fits.
    #[serde(default = "default_disk_reserve_mib")]
    pub keys_disk_reserve_mib: u64,
}

fn default_disk_reserve_mib() -> u64 {
    crate::disk::DEFAULT_RESERVE_MIB
}

impl CoreConfig {
    /// The given directories with the default engine and backend.
    pub fn new(params_dir: impl Into<PathBuf>, keys_dir: impl Into<PathBuf>) -> Self {
        Self {
            params_dir: params_dir.into(),
            keys_dir: keys_dir.into(),
            engine: EngineKind::default(),
            backend: gpu::BackendChoice::default(),
            verify_allow: Vec::new(),
            keys_disk_reserve_mib: crate::disk::DEFAULT_RESERVE_MIB,
        }
    }
}

/// A verified proof's statement.
#[derive(Clone, Debug)]
pub struct Verified {
    pub spec: CircuitSpec,
    /// Public inputs after the accumulator (for a batch) or all of them (for a chunk).
    pub statement: Vec<FrHex>,
}

/// The proving core. Cheap to share (`Arc`); loads parameters and keys lazily and keeps them.
/// The compute backend is selected on the first native proof (or by [`ProvingCore::backend`]),
/// never by verification.
pub struct ProvingCore {
    config: CoreConfig,
    keys: KeyStore,
    srs: Mutex<HashMap<u32, Arc<params::Srs>>>,
    /// The native engine's backend and the SRS bases per k (next to `srs`, same lifetime).
    compute: Compute,
}

/// What proved a proof.
struct Proved {
    proof: Vec<u8>,
    engine: EngineKind,
    backend: String,
    /// The backend and the fault that moved the proof to the CPU backend, if one did.
    fallback: Option<String>,
}

impl ProvingCore {
    /// Removes the temporary files an earlier process left in the keys directory when it was
    /// killed during a write ([`crate::disk::remove_stale_temporaries`]).
    pub fn new(config: CoreConfig) -> Self {
        for (file, bytes) in crate::disk::remove_stale_temporaries(&config.keys_dir) {
            tracing::warn!(
                file = %file.display(),
                size = %crate::disk::size(bytes),
                "removed a temporary file an earlier process left unfinished"
            );
        }
        let keys = KeyStore::new(config.keys_dir.clone())
            .with_disk_reserve(config.keys_disk_reserve_mib.saturating_mul(1 << 20));
        Self {
            config,
            keys,
            srs: Mutex::new(HashMap::new()),
            compute: Compute::default(),
        }
    }

    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// The SRS for `k` (an exact file, or a larger one downsized), loaded once.
    pub fn srs(&self, k: u32) -> Result<Arc<params::Srs>, CoreError> {
        if let Some(p) = self.srs_lock().get(&k) {
            return Ok(p.clone());
        }
        let loaded = Arc::new(params::load(&self.config.params_dir, k)?);
        // Two threads may load it at once; both then use the first one stored.
        Ok(self.srs_lock().entry(k).or_insert(loaded).clone())
    }

    /// The native engine's compute backend: `config.backend` selected on first use (`auto` falls
    /// back to the CPU with a warning; `cuda` without a usable device is an error), or the one
    /// given to [`ProvingCore::use_backend`]. Call it at start to fail early.
    pub fn backend(&self) -> Result<Arc<dyn gpu::ComputeBackend>, CoreError> {
        Ok(self.compute.backend(self.config.backend)?)
    }

    /// Proves on `backend` from now on (a caller that selected the backend itself, such as the
    /// daemon at start), instead of selecting `config.backend`.
    pub fn use_backend(&self, backend: Arc<dyn gpu::ComputeBackend>) {
        self.compute.set_backend(backend);
    }

    /// The SRS for `k` as backend bases (built once per k, reused by every native proof).
    pub fn bases(&self, k: u32) -> Result<Arc<crate::native::SrsBases>, CoreError> {
        let srs = self.srs(k)?;
        Ok(self.compute.bases(k, &srs).map_err(EngineError::Native)?)
    }

    /// Proves `circuit` with the configured engine, at the key's size (`k` of its domain).
    fn prove_circuit<C: Circuit<Fr>>(
        &self,
        on: Option<&Arc<dyn gpu::ComputeBackend>>,
        keys: &CircuitKeys,
        circuit: C,
        instances: &[Fr],
        rng: impl RngCore + Clone,
        transcript: Transcript,
    ) -> Result<Proved, CoreError> {
        let k = keys.vk().get_domain().k();
        let srs = self.srs(k)?;
        let pk = &keys.pk;
        match self.config.engine {
            EngineKind::Reference => Ok(Proved {
                proof: engine::prove_with(&srs, pk, circuit, instances, rng, transcript)?,
                engine: EngineKind::Reference,
                backend: "cpu".into(),
                fallback: None,
            }),
            EngineKind::Native => {
                let backend = match on {
                    Some(b) => b.clone(),
                    None => self.backend()?,
                };
                let attempt = self.prove_native_on(
                    &*backend,
                    k,
                    &srs,
                    keys,
                    &circuit,
                    instances,
                    rng.clone(),
                    transcript,
                );
                match attempt {
                    Err(EngineError::Native(e))
                        if e.is_backend_failure() && backend.name() != gpu::BackendName::Cpu =>
                    {
                        // A device fault is not the task's fault: prove it again on the CPU, in
                        // this attempt, with the same randomness.
                        let faults = self.compute.note_device_fault();
                        tracing::warn!(
                            backend = %backend.name(),
                            error = %crate::report::error_line(&e),
                            faults,
                            "device fault during a proof; proving it again on the CPU backend"
                        );
                        let cpu = gpu::CpuBackend::new();
                        let proof = self.prove_native_on(
                            &cpu, k, &srs, keys, &circuit, instances, rng, transcript,
                        )?;
                        Ok(Proved {
                            proof,
                            engine: EngineKind::Native,
                            backend: gpu::ComputeBackend::name(&cpu).to_string(),
                            fallback: Some(format!(
                                "{}: {}",
                                backend.name(),
                                crate::report::error_line(&e)
                            )),
                        })
                    }
                    Err(e) => Err(e.into()),
                    Ok(proof) => Ok(Proved {
                        proof,
                        engine: EngineKind::Native,
                        backend: backend.name().to_string(),
                        fallback: None,
                    }),
                }
            }
        }
    }

    /// One native proof on `backend`, with that backend's key cache.
    #[allow(clippy::too_many_arguments)]
    fn prove_native_on<C: Circuit<Fr>>(
        &self,
        backend: &dyn gpu::ComputeBackend,
        k: u32,
        srs: &params::Srs,
        keys: &CircuitKeys,
        circuit: &C,
        instances: &[Fr],
        rng: impl RngCore,
        transcript: Transcript,
    ) -> Result<Vec<u8>, EngineError> {
        let bases = self.compute.bases(k, srs)?;
        let coset_file = self.keys.coset_path(&keys.meta.spec, srs);
        let cache = self.compute.key_cache(
            &keys.meta.vk_digest,
            backend,
            &keys.pk,
            Some(CosetFile {
                path: &coset_file,
                pk_sha256: &keys.meta.pk_sha256,
                disk_reserve: self.keys.disk_reserve(),
            }),
        )?;
        engine::prove_native_with(
            backend,
            srs,
            &bases,
            &keys.pk,
            Some(&cache),
            circuit,
            instances,
            rng,
            transcript,
        )
    }

    /// Device faults that moved a proof to the CPU backend since this core was made.
    pub fn device_faults(&self) -> u64 {
        self.compute.device_faults()
    }

    fn srs_lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<params::Srs>>> {
        self.srs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Proving key of the chunk circuit for `config`.
    pub fn chunk_keys(&self, config: ChunkConfig) -> Result<Arc<CircuitKeys>, CoreError> {
        crate::rollup::check_config(&config)?;
        let srs = self.srs(config.k)?;
        let spec = CircuitSpec::Chunk { config };
        Ok(self.keys.get_or_generate(&spec, &srs, || {
            let mut builder = chunk_keygen_builder(config);
            chunk::synthesize(&mut builder, &chunk::keygen_payload(config));
            let circuit_params = builder.calculate_params(Some(MINIMUM_ROWS));
            let pk = keygen(&srs, &builder, "chunk")?;
            Ok(Generated {
                pk,
                circuit_params,
                break_points: builder.break_points(),
            })
        })?)
    }

    /// Proving key of the batch circuit for `config` (generates the chunk keys too if needed).
    pub fn batch_keys(&self, config: BatchConfig) -> Result<Arc<CircuitKeys>, CoreError> {
        check_batch_config(&config)?;
        self.aggregation_keys(&Level::batch(config))
    }

    /// Proving key of the bundle circuit for `config` (generates the batch and chunk keys too if
    /// needed).
    pub fn bundle_keys(&self, config: BundleConfig) -> Result<Arc<CircuitKeys>, CoreError> {
        check_bundle_config(&config)?;
        self.aggregation_keys(&Level::bundle(config))
    }

    /// The keys of an aggregation circuit, generated over dummy proofs of the level below.
    fn aggregation_keys(&self, level: &Level) -> Result<Arc<CircuitKeys>, CoreError> {
        let inner_keys = self.keys_for(&level.inner)?;
        let inner_srs = self.srs(level.inner.k())?;
        let srs = self.srs(level.k)?;
        Ok(self.keys.get_or_generate(&level.spec, &srs, || {
            let protocol = (level.protocol)(&inner_srs, &inner_keys);
            let dummies: Vec<Snark> = (0..level.count)
                .map(|_| gen_dummy_snark_from_protocol::<SHPLONK>(protocol.clone()))
                .collect();
            let agg_config = AggregationConfigParams {
                degree: level.k,
                lookup_bits: level.k as usize - 1,
                ..Default::default()
            };
            let mut circuit = (level.build)(CircuitBuilderStage::Keygen, agg_config, &srs, dummies);
            let circuit_params = circuit.builder.calculate_params(Some(MINIMUM_ROWS));
            let pk = keygen(&srs, &circuit, level.name)?;
            Ok(Generated {
                pk,
                circuit_params,
                break_points: circuit.break_points(),
            })
        })?)
    }
    /// The keys to verify a proof of `spec` with, never generated unless `spec` is in
    /// `verify_allow`: an out-of-range configuration is refused first, then the key cache is looked
    /// up (memory, then the entries' metadata on disk, and only if one is for `spec`, the SRS and
    /// the key), and a configuration with no entry is [`CoreError::UnknownCircuit`].
    pub fn verifying_keys(&self, spec: &CircuitSpec) -> Result<Arc<CircuitKeys>, CoreError> {
        check_spec(spec)?;
        if self.config.verify_allow.contains(spec) {
            return self.keys_for(spec);
        }
        self.cached_keys(spec)?
            .ok_or_else(|| CoreError::UnknownCircuit {
                spec: Box::new(spec.clone()),
                keys_dir: self.config.keys_dir.clone(),
            })
    }

    /// The keys of `spec` if the cache has them (memory or `keys_dir`); never generates. No SRS is
    /// loaded unless an entry for `spec` is on disk or in memory.
    pub fn cached_keys(&self, spec: &CircuitSpec) -> Result<Option<Arc<CircuitKeys>>, CoreError> {
        check_spec(spec)?;
        if !self.keys.has_entry(spec)? {
            return Ok(None);
        }
        let srs = self.srs(spec.k())?;
        Ok(self.keys.get_cached(spec, &srs)?)
    }

    /// Keys for whatever circuit `spec` names (generated and cached if needed).
    pub fn keys_for(&self, spec: &CircuitSpec) -> Result<Arc<CircuitKeys>, CoreError> {
        match spec {
            CircuitSpec::Chunk { config } => self.chunk_keys(*config),
            CircuitSpec::Batch { config } => self.batch_keys(*config),
            CircuitSpec::Bundle { config } => self.bundle_keys(*config),
        }
    }

    /// Proves a task as the coordinator hands it out.
    pub fn prove_task(
        &self,
        task: &Task,
        rng: impl RngCore + Clone,
    ) -> Result<ProofPayload, CoreError> {
        self.prove_task_on(None, task, rng)
    }

    /// As [`Self::prove_task`], with the native engine on `backend` instead of the core's own
    /// (a node with several devices proves each worker's tasks on that worker's device).
    pub fn prove_task_on(
        &self,
        backend: Option<&Arc<dyn gpu::ComputeBackend>>,
        task: &Task,
        rng: impl RngCore + Clone,
    ) -> Result<ProofPayload, CoreError> {
        match task.payload()? {
            TaskPayload::Chunk(data) => {
                check_chunk(&data)?;
                self.prove_chunk_on(backend, &task.task_id, &data, rng)
            }
            TaskPayload::Batch(data) => {
                self.check_batch(&data)?;
                let level = Level::batch(data.config);
                self.prove_aggregation_on(backend, &task.task_id, &level, &data.chunk_proofs, rng)
            }
            TaskPayload::Bundle(data) => {
                self.check_bundle(&data)?;
                let level = Level::bundle(data.config);
                self.prove_aggregation_on(backend, &task.task_id, &level, &data.batch_proofs, rng)
            }
        }
    }

    /// Proves a chunk after checking it natively (a bad chunk is refused with its reason).
    pub fn prove_chunk(
        &self,
        task_id: &str,
        data: &ChunkTaskData,
        rng: impl RngCore + Clone,
    ) -> Result<ProofPayload, CoreError> {
        check_chunk(data)?;
        self.prove_chunk_unchecked(task_id, data, rng)
    }

    /// Proves a chunk whose shape is valid but whose values are NOT checked natively: a dishonest
    /// witness gives a failed proving run or a proof that does not verify. For soundness tests.
    pub fn prove_chunk_unchecked(
        &self,
        task_id: &str,
        data: &ChunkTaskData,
        rng: impl RngCore + Clone,
    ) -> Result<ProofPayload, CoreError> {
        self.prove_chunk_on(None, task_id, data, rng)
    }

    fn prove_chunk_on(
        &self,
        backend: Option<&Arc<dyn gpu::ComputeBackend>>,
        task_id: &str,
        data: &ChunkTaskData,
        rng: impl RngCore + Clone,
    ) -> Result<ProofPayload, CoreError> {
        check_shape(data)?;
        let started = Instant::now();
        let keys = self.chunk_keys(data.config)?;
        let mut builder = BaseCircuitBuilder::prover(
            keys.meta.circuit_params.clone(),
            keys.meta.break_points.clone(),
        );
        let witness_started = Instant::now();
        chunk::synthesize(&mut builder, data);
        tracing::debug!(
            circuit = "chunk",
            ms = witness_started.elapsed().as_millis() as u64,
            "circuit witness"
        );
        let instances: Vec<Fr> = builder.assigned_instances[0]
            .iter()
            .map(|v| *v.value())
            .collect();
        let proved = self.prove_circuit(
            backend,
            &keys,
            builder,
            &instances,
            rng,
            Transcript::Poseidon,
        )?;
        Ok(payload(
            task_id,
            CircuitSpec::Chunk {
                config: data.config,
            },
            &keys,
            instances,
            proved,
            started,
        ))
    }

    /// Aggregates the chunk proofs of a batch task, after verifying each and checking that they chain.
    pub fn prove_batch(
        &self,
        task_id: &str,
        data: &BatchTaskData,
        rng: impl RngCore + Clone,
    ) -> Result<ProofPayload, CoreError> {
        self.check_batch(data)?;
        self.prove_batch_unchecked(task_id, data, rng)
    }

    /// The checks of [`Self::prove_batch`]: the chunk proofs verify and chain.
    fn check_batch(&self, data: &BatchTaskData) -> Result<(), CoreError> {
        check_batch_config(&data.config)?;
        self.check_aggregated(&Level::batch(data.config), &data.chunk_proofs)
    }

    /// Aggregation without the native chain check (the circuit must then reject a broken chain).
    /// The chunk proofs must still be valid proofs: snark-verifier panics on unparsable ones.
    pub fn prove_batch_unchecked(
        &self,
        task_id: &str,
        data: &BatchTaskData,
        rng: impl RngCore + Clone,
    ) -> Result<ProofPayload, CoreError> {
        check_batch_config(&data.config)?;
        let level = Level::batch(data.config);
        self.prove_aggregation_on(None, task_id, &level, &data.chunk_proofs, rng)
    }

    /// The batch circuit of a task with its witness, its keys and its public inputs (no checks of
    /// the chunk proofs). Each call synthesizes it again, and halo2-ecc draws random points from
    /// OS entropy in its MSMs: two calls give different (valid) witnesses.
    pub fn batch_circuit(
        &self,
        data: &BatchTaskData,
    ) -> Result<(Arc<CircuitKeys>, AggregationCircuit, Vec<Fr>), CoreError> {
        check_batch_config(&data.config)?;
        self.aggregation_circuit(&Level::batch(data.config), &data.chunk_proofs)
    }

    /// Aggregates the batch proofs of a bundle task into the proof settled on L1 (Keccak
    /// transcript), after verifying each and checking that they chain.
    pub fn prove_bundle(
        &self,
        task_id: &str,
        data: &BundleTaskData,
        rng: impl RngCore + Clone,
    ) -> Result<ProofPayload, CoreError> {
        self.check_bundle(data)?;
        let level = Level::bundle(data.config);
        self.prove_aggregation_on(None, task_id, &level, &data.batch_proofs, rng)
    }

    /// The checks of [`Self::prove_bundle`]: each batch proof is for the bundle's batch circuit,
    /// verifies (its accumulator included), and the batches chain.
    fn check_bundle(&self, data: &BundleTaskData) -> Result<(), CoreError> {
        check_bundle_config(&data.config)?;
        self.check_aggregated(&Level::bundle(data.config), &data.batch_proofs)
    }

    /// The bundle circuit of a task with its witness, its keys and its public inputs (no checks
    /// of the batch proofs; see [`Self::batch_circuit`] on the randomness of the witness).
    pub fn bundle_circuit(
        &self,
        data: &BundleTaskData,
    ) -> Result<(Arc<CircuitKeys>, AggregationCircuit, Vec<Fr>), CoreError> {
        check_bundle_config(&data.config)?;
        self.aggregation_circuit(&Level::bundle(data.config), &data.batch_proofs)
    }

    /// The proofs an aggregation task carries: as many as its circuit takes, each for the circuit
    /// below and verifying (accumulator included), and chaining: proof i's new root is proof
    /// i+1's old root.
    fn check_aggregated(&self, level: &Level, proofs: &[ProofPayload]) -> Result<(), CoreError> {
        let (name, inner, inners) = (level.name, level.inner_name, level.inner_plural);
        if proofs.len() != level.count {
            return Err((level.error)(format!(
                "{} {inner} proofs for a {name} of {} {inners}",
                proofs.len(),
                level.count
            )));
        }
        // The task's own inner circuit: its keys are needed to aggregate anyway, so they may be
        // generated here, and the proofs below then verify with them.
        self.keys_for(&level.inner)?;
        let mut statements = Vec::with_capacity(level.count);
        for (i, p) in proofs.iter().enumerate() {
            if p.spec != level.inner {
                return Err((level.error)(format!(
                    "{inner} proof {i} is not for the {name}'s {inner} circuit {:?}",
                    level.inner
                )));
            }
            let verified = self
                .verify(p)
                .map_err(|e| (level.error)(format!("{inner} proof {i} does not verify: {e}")))?;
            statements.push(statement(inner, &verified.statement, 0)?);
        }
        for (i, pair) in statements.windows(2).enumerate() {
            if pair[0][1] != pair[1][0] {
                return Err((level.error)(format!(
                    "{inners} do not chain: {inner} {i} ends at root {} but {inner} {} starts at {}",
                    FrHex(pair[0][1]),
                    i + 1,
                    FrHex(pair[1][0])
                )));
            }
        }
        Ok(())
    }

    fn prove_aggregation_on(
        &self,
        backend: Option<&Arc<dyn gpu::ComputeBackend>>,
        task_id: &str,
        level: &Level,
        proofs: &[ProofPayload],
        rng: impl RngCore + Clone,
    ) -> Result<ProofPayload, CoreError> {
        let started = Instant::now();
        let (keys, circuit, instances) = self.aggregation_circuit(level, proofs)?;
        let proved = self.prove_circuit(
            backend,
            &keys,
            circuit,
            &instances,
            rng,
            transcript_of(&level.spec),
        )?;
        Ok(payload(
            task_id,
            level.spec.clone(),
            &keys,
            instances,
            proved,
            started,
        ))
    }

    /// An aggregation circuit over `proofs` with its witness, its keys and its public inputs.
    fn aggregation_circuit(
        &self,
        level: &Level,
        proofs: &[ProofPayload],
    ) -> Result<(Arc<CircuitKeys>, AggregationCircuit, Vec<Fr>), CoreError> {
        let keys = self.aggregation_keys(level)?;
        let inner_keys = self.keys_for(&level.inner)?;
        let inner_srs = self.srs(level.inner.k())?;
        let srs = self.srs(level.k)?;
        let protocol = (level.protocol)(&inner_srs, &inner_keys);
        let snarks = proofs
            .iter()
            .map(|p| {
                Snark::new(
                    protocol.clone(),
                    vec![p.instances.iter().map(|x| x.0).collect()],
                    p.proof.0.clone(),
                )
            })
            .collect();
        let agg_config =
            AggregationConfigParams::try_from(&keys.meta.circuit_params).map_err(|e| {
                (level.error)(format!(
                    "cached {} configuration is unusable: {e}",
                    level.name
                ))
            })?;
        let witness_started = Instant::now();
        let circuit = (level.build)(CircuitBuilderStage::Prover, agg_config, &srs, snarks)
            .use_break_points(keys.meta.break_points.clone());
        tracing::debug!(
            circuit = level.name,
            ms = witness_started.elapsed().as_millis() as u64,
            "circuit witness"
        );
        let instances: Vec<Fr> = circuit.builder.assigned_instances[0]
            .iter()
            .map(|v| *v.value())
            .collect();
        Ok((keys, circuit, instances))
    }
    /// Verifies a proof: the verifying key it names is this prover's key for its circuit, the halo2
    /// proof is valid for its public inputs, and for a batch the deferred KZG pairing holds.
    ///
    /// Never generates keys for a circuit configuration outside `verify_allow`: one with no cached
    /// keys is refused ([`CoreError::UnknownCircuit`]) before any SRS or key is loaded; one out of
    /// the supported range, before anything is read.
    pub fn verify(&self, proof: &ProofPayload) -> Result<Verified, CoreError> {
        let (circuit, expected) = match &proof.spec {
            CircuitSpec::Chunk { .. } => ("chunk", chunk::NUM_INSTANCES),
            CircuitSpec::Batch { .. } => ("batch", batch::NUM_INSTANCES),
            CircuitSpec::Bundle { .. } => ("bundle", bundle::NUM_INSTANCES),
        };
        if proof.instances.len() != expected {
            return Err(CoreError::InstanceCount {
                circuit,
                expected,
                found: proof.instances.len(),
            });
        }
        let keys = self.verifying_keys(&proof.spec)?;
        if keys.meta.vk_digest != proof.vk_digest {
            return Err(CoreError::VkMismatch {
                expected: keys.meta.vk_digest.clone(),
                found: proof.vk_digest.clone(),
            });
        }
        let srs = self.srs(proof.spec.k())?;
        let instances: Vec<Fr> = proof.instances.iter().map(|x| x.0).collect();
        engine::verify_with(
            &srs,
            keys.vk(),
            &instances,
            &proof.proof.0,
            transcript_of(&proof.spec),
        )?;
        let statement = match proof.spec {
            CircuitSpec::Chunk { .. } => proof.instances.clone(),
            CircuitSpec::Batch { .. } | CircuitSpec::Bundle { .. } => {
                check_accumulator(&srs, &instances[..batch::ACCUMULATOR_LIMBS])?;
                proof.instances[batch::ACCUMULATOR_LIMBS..].to_vec()
            }
        };
        Ok(Verified {
            spec: proof.spec.clone(),
            statement,
        })
    }

    /// A chunk proof with the Keccak transcript, as a Solidity verifier of the chunk circuit
    /// ([`Self::evm_verifier`]) reads it: its public inputs and its proof bytes. The chunk is
    /// checked natively first. For settling a small circuit on L1 (the settlement tests).
    pub fn prove_chunk_evm(
        &self,
        data: &ChunkTaskData,
        rng: impl RngCore + Clone,
    ) -> Result<(Vec<Fr>, Vec<u8>), CoreError> {
        check_chunk(data)?;
        let keys = self.chunk_keys(data.config)?;
        let mut builder = BaseCircuitBuilder::prover(
            keys.meta.circuit_params.clone(),
            keys.meta.break_points.clone(),
        );
        chunk::synthesize(&mut builder, data);
        let instances: Vec<Fr> = builder.assigned_instances[0]
            .iter()
            .map(|v| *v.value())
            .collect();
        let proved =
            self.prove_circuit(None, &keys, builder, &instances, rng, Transcript::Keccak)?;
        Ok((instances, proved.proof))
    }

    /// Solidity source of the L1 verifier of `spec`'s circuit for proofs made with the Keccak
    /// transcript (for a batch, the verifier also decides the accumulator in its public inputs).
    /// Uses the cached keys of `spec`, generated if allowed as for [`Self::keys_for`].
    pub fn evm_verifier(&self, spec: &CircuitSpec) -> Result<String, CoreError> {
        let keys = self.keys_for(spec)?;
        let srs = self.srs(spec.k())?;
        let (num_instances, accumulator) = match spec {
            CircuitSpec::Chunk { .. } => (chunk::NUM_INSTANCES, None),
            CircuitSpec::Batch { .. } | CircuitSpec::Bundle { .. } => (
                batch::NUM_INSTANCES,
                Some((0..batch::ACCUMULATOR_LIMBS).map(|i| (0, i)).collect()),
            ),
        };
        crate::evm::verifier_solidity(&srs, keys.vk(), num_instances, accumulator)
            .map_err(|e| CoreError::Evm(e.to_string()))
    }

    /// The verifying-key digest for a circuit (what a prover lists in its login `vks`).
    pub fn vk_digest(&self, spec: &CircuitSpec) -> Result<String, CoreError> {
        Ok(self.keys_for(spec)?.meta.vk_digest.clone())
    }
}

/// The statement (public inputs, after the accumulator for a batch) a correct proof of this task
/// must carry: what a verifier compares a valid proof's statement against.
pub fn expected_statement(payload: &TaskPayload) -> Result<Vec<FrHex>, CoreError> {
    match payload {
        TaskPayload::Chunk(data) => {
            check_shape(data)?;
            Ok(chunk::public_inputs(data).into_iter().map(FrHex).collect())
        }
        TaskPayload::Batch(data) => {
            let statements = data
                .chunk_proofs
                .iter()
                .map(|p| statement("chunk", &p.instances, 0))
                .collect::<Result<Vec<_>, _>>()?;
            let s = batch::public_inputs(&statements)
                .ok_or_else(|| CoreError::Batch("a batch without chunks".into()))?;
            Ok(s.into_iter().map(FrHex).collect())
        }
        TaskPayload::Bundle(data) => {
            let statements = data
                .batch_proofs
                .iter()
                .map(|p| statement("batch", &p.instances, batch::ACCUMULATOR_LIMBS))
                .collect::<Result<Vec<_>, _>>()?;
            let s = bundle::public_inputs(&statements)
                .ok_or_else(|| CoreError::Bundle("a bundle without batches".into()))?;
            Ok(s.into_iter().map(FrHex).collect())
        }
    }
}

/// The supported range of a circuit configuration: cheap, before any parameter or key is read.
pub fn check_spec(spec: &CircuitSpec) -> Result<(), CoreError> {
    match spec {
        CircuitSpec::Chunk { config } => Ok(crate::rollup::check_config(config)?),
        CircuitSpec::Batch { config } => check_batch_config(config),
        CircuitSpec::Bundle { config } => check_bundle_config(config),
    }
}

fn check_bundle_config(config: &BundleConfig) -> Result<(), CoreError> {
    check_batch_config(&config.batch)?;
    if !(1..=MAX_BATCHES_PER_BUNDLE).contains(&config.num_batches) {
        return Err(CoreError::Bundle(format!(
            "num_batches {} is outside 1..={MAX_BATCHES_PER_BUNDLE}",
            config.num_batches
        )));
    }
    if !(16..=26).contains(&config.k) {
        return Err(CoreError::Bundle(format!(
            "bundle k {} is outside 16..=26",
            config.k
        )));
    }
    Ok(())
}

/// The transcript a circuit's proofs are made with: Keccak for the bundle (read by the Solidity
/// verifier on L1), Poseidon for the others (read by the aggregation circuits in-circuit).
pub fn transcript_of(spec: &CircuitSpec) -> Transcript {
    match spec {
        CircuitSpec::Bundle { .. } => Transcript::Keccak,
        CircuitSpec::Chunk { .. } | CircuitSpec::Batch { .. } => Transcript::Poseidon,
    }
}

/// A proof's statement: old root, new root, commitment — its public inputs after the first
/// `accumulator` (the KZG accumulator limbs an aggregation proof carries first).
fn statement(
    circuit: &'static str,
    instances: &[FrHex],
    accumulator: usize,
) -> Result<[Fr; 3], CoreError> {
    match instances.get(accumulator..) {
        Some([old, new, commitment]) => Ok([old.0, new.0, commitment.0]),
        _ => Err(CoreError::InstanceCount {
            circuit,
            expected: accumulator + 3,
            found: instances.len(),
        }),
    }
}

fn check_batch_config(config: &BatchConfig) -> Result<(), CoreError> {
    crate::rollup::check_config(&config.chunk)?;
    if !(1..=MAX_CHUNKS_PER_BATCH).contains(&config.num_chunks) {
        return Err(CoreError::Batch(format!(
            "num_chunks {} is outside 1..={MAX_CHUNKS_PER_BATCH}",
            config.num_chunks
        )));
    }
    if !(16..=26).contains(&config.k) {
        return Err(CoreError::Batch(format!(
            "batch k {} is outside 16..=26",
            config.k
        )));
    }
    Ok(())
}

/// A chunk circuit builder for key generation: size and lookup bits from the config, one instance
/// column; the column counts are computed after synthesis.
fn chunk_keygen_builder(config: ChunkConfig) -> BaseCircuitBuilder<Fr> {
    BaseCircuitBuilder::from_stage(CircuitBuilderStage::Keygen)
        .use_k(config.k as usize)
        .use_lookup_bits(config.k as usize - 1)
        .use_instance_columns(1)
}

fn keygen<C: halo2_proofs::plonk::Circuit<Fr>>(
    srs: &params::Srs,
    circuit: &C,
    name: &'static str,
) -> Result<halo2_proofs::plonk::ProvingKey<G1Affine>, KeyError> {
    let vk = keygen_vk(srs, circuit).map_err(|e| KeyError::Keygen {
        circuit: name,
        reason: format!("{e:?}"),
    })?;
    keygen_pk(srs, vk, circuit).map_err(|e| KeyError::Keygen {
        circuit: name,
        reason: format!("{e:?}"),
    })
}

type Protocol = snark_verifier_sdk::snark_verifier::verifier::plonk::PlonkProtocol<G1Affine>;

/// One level of aggregation: the batch circuit over chunk proofs, or the bundle circuit over
/// batch proofs. Their keys, checks, witness and proof differ only in what is named here.
struct Level {
    name: &'static str,
    spec: CircuitSpec,
    k: u32,
    /// How many proofs of `inner` it aggregates.
    count: usize,
    inner: CircuitSpec,
    inner_name: &'static str,
    inner_plural: &'static str,
    /// How the circuit sees an `inner` proof.
    protocol: fn(&params::Srs, &CircuitKeys) -> Protocol,
    build: fn(
        CircuitBuilderStage,
        AggregationConfigParams,
        &params::Srs,
        Vec<Snark>,
    ) -> AggregationCircuit,
    error: fn(String) -> CoreError,
}

impl Level {
    fn batch(config: BatchConfig) -> Self {
        Level {
            name: "batch",
            spec: CircuitSpec::Batch { config },
            k: config.k,
            count: config.num_chunks,
            inner: CircuitSpec::Chunk {
                config: config.chunk,
            },
            inner_name: "chunk",
            inner_plural: "chunks",
            protocol: chunk_protocol,
            build: batch::build,
            error: CoreError::Batch,
        }
    }

    fn bundle(config: BundleConfig) -> Self {
        Level {
            name: "bundle",
            spec: CircuitSpec::Bundle { config },
            k: config.k,
            count: config.num_batches,
            inner: CircuitSpec::Batch {
                config: config.batch,
            },
            inner_name: "batch",
            inner_plural: "batches",
            protocol: batch_protocol,
            build: bundle::build,
            error: CoreError::Bundle,
        }
    }
}

fn chunk_protocol(chunk_srs: &params::Srs, chunk_keys: &CircuitKeys) -> Protocol {
    compile(
        chunk_srs,
        chunk_keys.vk(),
        Config::kzg().with_num_instance(vec![chunk::NUM_INSTANCES]),
    )
}

/// The batch circuit as the bundle circuit verifies it: its first 12 public inputs are the KZG
/// accumulator it defers, which the bundle folds into its own.
fn batch_protocol(batch_srs: &params::Srs, batch_keys: &CircuitKeys) -> Protocol {
    compile(
        batch_srs,
        batch_keys.vk(),
        Config::kzg()
            .with_num_instance(vec![batch::NUM_INSTANCES])
            .with_accumulator_indices(Some(
                (0..batch::ACCUMULATOR_LIMBS).map(|i| (0, i)).collect(),
            )),
    )
}

fn payload(
    task_id: &str,
    spec: CircuitSpec,
    keys: &CircuitKeys,
    instances: Vec<Fr>,
    proved: Proved,
    started: Instant,
) -> ProofPayload {
    ProofPayload {
        version: PROOF_VERSION,
        task_id: task_id.to_string(),
        spec,
        vk_digest: keys.meta.vk_digest.clone(),
        instances: instances.into_iter().map(FrHex).collect(),
        proof: Base64Bytes(proved.proof),
        meta: ProofMeta {
            engine: proved.engine.name().into(),
            backend: proved.backend,
            prove_ms: started.elapsed().as_millis() as u64,
            fallback: proved.fallback,
        },
    }
}

/// The deferred pairing of an aggregation proof: e(lhs, g2) == e(rhs, s·g2), with lhs and rhs
/// decoded from the 12 limbs (3 × 88 bits per coordinate) of the public inputs.
fn check_accumulator(srs: &params::Srs, limbs: &[Fr]) -> Result<(), CoreError> {
    let coord = |i: usize| -> Result<Fq, CoreError> {
        let l: [Fr; LIMBS] = limbs[i * LIMBS..(i + 1) * LIMBS]
            .try_into()
            .map_err(|_| CoreError::BadAccumulator)?;
        if l.iter().any(|x| x.to_bytes()[11..].iter().any(|b| *b != 0)) {
            return Err(CoreError::BadAccumulator); // a limb wider than 88 bits
        }
        Ok(fe_from_limbs::<Fr, Fq, LIMBS, BITS>(l))
    };
    let point = |x: Fq, y: Fq| {
        Option::<G1Affine>::from(G1Affine::from_xy(x, y)).ok_or(CoreError::BadAccumulator)
    };
    let lhs = point(coord(0)?, coord(1)?)?;
    let rhs = point(coord(2)?, coord(3)?)?;
    let g2 = halo2curves::bn256::G2Prepared::from(srs.g2());
    let minus_s_g2 = halo2curves::bn256::G2Prepared::from(-srs.s_g2());
    let ok: bool = Bn256::multi_miller_loop(&[(&lhs, &g2), (&rhs, &minus_s_g2)])
        .final_exponentiation()
        .is_identity()
        .into();
    if ok {
        Ok(())
    } else {
        Err(CoreError::AccumulatorPairing)
    }
}
