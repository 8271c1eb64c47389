//! What the native engine proves on: the compute backend (selected once, lazily, so a core that
//! only verifies never touches a GPU) and the SRS points as backend [`Bases`], one per k, built
//! once so a device backend can keep them resident.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use gpu::{BackendChoice, Bases, ComputeBackend};

/// Errors of backend selection.
#[derive(Debug, thiserror::Error)]
#[error("compute backend {choice}: {source}")]
pub struct SelectError {
    pub choice: BackendChoice,
    #[source]
    pub source: gpu::BackendError,
}

/// The selected backend and the bases cache of one [`crate::ProvingCore`].
#[derive(Default)]
pub struct Compute {
    backend: Mutex<Option<Arc<dyn ComputeBackend>>>,
    bases: Mutex<HashMap<u32, Arc<Bases>>>,
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

    /// Uses `backend` from now on (replacing any backend selected before).
    pub fn set_backend(&self, backend: Arc<dyn ComputeBackend>) {
        *lock(&self.backend) = Some(backend);
    }

    /// The backend if one was selected or set, without selecting one.
    pub fn selected(&self) -> Option<Arc<dyn ComputeBackend>> {
        lock(&self.backend).clone()
    }

    /// The bases of the SRS for `k` (`srs` must be the core's cached SRS for `k`), built once.
    pub fn bases(&self, k: u32, srs: &params::Srs) -> Arc<Bases> {
        if let Some(b) = lock(&self.bases).get(&k) {
            return b.clone();
        }
        let built = Arc::new(crate::native::srs_bases(srs));
        // Two threads may build it at once; both then use the first one stored (one id per k).
        lock(&self.bases).entry(k).or_insert(built).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
