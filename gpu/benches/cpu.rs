//! CPU backend benches, with halo2's own MSM / FFT at the same sizes for the ratio
//! (target: `msm/cpu/N` ≤ 1.05 × `msm/halo2/N`, `ntt/cpu/forward/N` ≤ 1.05 × `ntt/halo2/forward/N`).
//!
//! Sizes: `GPU_BENCH_LOG_SIZES` = comma list and/or ranges of log2 n, e.g. `12..=20` or `14,16,18`
//! (default `12`, a smoke run). Ids: `msm/cpu/{log n}`, `msm/halo2/{log n}`,
//! `ntt/cpu/{forward|inverse|coset}/{log n}`, `ntt/halo2/forward/{log n}`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ff::Field;
use gpu::{Bases, ComputeBackend, CpuBackend, Direction, Domain, Fr, G1Affine, G1};
use group::prime::PrimeCurveAffine;
use group::Curve;
use halo2_proofs::arithmetic::best_fft;
use halo2_proofs::fft::recursive::FFTData;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;

fn log_sizes() -> Vec<u32> {
    let spec = std::env::var("GPU_BENCH_LOG_SIZES").unwrap_or_else(|_| "12".to_string());
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once("..=") {
            if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                out.extend(a..=b);
            }
        } else if let Ok(v) = part.parse() {
            out.push(v);
        }
    }
    out.retain(|&k| (1..=28).contains(&k));
    out
}

fn random_points(n: usize) -> Vec<G1Affine> {
    // Cheap distinct points: random multiples of the generator built in parallel.
    let proj: Vec<G1> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut r = ChaCha20Rng::seed_from_u64(i as u64);
            G1::generator() * Fr::random(&mut r)
        })
        .collect();
    let mut out = vec![G1Affine::identity(); n];
    G1::batch_normalize(&proj, &mut out);
    out
}

fn random_scalars(n: usize, seed: u64) -> Vec<Fr> {
    let mut r = ChaCha20Rng::seed_from_u64(seed);
    (0..n).map(|_| Fr::random(&mut r)).collect()
}

fn bench_msm(c: &mut Criterion) {
    let cpu = CpuBackend::new();
    let mut g = c.benchmark_group("msm");
    g.sample_size(10).warm_up_time(Duration::from_millis(500));
    for log_n in log_sizes() {
        let n = 1usize << log_n;
        let bases = Bases::new(random_points(n));
        let scalars = random_scalars(n, 7);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("cpu", log_n), &log_n, |b, _| {
            b.iter(|| cpu.msm(&bases, &scalars).expect("msm"))
        });
        g.bench_with_input(BenchmarkId::new("halo2", log_n), &log_n, |b, _| {
            b.iter(|| halo2_proofs::arithmetic::best_multiexp(&scalars, bases.points()))
        });
    }
    g.finish();
}

fn bench_ntt(c: &mut Criterion) {
    let cpu = CpuBackend::new();
    let mut g = c.benchmark_group("ntt");
    g.sample_size(10).warm_up_time(Duration::from_millis(500));
    for log_n in log_sizes() {
        let n = 1usize << log_n;
        let domain = Domain::new(log_n).expect("domain");
        let input = random_scalars(n, 11);
        g.throughput(Throughput::Elements(n as u64));
        let mut buf = input.clone();
        for (label, coset, dir) in [
            ("forward", false, Direction::Forward),
            ("inverse", false, Direction::Inverse),
            ("coset", true, Direction::Forward),
        ] {
            g.bench_function(BenchmarkId::new(format!("cpu/{label}"), log_n), |b| {
                b.iter(|| {
                    if coset {
                        cpu.coset_ntt(&mut buf, &domain, dir).expect("ntt")
                    } else {
                        cpu.ntt(&mut buf, &domain, dir).expect("ntt")
                    }
                })
            });
        }
        // halo2's dispatcher as EvaluationDomain calls it (FFTData built once, outside the timing).
        let data = FFTData::<Fr>::new(n, domain.omega(), domain.omega_inv());
        g.bench_function(BenchmarkId::new("halo2/forward", log_n), |b| {
            b.iter(|| best_fft(&mut buf, domain.omega(), log_n, &data, false))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_msm, bench_ntt);
criterion_main!(benches);
