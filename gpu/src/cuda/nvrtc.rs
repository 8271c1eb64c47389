//! A minimal NVRTC binding (libloading) used by the CUDA backend to compile the kernels at run
//! time, and the on-disk cache of compiled CUBINs.
//!
//! Not cudarc's NVRTC module: cudarc derives its candidate names from the CUDA version of its
//! bindings (12.6 here, so `libnvrtc.so.12`, not CUDA 13's `libnvrtc.so.13`) and panics when none
//! loads, while a missing library must be an `Err`. Candidates, in order: `$GPU_NVRTC_LIB`, `libnvrtc.so`,
//! `libnvrtc.so.13`, `libnvrtc.so.12` (dlopen search path), then the same names under
//! `$CUDA_HOME/lib64`, `/usr/local/cuda/lib64` and the repository's `.tools/nvrtc` wheel.
//!
//! The first candidate that can make code for the target is taken ([`Target`]): one that
//! compiles for the device's architecture and whose CUDA major version the driver runs. A CUBIN
//! of a newer minor version within the driver's major runs (CUDA's minor version compatibility);
//! one of a newer major does not (a CUDA 13 NVRTC with a CUDA 12 driver), and an NVRTC without
//! the architecture refuses to compile for it (CUDA 13 dropped sm_50–sm_72).
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
    /// The `sm_XY` architectures it compiles for, as `10·X + Y` (`nvrtcGetSupportedArchs`);
    /// empty when the library cannot say.
    pub(crate) archs: Vec<i32>,
}

/// What the compiled code must run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// The device's compute capability.
    pub(crate) arch: (i32, i32),
    /// The CUDA version the driver supports (`cuDriverGetVersion`), when there is a driver:
    /// precompiling the kernel cache needs none.
    pub(crate) driver: Option<(i32, i32)>,
}

/// Why an NVRTC of `version` that compiles for `archs` (empty: unknown) cannot make code for
/// `target`; `None` when it can.
pub(crate) fn unsuitable(version: (i32, i32), archs: &[i32], target: Target) -> Option<String> {
    let arch = target.arch.0 * 10 + target.arch.1;
    if !archs.is_empty() && !archs.contains(&arch) {
        return Some(format!(
            "NVRTC {}.{} does not compile for sm_{arch} (it compiles for sm_{} to sm_{})",
            version.0,
            version.1,
            archs.iter().min().copied().unwrap_or_default(),
            archs.iter().max().copied().unwrap_or_default()
        ));
    }
    match target.driver {
        Some(driver) if version.0 > driver.0 => Some(format!(
            "NVRTC {}.{} makes code for CUDA {} drivers, and this driver supports CUDA {}.{}",
            version.0, version.1, version.0, driver.0, driver.1
        )),
        _ => None,
    }
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
    /// Loads the first NVRTC library that opens and can make code for `target` (see the module
    /// documentation); the error names every candidate and why it was passed over.
    pub(crate) fn load(target: Target) -> Result<Self, BackendError> {
        let mut tried = Vec::new();
        let mut unsuitable_ones = Vec::new();
        for cand in candidates() {
            // SAFETY: loading libnvrtc runs its initialisers, which have no preconditions; the
            // library stays loaded for the lifetime of `Nvrtc`, which outlives every symbol taken
            // from it (symbols are looked up per call and dropped before returning).
            let lib = match unsafe { Library::new(&cand) } {
                Ok(lib) => lib,
                Err(e) => {
                    tried.push(format!("{}: {e}", cand.display()));
                    continue;
                }
            };
            let mut n = Self {
                lib,
                origin: cand.display().to_string(),
                version: (0, 0),
                archs: Vec::new(),
            };
            n.version = match n.query_version() {
                Ok(v) => v,
                Err(e) => {
                    unsuitable_ones.push(format!("{}: {e}", n.origin));
                    continue;
                }
            };
            n.archs = n.supported_archs();
            match unsuitable(n.version, &n.archs, target) {
                None => return Ok(n),
                Some(why) => {
                    tracing::debug!(nvrtc = %n.origin, %why, "NVRTC passed over");
                    // The same library is often found under several names: once is enough.
                    if !unsuitable_ones
                        .iter()
                        .any(|u| u.ends_with(&format!(": {why}")))
                    {
                        unsuitable_ones.push(format!("{}: {why}", n.origin));
                    }
                }
            }
        }
        if !unsuitable_ones.is_empty() {
            let (major_arch, minor_arch) = target.arch;
            let hint = match target.driver {
                Some((major, minor)) => format!(
                    "install an NVRTC that compiles for sm_{major_arch}{minor_arch} and is of CUDA \
                     {major}.x or older (the toolkit of this driver's CUDA {major}.{minor} is one), \
                     or a driver that runs the NVRTC found, and point GPU_NVRTC_LIB at the NVRTC"
                ),
                None => format!(
                    "point GPU_NVRTC_LIB at an NVRTC that compiles for sm_{major_arch}{minor_arch}"
                ),
            };
            let not_opened = if tried.is_empty() {
                String::new()
            } else {
                format!(" ({} other candidates did not open)", tried.len())
            };
            return Err(BackendError::Unavailable(format!(
                "no NVRTC (the CUDA run-time compiler) found here can make code for \
                 sm_{major_arch}{minor_arch}{}: {}{not_opened}; {hint}",
                target
                    .driver
                    .map(|(a, b)| format!(" under a CUDA {a}.{b} driver"))
                    .unwrap_or_default(),
                unsuitable_ones.join("; ")
            )));
        }
        Err(BackendError::Unavailable(format!(
            "NVRTC (the CUDA run-time compiler) not found; set GPU_NVRTC_LIB or install the CUDA \
             toolkit's libnvrtc; tried: {}",
            tried.join("; ")
        )))
    }

    /// The architectures this NVRTC compiles for (`10·major + minor`); empty when it cannot
    /// say (the query is missing or fails).
    fn supported_archs(&self) -> Vec<i32> {
        type Num = unsafe extern "C" fn(*mut c_int) -> NvrtcResult;
        type Get = unsafe extern "C" fn(*mut c_int) -> NvrtcResult;
        let (Ok(num), Ok(get)) = (
            self.sym::<Num>(b"nvrtcGetNumSupportedArchs\0"),
            self.sym::<Get>(b"nvrtcGetSupportedArchs\0"),
        ) else {
            return Vec::new();
        };
        let mut n: c_int = 0;
        // SAFETY: `n` is a valid out-pointer.
        if unsafe { num(&mut n) } != 0 || !(1..=1024).contains(&n) {
            return Vec::new();
        }
        let mut archs = vec![0 as c_int; n as usize];
        // SAFETY: `archs` has the `n` entries NVRTC said it writes.
        if unsafe { get(archs.as_mut_ptr()) } != 0 {
            return Vec::new();
        }
        archs
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

#[cfg(test)]
mod tests {
    use super::{unsuitable, Target};

    fn target(arch: (i32, i32), driver: Option<(i32, i32)>) -> Target {
        Target { arch, driver }
    }

    #[test]
    fn an_nvrtc_is_chosen_by_driver_major_and_architecture() {
        let cuda12 = [50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90];
        let cuda13 = [75, 80, 86, 87, 88, 89, 90, 100, 103, 110, 120, 121];
        // A newer minor version within the driver's major: the CUBIN runs.
        assert_eq!(
            unsuitable((12, 6), &cuda12, target((9, 0), Some((12, 2)))),
            None
        );
        // An older major under a newer driver: backward compatible.
        assert_eq!(
            unsuitable((12, 6), &cuda12, target((9, 0), Some((13, 0)))),
            None
        );
        // A newer major than the driver's.
        let why = unsuitable((13, 0), &cuda13, target((9, 0), Some((12, 8)))).unwrap();
        assert!(
            why.contains("NVRTC 13.0") && why.contains("CUDA 12.8"),
            "{why}"
        );
        // An architecture the NVRTC dropped, with or without a driver.
        let why = unsuitable((13, 0), &cuda13, target((7, 0), None)).unwrap();
        assert!(
            why.contains("sm_70") && why.contains("sm_75 to sm_121"),
            "{why}"
        );
        // Without a driver (precompiling), only the architecture matters.
        assert_eq!(unsuitable((13, 0), &cuda13, target((9, 0), None)), None);
        // An NVRTC that cannot list its architectures is not refused for it.
        assert_eq!(
            unsuitable((12, 0), &[], target((9, 0), Some((12, 0)))),
            None
        );
    }
}
