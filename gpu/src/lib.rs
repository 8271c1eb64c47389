//! Compute backends for the prover node: multi-scalar multiplication (MSM) over BN254 G1 and
//! number-theoretic transforms (NTT) over the BN254 scalar field `Fr`.
//!
//! - [`ComputeBackend`] is the integration point; the engine holds an `Arc<dyn ComputeBackend>`
//!   chosen once at start by [`select`].
//! - [`CpuBackend`] runs on rayon and is the oracle every other backend is compared against;
//!   on x86-64 its field arithmetic is halo2curves' assembly, which [`check_host_cpu`] makes sure
//!   the CPU can run;
//!   [`CheckedBackend`] runs two backends on every call and fails on any disagreement.
//! - The CUDA kernel sources live in `gpu/kernels/` ([`kernels::HEADERS`], [`kernels::UNITS`]).
//!   They are checked on the host (the arithmetic headers compiled with the host C++ compiler and
//!   compared with halo2curves, `tests/host_arith.rs`) and compiled with NVRTC for
//!   `compute_80`/`compute_90`/`sm_90` (`tests/nvrtc_compile.rs`, which also fails when ptxas
//!   reports a kernel spilling registers on `sm_90`).
//! - [`CudaBackend`] (module [`cuda`]) launches `msm.cu` and `ntt.cu` through cudarc, compiling
//!   them with NVRTC at first use. It has not run on a GPU yet: `tests/cuda.rs` compares it with
//!   the CPU backend when a device is present (required with `PROVER_REQUIRE_GPU=1`); CI runs it
//!   on the emulated device of `gpu/emu/` ([`Emulator`] reads that device's counters).
//!
//! Conventions (shared by every backend):
//! - Field elements are halo2curves' `bn256::Fr` (4×u64 little-endian limbs, Montgomery form).
//! - NTTs take and return values in natural order. See [`Domain`] for the exact definitions of
//!   forward, inverse and coset transforms.
#![deny(unsafe_code)]

mod backend;
mod checked;
mod cpu;
pub mod cuda;
mod host;
pub mod kernels;
mod poly;
pub mod program;
mod select;

pub use backend::{BackendError, BackendName, Bases, ComputeBackend, Direction, Domain};
pub use checked::CheckedBackend;
pub use cpu::CpuBackend;
pub use cuda::emu::{EmuCounters, Emulator, KernelMuls, LaunchShape};
pub use cuda::{ArithKernel, CudaBackend, DeviceScalars, DeviceValues, LocalMemory};
pub use host::{check_host_cpu, HostCpuError, SKIP_CPU_CHECK_VAR};
pub use poly::{host_zeros, Poly};
pub use program::{Program, ProgramBuilder};
pub use select::{
    cuda_driver_probe, select, select_devices, BackendChoice, DriverProbe, Selection,
    CUDA_DRIVER_LIB,
};

/// Curve and field types used by every backend (re-exported from `halo2curves::bn256`).
pub use halo2curves::bn256::{Fr, G1Affine, G1};
