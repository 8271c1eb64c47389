//! A minimal NVRTC binding (libloading) used by the CUDA backend to compile the kernels at run
//! time, and the on-disk cache of compiled CUBINs.
//!
//! Not cudarc's NVRTC module: cudarc derives its candidate names from the CUDA version of its
//! bindings (12.6 here, so `libnvrtc.so.12`, not CUDA 13's `libnvrtc.so.13`) and panics when none
//! loads, while a missing library must be an `Err`. Candidates, in order: `$GPU_NVRTC_LIB`, `libnvrtc.so`,
//! `libnvrtc.so.13`, `libnvrtc.so.12` (dlopen search path), then the same names under
//! `$CUDA_HOME/lib64`, `/usr/local/cuda/lib64` and the repository's `.tools/nvrtc` wheel.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, CStr, CString};
use std::path::{Path, PathBuf};

use libloading::{Library, Symbol};
use sha2::{Digest, Sha256};

use crate::backend::BackendError;

type NvrtcProgram = *mut std::ffi::c_void;
type NvrtcResult = c_int;

const NAMES: &[&str] = &["libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12"];

/// A loaded NVRTC library.
pub(crate) struct Nvrtc {
    lib: Library,
    /// Where it was loaded from (a path or a bare soname).
    pub(crate) origin: String,
    /// `(major, minor)` from `nvrtcVersion`.
    pub(crate) version: (i32, i32),
}

fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("GPU_NVRTC_LIB") {
        out.push(PathBuf::from(p));
    }
    out.extend(NAMES.iter().map(PathBuf::from));
    let mut dirs = Vec::new();
    for var in ["CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"] {
        if let Some(p) = std::env::var_os(var) {
            dirs.push(PathBuf::from(p).join("lib64"));
        }
    }
    dirs.push(PathBuf::from("/usr/local/cuda/lib64"));
    dirs.push(PathBuf::from("/usr/local/cuda/targets/x86_64-linux/lib"));
    dirs.push(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/nvrtc/nvidia/cuda_nvrtc/lib"),
    );
    for d in dirs {
        for n in NAMES {
            out.push(d.join(n));
        }
    }
    out
}

impl Nvrtc {
    /// Loads the first NVRTC library that opens.
    pub(crate) fn load() -> Result<Self, BackendError> {
        let mut tried = Vec::new();
        for cand in candidates() {
            // SAFETY: loading libnvrtc runs its initialisers, which have no preconditions; the
            // library stays loaded for the lifetime of `Nvrtc`, which outlives every symbol taken
            // from it (symbols are looked up per call and dropped before returning).
            match unsafe { Library::new(&cand) } {
                Ok(lib) => {
                    let mut n = Self {
                        lib,
                        origin: cand.display().to_string(),
                        version: (0, 0),
                    };
                    n.version = n.query_version()?;
                    return Ok(n);
                }
                Err(e) => tried.push(format!("{}: {e}", cand.display())),
            }
        }
        Err(BackendError::Unavailable(format!(
            "NVRTC (the CUDA run-time compiler) not found; set GPU_NVRTC_LIB or install the CUDA \
             toolkit's libnvrtc; tried: {}",
            tried.join("; ")
        )))
    }

    fn sym<T>(&self, name: &[u8]) -> Result<Symbol<'_, T>, BackendError> {
        // SAFETY: every call site names an NVRTC C function and gives `T` its exact C signature
        // (from nvrtc.h, CUDA 12/13; these functions are unchanged between them).
        unsafe { self.lib.get::<T>(name) }.map_err(|e| {
            BackendError::Unavailable(format!(
                "NVRTC at {}: symbol {}: {e}",
                self.origin,
                String::from_utf8_lossy(name)
            ))
        })
    }

    fn error_string(&self, code: NvrtcResult) -> String {
        type F = unsafe extern "C" fn(NvrtcResult) -> *const c_char;
        match self.sym::<F>(b"nvrtcGetErrorString\0") {
            // SAFETY: nvrtcGetErrorString returns a pointer to a static NUL-terminated string.
            Ok(f) => unsafe { CStr::from_ptr(f(code)) }
                .to_string_lossy()
                .into_owned(),
            Err(_) => format!("nvrtc error {code}"),
        }
    }

    fn query_version(&self) -> Result<(i32, i32), BackendError> {
        type F = unsafe extern "C" fn(*mut c_int, *mut c_int) -> NvrtcResult;
        let f = self.sym::<F>(b"nvrtcVersion\0")?;
        let (mut major, mut minor) = (0, 0);
        // SAFETY: both out-pointers are valid for writes.
        let rc = unsafe { f(&mut major, &mut minor) };
        if rc != 0 {
            return Err(BackendError::Unavailable(format!(
                "nvrtcVersion: {}",
                self.error_string(rc)
            )));
        }
        Ok((major, minor))
    }

    /// Compiles `source` with `headers` available by name. Returns the CUBIN (for an `sm_XY`
    /// target) or the PTX (for `compute_XY`); a failure carries the compiler log and options.
    pub(crate) fn compile(
        &self,
        name: &str,
        source: &str,
        headers: &[(&str, &str)],
        options: &[String],
    ) -> Result<Vec<u8>, BackendError> {
        type Create = unsafe extern "C" fn(
            *mut NvrtcProgram,
            *const c_char,
            *const c_char,
            c_int,
            *const *const c_char,
            *const *const c_char,
        ) -> NvrtcResult;
        type Compile =
            unsafe extern "C" fn(NvrtcProgram, c_int, *const *const c_char) -> NvrtcResult;
        type Size = unsafe extern "C" fn(NvrtcProgram, *mut usize) -> NvrtcResult;
        type Get = unsafe extern "C" fn(NvrtcProgram, *mut c_char) -> NvrtcResult;
        type Destroy = unsafe extern "C" fn(*mut NvrtcProgram) -> NvrtcResult;

        let cubin = options
            .iter()
            .any(|o| o.starts_with("--gpu-architecture=sm_"));
        let compile_err = |message: String, log: String| BackendError::Compile {
            unit: name.to_string(),
            options: options.to_vec(),
            message,
            log,
        };

        let create = self.sym::<Create>(b"nvrtcCreateProgram\0")?;
        let compile = self.sym::<Compile>(b"nvrtcCompileProgram\0")?;
        let log_size = self.sym::<Size>(b"nvrtcGetProgramLogSize\0")?;
        let get_log = self.sym::<Get>(b"nvrtcGetProgramLog\0")?;
        let (out_size, get_out) = if cubin {
            (
                self.sym::<Size>(b"nvrtcGetCUBINSize\0")?,
                self.sym::<Get>(b"nvrtcGetCUBIN\0")?,
            )
        } else {
            (
                self.sym::<Size>(b"nvrtcGetPTXSize\0")?,
                self.sym::<Get>(b"nvrtcGetPTX\0")?,
            )
        };
        let destroy = self.sym::<Destroy>(b"nvrtcDestroyProgram\0")?;

        let cstr = |s: &str| {
            CString::new(s).map_err(|e| compile_err(format!("NUL in input: {e}"), String::new()))
        };
        let c_source = cstr(source)?;
        let c_name = cstr(name)?;
        let c_header_texts = headers
            .iter()
            .map(|(_, t)| cstr(t))
            .collect::<Result<Vec<_>, _>>()?;
        let c_header_names = headers
            .iter()
            .map(|(n, _)| cstr(n))
            .collect::<Result<Vec<_>, _>>()?;
        let header_text_ptrs: Vec<*const c_char> =
            c_header_texts.iter().map(|c| c.as_ptr()).collect();
        let header_name_ptrs: Vec<*const c_char> =
            c_header_names.iter().map(|c| c.as_ptr()).collect();
        let c_options = options
            .iter()
            .map(|o| cstr(o))
            .collect::<Result<Vec<_>, _>>()?;
        let option_ptrs: Vec<*const c_char> = c_options.iter().map(|c| c.as_ptr()).collect();
        let n_headers = c_int::try_from(headers.len())
            .map_err(|_| compile_err("too many headers".into(), String::new()))?;
        let n_options = c_int::try_from(option_ptrs.len())
            .map_err(|_| compile_err("too many options".into(), String::new()))?;

        let mut prog: NvrtcProgram = std::ptr::null_mut();
        // SAFETY: all strings are NUL-terminated and outlive the call; the header arrays both have
        // `n_headers` entries; `prog` is a valid out-pointer.
        let rc = unsafe {
            create(
                &mut prog,
                c_source.as_ptr(),
                c_name.as_ptr(),
                n_headers,
                header_text_ptrs.as_ptr(),
                header_name_ptrs.as_ptr(),
            )
        };
        if rc != 0 {
            return Err(compile_err(
                format!("nvrtcCreateProgram: {}", self.error_string(rc)),
                String::new(),
            ));
        }
        // SAFETY: `prog` was created above; the option pointers are valid NUL-terminated strings
        // and there are `n_options` of them.
        let rc = unsafe { compile(prog, n_options, option_ptrs.as_ptr()) };
        let mut size = 0usize;
        // SAFETY: `prog` is valid; `size` is a valid out-pointer.
        let log = if unsafe { log_size(prog, &mut size) } == 0 && size > 1 {
            let mut buf = vec![0u8; size];
            // SAFETY: `buf` has the `size` bytes NVRTC asked for.
            if unsafe { get_log(prog, buf.as_mut_ptr().cast()) } == 0 {
                String::from_utf8_lossy(&buf[..size - 1]).into_owned()
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        let result = if rc != 0 {
            Err(compile_err(
                format!("nvrtcCompileProgram: {}", self.error_string(rc)),
                log,
            ))
        } else {
            let mut n = 0usize;
            // SAFETY: `prog` compiled successfully; `n` is a valid out-pointer.
            let rc = unsafe { out_size(prog, &mut n) };
            if rc != 0 {
                Err(compile_err(
                    format!("output size: {}", self.error_string(rc)),
                    log,
                ))
            } else if n == 0 {
                Err(compile_err("empty output".into(), log))
            } else {
                let mut buf = vec![0u8; n];
                // SAFETY: `buf` has the `n` bytes NVRTC reported for the output.
                let rc = unsafe { get_out(prog, buf.as_mut_ptr().cast()) };
                if rc != 0 {
                    Err(compile_err(
                        format!("reading the output: {}", self.error_string(rc)),
                        log,
                    ))
                } else {
                    if !log.trim().is_empty() {
                        tracing::debug!(unit = name, log = %log, "NVRTC log");
                    }
                    Ok(buf)
                }
            }
        };
        // SAFETY: `prog` is valid and destroyed exactly once.
        unsafe { destroy(&mut prog) };
        result
    }
}

/// The cache directory: `$PNODE_KERNEL_CACHE`, else `$XDG_CACHE_HOME/pnode-kernels`, else
/// `$HOME/.cache/pnode-kernels`, else the system temporary directory.
pub(crate) fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("PNODE_KERNEL_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("pnode-kernels");
    }
    if let Some(p) = std::env::var_os("HOME") {
        return PathBuf::from(p).join(".cache/pnode-kernels");
    }
    std::env::temp_dir().join("pnode-kernels")
}

/// The cache key: sha256 over the unit, every header, the options, the target and the NVRTC
/// version (hex).
pub(crate) fn cache_key(
    unit: (&str, &str),
    headers: &[(&str, &str)],
    options: &[String],
    nvrtc_version: (i32, i32),
) -> String {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    field(unit.0.as_bytes());
    field(unit.1.as_bytes());
    for (n, t) in headers {
        field(n.as_bytes());
        field(t.as_bytes());
    }
    for o in options {
        field(o.as_bytes());
    }
    field(format!("nvrtc {}.{}", nvrtc_version.0, nvrtc_version.1).as_bytes());
    hex::encode(h.finalize())
}

/// Writes `bytes` to `path` atomically (temporary file + rename).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
