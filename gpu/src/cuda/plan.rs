//! Pure-Rust parts of the CUDA backend, testable without a GPU: the MSM window size and the
//! signed-digit recoding the kernels perform (a reference for `kernels/msm.cuh`), the host-side
//! window combination, NTT twiddle and power tables computed from a [`Domain`], the NTT pass
//! schedule, and the limb layouts shared with the kernels.

#![forbid(unsafe_code)]

use ff::Field;
use group::prime::PrimeCurveAffine;
use group::Group;
use halo2curves::bn256::{Fq, Fr, G1Affine, G1};
use halo2curves::serde::SerdeObject;
use rayon::prelude::*;

use crate::backend::{BackendError, Domain};

/// Smallest and largest MSM window sizes (bits).
pub const MIN_WINDOW_BITS: u32 = 10;
/// See [`MIN_WINDOW_BITS`].
pub const MAX_WINDOW_BITS: u32 = 20;

/// Window size for an MSM of `n` points: `ceil(log2 n) - 8`, clamped to 10..=20 (2^(c-1) buckets
/// per window).
pub fn window_bits(n: usize) -> u32 {
    let log_n = usize::BITS - n.saturating_sub(1).leading_zeros(); // ceil(log2 n), 0 for n <= 1
    log_n
        .saturating_sub(8)
        .clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
}

/// Number of windows for window size `c`: `ceil(255 / c)` (as `msm_num_windows` in msm.cuh).
pub fn num_windows(c: u32) -> u32 {
    255u32.div_ceil(c)
}

/// Bucket segment length of the MSM accumulation (`msm_accumulate`, one thread per segment):
/// the `windows · n` bucket entries spread over about 2^18 threads (enough to fill an H100),
/// clamped to 32..=2^16. With uniform digits most buckets are one segment; a bucket holding a
/// large share of the points (many equal scalars: zeros are skipped, but ones are not) is spread
/// over many threads, and `msm_fold_segments` and `msm_bucket_sum` add its segments.
pub fn segment_len(n: usize, windows: u32) -> u32 {
    (n.saturating_mul(windows as usize).div_ceil(1 << 18)).clamp(32, 1 << 16) as u32
}

/// Most segment sums of one bucket one thread of `msm_fold_segments` (or `msm_bucket_sum`) adds.
pub const FOLD_GROUP: u32 = 32;

/// The most segments a bucket of `n` scalars in segments of `seg_len` can have (a bucket takes at
/// most one entry per scalar): the bound of the fold's levels before the histogram is known, for
/// memory planning, and the cap of what the device reports.
pub fn most_segments(n: usize, seg_len: u32) -> usize {
    n.div_ceil(seg_len.max(1) as usize)
}

/// The levels of the tree that adds each bucket's segment sums (`msm_fold_segments`, each thread
/// adding up to [`FOLD_GROUP`] of one bucket's sums) when the largest bucket has `most` segments:
/// as many as it needs to come down to `FOLD_GROUP` sums, which `msm_bucket_sum` adds. The device
/// reports `most` (`msm_segment_count`). E.g. a column of ones at 2^20, 11,916 segments of 88
/// entries: 11,916 → 373 → 12, two levels. Random scalars fill a window's buckets evenly except
/// the top window's, whose last few bits of a 254-bit scalar take few values: 2^13 scalars
/// (c = 10, 13 top values: 20 segments of 32) need none, 2^20 (c = 12, 4 top values: 2,979
/// segments of 88) two, 2^24 (c = 16, 12,389 top values) none.
pub fn fold_levels(most: usize) -> Vec<u32> {
    let mut most = most;
    let mut levels = Vec::new();
    while most > FOLD_GROUP as usize {
        levels.push(FOLD_GROUP);
        most = most.div_ceil(FOLD_GROUP as usize);
    }
    levels
}

/// Parts per window of the running-sum reduction (`msm_window_reduce`, one thread per part):
/// one part per 16 buckets, at least 256 (or every bucket when there are fewer). A thread's
/// chain of dependent additions is 2 per bucket of its part plus a small multiplication (at most
/// c − 1 doublings), so this bounds it at 32 additions from 2^12 buckets a window (c = 13)
/// upwards, where a fixed 256 parts made it grow with the window: 256 additions a thread at
/// c = 16, on 4,096 threads in all, too few to hide their latency on a GPU.
pub fn reduce_parts(buckets: u32) -> u32 {
    (buckets / 16).max(256).min(buckets)
}

/// Parts per window of the earlier, narrow reduction (`GPU_MSM_NARROW_REDUCE=1`, for A/B timing).
pub const NARROW_REDUCE_PARTS: u32 = 256;

/// Most part sums one thread of `msm_parts_sum` adds (a power of two).
pub const PARTS_SUM_GROUP: u32 = 32;

/// The group sizes of the tree that adds each window's `parts` part sums (a power of two, as
/// [`reduce_parts`] gives): one `msm_parts_sum` launch per level, each thread adding a group of
/// consecutive sums (e.g. 256 → [32, 8], 2048 → [32, 32, 2], 1 → []).
pub fn parts_sum_levels(parts: u32) -> Vec<u32> {
    let mut levels = Vec::new();
    let mut left = parts.max(1);
    while left > 1 {
        let g = left.min(PARTS_SUM_GROUP);
        levels.push(g);
        left /= g;
    }
    levels
}

/// The canonical (non-Montgomery) little-endian u32 limbs of a scalar, as the MSM kernels read
/// them.
pub fn scalar_limbs(s: &Fr) -> [u32; 8] {
    let words: [u64; 4] = (*s).into();
    let mut out = [0u32; 8];
    for (i, w) in words.iter().enumerate() {
        out[2 * i] = *w as u32;
        out[2 * i + 1] = (*w >> 32) as u32;
    }
    out
}

/// Signed-digit recoding of canonical limbs with window size `c` (the reference for
/// `msm_window_digit` in msm.cuh): `num_windows(c)` digits `d_w` in `[-(2^(c-1) - 1), 2^(c-1)]`
/// with `Σ d_w · 2^(c·w)` equal to the scalar.
pub fn signed_digits(limbs: &[u32; 8], c: u32) -> Vec<i32> {
    let half = 1u32 << (c - 1);
    let mut carry = 0u32;
    (0..num_windows(c))
        .map(|w| {
            let bit = w * c;
            let limb = (bit / 32) as usize;
            let off = bit % 32;
            let mut v = 0u32;
            if limb < 8 {
                v = limbs[limb] >> off;
                if off + c > 32 && limb + 1 < 8 {
                    v |= limbs[limb + 1] << (32 - off);
                }
                v &= (1u32 << c) - 1;
            }
            v += carry;
            if v > half {
                carry = 1;
                v as i32 - (1i32 << c)
            } else {
                carry = 0;
                v as i32
            }
        })
        .collect()
}

/// `Σ_w windows[w] · 2^(c·w)` (Horner from the top window, `c` doublings per window): the
/// host-side window combination of the MSM.
pub fn combine_windows(windows: &[G1], c: u32) -> G1 {
    let mut acc = G1::identity();
    for w in windows.iter().rev() {
        for _ in 0..c {
            acc = acc.double();
        }
        acc += w;
    }
    acc
}

/// Montgomery limbs (halo2curves' raw layout) of an `Fq`/`Fr` element into `out[0..8]`.
fn raw_limbs<F: SerdeObject>(f: &F, out: &mut [u32]) -> Result<(), BackendError> {
    let mut bytes = [0u8; 32];
    let mut writer: &mut [u8] = &mut bytes;
    f.write_raw(&mut writer)
        .map_err(|e| BackendError::Device(format!("serialising a field element: {e}")))?;
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    Ok(())
}

fn from_raw_limbs<F: SerdeObject>(l: &[u32]) -> F {
    let mut bytes = [0u8; 32];
    for (c, x) in bytes.chunks_exact_mut(4).zip(l) {
        c.copy_from_slice(&x.to_le_bytes());
    }
    F::from_raw_bytes_unchecked(&bytes)
}

/// Montgomery limbs of `values` (8 per element), in parallel.
pub fn fr_to_limbs(values: &[Fr]) -> Result<Vec<u32>, BackendError> {
    let mut out = vec![0u32; values.len() * 8];
    fr_into_limbs(values, &mut out)?;
    Ok(out)
}

/// [`fr_to_limbs`] into `out` (`values.len() * 8` limbs), in parallel.
pub fn fr_into_limbs(values: &[Fr], out: &mut [u32]) -> Result<(), BackendError> {
    if out.len() != values.len() * 8 {
        return Err(BackendError::Device(format!(
            "{} limbs for {} elements",
            out.len(),
            values.len()
        )));
    }
    out.par_chunks_mut(8 * 4096)
        .zip(values.par_chunks(4096))
        .try_for_each(|(o, v)| {
            v.iter()
                .zip(o.chunks_exact_mut(8))
                .try_for_each(|(x, l)| raw_limbs(x, l))
        })
}

/// Inverse of [`fr_to_limbs`], writing into `values`. Limbs must be canonical Montgomery values
/// (< p), which the kernels guarantee.
pub fn limbs_to_fr(limbs: &[u32], values: &mut [Fr]) {
    values
        .par_chunks_mut(4096)
        .zip(limbs.par_chunks(8 * 4096))
        .for_each(|(v, l)| {
            v.iter_mut()
                .zip(l.chunks_exact(8))
                .for_each(|(x, l)| *x = from_raw_limbs(l))
        });
}

/// Canonical scalar limbs (8 per scalar), in parallel.
pub fn scalars_to_limbs(scalars: &[Fr]) -> Vec<u32> {
    let mut out = vec![0u32; scalars.len() * 8];
    out.par_chunks_mut(8 * 4096)
        .zip(scalars.par_chunks(4096))
        .for_each(|(o, s)| {
            s.iter()
                .zip(o.chunks_exact_mut(8))
                .for_each(|(x, l)| l.copy_from_slice(&scalar_limbs(x)))
        });
    out
}

/// Affine points as 16 limbs each (x then y, Montgomery; the identity is (0, 0)).
pub fn points_to_limbs(points: &[G1Affine]) -> Result<Vec<u32>, BackendError> {
    let mut out = vec![0u32; points.len() * 16];
    out.par_chunks_mut(16 * 4096)
        .zip(points.par_chunks(4096))
        .try_for_each(|(o, p)| {
            p.iter().zip(o.chunks_exact_mut(16)).try_for_each(|(p, l)| {
                if bool::from(p.is_identity()) {
                    l.fill(0);
                    Ok(())
                } else {
                    raw_limbs(&p.x, &mut l[..8])?;
                    raw_limbs(&p.y, &mut l[8..])
                }
            })
        })?;
    Ok(out)
}

/// An affine point from 16 limbs; (0, 0) is the identity; an off-curve point is an error.
pub fn limbs_to_point(l: &[u32]) -> Result<G1Affine, BackendError> {
    if l.iter().all(|x| *x == 0) {
        return Ok(G1Affine::identity());
    }
    let x: Fq = from_raw_limbs(&l[..8]);
    let y: Fq = from_raw_limbs(&l[8..16]);
    Option::from(<G1Affine as halo2curves::CurveAffine>::from_xy(x, y)).ok_or_else(|| {
        BackendError::Device("msm: the device returned a point that is not on the curve".into())
    })
}

/// A point in XYZZ coordinates as the MSM kernels write it (X, Y, ZZ, ZZZ; 8 Montgomery limbs
/// each; ZZ = 0 is the identity), normalised here: x = X/ZZ, y = Y/ZZZ.
pub fn xyzz_limbs_to_point(l: &[u32]) -> Result<G1, BackendError> {
    let not_on_curve =
        || BackendError::Device("msm: the device returned a point that is not on the curve".into());
    if l.len() != 32 {
        return Err(BackendError::Device(format!(
            "msm: an XYZZ point has 32 limbs, got {}",
            l.len()
        )));
    }
    let (x, y, zz, zzz): (Fq, Fq, Fq, Fq) = (
        from_raw_limbs(&l[..8]),
        from_raw_limbs(&l[8..16]),
        from_raw_limbs(&l[16..24]),
        from_raw_limbs(&l[24..32]),
    );
    if bool::from(zz.is_zero()) {
        return Ok(G1::identity());
    }
    let zz_inv = Option::<Fq>::from(zz.invert()).ok_or_else(not_on_curve)?;
    let zzz_inv = Option::<Fq>::from(zzz.invert()).ok_or_else(not_on_curve)?;
    let affine: Option<G1Affine> =
        <G1Affine as halo2curves::CurveAffine>::from_xy(x * zz_inv, y * zzz_inv).into();
    affine.map(G1::from).ok_or_else(not_on_curve)
}

/// `[s·b^0, s·b^1, ..., s·b^(len-1)]`, in parallel chunks.
pub fn powers(b: Fr, s: Fr, len: usize) -> Vec<Fr> {
    const CHUNK: usize = 1 << 12;
    let mut out = vec![Fr::ZERO; len];
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(ci, chunk)| {
            let mut p = s * b.pow_vartime([(ci * CHUNK) as u64]);
            for x in chunk {
                *x = p;
                p *= b;
            }
        });
    out
}

/// Twiddles of a transform of size `2^log_n` with root `w`, `w^e` for `e < n/2`, as split
/// powers (`ntt_twiddle` in ntt.cu reads `lo[e & (2^lo_bits - 1)] · hi[e >> lo_bits]`, with no
/// product where a factor is `w^0`). `split = false`: one table of all `n/2` powers (`hi` is
/// `[1]`), so a block's twiddles are loads only; `split = true`: two tables of about
/// `sqrt(n/2)` elements each (192 KiB instead of 256 MiB at 2^24), at one product a twiddle.
/// For `log_n ≤ 1` both tables hold only `w^0 = 1`.
pub fn twiddle_tables(w: Fr, log_n: u32, split: bool) -> SplitPowers {
    let bits = log_n.saturating_sub(1);
    SplitPowers::with_lo_bits(w, Fr::ONE, bits, if split { bits / 2 } else { bits })
}

/// Split power tables for `s·b^i`, `i < 2^log_n`: `lo[i] = s·b^i` for `i < 2^lo_bits` and
/// `hi[j] = b^(j·2^lo_bits)` for `j < 2^(log_n - lo_bits)`, `lo_bits = log_n / 2`, so that
/// `s·b^i = lo[i & (2^lo_bits - 1)] · hi[i >> lo_bits]` (`ntt_factor` in ntt.cu).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitPowers {
    /// log2 of the low table's length.
    pub lo_bits: u32,
    /// `s·b^i`.
    pub lo: Vec<Fr>,
    /// `b^(j·2^lo_bits)`.
    pub hi: Vec<Fr>,
}

impl SplitPowers {
    /// The tables for `s·b^i` over a domain of size `2^log_n`.
    pub fn new(b: Fr, s: Fr, log_n: u32) -> Self {
        Self::with_lo_bits(b, s, log_n, log_n / 2)
    }

    /// The same with a low table of `2^lo_bits` entries (`lo_bits ≤ log_n`).
    pub fn with_lo_bits(b: Fr, s: Fr, log_n: u32, lo_bits: u32) -> Self {
        let lo_bits = lo_bits.min(log_n);
        let lo = powers(b, s, 1usize << lo_bits);
        let step = b.pow_vartime([1u64 << lo_bits]);
        let hi = powers(step, Fr::ONE, 1usize << (log_n - lo_bits));
        Self { lo_bits, lo, hi }
    }

    /// `s·b^i` from the tables.
    pub fn get(&self, i: usize) -> Fr {
        self.lo[i & ((1usize << self.lo_bits) - 1)] * self.hi[i >> self.lo_bits]
    }
}

/// The pre- and post-scaling tables of the four transforms over `domain`:
/// forward coset multiplies the input by `g^i`; inverse scales the output by `n^-1`; inverse coset
/// scales the output by `n^-1·g^-i`.
pub fn coset_tables(domain: &Domain, forward: bool) -> SplitPowers {
    if forward {
        SplitPowers::new(domain.coset_gen(), Fr::ONE, domain.log_n())
    } else {
        SplitPowers::new(domain.coset_gen_inv(), domain.n_inv(), domain.log_n())
    }
}

/// As [`coset_tables`] for the coset `shift·⟨ω⟩`: the input times `shift^i` (forward), or the
/// output times `n^-1·shift^-i` (inverse). Errors for a zero shift.
pub fn shift_tables(
    domain: &Domain,
    forward: bool,
    shift: Fr,
) -> Result<SplitPowers, BackendError> {
    if forward {
        return Ok(SplitPowers::new(shift, Fr::ONE, domain.log_n()));
    }
    let inv = Option::<Fr>::from(ff::Field::invert(&shift)).ok_or(BackendError::ZeroShift)?;
    Ok(SplitPowers::new(inv, domain.n_inv(), domain.log_n()))
}

/// Stages per shared-memory pass at most (2^10 elements · 32 bytes = 32 KiB of shared memory).
pub const MAX_PASS_STAGES: u32 = 10;

/// How `log_n` radix-2 stages are split into shared-memory passes: as few passes as possible,
/// with balanced sizes (e.g. 24 → [8, 8, 8], 20 → [10, 10], 11 → [6, 5]).
pub fn pass_schedule(log_n: u32) -> Vec<u32> {
    if log_n == 0 {
        return Vec::new();
    }
    let passes = log_n.div_ceil(MAX_PASS_STAGES);
    let base = log_n / passes;
    let extra = log_n % passes;
    (0..passes).map(|p| base + u32::from(p < extra)).collect()
}

/// An upper bound of the device bytes one MSM of `n` resident scalars allocates while it runs
/// (the scalars out of Montgomery form, the sorted bucket entries, bucket counts and offsets,
/// segment, bucket and window sums), for memory planning.
pub fn msm_scratch_bytes(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let c = window_bits(n);
    let windows = num_windows(c) as usize;
    let total_buckets = windows << (c - 1);
    let entries = n * windows;
    let seg_len = segment_len(n, windows as u32).max(1) as usize;
    let segments = entries.div_ceil(seg_len) + total_buckets;
    // The fold's levels, as many as a bucket holding every scalar would need: each a sum per group
    // of FOLD_GROUP (at most), counts and offsets.
    let mut folded = 0;
    let mut level = segments;
    for g in fold_levels(most_segments(n, seg_len as u32)) {
        level = level.div_ceil(g as usize) + total_buckets;
        folded += 128 * level + 8 * total_buckets;
    }
    let parts = reduce_parts(1 << (c - 1));
    // The part sums and every level of their tree (the last level is the window sums).
    let mut sums = windows * parts as usize;
    let mut left = sums;
    for g in parts_sum_levels(parts) {
        left /= g as usize;
        sums += left;
    }
    32 * n                     // scalars
        + 4 * entries          // sorted entries
        + 4 * 4 * total_buckets // counts, offsets, segment counts and offsets
        + 128 * segments       // segment sums (XYZZ)
        + folded
        + 128 * total_buckets  // bucket sums
        + 128 * (sums + windows)
}

/// Device bytes of the tables of one NTT size and direction with the default twiddles (one
/// table of `n/2` powers and `[1]`; less with split twiddles), the split coset power tables and
/// `n^-1`.
pub fn ntt_table_bytes(log_n: u32) -> usize {
    let n = 1usize << log_n;
    let lo_bits = log_n / 2;
    32 * ((n / 2).max(1) + 1 + (1 << lo_bits) + (1 << (log_n - lo_bits)) + 1)
}
