//! Compiles every kernel source in `gpu/kernels/` with NVRTC (no GPU needed) for `compute_80`
//! (PTX), for `sm_90` (CUBIN: NVRTC's `compute_90` PTX, then ptxas over it and the inline PTX
//! assembly, so a separate `compute_90` PTX compile would check nothing more), and the variant
//! (`-DFIELD_PORTABLE -DMSM_PLAIN_ATOMICS -DNTT_MIN_BLOCKS=0`: portable carry chains, one MSM
//! atomic per lane, `ntt_pass` without its register bound) for
//! `compute_90`; `GPU_NVRTC_FULL=1` adds sm_80 and the variant's CUBINs. Headers are passed through
//! `nvrtcCreateProgram`'s header arrays, so no include path is needed.
//!
//! Every CUBIN compile asks ptxas for its resource report (`--ptxas-options=-v`): each kernel's
//! registers, the warps per SM they allow, local memory and shared memory are printed, and a
//! function that spills registers fails the test (a spill is a local-memory access on a GPU, the
//! one cost of the kernels that can be read without one).
//!
//! NVRTC comes from the `nvidia-cuda-nvrtc-cu12` wheel installed by `scripts/ensure-nvrtc` into
//! `<repo>/.tools/nvrtc/nvidia/cuda_nvrtc/lib/libnvrtc.so.12`; `GPU_NVRTC_LIB` overrides the path.
//! If the library is missing the test prints why and passes, unless `GPU_REQUIRE_NVRTC=1`.
//!
//! The NVRTC binding is a tiny `libloading` wrapper local to this test (cudarc's loader panics when
//! the library is missing).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, CStr, CString};
use std::path::PathBuf;
use std::time::Instant;

use gpu::kernels::{HEADERS, UNITS};
use libloading::{Library, Symbol};

type NvrtcProgram = *mut std::ffi::c_void;
type NvrtcResult = c_int;

struct Nvrtc {
    lib: Library,
}

impl Nvrtc {
    fn load(path: &PathBuf) -> Result<Self, String> {
        // SAFETY: loading libnvrtc runs its initialisers, which have no preconditions; the library
        // stays loaded for the lifetime of `Nvrtc`, which outlives every symbol we take from it.
        let lib = unsafe { Library::new(path) }.map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self { lib })
    }

    fn sym<T>(&self, name: &[u8]) -> Result<Symbol<'_, T>, String> {
        // SAFETY: every call site names an NVRTC C function and gives `T` its exact C signature
        // (from nvrtc.h, CUDA 12).
        unsafe { self.lib.get::<T>(name) }.map_err(|e| format!("symbol: {e}"))
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

    fn version(&self) -> Result<(i32, i32), String> {
        type F = unsafe extern "C" fn(*mut c_int, *mut c_int) -> NvrtcResult;
        let f = self.sym::<F>(b"nvrtcVersion\0")?;
        let (mut major, mut minor) = (0, 0);
        // SAFETY: both out-pointers are valid for writes.
        let rc = unsafe { f(&mut major, &mut minor) };
        if rc != 0 {
            return Err(self.error_string(rc));
        }
        Ok((major, minor))
    }

    /// Compiles `source` (with `headers` available by name). Returns the output size in bytes
    /// (PTX, or CUBIN when `cubin`) and the compiler log, or the error with the log.
    fn compile(
        &self,
        name: &str,
        source: &str,
        headers: &[(&str, &str)],
        options: &[String],
        cubin: bool,
    ) -> Result<(usize, String), String> {
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

        let create = self.sym::<Create>(b"nvrtcCreateProgram\0")?;
        let compile = self.sym::<Compile>(b"nvrtcCompileProgram\0")?;
        let log_size = self.sym::<Size>(b"nvrtcGetProgramLogSize\0")?;
        let get_log = self.sym::<Get>(b"nvrtcGetProgramLog\0")?;
        let out_size = if cubin {
            self.sym::<Size>(b"nvrtcGetCUBINSize\0")?
        } else {
            self.sym::<Size>(b"nvrtcGetPTXSize\0")?
        };
        let destroy = self.sym::<Destroy>(b"nvrtcDestroyProgram\0")?;

        let cstr = |s: &str| CString::new(s).map_err(|e| format!("NUL in input: {e}"));
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

        let mut prog: NvrtcProgram = std::ptr::null_mut();
        // SAFETY: all strings are NUL-terminated and outlive the call; the header arrays both have
        // `headers.len()` entries; `prog` is a valid out-pointer.
        let rc = unsafe {
            create(
                &mut prog,
                c_source.as_ptr(),
                c_name.as_ptr(),
                headers.len() as c_int,
                header_text_ptrs.as_ptr(),
                header_name_ptrs.as_ptr(),
            )
        };
        if rc != 0 {
            return Err(format!("nvrtcCreateProgram: {}", self.error_string(rc)));
        }
        // SAFETY: `prog` was created above; the option pointers are valid NUL-terminated strings.
        let rc = unsafe { compile(prog, option_ptrs.len() as c_int, option_ptrs.as_ptr()) };
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
            Err(format!(
                "nvrtcCompileProgram({name}, {options:?}): {}\n{log}",
                self.error_string(rc)
            ))
        } else {
            let mut n = 0usize;
            // SAFETY: `prog` compiled successfully; `n` is a valid out-pointer.
            let rc = unsafe { out_size(prog, &mut n) };
            if rc != 0 {
                Err(format!("output size: {}", self.error_string(rc)))
            } else if n == 0 {
                Err(format!("{name}: empty output"))
            } else {
                Ok((n, log))
            }
        };
        // SAFETY: `prog` is valid and destroyed exactly once.
        unsafe { destroy(&mut prog) };
        result
    }
}

fn nvrtc_path() -> PathBuf {
    if let Some(p) = std::env::var_os("GPU_NVRTC_LIB") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../.tools/nvrtc/nvidia/cuda_nvrtc/lib/libnvrtc.so.12")
}

/// Loads NVRTC, or says why the check is skipped (panics instead under `GPU_REQUIRE_NVRTC=1`).
fn load_nvrtc() -> Option<Nvrtc> {
    let path = nvrtc_path();
    let required = std::env::var("GPU_REQUIRE_NVRTC").is_ok_and(|v| v == "1");
    if !path.is_file() {
        let msg = format!(
            "NVRTC not found at {} (run scripts/ensure-nvrtc); kernel compile check SKIPPED",
            path.display()
        );
        assert!(!required, "{msg}");
        eprintln!("{msg}");
        return None;
    }
    match Nvrtc::load(&path) {
        Ok(n) => {
            let (major, minor) = n.version().expect("nvrtcVersion");
            eprintln!("NVRTC {major}.{minor} from {}", path.display());
            Some(n)
        }
        Err(e) => {
            assert!(!required, "cannot load NVRTC: {e}");
            eprintln!("cannot load NVRTC ({e}); kernel compile check SKIPPED");
            None
        }
    }
}

/// Every translation unit, plus each header on its own (a header that only compiles after another
/// one is a bug).
fn units() -> Vec<(String, String)> {
    let mut units: Vec<(String, String)> = UNITS
        .iter()
        .map(|u| (u.name.to_string(), u.text.to_string()))
        .collect();
    for h in HEADERS {
        units.push((
            format!("{}.cu", h.name),
            format!("#include \"{}\"\n", h.name),
        ));
    }
    units
}

/// The variant of the kernels the backend compiles with `GPU_KERNEL_PORTABLE=1`,
/// `GPU_MSM_PLAIN_ATOMICS=1` and `GPU_NTT_MIN_BLOCKS=0`: the portable carry chains, one MSM
/// atomic per lane, `ntt_pass` without its register bound.
const VARIANT: &[&str] = &[
    "-DFIELD_PORTABLE",
    "-DMSM_PLAIN_ATOMICS",
    "-DNTT_MIN_BLOCKS=0",
];

/// Compiles every unit for `target` (`compute_XX` gives PTX, `sm_XX` a CUBIN, which also runs
/// ptxas over the inline assembly) with the options `defines`. For a CUBIN, ptxas reports each
/// function's resources (`--ptxas-options=-v`): they are printed as a table, and a function that
/// spills registers to local memory fails the test (see [`ptxas_report`]).
fn compile_all(target: &str, defines: &[&str]) {
    let Some(nvrtc) = load_nvrtc() else {
        return;
    };
    let headers: Vec<(&str, &str)> = HEADERS.iter().map(|h| (h.name, h.text)).collect();
    let cubin = target.starts_with("sm_");
    let mut failures = Vec::new();
    let mut resources = Vec::new();
    for (name, text) in &units() {
        let mut options = vec![
            format!("--gpu-architecture={target}"),
            "-std=c++17".to_string(),
        ];
        options.extend(defines.iter().map(|d| d.to_string()));
        if cubin {
            options.push("--ptxas-options=-v".to_string());
        }
        let t = Instant::now();
        match nvrtc.compile(name, text, &headers, &options, cubin) {
            Ok((bytes, log)) => {
                eprintln!(
                    "ok   {name:<18} {:<50} {bytes:>8} bytes {:>6.2} s",
                    options.join(" "),
                    t.elapsed().as_secs_f64()
                );
                if cubin {
                    // Anything but ptxas's report (a warning of ptxas or of the compiler) is shown.
                    let other: Vec<&str> = log
                        .lines()
                        .filter(|l| {
                            !l.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                                .is_empty()
                                && !l.starts_with("ptxas info    :")
                                && !l.starts_with("ptxas         .")
                        })
                        .collect();
                    if !other.is_empty() {
                        eprintln!("{name} {options:?} log:\n{}", other.join("\n"));
                    }
                    match ptxas_report(&log) {
                        Ok(functions)
                            if UNITS.iter().any(|u| u.name == name)
                                && !functions.iter().any(|f| f.entry) =>
                        {
                            // Every translation unit has kernels: no report means no spill check.
                            failures.push(format!(
                                "{name} {options:?}: no kernel in ptxas's report\n{log}"
                            ));
                        }
                        Ok(functions) => resources.extend(functions),
                        Err(e) => failures.push(format!("{name} {options:?}: {e}\n{log}")),
                    }
                } else if !log.trim().is_empty() {
                    eprintln!("{name} {options:?} log:\n{log}");
                }
            }
            Err(e) => {
                eprintln!("FAIL {name} {options:?}\n{e}");
                failures.push(format!("{name} {options:?}"));
            }
        }
    }
    if cubin {
        print_resources(target, defines, &resources);
        for f in resources
            .iter()
            .filter(|f| f.spill_stores + f.spill_loads > 0)
        {
            failures.push(format!(
                "{} spills registers on {target} ({} bytes stored, {} loaded): on a GPU every \
                 spill is a local-memory access",
                f.name, f.spill_stores, f.spill_loads
            ));
        }
    }
    assert!(failures.is_empty(), "NVRTC failures: {failures:#?}");
}

/// One function's resources as ptxas reports them (`--ptxas-options=-v`).
#[derive(Debug, Default, PartialEq)]
struct Resources {
    name: String,
    /// A kernel (`Compiling entry function`), not a called device function.
    entry: bool,
    /// Per-thread local memory (`bytes stack frame`): arrays indexed at run time, and spills.
    stack: u32,
    spill_stores: u32,
    spill_loads: u32,
    /// Registers per thread (entry functions only).
    registers: u32,
    /// Static shared memory per block.
    smem: u32,
}

/// Reads ptxas's verbose report from an NVRTC log. Every function has a "Function properties"
/// block; entry functions are announced by "Compiling entry function" and have a "Used N
/// registers" line. An unreadable line in a properties block is an error, not a silent zero.
fn ptxas_report(log: &str) -> Result<Vec<Resources>, String> {
    let mut out: Vec<Resources> = Vec::new();
    let mut entries: Vec<String> = Vec::new();
    // The first number before `unit` in `text` ("12 bytes spill stores" -> 12).
    fn number_before(text: &str, unit: &str) -> Option<u32> {
        let at = text.find(unit)?;
        text[..at].split_whitespace().last()?.parse().ok()
    }
    for line in log.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("ptxas info    : Compiling entry function '") {
            let name = rest.split('\'').next().unwrap_or_default();
            entries.push(name.to_string());
        } else if let Some(rest) = line.strip_prefix("ptxas info    : Function properties for ") {
            let name = rest.trim().to_string();
            let entry = entries.contains(&name);
            out.push(Resources {
                name,
                entry,
                ..Resources::default()
            });
        } else if line.contains("bytes stack frame") {
            let f = out
                .last_mut()
                .ok_or_else(|| format!("a stack line before any function: {line}"))?;
            let read = |unit: &str| {
                number_before(line, unit).ok_or_else(|| format!("no \"{unit}\" in: {line}"))
            };
            f.stack = read("bytes stack frame")?;
            f.spill_stores = read("bytes spill stores")?;
            f.spill_loads = read("bytes spill loads")?;
        } else if line.starts_with("ptxas info    : Used ") {
            let f = out
                .last_mut()
                .filter(|f| f.entry)
                .ok_or_else(|| format!("a register line outside a kernel's block: {line}"))?;
            f.registers =
                number_before(line, "registers").ok_or_else(|| format!("no registers: {line}"))?;
            f.smem = number_before(line, "bytes smem").unwrap_or(0);
        }
    }
    if let Some(k) = out.iter().find(|f| f.entry && f.registers == 0) {
        return Err(format!("no register count for kernel {}", k.name));
    }
    if out.iter().filter(|f| f.entry).count() != entries.len() {
        return Err(format!("properties missing for some of {entries:?}"));
    }
    Ok(out)
}

/// Warps one SM of compute capability 8.0 or 9.0 can hold as far as registers go: registers are
/// allocated per warp in units of 256 (registers per thread rounded up to 8), each warp's from one
/// of the SM's four sub-partitions of 16,384; at most 64 warps (NVIDIA's occupancy calculator,
/// `cuda_occupancy.h`). Block sizes and shared memory can lower it further.
fn warps_by_registers(registers: u32) -> u32 {
    let per_warp = registers.div_ceil(8) * 256;
    (4 * (16_384 / per_warp.max(1))).min(64)
}

fn print_resources(target: &str, defines: &[&str], resources: &[Resources]) {
    eprintln!("ptxas resources, {target} {defines:?}:");
    eprintln!(
        "  {:<22} {:>9} {:>9} {:>10} {:>8} {:>9}",
        "kernel", "registers", "warps/SM", "local (B)", "spills", "smem (B)"
    );
    for f in resources.iter().filter(|f| f.entry) {
        eprintln!(
            "  {:<22} {:>9} {:>9} {:>10} {:>8} {:>9}",
            f.name,
            f.registers,
            warps_by_registers(f.registers),
            f.stack,
            f.spill_stores + f.spill_loads,
            f.smem
        );
    }
}

#[test]
fn ptxas_report_is_read() {
    let log = "ptxas info    : 8 bytes gmem
ptxas info    : Compiling entry function 'k1' for 'sm_90'
ptxas info    : Function properties for k1
ptxas         .     64 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 48 registers, used 1 barriers, 2048 bytes smem, 64 bytes cumulative stack size
ptxas info    : Function properties for _ZN2FpI8FrParamsE3powERKS1_PKj
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Compiling entry function 'k2' for 'sm_90'
ptxas info    : Function properties for k2
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 168 registers, used 0 barriers
";
    let r = ptxas_report(log).expect("a well-formed report");
    assert_eq!(r.len(), 3);
    assert_eq!(
        r[0],
        Resources {
            name: "k1".into(),
            entry: true,
            stack: 64,
            spill_stores: 8,
            spill_loads: 4,
            registers: 48,
            smem: 2048,
        }
    );
    assert!(!r[1].entry && r[1].spill_stores == 0);
    assert_eq!((r[2].registers, r[2].smem), (168, 0));
    // A kernel whose register line is missing is an error, not a zero.
    let cut: String = log
        .lines()
        .filter(|l| !l.contains("168 registers"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(ptxas_report(&cut).is_err());
    // Occupancy by registers: 168 -> 12 warps; 48 -> 40 (10 warps of 1,536 in a sub-partition of
    // 16,384, not 42 of the SM's 65,536); 94 -> 20; 32 -> 64; 22 -> 64 (the SM's limit).
    assert_eq!(warps_by_registers(168), 12);
    assert_eq!(warps_by_registers(48), 40);
    assert_eq!(warps_by_registers(94), 20);
    assert_eq!(warps_by_registers(32), 64);
    assert_eq!(warps_by_registers(22), 64);
    // A log without a report reads as no functions: compile_all fails a unit with kernels then.
    assert_eq!(ptxas_report(""), Ok(vec![]));
}

/// The slower combinations (CUBIN for sm_80 and of the variant) run only with
/// `GPU_NVRTC_FULL=1`.
fn full() -> bool {
    std::env::var("GPU_NVRTC_FULL").is_ok_and(|v| v == "1")
}

#[test]
fn ptx_compute_80() {
    compile_all("compute_80", &[]);
}

#[test]
fn ptx_compute_90_portable() {
    compile_all("compute_90", VARIANT);
}

#[test]
fn cubin_sm_90() {
    compile_all("sm_90", &[]);
}

#[test]
fn cubin_full_matrix() {
    if !full() {
        eprintln!("set GPU_NVRTC_FULL=1 for sm_80 and portable CUBINs");
        return;
    }
    compile_all("sm_80", &[]);
    compile_all("sm_80", VARIANT);
    compile_all("sm_90", VARIANT);
    compile_all("compute_80", VARIANT);
}
