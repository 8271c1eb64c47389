//! The CPU backend's NTT: a radix-4 decimation-in-frequency transform laid out for caches.
//!
//! halo2-axiom's parallel FFT (what the CPU backend used before) does two field multiplications
//! per butterfly (the twiddle is advanced by one more multiplication each time), runs each of
//! its `log n` radix-2 stages over the whole half of the vector a thread owns, and allocates an
//! n-element buffer per call. This one:
//!
//! - reads its twiddles from a table built once per domain size and kept for the process
//!   ([`twiddles`]: n elements, laid out stage by stage so that every stage reads them in
//!   order), so a butterfly costs one multiplication;
//! - does the first `log n − L` stages two at a time (radix 4) in passes over the whole vector,
//!   the first of them out of place into a pooled scratch buffer with the coset shift fused in,
//!   and the last `L` stages in blocks of `2^L` elements that stay in the core's cache, each
//!   block bit-reversed there;
//! - writes the result back in natural order in one gather (the rest of the bit reversal is a
//!   transpose of the `2^(log n − L)` blocks), with the inverse transform's index reversal,
//!   its `1/n` and its coset shift fused in.
//!
//! The inverse uses the forward table: `INTT(a)[k] = n⁻¹ · NTT(a)[(n − k) mod n]`.
//! Every result is exact field arithmetic, so it equals halo2's element for element (the tests
//! compare the two at every size up to 2^18 and on several pool sizes).

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use ff::Field;
use halo2curves::bn256::Fr;
use rayon::prelude::*;

/// log2 of the largest block done in cache: 2^14 elements are 512 KiB, half this machine's
/// (and most servers') per-core L2.
const BLOCK_LOG: u32 = 14;
/// Transforms of at most 2^SERIAL_LOG elements run on the calling thread, in place.
const SERIAL_LOG: u32 = 10;
/// Elements per rayon task in the passes over the whole vector.
const CHUNK: usize = 1 << 10;
/// Scratch buffers kept for later calls (each is one transform's size).
const POOLED_SCRATCH: usize = 2;

/// One domain's twiddles, stage by stage: `t[h + j] = ω_{2h}^j` for every stage half-size `h`
/// (a power of two below n) and `j < h`, where `ω_{2h} = ω^(n / 2h)`; `t[0]` is unused.
struct Twiddles {
    omega: Fr,
    t: Vec<Fr>,
}

impl Twiddles {
    fn new(log_n: u32, omega: Fr) -> Self {
        let n = 1usize << log_n;
        let mut t = vec![Fr::ONE; n];
        if n >= 2 {
            // The last stage's half: ω^j for j < n/2.
            let half = n / 2;
            t[half..]
                .par_chunks_mut(CHUNK)
                .enumerate()
                .for_each(|(i, c)| {
                    let mut w = omega.pow_vartime([(i * CHUNK) as u64]);
                    for v in c {
                        *v = w;
                        w *= omega;
                    }
                });
            // Each smaller stage's are every other one of the stage above: ω_{2h}^j = ω_{4h}^{2j}.
            let mut h = half / 2;
            while h >= 1 {
                let (lower, upper) = t.split_at_mut(2 * h);
                for (j, v) in lower[h..].iter_mut().enumerate() {
                    *v = upper[2 * j];
                }
                h /= 2;
            }
        }
        Self { omega, t }
    }
}

/// The twiddles of the domain of size 2^log_n with root `omega`, built on first use and kept for
/// the process (n field elements each: 32 MiB at 2^20). A root other than the one cached for
/// that size gets a table of its own, not kept.
fn twiddles(log_n: u32, omega: Fr) -> Arc<Twiddles> {
    static CACHE: OnceLock<Mutex<Vec<Option<Arc<Twiddles>>>>> = OnceLock::new();
    let cache =
        CACHE.get_or_init(|| Mutex::new(vec![None; <Fr as ff::PrimeField>::S as usize + 1]));
    let slot = log_n as usize;
    if let Some(t) = cache.lock().unwrap_or_else(PoisonError::into_inner)[slot].clone() {
        if t.omega == omega {
            return t;
        }
        return Arc::new(Twiddles::new(log_n, omega));
    }
    // Built outside the lock; two threads racing here build it twice and keep one.
    let built = Arc::new(Twiddles::new(log_n, omega));
    let mut guard = cache.lock().unwrap_or_else(PoisonError::into_inner);
    match &guard[slot] {
        Some(t) if t.omega == omega => t.clone(),
        Some(_) => built,
        None => {
            guard[slot] = Some(built.clone());
            built
        }
    }
}

/// n-element scratch buffers, reused across calls so that a transform does not fault in (and
/// the kernel clear) fresh pages every time.
struct Scratch(Vec<Fr>);

static SCRATCH_POOL: Mutex<Vec<Vec<Fr>>> = Mutex::new(Vec::new());

impl Scratch {
    fn take(n: usize) -> Self {
        let mut pool = SCRATCH_POOL.lock().unwrap_or_else(PoisonError::into_inner);
        match pool.iter().position(|b| b.len() >= n) {
            Some(i) => Scratch(pool.swap_remove(i)),
            None => {
                drop(pool);
                Scratch(vec![Fr::ZERO; n])
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        let mut pool = SCRATCH_POOL.lock().unwrap_or_else(PoisonError::into_inner);
        pool.push(buf);
        if pool.len() > POOLED_SCRATCH {
            // Keep the largest ones.
            pool.sort_by_key(|b| std::cmp::Reverse(b.len()));
            pool.truncate(POOLED_SCRATCH);
        }
    }
}

/// What happens after the transform proper.
#[derive(Clone, Copy)]
enum Finish {
    /// `out[k] = X[k]`.
    Forward,
    /// `out[k] = scale · shift^k · X[(n − k) mod n]`: the inverse transform, with its `1/n`
    /// in `scale` and an inverse coset shift in `shift` (`1` for none).
    Inverse { scale: Fr, shift: Fr },
}

/// In place, natural order in and out: `values[k] ← Σ_j values[j]·shift^j·ω^(jk)`
/// (`shift = None` for the plain transform). `values.len()` must be `2^log_n` and `omega` a
/// primitive `2^log_n`-th root of unity.
pub(super) fn forward(values: &mut [Fr], log_n: u32, omega: Fr, shift: Option<Fr>) {
    transform(values, log_n, omega, shift, Finish::Forward);
}

/// In place, natural order in and out: `values[k] ← scale · shift^k · Σ_j values[j]·ω^(−jk)`,
/// where `omega` is the domain's (forward) root: with `scale = 1/n` this is the inverse
/// transform, with `shift = g⁻¹` the inverse of the coset transform by `g`.
pub(super) fn inverse(values: &mut [Fr], log_n: u32, omega: Fr, scale: Fr, shift: Fr) {
    transform(values, log_n, omega, None, Finish::Inverse { scale, shift });
}

fn transform(values: &mut [Fr], log_n: u32, omega: Fr, pre: Option<Fr>, finish: Finish) {
    let n = values.len();
    debug_assert_eq!(n, 1usize << log_n);
    let tw = twiddles(log_n, omega);
    let t = &tw.t[..];
    let Some(block_log) = block_log(log_n, rayon::current_num_threads()) else {
        // Small: one block, on this thread.
        if let Some(c) = pre {
            let mut p = Fr::ONE;
            for v in values.iter_mut() {
                *v *= p;
                p *= c;
            }
        }
        dif_block(values, t);
        bit_reverse(values);
        if let Finish::Inverse { scale, shift } = finish {
            values[1..].reverse();
            let mut p = scale;
            for v in values.iter_mut() {
                *v *= p;
                p *= shift;
            }
        }
        return;
    };
    let outer = log_n - block_log;
    let mut scratch = Scratch::take(n);
    let work = &mut scratch.0[..n];
    // The stages of half-size n/2 down to 2^block_log, two per pass; the first pass reads
    // `values` and writes `work`.
    radix4_first_pass(values, work, n / 4, t, pre);
    let mut done = 2;
    while done < outer {
        radix4_pass(work, n >> (done + 2), t);
        done += 2;
    }
    // The remaining stages, block by block in cache; each block's part of the bit reversal.
    work.par_chunks_mut(1 << block_log).for_each(|b| {
        dif_block(b, t);
        bit_reverse(b);
    });
    gather(work, values, outer, block_log, finish);
}

/// log2 of the block size the last stages run in, or `None` for a transform small enough to
/// run on one thread. The passes before the blocks go two stages at a time, so `log_n − L` is
/// even (and at least 2); there are at least four blocks per thread where the size allows.
fn block_log(log_n: u32, threads: usize) -> Option<u32> {
    if log_n <= SERIAL_LOG {
        return None;
    }
    let spread = (threads.max(1) * 4).next_power_of_two().trailing_zeros();
    let mut l = BLOCK_LOG.min(log_n.saturating_sub(spread)).min(log_n - 2);
    if (log_n - l) % 2 == 1 {
        l -= 1;
    }
    // At least 2 (or 3) stages per block, of the parity that keeps `log_n − l` even.
    Some(l.max(2 + log_n % 2))
}

/// The radix-4 butterfly of the two stages of half-sizes `2q` and `q` on the four elements
/// `j, j + q, j + 2q, j + 3q` of a block of `4q`: `hi = t[2q..4q]`, `lo = t[q..2q]`.
#[inline(always)]
fn butterfly4(x: [Fr; 4], j: usize, q: usize, hi: &[Fr], lo: &[Fr]) -> [Fr; 4] {
    let [x0, x1, x2, x3] = x;
    let y0 = x0 + x2;
    let y2 = (x0 - x2) * hi[j];
    let y1 = x1 + x3;
    let y3 = (x1 - x3) * hi[j + q];
    let w = lo[j];
    [y0 + y1, (y0 - y1) * w, y2 + y3, (y2 - y3) * w]
}

/// The first two stages, from `src` into `dst` (one block of `4q = n` elements), each input
/// `src[j]` first multiplied by `shift^j` when there is a shift.
fn radix4_first_pass(src: &[Fr], dst: &mut [Fr], q: usize, t: &[Fr], shift: Option<Fr>) {
    let (hi, lo) = (&t[2 * q..4 * q], &t[q..2 * q]);
    let (d01, d23) = dst.split_at_mut(2 * q);
    let (d0, d1) = d01.split_at_mut(q);
    let (d2, d3) = d23.split_at_mut(q);
    let cq = shift.map(|c| c.pow_vartime([q as u64]));
    d0.par_chunks_mut(CHUNK)
        .zip(d1.par_chunks_mut(CHUNK))
        .zip(d2.par_chunks_mut(CHUNK))
        .zip(d3.par_chunks_mut(CHUNK))
        .enumerate()
        .for_each(|(ci, (((o0, o1), o2), o3))| {
            let j0 = ci * CHUNK;
            // shift^(j + iq) for the four quarters, advanced by one multiplication each.
            let mut p = match (shift, cq) {
                (Some(c), Some(cq)) => {
                    let p0 = c.pow_vartime([j0 as u64]);
                    let p1 = p0 * cq;
                    let p2 = p1 * cq;
                    Some(([p0, p1, p2, p2 * cq], c))
                }
                _ => None,
            };
            for i in 0..o0.len() {
                let j = j0 + i;
                let mut x = [src[j], src[j + q], src[j + 2 * q], src[j + 3 * q]];
                if let Some((ps, c)) = p.as_mut() {
                    for (xv, pv) in x.iter_mut().zip(ps.iter_mut()) {
                        *xv *= *pv;
                        *pv *= *c;
                    }
                }
                let [z0, z1, z2, z3] = butterfly4(x, j, q, hi, lo);
                o0[i] = z0;
                o1[i] = z1;
                o2[i] = z2;
                o3[i] = z3;
            }
        });
}

/// Two stages (half-sizes `2q` and `q`) over every block of `4q` elements, in place.
fn radix4_pass(data: &mut [Fr], q: usize, t: &[Fr]) {
    let (hi, lo) = (&t[2 * q..4 * q], &t[q..2 * q]);
    data.par_chunks_mut(4 * q).for_each(|block| {
        let (a01, a23) = block.split_at_mut(2 * q);
        let (a0, a1) = a01.split_at_mut(q);
        let (a2, a3) = a23.split_at_mut(q);
        a0.par_chunks_mut(CHUNK)
            .zip(a1.par_chunks_mut(CHUNK))
            .zip(a2.par_chunks_mut(CHUNK))
            .zip(a3.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(ci, (((x0, x1), x2), x3))| {
                radix4_run(x0, x1, x2, x3, ci * CHUNK, q, hi, lo);
            });
    });
}

/// The radix-4 butterflies of `j = j0 .. j0 + x0.len()` on four quarter slices, in place.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn radix4_run(
    x0: &mut [Fr],
    x1: &mut [Fr],
    x2: &mut [Fr],
    x3: &mut [Fr],
    j0: usize,
    q: usize,
    hi: &[Fr],
    lo: &[Fr],
) {
    for i in 0..x0.len() {
        let [z0, z1, z2, z3] = butterfly4([x0[i], x1[i], x2[i], x3[i]], j0 + i, q, hi, lo);
        x0[i] = z0;
        x1[i] = z1;
        x2[i] = z2;
        x3[i] = z3;
    }
}

/// Every stage of a decimation-in-frequency transform of `block` (natural order in,
/// bit-reversed out) on this thread: two stages at a time, the last one alone when their
/// number is odd (its twiddles are all 1).
fn dif_block(block: &mut [Fr], t: &[Fr]) {
    let len = block.len();
    let mut h = len / 2;
    while h >= 2 {
        let q = h / 2;
        let (hi, lo) = (&t[2 * q..4 * q], &t[q..2 * q]);
        for b in block.chunks_exact_mut(4 * q) {
            let (a01, a23) = b.split_at_mut(2 * q);
            let (a0, a1) = a01.split_at_mut(q);
            let (a2, a3) = a23.split_at_mut(q);
            radix4_run(a0, a1, a2, a3, 0, q, hi, lo);
        }
        h /= 4;
    }
    if h == 1 {
        for pair in block.chunks_exact_mut(2) {
            let (u, v) = (pair[0], pair[1]);
            pair[0] = u + v;
            pair[1] = u - v;
        }
    }
}

/// `i` with its low `bits` bits reversed (`bits ≥ 1`).
#[inline(always)]
fn reverse(i: usize, bits: u32) -> usize {
    i.reverse_bits() >> (usize::BITS - bits)
}

/// Bit-reversal permutation of `block`, in place.
fn bit_reverse(block: &mut [Fr]) {
    let len = block.len();
    if len <= 2 {
        return;
    }
    let bits = len.trailing_zeros();
    for i in 0..len {
        let r = reverse(i, bits);
        if i < r {
            block.swap(i, r);
        }
    }
}

/// Writes the transform held in `work` to `out` in natural order.
///
/// After the outer stages and each block's own stages and bit reversal, `work[b·B + o]` holds
/// `X[o·S + rev(b)]` (`B = 2^block_log` elements a block, `S = 2^outer` blocks, `rev` over
/// `outer` bits): the rest of the bit reversal is a transpose, done here tile by tile
/// (`TILE_ROWS` consecutive `o` of every block per task, so each task reads short runs).
fn gather(work: &[Fr], out: &mut [Fr], outer: u32, block_log: u32, finish: Finish) {
    const TILE_ROWS: usize = 8;
    let n = out.len();
    let s = 1usize << outer;
    let revs: Vec<usize> = (0..s).map(|b| reverse(b, outer) << block_log).collect();
    let at = |m: usize| work[revs[m & (s - 1)] + (m >> outer)];
    let tile = (s * TILE_ROWS).min(n);
    out.par_chunks_mut(tile)
        .enumerate()
        .for_each(|(ti, chunk)| {
            let k0 = ti * tile;
            match finish {
                Finish::Forward => {
                    for (i, v) in chunk.iter_mut().enumerate() {
                        *v = at(k0 + i);
                    }
                }
                Finish::Inverse { scale, shift } if shift == Fr::ONE => {
                    for (i, v) in chunk.iter_mut().enumerate() {
                        *v = at(n.wrapping_sub(k0 + i) & (n - 1)) * scale;
                    }
                }
                Finish::Inverse { scale, shift } => {
                    let mut p = scale * shift.pow_vartime([k0 as u64]);
                    for (i, v) in chunk.iter_mut().enumerate() {
                        *v = at(n.wrapping_sub(k0 + i) & (n - 1)) * p;
                        p *= shift;
                    }
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_leave_an_even_number_of_outer_stages() {
        for threads in [1usize, 2, 3, 16, 64] {
            for log_n in 0..=28u32 {
                match block_log(log_n, threads) {
                    None => assert!(log_n <= SERIAL_LOG),
                    Some(l) => {
                        assert!(log_n > SERIAL_LOG);
                        assert!((2..=BLOCK_LOG).contains(&l), "log_n {log_n}: {l}");
                        assert!(log_n - l >= 2 && (log_n - l) % 2 == 0, "log_n {log_n}: {l}");
                    }
                }
            }
        }
    }

    #[test]
    fn twiddles_are_the_powers_of_each_stages_root() {
        let log_n = 6;
        let omega = crate::Domain::new(log_n).expect("domain").omega();
        let tw = Twiddles::new(log_n, omega);
        let n = 1usize << log_n;
        let mut h = n / 2;
        while h >= 1 {
            let root = omega.pow_vartime([(n / (2 * h)) as u64]);
            for j in 0..h {
                assert_eq!(tw.t[h + j], root.pow_vartime([j as u64]), "h {h} j {j}");
            }
            h /= 2;
        }
    }
}
