//! Fixed-base windowed scalar multiplication of one G1 point by many scalars.
//!
//! The scalar is split into `W` signed digits of `c` bits,
//! `e = Σ_w d_w·2^(c·w)` with `d_w ∈ [-2^(c-1), 2^(c-1)]`, and the table holds
//! `T[w][j] = (j+1)·2^(c·w)·B` in affine form for `j < 2^(c-1)`. Then
//! `e·B = Σ_w ±T[w][|d_w|-1]`: at most `W` additions per scalar and no
//! doublings (halo2's double-and-add costs about 256 doublings and 256
//! additions). Negating an affine point is free, which is why signed digits
//! halve the table. The additions are done in affine coordinates, batched
//! across a chunk of scalars so that they share one field inversion per window.

use ff::{Field, PrimeField};
use group::prime::PrimeCurveAffine;
use group::{Curve, Group};
use halo2curves::bn256::{Fq, Fr, G1Affine, G1};
use rayon::prelude::*;

/// Bits in a BN254 scalar (`r < 2^254`).
const SCALAR_BITS: u32 = Fr::NUM_BITS;

/// Relative cost of one table entry (a projective mixed addition plus its
/// share of a batch normalisation) against one batched affine addition in the
/// evaluation (measured: about 0.6 µs against 0.2 µs).
const TABLE_ENTRY_COST: f64 = 3.0;

/// Window widths considered. Measured on the 2-core development machine
/// (single thread, k = 18): c = 11..13 are within noise of each other and
/// wider windows get slower despite fewer additions, because a window's row of
/// `2^(c-1)` points (128 KiB at c = 12) stops fitting in cache / TLB reach
/// (c = 14: +15 %, c = 16: +25 %). So c is capped at 12 (a 2.8 MiB table).
const MIN_WINDOW: u32 = 4;
const MAX_WINDOW: u32 = 12;

/// Table entries computed per parallel task.
const TABLE_TASK: usize = 1 << 12;

pub(crate) struct FixedBaseTable {
    /// Window width in bits.
    c: u32,
    /// Number of windows.
    windows: usize,
    /// Entries per window, `2^(c-1)`.
    half: usize,
    /// `windows × half` entries, window-major.
    table: Vec<G1Affine>,
}

/// Windows needed for width `c` with signed digits: the top window must hold
/// at most `c-1` bits so that its digit plus a carry stays `≤ 2^(c-1)`.
fn windows_for(c: u32) -> usize {
    (SCALAR_BITS + 1).div_ceil(c) as usize
}

impl FixedBaseTable {
    /// The window width minimising table construction plus evaluation cost
    /// for `count` scalar multiplications.
    pub(crate) fn choose_window(count: u64) -> u32 {
        let cost = |c: u32| {
            let w = windows_for(c) as f64;
            w * (1u64 << (c - 1)) as f64 * TABLE_ENTRY_COST + w * count as f64
        };
        (MIN_WINDOW..=MAX_WINDOW)
            .min_by(|a, b| cost(*a).total_cmp(&cost(*b)))
            .unwrap_or(MAX_WINDOW)
    }

    /// Builds the table for `base` with window width `c` (in parallel).
    pub(crate) fn new(base: G1, c: u32) -> Self {
        assert!((2..=24).contains(&c), "window width {c} out of range");
        let windows = windows_for(c);
        let half = 1usize << (c - 1);

        // Window bases 2^(c·w)·B.
        let mut bases = Vec::with_capacity(windows);
        let mut b = base;
        for _ in 0..windows {
            bases.push(b);
            for _ in 0..c {
                b = b.double();
            }
        }
        let mut bases_affine = vec![G1Affine::identity(); windows];
        G1::batch_normalize(&bases, &mut bases_affine);

        let task = TABLE_TASK.min(half);
        let mut table = vec![G1Affine::identity(); windows * half];
        table.par_chunks_mut(task).enumerate().for_each(|(t, dst)| {
            let first = t * task;
            let (w, j0) = (first / half, first % half);
            let step = bases_affine[w];
            let mut acc = bases[w] * Fr::from(j0 as u64 + 1);
            let mut proj = Vec::with_capacity(dst.len());
            for _ in 0..dst.len() {
                proj.push(acc);
                acc += step;
            }
            G1::batch_normalize(&proj, dst);
        });
        FixedBaseTable {
            c,
            windows,
            half,
            table,
        }
    }

    /// Writes the signed base-`2^c` digits of `scalar` (least significant
    /// first) into `digits` (`windows` entries).
    fn signed_digits(&self, scalar: &Fr, digits: &mut [i32]) {
        let repr = scalar.to_repr();
        let mut limbs = [0u64; 5];
        for (limb, bytes) in limbs.iter_mut().zip(repr.as_ref().chunks_exact(8)) {
            let mut le = [0u8; 8];
            le.copy_from_slice(bytes);
            *limb = u64::from_le_bytes(le);
        }
        let c = self.c as usize;
        let mask = (1u64 << c) - 1;
        let half = self.half as u64;
        let mut carry = 0u64;
        for (w, digit) in digits.iter_mut().enumerate() {
            let off = w * c;
            let (i, sh) = (off / 64, off % 64);
            let mut bits = limbs[i] >> sh;
            if sh + c > 64 {
                bits |= limbs[i + 1] << (64 - sh);
            }
            let d = (bits & mask) + carry;
            if d > half {
                // d − 2^c ∈ (−2^(c−1), 0]
                carry = 1;
                *digit = -(((1u64 << c) - d) as i32);
            } else {
                carry = 0;
                *digit = d as i32;
            }
        }
        debug_assert_eq!(carry, 0, "top window overflowed");
    }

    /// `out[i] = scalars[i]·B` in affine form.
    ///
    /// Window by window, every accumulator gets its table entry added in
    /// affine coordinates, all additions of a window sharing one field
    /// inversion (Montgomery's trick): about 6 multiplications per addition
    /// against 11 for a projective mixed addition, no final normalisation, and
    /// one window's table row stays in cache during its pass.
    pub(crate) fn mul_batch(&self, scalars: &[Fr], out: &mut [G1Affine]) {
        assert_eq!(scalars.len(), out.len());
        let m = scalars.len();
        let windows = self.windows;
        let mut digits = vec![0i32; m * windows];
        for (scalar, d) in scalars.iter().zip(digits.chunks_exact_mut(windows)) {
            self.signed_digits(scalar, d);
        }
        out.fill(G1Affine::identity());
        let mut addend = vec![G1Affine::identity(); m];
        // Per accumulator: Some(denominator) for a generic affine addition.
        let mut den = vec![Fq::ONE; m];
        let mut generic = vec![false; m];
        let mut prefix = Vec::with_capacity(m);
        for w in 0..windows {
            let row = &self.table[w * self.half..(w + 1) * self.half];
            for i in 0..m {
                let d = digits[i * windows + w];
                let (p, acc) = (&mut addend[i], &out[i]);
                *p = match d.cmp(&0) {
                    std::cmp::Ordering::Greater => row[(d - 1) as usize],
                    std::cmp::Ordering::Less => -row[(-d - 1) as usize],
                    std::cmp::Ordering::Equal => G1Affine::identity(),
                };
                // Identities and equal x (doubling or cancellation, which
                // genuine scalars essentially never hit) are handled apart.
                let g = d != 0 && !bool::from(acc.is_identity()) && acc.x != p.x;
                generic[i] = g;
                den[i] = if g { p.x - acc.x } else { Fq::ONE };
            }
            batch_invert(&mut den, &mut prefix);
            for i in 0..m {
                let (p, acc) = (addend[i], out[i]);
                if generic[i] {
                    let lambda = (p.y - acc.y) * den[i];
                    let x = lambda.square() - acc.x - p.x;
                    let y = lambda * (acc.x - x) - acc.y;
                    out[i] = G1Affine { x, y };
                } else if bool::from(acc.is_identity()) {
                    out[i] = p;
                } else if !bool::from(p.is_identity()) {
                    out[i] = (acc.to_curve() + p).to_affine();
                }
            }
        }
    }
}

/// Inverts every element of `v` (all nonzero) with one field inversion.
fn batch_invert(v: &mut [Fq], prefix: &mut Vec<Fq>) {
    prefix.clear();
    let mut acc = Fq::ONE;
    for x in v.iter() {
        prefix.push(acc);
        acc *= x;
    }
    // All elements are nonzero by construction, so the product is invertible.
    let mut inv = Option::<Fq>::from(acc.invert()).unwrap_or(Fq::ZERO);
    for (x, before) in v.iter_mut().zip(prefix.iter()).rev() {
        let next = inv * *x;
        *x = inv * before;
        inv = next;
    }
}
