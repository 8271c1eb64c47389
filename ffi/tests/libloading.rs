//! Drives the built `libprover_ffi.so` as a foreign host would: loaded at run time with
//! libloading (not linked as a Rust crate), every export called, every documented error path
//! checked for its status code and a non-empty `prover_last_error()`.

use std::ffi::{c_char, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use libloading::Library;

// The status codes of include/prover.h (ProverStatus).
const OK: i32 = 0;
const NULL_POINTER: i32 = 1;
const INVALID_UTF8: i32 = 2;
const MALFORMED_JSON: i32 = 3;
const UNKNOWN_TASK_TYPE: i32 = 4;
const INVALID_HANDLE: i32 = 5;
const INVALID_CONFIG: i32 = 6;
const INVALID_INPUT: i32 = 7;
const SETUP: i32 = 8;
const UNKNOWN_CIRCUIT: i32 = 12;

/// Opaque handle, as C sees it.
#[repr(C)]
struct Prover {
    _private: [u8; 0],
}

type VersionFn = unsafe extern "C" fn() -> *const c_char;
type InitFn = unsafe extern "C" fn(*const c_char, *mut *mut Prover) -> i32;
type ProveFn = unsafe extern "C" fn(*mut Prover, *const c_char, *mut *mut c_char) -> i32;
type VerifyFn = unsafe extern "C" fn(*mut Prover, *const c_char, *mut bool) -> i32;
type LastErrorFn = unsafe extern "C" fn() -> *const c_char;
type StringFreeFn = unsafe extern "C" fn(*mut c_char);
type FreeFn = unsafe extern "C" fn(*mut Prover);

struct Api {
    version: VersionFn,
    init: InitFn,
    prove: ProveFn,
    verify: VerifyFn,
    last_error: LastErrorFn,
    string_free: StringFreeFn,
    free: FreeFn,
    _lib: Library,
}

/// A handle pointer that can be sent to other threads (the library documents handles as shareable).
#[derive(Clone, Copy)]
struct Handle(*mut Prover);
// SAFETY: the C ABI documents a handle as usable from several threads at once.
unsafe impl Send for Handle {}
// SAFETY: as above.
unsafe impl Sync for Handle {}

mod common;

fn library_path() -> PathBuf {
    common::lib_dir().join(format!(
        "{}prover_ffi{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

impl Api {
    fn load() -> Arc<Api> {
        // SAFETY: loading our own library runs no initialisers with preconditions; every symbol is
        // read with the signature include/prover.h declares for it.
        unsafe {
            let lib = Library::new(library_path()).unwrap();
            Arc::new(Api {
                version: *lib.get::<VersionFn>(b"prover_version\0").unwrap(),
                init: *lib.get::<InitFn>(b"prover_init\0").unwrap(),
                prove: *lib.get::<ProveFn>(b"prover_prove\0").unwrap(),
                verify: *lib.get::<VerifyFn>(b"prover_verify\0").unwrap(),
                last_error: *lib.get::<LastErrorFn>(b"prover_last_error\0").unwrap(),
                string_free: *lib.get::<StringFreeFn>(b"prover_string_free\0").unwrap(),
                free: *lib.get::<FreeFn>(b"prover_free\0").unwrap(),
                _lib: lib,
            })
        }
    }

    fn last_error(&self) -> String {
        // SAFETY: prover_last_error returns a library-owned NUL-terminated string.
        unsafe { CStr::from_ptr((self.last_error)()) }
            .to_string_lossy()
            .into_owned()
    }

    /// Asserts `code` and a non-empty last error mentioning `needle`.
    #[track_caller]
    fn assert_err(&self, code: i32, expected: i32, needle: &str) {
        let msg = self.last_error();
        assert_eq!(code, expected, "status (last error: {msg})");
        assert!(!msg.is_empty(), "empty last error for status {code}");
        assert!(
            msg.to_lowercase().contains(&needle.to_lowercase()),
            "last error {msg:?} does not mention {needle:?}"
        );
    }

    fn init(&self, config: &str) -> (i32, *mut Prover) {
        let c = CString::new(config).unwrap();
        let mut out = std::ptr::null_mut();
        // SAFETY: valid C string and out-pointer.
        let code = unsafe { (self.init)(c.as_ptr(), &mut out) };
        (code, out)
    }

    fn prove(&self, p: *mut Prover, task: &[u8]) -> (i32, Option<String>) {
        let c = CString::new(task).unwrap();
        let mut out: *mut c_char = std::ptr::null_mut();
        // SAFETY: valid C string and out-pointer; `p` is checked by the library.
        let code = unsafe { (self.prove)(p, c.as_ptr(), &mut out) };
        if out.is_null() {
            return (code, None);
        }
        // SAFETY: a string from prover_prove, read once and freed once.
        let s = unsafe { CStr::from_ptr(out) }.to_str().unwrap().to_owned();
        // SAFETY: `out` came from prover_prove.
        unsafe { (self.string_free)(out) };
        (code, Some(s))
    }

    fn verify(&self, p: *mut Prover, proof: &[u8]) -> (i32, Option<bool>) {
        let c = CString::new(proof).unwrap();
        let mut valid = false;
        let mut sentinel = true;
        // SAFETY: valid C string and out-pointer.
        let code = unsafe { (self.verify)(p, c.as_ptr(), &mut valid) };
        if code != OK {
            // Not written on error: check with a second call into a sentinel-initialised bool.
            // SAFETY: as above.
            let again = unsafe { (self.verify)(p, c.as_ptr(), &mut sentinel) };
            assert_eq!(again, code);
            assert!(sentinel, "out_valid written on error");
            return (code, None);
        }
        (code, Some(valid))
    }
}

fn config_json(params: &Path, keys: &Path) -> String {
    serde_json::json!({ "params_dir": params, "keys_dir": keys }).to_string()
}

/// A well-formed proof (garbage proof bytes) claiming the chunk circuit `config`.
fn crafted_proof(config: serde_json::Value) -> String {
    serde_json::json!({
        "version": (prover_core::wire::PROOF_VERSION),
        "task_id": "crafted",
        "spec": {"circuit": "chunk", "config": config},
        "vk_digest": "AAAA",
        "instances": (vec![prover_core::wire::FrHex::default(); 3]),
        "proof": "AAAA",
        "meta": {"engine": "native", "backend": "cpu", "prove_ms": 0},
    })
    .to_string()
}

/// File names and sizes in `dir`.
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, e.metadata().unwrap().len())
        })
        .collect();
    v.sort();
    v
}

fn sample_task() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/chunk-k13.task.json");
    std::fs::read_to_string(path).unwrap()
}

fn dev_params() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    params::ensure_dev(dir.path(), 13, false).unwrap();
    dir
}

#[test]
fn version_is_static_and_nonempty() {
    let api = Api::load();
    // SAFETY: static NUL-terminated string.
    let v = unsafe { CStr::from_ptr((api.version)()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    // Same pointer every time: nothing to free.
    // SAFETY: no arguments.
    assert_eq!(unsafe { (api.version)() }, v.as_ptr());
}

#[test]
fn init_error_paths() {
    let api = Api::load();
    let params = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let good = config_json(params.path(), keys.path());

    let mut out = std::ptr::null_mut();
    // SAFETY: NULL config is a documented error.
    let code = unsafe { (api.init)(std::ptr::null(), &mut out) };
    api.assert_err(code, NULL_POINTER, "config_json");
    assert!(out.is_null());

    let c = CString::new(good.clone()).unwrap();
    // SAFETY: NULL out is a documented error.
    let code = unsafe { (api.init)(c.as_ptr(), std::ptr::null_mut()) };
    api.assert_err(code, NULL_POINTER, "out");

    let bad_utf8 = CString::new(vec![b'{', 0xff, 0xfe, b'}']).unwrap();
    // SAFETY: valid C string (not UTF-8).
    let code = unsafe { (api.init)(bad_utf8.as_ptr(), &mut out) };
    api.assert_err(code, INVALID_UTF8, "utf-8");
    assert!(out.is_null());

    let (code, out) = api.init("{not json");
    api.assert_err(code, MALFORMED_JSON, "config");
    assert!(out.is_null());

    let (code, _) = api.init(r#"{"params_dir": "/tmp", "keys_dir": "/tmp", "extra": 1}"#);
    api.assert_err(code, MALFORMED_JSON, "extra");

    let (code, _) = api.init(&config_json(&params.path().join("missing"), keys.path()));
    api.assert_err(code, INVALID_CONFIG, "params_dir");

    let (code, p) = api.init(&good);
    assert_eq!(code, OK, "{}", api.last_error());
    assert!(!p.is_null());
    // SAFETY: a live handle, freed once.
    unsafe { (api.free)(p) };
}

#[test]
fn handle_and_free_error_paths() {
    let api = Api::load();
    let params = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let task = sample_task();

    // NULL handle.
    let (code, out) = api.prove(std::ptr::null_mut(), task.as_bytes());
    api.assert_err(code, NULL_POINTER, "handle");
    assert!(out.is_none());
    let (code, _) = api.verify(std::ptr::null_mut(), b"{}");
    api.assert_err(code, NULL_POINTER, "handle");

    // Foreign memory posing as a handle.
    let mut fake = [0x5050_5050_5050_5050u64; 8];
    let foreign = fake.as_mut_ptr().cast::<Prover>();
    let (code, _) = api.prove(foreign, task.as_bytes());
    api.assert_err(code, INVALID_HANDLE, "handle");
    let (code, _) = api.verify(foreign, b"{}");
    api.assert_err(code, INVALID_HANDLE, "handle");

    // A freed handle.
    let (code, p) = api.init(&config_json(params.path(), keys.path()));
    assert_eq!(code, OK, "{}", api.last_error());
    // SAFETY: a live handle.
    unsafe { (api.free)(p) };
    let (code, _) = api.prove(p, task.as_bytes());
    api.assert_err(code, INVALID_HANDLE, "freed");
    let (code, _) = api.verify(p, b"{}");
    api.assert_err(code, INVALID_HANDLE, "freed");

    // Double free and foreign free: ignored, reported in the last error.
    // SAFETY: the library checks the pointer before freeing; the documented result is a no-op.
    unsafe { (api.free)(p) };
    api.assert_err(INVALID_HANDLE, INVALID_HANDLE, "prover_free");
    // SAFETY: as above.
    unsafe { (api.free)(foreign) };
    api.assert_err(INVALID_HANDLE, INVALID_HANDLE, "prover_free");
    assert_eq!(fake[0], 0x5050_5050_5050_5050, "foreign memory was written");
    // NULL: no-op.
    // SAFETY: documented no-op.
    unsafe { (api.free)(std::ptr::null_mut()) };
    // SAFETY: documented no-op.
    unsafe { (api.string_free)(std::ptr::null_mut()) };
    // A string the library did not hand out.
    let mine = CString::new("not yours").unwrap().into_raw();
    // SAFETY: the library checks the pointer before freeing.
    unsafe { (api.string_free)(mine) };
    api.assert_err(INVALID_HANDLE, INVALID_HANDLE, "prover_string_free");
    // SAFETY: still ours, freed once.
    drop(unsafe { CString::from_raw(mine) });
}

#[test]
fn input_error_paths_on_a_live_handle() {
    let api = Api::load();
    let params = tempfile::tempdir().unwrap(); // exists but holds no kzg_bn254_13.srs
    let keys = tempfile::tempdir().unwrap();
    let (code, p) = api.init(&config_json(params.path(), keys.path()));
    assert_eq!(code, OK, "{}", api.last_error());
    let task = sample_task();

    // prover_prove
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: NULL task is a documented error.
    let code = unsafe { (api.prove)(p, std::ptr::null(), &mut out) };
    api.assert_err(code, NULL_POINTER, "task_json");
    assert!(out.is_null());
    let c = CString::new(task.clone()).unwrap();
    // SAFETY: NULL out is a documented error.
    let code = unsafe { (api.prove)(p, c.as_ptr(), std::ptr::null_mut()) };
    api.assert_err(code, NULL_POINTER, "out_proof_json");
    let (code, _) = api.prove(p, &[b'{', 0xc3, 0x28, b'}']);
    api.assert_err(code, INVALID_UTF8, "utf-8");
    let (code, _) = api.prove(p, b"{\"uuid\": ");
    api.assert_err(code, MALFORMED_JSON, "task");
    let (code, _) = api.prove(
        p,
        task.replace("\"task_type\": 1", "\"task_type\": 9")
            .as_bytes(),
    );
    api.assert_err(code, UNKNOWN_TASK_TYPE, "task type 9");
    let (code, _) = api.prove(p, task.replace("pnode-v1", "bernoulli").as_bytes());
    api.assert_err(code, INVALID_INPUT, "hard_fork_name");
    let (code, _) = api.prove(
        p,
        task.replace("\\\"version\\\":1", "\\\"version\\\":1,\\\"x\\\":0")
            .as_bytes(),
    );
    api.assert_err(code, MALFORMED_JSON, "task_data");
    // Well-formed, but this params_dir has no SRS for k = 13.
    let (code, out) = api.prove(p, task.as_bytes());
    api.assert_err(code, SETUP, "kzg_bn254_13");
    assert!(out.is_none());

    // prover_verify
    let mut valid = false;
    // SAFETY: NULL proof is a documented error.
    let code = unsafe { (api.verify)(p, std::ptr::null(), &mut valid) };
    api.assert_err(code, NULL_POINTER, "proof_json");
    let c = CString::new("{}").unwrap();
    // SAFETY: NULL out_valid is a documented error.
    let code = unsafe { (api.verify)(p, c.as_ptr(), std::ptr::null_mut()) };
    api.assert_err(code, NULL_POINTER, "out_valid");
    let (code, _) = api.verify(p, &[0xff]);
    api.assert_err(code, INVALID_UTF8, "utf-8");
    let (code, _) = api.verify(p, b"[1, 2");
    api.assert_err(code, MALFORMED_JSON, "proof");
    // A circuit with no cached keys: refused as such (not as missing parameters: no SRS is read),
    // and no keys are generated.
    let unknown = crafted_proof(serde_json::json!({"k": 13, "tree_depth": 4, "max_txs": 2}));
    let (code, _) = api.verify(p, unknown.as_bytes());
    api.assert_err(code, UNKNOWN_CIRCUIT, "verify_allow");
    assert!(listing(keys.path()).is_empty(), "no keys written");
    // Out of the supported range: an invalid proof, refused before any lookup.
    let absurd = crafted_proof(serde_json::json!({"k": 99, "tree_depth": 4, "max_txs": 2}));
    let (code, valid) = api.verify(p, absurd.as_bytes());
    assert_eq!((code, valid), (OK, Some(false)), "{}", api.last_error());
    assert!(api.last_error().contains("k 99"), "{}", api.last_error());

    // SAFETY: a live handle, freed once.
    unsafe { (api.free)(p) };
}

#[test]
fn last_error_is_thread_local() {
    let api = Api::load();
    let (code, _) = api.init("{not json");
    api.assert_err(code, MALFORMED_JSON, "config");
    let before = api.last_error();
    let other = api.clone();
    std::thread::spawn(move || {
        assert_eq!(
            other.last_error(),
            "",
            "a new thread starts without an error"
        );
        // SAFETY: NULL config is a documented error.
        let code = unsafe { (other.init)(std::ptr::null(), &mut std::ptr::null_mut()) };
        other.assert_err(code, NULL_POINTER, "config_json");
    })
    .join()
    .unwrap();
    assert_eq!(
        api.last_error(),
        before,
        "another thread's error leaked into this one"
    );
}

/// The happy path, a rejected proof, and two proofs at once on one handle.
#[test]
fn prove_verify_and_concurrent_proofs() {
    let api = Api::load();
    let params = dev_params();
    let keys = tempfile::tempdir().unwrap();
    let (code, p) = api.init(&config_json(params.path(), keys.path()));
    assert_eq!(code, OK, "{}", api.last_error());
    let task = sample_task();

    let started = std::time::Instant::now();
    let (code, proof) = api.prove(p, task.as_bytes());
    assert_eq!(code, OK, "{}", api.last_error());
    let proof = proof.unwrap();
    eprintln!("first proof (with keygen): {:?}", started.elapsed());
    // The proof is what `prover prove --out` writes: the wire ProofPayload.
    let payload = prover_core::wire::ProofPayload::from_json_str(&proof).unwrap();
    assert_eq!(payload.task_id, "chunk-7-0");

    let (code, valid) = api.verify(p, proof.as_bytes());
    assert_eq!(code, OK, "{}", api.last_error());
    assert_eq!(valid, Some(true));

    // A tampered proof: OK status, not valid, the reason in the last error.
    let mut bad = payload.clone();
    bad.instances.swap(0, 1);
    let bad = serde_json::to_string(&bad).unwrap();
    let (code, valid) = api.verify(p, bad.as_bytes());
    assert_eq!(code, OK, "{}", api.last_error());
    assert_eq!(valid, Some(false));
    assert!(api.last_error().contains("invalid"), "{}", api.last_error());
    let mut wrong_vk = payload.clone();
    wrong_vk.vk_digest = "AAAA".into();
    let (code, valid) = api.verify(p, serde_json::to_string(&wrong_vk).unwrap().as_bytes());
    assert_eq!((code, valid), (OK, Some(false)));
    assert!(
        api.last_error().contains("verifying key"),
        "{}",
        api.last_error()
    );

    // The proof claiming a circuit configuration with no cached keys: an error status (could not
    // verify, `*out_valid` not written), quickly, and no keys generated. Before, the library
    // generated and stored keys for whatever `spec` the proof named.
    let keys_before = listing(keys.path());
    let mut other = payload.clone();
    let prover_core::wire::CircuitSpec::Chunk { config } = &mut other.spec else {
        panic!("a chunk proof");
    };
    config.tree_depth += 1;
    let other = serde_json::to_string(&other).unwrap();
    let started = std::time::Instant::now();
    let (code, valid) = api.verify(p, other.as_bytes());
    eprintln!("unknown circuit refused in {:?}", started.elapsed());
    assert_eq!(valid, None);
    api.assert_err(code, UNKNOWN_CIRCUIT, r#""tree_depth":5"#);
    api.assert_err(code, UNKNOWN_CIRCUIT, "verify_allow");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!(listing(keys.path()), keys_before, "no keys written");
    // A handle whose config allows that configuration: its keys are made, and the proof (made for
    // another circuit) is then invalid for it.
    let allowing = serde_json::json!({
        "params_dir": params.path(),
        "keys_dir": keys.path(),
        "verify_allow": [serde_json::from_str::<serde_json::Value>(&other).unwrap()["spec"]],
    });
    let (code, q) = api.init(&allowing.to_string());
    assert_eq!(code, OK, "{}", api.last_error());
    let (code, valid) = api.verify(q, other.as_bytes());
    assert_eq!((code, valid), (OK, Some(false)), "{}", api.last_error());
    assert!(
        api.last_error().contains("verifying key"),
        "{}",
        api.last_error()
    );
    assert_eq!(listing(keys.path()).len(), keys_before.len() + 2);
    // SAFETY: a live handle, freed once.
    unsafe { (api.free)(q) };

    // Two proofs at once on one handle, each verified by its own thread.
    let started = std::time::Instant::now();
    let h = Handle(p);
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let api = api.clone();
            let task = task.clone();
            std::thread::spawn(move || {
                let h = h;
                let (code, proof) = api.prove(h.0, task.as_bytes());
                assert_eq!(code, OK, "{}", api.last_error());
                let (code, valid) = api.verify(h.0, proof.unwrap().as_bytes());
                assert_eq!((code, valid), (OK, Some(true)), "{}", api.last_error());
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    eprintln!(
        "two concurrent proofs + verifications: {:?}",
        started.elapsed()
    );

    // Freeing the handle while a proof runs on it: the running call finishes (it holds its own
    // reference to the core) or, if the free came first, fails cleanly; later calls fail cleanly.
    let racer = {
        let api = api.clone();
        let task = task.clone();
        std::thread::spawn(move || {
            let h = h;
            api.prove(h.0, task.as_bytes())
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SAFETY: a live handle, freed once.
    unsafe { (api.free)(p) };
    let (code, proof_during_free) = racer.join().unwrap();
    assert!(code == OK || code == INVALID_HANDLE, "status {code}");
    eprintln!("proof racing prover_free: status {code}");
    if code == OK {
        prover_core::wire::ProofPayload::from_json_str(&proof_during_free.unwrap()).unwrap();
    }
    let (code, _) = api.verify(p, proof.as_bytes());
    api.assert_err(code, INVALID_HANDLE, "handle");
}
