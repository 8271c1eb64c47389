//! The CPU backend's MSM: Pippenger with signed digits, each window's points sorted by bucket
//! and every bucket summed as a tree of affine additions that share one field inversion per
//! batch.
//!
//! halo2curves' `msm_best` (what the CPU backend used before) also adds in affine coordinates
//! with batched inversions, but 64 additions to an inversion, with a linear scan of its pending
//! batch for every point and every window, a copy of all bases per call, and one rayon task per
//! window: a column of small values (most of a circuit's witness) has its work in one or two
//! windows, so in one or two threads. Here:
//!
//! - the number of windows follows the largest scalar (a column of 16-bit values has 2 windows
//!   at 2^20 points, where `msm_best` goes through 19);
//! - the work is split into (window, range of points) tasks, at least four per thread where
//!   there are points enough;
//! - each task takes its points 2^16 at a time, sorts them by bucket (a counting sort) and
//!   halves every bucket's list level by level, 1024 additions to an inversion, whatever the
//!   distribution of the digits (a column of 0s and 1s puts every point in one bucket: it is
//!   summed as a tree, not one addition at a time);
//! - the bucket sums are combined by running sums in projective coordinates, the windows by
//!   doublings.
//!
//! Identity bases and zero scalars take no part. The result is a group element, so it equals
//! any other MSM's (`tests/cpu.rs` compares with plain sums and with halo2curves'
//! `msm_parallel`).

use ff::Field;
use group::prime::PrimeCurveAffine;
use group::Group;
use halo2curves::bn256::{Fq, Fr, G1Affine, G1};
use rayon::prelude::*;

/// Points sorted and summed at a time by one task.
const SUB_CHUNK: usize = 1 << 16;
/// Affine additions per field inversion.
const BATCH: usize = 1024;

/// `Σ scalars[i]·points[i]` (`points.len() ≥ scalars.len()`; the extra points are unused).
pub(super) fn msm(points: &[G1Affine], scalars: &[Fr]) -> G1 {
    let n = scalars.len();
    let points = &points[..n];
    if n == 0 {
        return G1::identity();
    }
    let limbs: Vec<[u64; 4]> = scalars.par_iter().map(to_limbs).collect();
    let bits = limbs.par_iter().map(bit_length).max().unwrap_or(0);
    if bits == 0 {
        return G1::identity();
    }
    let c = window_bits(n);
    // The top window's own top bit must be 0 (no carry out of it): c·windows ≥ bits + 1.
    let windows = (bits + 1).div_ceil(c);
    let threads = rayon::current_num_threads().max(1);
    let chunks = (4 * threads)
        .div_ceil(windows as usize)
        .min(n.div_ceil(SUB_CHUNK / 4))
        .max(1);
    let chunk_len = n.div_ceil(chunks);
    let tasks: Vec<(u32, usize)> = (0..windows)
        .flat_map(|w| (0..chunks).map(move |k| (w, k * chunk_len)))
        .filter(|&(_, start)| start < n)
        .collect();
    let sums: Vec<(u32, G1)> = tasks
        .into_par_iter()
        .map(|(w, start)| {
            let end = (start + chunk_len).min(n);
            (w, window_sum(&points[start..end], &limbs[start..end], w, c))
        })
        .collect();
    let mut per_window = vec![G1::identity(); windows as usize];
    for (w, s) in sums {
        per_window[w as usize] += s;
    }
    // The CUDA backend's host-side combination (pure Rust): Horner over the windows.
    crate::cuda::plan::combine_windows(&per_window, c)
}

/// The window size for `n` points: about 0.7·log2 n (halo2curves' choice), at least 2.
fn window_bits(n: usize) -> u32 {
    let log_n = usize::BITS - n.leading_zeros();
    ((log_n * 7).div_ceil(10)).clamp(2, 16)
}

/// The canonical (non-Montgomery) little-endian limbs of `s`.
fn to_limbs(s: &Fr) -> [u64; 4] {
    (*s).into()
}

fn bit_length(l: &[u64; 4]) -> u32 {
    (0..4)
        .rev()
        .find(|&i| l[i] != 0)
        .map_or(0, |i| 64 * i as u32 + (64 - l[i].leading_zeros()))
}

/// `count ≤ 32` bits of `l` from bit `pos` (bits past 255 are 0).
#[inline(always)]
fn bits_at(l: &[u64; 4], pos: u32, count: u32) -> u64 {
    let (limb, off) = ((pos / 64) as usize, pos % 64);
    if limb >= 4 {
        return 0;
    }
    let mut v = l[limb] >> off;
    if off + count > 64 && limb + 1 < 4 {
        v |= l[limb + 1] << (64 - off);
    }
    v & ((1u64 << count) - 1)
}

/// The signed digit of window `w` (Booth): `raw + (bit c·w − 1) − 2^c·(bit c·w + c − 1)`, in
/// `[−2^(c−1), 2^(c−1)]`; the digits of all windows sum (weighted by 2^(c·w)) to the scalar.
#[inline(always)]
fn digit(l: &[u64; 4], w: u32, c: u32) -> i64 {
    let pos = w * c;
    let raw = bits_at(l, pos, c) as i64;
    let carry_in = if pos == 0 {
        0
    } else {
        bits_at(l, pos - 1, 1) as i64
    };
    let top = raw >> (c - 1);
    raw + carry_in - (top << c)
}

/// `Σ_i digit_w(scalar_i)·points[i]`, by buckets.
fn window_sum(points: &[G1Affine], limbs: &[[u64; 4]], w: u32, c: u32) -> G1 {
    let nb = 1usize << (c - 1);
    let mut buckets = vec![G1Affine::identity(); nb];
    let mut work = Work::default();
    for (pts, lms) in points.chunks(SUB_CHUNK).zip(limbs.chunks(SUB_CHUNK)) {
        work.add_to_buckets(pts, lms, w, c, &mut buckets);
    }
    // Σ (b+1)·bucket[b] by running sums.
    let mut running = G1::identity();
    let mut sum = G1::identity();
    for b in buckets.iter().rev() {
        running += b;
        sum += running;
    }
    sum
}

/// Buffers a task reuses from one sub-chunk to the next.
#[derive(Default)]
struct Work {
    counts: Vec<u32>,
    digits: Vec<i32>,
    sorted: Vec<G1Affine>,
    /// Nonempty buckets: (bucket, start in `sorted`, length).
    ranges: Vec<(u32, u32, u32)>,
    batch: Batch,
}

impl Work {
    /// Adds `digit_w(scalar_i)·points[i]` into `buckets` (`buckets[d−1]` collects digit ±d).
    fn add_to_buckets(
        &mut self,
        points: &[G1Affine],
        limbs: &[[u64; 4]],
        w: u32,
        c: u32,
        buckets: &mut [G1Affine],
    ) {
        let nb = buckets.len();
        self.counts.clear();
        self.counts.resize(nb, 0);
        self.digits.clear();
        for (p, l) in points.iter().zip(limbs) {
            let d = if is_identity(p) { 0 } else { digit(l, w, c) };
            self.digits.push(d as i32);
            if d != 0 {
                self.counts[d.unsigned_abs() as usize - 1] += 1;
            }
        }
        // A bucket's sum so far is one more entry of its list.
        for (count, b) in self.counts.iter_mut().zip(buckets.iter()) {
            if !is_identity(b) {
                *count += 1;
            }
        }
        // Counting sort: each bucket's range; `counts` becomes each range's next free slot.
        self.ranges.clear();
        let mut total = 0u32;
        for (b, count) in self.counts.iter_mut().enumerate() {
            if *count > 0 {
                self.ranges.push((b as u32, total, *count));
            }
            let start = total;
            total += *count;
            *count = start;
        }
        if total == 0 {
            return;
        }
        self.sorted.clear();
        self.sorted.resize(total as usize, G1Affine::identity());
        for (b, bucket) in buckets.iter_mut().enumerate() {
            if !is_identity(bucket) {
                self.sorted[self.counts[b] as usize] = *bucket;
                self.counts[b] += 1;
                *bucket = G1Affine::identity();
            }
        }
        for (p, &d) in points.iter().zip(&self.digits) {
            if d != 0 {
                let b = d.unsigned_abs() as usize - 1;
                self.sorted[self.counts[b] as usize] = if d < 0 { -*p } else { *p };
                self.counts[b] += 1;
            }
        }
        // Halve every list until each holds its bucket's sum.
        loop {
            let mut any = false;
            for &(_, start, len) in &self.ranges {
                for i in 0..len / 2 {
                    let (a, b) = (start + 2 * i, start + 2 * i + 1);
                    self.batch.push(&mut self.sorted, start + i, a, b);
                    any = true;
                }
            }
            self.batch.flush(&mut self.sorted);
            if !any {
                break;
            }
            for (_, start, len) in self.ranges.iter_mut() {
                if *len % 2 == 1 && *len > 1 {
                    let last = (*start + *len - 1) as usize;
                    self.sorted[(*start + *len / 2) as usize] = self.sorted[last];
                }
                *len = len.div_ceil(2);
            }
        }
        for &(b, start, len) in &self.ranges {
            debug_assert_eq!(len, 1);
            buckets[b as usize] = self.sorted[start as usize];
        }
    }
}

/// Pending affine additions `sorted[dst] ← sorted[a] + sorted[b]`, done `BATCH` at a time with
/// one inversion (Montgomery's trick). Results are written after the whole batch has read its
/// operands, so a destination may be another addition's operand.
#[derive(Default)]
struct Batch {
    pending: Vec<(u32, u32, u32)>,
    /// The denominators' running products.
    prefix: Vec<Fq>,
    kinds: Vec<Kind>,
    results: Vec<G1Affine>,
}

/// Whether `p` is the identity, which halo2curves encodes as (0, 0) (not on the curve). A plain
/// comparison: `is_identity` is constant-time, which costs more than the test is worth here
/// (nothing secret is summed).
#[inline(always)]
fn is_identity(p: &G1Affine) -> bool {
    p.x == Fq::ZERO && p.y == Fq::ZERO
}

/// How one addition is done.
#[derive(Clone, Copy)]
enum Kind {
    /// λ = (y_b − y_a) / (x_b − x_a).
    Add,
    /// λ = 3x_a² / 2y_a.
    Double,
    /// The result is known without a division (it is in `Batch::results`).
    Done,
}

/// How `p + q` is done, and its value when that needs no division.
#[inline(always)]
fn kind(p: &G1Affine, q: &G1Affine) -> (Kind, G1Affine) {
    if is_identity(p) {
        (Kind::Done, *q)
    } else if is_identity(q) {
        (Kind::Done, *p)
    } else if p.x != q.x {
        (Kind::Add, *p)
    } else if p.y == q.y {
        // y ≠ 0: G1 has odd order, so no point of order 2.
        (Kind::Double, *p)
    } else {
        (Kind::Done, G1Affine::identity())
    }
}

impl Batch {
    fn push(&mut self, sorted: &mut [G1Affine], dst: u32, a: u32, b: u32) {
        self.pending.push((dst, a, b));
        if self.pending.len() == BATCH {
            self.flush(sorted);
        }
    }

    fn flush(&mut self, sorted: &mut [G1Affine]) {
        if self.pending.is_empty() {
            return;
        }
        // Forward: how each addition is done, and the running product of the denominators
        // before it.
        self.prefix.clear();
        self.kinds.clear();
        self.results.clear();
        let mut acc = Fq::ONE;
        for &(_, a, b) in &self.pending {
            let (p, q) = (&sorted[a as usize], &sorted[b as usize]);
            self.prefix.push(acc);
            let (kind, known) = kind(p, q);
            match kind {
                Kind::Add => acc *= q.x - p.x,
                Kind::Double => acc *= p.y.double(),
                Kind::Done => {}
            }
            self.kinds.push(kind);
            self.results.push(known);
        }
        // acc ≠ 0: every factor is a nonzero difference or 2y with y ≠ 0.
        let mut inv = Option::<Fq>::from(acc.invert()).unwrap_or(Fq::ZERO);
        // Backward: each denominator's inverse, then the sum.
        for (k, &(_, a, b)) in self.pending.iter().enumerate().rev() {
            let (p, q) = (&sorted[a as usize], &sorted[b as usize]);
            let (num, den) = match self.kinds[k] {
                Kind::Add => (q.y - p.y, q.x - p.x),
                Kind::Double => {
                    let xx = p.x.square();
                    (xx.double() + xx, p.y.double())
                }
                Kind::Done => continue,
            };
            let lambda = num * (inv * self.prefix[k]);
            inv *= den;
            let x = lambda.square() - p.x - q.x;
            let y = lambda * (p.x - x) - p.y;
            self.results[k] = G1Affine { x, y };
        }
        for (&(dst, _, _), r) in self.pending.iter().zip(&self.results) {
            sorted[dst as usize] = *r;
        }
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_recompose_the_scalar() {
        use rand::SeedableRng;
        let mut r = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let edge = [
            Fr::ZERO,
            Fr::ONE,
            -Fr::ONE,
            Fr::from(u64::MAX),
            Fr::from(1u64 << 40),
        ];
        let scalars: Vec<Fr> = edge
            .into_iter()
            .chain((0..50).map(|_| Fr::random(&mut r)))
            .collect();
        for c in 2..=16u32 {
            for s in &scalars {
                let l = to_limbs(s);
                let windows = (bit_length(&l) + 1).div_ceil(c);
                let mut acc = Fr::ZERO;
                let base = Fr::from(1u64 << c);
                for w in (0..windows).rev() {
                    let d = digit(&l, w, c);
                    assert!(d.unsigned_abs() <= 1 << (c - 1), "c {c}: digit {d}");
                    let dv = Fr::from(d.unsigned_abs());
                    acc = acc * base + if d < 0 { -dv } else { dv };
                }
                assert_eq!(acc, *s, "c {c}");
            }
        }
    }
}
