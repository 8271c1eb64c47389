//! The backend trait and the argument types shared by all backends.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ff::{Field, PrimeField};
use halo2curves::bn256::{Fr, G1Affine, G1};

use crate::poly::Poly;
use crate::program::Program;

/// Which backend is running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendName {
    /// The rayon CPU backend.
    Cpu,
    /// A CUDA device.
    Cuda {
        /// CUDA device ordinal.
        ordinal: usize,
        /// Device name as reported by the driver.
        device_name: String,
    },
}

impl fmt::Display for BackendName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendName::Cpu => write!(f, "cpu"),
            BackendName::Cuda {
                ordinal,
                device_name,
            } => write!(f, "cuda:{ordinal} ({device_name})"),
        }
    }
}

/// Errors of every backend operation. Arguments are validated before any work starts.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// More scalars than bases were given to an MSM.
    #[error("msm: {scalars} scalars but only {bases} bases")]
    TooManyScalars {
        /// Number of scalars passed.
        scalars: usize,
        /// Number of bases available.
        bases: usize,
    },
    /// A domain size outside `0..=Fr::S` (28 for BN254) was requested.
    #[error("domain: log_n = {log_n} is larger than the two-adicity {max} of the scalar field")]
    DomainTooLarge {
        /// Requested log2 size.
        log_n: u32,
        /// Largest supported log2 size.
        max: u32,
    },
    /// The vector handed to an NTT does not have the domain's size.
    #[error("ntt: {len} values but the domain has size 2^{log_n} = {}", 1u64 << log_n)]
    LengthMismatch {
        /// Length of the vector passed.
        len: usize,
        /// The domain's log2 size.
        log_n: u32,
    },
    /// A coset NTT was asked for the coset `0·⟨ω⟩`.
    #[error("ntt: a coset shift of zero")]
    ZeroShift,
    /// The requested backend cannot be used (no driver, no device, not built in).
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// A device-side operation failed outside the driver (bad sizes, host-side conversion, I/O).
    #[error("device error: {0}")]
    Device(String),
    /// A CUDA driver call failed (out of memory, launch failure, a kernel fault surfacing at
    /// synchronisation, ...).
    #[error("CUDA driver: {step}: {message}")]
    Driver {
        /// The step that failed (e.g. `launching msm_accumulate`).
        step: String,
        /// The driver's error.
        message: String,
    },
    /// NVRTC could not compile a kernel; `log` is the compiler's log.
    #[error("NVRTC: compiling {unit} with {options:?}: {message}\n{log}")]
    Compile {
        /// The translation unit (`msm.cu`, ...).
        unit: String,
        /// The options passed to NVRTC.
        options: Vec<String>,
        /// NVRTC's error.
        message: String,
        /// The compiler log.
        log: String,
    },
    /// A [`crate::CheckedBackend`] saw its two backends disagree.
    #[error("{op}: {primary} and {reference} disagree: {detail}")]
    Mismatch {
        /// The operation (`msm`, `ntt forward`, ...).
        op: String,
        /// The backend under test.
        primary: String,
        /// The reference backend.
        reference: String,
        /// Where they differ.
        detail: String,
    },
}

/// Direction of a transform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Coefficients → evaluations.
    Forward,
    /// Evaluations → coefficients (includes the division by n).
    Inverse,
}

static NEXT_BASES_ID: AtomicU64 = AtomicU64::new(1);

/// MSM bases (an SRS or a slice of it) with a stable identity.
///
/// The id is drawn from a process-wide counter when the value is created and is shared by clones,
/// so a device backend can upload a given set of bases once and recognise it on later calls.
/// The points themselves are immutable behind the `Arc`, which is what makes caching by id sound.
#[derive(Clone)]
pub struct Bases {
    id: u64,
    points: Arc<Vec<G1Affine>>,
}

impl Bases {
    /// Wraps `points` and assigns a fresh id.
    pub fn new(points: Vec<G1Affine>) -> Self {
        Self::from_arc(Arc::new(points))
    }

    /// Wraps shared `points` and assigns a fresh id (two `Bases` made from the same `Arc` get
    /// different ids; clone a `Bases` to share its id).
    pub fn from_arc(points: Arc<Vec<G1Affine>>) -> Self {
        let id = NEXT_BASES_ID.fetch_add(1, Ordering::Relaxed);
        Self { id, points }
    }

    /// The stable id (unique in this process).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The points.
    pub fn points(&self) -> &[G1Affine] {
        &self.points
    }

    /// The shared vector of points.
    pub fn shared(&self) -> &Arc<Vec<G1Affine>> {
        &self.points
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether there are no points.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

impl fmt::Debug for Bases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bases")
            .field("id", &self.id)
            .field("len", &self.points.len())
            .finish()
    }
}

/// A radix-2 evaluation domain of size `n = 2^log_n` in `Fr`.
///
/// Conventions (identical to halo2-axiom 0.5.3's `EvaluationDomain` for the same `k = log_n`):
/// - `omega` is `Fr::ROOT_OF_UNITY^(2^(Fr::S - log_n))`, a primitive n-th root of unity; it equals
///   `EvaluationDomain::new(_, log_n).get_omega()`.
/// - `coset_gen` is `g = Fr::ZETA` (a cube root of unity), halo2's `g_coset`; `coset_gen_inv` is
///   `g^-1 = ZETA^2`, halo2's `g_coset_inv`.
/// - All vectors are in **natural order** in and out (no bit-reversed outputs).
/// - `ntt(Forward)`: `a` (coefficients of p) → `p(ω^i)` for `i = 0..n`, i.e.
///   `out[i] = Σ_j a[j]·ω^(ij)`.
/// - `ntt(Inverse)`: the exact inverse, `out[j] = n^-1 · Σ_i a[i]·ω^(-ij)`.
/// - `coset_ntt(Forward)`: `a` (coefficients of p) → `p(g·ω^i)`; equals halo2's
///   `coeff_to_extended_part(a, 1)` (and `coeff_to_extended` when the extended domain is the domain).
/// - `coset_ntt(Inverse)`: the exact inverse of that: evaluations on `g·⟨ω⟩` → coefficients,
///   i.e. an inverse NTT followed by multiplying `a[j]` by `g^-j` (halo2's `extended_to_coeff`
///   before truncation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain {
    log_n: u32,
    omega: Fr,
    omega_inv: Fr,
    n_inv: Fr,
    coset_gen: Fr,
    coset_gen_inv: Fr,
}

impl Domain {
    /// The domain of size `2^log_n`; `log_n` must be at most `Fr::S` (28).
    pub fn new(log_n: u32) -> Result<Self, BackendError> {
        if log_n > Fr::S {
            return Err(BackendError::DomainTooLarge { log_n, max: Fr::S });
        }
        let mut omega = Fr::ROOT_OF_UNITY;
        for _ in log_n..Fr::S {
            omega = omega.square();
        }
        let mut omega_inv = Fr::ROOT_OF_UNITY_INV;
        for _ in log_n..Fr::S {
            omega_inv = omega_inv.square();
        }
        // 2^-log_n = TWO_INV^log_n.
        let n_inv = Fr::TWO_INV.pow_vartime([u64::from(log_n)]);
        let coset_gen = <Fr as ff::WithSmallOrderMulGroup<3>>::ZETA;
        let coset_gen_inv = coset_gen.square();
        Ok(Self {
            log_n,
            omega,
            omega_inv,
            n_inv,
            coset_gen,
            coset_gen_inv,
        })
    }

    /// log2 of the size.
    pub fn log_n(&self) -> u32 {
        self.log_n
    }

    /// The size `n = 2^log_n`.
    pub fn size(&self) -> usize {
        1usize << self.log_n
    }

    /// ω, a primitive n-th root of unity.
    pub fn omega(&self) -> Fr {
        self.omega
    }

    /// ω^-1.
    pub fn omega_inv(&self) -> Fr {
        self.omega_inv
    }

    /// n^-1.
    pub fn n_inv(&self) -> Fr {
        self.n_inv
    }

    /// The coset shift g (= `Fr::ZETA`, halo2's `g_coset`).
    pub fn coset_gen(&self) -> Fr {
        self.coset_gen
    }

    /// g^-1 (= `ZETA^2`, halo2's `g_coset_inv`).
    pub fn coset_gen_inv(&self) -> Fr {
        self.coset_gen_inv
    }

    /// Checks that `len` is this domain's size.
    pub fn check_len(&self, len: usize) -> Result<(), BackendError> {
        if len == self.size() {
            Ok(())
        } else {
            Err(BackendError::LengthMismatch {
                len,
                log_n: self.log_n,
            })
        }
    }
}

/// Checks that `start..start + len` lies within a vector of `size` elements.
pub(crate) fn check_range(
    op: &str,
    start: usize,
    len: usize,
    size: usize,
) -> Result<(), BackendError> {
    match start.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(BackendError::Device(format!(
            "{op}: elements {start}..{} of a vector of {size}",
            start.saturating_add(len)
        ))),
    }
}

/// Checks MSM arguments: at most as many scalars as bases.
pub(crate) fn check_msm_args(bases: &Bases, scalars: &[Fr]) -> Result<(), BackendError> {
    if scalars.len() > bases.len() {
        return Err(BackendError::TooManyScalars {
            scalars: scalars.len(),
            bases: bases.len(),
        });
    }
    Ok(())
}

/// A compute backend: MSM and NTTs over BN254. Small, explicit and fallible; implementations
/// validate their arguments and return errors instead of panicking.
pub trait ComputeBackend: Send + Sync {
    /// Which backend this is.
    fn name(&self) -> BackendName;

    /// `Σ scalars[i] · bases[i]` over the first `scalars.len()` bases.
    /// Errors if there are more scalars than bases. An empty MSM is the identity.
    fn msm(&self, bases: &Bases, scalars: &[Fr]) -> Result<G1, BackendError>;

    /// In-place NTT over `domain` (see [`Domain`] for the conventions).
    /// `values.len()` must equal `domain.size()`.
    fn ntt(
        &self,
        values: &mut [Fr],
        domain: &Domain,
        direction: Direction,
    ) -> Result<(), BackendError>;

    /// In-place coset NTT over `coset_gen · ⟨ω⟩` (see [`Domain`]).
    /// `values.len()` must equal `domain.size()`.
    fn coset_ntt(
        &self,
        values: &mut [Fr],
        domain: &Domain,
        direction: Direction,
    ) -> Result<(), BackendError>;

    /// Free and total memory in bytes of the device behind this backend; `None` for backends
    /// without one (the CPU's resident vectors are host memory).
    fn device_memory(&self) -> Result<Option<(usize, usize)>, BackendError> {
        Ok(None)
    }

    /// Device memory this backend will still take at its first launches, which
    /// [`Self::device_memory`] does not show as used yet (the CUDA backend's threads' local
    /// memory when it could not be reserved at open), read now. 0 for backends without a device.
    fn device_memory_pending(&self) -> Result<u64, BackendError> {
        Ok(0)
    }

    // Resident vectors ([`Poly`]): made by this backend, used only with it.

    /// Copies `values` into a new resident vector.
    fn upload(&self, values: &[Fr]) -> Result<Poly, BackendError>;

    /// As [`Self::upload`], taking the vector (the CPU backend keeps it without a copy).
    fn upload_owned(&self, values: Vec<Fr>) -> Result<Poly, BackendError> {
        self.upload(&values)
    }

    /// A resident vector of `len` zeros.
    fn zeros(&self, len: usize) -> Result<Poly, BackendError>;

    /// Copies a resident vector back to the host.
    fn download(&self, poly: &Poly) -> Result<Vec<Fr>, BackendError>;

    /// A resident copy of `poly[start..start + len]`, zeros where that runs past the end.
    fn copy_range(&self, poly: &Poly, start: usize, len: usize) -> Result<Poly, BackendError>;

    /// A resident copy of `poly` with `len` elements: truncated, or padded with zeros.
    fn resized(&self, poly: &Poly, len: usize) -> Result<Poly, BackendError> {
        self.copy_range(poly, 0, len)
    }

    /// In-place NTT of a resident vector, on the coset `g·⟨ω⟩` if `coset` (conventions of
    /// [`Domain`]); `poly.len()` must equal `domain.size()`.
    fn ntt_poly(
        &self,
        poly: &mut Poly,
        domain: &Domain,
        direction: Direction,
        coset: bool,
    ) -> Result<(), BackendError>;

    /// In-place NTT of a resident vector on the coset `shift·⟨ω⟩`: forward, coefficients →
    /// `p(shift·ω^i)`; inverse, its exact inverse (an inverse NTT, then `a[j] *= shift^-j`).
    /// With `shift = g` this is `ntt_poly(.., coset = true)`; with `shift = g·ω_ext^p` it is part
    /// p of the extended coset of a domain `2^j` times larger (`ω_ext^(2^j) = ω`; halo2's
    /// `coeff_to_extended_part`). A zero shift is an error.
    fn ntt_shifted(
        &self,
        poly: &mut Poly,
        domain: &Domain,
        direction: Direction,
        shift: Fr,
    ) -> Result<(), BackendError>;

    /// `Σ polys[j][i] · bases[i]` for each resident vector (each at most `bases.len()` long).
    fn msm_polys(&self, bases: &Bases, polys: &[&Poly]) -> Result<Vec<G1>, BackendError>;

    /// Replaces every element of `poly` by its inverse; zeros stay zero (as ff's
    /// `BatchInvert`).
    fn batch_invert(&self, poly: &mut Poly) -> Result<(), BackendError>;

    /// Running product in place: `out[0] = first`, `out[i] = out[i-1]·in[i-1]` (a grand
    /// product's column from its row ratios).
    fn prefix_product(&self, poly: &mut Poly, first: Fr) -> Result<(), BackendError>;

    /// In place, the coefficients of the quotient of `poly` (coefficients) by `X - b`, the
    /// remainder dropped: `out[i] = Σ_{j>i} in[j]·b^(j-i-1)`; the top element becomes 0.
    fn divide_linear(&self, poly: &mut Poly, b: Fr) -> Result<(), BackendError>;

    /// `p(points[k])` for each point, `poly` holding the coefficients of p (lowest first).
    fn evaluate(&self, poly: &Poly, points: &[Fr]) -> Result<Vec<Fr>, BackendError>;

    /// [`ComputeBackend::evaluate`] of every request `(poly, points)`, in order: the
    /// evaluations of a proof's opening at once (a device runs them in one pass and one read
    /// back instead of one per polynomial). By default one `evaluate` after the other.
    fn evaluate_many(&self, requests: &[(&Poly, &[Fr])]) -> Result<Vec<Vec<Fr>>, BackendError> {
        requests
            .iter()
            .map(|(poly, points)| self.evaluate(poly, points))
            .collect()
    }

    /// Copies `poly[start..start + len]` to the host (a few elements: checks, corrections).
    fn read_range(&self, poly: &Poly, start: usize, len: usize) -> Result<Vec<Fr>, BackendError>;

    /// Overwrites `poly[start..start + values.len()]` with `values`.
    fn write_range(&self, poly: &mut Poly, start: usize, values: &[Fr])
        -> Result<(), BackendError>;

    /// Evaluates `program` row by row over `inputs` and folds its outputs into `acc` (see
    /// [`crate::program`]): every input and `acc` have the same power-of-two length, and a
    /// rotation `r` reads row `i + r·ratio`.
    fn eval_program(
        &self,
        program: &Program,
        inputs: &[&Poly],
        acc: &mut Poly,
        ratio: usize,
        y: Fr,
    ) -> Result<(), BackendError>;
}
