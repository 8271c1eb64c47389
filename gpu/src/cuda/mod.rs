//! The CUDA backend: cudarc 0.19 (driver API; dynamic loading, which resolves each driver symbol
//! on first use, so a newer driver missing some old symbol still works; CUDA 12.6 bindings, which
//! CUDA 12.6+ and 13 drivers serve) plus run-time NVRTC compilation of the kernels in
//! `gpu/kernels/`.
//!
//! - Construction ([`CudaBackend::new`]) probes for `libcuda.so.1` without loading it (cudarc's
//!   loader panics when the library is missing), creates the context (any panic inside cudarc is
//!   caught and becomes an error), loads NVRTC (a small libloading binding in `cuda/nvrtc.rs`,
//!   which also finds CUDA 13's `libnvrtc.so.13`), and compiles `msm.cu` and `ntt.cu` to CUBIN
//!   for the device's own `sm_XY` (from its compute capability). CUBINs are cached on disk, keyed
//!   by sha256 of source + headers + options + arch + NVRTC version (`$PNODE_KERNEL_CACHE`, else
//!   `~/.cache/pnode-kernels`), and loaded from the cache file ([`precompile`] fills the cache
//!   without a GPU). `GPU_KERNEL_PORTABLE=1` builds them with `-DFIELD_PORTABLE`,
//!   `GPU_MSM_PLAIN_ATOMICS=1` with `-DMSM_PLAIN_ATOMICS`, `GPU_NTT_MIN_BLOCKS=N` builds `ntt.cu` with
//!   `-DNTT_MIN_BLOCKS=N` (`ntt_pass`'s register bound; 0: none).
//! - MSM: bases are uploaded once per [`Bases::id`] and kept resident (the most recently used
//!   [`MAX_RESIDENT_BASES`] sets; [`CudaBackend::release_bases`] drops one). The kernel pipeline is
//!   described in `kernels/msm.cu` and launched from `cuda/msm.rs`; the window combination runs on
//!   the host ([`plan`]).
//! - NTT: described in `kernels/ntt.cu`, launched from `cuda/ntt.rs`; the twiddle tables and the
//!   coset/scaling power tables are computed on the host from the [`Domain`] and cached on the
//!   device per (size, direction); each block builds the twiddles it uses in shared memory, by
//!   default loading them from one table of n/2 powers (256 MiB a direction at 2^24), with
//!   `GPU_NTT_SPLIT_TWIDDLES=1` computing them from two tables of about sqrt(n/2) (192 KiB).
//! - Vectors cross PCIe through two page-locked staging buffers per direction (`cuda/staging.rs`):
//!   the host converts one chunk while the copy engine moves the other; uploads return with their
//!   last copies queued on the stream.
//! - Every driver error (out of memory, launch failure, ...) comes back as
//!   [`BackendError::Driver`] with the step that failed; compile errors as
//!   [`BackendError::Compile`] with the NVRTC log and options. Operations synchronise the stream
//!   before returning, so asynchronous kernel faults surface in the call that caused them
//!   (uploads excepted: a failed copy surfaces in the next call).
//! - Arguments are validated in safe Rust (lengths, sizes) before the launchers run.
//!
//! STATUS: emulated, unverified on a GPU. CI runs `tests/cuda.rs` and the native engine's
//! CPU-vs-CUDA proof test through this backend against the emulated device of `gpu/emu/` (the
//! kernels' portable paths compiled for the host, launch limits from the real CUBINs); none of
//! this has run on a GPU yet (`scripts/gpu-validate` stages a run).
#![allow(unsafe_code)]

pub mod emu;
mod msm;
mod ntt;
pub(crate) mod nvrtc;
pub mod plan;
mod resident;
mod staging;

use msm::msm_launch;
use ntt::{ntt_launch, ntt_tables, shift_tables, NttTables, ShiftTables};

pub use staging::CHUNK as STAGING_CHUNK;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::sys::CUlimit::CU_LIMIT_STACK_SIZE;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DriverError, LaunchConfig,
    PushKernelArg,
};
use group::Group;
use halo2curves::bn256::{Fr, G1};

use crate::backend::{
    check_msm_args, BackendError, BackendName, Bases, ComputeBackend, Direction, Domain,
};
use crate::kernels::{Source, ARITH_CHECK, HEADERS, MSM, NTT, POLY};
use crate::poly::Poly;
use crate::program::Program;
use crate::select::{cuda_driver_probe, DriverProbe, CUDA_DRIVER_LIB};

/// How many distinct [`Bases`] stay resident on the device (least recently used evicted first).
pub const MAX_RESIDENT_BASES: usize = 4;

/// Largest MSM (and largest resident `Bases`) the kernels index: 32-bit offsets must hold
/// `16 · n` limbs of points and the `num_windows · n` sorted bucket entries (at most 15 · 2^26).
pub const MAX_MSM_LEN: usize = 1 << 26;

fn drv(step: &str) -> impl FnOnce(DriverError) -> BackendError + '_ {
    move |e| BackendError::Driver {
        step: step.to_string(),
        message: e.to_string(),
    }
}

fn grid(n: usize, block: u32) -> Result<LaunchConfig, BackendError> {
    let blocks = u32::try_from(n.div_ceil(block as usize).max(1))
        .map_err(|_| BackendError::Device(format!("grid of {n} threads is too large")))?;
    Ok(LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (block, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// The backend's state and its loaded `arith_check.cu` kernels ([`CudaBackend::arith_kernels`]).
fn with_arith(inner: &Inner) -> Result<(&Inner, &ArithKernels), BackendError> {
    let arith = inner
        .arith
        .as_ref()
        .ok_or_else(|| BackendError::Device("arith_check kernels not loaded".into()))?;
    Ok((inner, arith))
}

fn to_u32(n: usize, what: &str) -> Result<u32, BackendError> {
    u32::try_from(n).map_err(|_| BackendError::Device(format!("{what} = {n} does not fit in u32")))
}

/// The kernels, looked up once.
struct Kernels {
    msm_histogram: CudaFunction,
    msm_scatter: CudaFunction,
    msm_segment_count: CudaFunction,
    msm_accumulate: CudaFunction,
    msm_fold_segments: CudaFunction,
    msm_bucket_sum: CudaFunction,
    msm_window_reduce: CudaFunction,
    msm_parts_sum: CudaFunction,
    scan_block: CudaFunction,
    scan_add: CudaFunction,
    ntt_pass: CudaFunction,
    poly_eval: CudaFunction,
    poly_from_mont: CudaFunction,
    poly_batch_invert: CudaFunction,
    poly_scan_mul_local: CudaFunction,
    poly_scan_mul_apply: CudaFunction,
    poly_affine_carries: CudaFunction,
    poly_div_local: CudaFunction,
    poly_div_apply: CudaFunction,
    poly_eval_partial: CudaFunction,
    poly_eval_sum: CudaFunction,
    _modules: Vec<Arc<CudaModule>>,
}

struct ResidentBases {
    id: u64,
    points: Arc<CudaSlice<u32>>,
}

struct Inner {
    stream: Arc<CudaStream>,
    kernels: Kernels,
    /// Most recently used last.
    bases: Vec<ResidentBases>,
    ntt_tables: HashMap<(u32, bool, bool), Arc<NttTables>>,
    /// Keyed by size, direction and the shift's bytes.
    shift_tables: HashMap<(u32, bool, [u8; 32]), Arc<ShiftTables>>,
    /// The NTT's out-of-place buffer, kept between calls of the same size.
    ntt_scratch: Option<CudaSlice<u32>>,
    /// Page-locked buffers for vector uploads and downloads, made on first use.
    staging: Option<staging::Staging>,
    /// For the lazily compiled arithmetic check kernels.
    nvrtc: nvrtc::Nvrtc,
    arith: Option<ArithKernels>,
}

struct ArithKernels {
    fq_op: CudaFunction,
    fr_op: CudaFunction,
    g1_op: CudaFunction,
    warp_check: CudaFunction,
    _module: Arc<CudaModule>,
}

/// The element-wise kernels of `kernels/arith_check.cu`, for checking the device arithmetic
/// against halo2curves ([`CudaBackend::arith_check`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithKernel {
    /// `fq_op`: 8-limb Montgomery inputs and output; op 0 add, 1 sub, 2 mul, 3 sqr, 4 inverse,
    /// 5 neg.
    Fq,
    /// `fr_op`: as `Fq` over the scalar field.
    Fr,
    /// `g1_op`: 32-limb XYZZ `a`; `b` XYZZ (op 0, add) or affine in its first 16 limbs (op 1,
    /// mixed add); op 2 doubles `a`. Output: 16-limb affine.
    G1,
}

/// Scalars uploaded to the device (canonical limbs), for [`CudaBackend::msm_device`].
pub struct DeviceScalars {
    limbs: CudaSlice<u32>,
    len: usize,
}

impl DeviceScalars {
    /// Number of scalars.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A vector of `Fr` resident on the device (Montgomery limbs, 8 per element; at least 8 limbs
/// allocated), for [`CudaBackend::ntt_device`] and the backend's [`Poly`] operations.
pub struct DeviceValues {
    data: CudaSlice<u32>,
    len: usize,
}

impl Drop for DeviceScalars {
    fn drop(&mut self) {
        bind_for_drop(self.limbs.context());
    }
}

impl Drop for DeviceValues {
    fn drop(&mut self) {
        bind_for_drop(self.data.context());
    }
}

/// Freed device memory stays in the device's memory pool (where cudarc's stream-ordered
/// allocations come from) for the next allocation. A pool's release threshold is 0 by default: at
/// every synchronisation it returns all freed memory to the driver, and nearly every backend call
/// synchronises, so each MSM or transform would have its scratch mapped again. Without pools
/// (cudarc then allocates synchronously) there is nothing to set; a refusal keeps the default,
/// with a warning.
fn keep_freed_memory(ctx: &CudaContext) {
    if !ctx.has_async_alloc() {
        return;
    }
    let set = || -> Result<(), DriverError> {
        ctx.bind_to_thread()?;
        let mut keep_all = u64::MAX;
        // SAFETY: `cu_device` is the device of cudarc's live context (from cuDeviceGet), as
        // cuDeviceGetMemPool requires; CU_MEMPOOL_ATTR_RELEASE_THRESHOLD reads a u64 through the
        // pointer, which points to `keep_all` for the duration of the call.
        unsafe {
            let pool = cudarc::driver::result::device::get_mem_pool(ctx.cu_device())?;
            cudarc::driver::sys::cuMemPoolSetAttribute(
                pool,
                cudarc::driver::sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                (&mut keep_all as *mut u64).cast(),
            )
            .result()
        }
    };
    if let Err(e) = set() {
        tracing::warn!(
            "the device's memory pool returns freed memory at every synchronisation \
             (raising its release threshold failed: {e})"
        );
    }
}

/// Makes `ctx` current on this thread before device memory of it is freed here. cudarc frees a
/// `CudaSlice` on its stream, and the backend's (legacy default) stream means "the current
/// context's": on a thread with no context current (a task's vectors dropped on another thread,
/// the backend at shutdown) the free fails, leaking the memory and leaving an error that the next
/// operation reports as a device fault; on a thread with another device's context current it
/// would be ordered with that device's work instead of this one's.
fn bind_for_drop(ctx: &CudaContext) {
    // SAFETY: `cu_ctx` is the primary context that `ctx` retains (it stays valid while `ctx`
    // lives, and `ctx` is borrowed here); making a valid context current on the calling thread
    // has no other precondition. cudarc's own `bind_to_thread` is not used because it first takes
    // (and would here lose) an error recorded by an earlier operation.
    let bound = unsafe { cudarc::driver::result::ctx::set_current(ctx.cu_ctx()) };
    if let Err(e) = bound {
        // Nothing to return an error to: cudarc's free then records its own failure, which the
        // next operation on this context reports.
        tracing::warn!("cannot make the CUDA context current to free device memory: {e}");
    }
}

impl DeviceValues {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

static NEXT_BACKEND_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The CUDA compute backend (one device, one stream; calls are serialised).
pub struct CudaBackend {
    /// Identifies the [`Poly`] values this backend made.
    id: u64,
    ordinal: usize,
    device_name: String,
    arch: (i32, i32),
    nvrtc_version: (i32, i32),
    local: LocalMemory,
    ctx: Arc<CudaContext>,
    inner: Mutex<Inner>,
}

/// The threads' local memory (their stacks) on one device. A GPU keeps it for every thread it
/// can hold at once, so a kernel needing `n` bytes per thread takes `n` × SMs × threads per SM
/// of device memory at its first launch (≈ 0.5 GiB for 2 KiB on an H100/H200), memory that
/// `cuMemGetInfo` does not show until then. The backend takes it at open instead (it raises the
/// context's stack size and launches `poly_eval` once on no rows, so that whatever the driver
/// really reserves for it is taken too), so that a node's check of free memory at start sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalMemory {
    /// The most local memory per thread of any kernel the backend launches.
    pub per_thread: u64,
    /// The kernel that needs it.
    pub kernel: &'static str,
    /// Threads resident at once: SMs × threads per SM.
    pub threads: u64,
    /// The context's stack size per thread after open (`CU_LIMIT_STACK_SIZE`).
    pub stack_limit: u64,
}

/// Raises the context's stack size to `per_thread` (a driver reserves it for every resident
/// thread at once) and launches `poly_eval` once on no rows. Not enough free memory for it is not
/// an error here: the memory is then taken at the kernels' first launch, and
/// [`ComputeBackend::device_memory_pending`] says how much for the node's memory check.
fn reserve_local_memory(
    ctx: &Arc<CudaContext>,
    poly_eval: &CudaFunction,
    per_thread: u64,
    kernel: &'static str,
) -> Result<LocalMemory, BackendError> {
    let attr = |a| {
        ctx.attribute(a)
            .map_err(drv("the device's thread capacity"))
    };
    let sms = attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
    let per_sm = attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR)?;
    let threads = u64::try_from(sms).unwrap_or(0) * u64::try_from(per_sm).unwrap_or(0);
    let before = stack_size(ctx)?;
    let mut local = LocalMemory {
        per_thread,
        kernel,
        threads,
        stack_limit: before,
    };
    if per_thread <= before {
        return Ok(local);
    }
    match ctx.set_limit(CU_LIMIT_STACK_SIZE, per_thread as usize) {
        Ok(()) => {}
        Err(e) if e.0 == cudarc::driver::sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => {
            tracing::warn!(
                kernel,
                per_thread,
                threads,
                error = %e,
                "the kernels' local memory could not be reserved at open; it is taken at their \
                 first launch"
            );
            return Ok(local);
        }
        Err(e) => {
            return Err(drv("raising the stack size to the kernels' local memory")(
                e,
            ))
        }
    }
    // poly_eval(code, n_instr, consts, inputs, q_input, q_shift, size = 0, acc, y): with no
    // rows it reads only y's 8 limbs.
    let stream = ctx.default_stream();
    let y = stream
        .alloc_zeros::<u32>(8)
        .map_err(drv("allocating the warm-up's y"))?;
    let (null, zero) = (0u64, 0u32);
    // SAFETY: every argument has the size of poly_eval's parameter (pointers as u64, u32
    // counts); with size 0 the kernel reads y_limbs (8 u32, allocated above) and touches
    // nothing else; the stream is synchronised before `y` is dropped.
    unsafe {
        stream
            .launch_builder(poly_eval)
            .arg(&null)
            .arg(&zero)
            .arg(&null)
            .arg(&null)
            .arg(&null)
            .arg(&null)
            .arg(&zero)
            .arg(&null)
            .arg(&y)
            .launch(LaunchConfig {
                grid_dim: (1, 1, 1),
                block_dim: (32, 1, 1),
                shared_mem_bytes: 0,
            })
    }
    .map_err(drv("launching poly_eval on no rows"))?;
    stream.synchronize().map_err(drv("poly_eval on no rows"))?;
    drop(y);
    local.stack_limit = stack_size(ctx)?;
    tracing::debug!(
        kernel,
        per_thread,
        threads,
        stack_limit = local.stack_limit,
        mib = (local.stack_limit.saturating_sub(before) * threads) >> 20,
        "reserved the kernels' local memory"
    );
    Ok(local)
}

/// The context's stack size per thread (`CU_LIMIT_STACK_SIZE`).
fn stack_size(ctx: &Arc<CudaContext>) -> Result<u64, BackendError> {
    ctx.get_limit(CU_LIMIT_STACK_SIZE)
        .map(|v| v as u64)
        .map_err(drv("reading the stack size"))
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("ordinal", &self.ordinal)
            .field("device_name", &self.device_name)
            .field("arch", &self.arch)
            .finish()
    }
}

/// Compiles `unit` for `sm_{arch}` into `cache_dir` unless a CUBIN with the same key is there,
/// and returns its path. An unwritable cache falls back to a per-process temporary directory.
fn compile_cached(
    nvrtc: &nvrtc::Nvrtc,
    unit: Source,
    arch: (i32, i32),
    cache_dir: &Path,
) -> Result<PathBuf, BackendError> {
    let headers: Vec<(&str, &str)> = HEADERS.iter().map(|h| (h.name, h.text)).collect();
    let mut options = vec![
        format!("--gpu-architecture=sm_{}{}", arch.0, arch.1),
        "-std=c++17".to_string(),
    ];
    if portable_kernels() {
        options.push("-DFIELD_PORTABLE".to_string());
    }
    if plain_msm_atomics() {
        options.push("-DMSM_PLAIN_ATOMICS".to_string());
    }
    if unit.name == NTT.name {
        if let Some(blocks) = ntt_min_blocks()? {
            options.push(format!("-DNTT_MIN_BLOCKS={blocks}"));
        }
    }
    let key = nvrtc::cache_key((unit.name, unit.text), &headers, &options, nvrtc.version);
    let file_name = format!("{}-{key}.cubin", unit.name.trim_end_matches(".cu"));
    let path = cache_dir.join(&file_name);
    if path.is_file() {
        return Ok(path);
    }
    let t = std::time::Instant::now();
    let cubin = nvrtc.compile(unit.name, unit.text, &headers, &options)?;
    tracing::info!(
        unit = unit.name,
        arch = %format!("sm_{}{}", arch.0, arch.1),
        ms = t.elapsed().as_millis() as u64,
        "compiled CUDA kernels with NVRTC"
    );
    match nvrtc::write_atomic(&path, &cubin) {
        Ok(()) => Ok(path),
        Err(e) => {
            let fallback: PathBuf = std::env::temp_dir()
                .join(format!("pnode-kernels-{}", std::process::id()))
                .join(&file_name);
            tracing::warn!(
                cache = %path.display(),
                error = %e,
                "kernel cache not writable; using a temporary file"
            );
            nvrtc::write_atomic(&fallback, &cubin).map_err(|e| {
                BackendError::Device(format!(
                    "writing the compiled kernel to {}: {e}",
                    fallback.display()
                ))
            })?;
            Ok(fallback)
        }
    }
}

/// Compiles every kernel unit the backend launches (`msm.cu`, `ntt.cu`, `poly.cu`, `arith_check.cu`) for
/// `sm_{arch.0}{arch.1}` into `cache_dir` (skipping units already cached) and returns the CUBIN
/// paths. Needs NVRTC but no GPU: it fills the cache ahead of the first run (e.g. at install
/// time) and lets the run-time compile path be tested without a device. The NVRTC is chosen as
/// the backend chooses it, for the installed driver's CUDA version when a driver loads.
pub fn precompile(arch: (i32, i32), cache_dir: &Path) -> Result<Vec<PathBuf>, BackendError> {
    let nvrtc = nvrtc::Nvrtc::load(nvrtc::Target {
        arch,
        driver: installed_driver_version(),
    })?;
    [MSM, NTT, POLY, ARITH_CHECK]
        .into_iter()
        .map(|u| compile_cached(&nvrtc, u, arch, cache_dir))
        .collect()
}

/// The CUBIN of one kernel unit for `sm_{arch}`, exactly as the backend loads it: from the kernel
/// cache (`$PNODE_KERNEL_CACHE`, …), compiled into it first when missing. For diagnostics and
/// tests that load a unit by hand.
pub fn cached_cubin(unit: Source, arch: (i32, i32)) -> Result<Vec<u8>, BackendError> {
    let nvrtc = nvrtc::Nvrtc::load(nvrtc::Target {
        arch,
        driver: installed_driver_version(),
    })?;
    let path = compile_cached(&nvrtc, unit, arch, &nvrtc::cache_dir())?;
    std::fs::read(&path).map_err(|e| {
        BackendError::Device(format!("reading the cached kernel {}: {e}", path.display()))
    })
}

/// The version of the NVRTC the backend compiles with for `sm_{arch}` when the driver is new
/// enough for it (the first candidate that compiles for the architecture). For diagnostics and
/// tests.
pub fn nvrtc_version(arch: (i32, i32)) -> Result<(i32, i32), BackendError> {
    nvrtc::Nvrtc::load(nvrtc::Target { arch, driver: None }).map(|n| n.version)
}

/// Compiles one source with the backend's NVRTC binding (`source` may include the kernel headers
/// by name) for `sm_{arch}`; returns the CUBIN, or [`BackendError::Compile`] with the log and
/// options. For diagnostics and tests.
pub fn compile_source(name: &str, source: &str, arch: (i32, i32)) -> Result<Vec<u8>, BackendError> {
    let nvrtc = nvrtc::Nvrtc::load(nvrtc::Target {
        arch,
        driver: installed_driver_version(),
    })?;
    let headers: Vec<(&str, &str)> = HEADERS.iter().map(|h| (h.name, h.text)).collect();
    let options = vec![
        format!("--gpu-architecture=sm_{}{}", arch.0, arch.1),
        "-std=c++17".to_string(),
    ];
    nvrtc.compile(name, source, &headers, &options)
}

/// Compiles (or loads from the cache) one translation unit for `sm_{arch}` and loads it.
fn load_unit(
    ctx: &Arc<CudaContext>,
    nvrtc: &nvrtc::Nvrtc,
    unit: Source,
    arch: (i32, i32),
) -> Result<Arc<CudaModule>, BackendError> {
    let path = compile_cached(nvrtc, unit, arch, &nvrtc::cache_dir())?;
    if path.to_str().is_none() {
        return Err(BackendError::Device(format!(
            "kernel cache path {} is not valid UTF-8; set PNODE_KERNEL_CACHE",
            path.display()
        )));
    }
    // cuModuleLoad accepts a CUBIN file as well as PTX.
    ctx.load_module(cudarc::nvrtc::Ptx::from_file(path.clone()))
        .map_err(|e| BackendError::Driver {
            step: format!("loading module {}", path.display()),
            message: e.to_string(),
        })
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        "no message".to_string()
    }
}

/// Checks that the dynamic loader can open the driver library by name, as cudarc will, and that
/// it exports `cuInit`: cudarc panics otherwise (the panic is caught too, but this gives a clean
/// error and no panic message on stderr).
/// The driver library is there (not the toolkit's stub) and loadable.
fn driver_usable() -> Result<(), BackendError> {
    if let DriverProbe::NotFound { searched } = cuda_driver_probe() {
        return Err(BackendError::Unavailable(format!(
            "CUDA driver library {CUDA_DRIVER_LIB} not found (searched {}); install the NVIDIA \
             driver or use the cpu backend",
            searched.join(", ")
        )));
    }
    driver_loadable()
}

/// The CUDA version of the driver installed here, when there is one that loads: what the
/// kernel cache is filled for ahead of the first run. `None` without a driver (NVRTC is then
/// chosen by the architecture alone).
fn installed_driver_version() -> Option<(i32, i32)> {
    driver_usable().ok()?;
    std::panic::catch_unwind(driver_version).ok().flatten()
}

/// The CUDA version the loaded driver supports (`cuDriverGetVersion`), `None` when it cannot
/// say (then NVRTC is chosen by the architecture alone).
fn driver_version() -> Option<(i32, i32)> {
    let mut v: std::ffi::c_int = 0;
    // SAFETY: `v` is a valid out-pointer for the call. (cudarc loads the driver library at the
    // first call: the backend calls this after creating a context, `installed_driver_version`
    // after checking that the library loads, and catches a panic.)
    match unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut v) }.result() {
        Ok(()) if v > 0 => Some((v / 1000, (v % 1000) / 10)),
        Ok(()) => None,
        Err(e) => {
            tracing::warn!(error = %e, "the driver's CUDA version is unknown");
            None
        }
    }
}

fn driver_loadable() -> Result<(), BackendError> {
    // SAFETY: opening the NVIDIA driver library runs its initialisers, which have no
    // preconditions; it is closed again when `lib` drops (cudarc opens its own handle later).
    let lib = unsafe { libloading::Library::new(CUDA_DRIVER_LIB) }.map_err(|e| {
        BackendError::Unavailable(format!(
            "CUDA driver library {CUDA_DRIVER_LIB} cannot be loaded: {e}"
        ))
    })?;
    // SAFETY: only the symbol's presence is checked; it is never called through this type.
    unsafe { lib.get::<unsafe extern "C" fn(u32) -> i32>(b"cuInit\0") }
        .map(|_| ())
        .map_err(|e| {
            BackendError::Unavailable(format!(
                "CUDA driver library {CUDA_DRIVER_LIB} has no cuInit: {e}"
            ))
        })
}

/// `GPU_KERNEL_PORTABLE=1` compiles the kernels with `-DFIELD_PORTABLE`: the field arithmetic's
/// portable C++ carry chains (the host-tested ones) instead of the PTX ones, for A/B checks.
fn portable_kernels() -> bool {
    std::env::var("GPU_KERNEL_PORTABLE").is_ok_and(|v| v == "1")
}

/// `GPU_MSM_PLAIN_ATOMICS=1` compiles the MSM with `-DMSM_PLAIN_ATOMICS`: one atomic per scalar
/// per window in `msm_histogram` and `msm_scatter` instead of one per bucket per warp, for A/B
/// timing on a GPU (the emulated device runs its host build, which this does not change).
fn plain_msm_atomics() -> bool {
    std::env::var("GPU_MSM_PLAIN_ATOMICS").is_ok_and(|v| v == "1")
}

/// `GPU_NTT_MIN_BLOCKS=N` (0, 1 or 2) compiles `ntt_pass` with `-DNTT_MIN_BLOCKS=N`: registers
/// for N blocks of 512 threads on one SM, the kernel's default being 2; 0 is the form without a
/// register bound (72 registers with NVRTC 12.6, where 1 gives 96), for A/B timing on a GPU.
/// 3 and more make ptxas spill.
fn ntt_min_blocks() -> Result<Option<u32>, BackendError> {
    match std::env::var("GPU_NTT_MIN_BLOCKS") {
        Err(_) => Ok(None),
        Ok(v) => match v.parse::<u32>() {
            Ok(n @ 0..=2) => Ok(Some(n)),
            _ => Err(BackendError::Unavailable(format!(
                "GPU_NTT_MIN_BLOCKS={v}: expected 0 (no register bound), 1 or 2"
            ))),
        },
    }
}

fn function(module: &Arc<CudaModule>, name: &str) -> Result<CudaFunction, BackendError> {
    module
        .load_function(name)
        .map_err(|e| BackendError::Driver {
            step: format!("looking up kernel {name}"),
            message: e.to_string(),
        })
}

impl Drop for CudaBackend {
    fn drop(&mut self) {
        // The tables, scratch, resident bases and staging buffers are freed after this, on
        // whatever thread drops the backend.
        bind_for_drop(&self.ctx);
    }
}

impl CudaBackend {
    /// How many CUDA devices the driver sees (an error when there is no usable driver).
    pub fn device_count() -> Result<usize, BackendError> {
        driver_usable()?;
        let count = std::panic::catch_unwind(CudaContext::device_count)
            .map_err(|p| {
                BackendError::Unavailable(format!(
                    "the CUDA driver could not be used (cudarc panicked: {})",
                    panic_message(p.as_ref())
                ))
            })?
            .map_err(drv("counting devices"))?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    /// Free and total memory of the device in bytes (the driver's `cuMemGetInfo`).
    pub fn memory_info(&self) -> Result<(usize, usize), BackendError> {
        self.ctx
            .mem_get_info()
            .map_err(drv("reading free device memory"))
    }

    /// How many freed bytes the device's memory pool keeps for later allocations instead of
    /// returning them at a synchronisation (`u64::MAX`, all, once the backend is open); `None`
    /// where the driver has no memory pools.
    pub fn pool_release_threshold(&self) -> Result<Option<u64>, BackendError> {
        if !self.ctx.has_async_alloc() {
            return Ok(None);
        }
        self.ctx
            .bind_to_thread()
            .map_err(drv("binding the context"))?;
        let mut threshold = 0u64;
        // SAFETY: as in `keep_freed_memory`; the attribute writes a u64 to `threshold`.
        unsafe {
            let pool = cudarc::driver::result::device::get_mem_pool(self.ctx.cu_device())
                .map_err(drv("the device's memory pool"))?;
            cudarc::driver::sys::cuMemPoolGetAttribute(
                pool,
                cudarc::driver::sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                (&mut threshold as *mut u64).cast(),
            )
            .result()
            .map_err(drv("the memory pool's release threshold"))?;
        }
        Ok(Some(threshold))
    }

    /// Opens device `ordinal`: probes the driver, creates the context, compiles (or loads from
    /// the cache) the kernels. Every failure is an error, never a panic.
    pub fn new(ordinal: usize) -> Result<Self, BackendError> {
        Self::with_kernel_sources(ordinal, MSM, NTT)
    }

    /// As [`Self::new`], with other sources for the MSM and NTT units (same kernel names and
    /// signatures). For tests that plant bugs into copies of the kernels (the emulated device's
    /// own tests) and for trying kernel variants; the production backend uses [`Self::new`].
    pub fn with_kernel_sources(
        ordinal: usize,
        msm_unit: Source,
        ntt_unit: Source,
    ) -> Result<Self, BackendError> {
        driver_usable()?;
        let ctx = std::panic::catch_unwind(|| CudaContext::new(ordinal))
            .map_err(|p| {
                BackendError::Unavailable(format!(
                    "the CUDA driver could not be used (cudarc panicked: {})",
                    panic_message(p.as_ref())
                ))
            })?
            .map_err(|e| {
                BackendError::Unavailable(format!(
                    "creating a CUDA context on device {ordinal}: {e}"
                ))
            })?;
        let device_name = ctx.name().map_err(drv("device name"))?;
        let major = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
            .map_err(drv("compute capability"))?;
        let minor = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)
            .map_err(drv("compute capability"))?;
        let arch = (major, minor);
        keep_freed_memory(&ctx);
        let driver = driver_version();
        let nvrtc = nvrtc::Nvrtc::load(nvrtc::Target { arch, driver })?;
        tracing::info!(
            device = %device_name,
            arch = %format!("sm_{major}{minor}"),
            driver = %driver.map(|(a, b)| format!("CUDA {a}.{b}")).unwrap_or_else(|| "unknown".into()),
            nvrtc = %format!("{}.{} ({})", nvrtc.version.0, nvrtc.version.1, nvrtc.origin),
            "CUDA backend"
        );
        let msm = load_unit(&ctx, &nvrtc, msm_unit, arch)?;
        let ntt = load_unit(&ctx, &nvrtc, ntt_unit, arch)?;
        let poly = load_unit(&ctx, &nvrtc, POLY, arch)?;
        // The most local memory per thread of any kernel, and which.
        let mut most_local = (0u64, "");
        let mut function = |module: &Arc<CudaModule>, name: &'static str| {
            let f = function(module, name)?;
            let bytes = f.local_size_bytes().map_err(|e| BackendError::Driver {
                step: format!("the local memory of kernel {name}"),
                message: e.to_string(),
            })?;
            let bytes = u64::try_from(bytes).unwrap_or(0);
            if bytes > most_local.0 {
                most_local = (bytes, name);
            }
            Ok::<_, BackendError>(f)
        };
        let kernels = Kernels {
            msm_histogram: function(&msm, "msm_histogram")?,
            msm_scatter: function(&msm, "msm_scatter")?,
            msm_segment_count: function(&msm, "msm_segment_count")?,
            msm_accumulate: function(&msm, "msm_accumulate")?,
            msm_fold_segments: function(&msm, "msm_fold_segments")?,
            msm_bucket_sum: function(&msm, "msm_bucket_sum")?,
            msm_window_reduce: function(&msm, "msm_window_reduce")?,
            msm_parts_sum: function(&msm, "msm_parts_sum")?,
            scan_block: function(&msm, "scan_block")?,
            scan_add: function(&msm, "scan_add")?,
            ntt_pass: function(&ntt, "ntt_pass")?,
            poly_eval: function(&poly, "poly_eval")?,
            poly_from_mont: function(&poly, "poly_from_mont")?,
            poly_batch_invert: function(&poly, "poly_batch_invert")?,
            poly_scan_mul_local: function(&poly, "poly_scan_mul_local")?,
            poly_scan_mul_apply: function(&poly, "poly_scan_mul_apply")?,
            poly_affine_carries: function(&poly, "poly_affine_carries")?,
            poly_div_local: function(&poly, "poly_div_local")?,
            poly_div_apply: function(&poly, "poly_div_apply")?,
            poly_eval_partial: function(&poly, "poly_eval_partial")?,
            poly_eval_sum: function(&poly, "poly_eval_sum")?,
            _modules: vec![msm, ntt, poly],
        };
        let local = reserve_local_memory(&ctx, &kernels.poly_eval, most_local.0, most_local.1)?;
        let stream = ctx.default_stream();
        Ok(Self {
            id: NEXT_BACKEND_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            ordinal,
            device_name,
            arch,
            nvrtc_version: nvrtc.version,
            local,
            ctx,
            inner: Mutex::new(Inner {
                stream,
                kernels,
                bases: Vec::new(),
                ntt_tables: HashMap::new(),
                shift_tables: HashMap::new(),
                ntt_scratch: None,
                staging: None,
                nvrtc,
                arith: None,
            }),
        })
    }

    /// The device's compute capability `(major, minor)`.
    pub fn arch(&self) -> (i32, i32) {
        self.arch
    }

    /// The version of the NVRTC that compiled the kernels.
    pub fn nvrtc_version(&self) -> (i32, i32) {
        self.nvrtc_version
    }

    /// The threads' local memory on this device, as reserved at open.
    pub fn local_memory(&self) -> LocalMemory {
        self.local
    }

    /// Bytes of the kernels' local memory the device has not taken yet (0 once the stack size
    /// covers every kernel): what the first launches will still take.
    pub fn local_memory_pending(&self) -> Result<u64, BackendError> {
        let now = stack_size(&self.ctx)?;
        Ok(self.local.per_thread.saturating_sub(now) * self.local.threads)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, BackendError> {
        self.ctx
            .bind_to_thread()
            .map_err(drv("binding the context"))?;
        self.inner
            .lock()
            .map_err(|_| BackendError::Device("CUDA backend state poisoned by a panic".into()))
    }

    /// Runs one of the element-wise arithmetic kernels of `arith_check.cu` on `a`, `b` (equal
    /// lengths, a multiple of the kernel's input width: 8 limbs for fields, 32 for G1) and returns
    /// the outputs (8 limbs per field element, 16 per affine point). Compiles that unit on first
    /// use. A diagnostic for validation runs: it isolates the device arithmetic (PTX carry
    /// chains) from the MSM/NTT algorithms.
    pub fn arith_check(
        &self,
        kernel: ArithKernel,
        op: i32,
        a: &[u32],
        b: &[u32],
    ) -> Result<Vec<u32>, BackendError> {
        let (in_w, out_w) = match kernel {
            ArithKernel::Fq | ArithKernel::Fr => (8, 8),
            ArithKernel::G1 => (32, 16),
        };
        if a.len() != b.len() || a.len().checked_rem(in_w) != Some(0) || a.is_empty() {
            return Err(BackendError::Device(format!(
                "arith_check: inputs of {} and {} limbs (need equal non-zero multiples of {in_w})",
                a.len(),
                b.len()
            )));
        }
        let n = a.len() / in_w;
        let n32 = to_u32(n, "arith_check length")?;
        let guard = self.arith_kernels()?;
        let (inner, arith) = with_arith(&guard)?;
        let f = match kernel {
            ArithKernel::Fq => &arith.fq_op,
            ArithKernel::Fr => &arith.fr_op,
            ArithKernel::G1 => &arith.g1_op,
        };
        let s = &inner.stream;
        let da = s
            .clone_htod(a)
            .map_err(drv("uploading arith_check inputs"))?;
        let db = s
            .clone_htod(b)
            .map_err(drv("uploading arith_check inputs"))?;
        let mut out = s
            .alloc_zeros::<u32>(n * out_w)
            .map_err(drv("allocating arith_check output"))?;
        // SAFETY: fq_op/fr_op/g1_op(int op, const u32* a, const u32* b, u32* out, u32 n): `a` and
        // `b` hold n inputs of in_w limbs, `out` n outputs of out_w limbs; thread i touches only
        // element i.
        unsafe {
            s.launch_builder(f)
                .arg(&op)
                .arg(&da)
                .arg(&db)
                .arg(&mut out)
                .arg(&n32)
                .launch(grid(n, 128)?)
        }
        .map_err(drv("launching arith_check"))?;
        let host = s
            .clone_dtoh(&out)
            .map_err(drv("reading arith_check output"))?;
        s.synchronize().map_err(drv("arith_check kernels"))?;
        Ok(host)
    }

    /// The backend's state with the kernels of `arith_check.cu` loaded (compiled on first use;
    /// [`with_arith`] takes them out).
    fn arith_kernels(&self) -> Result<MutexGuard<'_, Inner>, BackendError> {
        let mut inner = self.lock()?;
        if inner.arith.is_none() {
            let module = load_unit(&self.ctx, &inner.nvrtc, ARITH_CHECK, self.arch)?;
            inner.arith = Some(ArithKernels {
                fq_op: function(&module, "fq_op")?,
                fr_op: function(&module, "fr_op")?,
                g1_op: function(&module, "g1_op")?,
                warp_check: function(&module, "warp_check")?,
                _module: module,
            });
        }
        Ok(inner)
    }

    /// Runs `warp_check` of `arith_check.cu` on `input` in blocks of `block` threads and returns
    /// its eight outputs per input (what each is: the kernel's comment). A diagnostic for
    /// validation runs: it compares the warp intrinsics the MSM uses (`__match_any_sync`,
    /// `__shfl_sync`, ...) on the device with their definition, including warps with returned
    /// and missing lanes.
    pub fn warp_check(&self, input: &[u32], block: u32) -> Result<Vec<u32>, BackendError> {
        if input.is_empty() || block == 0 || block > 1024 {
            return Err(BackendError::Device(format!(
                "warp_check: {} inputs in blocks of {block} threads (need some inputs and 1..=1024 threads)",
                input.len()
            )));
        }
        if self.arch < (7, 0) {
            return Err(BackendError::Device(format!(
                "warp_check needs sm_70 or later (__match_any_sync); this device is sm_{}{}",
                self.arch.0, self.arch.1
            )));
        }
        let n32 = to_u32(input.len(), "warp_check length")?;
        let guard = self.arith_kernels()?;
        let (inner, arith) = with_arith(&guard)?;
        let s = &inner.stream;
        let din = s
            .clone_htod(input)
            .map_err(drv("uploading warp_check inputs"))?;
        let mut out = s
            .alloc_zeros::<u32>(input.len() * 8)
            .map_err(drv("allocating warp_check output"))?;
        // SAFETY: warp_check(const u32* in, u32 n, u32* out): `in` holds n words and `out` 8n;
        // thread i < n reads in[i] and writes out[8i..8i+8]; threads i >= n return at once.
        unsafe {
            s.launch_builder(&arith.warp_check)
                .arg(&din)
                .arg(&n32)
                .arg(&mut out)
                .launch(grid(input.len(), block)?)
        }
        .map_err(drv("launching warp_check"))?;
        let host = s
            .clone_dtoh(&out)
            .map_err(drv("reading warp_check output"))?;
        s.synchronize().map_err(drv("warp_check kernel"))?;
        Ok(host)
    }

    /// Drops the device copy of `bases`, if resident.
    pub fn release_bases(&self, bases: &Bases) -> Result<(), BackendError> {
        let mut inner = self.lock()?;
        inner.bases.retain(|b| b.id != bases.id());
        Ok(())
    }

    /// Uploads `bases` (once per id) and returns the device copy.
    fn resident_bases(
        inner: &mut Inner,
        bases: &Bases,
    ) -> Result<Arc<CudaSlice<u32>>, BackendError> {
        if let Some(pos) = inner.bases.iter().position(|b| b.id == bases.id()) {
            let entry = inner.bases.remove(pos);
            let points = entry.points.clone();
            inner.bases.push(entry);
            return Ok(points);
        }
        if bases.len() > MAX_MSM_LEN {
            return Err(BackendError::Device(format!(
                "msm: {} bases exceed the supported {MAX_MSM_LEN}",
                bases.len()
            )));
        }
        while inner.bases.len() >= MAX_RESIDENT_BASES {
            inner.bases.remove(0);
        }
        let limbs = plan::points_to_limbs(bases.points())?;
        let points = Arc::new(
            inner
                .stream
                .clone_htod(&limbs)
                .map_err(drv("uploading bases"))?,
        );
        inner.bases.push(ResidentBases {
            id: bases.id(),
            points: points.clone(),
        });
        Ok(points)
    }

    /// Uploads scalars (canonical limbs) for [`Self::msm_device`].
    pub fn upload_scalars(&self, scalars: &[Fr]) -> Result<DeviceScalars, BackendError> {
        if scalars.len() > MAX_MSM_LEN {
            return Err(BackendError::Device(format!(
                "msm: {} scalars exceed the supported {MAX_MSM_LEN}",
                scalars.len()
            )));
        }
        let inner = self.lock()?;
        let limbs = plan::scalars_to_limbs(scalars);
        let limbs = if limbs.is_empty() {
            inner.stream.alloc_zeros::<u32>(8)
        } else {
            inner.stream.clone_htod(&limbs)
        }
        .map_err(drv("uploading scalars"))?;
        Ok(DeviceScalars {
            limbs,
            len: scalars.len(),
        })
    }

    /// Makes `bases` resident now (otherwise done by the first MSM over them).
    pub fn upload_bases(&self, bases: &Bases) -> Result<(), BackendError> {
        let mut inner = self.lock()?;
        Self::resident_bases(&mut inner, bases)?;
        inner.stream.synchronize().map_err(drv("uploading bases"))
    }

    /// `Σ scalars[i]·bases[i]` with the scalars already on the device.
    pub fn msm_device(&self, bases: &Bases, scalars: &DeviceScalars) -> Result<G1, BackendError> {
        self.msm_device_with_window(bases, scalars, plan::window_bits(scalars.len))
    }

    /// As [`Self::msm_device`] with window size `c` (bits, `plan::MIN_WINDOW_BITS..=
    /// plan::MAX_WINDOW_BITS`) instead of [`plan::window_bits`]'s choice: for the equivalence
    /// tests of every window size and for measuring the choice on a GPU (`msm/cuda-c{c}/{log n}`
    /// in `benches/cuda.rs`). The result does not depend on `c`.
    pub fn msm_device_with_window(
        &self,
        bases: &Bases,
        scalars: &DeviceScalars,
        c: u32,
    ) -> Result<G1, BackendError> {
        if !(plan::MIN_WINDOW_BITS..=plan::MAX_WINDOW_BITS).contains(&c) {
            return Err(BackendError::Device(format!(
                "msm: a window of {c} bits; the kernels take {}..={} bits",
                plan::MIN_WINDOW_BITS,
                plan::MAX_WINDOW_BITS
            )));
        }
        if scalars.len > bases.len() {
            return Err(BackendError::TooManyScalars {
                scalars: scalars.len,
                bases: bases.len(),
            });
        }
        if scalars.len == 0 {
            return Ok(G1::identity());
        }
        let mut inner = self.lock()?;
        let points = Self::resident_bases(&mut inner, bases)?;
        let r = msm_launch(&inner, &points, scalars, c);
        // Surface asynchronous faults of this call here, whatever happened above.
        let sync = inner.stream.synchronize().map_err(drv("msm kernels"));
        let r = r?;
        sync?;
        Ok(r)
    }

    /// Uploads values for [`Self::ntt_device`] (through page-locked staging buffers; the last
    /// copies may still be queued on the stream when this returns, `values` read in full).
    pub fn upload_values(&self, values: &[Fr]) -> Result<DeviceValues, BackendError> {
        let mut inner = self.lock()?;
        let len = values.len();
        if len == 0 {
            let data = inner
                .stream
                .alloc_zeros::<u32>(8)
                .map_err(drv("uploading values"))?;
            return Ok(DeviceValues { data, len });
        }
        // SAFETY: u32 has no invalid bit patterns, and every one of the len·8 limbs is written by
        // the upload's copies, ordered on this stream before any later use.
        let mut data =
            unsafe { inner.stream.alloc::<u32>(len * 8) }.map_err(drv("uploading values"))?;
        let (stream, staging) = self.staging(&mut inner)?;
        staging.upload(stream, values, &mut data)?;
        Ok(DeviceValues { data, len })
    }

    /// The stream and the staging buffers (made on first use).
    fn staging<'a>(
        &self,
        inner: &'a mut Inner,
    ) -> Result<(&'a Arc<CudaStream>, &'a mut staging::Staging), BackendError> {
        let Inner {
            stream, staging, ..
        } = inner;
        let staging = match staging {
            Some(s) => s,
            None => staging.insert(staging::Staging::new(&self.ctx)?),
        };
        Ok((stream, staging))
    }

    /// Copies device values back into `out` (`out.len()` must equal `values.len()`).
    pub fn download_values(
        &self,
        values: &DeviceValues,
        out: &mut [Fr],
    ) -> Result<(), BackendError> {
        if out.len() != values.len {
            return Err(BackendError::Device(format!(
                "download: {} values on the device, {} slots on the host",
                values.len,
                out.len()
            )));
        }
        if out.is_empty() {
            return Ok(());
        }
        let mut inner = self.lock()?;
        let (stream, staging) = self.staging(&mut inner)?;
        staging.download(stream, &values.data, out)
    }

    /// Waits for all work on the backend's stream.
    pub fn synchronize(&self) -> Result<(), BackendError> {
        let inner = self.lock()?;
        inner.stream.synchronize().map_err(drv("synchronize"))
    }

    /// In-place NTT of device-resident values (`coset` selects the coset transform).
    pub fn ntt_device(
        &self,
        values: &mut DeviceValues,
        domain: &Domain,
        direction: Direction,
        coset: bool,
    ) -> Result<(), BackendError> {
        let shift = coset.then(|| domain.coset_gen());
        self.ntt_device_shifted(values, domain, direction, shift)
    }

    /// In-place NTT of device-resident values on the coset `shift·⟨ω⟩` (`None`: on the domain).
    pub fn ntt_device_shifted(
        &self,
        values: &mut DeviceValues,
        domain: &Domain,
        direction: Direction,
        shift: Option<Fr>,
    ) -> Result<(), BackendError> {
        domain.check_len(values.len)?;
        let shift = match shift {
            Some(s) if bool::from(ff::Field::is_zero(&s)) => return Err(BackendError::ZeroShift),
            Some(s) if s == <Fr as ff::Field>::ONE => None,
            s => s,
        };
        if domain.log_n() == 0 {
            // A transform of size 1 is the identity (n^-1 = 1, s^0 = 1).
            return Ok(());
        }
        let mut inner = self.lock()?;
        let forward = direction == Direction::Forward;
        let tables = ntt_tables(&mut inner, domain, forward)?;
        let powers = match shift {
            Some(s) => Some(shift_tables(&mut inner, domain, forward, s)?),
            None => None,
        };
        let limbs = values.len * 8;
        let mut scratch = match inner.ntt_scratch.take() {
            Some(s) if s.len() == limbs => s,
            _ => inner
                .stream
                .alloc_zeros::<u32>(limbs)
                .map_err(drv("allocating NTT scratch"))?,
        };
        let r = ntt_launch(
            &inner,
            &tables,
            powers.as_deref(),
            &values.data,
            &mut scratch,
            domain.log_n(),
            forward,
        );
        // The result is in `scratch`: it becomes the vector's buffer, the old one the scratch.
        if r.is_ok() {
            std::mem::swap(&mut values.data, &mut scratch);
        }
        inner.ntt_scratch = Some(scratch);
        let sync = inner.stream.synchronize().map_err(drv("ntt kernels"));
        r?;
        sync
    }

    fn ntt_host(
        &self,
        values: &mut [Fr],
        domain: &Domain,
        direction: Direction,
        coset: bool,
    ) -> Result<(), BackendError> {
        domain.check_len(values.len())?;
        if domain.log_n() == 0 {
            return Ok(());
        }
        let mut dev = self.upload_values(values)?;
        self.ntt_device(&mut dev, domain, direction, coset)?;
        self.download_values(&dev, values)
    }
}

impl ComputeBackend for CudaBackend {
    fn name(&self) -> BackendName {
        BackendName::Cuda {
            ordinal: self.ordinal,
            device_name: self.device_name.clone(),
        }
    }

    fn msm(&self, bases: &Bases, scalars: &[Fr]) -> Result<G1, BackendError> {
        check_msm_args(bases, scalars)?;
        if scalars.is_empty() {
            return Ok(G1::identity());
        }
        let dev = self.upload_scalars(scalars)?;
        self.msm_device(bases, &dev)
    }

    fn ntt(
        &self,
        values: &mut [Fr],
        domain: &Domain,
        direction: Direction,
    ) -> Result<(), BackendError> {
        self.ntt_host(values, domain, direction, false)
    }

    fn coset_ntt(
        &self,
        values: &mut [Fr],
        domain: &Domain,
        direction: Direction,
    ) -> Result<(), BackendError> {
        self.ntt_host(values, domain, direction, true)
    }

    fn upload(&self, values: &[Fr]) -> Result<Poly, BackendError> {
        self.poly_upload(values)
    }

    fn zeros(&self, len: usize) -> Result<Poly, BackendError> {
        self.poly_zeros(len)
    }

    fn download(&self, poly: &Poly) -> Result<Vec<Fr>, BackendError> {
        self.poly_download(poly)
    }

    fn copy_range(&self, poly: &Poly, start: usize, len: usize) -> Result<Poly, BackendError> {
        self.poly_copy_range(poly, start, len)
    }

    fn ntt_poly(
        &self,
        poly: &mut Poly,
        domain: &Domain,
        direction: Direction,
        coset: bool,
    ) -> Result<(), BackendError> {
        self.poly_ntt(poly, domain, direction, coset)
    }

    fn ntt_shifted(
        &self,
        poly: &mut Poly,
        domain: &Domain,
        direction: Direction,
        shift: Fr,
    ) -> Result<(), BackendError> {
        self.poly_ntt_shifted(poly, domain, direction, shift)
    }

    fn msm_polys(&self, bases: &Bases, polys: &[&Poly]) -> Result<Vec<G1>, BackendError> {
        self.poly_msm(bases, polys)
    }

    fn device_memory(&self) -> Result<Option<(usize, usize)>, BackendError> {
        self.memory_info().map(Some)
    }

    fn device_memory_pending(&self) -> Result<u64, BackendError> {
        self.local_memory_pending()
    }

    fn batch_invert(&self, poly: &mut Poly) -> Result<(), BackendError> {
        self.poly_batch_invert(poly)
    }

    fn prefix_product(&self, poly: &mut Poly, first: Fr) -> Result<(), BackendError> {
        self.poly_prefix_product(poly, first)
    }

    fn divide_linear(&self, poly: &mut Poly, b: Fr) -> Result<(), BackendError> {
        self.poly_divide_linear(poly, b)
    }

    fn evaluate(&self, poly: &Poly, points: &[Fr]) -> Result<Vec<Fr>, BackendError> {
        let mut values = self.poly_evaluate_many(&[(poly, points)])?;
        values
            .pop()
            .ok_or_else(|| BackendError::Device("evaluate: no values came back".into()))
    }

    fn evaluate_many(&self, requests: &[(&Poly, &[Fr])]) -> Result<Vec<Vec<Fr>>, BackendError> {
        self.poly_evaluate_many(requests)
    }

    fn read_range(&self, poly: &Poly, start: usize, len: usize) -> Result<Vec<Fr>, BackendError> {
        self.poly_read_range(poly, start, len)
    }

    fn write_range(
        &self,
        poly: &mut Poly,
        start: usize,
        values: &[Fr],
    ) -> Result<(), BackendError> {
        self.poly_write_range(poly, start, values)
    }

    fn eval_program(
        &self,
        program: &Program,
        inputs: &[&Poly],
        acc: &mut Poly,
        ratio: usize,
        y: Fr,
    ) -> Result<(), BackendError> {
        self.poly_eval_program(program, inputs, acc, ratio, y)
    }
}
