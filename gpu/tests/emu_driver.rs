//! The emulated CUDA device at the driver level, through cudarc: what it reports, which limits it
//! enforces (from the CUBIN NVRTC produced), that bad pointers, bad copies and entry points it
//! does not implement come back as errors that say what was wrong, and what one MSM of the
//! backend launches. Skips without a CUDA driver (fails with `PROVER_REQUIRE_GPU=1`) and on a real
//! GPU (it is about the emulator).
//!
//! One test, because the emulator's counters are process-wide.

use std::sync::Arc;

use cudarc::driver::sys::{self, CUdevice_attribute, CUresult};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaStream, DevicePtr, DevicePtrMut, LaunchConfig,
    PushKernelArg,
};
use cudarc::nvrtc::Ptx;
use ff::Field;
use gpu::kernels::{ARITH_CHECK, MSM, POLY};
use gpu::{
    Bases, ComputeBackend, CpuBackend, CudaBackend, Emulator, Fr, G1Affine, KernelMuls,
    LaunchShape, G1,
};
use group::prime::PrimeCurveAffine;
use group::{Curve, Group};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn emulator() -> Option<Emulator> {
    if matches!(gpu::cuda_driver_probe(), gpu::DriverProbe::NotFound { .. }) {
        assert!(
            std::env::var("PROVER_REQUIRE_GPU").ok().as_deref() != Some("1"),
            "PROVER_REQUIRE_GPU=1 but no CUDA driver"
        );
        eprintln!("no CUDA driver; emulator driver test SKIPPED");
        return None;
    }
    let e = Emulator::open();
    if e.is_none() {
        eprintln!("a real CUDA driver is loaded; emulator driver test SKIPPED");
    }
    e
}

fn module(ctx: &Arc<CudaContext>, unit: gpu::kernels::Source) -> Arc<CudaModule> {
    // From the kernel cache, as the backend loads it (the equivalence suite compiled it already).
    let cubin = gpu::cuda::cached_cubin(unit, (9, 0)).expect("NVRTC");
    ctx.load_module(Ptx::from_binary(cubin))
        .expect("load the CUBIN")
}

fn cfg(grid: (u32, u32, u32), block: (u32, u32, u32)) -> LaunchConfig {
    LaunchConfig {
        grid_dim: grid,
        block_dim: block,
        shared_mem_bytes: 0,
    }
}

/// Launches scan_add(u32* data, const u32* block_offsets, u32 n) with `data` as the raw pointer.
fn launch_scan_add(
    stream: &Arc<CudaStream>,
    f: &CudaFunction,
    data: u64,
    offsets: u64,
    n: u32,
    c: LaunchConfig,
) -> Result<(), String> {
    // SAFETY: scan_add takes two pointers and a u32; the arguments have exactly those sizes. The
    // pointers may be invalid on purpose: the emulator checks them before running anything, and
    // a valid call touches only data[0..n) and block_offsets[0..=n/1024].
    unsafe {
        stream
            .launch_builder(f)
            .arg(&data)
            .arg(&offsets)
            .arg(&n)
            .launch(c)
    }
    .map(|_| ())
    .map_err(|e| e.to_string())
}

#[test]
fn emulated_driver_reports_and_enforces_the_device_limits() {
    let Some(emu) = emulator() else { return };
    let ctx = CudaContext::new(0).expect("context on the emulated device");
    let stream = ctx.default_stream();

    // What it reports: an H100-class device, named as emulated.
    let name = ctx.name().expect("name");
    assert!(name.contains("Emulated"), "{name}");
    let attr = |a| ctx.attribute(a).expect("attribute");
    assert_eq!(
        attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
        9
    );
    assert_eq!(
        attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK),
        1024
    );
    assert_eq!(
        attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
        132
    );
    assert_eq!(
        attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN),
        232448
    );

    // Kernel attributes come from the CUBIN.
    let msm = module(&ctx, MSM);
    let scan_block = msm.load_function("scan_block").unwrap();
    assert_eq!(
        scan_block.shared_size_bytes().unwrap(),
        2048,
        "__shared__ u32 sh[512]"
    );
    let scan_add = msm.load_function("scan_add").unwrap();
    let g1_op = module(&ctx, ARITH_CHECK).load_function("g1_op").unwrap();
    let regs = g1_op.num_regs().unwrap() as u64;
    let max_threads = g1_op.max_threads_per_block().unwrap() as u64;
    println!("g1_op: {regs} registers per thread, at most {max_threads} threads per block");
    assert!(regs > 0, "register count read from the CUBIN");
    let per_warp = (regs * 32).div_ceil(256) * 256;
    assert_eq!(max_threads, (65536 / per_warp * 32).min(1024));
    // Not in the CUBIN: an error naming it.
    let missing = msm.load_function("no_such_kernel").unwrap_err();
    assert!(
        missing.to_string().contains("is not in the module"),
        "{missing}"
    );
    // A CUBIN for another architecture is refused.
    // (A one-line kernel: what is refused is the CUBIN's target, not its contents.)
    let tiny = "extern \"C\" __global__ void k(unsigned *p) { p[threadIdx.x] = 1; }";
    let sm80 = gpu::cuda::compile_source("tiny.cu", tiny, (8, 0)).unwrap();
    let e = ctx.load_module(Ptx::from_binary(sm80)).unwrap_err();
    assert_eq!(e.0, CUresult::CUDA_ERROR_NO_BINARY_FOR_GPU, "{e}");

    // Device memory: fresh allocations hold garbage, not zeros; copies are counted.
    emu.reset().unwrap();
    // SAFETY: the slice is only copied back to the host (u32 has no invalid bit patterns).
    let fresh = unsafe { stream.alloc::<u32>(1024) }.expect("alloc");
    let host = stream.clone_dtoh(&fresh).expect("download");
    assert!(
        host.iter().any(|x| *x != 0),
        "new device memory must be filled with garbage"
    );
    let mut data = stream.clone_htod(&vec![1u32; 2048]).expect("upload");
    let offsets = stream.clone_htod(&[5u32, 7]).expect("upload");
    let c = emu.counters().unwrap();
    assert_eq!(c.htod_bytes, 2048 * 4 + 8);
    assert_eq!(c.dtoh_bytes, 1024 * 4);

    // A good launch runs and is counted.
    let pd = data.device_ptr_mut(&stream).0;
    let po = offsets.device_ptr(&stream).0;
    launch_scan_add(
        &stream,
        &scan_add,
        pd,
        po,
        2048,
        cfg((8, 1, 1), (256, 1, 1)),
    )
    .expect("launch");
    let out = stream.clone_dtoh(&data).unwrap();
    assert!(out[..1024].iter().all(|x| *x == 6) && out[1024..].iter().all(|x| *x == 8));
    let launches = emu.launch_counts().unwrap();
    assert!(
        launches.contains(&("scan_add".to_string(), 1)),
        "{launches:?}"
    );

    // Limits of the device, as launch errors.
    for (config, want) in [
        (cfg((1, 1, 1), (1025, 1, 1)), "block (1025, 1, 1) exceeds"),
        (cfg((1, 1, 1), (32, 33, 1)), "1056 threads per block"),
        (cfg((1, 65536, 1), (32, 1, 1)), "grid (1, 65536, 1)"),
    ] {
        let err = launch_scan_add(&stream, &scan_add, pd, po, 2048, config).unwrap_err();
        assert!(err.contains(want), "{err}");
    }
    // Registers × threads: g1_op at 1024 threads fits only if it uses at most 64 registers.
    let a = stream.clone_htod(&vec![0u32; 32]).unwrap();
    let mut o = stream.clone_htod(&vec![0u32; 16]).unwrap();
    let (op, n) = (2i32, 1u32);
    // SAFETY: g1_op(int op, const u32* a, const u32* b, u32* out, u32 n) with n = 1: reads 32
    // limbs of a and b, writes 16 of out; all three buffers are that large.
    let r = unsafe {
        stream
            .launch_builder(&g1_op)
            .arg(&op)
            .arg(&a)
            .arg(&a)
            .arg(&mut o)
            .arg(&n)
            .launch(cfg((1, 1, 1), (1024, 1, 1)))
    };
    if 32 * per_warp > 65536 {
        let e = r.unwrap_err();
        assert_eq!(e.0, CUresult::CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES, "{e}");
        assert!(e.to_string().contains("registers per thread"), "{e}");
    } else {
        r.expect("g1_op fits at 1024 threads");
    }
    stream
        .synchronize()
        .expect("no sticky fault from refused launches");

    // Field multiplications are counted per thread and kernel: fr_op's product (op 2) makes one
    // a thread, its inverse (op 4, Fermat) the same number in every thread; element accesses
    // too (each thread loads two and stores one).
    let fr_op = module(&ctx, ARITH_CHECK).load_function("fr_op").unwrap();
    let vals = stream.clone_htod(&vec![3u32; 8 * 1000]).unwrap();
    let mut prod = stream.clone_htod(&vec![0u32; 8 * 1000]).unwrap();
    // `blocks` blocks of 256 threads (4 cover the 1000 elements).
    let fr_launch = |op: i32, blocks: u32, prod: &mut cudarc::driver::CudaSlice<u32>| {
        let n = 1000u32;
        // SAFETY: fr_op(int op, const u32* a, const u32* b, u32* out, u32 n): a, b and out hold
        // 8·n limbs; each thread i < n reads and writes element i only, the others return.
        unsafe {
            stream
                .launch_builder(&fr_op)
                .arg(&op)
                .arg(&vals)
                .arg(&vals)
                .arg(prod)
                .arg(&n)
                .launch(cfg((blocks, 1, 1), (256, 1, 1)))
        }
        .expect("fr_op");
    };
    emu.reset().unwrap();
    assert_eq!(
        emu.counters().unwrap().device_ns,
        0,
        "device time after a reset"
    );
    fr_launch(2, 4, &mut prod);
    fr_launch(2, 4, &mut prod);
    assert!(
        emu.counters().unwrap().device_ns > 0,
        "no device time counted"
    );
    let products = KernelMuls {
        kernel: "fr_op".into(),
        muls: 2000,
        longest: 1,
        chain: 2,
        elements: 6000,
    };
    assert_eq!(emu.mul_counts().unwrap(), vec![products]);
    // Their shape on a 132-SM device: 4 blocks of 256 threads each, one wave each, the block
    // places of a wave being the occupancy calculator's blocks per SM times 132.
    let per_sm = u64::from(
        fr_op
            .occupancy_max_active_blocks_per_multiprocessor(256, 0, None)
            .expect("occupancy"),
    );
    assert!(per_sm >= 1, "fr_op at 256 threads fits no SM");
    let shape = LaunchShape {
        kernel: "fr_op".into(),
        launches: 2,
        blocks: 8,
        waves: 2,
        slots: 2 * 132 * per_sm,
        warps_min: 8 * per_sm,
        warps_max: 8 * per_sm,
    };
    assert_eq!(emu.launch_shapes().unwrap(), vec![shape.clone()]);
    assert!((shape.fill() - 8.0 / (264 * per_sm) as f64).abs() < 1e-12);
    // One block more than a wave holds takes a second wave.
    emu.reset().unwrap();
    let blocks = 132 * per_sm + 1;
    fr_launch(0, blocks as u32, &mut prod);
    let two = &emu.launch_shapes().unwrap()[0];
    assert_eq!(
        (two.blocks, two.waves, two.slots),
        (blocks, 2, 2 * 132 * per_sm),
        "{two:?}"
    );
    emu.reset().unwrap();
    fr_launch(4, 4, &mut prod);
    let inv = emu.mul_counts().unwrap();
    println!("fr inverse: {inv:?}");
    assert!(
        inv.len() == 1
            && inv[0].longest > 254
            && inv[0].muls == 1000 * inv[0].longest
            && inv[0].elements == 3000,
        "{inv:?}"
    );

    // Pointer parameters must lie in live device allocations.
    let host_vec = [0u32; 16];
    let host_ptr = host_vec.as_ptr() as u64;
    let err = launch_scan_add(
        &stream,
        &scan_add,
        host_ptr,
        po,
        16,
        cfg((1, 1, 1), (16, 1, 1)),
    )
    .unwrap_err();
    assert!(err.contains("pointer parameter 0"), "{err}");
    assert!(err.contains("not in any live device allocation"), "{err}");
    let err = launch_scan_add(
        &stream,
        &scan_add,
        pd + 8192,
        po,
        16,
        cfg((1, 1, 1), (16, 1, 1)),
    )
    .unwrap_err();
    assert!(err.contains("pointer parameter 0"), "{err}");

    // Copies are checked against the allocation they touch.
    let src = [0u8; 16];
    // SAFETY: the destination range runs 8 bytes past the 8192-byte allocation on purpose; the
    // emulator refuses it before copying. `src` holds the 16 bytes named.
    let rc = unsafe { sys::cuMemcpyHtoD_v2(pd + 8192 - 8, src.as_ptr().cast(), 16) };
    assert_eq!(rc, CUresult::CUDA_ERROR_INVALID_VALUE);

    // An entry point the emulator does not implement: an error naming it, not a crash.
    let mut bus_id = [0 as std::ffi::c_char; 32];
    // SAFETY: cuDeviceGetPCIBusId(char*, int, CUdevice) with a buffer of the length passed.
    let rc = unsafe { sys::cuDeviceGetPCIBusId(bus_id.as_mut_ptr(), 32, 0) };
    assert_eq!(rc, CUresult::CUDA_ERROR_NOT_SUPPORTED);
    let msg = cudarc::driver::DriverError(rc).to_string();
    assert!(
        msg.contains("cuDeviceGetPCIBusId is not implemented"),
        "{msg}"
    );

    // A CUBIN records the CUDA version that made it (ELF e_version: 126 for NVRTC 12.6); the
    // driver (CUDA 12.6 here) runs those of its own major and refuses a newer major's.
    let cubin = gpu::cuda::cached_cubin(POLY, (9, 0)).expect("NVRTC");
    let made_by = u32::from_le_bytes(cubin[0x14..0x18].try_into().unwrap());
    println!(
        "the CUBIN was made by CUDA {}.{}",
        made_by / 10,
        made_by % 10
    );
    assert_eq!(made_by / 10, 12, "e_version {made_by}");
    let with_version = |v: u32| {
        let mut c = cubin.clone();
        c[0x14..0x18].copy_from_slice(&v.to_le_bytes());
        ctx.load_module(Ptx::from_binary(c)).map(|_| ())
    };
    with_version(120).expect("CUDA 12.0's CUBIN under a 12.6 driver");
    with_version(129).expect("CUDA 12.9's: a newer minor runs");
    let e = with_version(130).unwrap_err().to_string();
    assert!(
        e.contains("UNSUPPORTED_PTX_VERSION") && e.contains("made by CUDA 13.0"),
        "{e}"
    );

    // The threads' local memory (the context's stack size) is device memory, kept for every
    // thread the device holds at once (132 SMs × 2048): set by the program, or raised by a launch
    // whose kernel needs more than the stack size, and not given back by the driver itself.
    let threads = 132u64 * 2048;
    let stack = sys::CUlimit::CU_LIMIT_STACK_SIZE;
    let free = || ctx.mem_get_info().expect("free memory").0 as u64;
    ctx.set_limit(stack, 1024).expect("the default stack size");
    assert_eq!(emu.counters().unwrap().local_reserved, 0);
    let before = free();
    ctx.set_limit(stack, 4096).expect("4 KiB per thread");
    assert_eq!(ctx.get_limit(stack).unwrap(), 4096);
    assert_eq!(emu.counters().unwrap().local_reserved, 3072 * threads);
    assert_eq!(before - free(), 3072 * threads, "cuMemGetInfo counts it");
    // 512 KiB per thread (the most a thread may have) is 132 GiB: refused for memory; more is
    // refused outright. The stack size stays.
    let e = ctx.set_limit(stack, 512 << 10).unwrap_err().to_string();
    assert!(e.contains("OUT_OF_MEMORY"), "{e}");
    let e = ctx
        .set_limit(stack, (512 << 10) + 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("INVALID_VALUE"), "{e}");
    assert_eq!(ctx.get_limit(stack).unwrap(), 4096, "unchanged");
    ctx.set_limit(stack, 1024).expect("back to the default");
    assert_eq!(free(), before, "given back");
    // poly_eval keeps its interpreter's slots in a local frame larger than the default stack:
    // its first launch raises the stack size to the frame and takes the memory then.
    let poly_eval = module(&ctx, POLY).load_function("poly_eval").unwrap();
    let frame = poly_eval.local_size_bytes().unwrap() as u64;
    println!("poly_eval: {frame} bytes of local memory per thread");
    assert!(frame > 1024, "poly_eval's frame: {frame} bytes");
    let y = stream.clone_htod(&[0u32; 8]).expect("y");
    let py = y.device_ptr(&stream).0;
    let (null, zero) = (0u64, 0u32);
    let at_launch = free();
    // SAFETY: poly_eval(const u32* code, u32 n_instr, const u32* consts, const u64* inputs,
    // const u32* q_input, const u32* q_shift, u32 size, u32* acc, const u32* y_limbs): every
    // argument has its parameter's size; with size 0 it reads y_limbs (8 u32, valid) and nothing
    // else.
    unsafe {
        stream
            .launch_builder(&poly_eval)
            .arg(&null)
            .arg(&zero)
            .arg(&null)
            .arg(&null)
            .arg(&null)
            .arg(&null)
            .arg(&zero)
            .arg(&null)
            .arg(&py)
            .launch(cfg((1, 1, 1), (32, 1, 1)))
    }
    .expect("poly_eval on no rows");
    stream.synchronize().expect("ran");
    assert_eq!(
        ctx.get_limit(stack).unwrap() as u64,
        frame,
        "raised by the launch"
    );
    assert_eq!(
        at_launch - free(),
        (frame - 1024) * threads,
        "taken at the launch"
    );
    ctx.set_limit(stack, 1024).expect("back to the default");
    drop(y);

    msm_launches(&emu);
    evaluations_in_one_pass(&emu);

    // Page-locked host memory: an asynchronous copy from or into it runs when something waits
    // for it (as a GPU's copy engine runs it after the call returns). Last: the misuse at the
    // end leaves the context with a sticky fault.
    // SAFETY: the host touches the buffer only as the checks below say; the copies are waited
    // for (or the context faults) before it is freed.
    let mut pinned = unsafe { ctx.alloc_pinned_with_flags::<u32>(1024, 0) }.expect("pinned");
    let done = ctx.new_event(None).expect("event");
    let ramp: Vec<u32> = (0..1024).collect();
    let mut dev = stream
        .clone_htod(&ramp)
        .expect("pageable copy: done at once");
    let host = pinned.as_mut_slice().expect("pinned slice");
    // Device to host: until the wait, the destination holds the emulator's 0xA5 bytes.
    stream.memcpy_dtoh(&dev, host).expect("queued copy");
    assert_eq!(host[5], 0xA5A5_A5A5, "read before the copy ran");
    done.record(&stream).expect("record");
    done.synchronize().expect("wait");
    assert!(*host == *ramp, "the copy ran at the wait");
    // Host to device, waited for: the device gets the bytes, the buffer may be written again.
    host.fill(7);
    stream.memcpy_htod(&*host, &mut dev).expect("queued copy");
    done.record(&stream).expect("record");
    done.synchronize().expect("wait");
    host.fill(9);
    assert!(stream.clone_dtoh(&dev).expect("back") == vec![7; 1024]);
    // Host to device, the buffer written before the wait: the context faults, naming it.
    stream.memcpy_htod(&*host, &mut dev).expect("queued copy");
    host[3] = 1;
    let e = stream.synchronize().unwrap_err().to_string();
    assert!(
        e.contains("was written while an asynchronous copy from it to the device was still queued"),
        "{e}"
    );
}

/// One MSM's launches and device-to-host reads on the backend: a bucket's segment sums are folded
/// in a tree (`msm_fold_segments`) only where the largest bucket, which the device reports, has
/// more than `plan::FOLD_GROUP` of them -- none for 2^12 random scalars (their largest bucket, in
/// the top window, about 315 entries: 10 segments of 32), one level for 2^12 equal scalars (128
/// segments in one bucket).
fn msm_launches(emu: &Emulator) {
    let backend = CudaBackend::new(0).expect("backend on the emulated device");
    let cpu = CpuBackend::new();
    let n = 1usize << 12;
    let mut rng = ChaCha20Rng::seed_from_u64(29);
    // Distinct points cheaply: k·P for a random P, normalised at once.
    let p = G1::random(&mut rng);
    let mut acc = vec![G1::identity(); n];
    for i in 1..n {
        acc[i] = acc[i - 1] + p;
    }
    let mut points = vec![G1Affine::identity(); n];
    G1::batch_normalize(&acc, &mut points);
    let bases = Bases::new(points);
    let narrow = std::env::var("GPU_MSM_NARROW_REDUCE").is_ok_and(|v| v == "1");
    for (what, scalars, want_folds) in [
        (
            "random",
            (0..n).map(|_| Fr::random(&mut rng)).collect::<Vec<_>>(),
            0,
        ),
        // 5,897 = 5·2^10 + 777, in windows of 10 bits: digit −247 in the first window (bucket
        // 246: lane 22 of the eighth warp of msm_segment_count) and 6 in the second (bucket 5 of
        // 512: lane 5 of the seventeenth); each of the two buckets takes every scalar.
        (
            "5,897 repeated",
            vec![Fr::from(5897); n],
            if narrow { 0 } else { 1 },
        ),
    ] {
        let dev = backend.upload_scalars(&scalars).expect("upload");
        emu.reset().unwrap();
        let got = backend.msm_device(&bases, &dev).expect("msm");
        let c = emu.counters().unwrap();
        let launches = emu.launch_counts().unwrap();
        let folds = launches
            .iter()
            .find(|(k, _)| k == "msm_fold_segments")
            .map_or(0, |(_, c)| *c);
        println!(
            "msm of 2^12 scalars, {what}: {} launches, {} device-to-host copies ({} bytes), \
             {folds} of msm_fold_segments",
            c.launches, c.dtoh_copies, c.dtoh_bytes
        );
        assert_eq!(folds, want_folds, "{what}: {launches:?}");
        // Three reads: the bucket entries' total, the segments' total with the largest bucket's
        // segment count, the window sums; one more per fold level (its total).
        assert_eq!(
            c.dtoh_copies,
            3 + want_folds,
            "{what}: device-to-host copies"
        );
        assert_eq!(got, cpu.msm(&bases, &scalars).unwrap(), "{what}: the sum");
        let muls = emu.mul_counts().unwrap();
        for m in &muls {
            println!(
                "  {}: {} multiplications, the longest thread {}, chain {}",
                m.kernel, m.muls, m.longest, m.chain
            );
        }
        // What the fold is for: no thread adds more than 32 of a bucket's segment sums (14
        // multiplications an XYZZ addition); with the earlier reduction one thread adds all 128.
        let bucket_sum = muls.iter().find(|m| m.kernel == "msm_bucket_sum");
        let longest = bucket_sum.map_or(0, |m| m.longest);
        assert!(
            narrow || longest <= 32 * 14,
            "{what}: msm_bucket_sum {longest} multiplications in one thread"
        );
    }
}

/// The evaluations of an opening in one pass: `evaluate_many` over polynomials of one length
/// launches one `poly_eval_partial` and one `poly_eval_sum` and reads back once, whatever the
/// number of polynomials and points (one evaluate per polynomial: two launches and one read
/// each); a second length adds one pass and one read. The values are the CPU backend's.
fn evaluations_in_one_pass(emu: &Emulator) {
    let backend = CudaBackend::new(0).expect("backend on the emulated device");
    let cpu = CpuBackend::new();
    let mut rng = ChaCha20Rng::seed_from_u64(41);
    let coeffs: Vec<Vec<Fr>> = [1000usize, 1000, 1000, 1000, 300]
        .iter()
        .map(|&n| (0..n).map(|_| Fr::random(&mut rng)).collect())
        .collect();
    let polys: Vec<gpu::Poly> = coeffs.iter().map(|c| backend.upload(c).unwrap()).collect();
    let points: Vec<Vec<Fr>> = (0..5usize)
        .map(|i| (0..1 + i % 3).map(|_| Fr::random(&mut rng)).collect())
        .collect();
    for (what, count, want_passes) in [("one length", 4usize, 1u64), ("two lengths", 5, 2)] {
        let requests: Vec<(&gpu::Poly, &[Fr])> = polys[..count]
            .iter()
            .zip(&points)
            .map(|(p, x)| (p, x.as_slice()))
            .collect();
        emu.reset().unwrap();
        let got = backend.evaluate_many(&requests).unwrap();
        let c = emu.counters().unwrap();
        let launches: std::collections::BTreeMap<String, u64> =
            emu.launch_counts().unwrap().into_iter().collect();
        println!(
            "evaluate_many, {what}: {launches:?}, {} reads",
            c.dtoh_copies
        );
        assert_eq!(c.dtoh_copies, want_passes, "{what}: reads back");
        assert_eq!(
            launches.get("poly_eval_partial"),
            Some(&want_passes),
            "{what}"
        );
        assert_eq!(launches.get("poly_eval_sum"), Some(&want_passes), "{what}");
        assert_eq!(c.launches, 2 * want_passes, "{what}: launches");
        for (i, (values, x)) in got.iter().zip(&points).enumerate() {
            let want = cpu.evaluate(&cpu.upload(&coeffs[i]).unwrap(), x).unwrap();
            assert_eq!(values, &want, "{what}: polynomial {i}");
        }
        assert_eq!(got.len(), count, "{what}");
    }
}
