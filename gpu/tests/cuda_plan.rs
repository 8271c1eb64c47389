//! Host-side parts of the CUDA backend (`gpu::cuda::plan`), without a GPU: window size choice,
//! signed-digit recoding, window combination, twiddle and coset tables against the `Domain`, the
//! NTT pass schedule, the limb layouts; plus host emulations of the kernels' index arithmetic
//! (the MSM bucket/window structure and the NTT bit-reversal + shared-memory passes, mirroring
//! `kernels/msm.cu` and `kernels/ntt.cu` line by line) compared with the CPU backend.

use ff::{Field, PrimeField};
use gpu::cuda::plan::{
    combine_windows, coset_tables, fold_levels, fr_to_limbs, limbs_to_fr, limbs_to_point,
    most_segments, num_windows, parts_sum_levels, pass_schedule, points_to_limbs, reduce_parts,
    scalar_limbs, segment_len, signed_digits, twiddle_tables, window_bits, SplitPowers, FOLD_GROUP,
    MAX_PASS_STAGES, PARTS_SUM_GROUP,
};
use gpu::{Bases, ComputeBackend, CpuBackend, Direction, Domain, Fr, G1Affine, G1};
use group::prime::PrimeCurveAffine;
use group::{Curve, Group};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

#[test]
fn window_size_choice() {
    assert_eq!(window_bits(0), 10);
    assert_eq!(window_bits(1), 10);
    assert_eq!(window_bits(1 << 16), 10);
    assert_eq!(window_bits((1 << 20) + 1), 13);
    assert_eq!(window_bits(1 << 20), 12);
    assert_eq!(window_bits(1 << 24), 16);
    assert_eq!(window_bits(1 << 30), 20);
    for c in 10..=20 {
        // Enough windows for 254 bits plus the final carry, and no more.
        assert!(num_windows(c) * c >= 255);
        assert!((num_windows(c) - 1) * c < 255);
    }
}

#[test]
fn segment_lengths() {
    assert_eq!(segment_len(1, 26), 32);
    assert_eq!(segment_len(1 << 20, 22), 88);
    assert_eq!(segment_len(1 << 24, 16), 1024);
    assert_eq!(segment_len(1 << 26, 15), 3840);
    assert_eq!(reduce_parts(512), 256);
    assert_eq!(reduce_parts(1 << 11), 256);
    assert_eq!(reduce_parts(1 << 13), 512);
    assert_eq!(reduce_parts(1 << 15), 2048);
    assert_eq!(reduce_parts(1 << 19), 1 << 15);
    assert_eq!(reduce_parts(128), 128);
    // The segment sums' fold: the largest bucket comes down to at most FOLD_GROUP sums; a bucket
    // holding every scalar bounds it.
    assert_eq!(fold_levels(0), Vec::<u32>::new());
    assert_eq!(fold_levels(1), Vec::<u32>::new());
    assert_eq!(fold_levels(32), Vec::<u32>::new());
    assert_eq!(fold_levels(33), vec![32]);
    assert_eq!(fold_levels(1024), vec![32]);
    assert_eq!(fold_levels(1025), vec![32, 32]);
    assert_eq!(most_segments(700, 32), 22);
    assert_eq!(most_segments(1025, 32), 33);
    assert_eq!(most_segments(1 << 20, 88), 11_916);
    assert_eq!(fold_levels(most_segments(1 << 20, 88)), vec![32, 32]);
    for log_n in [10u32, 16, 20, 24, 26] {
        let n = 1usize << log_n;
        let seg = segment_len(n, num_windows(window_bits(n)));
        let mut most = most_segments(n, seg);
        for g in fold_levels(most) {
            assert_eq!(g, FOLD_GROUP);
            most = most.div_ceil(g as usize);
        }
        assert!(most <= FOLD_GROUP as usize, "2^{log_n}: {most} sums left");
    }
    assert_eq!(parts_sum_levels(1), Vec::<u32>::new());
    assert_eq!(parts_sum_levels(8), vec![8]);
    assert_eq!(parts_sum_levels(32), vec![32]);
    assert_eq!(parts_sum_levels(256), vec![32, 8]);
    assert_eq!(parts_sum_levels(2048), vec![32, 32, 2]);
    // Every level's group divides what is left, and the product is the parts of a window.
    for c in 10..=20u32 {
        let parts = reduce_parts(1 << (c - 1));
        assert!(parts.is_power_of_two() && (1u32 << (c - 1)).is_multiple_of(parts));
        let levels = parts_sum_levels(parts);
        assert_eq!(levels.iter().product::<u32>(), parts, "c = {c}");
        assert!(levels
            .iter()
            .all(|g| *g <= PARTS_SUM_GROUP && g.is_power_of_two()));
    }
}

#[test]
fn recoding_recomposes() {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let mut scalars = vec![
        Fr::ZERO,
        Fr::ONE,
        -Fr::ONE,
        Fr::from(u64::MAX),
        -Fr::from(2),
    ];
    scalars.extend((0..100).map(|_| Fr::random(&mut rng)));
    for c in 10..=20u32 {
        for s in &scalars {
            let digits = signed_digits(&scalar_limbs(s), c);
            let mut acc = Fr::ZERO;
            for d in digits.iter().rev() {
                assert!(*d > -(1 << (c - 1)) && *d <= 1 << (c - 1));
                let dv = if *d < 0 {
                    -Fr::from((-*d) as u64)
                } else {
                    Fr::from(*d as u64)
                };
                acc = acc * Fr::from(1u64 << c) + dv;
            }
            assert_eq!(acc, *s);
        }
    }
}

#[test]
fn scalar_limbs_are_canonical() {
    let s = Fr::from(0x1234_5678_9abc_def0u64);
    assert_eq!(
        scalar_limbs(&s),
        [0x9abc_def0, 0x1234_5678, 0, 0, 0, 0, 0, 0]
    );
    let r_minus_1 = scalar_limbs(&-Fr::ONE);
    assert_eq!(r_minus_1[0], 0xf000_0000);
    assert_eq!(r_minus_1[7], 0x3064_4e72);
}

fn exclusive_scan(v: &mut [u32]) -> u32 {
    let mut acc = 0u32;
    for x in v.iter_mut() {
        let c = *x;
        *x = acc;
        acc += c;
    }
    acc
}

/// The MSM pipeline of `kernels/msm.cu` step by step on the host: histogram, exclusive scan,
/// scatter of (point | sign) entries, segment split and binary search, per-segment accumulation,
/// per-bucket sums, running-sum reduction in parts, window combination.
fn emulated_msm(points: &[G1Affine], scalars: &[Fr]) -> G1 {
    const SIGN: u32 = 0x8000_0000;
    let n = scalars.len();
    let c = window_bits(n);
    let windows = num_windows(c) as usize;
    let b = 1usize << (c - 1);
    let total = windows * b;
    let digits: Vec<Vec<i32>> = scalars
        .iter()
        .map(|s| signed_digits(&scalar_limbs(s), c))
        .collect();
    // msm_histogram
    let mut counts = vec![0u32; total];
    for d in &digits {
        for (w, x) in d.iter().enumerate() {
            if *x != 0 {
                counts[w * b + x.unsigned_abs() as usize - 1] += 1;
            }
        }
    }
    let mut offsets = counts.clone();
    let entries = exclusive_scan(&mut offsets);
    // msm_scatter
    let mut cursor = offsets.clone();
    let mut sorted = vec![u32::MAX; entries as usize];
    for (i, d) in digits.iter().enumerate() {
        for (w, x) in d.iter().enumerate() {
            if *x != 0 {
                let j = w * b + x.unsigned_abs() as usize - 1;
                sorted[cursor[j] as usize] = i as u32 | if *x < 0 { SIGN } else { 0 };
                cursor[j] += 1;
            }
        }
    }
    assert!(
        sorted.iter().all(|e| *e != u32::MAX),
        "every entry written once"
    );
    // msm_segment_count + scan
    let seg_len = segment_len(n, windows as u32);
    let mut seg_offsets: Vec<u32> = counts.iter().map(|c| c.div_ceil(seg_len)).collect();
    let segments = exclusive_scan(&mut seg_offsets);
    // msm_accumulate
    let mut seg_sums = vec![G1::identity(); segments as usize];
    for (seg, out) in seg_sums.iter_mut().enumerate() {
        let seg = seg as u32;
        let (mut lo, mut hi) = (0usize, total);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if seg_offsets[mid] <= seg {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let j = lo;
        let k = seg - seg_offsets[j];
        let begin = offsets[j] + k * seg_len;
        let end = (offsets[j] + counts[j]).min(begin + seg_len);
        assert!(begin < end, "segment {seg} of bucket {j} is empty");
        for e in &sorted[begin as usize..end as usize] {
            let p = points[(e & !SIGN) as usize];
            *out += if e & SIGN != 0 { -p } else { p };
        }
    }
    // msm_bucket_sum
    let buckets: Vec<G1> = (0..total)
        .map(|j| {
            let first = seg_offsets[j] as usize;
            let nseg = counts[j].div_ceil(seg_len) as usize;
            seg_sums[first..first + nseg]
                .iter()
                .fold(G1::identity(), |a, s| a + s)
        })
        .collect();
    // msm_window_reduce (msm_weighted_sum), then the host side.
    let parts = reduce_parts(b as u32) as usize;
    let per = b / parts;
    let mut window_sums = vec![G1::identity(); windows];
    for (w, ws) in window_sums.iter_mut().enumerate() {
        for t in 0..parts {
            let (lo, hi) = (t * per, (t + 1) * per);
            let (mut acc, mut sum) = (G1::identity(), G1::identity());
            for j in (lo..hi).rev() {
                acc += buckets[w * b + j];
                sum += acc;
            }
            *ws += sum + acc * Fr::from(lo as u64);
        }
    }
    combine_windows(&window_sums, c)
}

#[test]
fn emulated_msm_matches_cpu() {
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let cpu = CpuBackend::new();
    for n in [1usize, 2, 3, 33, 300] {
        let mut points: Vec<G1Affine> = (0..n).map(|_| G1::random(&mut rng).to_affine()).collect();
        let mut scalars: Vec<Fr> = (0..n).map(|_| Fr::random(&mut rng)).collect();
        if n > 3 {
            points[1] = G1Affine::identity();
            points[2] = points[0];
            scalars[0] = Fr::ZERO;
            scalars[2] = -Fr::ONE;
            scalars[3] = Fr::ONE;
            scalars[4] = Fr::from(rng.gen::<u64>());
        }
        let want = cpu.msm(&Bases::new(points.clone()), &scalars).unwrap();
        assert_eq!(
            emulated_msm(&points, &scalars).to_affine(),
            want.to_affine(),
            "n = {n}"
        );
    }
}

#[test]
fn window_combination() {
    let mut rng = ChaCha20Rng::seed_from_u64(13);
    let ws: Vec<G1> = (0..5).map(|_| G1::random(&mut rng)).collect();
    let c = 12;
    let mut want = G1::identity();
    for (w, p) in ws.iter().enumerate() {
        want += *p * Fr::from(2).pow_vartime([(c * w) as u64]);
    }
    assert_eq!(combine_windows(&ws, c as u32), want);
    assert_eq!(combine_windows(&[], 12), G1::identity());
}

#[test]
fn twiddles_and_tables_match_domain() {
    for log_n in [0u32, 1, 2, 5, 11] {
        let d = Domain::new(log_n).unwrap();
        let n = d.size();
        for split in [false, true] {
            let tw = twiddle_tables(d.omega(), log_n, split);
            let twi = twiddle_tables(d.omega_inv(), log_n, split);
            // Every exponent below n/2 (and 0 for n = 1): from one table of n/2 powers, or
            // from about 2·sqrt(n/2) elements.
            if split {
                assert!(tw.lo.len() + tw.hi.len() <= 2 + 2 * (1usize << (log_n / 2)));
            } else {
                assert_eq!((tw.lo.len(), tw.hi.len()), ((n / 2).max(1), 1));
            }
            for k in 0..(n / 2).max(1) {
                assert_eq!(tw.get(k), d.omega().pow_vartime([k as u64]));
                assert_eq!(tw.get(k) * twi.get(k), Fr::ONE);
            }
            assert_eq!(
                (tw.lo[0], tw.hi[0]),
                (Fr::ONE, Fr::ONE),
                "no product for w^0"
            );
        }
        let fwd = coset_tables(&d, true);
        let inv = coset_tables(&d, false);
        for i in 0..n {
            let g_i = d.coset_gen().pow_vartime([i as u64]);
            assert_eq!(fwd.get(i), g_i);
            assert_eq!(inv.get(i) * g_i, d.n_inv());
        }
    }
    let s = SplitPowers::new(Fr::from(3), Fr::from(5), 7);
    assert_eq!(s.lo.len(), 8);
    assert_eq!(s.hi.len(), 16);
    assert_eq!(s.get(100), Fr::from(5) * Fr::from(3).pow_vartime([100]));
}

#[test]
fn pass_schedules() {
    assert!(pass_schedule(0).is_empty());
    assert_eq!(pass_schedule(1), vec![1]);
    assert_eq!(pass_schedule(10), vec![10]);
    assert_eq!(pass_schedule(11), vec![6, 5]);
    assert_eq!(pass_schedule(20), vec![10, 10]);
    assert_eq!(pass_schedule(24), vec![8, 8, 8]);
    for log_n in 0..=28 {
        let s = pass_schedule(log_n);
        assert_eq!(s.iter().sum::<u32>(), log_n);
        assert!(s.iter().all(|&x| (1..=MAX_PASS_STAGES).contains(&x)));
        assert_eq!(s.len() as u32, log_n.div_ceil(MAX_PASS_STAGES));
    }
}

#[test]
fn limb_layouts_round_trip() {
    let mut rng = ChaCha20Rng::seed_from_u64(14);
    let v: Vec<Fr> = (0..5000).map(|_| Fr::random(&mut rng)).collect();
    let limbs = fr_to_limbs(&v).unwrap();
    assert_eq!(limbs.len(), v.len() * 8);
    let mut back = vec![Fr::ZERO; v.len()];
    limbs_to_fr(&limbs, &mut back);
    assert_eq!(back, v);
    // Montgomery layout: ONE is R mod r, not 1.
    assert_eq!(fr_to_limbs(&[Fr::ONE]).unwrap()[0], 0x4fff_fffb);

    let pts: Vec<G1Affine> = (0..50)
        .map(|i| {
            if i % 9 == 0 {
                G1Affine::identity()
            } else {
                G1::random(&mut rng).to_affine()
            }
        })
        .collect();
    let pl = points_to_limbs(&pts).unwrap();
    for (p, l) in pts.iter().zip(pl.chunks_exact(16)) {
        assert_eq!(limbs_to_point(l).unwrap(), *p);
    }
    assert!(pl[..16].iter().all(|x| *x == 0), "identity is (0, 0)");
    let mut bad = pl[16..32].to_vec();
    bad[8] ^= 1;
    assert!(limbs_to_point(&bad).is_err());
}

/// The NTT exactly as `ntt_pass` indexes it (the first pass gathering in bit-reversed order), on
/// the host.
fn emulated_ntt(values: &mut [Fr], d: &Domain, forward: bool, coset: bool, split: bool) {
    let log_n = d.log_n();
    if log_n == 0 {
        return;
    }
    let n = d.size();
    let tw = twiddle_tables(
        if forward { d.omega() } else { d.omega_inv() },
        log_n,
        split,
    );
    let tables = coset_tables(d, forward);
    let mut data = vec![Fr::ZERO; n];
    let schedule = pass_schedule(log_n);
    let mut m = 0u32;
    for (p, &s) in schedule.iter().enumerate() {
        let last = p + 1 == schedule.len();
        let half = 1u32 << (s - 1);
        for block in 0..(1u32 << (log_n - s)) {
            let low = block & ((1 << m) - 1);
            let high = block >> m;
            let base = (high << (m + s)) | low;
            let mut sh: Vec<Fr> = (0..2 * half)
                .map(|e| {
                    let idx = base | (e << m);
                    if p > 0 {
                        return data[idx as usize];
                    }
                    let from = (idx.reverse_bits() >> (32 - log_n)) as usize;
                    if forward && coset {
                        values[from] * tables.get(from)
                    } else {
                        values[from]
                    }
                })
                .collect();
            for jj in 0..s {
                let j = m + jj;
                let below = (1u32 << jj) - 1;
                // The stage's twiddles, built by the block as the kernel does.
                let stage: Vec<Fr> = (0..=below)
                    .map(|i| tw.get((((i << m) | low) << (log_n - j - 1)) as usize))
                    .collect();
                for t in 0..half {
                    let a = ((t >> jj) << (jj + 1)) | (t & below);
                    let c = a | (1 << jj);
                    let u = sh[a as usize];
                    let v = sh[c as usize] * stage[(a & below) as usize];
                    sh[a as usize] = u + v;
                    sh[c as usize] = u - v;
                }
            }
            for e in 0..2 * half {
                let idx = (base | (e << m)) as usize;
                let mut v = sh[e as usize];
                if last && !forward {
                    v *= if coset { tables.get(idx) } else { d.n_inv() };
                }
                data[idx] = v;
            }
        }
        m += s;
    }
    values.copy_from_slice(&data);
}

#[test]
fn emulated_ntt_matches_cpu() {
    let cpu = CpuBackend::new();
    let mut rng = ChaCha20Rng::seed_from_u64(15);
    for log_n in [0u32, 1, 2, 3, 10, 11, 13] {
        let d = Domain::new(log_n).unwrap();
        let x: Vec<Fr> = (0..d.size()).map(|_| Fr::random(&mut rng)).collect();
        for forward in [true, false] {
            let dir = if forward {
                Direction::Forward
            } else {
                Direction::Inverse
            };
            for (coset, split) in [(false, false), (true, false), (false, true), (true, true)] {
                let mut want = x.clone();
                if coset {
                    cpu.coset_ntt(&mut want, &d, dir).unwrap();
                } else {
                    cpu.ntt(&mut want, &d, dir).unwrap();
                }
                let mut got = x.clone();
                emulated_ntt(&mut got, &d, forward, coset, split);
                assert!(
                    got == want,
                    "log_n {log_n} forward {forward} coset {coset} split {split}"
                );
            }
        }
    }
    // The field's two-adicity bounds the domains the tables are built for.
    assert_eq!(Fr::S, 28);
}
