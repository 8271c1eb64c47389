//! The CUDA C++ kernel sources in `gpu/kernels/`, embedded in the binary.
//!
//! Headers (`*.cuh`) are `__host__ __device__` so the same arithmetic also compiles with the host
//! C++ compiler (see `tests/host_arith.rs`). Every source here is compiled with NVRTC for
//! `compute_80` and `compute_90` by `tests/nvrtc_compile.rs`.

/// A kernel source file: its name (as used in `#include "..."`) and its text.
#[derive(Clone, Copy, Debug)]
pub struct Source {
    /// File name relative to `gpu/kernels/`.
    pub name: &'static str,
    /// File contents.
    pub text: &'static str,
}

/// Headers, included by name from the translation units.
pub const HEADERS: &[Source] = &[
    FIELD,
    Source {
        name: "curve.cuh",
        text: include_str!("../kernels/curve.cuh"),
    },
    Source {
        name: "msm.cuh",
        text: include_str!("../kernels/msm.cuh"),
    },
];

/// The BN254 field arithmetic (its carry chains in inline PTX on the device).
pub const FIELD: Source = Source {
    name: "field.cuh",
    text: include_str!("../kernels/field.cuh"),
};

/// Translation units (`*.cu`).
pub const UNITS: &[Source] = &[ARITH_CHECK, MSM, NTT, POLY];

/// Element-wise field and curve kernels (device arithmetic checks).
pub const ARITH_CHECK: Source = Source {
    name: "arith_check.cu",
    text: include_str!("../kernels/arith_check.cu"),
};

/// The Pippenger MSM kernels (launched by the CUDA backend).
pub const MSM: Source = Source {
    name: "msm.cu",
    text: include_str!("../kernels/msm.cu"),
};

/// The NTT kernels (launched by the CUDA backend).
pub const NTT: Source = Source {
    name: "ntt.cu",
    text: include_str!("../kernels/ntt.cu"),
};

/// Kernels over resident vectors: the row-wise program interpreter and conversions (launched by
/// the CUDA backend's `Poly` operations).
pub const POLY: Source = Source {
    name: "poly.cu",
    text: include_str!("../kernels/poly.cu"),
};
