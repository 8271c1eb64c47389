//! Proving/verifying keys, generated once per circuit configuration and SRS and cached on disk.
//!
//! A cache entry is `{dir}/{circuit}-{id}.pk` (halo2 `ProvingKey` bytes) plus `{dir}/{circuit}-{id}.json`
//! ([`KeyMeta`]: circuit parameters, break points, vk digest, and the sha256 of the `.pk` file),
//! where `id` hashes the circuit specification and the SRS identity. The `.json` is written last,
//! so a half-written entry is never used; the `.pk` hash is checked before parsing (halo2's reader
//! panics on short input), and a corrupt entry is regenerated with a warning. An entry that cannot
//! be written (the disk full, or short of the reserve in [`crate::disk`]) is not an error: the keys
//! are used from memory, with a warning, and the next process generates them again.
//!
//! Verification only looks keys up ([`KeyStore::has_entry`], [`KeyStore::get_cached`]): a proof
//! names its own circuit configuration, so an untrusted one must not be able to start a keygen.

use std::collections::HashMap;
use std::fs;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use halo2_base::gates::circuit::builder::BaseCircuitBuilder;
use halo2_base::gates::circuit::BaseCircuitParams;
use halo2_base::gates::flex_gate::MultiPhaseThreadBreakPoints;
use halo2_proofs::plonk::{ProvingKey, VerifyingKey};
use halo2_proofs::poly::commitment::{Params, ParamsProver};
use halo2_proofs::SerdeFormat;
use halo2curves::bn256::{Fr, G1Affine};
use halo2curves::serde::SerdeObject;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::wire::CircuitSpec;

/// Version of the cache entry layout.
const KEY_FORMAT: u32 = 1;

/// Errors of the key store.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key cache {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key generation for {circuit} failed: {reason}")]
    Keygen {
        circuit: &'static str,
        reason: String,
    },
    #[error(transparent)]
    NoRoom(#[from] crate::disk::NoRoom),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a cache entry records beside the proving key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyMeta {
    pub format: u32,
    pub spec: CircuitSpec,
    pub params_id: String,
    pub circuit_params: BaseCircuitParams,
    pub break_points: MultiPhaseThreadBreakPoints,
    /// base64(sha256(vk bytes)).
    pub vk_digest: String,
    pub pk_sha256: String,
}

/// A proving key with the configuration needed to lay out its circuit again.
pub struct CircuitKeys {
    pub pk: ProvingKey<G1Affine>,
    pub meta: KeyMeta,
}

impl CircuitKeys {
    pub fn vk(&self) -> &VerifyingKey<G1Affine> {
        self.pk.get_vk()
    }
}

/// Freshly generated keys, as a keygen closure returns them.
pub struct Generated {
    pub pk: ProvingKey<G1Affine>,
    pub circuit_params: BaseCircuitParams,
    pub break_points: MultiPhaseThreadBreakPoints,
}

/// base64(sha256(vk in halo2's raw format)): the digest a prover lists in its login `vks`.
pub fn vk_digest(vk: &VerifyingKey<G1Affine>) -> String {
    let bytes = vk.to_bytes(SerdeFormat::RawBytes);
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}

/// Identity of an SRS: its k, its first two G1 powers and s·g2 (which pins the secret).
pub fn params_id(params: &params::Srs) -> String {
    let mut h = Sha256::new();
    h.update(params.k().to_le_bytes());
    for g in params.get_g().iter().take(2) {
        h.update(g.to_raw_bytes());
    }
    h.update(params.s_g2().to_raw_bytes());
    hex::encode(h.finalize())
}

/// Keys cached on disk and in memory.
pub struct KeyStore {
    dir: PathBuf,
    loaded: Mutex<HashMap<String, Arc<CircuitKeys>>>,
    /// One lock per entry, held while it is read or generated: concurrent callers for the same
    /// circuit wait for one keygen instead of each running their own (minutes for the batch
    /// circuit), while other circuits are not held up.
    loading: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Bytes the cache files leave free on the directory's filesystem ([`crate::disk`]).
    reserve: u64,
}

impl KeyStore {
    /// A store in `dir` that leaves [`crate::disk::DEFAULT_RESERVE_MIB`] free.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            loaded: Mutex::new(HashMap::new()),
            loading: Mutex::new(HashMap::new()),
            reserve: crate::disk::DEFAULT_RESERVE_MIB << 20,
        }
    }

    /// The store, leaving `bytes` free on its filesystem instead: a key or coset file that
    /// would leave less is not written.
    pub fn with_disk_reserve(mut self, bytes: u64) -> Self {
        self.reserve = bytes;
        self
    }

    /// The bytes the cache files leave free on the directory's filesystem.
    pub fn disk_reserve(&self) -> u64 {
        self.reserve
    }

    /// Where the native engine keeps the coset cache of `spec`'s key over `params`: next to the
    /// key, `{entry}.coset`.
    pub fn coset_path(&self, spec: &CircuitSpec, params: &params::Srs) -> PathBuf {
        self.dir
            .join(format!("{}.coset", Self::entry_name(spec, params)))
    }

    fn entry_name(spec: &CircuitSpec, params: &params::Srs) -> String {
        let spec_json = serde_json::to_string(spec).unwrap_or_default();
        let mut h = Sha256::new();
        h.update(spec_json.as_bytes());
        h.update(params_id(params).as_bytes());
        h.update(KEY_FORMAT.to_le_bytes());
        let id = hex::encode(&h.finalize()[..8]);
        format!("{}-k{}-{id}", spec.task_type().name(), spec.k())
    }

    /// The keys for `spec` over `params`: from memory, else from disk, else generated by `keygen`
    /// and written to disk.
    pub fn get_or_generate(
        &self,
        spec: &CircuitSpec,
        params: &params::Srs,
        keygen: impl FnOnce() -> Result<Generated, KeyError>,
    ) -> Result<Arc<CircuitKeys>, KeyError> {
        let name = Self::entry_name(spec, params);
        if let Some(keys) = self.lock().get(&name) {
            return Ok(keys.clone());
        }
        let entry_lock = self.entry_lock(&name);
        // `keygen` never asks for this same entry, so one thread never takes this lock twice.
        let _loading = entry_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(keys) = self.lock().get(&name) {
            return Ok(keys.clone());
        }
        let keys = match self.read_entry(&name, params) {
            Ok(Some(keys)) => keys,
            Ok(None) => self.generate(&name, spec, params, keygen)?,
            Err(e) => {
                tracing::warn!(entry = %name, error = %e, "key cache entry unusable; regenerating");
                self.generate(&name, spec, params, keygen)?
            }
        };
        let keys = Arc::new(keys);
        self.lock().insert(name, keys.clone());
        Ok(keys)
    }

    /// The keys for `spec` over `params` from memory or disk, never generated: `None` when there
    /// is no entry. An entry that is there but unusable (torn, corrupt) is an error, not
    /// regenerated.
    pub fn get_cached(
        &self,
        spec: &CircuitSpec,
        params: &params::Srs,
    ) -> Result<Option<Arc<CircuitKeys>>, KeyError> {
        let name = Self::entry_name(spec, params);
        if let Some(keys) = self.lock().get(&name) {
            return Ok(Some(keys.clone()));
        }
        let entry_lock = self.entry_lock(&name);
        let _loading = entry_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(keys) = self.lock().get(&name) {
            return Ok(Some(keys.clone()));
        }
        let Some(keys) = self.read_entry(&name, params)? else {
            return Ok(None);
        };
        let keys = Arc::new(keys);
        self.lock().insert(name, keys.clone());
        Ok(Some(keys))
    }

    /// Whether memory or the directory holds an entry for `spec` (over any SRS), read from the
    /// entries' metadata only: no SRS and no key is loaded. A cheap first filter before
    /// [`KeyStore::get_cached`], which needs the SRS of `spec`'s k.
    pub fn has_entry(&self, spec: &CircuitSpec) -> Result<bool, KeyError> {
        if self.lock().values().any(|keys| keys.meta.spec == *spec) {
            return Ok(true);
        }
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err(&self.dir)(e)),
        };
        /// The one field of [`KeyMeta`] this looks at (other fields are ignored, not parsed).
        #[derive(Deserialize)]
        struct SpecOnly {
            spec: CircuitSpec,
        }
        let prefix = format!("{}-k{}-", spec.task_type().name(), spec.k());
        for entry in entries {
            let path = entry.map_err(io_err(&self.dir))?.path();
            let matches = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".json"));
            if !matches {
                continue;
            }
            // An unreadable or malformed entry is not an entry for `spec`; `get_cached` or
            // `get_or_generate` report or replace it.
            let Ok(text) = fs::read_to_string(&path) else {
                continue;
            };
            if serde_json::from_str::<SpecOnly>(&text).is_ok_and(|m| m.spec == *spec) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The lock of one entry, held while it is read or generated.
    fn entry_lock(&self, name: &str) -> Arc<Mutex<()>> {
        let mut locks = self
            .loading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        locks.entry(name.to_string()).or_default().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<CircuitKeys>>> {
        // A panic while holding this lock cannot leave the map half-updated (single insert).
        self.loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read_entry(
        &self,
        name: &str,
        params: &params::Srs,
    ) -> Result<Option<CircuitKeys>, KeyError> {
        let meta_path = self.dir.join(format!("{name}.json"));
        let pk_path = self.dir.join(format!("{name}.pk"));
        let meta_text = match fs::read_to_string(&meta_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&meta_path)(e)),
        };
        let meta: KeyMeta = serde_json::from_str(&meta_text).map_err(|e| KeyError::Io {
            path: meta_path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        let bad = |what: String| KeyError::Io {
            path: pk_path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, what),
        };
        if meta.format != KEY_FORMAT || meta.params_id != params_id(params) {
            return Err(bad("cache entry was made for another format or SRS".into()));
        }
        let bytes = fs::read(&pk_path).map_err(io_err(&pk_path))?;
        let sha = hex::encode(Sha256::digest(&bytes));
        if sha != meta.pk_sha256 {
            return Err(bad(format!(
                "sha256 {sha} differs from the recorded {}",
                meta.pk_sha256
            )));
        }
        let pk = ProvingKey::<G1Affine>::read::<_, BaseCircuitBuilder<Fr>>(
            &mut BufReader::new(&bytes[..]),
            SerdeFormat::RawBytes,
            meta.circuit_params.clone(),
        )
        .map_err(io_err(&pk_path))?;
        if vk_digest(pk.get_vk()) != meta.vk_digest {
            return Err(bad(
                "verifying key digest differs from the recorded one".into()
            ));
        }
        tracing::info!(entry = %name, "loaded proving key from cache");
        Ok(Some(CircuitKeys { pk, meta }))
    }

    fn generate(
        &self,
        name: &str,
        spec: &CircuitSpec,
        params: &params::Srs,
        keygen: impl FnOnce() -> Result<Generated, KeyError>,
    ) -> Result<CircuitKeys, KeyError> {
        let started = std::time::Instant::now();
        tracing::info!(entry = %name, "generating proving key (once per circuit configuration)");
        let generated = keygen()?;
        tracing::info!(entry = %name, secs = started.elapsed().as_secs_f64(), "proving key generated");
        let mut bytes = Vec::new();
        generated
            .pk
            .write(&mut bytes, SerdeFormat::RawBytes)
            .map_err(io_err(&self.dir))?;
        let meta = KeyMeta {
            format: KEY_FORMAT,
            spec: spec.clone(),
            params_id: params_id(params),
            circuit_params: generated.circuit_params,
            break_points: generated.break_points,
            vk_digest: vk_digest(generated.pk.get_vk()),
            pk_sha256: hex::encode(Sha256::digest(&bytes)),
        };
        // The keys are made: a cache that cannot take them costs the next process a keygen, not
        // this proof.
        if let Err(e) = self.store(name, &bytes, &meta) {
            tracing::warn!(
                entry = %name,
                error = %e,
                "proving key not cached on disk: used from memory, generated again by the next process"
            );
        }
        Ok(CircuitKeys {
            pk: generated.pk,
            meta,
        })
    }

    /// Writes an entry: the `.pk`, then the `.json` that makes it valid; nothing of it when
    /// either write fails or would leave less than the reserve free.
    fn store(&self, name: &str, pk_bytes: &[u8], meta: &KeyMeta) -> Result<(), KeyError> {
        let meta_json = serde_json::to_vec_pretty(meta).map_err(|e| KeyError::Io {
            path: self.dir.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let pk_path = self.dir.join(format!("{name}.pk"));
        let bytes = (pk_bytes.len() + meta_json.len()) as u64;
        crate::disk::check_room(&pk_path, bytes, self.reserve)?;
        write_atomic(&pk_path, pk_bytes)?;
        if let Err(e) = write_atomic(&self.dir.join(format!("{name}.json")), &meta_json) {
            // A key without its metadata is never read: do not leave it taking the space.
            let _ = fs::remove_file(&pk_path);
            return Err(e);
        }
        Ok(())
    }
}

/// Writes `path` through a temporary file, fsync and rename, so readers see all or nothing.
/// The temporary name is unique per write ([`crate::disk::temporary_path`]): two key stores of
/// one process writing the same entry at once each rename their own complete file. On failure
/// the temporary file is removed: a torn 1.5 GB key must not stay to fill the disk further (one
/// a crash leaves is removed by the next process's [`crate::disk::remove_stale_temporaries`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let tmp = crate::disk::temporary_path(path);
    let file = fs::File::create(&tmp).map_err(io_err(&tmp))?;
    let written = (|| {
        let mut w = BufWriter::new(file);
        w.write_all(bytes).map_err(io_err(&tmp))?;
        let file = w.into_inner().map_err(|e| io_err(&tmp)(e.into_error()))?;
        file.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, path).map_err(io_err(path))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}
