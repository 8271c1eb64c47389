//! What one MSM or NTT of the CUDA backend costs on the emulated device, per kernel: launches,
//! field multiplications (every thread's), the longest thread's, the chain (each launch's
//! longest thread, summed) and the field elements loaded and stored (32 bytes each, before any
//! cache). A GPU makes the same multiplications, so these are counts of its work
//! and of its dependent steps, not times; they let a change to the kernels be judged by count
//! where no GPU is lent (label such figures "emulated").
//!
//! ```text
//! gpu/emu/build release
//! cargo build --release --workspace --all-targets
//! export LD_LIBRARY_PATH=$PWD/target/cuda-emu/release
//! target/release/examples/emu_counts msm 16 [random|ones|bits] [C,C,...]
//! target/release/examples/emu_counts ntt 16
//! ```
//! `msm` runs one MSM of 2^LOG_N scalars with the default window and then with each window size
//! listed (`CudaBackend::msm_device_with_window`); `GPU_MSM_NARROW_REDUCE=1` gives the earlier
//! reduction. `ntt` runs a forward, an inverse and a coset transform of 2^LOG_N values.

use std::error::Error;
use std::time::{Duration, Instant};

use ff::Field;
use gpu::{
    Bases, ComputeBackend, CudaBackend, Direction, Domain, Emulator, Fr, G1Affine, KernelMuls, G1,
};
use group::prime::PrimeCurveAffine;
use group::{Curve, Group};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

const USAGE: &str =
    "usage: emu_counts msm LOG_N [random|ones|bits] [C,C,...] | emu_counts ntt LOG_N";

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (what, log_n) = match args.as_slice() {
        [w, l, ..] => (w.as_str(), l.parse::<u32>().map_err(|_| USAGE)?),
        _ => return Err(USAGE.into()),
    };
    if !(1..=24).contains(&log_n) {
        return Err(format!("LOG_N {log_n}: 1 to 24").into());
    }
    let emu = Emulator::open().ok_or(
        "the loaded CUDA driver is not the emulator (put target/cuda-emu/release first on \
         LD_LIBRARY_PATH)",
    )?;
    let backend = CudaBackend::new(0)?;
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let n = 1usize << log_n;
    match what {
        "msm" => msm(&emu, &backend, &mut rng, log_n, &args[2..]),
        "ntt" => {
            let domain = Domain::new(log_n)?;
            let values: Vec<Fr> = (0..n).map(|_| Fr::random(&mut rng)).collect();
            for (label, coset, direction) in [
                ("forward", false, Direction::Forward),
                ("inverse", false, Direction::Inverse),
                ("coset forward", true, Direction::Forward),
            ] {
                let run = |v: &mut Vec<Fr>| match coset {
                    false => backend.ntt(v, &domain, direction),
                    true => backend.coset_ntt(v, &domain, direction),
                };
                run(&mut values.clone())?; // tables and kernels first
                let mut v = values.clone();
                emu.reset()?;
                let started = Instant::now();
                run(&mut v)?;
                report(&emu, &format!("ntt 2^{log_n} {label}"), started.elapsed())?;
            }
            Ok(())
        }
        _ => Err(USAGE.into()),
    }
}

fn msm(
    emu: &Emulator,
    backend: &CudaBackend,
    rng: &mut ChaCha20Rng,
    log_n: u32,
    args: &[String],
) -> Result<(), Box<dyn Error>> {
    let n = 1usize << log_n;
    let kind = args.first().map_or("random", String::as_str);
    let scalars: Vec<Fr> = match kind {
        "random" => (0..n).map(|_| Fr::random(&mut *rng)).collect(),
        "ones" => vec![Fr::ONE; n],
        "bits" => (0..n).map(|_| Fr::from(rng.gen::<bool>() as u64)).collect(),
        other => return Err(format!("scalars {other:?}: random, ones or bits").into()),
    };
    let windows: Vec<u32> = match args.get(1) {
        Some(list) => list
            .split(',')
            .map(|c| c.parse::<u32>().map_err(|_| format!("window {c:?}")))
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    // Distinct points cheaply: k·P for a random P, normalised at once.
    let p = G1::random(&mut *rng);
    let mut acc = vec![G1::identity(); n];
    for i in 1..n {
        acc[i] = acc[i - 1] + p;
    }
    let mut points = vec![G1Affine::identity(); n];
    G1::batch_normalize(&acc, &mut points);
    let bases = Bases::new(points);
    let dev = backend.upload_scalars(&scalars)?;
    backend.msm_device(&bases, &dev)?; // the bases' upload and the kernels' load
    let default = gpu::cuda::plan::window_bits(n);
    let mut sums = Vec::new();
    for c in std::iter::once(None).chain(windows.into_iter().map(Some)) {
        emu.reset()?;
        let started = Instant::now();
        let sum = match c {
            None => backend.msm_device(&bases, &dev)?,
            Some(c) => backend.msm_device_with_window(&bases, &dev, c)?,
        };
        let label = format!("msm 2^{log_n} {kind}, window {} bits", c.unwrap_or(default));
        report(emu, &label, started.elapsed())?;
        sums.push(sum);
    }
    if sums.windows(2).any(|w| w[0] != w[1]) {
        return Err("the window sizes gave different sums".into());
    }
    Ok(())
}

fn report(emu: &Emulator, label: &str, took: Duration) -> Result<(), Box<dyn Error>> {
    let launches = emu.launch_counts()?;
    let muls = emu.mul_counts()?;
    let total: u64 = muls.iter().map(|m| m.muls).sum();
    let chain: u64 = muls.iter().map(|m| m.chain).sum();
    println!(
        "{label}: {total} multiplications, chain {chain} ({} launches, {:.1} s emulated)",
        launches.iter().map(|(_, c)| c).sum::<u64>(),
        took.as_secs_f64()
    );
    println!(
        "  {:<20} {:>8} {:>16} {:>10} {:>10} {:>12}",
        "kernel", "launches", "multiplications", "longest", "chain", "elements"
    );
    for (kernel, count) in &launches {
        let m = muls
            .iter()
            .find(|m| &m.kernel == kernel)
            .cloned()
            .unwrap_or_else(|| KernelMuls {
                kernel: kernel.clone(),
                ..KernelMuls::default()
            });
        println!(
            "  {:<20} {:>8} {:>16} {:>10} {:>10} {:>12}",
            kernel, count, m.muls, m.longest, m.chain, m.elements
        );
    }
    Ok(())
}
