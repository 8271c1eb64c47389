//! CUDA backend benches. Without a usable CUDA device they print why and measure nothing (the CPU
//! benches are in `benches/cpu.rs`).
//!
//! Sizes: `GPU_BENCH_LOG_SIZES` = comma list and/or ranges of log2 n, e.g. `16..=24` or `16,20,24`
//! (default `16`). Ids:
//! - `msm/cuda/{log n}`: bases and scalars resident on the device (the host only adds the
//!   per-window partial sums, see `kernels/msm.cu`);
//! - `msm/cuda-h2h/{log n}`: scalars from host memory (converted and uploaded each time), bases
//!   resident (they are uploaded once per SRS);
//! - `msm/cuda-c{c}/{log n}`: as `msm/cuda` with a window of `c` bits instead of
//!   `plan::window_bits`'s choice, for each `c` in `GPU_BENCH_MSM_WINDOWS` (a comma list, none by
//!   default): to measure that choice on a GPU;
//! - `msm/cuda-ones/{log n}`: as `msm/cuda` with every scalar 1 (a fixed or selector column):
//!   every scalar in one bucket of one window, the case of `msm.cu`'s warp-aggregated counting
//!   (`GPU_MSM_PLAIN_ATOMICS=1` compiles it without, for comparison);
//! - `ntt/cuda/{forward|inverse|coset}/{log n}`: values resident on the device;
//! - `ntt/cuda-h2h/{forward|inverse|coset}/{log n}`: host slice in, host slice out;
//! - `transfer/cuda/{upload|download}/{log n}`: `upload_values` / `download_values` (through the
//!   backend's page-locked staging buffers; the upload waited for on the stream), and
//!   `transfer/cuda-pageable/upload/{log n}`: what the upload was before them (the whole vector
//!   converted into a fresh `Vec`, then copied from that pageable memory).
//!
//! Timing is wall-clock around calls that synchronise the stream, after criterion's warm-up (the
//! first call also compiles or loads the kernels and builds the twiddle tables; the warm-up
//! absorbs it).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ff::Field;
use gpu::{Bases, ComputeBackend, CudaBackend, Direction, Domain, Fr, G1Affine, G1};
use group::prime::PrimeCurveAffine;
use group::{Curve, Group};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;

fn log_sizes() -> Vec<u32> {
    let spec = std::env::var("GPU_BENCH_LOG_SIZES").unwrap_or_else(|_| "16".to_string());
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

/// `GPU_BENCH_MSM_WINDOWS`: window sizes (bits, comma list) for `msm/cuda-c{c}/{log n}`; none by
/// default. Sizes outside the kernels' range are dropped with a message.
fn msm_windows() -> Vec<u32> {
    let spec = std::env::var("GPU_BENCH_MSM_WINDOWS").unwrap_or_default();
    let range = gpu::cuda::plan::MIN_WINDOW_BITS..=gpu::cuda::plan::MAX_WINDOW_BITS;
    spec.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .filter_map(|p| match p.parse::<u32>() {
            Ok(c) if range.contains(&c) => Some(c),
            _ => {
                eprintln!(
                    "GPU_BENCH_MSM_WINDOWS: '{p}' is not a window size in {range:?}; dropped"
                );
                None
            }
        })
        .collect()
}

fn backend() -> Option<CudaBackend> {
    match CudaBackend::new(0) {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("no usable CUDA device ({e}); CUDA benches SKIPPED");
            None
        }
    }
}

/// Distinct points cheaply: per chunk, a running sum of a random point (one projective addition
/// per point), chunks in parallel, then batch-normalised.
fn random_points(n: usize) -> Vec<G1Affine> {
    const CHUNK: usize = 1 << 14;
    let mut proj = vec![G1::identity(); n];
    proj.par_chunks_mut(CHUNK).enumerate().for_each(|(i, c)| {
        let mut r = ChaCha20Rng::seed_from_u64(1000 + i as u64);
        let step = G1::random(&mut r);
        let mut acc = G1::random(&mut r);
        for p in c {
            acc += step;
            *p = acc;
        }
    });
    let mut out = vec![G1Affine::identity(); n];
    out.par_chunks_mut(CHUNK)
        .zip(proj.par_chunks(CHUNK))
        .for_each(|(o, p)| G1::batch_normalize(p, o));
    out
}

fn random_scalars(n: usize, seed: u64) -> Vec<Fr> {
    (0..n)
        .into_par_iter()
        .chunks(1 << 14)
        .enumerate()
        .flat_map_iter(|(i, c)| {
            let mut r = ChaCha20Rng::seed_from_u64(seed ^ ((i as u64) << 20));
            c.into_iter()
                .map(|_| Fr::random(&mut r))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn bench_msm(c: &mut Criterion) {
    let Some(gpu) = backend() else { return };
    let mut g = c.benchmark_group("msm");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for log_n in log_sizes() {
        let n = 1usize << log_n;
        let bases = Bases::new(random_points(n));
        let scalars = random_scalars(n, 7);
        let dev = match gpu
            .upload_bases(&bases)
            .and_then(|()| gpu.upload_scalars(&scalars))
        {
            Ok(d) => d,
            Err(e) => {
                eprintln!("msm 2^{log_n}: upload failed ({e}); skipped");
                continue;
            }
        };
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("cuda", log_n), &log_n, |b, _| {
            b.iter(|| gpu.msm_device(&bases, &dev).expect("cuda msm"))
        });
        g.bench_with_input(BenchmarkId::new("cuda-h2h", log_n), &log_n, |b, _| {
            b.iter(|| gpu.msm(&bases, &scalars).expect("cuda msm"))
        });
        for bits in msm_windows() {
            let id = BenchmarkId::new(format!("cuda-c{bits}"), log_n);
            g.bench_with_input(id, &bits, |b, &bits| {
                b.iter(|| {
                    gpu.msm_device_with_window(&bases, &dev, bits)
                        .expect("cuda msm")
                })
            });
        }
        drop(dev);
        match gpu.upload_scalars(&vec![Fr::ONE; n]) {
            Ok(ones) => {
                g.bench_with_input(BenchmarkId::new("cuda-ones", log_n), &log_n, |b, _| {
                    b.iter(|| gpu.msm_device(&bases, &ones).expect("cuda msm"))
                });
            }
            Err(e) => eprintln!("msm 2^{log_n} of ones: upload failed ({e}); skipped"),
        }
        if let Err(e) = gpu.release_bases(&bases) {
            eprintln!("release_bases: {e}");
        }
    }
    g.finish();
}

fn bench_ntt(c: &mut Criterion) {
    let Some(gpu) = backend() else { return };
    let mut g = c.benchmark_group("ntt");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for log_n in log_sizes() {
        let n = 1usize << log_n;
        let domain = Domain::new(log_n).expect("domain");
        let input = random_scalars(n, 11);
        let mut dev = match gpu.upload_values(&input) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("ntt 2^{log_n}: upload failed ({e}); skipped");
                continue;
            }
        };
        let mut buf = input.clone();
        g.throughput(Throughput::Elements(n as u64));
        for (label, coset, dir) in [
            ("forward", false, Direction::Forward),
            ("inverse", false, Direction::Inverse),
            ("coset", true, Direction::Forward),
        ] {
            g.bench_function(BenchmarkId::new(format!("cuda/{label}"), log_n), |b| {
                b.iter(|| {
                    gpu.ntt_device(&mut dev, &domain, dir, coset)
                        .expect("cuda ntt")
                })
            });
            g.bench_function(BenchmarkId::new(format!("cuda-h2h/{label}"), log_n), |b| {
                b.iter(|| {
                    if coset {
                        gpu.coset_ntt(&mut buf, &domain, dir).expect("cuda ntt")
                    } else {
                        gpu.ntt(&mut buf, &domain, dir).expect("cuda ntt")
                    }
                })
            });
        }
    }
    g.finish();
}

fn bench_transfer(c: &mut Criterion) {
    let Some(gpu) = backend() else { return };
    let ctx = match cudarc::driver::CudaContext::new(0) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("transfer benches: no context ({e}); SKIPPED");
            return;
        }
    };
    let stream = ctx.default_stream();
    let mut g = c.benchmark_group("transfer");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1));
    for log_n in log_sizes() {
        let n = 1usize << log_n;
        let input = random_scalars(n, 13);
        let dev = match gpu.upload_values(&input) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("transfer 2^{log_n}: upload failed ({e}); skipped");
                continue;
            }
        };
        let mut out = vec![Fr::ZERO; n];
        g.throughput(Throughput::Bytes(n as u64 * 32));
        g.bench_function(BenchmarkId::new("cuda/upload", log_n), |b| {
            b.iter(|| {
                let d = gpu.upload_values(&input).expect("upload");
                gpu.synchronize().expect("synchronize");
                d
            })
        });
        let mut downloaded = false; // not when a filter leaves the download out
        g.bench_function(BenchmarkId::new("cuda/download", log_n), |b| {
            downloaded = true;
            b.iter(|| gpu.download_values(&dev, &mut out).expect("download"))
        });
        g.bench_function(BenchmarkId::new("cuda-pageable/upload", log_n), |b| {
            b.iter(|| {
                let limbs = gpu::cuda::plan::fr_to_limbs(&input).expect("limbs");
                let d = stream.clone_htod(&limbs).expect("upload");
                stream.synchronize().expect("synchronize");
                d
            })
        });
        assert!(
            !downloaded || out == input,
            "transfer 2^{log_n}: the download differs"
        );
    }
    g.finish();
}

criterion_group!(benches, bench_msm, bench_ntt, bench_transfer);
criterion_main!(benches);
