//! GPU equivalence suite: the CUDA backend against the CPU backend on random inputs with injected
//! edge cases. Runs when a CUDA device can be opened; otherwise every test prints why and passes,
//! unless `PROVER_REQUIRE_GPU=1`, which turns a missing or failing device into a failure.
//!
//! Sizes: MSM 1, 2, 3, 1023, 1024, 1025, 2^16, 2^20, and every window size on a few hundred
//! points; NTT 2^0..2^11, 2^16, 2^20 in all four variants. Edge cases: identity bases, duplicate
//! bases, scalars 0, 1, −1 and small (64-bit) scalars, all-equal scalars (one oversized bucket per
//! window), all-zero scalars.

use std::sync::{Arc, OnceLock};

use ff::Field;
use gpu::{
    select, ArithKernel, BackendChoice, BackendError, BackendName, Bases, ComputeBackend,
    CpuBackend, CudaBackend, Direction, Domain, Fr, G1Affine, G1,
};
use group::prime::PrimeCurveAffine;
use group::{Curve, Group};
use halo2curves::bn256::Fq;
use halo2curves::serde::SerdeObject;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// The size limit (log2) of the larger tests: `GPU_TEST_MAX_LOG_N` (unlimited by default; CI's
/// forward run of the emulated device sets 18, its shuffled run 16, its AddressSanitizer run 14).
fn max_log_n() -> u32 {
    std::env::var("GPU_TEST_MAX_LOG_N")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(u32::MAX)
}

fn within_size_limit(log_n: u32) -> bool {
    let max = max_log_n();
    if log_n > max {
        eprintln!("2^{log_n} is above GPU_TEST_MAX_LOG_N={max}; this size is SKIPPED");
        return false;
    }
    true
}

/// The size of the large tests: 2^20, or the limit when it is lower but still above the 2^16
/// tests (the emulated device runs 2^20 about four times slower than 2^18 for the same paths:
/// both take the multi-pass NTT and the many-window MSM). `None` (skipped) at a limit ≤ 16.
fn large_log_n() -> Option<u32> {
    let log_n = max_log_n().min(20);
    if log_n <= 16 {
        eprintln!("GPU_TEST_MAX_LOG_N={log_n}: the large sizes (2^17–2^20) are SKIPPED");
        return None;
    }
    Some(log_n)
}

fn required() -> bool {
    std::env::var("PROVER_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// The shared CUDA backend, or `None` (with a message) when there is no usable device.
fn cuda() -> Option<Arc<CudaBackend>> {
    static BACKEND: OnceLock<Result<Arc<CudaBackend>, String>> = OnceLock::new();
    let r = BACKEND.get_or_init(|| {
        let b = CudaBackend::new(0).map(Arc::new).map_err(|e| e.to_string());
        if let Ok(b) = &b {
            eprintln!("GPU equivalence suite on {}", b.name());
        }
        b
    });
    match r {
        Ok(b) => Some(b.clone()),
        Err(e) => {
            assert!(
                !required(),
                "PROVER_REQUIRE_GPU=1 but the CUDA backend failed: {e}"
            );
            eprintln!("no usable CUDA device ({e}); GPU equivalence test SKIPPED");
            None
        }
    }
}

/// `n` distinct points cheaply: a running sum of 64 random points (one projective addition each),
/// batch-normalised.
fn points(n: usize, rng: &mut ChaCha20Rng) -> Vec<G1Affine> {
    let seeds: Vec<G1> = (0..64).map(|_| G1::random(&mut *rng)).collect();
    let mut proj = Vec::with_capacity(n);
    let mut acc = G1::random(&mut *rng);
    for i in 0..n {
        acc += seeds[i % 64];
        proj.push(acc);
    }
    let mut out = vec![G1Affine::identity(); n];
    G1::batch_normalize(&proj, &mut out);
    out
}

/// Random scalars with edge cases injected at fixed positions.
fn scalars(n: usize, rng: &mut ChaCha20Rng) -> Vec<Fr> {
    let mut s: Vec<Fr> = (0..n).map(|_| Fr::random(&mut *rng)).collect();
    let edges = [
        Fr::ZERO,
        Fr::ONE,
        -Fr::ONE,
        Fr::from(2),
        -Fr::from(2),
        Fr::from(u64::MAX),
    ];
    for (i, e) in edges.iter().enumerate() {
        if i < n {
            s[(i * 7919) % n] = *e;
        }
    }
    // A sprinkling of small scalars.
    for i in (0..n).step_by(13) {
        s[i] = Fr::from(rng.gen::<u64>() >> (i % 60));
    }
    s
}

/// Points with identities and duplicates injected.
fn edge_points(n: usize, rng: &mut ChaCha20Rng) -> Vec<G1Affine> {
    let mut p = points(n, rng);
    if n >= 2 {
        p[n / 2] = G1Affine::identity();
    }
    if n >= 3 {
        p[n - 1] = p[0];
        p[1] = -p[0];
    }
    for i in (5..n).step_by(101) {
        p[i] = G1Affine::identity();
    }
    p
}

fn check_msm(gpu: &CudaBackend, bases: &Bases, s: &[Fr], what: &str) {
    let want = CpuBackend::new().msm(bases, s).expect("cpu msm");
    let got = gpu
        .msm(bases, s)
        .unwrap_or_else(|e| panic!("{what}: cuda msm failed: {e}"));
    assert_eq!(got.to_affine(), want.to_affine(), "{what}: msm differs");
}

#[test]
fn msm_small_and_awkward_sizes() {
    let Some(gpu) = cuda() else { return };
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    for n in [1usize, 2, 3, 1023, 1024, 1025] {
        let bases = Bases::new(edge_points(n, &mut rng));
        check_msm(&gpu, &bases, &scalars(n, &mut rng), &format!("n = {n}"));
        // Fewer scalars than bases, on the now-resident bases.
        if n > 1 {
            check_msm(
                &gpu,
                &bases,
                &scalars(n - 1, &mut rng),
                &format!("n = {n}, prefix"),
            );
        }
    }
    // The identity and a single generator.
    let g = Bases::new(vec![G1Affine::generator()]);
    check_msm(&gpu, &g, &[Fr::ONE], "generator · 1");
    check_msm(&gpu, &g, &[-Fr::ONE], "generator · −1");
    check_msm(&gpu, &g, &[Fr::ZERO], "generator · 0");
    let empty: [Fr; 0] = [];
    assert_eq!(gpu.msm(&g, &empty).unwrap(), G1::identity());
}

/// Every window size the kernels take (`plan::MIN_WINDOW_BITS..=plan::MAX_WINDOW_BITS`), through
/// [`CudaBackend::msm_device_with_window`], against the CPU backend. The default choice takes 10
/// bits for every size up to 2^18, so without this CI's emulated device would run the kernels at
/// c = 10 only, while a GPU's sizes take 12 (2^20) to 16 (2^24). Besides random and edge scalars,
/// each window of each size gets the digits at the signed-digit boundaries: 2^(c-1) (the largest
/// positive digit), 2^(c-1) + 1 and 2^c − 1 (negative digits with a carry into the next window),
/// and a scalar whose every window carries. The bucket reduction costs about
/// `num_windows(c)·2^c` additions whatever the number of points, so windows above
/// `GPU_TEST_MAX_LOG_N + 2` bits are skipped (CI's forward run takes them all, in about 20 s on
/// the emulated device).
#[test]
fn msm_every_window_size() {
    use gpu::cuda::plan::{num_windows, MAX_WINDOW_BITS, MIN_WINDOW_BITS};
    let Some(gpu) = cuda() else { return };
    let cpu = CpuBackend::new();
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    for c in MIN_WINDOW_BITS..=MAX_WINDOW_BITS {
        if c > max_log_n().saturating_add(2) {
            eprintln!(
                "a window of {c} bits is above GPU_TEST_MAX_LOG_N={} + 2; SKIPPED",
                max_log_n()
            );
            continue;
        }
        let n = 300 + 37 * c as usize;
        let bases = Bases::new(edge_points(n, &mut rng));
        let mut s = scalars(n, &mut rng);
        let two_c = Fr::from(1u64 << c);
        let digits = [
            Fr::from(1u64 << (c - 1)),
            Fr::from((1u64 << (c - 1)) + 1),
            Fr::from((1u64 << c) - 1),
        ];
        let mut edges = Vec::new();
        let mut every_window_carries = Fr::ZERO;
        let mut place = Fr::ONE; // 2^(c·w)
        for _ in 0..num_windows(c) {
            edges.extend(digits.iter().map(|d| *d * place));
            every_window_carries += digits[2] * place;
            place *= two_c;
        }
        edges.push(every_window_carries);
        assert!(edges.len() * 3 < n);
        for (i, e) in edges.into_iter().enumerate() {
            s[3 * i + 2] = e;
        }
        let dev = gpu.upload_scalars(&s).expect("uploading scalars");
        let got = gpu
            .msm_device_with_window(&bases, &dev, c)
            .unwrap_or_else(|e| panic!("c = {c}: cuda msm failed: {e}"));
        let want = cpu.msm(&bases, &s).expect("cpu msm");
        assert_eq!(
            got.to_affine(),
            want.to_affine(),
            "c = {c}, n = {n}: msm differs"
        );
        gpu.release_bases(&bases).expect("releasing bases");
    }
    // Sizes the kernels do not take are refused, not run.
    let bases = Bases::new(vec![G1Affine::generator()]);
    let dev = gpu.upload_scalars(&[Fr::ONE]).expect("uploading a scalar");
    for c in [0, MIN_WINDOW_BITS - 1, MAX_WINDOW_BITS + 1, 32] {
        let e = gpu
            .msm_device_with_window(&bases, &dev, c)
            .expect_err("a window size outside the kernels' range");
        assert!(e.to_string().contains("window of"), "{e}");
    }
}

#[test]
fn msm_2_16_with_degenerate_scalars() {
    let Some(gpu) = cuda() else { return };
    if !within_size_limit(16) {
        return;
    }
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let n = 1 << 16;
    let bases = Bases::new(edge_points(n, &mut rng));
    check_msm(&gpu, &bases, &scalars(n, &mut rng), "2^16 random");
    check_msm(&gpu, &bases, &vec![Fr::ONE; n], "2^16 all ones");
    check_msm(&gpu, &bases, &vec![-Fr::ONE; n], "2^16 all minus ones");
    check_msm(&gpu, &bases, &vec![Fr::ZERO; n], "2^16 all zeros");
    let small: Vec<Fr> = (0..n).map(|_| Fr::from(rng.gen::<u64>())).collect();
    check_msm(&gpu, &bases, &small, "2^16 small scalars");
    let bits: Vec<Fr> = (0..n).map(|_| Fr::from(rng.gen::<bool>() as u64)).collect();
    check_msm(&gpu, &bases, &bits, "2^16 bits");
}

#[test]
fn msm_large_and_stable() {
    let Some(gpu) = cuda() else { return };
    let Some(log_n) = large_log_n() else { return };
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let n = 1 << log_n;
    let bases = Bases::new(edge_points(n, &mut rng));
    let s = scalars(n, &mut rng);
    check_msm(&gpu, &bases, &s, &format!("2^{log_n}"));
    let a = gpu.msm(&bases, &s).unwrap();
    let b = gpu.msm(&bases, &s).unwrap();
    assert_eq!(a, b, "two runs on the same input differ");
}

#[test]
fn msm_argument_errors() {
    let Some(gpu) = cuda() else { return };
    let bases = Bases::new(vec![G1Affine::generator(); 2]);
    let err = gpu.msm(&bases, &[Fr::ONE; 3]).unwrap_err();
    assert!(
        matches!(err, BackendError::TooManyScalars { .. }),
        "{err:?}"
    );
}

fn cpu_transform(v: &mut [Fr], d: &Domain, dir: Direction, coset: bool) {
    let cpu = CpuBackend::new();
    if coset {
        cpu.coset_ntt(v, d, dir).unwrap();
    } else {
        cpu.ntt(v, d, dir).unwrap();
    }
}

fn gpu_transform(gpu: &CudaBackend, v: &mut [Fr], d: &Domain, dir: Direction, coset: bool) {
    let r = if coset {
        gpu.coset_ntt(v, d, dir)
    } else {
        gpu.ntt(v, d, dir)
    };
    r.unwrap_or_else(|e| panic!("cuda ntt 2^{} {dir:?} coset={coset}: {e}", d.log_n()));
}

fn check_ntt_sizes(log_ns: &[u32]) {
    let Some(gpu) = cuda() else { return };
    let mut rng = ChaCha20Rng::seed_from_u64(4 + log_ns[0] as u64);
    for &log_n in log_ns {
        let d = Domain::new(log_n).unwrap();
        let mut x: Vec<Fr> = (0..d.size()).map(|_| Fr::random(&mut rng)).collect();
        x[0] = Fr::ZERO;
        if x.len() > 2 {
            x[1] = Fr::ONE;
            x[2] = -Fr::ONE;
        }
        for dir in [Direction::Forward, Direction::Inverse] {
            for coset in [false, true] {
                let mut want = x.clone();
                cpu_transform(&mut want, &d, dir, coset);
                let mut got = x.clone();
                gpu_transform(&gpu, &mut got, &d, dir, coset);
                assert!(
                    got == want,
                    "ntt 2^{log_n} {dir:?} coset={coset} differs from the CPU"
                );
                let mut again = x.clone();
                gpu_transform(&gpu, &mut again, &d, dir, coset);
                assert!(again == got, "ntt 2^{log_n} {dir:?} coset={coset} unstable");
            }
        }
        // Round trips.
        for coset in [false, true] {
            let mut y = x.clone();
            gpu_transform(&gpu, &mut y, &d, Direction::Forward, coset);
            gpu_transform(&gpu, &mut y, &d, Direction::Inverse, coset);
            assert!(y == x, "intt(ntt(x)) != x at 2^{log_n}, coset={coset}");
        }
    }
}

#[test]
fn ntt_small_sizes() {
    check_ntt_sizes(&[0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12]);
}

#[test]
fn ntt_2_16() {
    if !within_size_limit(16) {
        return;
    }
    check_ntt_sizes(&[16]);
}

#[test]
fn ntt_large() {
    let Some(log_n) = large_log_n() else { return };
    check_ntt_sizes(&[log_n]);
}

#[test]
fn ntt_device_resident_round_trip() {
    let Some(gpu) = cuda() else { return };
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let d = Domain::new(14).unwrap();
    let x: Vec<Fr> = (0..d.size()).map(|_| Fr::random(&mut rng)).collect();
    let mut dev = gpu.upload_values(&x).unwrap();
    gpu.ntt_device(&mut dev, &d, Direction::Forward, true)
        .unwrap();
    let mut mid = vec![Fr::ZERO; x.len()];
    gpu.download_values(&dev, &mut mid).unwrap();
    let mut want = x.clone();
    cpu_transform(&mut want, &d, Direction::Forward, true);
    assert!(mid == want, "device-resident coset ntt differs");
    gpu.ntt_device(&mut dev, &d, Direction::Inverse, true)
        .unwrap();
    let mut back = vec![Fr::ZERO; x.len()];
    gpu.download_values(&dev, &mut back).unwrap();
    assert!(back == x, "device-resident round trip");
    // Length mismatch is an error, not a panic.
    let wrong = Domain::new(13).unwrap();
    assert!(matches!(
        gpu.ntt_device(&mut dev, &wrong, Direction::Forward, false),
        Err(BackendError::LengthMismatch { .. })
    ));
}

/// Uploads and downloads go through two page-locked staging buffers of `STAGING_CHUNK` elements
/// (the emulated device runs such copies only when something waits for them): sizes around one,
/// two and several chunks, a kernel right after an upload, and a vector uploaded while the
/// previous one's copies may still be queued.
#[test]
fn values_cross_the_staging_buffers_whole() {
    let Some(gpu) = cuda() else { return };
    let c = gpu::cuda::STAGING_CHUNK;
    let seed: u64 = rand::random();
    eprintln!("staging test seed {seed}");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    for len in [
        0,
        1,
        7,
        c - 1,
        c,
        c + 1,
        2 * c,
        2 * c + 3,
        4 * c + c / 2 + 5,
    ] {
        let x: Vec<Fr> = (0..len).map(|_| Fr::random(&mut rng)).collect();
        let y: Vec<Fr> = (0..len).map(|_| Fr::random(&mut rng)).collect();
        let dx = gpu.upload_values(&x).unwrap();
        let dy = gpu.upload_values(&y).unwrap();
        let mut back = vec![Fr::ONE; len];
        gpu.download_values(&dy, &mut back).unwrap();
        assert!(back == y, "len {len}: second upload back");
        gpu.download_values(&dx, &mut back).unwrap();
        assert!(back == x, "len {len}: first upload back");
    }
    // A transform launched right after its upload sees the whole vector (two chunks at 2^18).
    let d = Domain::new(max_log_n().min(18)).unwrap();
    let x: Vec<Fr> = (0..d.size()).map(|_| Fr::random(&mut rng)).collect();
    let mut dev = gpu.upload_values(&x).unwrap();
    gpu.ntt_device(&mut dev, &d, Direction::Forward, false)
        .unwrap();
    let mut got = vec![Fr::ZERO; x.len()];
    gpu.download_values(&dev, &mut got).unwrap();
    let mut want = x;
    cpu_transform(&mut want, &d, Direction::Forward, false);
    assert!(got == want, "ntt after a staged upload");
}

/// The device's memory pool keeps freed memory for the next allocation (by default a pool gives
/// it all back at every synchronisation, and nearly every backend call synchronises).
#[test]
fn the_memory_pool_keeps_freed_memory() {
    let Some(gpu) = cuda() else { return };
    let threshold = gpu.pool_release_threshold().unwrap();
    assert_eq!(
        threshold,
        Some(u64::MAX),
        "release threshold of {}",
        gpu.name()
    );
}

/// The threads' local memory is device memory that a GPU takes at the first launch of a kernel
/// needing more of it per thread than the context's stack size (poly_eval's interpreter frame),
/// out of sight of the free memory read before. The backend reserves it at open, so that a
/// node's memory check at start counts it.
#[test]
fn the_kernels_local_memory_is_reserved_at_open() {
    let Some(gpu) = cuda() else { return };
    let local = gpu.local_memory();
    println!("{}: {local:?}", gpu.name());
    assert!(local.per_thread > 0 && local.threads > 0, "{local:?}");
    assert!(
        local.stack_limit >= local.per_thread,
        "the stack size covers every kernel: {local:?}"
    );
    assert_eq!(gpu.local_memory_pending().unwrap(), 0, "{local:?}");
    assert_eq!(gpu.device_memory_pending().unwrap(), 0, "through the trait");
    if let Some(emu) = gpu::Emulator::open() {
        assert_eq!(local.kernel, "poly_eval", "{local:?}");
        assert_eq!(local.threads, 132 * 2048);
        // Beyond a new context's 1 KiB per thread, counted in cuMemGetInfo (at least: the
        // counter is process-wide, and other tests run beside this one).
        let reserved = emu.counters().unwrap().local_reserved;
        assert!(
            reserved >= (local.stack_limit - 1024) * local.threads,
            "{reserved} B reserved for {local:?}"
        );
    }
}

/// A driver older than the NVRTC's CUDA major version runs none of the CUBINs it makes: the
/// backend refuses at open and names both versions (instead of a module that fails to load).
/// `scripts/test` runs this with the emulated driver reporting CUDA 11.8 (refused) and 12.2 (the
/// 12.6 NVRTC's CUBINs run under minor version compatibility).
#[test]
fn nvrtc_newer_than_the_driver() {
    let Some(driver) = std::env::var("CUDA_EMU_DRIVER_VERSION")
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        eprintln!("CUDA_EMU_DRIVER_VERSION is not set: the driver-version case is not run");
        return;
    };
    if gpu::Emulator::open().is_none() {
        assert!(
            !required(),
            "CUDA_EMU_DRIVER_VERSION needs the emulated device"
        );
        return;
    }
    let (major, minor) = (driver / 1000, driver % 1000 / 10);
    let nvrtc = gpu::cuda::nvrtc_version((9, 0)).expect("an NVRTC");
    match CudaBackend::new(0) {
        Err(e) => {
            let e = e.to_string();
            println!("{e}");
            // Every NVRTC found was refused, the first that compiles for sm_90 among them.
            assert!(
                nvrtc.0 > major,
                "refused with NVRTC {nvrtc:?} under {major}.{minor}: {e}"
            );
            for part in [
                format!("NVRTC {}.{}", nvrtc.0, nvrtc.1),
                format!("this driver supports CUDA {major}.{minor}"),
                "GPU_NVRTC_LIB".to_string(),
            ] {
                assert!(e.contains(&part), "missing {part:?} in: {e}");
            }
        }
        Ok(b) => {
            // Not necessarily the first NVRTC found: the first the driver runs.
            let chosen = b.nvrtc_version();
            assert!(
                chosen.0 <= major,
                "NVRTC {chosen:?} accepted under {major}.{minor}"
            );
        }
    }
}

/// Device memory may be dropped on a thread that never used the device (a task's vectors, a key
/// cache evicted by another worker, the backend itself at shutdown): the free must reach the
/// backend's context, not fail for want of a current one and leave an error that the next
/// operation would report as a device fault.
#[test]
fn device_memory_dropped_on_another_thread() {
    if cuda().is_none() {
        return;
    }
    // A backend of its own: a failure here must not poison the one the other tests share.
    let gpu = Arc::new(CudaBackend::new(0).unwrap());
    let seed: u64 = rand::random();
    eprintln!("drop test seed {seed}");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let x: Vec<Fr> = (0..1000).map(|_| Fr::random(&mut rng)).collect();
    let values = gpu.upload_values(&x).unwrap();
    let poly = gpu.upload(&x).unwrap();
    let scalars = gpu.upload_scalars(&x).unwrap();
    std::thread::spawn(move || {
        drop(values);
        drop(poly);
        drop(scalars);
    })
    .join()
    .unwrap();
    let y: Vec<Fr> = (0..1000).map(|_| Fr::random(&mut rng)).collect();
    let dy = gpu.upload_values(&y).unwrap();
    let mut back = vec![Fr::ZERO; y.len()];
    gpu.download_values(&dy, &mut back).unwrap();
    assert!(back == y, "the backend after a drop on another thread");
    // The whole backend (its tables, staging buffers and vectors) dropped on a fresh thread.
    std::thread::spawn(move || {
        let keep = dy;
        drop(gpu);
        drop(keep);
    })
    .join()
    .unwrap();
    // The shared backend still works after another backend of the same context went away.
    let shared = cuda().unwrap();
    let dz = shared.upload_values(&y).unwrap();
    shared.download_values(&dz, &mut back).unwrap();
    assert!(
        back == y,
        "the shared backend after another one was dropped"
    );
}

/// With two devices, a vector of device 0 dropped on a thread whose current context is device
/// 1's (a worker thread that proved on the other device) is freed in device 0's context. Runs
/// where a second device exists (`CUDA_EMU_DEVICES=2` in `scripts/test`).
#[test]
fn device_memory_freed_in_its_own_devices_context() {
    if cuda().is_none() {
        return;
    }
    let Ok(second) = CudaBackend::new(1) else {
        eprintln!("one CUDA device: the two-device case is not run");
        return;
    };
    let first = CudaBackend::new(0).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(rand::random());
    let x: Vec<Fr> = (0..100).map(|_| Fr::random(&mut rng)).collect();
    let on_first = first.upload_values(&x).unwrap();
    let on_second = second.upload_values(&x).unwrap(); // device 1's context is current now
    drop(on_first);
    drop(on_second);
    for (name, gpu) in [("device 0", &first), ("device 1", &second)] {
        let d = gpu.upload_values(&x).unwrap();
        let mut back = vec![Fr::ZERO; x.len()];
        gpu.download_values(&d, &mut back).unwrap();
        assert!(back == x, "{name} after the drops");
    }
}

#[test]
fn auto_selects_cuda_when_present() {
    let Some(_gpu) = cuda() else { return };
    let s = select(BackendChoice::Auto).expect("auto");
    assert!(
        matches!(s.backend.name(), BackendName::Cuda { .. }),
        "auto chose {} ({:?})",
        s.backend.name(),
        s.fallback_reason
    );
    let c = select(BackendChoice::Cuda).expect("cuda");
    assert!(matches!(c.backend.name(), BackendName::Cuda { .. }));
}

// ---- device arithmetic (arith_check.cu) against halo2curves --------------------------------------

fn limbs<F: SerdeObject>(f: &F) -> Vec<u32> {
    f.to_raw_bytes()
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn from_limbs<F: SerdeObject>(l: &[u32]) -> F {
    let bytes: Vec<u8> = l.iter().flat_map(|x| x.to_le_bytes()).collect();
    F::from_raw_bytes(&bytes).expect("device returned a non-canonical field element")
}

fn check_field_ops<F: Field + SerdeObject>(gpu: &CudaBackend, kernel: ArithKernel, seed: u64) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut a: Vec<F> = vec![F::ZERO, F::ONE, -F::ONE, F::ONE.double(), -F::ONE.double()];
    a.extend((0..507).map(|_| F::random(&mut rng)));
    let mut b: Vec<F> = (0..a.len()).map(|_| F::random(&mut rng)).collect();
    b[1] = F::ZERO;
    b[2] = -F::ONE;
    b[3] = a[3];
    let la: Vec<u32> = a.iter().flat_map(limbs).collect();
    let lb: Vec<u32> = b.iter().flat_map(limbs).collect();
    for op in 0..6 {
        let out = gpu
            .arith_check(kernel, op, &la, &lb)
            .unwrap_or_else(|e| panic!("{kernel:?} op {op}: {e}"));
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            let want = match op {
                0 => *x + y,
                1 => *x - y,
                2 => *x * y,
                3 => x.square(),
                4 => Option::<F>::from(x.invert()).unwrap_or(F::ZERO),
                _ => -*x,
            };
            let got: F = from_limbs(&out[8 * i..8 * i + 8]);
            assert!(got == want, "{kernel:?} op {op} element {i} differs");
        }
    }
}

#[test]
fn device_field_arithmetic_matches_halo2curves() {
    let Some(gpu) = cuda() else { return };
    check_field_ops::<Fq>(&gpu, ArithKernel::Fq, 21);
    check_field_ops::<Fr>(&gpu, ArithKernel::Fr, 22);
}

#[test]
fn device_curve_arithmetic_matches_halo2curves() {
    let Some(gpu) = cuda() else { return };
    let mut rng = ChaCha20Rng::seed_from_u64(23);
    let n = 256;
    let mut p = points(n, &mut rng);
    let mut q = points(n, &mut rng);
    p[0] = G1Affine::identity();
    q[1] = G1Affine::identity();
    q[2] = p[2];
    q[3] = -p[3];
    // XYZZ with Z = 1 (the identity has ZZ = ZZZ = 0); affine q in the first 16 of 32 limbs.
    let xyzz = |a: &G1Affine| -> Vec<u32> {
        let one = limbs(&Fq::ONE);
        if bool::from(a.is_identity()) {
            return [one.clone(), one, vec![0; 8], vec![0; 8]].concat();
        }
        [limbs(&a.x), limbs(&a.y), one.clone(), one].concat()
    };
    let affine32 = |a: &G1Affine| -> Vec<u32> { [limbs(&a.x), limbs(&a.y), vec![0; 16]].concat() };
    let la: Vec<u32> = p.iter().flat_map(xyzz).collect();
    let lb_xyzz: Vec<u32> = q.iter().flat_map(xyzz).collect();
    let lb_aff: Vec<u32> = q.iter().flat_map(affine32).collect();
    for (op, lb) in [(0, &lb_xyzz), (1, &lb_aff), (2, &lb_xyzz)] {
        let out = gpu
            .arith_check(ArithKernel::G1, op, &la, lb)
            .expect("g1_op");
        for i in 0..n {
            let want = match op {
                2 => G1::from(p[i]).double(),
                _ => G1::from(p[i]) + q[i],
            }
            .to_affine();
            let o = &out[16 * i..16 * i + 16];
            let got = if o.iter().all(|x| *x == 0) {
                G1Affine::identity()
            } else {
                G1Affine {
                    x: from_limbs(&o[..8]),
                    y: from_limbs(&o[8..]),
                }
            };
            assert_eq!(got, want, "g1 op {op} element {i}");
        }
    }
}

/// What `warp_check` (arith_check.cu) must give for `input` in blocks of `block` threads, from
/// the definition of each warp intrinsic: thread i's warp is the 32 threads of its block that
/// share i's `(i mod block) / 32`, and of them only the threads below `input.len()` and inside the
/// block take part.
fn warp_check_model(input: &[u32], block: usize) -> Vec<u32> {
    let n = input.len();
    let mut out = vec![0u32; 8 * n];
    for (i, o) in out.chunks_exact_mut(8).enumerate() {
        let t = i % block;
        let lane = t % 32;
        let first = i - lane; // the warp's lane 0
        let lanes = (block - (t - lane)).min(32).min(n - first);
        let live: u32 = if lanes == 32 {
            u32::MAX
        } else {
            (1u32 << lanes) - 1
        };
        let v = |l: usize| input[first + l];
        let ballot = |p: &dyn Fn(u32) -> bool| -> u32 {
            (0..lanes).filter(|&l| p(v(l))).map(|l| 1u32 << l).sum()
        };
        let me = v(lane);
        o[0] = ballot(&|x| x & 1 == 1);
        o[1] = ballot(&|x| x % 5 == me % 5);
        let src = (me & 31) as usize;
        o[2] = if src < lanes { v(src) } else { me };
        o[3] = if lane ^ 1 < lanes { v(lane ^ 1) } else { me };
        o[4] = if lane % 8 >= 3 { v(lane - 3) } else { me };
        let dsrc = if lane % 16 + 2 < 16 { lane + 2 } else { lane };
        o[5] = if dsrc < lanes { v(dsrc) } else { me };
        let peers = ballot(&|x| x % 3 == me % 3);
        let leader = peers.trailing_zeros();
        let rank = (peers & ((1u32 << lane) - 1)).count_ones();
        let any = u32::from(ballot(&|x| x == 0) != 0);
        let all = u32::from(ballot(&|x| x != 7) == live);
        o[6] = any | (all << 1) | (leader << 8) | (peers.count_ones() << 16) | (rank << 24);
        o[7] = v(lane & 16);
    }
    out
}

#[test]
fn device_warp_intrinsics_match_their_definition() {
    let Some(gpu) = cuda() else { return };
    if gpu.arch() < (7, 0) {
        eprintln!(
            "sm_{}{} has no __match_any_sync; warp test SKIPPED",
            gpu.arch().0,
            gpu.arch().1
        );
        return;
    }
    let mut rng = ChaCha20Rng::seed_from_u64(24);
    // Full warps, returned lanes (n not a multiple of the block), partial warps (block 80, 48),
    // one lone thread; values small (many equal keys, zeros and sevens) and random.
    for (n, block, small) in [
        (1000usize, 256u32, true),
        (1000, 256, false),
        (200, 96, true),
        (333, 80, true),
        (77, 48, false),
        (1, 32, true),
    ] {
        let input: Vec<u32> = (0..n)
            .map(|_| {
                if small {
                    rng.gen_range(0..12)
                } else {
                    rng.gen()
                }
            })
            .collect();
        let got = gpu
            .warp_check(&input, block)
            .unwrap_or_else(|e| panic!("warp_check n={n} block={block}: {e}"));
        let want = warp_check_model(&input, block as usize);
        for i in 0..n {
            assert_eq!(
                got[8 * i..8 * i + 8],
                want[8 * i..8 * i + 8],
                "warp_check n={n} block={block} thread {i} (outputs 0..8)"
            );
        }
    }
}

/// A random program over `inputs` inputs: `outputs` outputs, each a random expression tree of
/// depth ≤ 4 over rotated queries (rotations −3..=3) and constants (0, 1, −1 and random).
fn random_program(inputs: usize, outputs: usize, rng: &mut ChaCha20Rng) -> gpu::Program {
    fn expr(
        b: &mut gpu::ProgramBuilder,
        inputs: usize,
        depth: u32,
        rng: &mut ChaCha20Rng,
    ) -> gpu::program::Value {
        if depth == 0 || rng.gen_bool(0.25) {
            return match rng.gen_range(0..5) {
                0 => b.constant([Fr::ZERO, Fr::ONE, -Fr::ONE][rng.gen_range(0..3)]),
                1 => b.constant(Fr::random(&mut *rng)),
                _ => b
                    .query(rng.gen_range(0..inputs), rng.gen_range(-3..=3))
                    .unwrap(),
            };
        }
        let a = expr(b, inputs, depth - 1, rng);
        let c = expr(b, inputs, depth - 1, rng);
        match rng.gen_range(0..4) {
            0 => b.add(a, c),
            1 => b.sub(a, c),
            2 => b.mul(a, c),
            _ => b.neg(a),
        }
    }
    let mut b = gpu::ProgramBuilder::new(inputs);
    for _ in 0..outputs {
        let e = expr(&mut b, inputs, 4, rng);
        b.output(e);
    }
    b.build().unwrap()
}

#[test]
fn resident_vectors_match_the_cpu_backend() {
    let Some(gpu) = cuda() else { return };
    let cpu = CpuBackend::new();
    let mut rng = ChaCha20Rng::seed_from_u64(31);
    // Upload, download, resize (pad and truncate), with awkward lengths.
    for len in [0usize, 1, 3, 1000, 1025] {
        let x: Vec<Fr> = (0..len).map(|_| Fr::random(&mut rng)).collect();
        let p = gpu.upload(&x).unwrap();
        assert_eq!(p.len(), len);
        assert_eq!(gpu.download(&p).unwrap(), x);
        for to in [0usize, 1, len / 2, len + 7] {
            let r = gpu.resized(&p, to).unwrap();
            let mut want = x.clone();
            want.resize(to, Fr::ZERO);
            assert_eq!(gpu.download(&r).unwrap(), want, "resize {len} -> {to}");
        }
        assert_eq!(
            gpu.download(&gpu.zeros(len).unwrap()).unwrap(),
            vec![Fr::ZERO; len]
        );
        for (start, to) in [
            (0usize, len),
            (1, 2),
            (len / 3, len),
            (len, 3),
            (len + 5, 2),
        ] {
            let r = gpu.copy_range(&p, start, to).unwrap();
            let want: Vec<Fr> = (start..start + to)
                .map(|i| x.get(i).copied().unwrap_or(Fr::ZERO))
                .collect();
            assert_eq!(
                gpu.download(&r).unwrap(),
                want,
                "copy_range {start}+{to} of {len}"
            );
            let c = cpu.copy_range(&cpu.upload(&x).unwrap(), start, to).unwrap();
            assert_eq!(cpu.download(&c).unwrap(), want);
        }
    }
    // NTTs in place, every variant, against the CPU backend.
    for log_n in [0u32, 1, 5, 12] {
        let d = Domain::new(log_n).unwrap();
        let x: Vec<Fr> = (0..d.size()).map(|_| Fr::random(&mut rng)).collect();
        for (dir, coset) in [
            (Direction::Forward, false),
            (Direction::Inverse, false),
            (Direction::Forward, true),
            (Direction::Inverse, true),
        ] {
            let mut p = gpu.upload(&x).unwrap();
            gpu.ntt_poly(&mut p, &d, dir, coset).unwrap();
            let mut c = cpu.upload(&x).unwrap();
            cpu.ntt_poly(&mut c, &d, dir, coset).unwrap();
            assert!(
                gpu.download(&p).unwrap() == cpu.download(&c).unwrap(),
                "ntt_poly 2^{log_n} {dir:?} coset={coset}"
            );
        }
    }
    // MSMs of resident vectors (Montgomery form converted on the device), several at once.
    let n = 1500;
    let bases = Bases::new(points(n, &mut rng));
    let vecs: Vec<Vec<Fr>> = [n, 1, 0, 777]
        .iter()
        .map(|&len| scalars(len, &mut rng))
        .collect();
    let polys: Vec<gpu::Poly> = vecs.iter().map(|v| gpu.upload(v).unwrap()).collect();
    let refs: Vec<&gpu::Poly> = polys.iter().collect();
    let got = gpu.msm_polys(&bases, &refs).unwrap();
    for (g, v) in got.iter().zip(&vecs) {
        assert_eq!(g.to_affine(), cpu.msm(&bases, v).unwrap().to_affine());
    }
    let too_long = gpu.upload(&vec![Fr::ONE; n + 1]).unwrap();
    assert!(matches!(
        gpu.msm_polys(&bases, &[&too_long]),
        Err(BackendError::TooManyScalars { .. })
    ));
    // A vector of another backend is refused, not misread.
    let host = cpu.upload(&[Fr::ONE]).unwrap();
    assert!(gpu.download(&host).is_err());
    assert!(cpu.download(&polys[0]).is_err());
}

#[test]
fn programs_match_the_cpu_backend() {
    let Some(gpu) = cuda() else { return };
    let cpu = CpuBackend::new();
    let mut rng = ChaCha20Rng::seed_from_u64(32);
    for (log_size, ratio, inputs, outputs) in [
        (0u32, 1usize, 1usize, 1usize),
        (3, 1, 2, 3),
        (10, 4, 5, 12),
        (13, 4, 9, 40),
    ] {
        let size = 1usize << log_size;
        let program = random_program(inputs, outputs, &mut rng);
        let cols: Vec<Vec<Fr>> = (0..inputs)
            .map(|_| (0..size).map(|_| Fr::random(&mut rng)).collect())
            .collect();
        let acc0: Vec<Fr> = (0..size).map(|_| Fr::random(&mut rng)).collect();
        let y = Fr::random(&mut rng);
        let run = |b: &dyn ComputeBackend| {
            let ins: Vec<gpu::Poly> = cols.iter().map(|c| b.upload(c).unwrap()).collect();
            let refs: Vec<&gpu::Poly> = ins.iter().collect();
            let mut acc = b.upload(&acc0).unwrap();
            b.eval_program(&program, &refs, &mut acc, ratio, y).unwrap();
            b.download(&acc).unwrap()
        };
        assert!(
            run(gpu.as_ref()) == run(&cpu),
            "program of {} instructions ({} slots) on 2^{log_size} rows, ratio {ratio}",
            program.code().len(),
            program.slots()
        );
    }
    // Mismatched lengths are errors.
    let program = random_program(2, 2, &mut rng);
    let a = gpu.upload(&[Fr::ONE; 8]).unwrap();
    let b = gpu.upload(&[Fr::ONE; 4]).unwrap();
    let mut acc = gpu.zeros(8).unwrap();
    assert!(gpu
        .eval_program(&program, &[&a, &b], &mut acc, 1, Fr::ONE)
        .is_err());
    assert!(gpu
        .eval_program(&program, &[&a], &mut acc, 1, Fr::ONE)
        .is_err());
}

/// Shifted NTTs (the parts of an extended coset, an arbitrary shift) against the CPU backend.
#[test]
fn shifted_ntts_match_the_cpu_backend() {
    let Some(gpu) = cuda() else { return };
    let cpu = CpuBackend::new();
    let mut rng = ChaCha20Rng::seed_from_u64(33);
    let top = if within_size_limit(16) { 16 } else { 13 };
    for log_n in [0u32, 1, 2, 5, 10, 11, top] {
        let d = Domain::new(log_n).unwrap();
        let ext = Domain::new(log_n + 2).unwrap();
        let x: Vec<Fr> = (0..d.size()).map(|_| Fr::random(&mut rng)).collect();
        // The four parts of an extended coset 4 times larger, and an arbitrary shift.
        let mut shifts: Vec<Fr> = (0..4u64)
            .map(|p| ext.coset_gen() * ext.omega().pow_vartime([p]))
            .collect();
        shifts.push(Fr::random(&mut rng));
        for shift in shifts {
            for dir in [Direction::Forward, Direction::Inverse] {
                let mut g = gpu.upload(&x).unwrap();
                gpu.ntt_shifted(&mut g, &d, dir, shift).unwrap();
                let mut c = cpu.upload(&x).unwrap();
                cpu.ntt_shifted(&mut c, &d, dir, shift).unwrap();
                assert!(
                    gpu.download(&g).unwrap() == cpu.download(&c).unwrap(),
                    "ntt_shifted {dir:?} 2^{log_n}"
                );
            }
        }
        // The coset generator itself goes through the same tables as ntt_poly's coset.
        let mut g = gpu.upload(&x).unwrap();
        gpu.ntt_shifted(&mut g, &d, Direction::Forward, d.coset_gen())
            .unwrap();
        let mut c = gpu.upload(&x).unwrap();
        gpu.ntt_poly(&mut c, &d, Direction::Forward, true).unwrap();
        assert!(gpu.download(&g).unwrap() == gpu.download(&c).unwrap());
        let mut g = gpu.upload(&x).unwrap();
        assert!(gpu
            .ntt_shifted(&mut g, &d, Direction::Forward, Fr::ZERO)
            .is_err());
    }
}

/// The grand-product and opening operations (batch inversion, running products, division by
/// X - b, evaluation at several points, range reads and writes) against the CPU backend, on
/// lengths around the kernels' chunks (64, 256 per thread; 256 chunks per carry thread).
#[test]
fn grand_product_and_opening_ops_match_the_cpu_backend() {
    let Some(gpu) = cuda() else { return };
    let cpu = CpuBackend::new();
    let mut rng = ChaCha20Rng::seed_from_u64(32);
    let max = if within_size_limit(16) {
        1 << 16
    } else {
        1 << 13
    };
    for n in [
        0usize,
        1,
        2,
        63,
        64,
        65,
        255,
        257,
        4097,
        8192,
        64 * 256 + 3,
        max + 5,
    ] {
        let mut x: Vec<Fr> = (0..n).map(|_| Fr::random(&mut rng)).collect();
        for i in (0..n).step_by(13) {
            x[i] = [Fr::ZERO, Fr::ONE, -Fr::ONE][i % 3];
        }
        let both = |op: &dyn Fn(&dyn ComputeBackend, &mut gpu::Poly)| {
            let mut g = gpu.upload(&x).unwrap();
            op(gpu.as_ref(), &mut g);
            let mut c = cpu.upload(&x).unwrap();
            op(&cpu, &mut c);
            (gpu.download(&g).unwrap(), cpu.download(&c).unwrap())
        };
        let (g, c) = both(&|b, p| b.batch_invert(p).unwrap());
        assert!(g == c, "batch_invert of {n}");
        let first = Fr::random(&mut rng);
        let (g, c) = both(&|b, p| b.prefix_product(p, first).unwrap());
        assert!(g == c, "prefix_product of {n}");
        let div = Fr::random(&mut rng);
        let (g, c) = both(&|b, p| b.divide_linear(p, div).unwrap());
        assert!(g == c, "divide_linear of {n}");
        let points = [Fr::ZERO, Fr::ONE, -Fr::ONE, div, Fr::random(&mut rng)];
        let g = gpu.evaluate(&gpu.upload(&x).unwrap(), &points).unwrap();
        let c = cpu.evaluate(&cpu.upload(&x).unwrap(), &points).unwrap();
        assert_eq!(g, c, "evaluate {n}");
        let c_one = c;
        // Several polynomials at once: this one at its points and at none, its halves, a copy
        // of it with other points, and a zero-length one (the three lengths in one call).
        let half = n / 2;
        let parts: Vec<Vec<Fr>> = vec![x.clone(), x[..half].to_vec(), x.clone(), Vec::new()];
        let other = [Fr::random(&mut rng), -points[4]];
        let point_sets: [&[Fr]; 5] = [&points, &[], &other, &points[1..3], &points];
        let on = |b: &dyn ComputeBackend| {
            let uploaded: Vec<gpu::Poly> = parts.iter().map(|p| b.upload(p).unwrap()).collect();
            let order = [0usize, 0, 1, 2, 3];
            let requests: Vec<(&gpu::Poly, &[Fr])> = order
                .iter()
                .zip(point_sets)
                .map(|(&i, x)| (&uploaded[i], x))
                .collect();
            b.evaluate_many(&requests).unwrap()
        };
        let g = on(gpu.as_ref());
        let c = on(&cpu);
        assert_eq!(g, c, "evaluate_many around {n}");
        assert_eq!(g[0], c_one, "evaluate_many around {n}: one call or many");
        assert_eq!(
            g[3],
            g[0][1..3].to_vec(),
            "evaluate_many around {n}: a copy"
        );
        assert!(g[1].is_empty(), "evaluate_many around {n}: no points");
        assert_eq!(
            g[4],
            vec![Fr::ZERO; points.len()],
            "evaluate_many: length 0"
        );
        if n >= 3 {
            let mut p = gpu.upload(&x).unwrap();
            assert_eq!(gpu.read_range(&p, n - 3, 3).unwrap(), x[n - 3..].to_vec());
            let w = [Fr::random(&mut rng), Fr::random(&mut rng)];
            gpu.write_range(&mut p, n / 2, &w).unwrap();
            let mut want = x.clone();
            want[n / 2..n / 2 + 2].copy_from_slice(&w);
            assert!(gpu.download(&p).unwrap() == want, "write_range of {n}");
            assert!(gpu.read_range(&p, n - 2, 3).is_err());
            assert!(gpu.write_range(&mut p, n, &w).is_err());
        }
    }
}
