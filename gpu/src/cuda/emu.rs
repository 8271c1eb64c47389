//! The emulated CUDA device's own entry points (`gpu/emu/`): the host↔device transfer, launch,
//! allocation, device-time, field-multiplication and element-access counters that tests and
//! tools read. On a real driver these symbols do not exist and [`Emulator::open`] returns `None`.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int};

use libloading::Library;

use crate::backend::BackendError;
use crate::select::CUDA_DRIVER_LIB;

/// Counters of the emulated device since the last [`Emulator::reset`] (process-wide).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EmuCounters {
    /// Bytes copied host → device.
    pub htod_bytes: u64,
    /// Bytes copied device → host.
    pub dtoh_bytes: u64,
    /// Bytes copied device → device.
    pub dtod_bytes: u64,
    /// Bytes set by memsets.
    pub memset_bytes: u64,
    /// Host → device copies.
    pub htod_copies: u64,
    /// Device → host copies.
    pub dtoh_copies: u64,
    /// Kernel launches.
    pub launches: u64,
    /// Device allocations made.
    pub allocations: u64,
    /// Device allocations alive now.
    pub live_allocations: u64,
    /// Device bytes allocated now.
    pub bytes_in_use: u64,
    /// Largest `bytes_in_use` since the last reset.
    pub peak_bytes: u64,
    /// Device bytes the contexts' stacks (the threads' local memory) take now beyond a new
    /// context's default: counted in the free memory `cuMemGetInfo` reports, not in
    /// `bytes_in_use` or `peak_bytes`.
    pub local_reserved: u64,
    /// Wall time (ns) during which the emulator was doing what a GPU and its copy engines
    /// would do (kernels, copies, memsets, filling new and unmapping freed allocations), on any
    /// thread: a stretch of host code's wall time less this is the time the host worked while
    /// no device work was in progress.
    pub device_ns: u64,
}

impl EmuCounters {
    /// Bytes that crossed "PCIe" in either direction.
    pub fn transferred(&self) -> u64 {
        self.htod_bytes + self.dtoh_bytes
    }
}

/// The field multiplications (BN254's base and scalar fields, Montgomery products and squares)
/// one kernel's launches made on the emulated device since the last [`Emulator::reset`], and the
/// field elements they loaded and stored. A GPU runs the same multiplications and accesses, so
/// these are counts of its work, not times: `muls` is the throughput side, `chain` the latency
/// side (each launch waits for its longest thread), `elements` the memory side.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelMuls {
    /// The kernel's name.
    pub kernel: String,
    /// Every thread's multiplications, summed over the launches.
    pub muls: u64,
    /// The most multiplications one thread made in one launch.
    pub longest: u64,
    /// Each launch's longest thread, summed over the launches.
    pub chain: u64,
    /// 32-byte field elements loaded and stored (`Fp::load` / `Fp::store`: global memory, and
    /// the few shared-memory segment sums of `poly_affine_carries`), summed over the threads,
    /// before any cache. The kernels' u32 accesses (MSM entries, counts, scans) and the NTT's
    /// shared-memory limbs are not counted.
    pub elements: u64,
}

/// How one kernel's launches would sit on the device the emulator models (132 SMs of compute
/// capability 9.0), from the real CUBIN's registers and shared memory and each launch's
/// configuration: the occupancy calculator's blocks per SM, and the waves each grid takes. A GPU
/// with that many SMs gets the same shapes; they say nothing of time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LaunchShape {
    /// The kernel's name.
    pub kernel: String,
    /// Launches since the last reset.
    pub launches: u64,
    /// Blocks of every launch's grid, summed.
    pub blocks: u64,
    /// Waves: per launch, its blocks over the blocks all SMs hold at once (rounded up), summed.
    pub waves: u64,
    /// Block places those waves offer (waves · blocks per SM · SMs), summed: `blocks / slots` is
    /// how full the device is, on average over the kernel's waves.
    pub slots: u64,
    /// Fewest warps one SM holds at one of the launches' configurations (of 64).
    pub warps_min: u64,
    /// Most warps one SM holds at one of the launches' configurations (of 64).
    pub warps_max: u64,
}

impl LaunchShape {
    /// The fraction of the device's block places the kernel's waves fill (1 when every wave is
    /// full).
    pub fn fill(&self) -> f64 {
        if self.slots == 0 {
            0.0
        } else {
            self.blocks as f64 / self.slots as f64
        }
    }
}

/// Reads the lines "KERNEL N1 … NF" one of the emulator's per-kernel entry points (`source`)
/// writes, each into a `T`; a line without exactly F numbers is an error.
fn per_kernel<T, const F: usize>(
    text: &str,
    source: &str,
    make: impl Fn(String, [u64; F]) -> T,
) -> Result<Vec<T>, BackendError> {
    text.lines()
        .map(|l| {
            let mut it = l.split(' ');
            let parsed = (|| {
                let kernel = it.next()?.to_string();
                let mut nums = [0u64; F];
                for n in &mut nums {
                    *n = it.next()?.parse().ok()?;
                }
                it.next().is_none().then_some((kernel, nums))
            })();
            let (kernel, nums) = parsed
                .ok_or_else(|| BackendError::Device(format!("{source}: unreadable line {l:?}")))?;
            Ok(make(kernel, nums))
        })
        .collect()
}

/// A handle on the emulator's extra entry points.
pub struct Emulator {
    lib: Library,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Emulator")
    }
}

impl Emulator {
    /// Opens the loaded driver library and returns `Some` when it is the emulator.
    pub fn open() -> Option<Self> {
        // SAFETY: opening the driver library (the emulator or NVIDIA's) runs its initialisers,
        // which have no preconditions; the handle keeps it loaded while `Emulator` lives.
        let lib = unsafe { Library::new(CUDA_DRIVER_LIB) }.ok()?;
        // SAFETY: only the symbol's presence is checked here.
        unsafe { lib.get::<unsafe extern "C" fn()>(b"cuEmuGetCounters\0") }.ok()?;
        Some(Self { lib })
    }

    /// The counters now.
    pub fn counters(&self) -> Result<EmuCounters, BackendError> {
        type F = unsafe extern "C" fn(*mut EmuCounters, usize) -> c_int;
        let mut c = EmuCounters::default();
        // SAFETY: cuEmuGetCounters(CuEmuCounters*, size_t) has this signature (gpu/emu/src/
        // driver.cpp); `c` is a valid, writable struct of the size passed, with the same layout
        // (thirteen u64 fields, repr(C)); the emulator checks the size.
        let rc = unsafe {
            let f = self.sym::<F>(b"cuEmuGetCounters\0")?;
            f(&mut c, std::mem::size_of::<EmuCounters>())
        };
        if rc != 0 {
            return Err(BackendError::Device(format!(
                "cuEmuGetCounters failed ({rc}): emulator and crate disagree on the counters' layout"
            )));
        }
        Ok(c)
    }

    /// Launches per kernel name since the last reset, sorted by name.
    pub fn launch_counts(&self) -> Result<Vec<(String, u64)>, BackendError> {
        // SAFETY: cuEmuGetLaunchCounts(char*, size_t) -> size_t is such an entry point.
        Ok(unsafe { self.text(b"cuEmuGetLaunchCounts\0") }?
            .lines()
            .filter_map(|l| {
                let (name, n) = l.rsplit_once(' ')?;
                Some((name.to_string(), n.parse().ok()?))
            })
            .collect())
    }

    /// Each launched kernel's [`LaunchShape`] since the last reset, sorted by name.
    pub fn launch_shapes(&self) -> Result<Vec<LaunchShape>, BackendError> {
        // SAFETY: cuEmuGetLaunchShapes(char*, size_t) -> size_t is such an entry point.
        let text = unsafe { self.text(b"cuEmuGetLaunchShapes\0") }?;
        per_kernel(
            &text,
            "cuEmuGetLaunchShapes",
            |kernel, [a, b, c, d, e, f]| LaunchShape {
                kernel,
                launches: a,
                blocks: b,
                waves: c,
                slots: d,
                warps_min: e,
                warps_max: f,
            },
        )
    }

    /// Field multiplications and element accesses per kernel since the last reset (kernels that
    /// made neither are left out), sorted by name.
    pub fn mul_counts(&self) -> Result<Vec<KernelMuls>, BackendError> {
        // SAFETY: cuEmuGetMulCounts(char*, size_t) -> size_t is such an entry point.
        let text = unsafe { self.text(b"cuEmuGetMulCounts\0") }?;
        per_kernel(&text, "cuEmuGetMulCounts", |kernel, [a, b, c, d]| {
            KernelMuls {
                kernel,
                muls: a,
                longest: b,
                chain: c,
                elements: d,
            }
        })
    }

    /// The text one of the emulator's text entry points writes.
    ///
    /// # Safety
    /// `symbol` (NUL-terminated) must name a `size_t f(char* buf, size_t len)` that writes at
    /// most `len` bytes (NUL-terminated) into `buf` and returns the length it needs, and with a
    /// null buffer and length 0 only returns that length.
    unsafe fn text(&self, symbol: &[u8]) -> Result<String, BackendError> {
        type F = unsafe extern "C" fn(*mut c_char, usize) -> usize;
        // SAFETY: the caller guarantees the signature and behaviour above; the buffer is
        // `need + 64` bytes and its length is passed.
        unsafe {
            let f = self.sym::<F>(symbol)?;
            let need = f(std::ptr::null_mut(), 0);
            let mut buf = vec![0u8; need + 64];
            f(buf.as_mut_ptr().cast(), buf.len());
            let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
            Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
        }
    }

    /// Zeroes the counters (the peak becomes what is allocated now).
    pub fn reset(&self) -> Result<(), BackendError> {
        type F = unsafe extern "C" fn();
        // SAFETY: cuEmuResetCounters(void) takes nothing and only touches the emulator's state.
        unsafe {
            let f = self.sym::<F>(b"cuEmuResetCounters\0")?;
            f();
        }
        Ok(())
    }

    /// The order threads and blocks run in: `forward`, `reverse` or `shuffle`.
    pub fn order(&self) -> Result<String, BackendError> {
        type F = unsafe extern "C" fn() -> *const c_char;
        // SAFETY: cuEmuOrder returns a pointer to a static NUL-terminated string.
        let s = unsafe {
            let f = self.sym::<F>(b"cuEmuOrder\0")?;
            std::ffi::CStr::from_ptr(f())
        };
        Ok(s.to_string_lossy().into_owned())
    }

    /// # Safety
    /// `T` must be the exact C signature of `name` in gpu/emu/src/driver.cpp.
    unsafe fn sym<T>(&self, name: &[u8]) -> Result<libloading::Symbol<'_, T>, BackendError> {
        // SAFETY: forwarded to the caller.
        unsafe { self.lib.get::<T>(name) }.map_err(|e| {
            BackendError::Device(format!(
                "emulator entry point {}: {e}",
                String::from_utf8_lossy(name)
            ))
        })
    }
}
