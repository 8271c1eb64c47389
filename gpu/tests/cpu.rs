//! The CPU backend against naive references: MSM vs a plain sum of scalar multiplications,
//! NTT vs the O(n²) DFT and halo2's FFT, coset NTT vs direct evaluation at g·ω^i, round trips,
//! halo2 conventions, and argument validation.

use ff::{Field, PrimeField};
use gpu::{BackendError, Bases, ComputeBackend, CpuBackend, Direction, Domain, Fr, G1Affine, G1};
use group::prime::PrimeCurveAffine;
use group::{Curve, Group};
use halo2_proofs::poly::EvaluationDomain;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Random affine points with injected identities and duplicates.
fn points(n: usize, r: &mut ChaCha20Rng) -> Vec<G1Affine> {
    let mut proj: Vec<G1> = (0..n).map(|_| G1::random(&mut *r)).collect();
    for i in 0..n {
        match i % 7 {
            3 => proj[i] = G1::identity(),
            5 if i > 0 => proj[i] = proj[i - 1],
            6 if i > 1 => proj[i] = -proj[i - 2],
            _ => {}
        }
    }
    let mut out = vec![G1Affine::identity(); n];
    G1::batch_normalize(&proj, &mut out);
    out
}

/// Random scalars with injected 0, 1, −1, r−1 (= −1), small, and 64-bit values.
fn scalars(n: usize, r: &mut ChaCha20Rng) -> Vec<Fr> {
    (0..n)
        .map(|i| match i % 9 {
            0 => Fr::ZERO,
            1 => Fr::ONE,
            2 => -Fr::ONE,
            3 => Fr::from(r.gen_range(0u64..16)),
            4 => Fr::from(r.gen::<u64>()),
            5 => -Fr::from(r.gen_range(0u64..1000)),
            _ => Fr::random(&mut *r),
        })
        .collect()
}

fn naive_msm(points: &[G1Affine], scalars: &[Fr]) -> G1 {
    points
        .iter()
        .zip(scalars)
        .fold(G1::identity(), |acc, (p, s)| acc + G1::from(*p) * s)
}

#[test]
fn msm_matches_naive_sum() {
    let cpu = CpuBackend::new();
    let mut r = rng(1);
    // Window sizes from 2 up; one and several tasks per window.
    for &n in &[1usize, 2, 3, 4, 5, 31, 32, 33, 100, 1023, 1024, 1025, 8200] {
        let pts = points(n, &mut r);
        let sc = scalars(n, &mut r);
        let bases = Bases::new(pts.clone());
        let got = cpu.msm(&bases, &sc).expect("msm");
        assert_eq!(got.to_affine(), naive_msm(&pts, &sc).to_affine(), "n = {n}");
    }
}

#[test]
fn msm_large_without_identities() {
    // Duplicates and negations of points (doublings and cancellations in the affine sums), all
    // kinds of scalars.
    let cpu = CpuBackend::new();
    let mut r = rng(7);
    let n = 9000;
    let distinct: Vec<G1> = (0..64).map(|_| G1::random(&mut r)).collect();
    let proj: Vec<G1> = (0..n)
        .map(|i| {
            let p = distinct[i % distinct.len()];
            if i % 3 == 0 {
                -p
            } else {
                p
            }
        })
        .collect();
    let mut pts = vec![G1Affine::identity(); n];
    G1::batch_normalize(&proj, &mut pts);
    let sc = scalars(n, &mut r);
    let bases = Bases::new(pts.clone());
    assert!(pts.iter().all(|p| !bool::from(p.is_identity())));
    let got = cpu.msm(&bases, &sc).expect("msm");
    assert_eq!(got.to_affine(), naive_msm(&pts, &sc).to_affine());
}

#[test]
fn msm_edge_cases() {
    let cpu = CpuBackend::new();
    let mut r = rng(2);
    let p = G1::random(&mut r).to_affine();
    // All identity points.
    let bases = Bases::new(vec![G1Affine::identity(); 64]);
    let sc: Vec<Fr> = (0..64).map(|_| Fr::random(&mut r)).collect();
    assert_eq!(cpu.msm(&bases, &sc).unwrap(), G1::identity());
    // All the same point: Σ s_i · P = (Σ s_i) · P.
    let bases = Bases::new(vec![p; 300]);
    let sc: Vec<Fr> = (0..300).map(|_| Fr::random(&mut r)).collect();
    let sum: Fr = sc.iter().sum();
    assert_eq!(
        cpu.msm(&bases, &sc).unwrap().to_affine(),
        (p * sum).to_affine()
    );
    // P and −P with equal scalars cancel.
    let bases = Bases::new(vec![p, -p]);
    let s = Fr::random(&mut r);
    assert_eq!(cpu.msm(&bases, &[s, s]).unwrap(), G1::identity());
    // All-zero scalars, all-one scalars, all −1.
    let pts = points(1000, &mut r);
    let bases = Bases::new(pts.clone());
    assert_eq!(
        cpu.msm(&bases, &vec![Fr::ZERO; 1000]).unwrap(),
        G1::identity()
    );
    let ones = vec![Fr::ONE; 1000];
    let sum_pts = pts.iter().fold(G1::identity(), |a, p| a + p);
    assert_eq!(
        cpu.msm(&bases, &ones).unwrap().to_affine(),
        sum_pts.to_affine()
    );
    let minus = vec![-Fr::ONE; 1000];
    assert_eq!(
        cpu.msm(&bases, &minus).unwrap().to_affine(),
        (-sum_pts).to_affine()
    );
    // Fewer scalars than bases uses a prefix; none gives the identity.
    let sc = scalars(10, &mut r);
    assert_eq!(
        cpu.msm(&bases, &sc).unwrap().to_affine(),
        naive_msm(&pts[..10], &sc).to_affine()
    );
    assert_eq!(cpu.msm(&bases, &[]).unwrap(), G1::identity());
    assert_eq!(cpu.msm(&Bases::new(vec![]), &[]).unwrap(), G1::identity());
}

/// Past the MSM's 2^16-point sub-chunks, against halo2curves' `msm_parallel` (projective
/// buckets, an independent algorithm that takes identities): random scalars with edges, 16-bit
/// values, a column of 0s and 1s (every point in one bucket), one repeated value; bases with
/// identities, negations and repeats; in rayon pools of 1, 2, 3 and 16 threads (the tasks'
/// split depends on it).
#[test]
fn msm_equals_an_independent_msm_past_its_sub_chunks_in_every_pool() {
    let mut r = rng(13);
    for n in [(1usize << 16) + 3, (1 << 17) + 1] {
        let step = G1::random(&mut r);
        let mut acc = G1::random(&mut r);
        let proj: Vec<G1> = (0..n)
            .map(|i| {
                acc += step;
                match i % 97 {
                    5 => G1::identity(),
                    7 => -acc,
                    11 => step,
                    _ => acc,
                }
            })
            .collect();
        let mut pts = vec![G1Affine::identity(); n];
        G1::batch_normalize(&proj, &mut pts);
        let bases = Bases::new(pts.clone());
        let repeated = Fr::random(&mut r);
        let columns: [(&str, Vec<Fr>); 4] = [
            ("random", scalars(n, &mut r)),
            (
                "16-bit",
                (0..n)
                    .map(|_| Fr::from(r.gen_range(0u64..1 << 16)))
                    .collect(),
            ),
            (
                "0s and 1s",
                (0..n).map(|_| Fr::from(r.gen_bool(0.5))).collect(),
            ),
            ("one value", vec![repeated; n]),
        ];
        for (kind, sc) in columns {
            let want = halo2curves::msm::msm_parallel(&sc, &pts).to_affine();
            for threads in [1usize, 2, 3, 16] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let got = pool.install(|| CpuBackend::new().msm(&bases, &sc)).unwrap();
                assert_eq!(got.to_affine(), want, "n {n}, {kind}, {threads} threads");
            }
        }
    }
}

#[test]
fn bases_ids_are_stable_and_unique() {
    let a = Bases::new(vec![G1Affine::identity(); 3]);
    let b = Bases::new(vec![G1Affine::identity(); 3]);
    assert_ne!(a.id(), b.id());
    let a2 = a.clone();
    assert_eq!(a.id(), a2.id());
    let c = Bases::from_arc(a.shared().clone());
    assert_ne!(a.id(), c.id());
    assert_eq!(a.len(), 3);
}

fn naive_dft(a: &[Fr], root: Fr) -> Vec<Fr> {
    let n = a.len();
    (0..n)
        .map(|i| {
            let x = root.pow_vartime([i as u64]);
            a.iter().rev().fold(Fr::ZERO, |acc, c| acc * x + c)
        })
        .collect()
}

fn random_vec(n: usize, r: &mut ChaCha20Rng) -> Vec<Fr> {
    (0..n).map(|_| Fr::random(&mut *r)).collect()
}

#[test]
fn domain_matches_halo2() {
    for k in 1..=20u32 {
        let d = Domain::new(k).unwrap();
        let h = EvaluationDomain::<Fr>::new(1, k);
        assert_eq!(d.omega(), h.get_omega(), "k = {k}");
        assert_eq!(d.omega_inv(), h.get_omega_inv(), "k = {k}");
        assert_eq!(d.coset_gen(), h.g_coset);
        assert_eq!(d.coset_gen_inv(), h.g_coset_inv);
        assert_eq!(d.n_inv() * Fr::from(1u64 << k), Fr::ONE);
        assert_eq!(d.omega().pow_vartime([1u64 << k]), Fr::ONE);
        if k > 0 {
            assert_ne!(d.omega().pow_vartime([1u64 << (k - 1)]), Fr::ONE);
        }
    }
    assert_eq!(Domain::new(0).unwrap().omega(), Fr::ONE);
    assert_eq!(Domain::new(Fr::S).unwrap().size(), 1 << 28);
}

#[test]
fn ntt_matches_naive_dft() {
    let cpu = CpuBackend::new();
    let mut r = rng(3);
    for log_n in 0..=8u32 {
        let d = Domain::new(log_n).unwrap();
        let a = random_vec(d.size(), &mut r);
        let mut got = a.clone();
        cpu.ntt(&mut got, &d, Direction::Forward).unwrap();
        assert_eq!(got, naive_dft(&a, d.omega()), "forward log_n = {log_n}");

        let mut inv = a.clone();
        cpu.ntt(&mut inv, &d, Direction::Inverse).unwrap();
        let expect: Vec<Fr> = naive_dft(&a, d.omega_inv())
            .into_iter()
            .map(|v| v * d.n_inv())
            .collect();
        assert_eq!(inv, expect, "inverse log_n = {log_n}");
    }
}

#[test]
fn ntt_round_trips() {
    let cpu = CpuBackend::new();
    let mut r = rng(4);
    for log_n in [0u32, 1, 2, 5, 10, 12, 16] {
        let d = Domain::new(log_n).unwrap();
        let a = random_vec(d.size(), &mut r);
        let mut b = a.clone();
        cpu.ntt(&mut b, &d, Direction::Forward).unwrap();
        cpu.ntt(&mut b, &d, Direction::Inverse).unwrap();
        assert_eq!(a, b, "ntt round trip log_n = {log_n}");
        cpu.coset_ntt(&mut b, &d, Direction::Forward).unwrap();
        cpu.coset_ntt(&mut b, &d, Direction::Inverse).unwrap();
        assert_eq!(a, b, "coset round trip log_n = {log_n}");
    }
}

#[test]
fn coset_ntt_matches_direct_evaluation() {
    let cpu = CpuBackend::new();
    let mut r = rng(5);
    for log_n in 0..=7u32 {
        let d = Domain::new(log_n).unwrap();
        let a = random_vec(d.size(), &mut r);
        let mut got = a.clone();
        cpu.coset_ntt(&mut got, &d, Direction::Forward).unwrap();
        let expect: Vec<Fr> = (0..d.size())
            .map(|i| {
                let x = d.coset_gen() * d.omega().pow_vartime([i as u64]);
                a.iter().rev().fold(Fr::ZERO, |acc, c| acc * x + c)
            })
            .collect();
        assert_eq!(got, expect, "coset forward log_n = {log_n}");
        // Inverse recovers the coefficients from the evaluations.
        cpu.coset_ntt(&mut got, &d, Direction::Inverse).unwrap();
        assert_eq!(got, a, "coset inverse log_n = {log_n}");
    }
}

#[test]
fn shifted_ntt_matches_direct_evaluation_and_halo2_parts() {
    use halo2_proofs::poly::{Coeff, Polynomial};
    let cpu = CpuBackend::new();
    let mut r = rng(7);
    for log_n in 0..=6u32 {
        let d = Domain::new(log_n).unwrap();
        let a = random_vec(d.size(), &mut r);
        for shift in [Fr::ONE, -Fr::ONE, d.coset_gen(), Fr::random(&mut r)] {
            let mut p = cpu.upload(&a).unwrap();
            cpu.ntt_shifted(&mut p, &d, Direction::Forward, shift)
                .unwrap();
            let expect: Vec<Fr> = (0..d.size())
                .map(|i| {
                    let x = shift * d.omega().pow_vartime([i as u64]);
                    a.iter().rev().fold(Fr::ZERO, |acc, c| acc * x + c)
                })
                .collect();
            assert_eq!(
                cpu.download(&p).unwrap(),
                expect,
                "log_n = {log_n}, {shift:?}"
            );
            cpu.ntt_shifted(&mut p, &d, Direction::Inverse, shift)
                .unwrap();
            assert_eq!(cpu.download(&p).unwrap(), a, "inverse, log_n = {log_n}");
        }
        let mut p = cpu.upload(&a).unwrap();
        assert!(matches!(
            cpu.ntt_shifted(&mut p, &d, Direction::Inverse, Fr::ZERO),
            Err(gpu::BackendError::ZeroShift)
        ));
    }
    // Part p of halo2's extended coset (a domain 2^j times larger): shift g·ω_ext^p.
    for (j, k) in [(3u32, 4u32), (5, 6)] {
        let h = EvaluationDomain::<Fr>::new(j, k);
        let ratio = 1usize << (h.extended_k() - k);
        let d = Domain::new(k).unwrap();
        let ext = Domain::new(h.extended_k()).unwrap();
        let a = random_vec(d.size(), &mut r);
        let mut poly: Polynomial<Fr, Coeff> = h.empty_coeff();
        poly.values_mut().copy_from_slice(&a);
        let mut factor = Fr::ONE;
        for part in 0..ratio {
            let want = h.coeff_to_extended_part(poly.clone(), factor);
            let mut p = cpu.upload(&a).unwrap();
            let shift = ext.coset_gen() * ext.omega().pow_vartime([part as u64]);
            cpu.ntt_shifted(&mut p, &d, Direction::Forward, shift)
                .unwrap();
            assert_eq!(
                cpu.download(&p).unwrap(),
                want.values(),
                "k = {k}, part {part}"
            );
            factor *= h.get_extended_omega();
        }
    }
}

#[test]
fn coset_ntt_matches_halo2_domain() {
    use halo2_proofs::poly::{Coeff, Polynomial};
    let cpu = CpuBackend::new();
    let mut r = rng(6);
    for k in [3u32, 10, 14] {
        // j = 1: the extended domain equals the domain, so coeff_to_extended is a size-n coset FFT.
        let h = EvaluationDomain::<Fr>::new(1, k);
        assert_eq!(h.extended_k(), k);
        let d = Domain::new(k).unwrap();
        let a = random_vec(d.size(), &mut r);
        let mut poly: Polynomial<Fr, Coeff> = h.empty_coeff();
        poly.values_mut().copy_from_slice(&a);
        let ext = h.coeff_to_extended(&poly);
        let mut got = a.clone();
        cpu.coset_ntt(&mut got, &d, Direction::Forward).unwrap();
        assert_eq!(&got[..], ext.values(), "coeff_to_extended k = {k}");
        let back = h.extended_to_coeff(ext);
        cpu.coset_ntt(&mut got, &d, Direction::Inverse).unwrap();
        assert_eq!(&got[..back.len()], &back[..], "extended_to_coeff k = {k}");

        let mut lag = h.empty_lagrange();
        lag.values_mut().copy_from_slice(&a);
        let coeffs = h.lagrange_to_coeff(lag);
        let mut got = a.clone();
        cpu.ntt(&mut got, &d, Direction::Inverse).unwrap();
        assert_eq!(&got[..], coeffs.values(), "lagrange_to_coeff k = {k}");
    }
}

/// halo2-axiom's parallel FFT, what its prover runs on x86-64 (it ignores the `FFTData`).
fn halo2_fft(values: &mut [Fr], omega: Fr, log_n: u32) {
    let data = halo2_proofs::fft::recursive::FFTData::<Fr>::default();
    halo2_proofs::fft::parallel::fft(values, omega, log_n, &data, false);
}

/// The CPU backend's own NTT against halo2-axiom's FFT at every size up to 2^18 (2^16 in the
/// other pools), in rayon pools of 1, 2, 3 and 16 threads (its block layout depends on both):
/// forward, inverse, coset both ways and a shifted transform, on random values with 0, 1 and −1
/// mixed in.
#[test]
fn ntt_equals_halo2s_fft_at_every_size_and_pool_size() {
    let mut r = rng(12);
    for threads in [2usize, 1, 3, 16] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let max_log_n = if threads == 2 { 18 } else { 16 };
        pool.install(|| {
            let cpu = CpuBackend::new();
            for log_n in 0..=max_log_n {
                let d = Domain::new(log_n).unwrap();
                let at = format!("log_n {log_n}, {threads} threads");
                let a = with_edges(d.size(), &mut r);
                let powers = |c: Fr, s: Fr| -> Vec<Fr> {
                    std::iter::successors(Some(s), |p| Some(*p * c))
                        .take(d.size())
                        .collect()
                };

                let mut want = a.clone();
                halo2_fft(&mut want, d.omega(), log_n);
                let mut got = a.clone();
                cpu.ntt(&mut got, &d, Direction::Forward).unwrap();
                assert_eq!(got, want, "forward, {at}");

                let mut want = a.clone();
                halo2_fft(&mut want, d.omega_inv(), log_n);
                want.iter_mut().for_each(|v| *v *= d.n_inv());
                let mut got = a.clone();
                cpu.ntt(&mut got, &d, Direction::Inverse).unwrap();
                assert_eq!(got, want, "inverse, {at}");

                let mut want: Vec<Fr> = a
                    .iter()
                    .zip(powers(d.coset_gen(), Fr::ONE))
                    .map(|(v, p)| *v * p)
                    .collect();
                halo2_fft(&mut want, d.omega(), log_n);
                let mut got = a.clone();
                cpu.coset_ntt(&mut got, &d, Direction::Forward).unwrap();
                assert_eq!(got, want, "coset forward, {at}");

                let mut want = a.clone();
                halo2_fft(&mut want, d.omega_inv(), log_n);
                let factors = powers(d.coset_gen_inv(), d.n_inv());
                want.iter_mut().zip(factors).for_each(|(v, p)| *v *= p);
                let mut got = a.clone();
                cpu.coset_ntt(&mut got, &d, Direction::Inverse).unwrap();
                assert_eq!(got, want, "coset inverse, {at}");

                let shift = Fr::random(&mut r);
                let mut want: Vec<Fr> = a
                    .iter()
                    .zip(powers(shift, Fr::ONE))
                    .map(|(v, p)| *v * p)
                    .collect();
                halo2_fft(&mut want, d.omega(), log_n);
                let mut p = cpu.upload(&a).unwrap();
                cpu.ntt_shifted(&mut p, &d, Direction::Forward, shift)
                    .unwrap();
                assert_eq!(cpu.download(&p).unwrap(), want, "shifted, {at}");
                cpu.ntt_shifted(&mut p, &d, Direction::Inverse, shift)
                    .unwrap();
                assert_eq!(cpu.download(&p).unwrap(), a, "shifted back, {at}");
            }
        });
    }
}

#[test]
fn bad_arguments_are_errors() {
    let cpu = CpuBackend::new();
    let bases = Bases::new(vec![G1Affine::identity(); 4]);
    match cpu.msm(&bases, &[Fr::ONE; 5]) {
        Err(BackendError::TooManyScalars {
            scalars: 5,
            bases: 4,
        }) => {}
        other => panic!("expected TooManyScalars, got {other:?}"),
    }
    assert!(matches!(
        Domain::new(29),
        Err(BackendError::DomainTooLarge { log_n: 29, max: 28 })
    ));
    let d = Domain::new(3).unwrap();
    for len in [0usize, 1, 7, 9, 16] {
        let mut v = vec![Fr::ONE; len];
        for dir in [Direction::Forward, Direction::Inverse] {
            let e = cpu.ntt(&mut v, &d, dir).unwrap_err();
            assert!(matches!(e, BackendError::LengthMismatch { len: l, log_n: 3 } if l == len));
            let e = cpu.coset_ntt(&mut v, &d, dir).unwrap_err();
            assert!(matches!(e, BackendError::LengthMismatch { .. }));
            assert!(e.to_string().contains("2^3 = 8"), "{e}");
        }
        assert!(v.iter().all(|x| *x == Fr::ONE), "input untouched on error");
    }
}

/// Lengths around the CPU backend's 4096-element chunks and the CUDA backend's 64/256.
const AWKWARD: [usize; 10] = [0, 1, 2, 63, 64, 65, 257, 4095, 4097, 9000];

/// Random values with zeros, ones and -1 mixed in.
fn with_edges(n: usize, r: &mut ChaCha20Rng) -> Vec<Fr> {
    let mut v = random_vec(n, r);
    for (i, x) in v.iter_mut().enumerate() {
        match i % 11 {
            2 => *x = Fr::ZERO,
            5 => *x = Fr::ONE,
            7 => *x = -Fr::ONE,
            _ => {}
        }
    }
    v
}

#[test]
fn batch_invert_and_prefix_product_match_their_definitions() {
    let cpu = CpuBackend::new();
    let mut r = rng(41);
    for n in AWKWARD {
        let x = with_edges(n, &mut r);
        let mut p = cpu.upload(&x).unwrap();
        cpu.batch_invert(&mut p).unwrap();
        let want: Vec<Fr> = x
            .iter()
            .map(|v| Option::<Fr>::from(v.invert()).unwrap_or(Fr::ZERO))
            .collect();
        assert_eq!(cpu.download(&p).unwrap(), want, "batch_invert of {n}");

        let first = Fr::random(&mut r);
        let mut p = cpu.upload(&x).unwrap();
        cpu.prefix_product(&mut p, first).unwrap();
        let mut acc = first;
        let want: Vec<Fr> = x
            .iter()
            .map(|v| {
                let out = acc;
                acc *= v;
                out
            })
            .collect();
        assert_eq!(cpu.download(&p).unwrap(), want, "prefix_product of {n}");
    }
}

#[test]
fn divide_linear_and_evaluate_match_their_definitions() {
    let cpu = CpuBackend::new();
    let mut r = rng(42);
    let eval = |c: &[Fr], x: Fr| c.iter().rev().fold(Fr::ZERO, |acc, c| acc * x + c);
    for n in AWKWARD {
        let a = with_edges(n, &mut r);
        let b = Fr::random(&mut r);
        let mut p = cpu.upload(&a).unwrap();
        cpu.divide_linear(&mut p, b).unwrap();
        let q = cpu.download(&p).unwrap();
        assert_eq!(q.len(), n);
        if n > 0 {
            assert_eq!(q[n - 1], Fr::ZERO, "top coefficient of the quotient of {n}");
            // a = q·(X - b) + a(b), checked at a random point.
            let z = Fr::random(&mut r);
            assert_eq!(
                eval(&a, z),
                eval(&q, z) * (z - b) + eval(&a, b),
                "division of {n}"
            );
        }
        let points = [Fr::ZERO, Fr::ONE, -Fr::ONE, b, Fr::random(&mut r)];
        let got = cpu.evaluate(&cpu.upload(&a).unwrap(), &points).unwrap();
        let want: Vec<Fr> = points.iter().map(|&x| eval(&a, x)).collect();
        assert_eq!(got, want, "evaluate {n}");
    }
}

#[test]
fn ranges_are_read_written_and_bounded() {
    let cpu = CpuBackend::new();
    let mut r = rng(43);
    let x = random_vec(100, &mut r);
    let mut p = cpu.upload(&x).unwrap();
    assert_eq!(cpu.read_range(&p, 10, 5).unwrap(), x[10..15].to_vec());
    assert_eq!(cpu.read_range(&p, 100, 0).unwrap(), Vec::<Fr>::new());
    let w = random_vec(3, &mut r);
    cpu.write_range(&mut p, 97, &w).unwrap();
    assert_eq!(cpu.read_range(&p, 97, 3).unwrap(), w);
    for (start, len) in [(98usize, 3usize), (101, 0), (usize::MAX, 2)] {
        let err = cpu.read_range(&p, start, len).unwrap_err();
        assert!(err.to_string().contains("read_range"), "{err}");
        let err = cpu
            .write_range(&mut p, start, &vec![Fr::ONE; len])
            .unwrap_err();
        assert!(err.to_string().contains("write_range"), "{err}");
    }
}
