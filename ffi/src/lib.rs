//! The C ABI of the prover node: `libprover_ffi.so` / `libprover_ffi.a` with the header
//! `include/prover.h` (generated from this file by cbindgen; see `README.md`).
//!
//! Every export:
//! - catches panics (`catch_unwind`) and reports them as [`ProverStatus::Panic`];
//! - checks every pointer for NULL, every string for UTF-8, every JSON document for its shape;
//! - checks a handle against the registry of live handles (and its magic tag) before touching it,
//!   so a freed, foreign or double-freed handle is an error code, not a crash;
//! - on failure, stores a message readable with [`prover_last_error`] on the calling thread.
//!
//! Inside, errors are typed ([`FfiError`]); they become a status code only at the boundary.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe, UnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use prover_core::wire::{self, ProofPayload, Task, WireError};
use prover_core::{CoreConfig, CoreError, ProvingCore};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Status codes returned (as `int32_t`) by every function of the C ABI that can fail.
///
/// `PROVER_STATUS_OK` (0) is success; every other code means the call failed, changed no
/// out-pointer, and left a message in `prover_last_error()` on the calling thread.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProverStatus {
    /// Success.
    Ok = 0,
    /// A required pointer argument (input string, handle or out-pointer) is NULL.
    NullPointer = 1,
    /// An input string is not valid UTF-8.
    InvalidUtf8 = 2,
    /// An input is not JSON of the expected shape (config, task, the task's `task_data`, or proof),
    /// including unknown fields.
    MalformedJson = 3,
    /// The task's `task_type` is not one this prover proves (1 chunk, 2 batch).
    UnknownTaskType = 4,
    /// The handle is not a live handle returned by `prover_init`: already freed, or foreign memory.
    InvalidHandle = 5,
    /// The configuration is well-formed but unusable (for example `params_dir` does not exist).
    InvalidConfig = 6,
    /// A well-formed input the prover refuses: unsupported version or `hard_fork_name`, a chunk
    /// that fails its native checks, a batch whose chunk proofs do not verify or do not chain.
    InvalidInput = 7,
    /// Parameters or proving keys could not be loaded or generated (missing `kzg_bn254_{k}.srs`,
    /// unreadable or corrupt key cache), or (`prover_init`) the host CPU lacks instructions this
    /// build's field arithmetic uses (x86-64: BMI2 and ADX).
    Setup = 8,
    /// The proving engine failed on an accepted task.
    ProveFailed = 9,
    /// The library panicked; the panic was caught and the handle is still usable.
    Panic = 10,
    /// An internal error (a bug): the message says what.
    Internal = 11,
    /// `prover_verify` could not check the proof: it is for a circuit configuration whose keys are
    /// not in `keys_dir` and that is not in the config's `verify_allow` (verification never
    /// generates keys for a circuit an untrusted proof names). The message names the configuration.
    UnknownCircuit = 12,
}

/// Errors of the C ABI, converted to a [`ProverStatus`] and a message at the boundary.
#[derive(Debug, thiserror::Error)]
pub enum FfiError {
    #[error("{0} is NULL")]
    Null(&'static str),
    #[error("{what} is not valid UTF-8: {source}")]
    Utf8 {
        what: &'static str,
        source: std::str::Utf8Error,
    },
    #[error("malformed {what} JSON: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("invalid handle: {0}")]
    Handle(&'static str),
    #[error("invalid config: {0}")]
    Config(String),
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error(transparent)]
    HostCpu(#[from] gpu::HostCpuError),
    #[error("panic in the prover library: {0}")]
    Panic(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl FfiError {
    /// The status code this error is reported as.
    pub fn status(&self) -> ProverStatus {
        match self {
            FfiError::Null(_) => ProverStatus::NullPointer,
            FfiError::Utf8 { .. } => ProverStatus::InvalidUtf8,
            FfiError::Json { .. } => ProverStatus::MalformedJson,
            FfiError::Handle(_) => ProverStatus::InvalidHandle,
            FfiError::Config(_) => ProverStatus::InvalidConfig,
            FfiError::Core(e) => core_status(e),
            FfiError::HostCpu(_) => ProverStatus::Setup,
            FfiError::Panic(_) => ProverStatus::Panic,
            FfiError::Internal(_) => ProverStatus::Internal,
        }
    }
}

fn core_status(e: &CoreError) -> ProverStatus {
    match e {
        CoreError::Wire(WireError::Json { .. }) => ProverStatus::MalformedJson,
        CoreError::Wire(WireError::UnknownTaskType(_)) => ProverStatus::UnknownTaskType,
        CoreError::Wire(_)
        | CoreError::Chunk(_)
        | CoreError::Batch(_)
        | CoreError::Bundle(_)
        | CoreError::VkMismatch { .. }
        | CoreError::InstanceCount { .. }
        | CoreError::BadAccumulator
        | CoreError::AccumulatorPairing => ProverStatus::InvalidInput,
        CoreError::Params(_) | CoreError::Keys(_) | CoreError::Backend(_) => ProverStatus::Setup,
        CoreError::Engine(_) => ProverStatus::ProveFailed,
        CoreError::UnknownCircuit { .. } => ProverStatus::UnknownCircuit,
        CoreError::Evm(_) => ProverStatus::Internal,
    }
}

// ---------------------------------------------------------------------------------------------
// Last error (thread-local)

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // A message cannot hold NUL bytes in C; replace them rather than lose the message.
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    // `try_with`: during thread teardown the slot may be gone; the message is then dropped.
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = c);
}

/// Runs `f` with panics caught; an error or a panic becomes its status and the last error.
fn guard<F>(f: F) -> i32
where
    F: FnOnce() -> Result<(), FfiError> + UnwindSafe,
{
    let result =
        catch_unwind(f).unwrap_or_else(|payload| Err(FfiError::Panic(panic_message(&*payload))));
    match result {
        Ok(()) => ProverStatus::Ok as i32,
        Err(e) => {
            set_last_error(&e.to_string());
            e.status() as i32
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Handles

/// Tag of a live handle; cleared on free.
const MAGIC: u64 = 0x5052_4f56_4552_4646; // "PROVERFF"

/// An opaque prover handle: the proving core with its parameters and key cache.
///
/// Created by `prover_init`, released by `prover_free`. Usable from several threads at once.
pub struct Prover {
    magic: AtomicU64,
    core: Arc<ProvingCore>,
}

/// Addresses of the live handles. A handle is dereferenced only while its address is in this set,
/// under this lock; `prover_free` removes it (under the lock) before releasing the memory. So a
/// freed or foreign pointer is detected without reading memory that is not ours.
static LIVE_HANDLES: Mutex<BTreeSet<usize>> = Mutex::new(BTreeSet::new());
/// Addresses of the strings handed out and not yet freed (so a double or foreign free is detected).
static LIVE_STRINGS: Mutex<BTreeSet<usize>> = Mutex::new(BTreeSet::new());

fn lock(set: &'static Mutex<BTreeSet<usize>>) -> MutexGuard<'static, BTreeSet<usize>> {
    set.lock().unwrap_or_else(|p| p.into_inner())
}

/// The core behind a live handle. In-flight calls hold their own `Arc`, so a concurrent
/// `prover_free` cannot pull the core from under them.
fn core_of(p: *mut Prover) -> Result<Arc<ProvingCore>, FfiError> {
    if p.is_null() {
        return Err(FfiError::Null("prover handle"));
    }
    let live = lock(&LIVE_HANDLES);
    if !live.contains(&(p as usize)) {
        return Err(FfiError::Handle(
            "not a live handle from prover_init (already freed, or foreign memory)",
        ));
    }
    // SAFETY: the address is in LIVE_HANDLES, so it is a `Box<Prover>` made by `prover_init` and
    // not yet freed; `prover_free` removes it from the set under this same lock before freeing.
    let handle = unsafe { &*p };
    if handle.magic.load(Ordering::Acquire) != MAGIC {
        return Err(FfiError::Handle("bad magic tag"));
    }
    Ok(handle.core.clone())
}

// ---------------------------------------------------------------------------------------------
// Pointer helpers

/// Borrows a C string as UTF-8.
///
/// # Safety
/// `s` is NULL or points to a NUL-terminated string valid for the duration of the call.
unsafe fn str_arg<'a>(s: *const c_char, what: &'static str) -> Result<&'a str, FfiError> {
    if s.is_null() {
        return Err(FfiError::Null(what));
    }
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string that outlives the call.
    let c = unsafe { CStr::from_ptr(s) };
    c.to_str().map_err(|source| FfiError::Utf8 { what, source })
}

/// Hands a string to C; it must come back through `prover_string_free`.
fn string_out(s: String) -> Result<*mut c_char, FfiError> {
    let c = CString::new(s).map_err(|e| FfiError::Internal(format!("string with a NUL: {e}")))?;
    let raw = c.into_raw();
    lock(&LIVE_STRINGS).insert(raw as usize);
    Ok(raw)
}

// ---------------------------------------------------------------------------------------------
// Exports

/// The library version, a static NUL-terminated string. Never free it.
#[no_mangle]
pub extern "C" fn prover_version() -> *const c_char {
    static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr().cast()
}

/// Creates a prover from `config_json`, the `prover` section of config.json
/// (`{"params_dir": "...", "keys_dir": "..."}`), and stores the handle in `*out`. Two optional
/// keys choose what proves: `"engine"` (`"native"`, the default, or `"reference"`) and `"backend"`
/// (`"auto"`, the default, `"cpu"` or `"cuda"`; selected at the first native proof). A third,
/// `"verify_allow"` (a list of circuit specs as proofs carry them in `spec`, e.g.
/// `{"circuit": "chunk", "config": {"k": 13, "tree_depth": 4, "max_txs": 2}}`; empty by default),
/// names the configurations `prover_verify` may generate keys for. A fourth,
/// `"keys_disk_reserve_mib"` (default 2048), is the free space the key and coset caches leave on
/// `keys_dir`'s filesystem.
///
/// Fails (`PROVER_STATUS_INVALID_CONFIG`) if `params_dir` is not a directory, and
/// (`PROVER_STATUS_SETUP`) on an x86-64 CPU without BMI2 and ADX. Parameters and keys
/// are loaded (keys generated into `keys_dir` by `prover_prove`) on first use and kept for the
/// handle's lifetime.
/// `*out` is written only on success; free the handle with `prover_free`.
///
/// # Safety
/// `config_json` is NULL or a NUL-terminated string; `out` is NULL or points to writable storage
/// for one pointer.
#[no_mangle]
pub unsafe extern "C" fn prover_init(config_json: *const c_char, out: *mut *mut Prover) -> i32 {
    guard(AssertUnwindSafe(|| {
        // SAFETY: per this function's contract.
        let text = unsafe { str_arg(config_json, "config_json") }?;
        if out.is_null() {
            return Err(FfiError::Null("out"));
        }
        // Before any field arithmetic: a CPU this build cannot run gets a status, not SIGILL.
        gpu::check_host_cpu()?;
        let section: CoreConfig = serde_json::from_str(text).map_err(|source| FfiError::Json {
            what: "config",
            source,
        })?;
        if !section.params_dir.is_dir() {
            return Err(FfiError::Config(format!(
                "params_dir {} is not a directory",
                section.params_dir.display()
            )));
        }
        let core = ProvingCore::new(section);
        let raw = Box::into_raw(Box::new(Prover {
            magic: AtomicU64::new(MAGIC),
            core: Arc::new(core),
        }));
        lock(&LIVE_HANDLES).insert(raw as usize);
        // SAFETY: `out` is non-NULL and, per the contract, writable.
        unsafe { out.write(raw) };
        Ok(())
    }))
}

/// Proves `task_json` (a task exactly as the coordinator hands it out, as `prover prove --task`
/// reads it) and stores the proof JSON (what `prover prove --out` writes) in `*out_proof_json`.
///
/// Thread-safe: calls on one handle from several threads run in parallel. `*out_proof_json` is
/// written only on success; free it with `prover_string_free`.
///
/// # Safety
/// `p` is any pointer value (it is checked against the live handles before use); `task_json` is
/// NULL or a NUL-terminated string; `out_proof_json` is NULL or points to writable storage for one
/// pointer.
#[no_mangle]
pub unsafe extern "C" fn prover_prove(
    p: *mut Prover,
    task_json: *const c_char,
    out_proof_json: *mut *mut c_char,
) -> i32 {
    guard(AssertUnwindSafe(|| {
        let core = core_of(p)?;
        // SAFETY: per this function's contract.
        let text = unsafe { str_arg(task_json, "task_json") }?;
        if out_proof_json.is_null() {
            return Err(FfiError::Null("out_proof_json"));
        }
        let task: Task = wire::from_json("task", text).map_err(CoreError::from)?;
        let proof = core.prove_task(&task, ChaCha20Rng::from_entropy())?;
        let json = serde_json::to_string(&proof)
            .map_err(|e| FfiError::Internal(format!("serialising the proof: {e}")))?;
        let raw = string_out(json)?;
        // SAFETY: `out_proof_json` is non-NULL and, per the contract, writable.
        unsafe { out_proof_json.write(raw) };
        Ok(())
    }))
}

/// Verifies `proof_json` (what `prover prove --out` writes) and stores the verdict in `*out_valid`.
///
/// An invalid proof is not an error: the call returns `PROVER_STATUS_OK` with `*out_valid = false`
/// and sets `prover_last_error()` to the reason. An error status means the proof could not be
/// checked (malformed JSON, missing parameters, ...); `*out_valid` is then not written.
///
/// Verification never generates keys unless the proof's circuit is in `verify_allow`: a proof for
/// a configuration whose keys are not in `keys_dir` (keys made by `prover_prove`, `prover prove` or
/// `prover verify --allow-keygen`) fails with `PROVER_STATUS_UNKNOWN_CIRCUIT`, before any parameter
/// or key is loaded; one whose configuration is out of the supported range (k, tree depth, ...)
/// is invalid (`*out_valid = false`).
///
/// # Safety
/// `p` is any pointer value (checked before use); `proof_json` is NULL or a NUL-terminated string;
/// `out_valid` is NULL or points to a writable `bool`.
#[no_mangle]
pub unsafe extern "C" fn prover_verify(
    p: *mut Prover,
    proof_json: *const c_char,
    out_valid: *mut bool,
) -> i32 {
    guard(AssertUnwindSafe(|| {
        let core = core_of(p)?;
        // SAFETY: per this function's contract.
        let text = unsafe { str_arg(proof_json, "proof_json") }?;
        if out_valid.is_null() {
            return Err(FfiError::Null("out_valid"));
        }
        let proof = ProofPayload::from_json_str(text).map_err(CoreError::from)?;
        let valid = match core.verify(&proof) {
            Ok(_) => true,
            // "Could not verify" (setup, or a circuit with no cached keys) is an error status.
            Err(e) if e.is_rejection() => {
                set_last_error(&format!("proof is invalid: {e}"));
                false
            }
            Err(e) => return Err(e.into()),
        };
        // SAFETY: `out_valid` is non-NULL and, per the contract, writable.
        unsafe { out_valid.write(valid) };
        Ok(())
    }))
}

/// The message of the last failed call on this thread ("" if none), or the reason of the last
/// `*out_valid = false` from `prover_verify`.
///
/// The string belongs to the library: do not free it. It stays valid until the next call into
/// the library on the same thread that fails (or rejects a proof), or until the thread exits.
#[no_mangle]
pub extern "C" fn prover_last_error() -> *const c_char {
    catch_unwind(|| {
        LAST_ERROR
            .try_with(|slot| slot.borrow().as_ptr())
            .unwrap_or(c"".as_ptr())
    })
    .unwrap_or(c"".as_ptr())
}

/// Frees a string returned through an out-pointer (`prover_prove`'s proof). NULL is a no-op; a
/// pointer this library did not hand out (or already freed) is ignored and sets the last error.
///
/// # Safety
/// `s` is any pointer value; it is checked against the strings handed out before it is freed.
#[no_mangle]
pub unsafe extern "C" fn prover_string_free(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    guard(AssertUnwindSafe(|| {
        if !lock(&LIVE_STRINGS).remove(&(s as usize)) {
            return Err(FfiError::Handle(
                "prover_string_free: not a string from this library (already freed?)",
            ));
        }
        // SAFETY: the address was in LIVE_STRINGS, so it came from `CString::into_raw` in
        // `string_out` and was not freed since (it is removed from the set exactly once).
        drop(unsafe { CString::from_raw(s) });
        Ok(())
    }));
}

/// Releases a handle. NULL is a no-op; a handle that is not live (already freed, foreign) is
/// ignored and sets the last error. Calls still running on the handle in other threads finish
/// normally; later calls with it fail with `PROVER_STATUS_INVALID_HANDLE`.
///
/// # Safety
/// `p` is any pointer value; it is checked against the live handles before it is freed.
#[no_mangle]
pub unsafe extern "C" fn prover_free(p: *mut Prover) {
    if p.is_null() {
        return;
    }
    guard(AssertUnwindSafe(|| {
        let mut live = lock(&LIVE_HANDLES);
        if !live.remove(&(p as usize)) {
            return Err(FfiError::Handle(
                "prover_free: not a live handle from prover_init (already freed?)",
            ));
        }
        // SAFETY: the address was in LIVE_HANDLES (removed just now, under the lock that
        // `core_of` takes), so it is a `Box<Prover>` from `prover_init` that nobody else frees.
        let handle = unsafe { Box::from_raw(p) };
        handle.magic.store(0, Ordering::Release);
        drop(live);
        drop(handle);
        Ok(())
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        // SAFETY: prover_last_error always returns a valid NUL-terminated string.
        unsafe { CStr::from_ptr(prover_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let code = guard(|| panic!("boom {}", 42));
        assert_eq!(code, ProverStatus::Panic as i32);
        assert!(last_error().contains("boom 42"), "{}", last_error());
        let code = guard(|| std::panic::panic_any(7u8));
        assert_eq!(code, ProverStatus::Panic as i32);
        assert!(last_error().contains("non-string"), "{}", last_error());
    }

    #[test]
    fn last_error_is_per_thread() {
        set_last_error("main thread");
        std::thread::spawn(|| {
            assert_eq!(last_error(), "");
            set_last_error("other thread");
        })
        .join()
        .unwrap();
        assert_eq!(last_error(), "main thread");
    }

    #[test]
    fn messages_with_nul_survive() {
        set_last_error("a\0b");
        assert_eq!(last_error(), "a\\0b");
    }

    #[test]
    fn version_is_the_crate_version() {
        // SAFETY: prover_version returns a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(prover_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}
