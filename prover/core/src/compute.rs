//! What the native engine proves on: the compute backend (selected once, lazily, so a core that
//! only verifies never touches a GPU) and the SRS points as backend [`SrsBases`], one per k, built
//! once so a device backend can keep them resident.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use gpu::{BackendChoice, ComputeBackend};
use halo2_proofs::plonk::ProvingKey;
use halo2curves::bn256::G1Affine;

use crate::native::{CosetFile, KeyCache, NativeError, SrsBases};

/// Errors of backend selection.
#[derive(Debug, thiserror::Error)]
#[error("compute backend {choice}: {source}")]
pub struct SelectError {
    pub choice: BackendChoice,
    #[source]
    pub source: gpu::BackendError,
}

/// One key's cache, filled by the first proof with that key.
type CacheSlot = Arc<Mutex<Option<Arc<KeyCache>>>>;

/// The selected backend and the bases cache of one [`crate::ProvingCore`].
#[derive(Default)]
pub struct Compute {
    backend: Mutex<Option<Arc<dyn ComputeBackend>>>,
    bases: Mutex<HashMap<u32, Arc<SrsBases>>>,
    /// Per proving key (by verifying-key digest): its extended-coset columns, built on the first
    /// native proof with that key. A second prover of the same key waits for the first build.
    key_caches: Mutex<HashMap<String, CacheSlot>>,
    /// Proofs moved to the CPU backend by a device fault.
    device_faults: std::sync::atomic::AtomicU64,
}

impl Compute {
    /// The backend: the one set with [`Compute::set_backend`], else `choice` selected now (once;
    /// a failed selection is not remembered, so the next call tries again).
    pub fn backend(&self, choice: BackendChoice) -> Result<Arc<dyn ComputeBackend>, SelectError> {
        let mut slot = lock(&self.backend);
        if let Some(b) = slot.as_ref() {
            return Ok(b.clone());
        }
        let selection = gpu::select(choice).map_err(|source| SelectError { choice, source })?;
        tracing::info!(choice = %choice, backend = %selection.backend.name(), "compute backend selected");
        *slot = Some(selection.backend.clone());
        Ok(selection.backend)
    }

    /// Counts a device fault; returns the count so far.
    pub fn note_device_fault(&self) -> u64 {
        self.device_faults
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }

    /// Device faults counted so far.
    pub fn device_faults(&self) -> u64 {
        self.device_faults
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Uses `backend` from now on (replacing any backend selected before).
    pub fn set_backend(&self, backend: Arc<dyn ComputeBackend>) {
        *lock(&self.backend) = Some(backend);
    }

    /// The bases of the SRS for `k` (`srs` must be the core's cached SRS for `k`), built once.
    pub fn bases(&self, k: u32, srs: &params::Srs) -> Result<Arc<SrsBases>, NativeError> {
        if let Some(b) = lock(&self.bases).get(&k) {
            return Ok(b.clone());
        }
        let built = Arc::new(crate::native::srs_bases(srs)?);
        // Two threads may build them at once; both then use the first stored (one id per k).
        Ok(lock(&self.bases).entry(k).or_insert(built).clone())
    }
}

impl Compute {
    /// The [`KeyCache`] of `pk` (whose verifying-key digest is `digest`), built once with
    /// `backend`; with `file` (its path and the key's SHA-256), its coset columns are kept on
    /// disk next to the key ([`KeyCache::with_file`]).
    pub fn key_cache(
        &self,
        digest: &str,
        backend: &dyn ComputeBackend,
        pk: &ProvingKey<G1Affine>,
        file: Option<CosetFile<'_>>,
    ) -> Result<Arc<KeyCache>, NativeError> {
        // The columns are resident in the backend: one cache per key and backend.
        let slot = lock(&self.key_caches)
            .entry(format!("{digest}@{}", backend.name()))
            .or_default()
            .clone();
        let mut cached = lock(&slot);
        if let Some(c) = cached.as_ref() {
            return Ok(c.clone());
        }
        let started = std::time::Instant::now();
        let built = Arc::new(match file {
            Some(file) => KeyCache::with_file(backend, pk, file)?,
            None => KeyCache::new(backend, pk)?,
        });
        tracing::info!(
            key = digest,
            mib = built.size_bytes() >> 20,
            ms = started.elapsed().as_millis() as u64,
            "native engine: per-key coset cache built (kept for the next proofs with this key)"
        );
        *cached = Some(built.clone());
        Ok(built)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
