//! One synthesis of a batch task's circuit proved by the native engine on the CPU backend and on
//! CUDA with the same seed: the two proofs must be byte-identical and verify. (Each synthesis of
//! the batch circuit has its own witness: halo2-ecc draws random points from OS entropy, so the
//! comparison needs one synthesis.) With the emulated device, prints its counters.
//!
//! `cargo run --release -p prover-core --example batch_identity -- TASK.json PARAMS_DIR KEYS_DIR`
//! (a batch task from `prover task batch`; keys made by `prover demo` or `prover keygen`).

use std::time::Instant;

use prover_core::{engine, native, CoreConfig, ProvingCore};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sha2::Digest;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter("prover_core=info")
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [task, params_dir, keys_dir] = args.as_slice() else {
        return Err("usage: batch_identity TASK.json PARAMS_DIR KEYS_DIR".into());
    };
    let task: prover_core::wire::Task = serde_json::from_str(&std::fs::read_to_string(task)?)?;
    let prover_core::wire::TaskPayload::Batch(data) = task.payload()? else {
        return Err("not a batch task".into());
    };
    let core = ProvingCore::new(CoreConfig::new(params_dir, keys_dir));
    let started = Instant::now();
    let (keys, circuit, instances) = core.batch_circuit(&data)?;
    eprintln!("batch circuit synthesized in {:?}", started.elapsed());
    let srs = core.srs(data.config.k)?;
    let bases = native::srs_bases(&srs)?;
    let cpu = gpu::CpuBackend::new();
    let cuda = gpu::select(gpu::BackendChoice::Cuda)?.backend;
    let emulator = gpu::Emulator::open();
    let mut proofs = Vec::new();
    for backend in [&cpu as &dyn gpu::ComputeBackend, &*cuda] {
        let started = Instant::now();
        let cache = native::KeyCache::new(backend, &keys.pk)?;
        let proof = engine::prove_native(
            backend,
            &srs,
            &bases,
            &keys.pk,
            Some(&cache),
            &circuit,
            &instances,
            ChaCha20Rng::seed_from_u64(7),
        )?;
        eprintln!(
            "{}: proof in {:?} (key cache included), SHA-256 {}",
            backend.name(),
            started.elapsed(),
            hex::encode(sha2::Sha256::digest(&proof))
        );
        proofs.push(proof);
    }
    if let Some(e) = &emulator {
        let c = e.counters()?;
        eprintln!(
            "emulated device: {} bytes host→device, {} bytes device→host, {} launches, peak {} bytes",
            c.htod_bytes, c.dtoh_bytes, c.launches, c.peak_bytes
        );
    }
    if proofs[0] != proofs[1] {
        return Err("the CPU and CUDA batch proofs differ".into());
    }
    eprintln!("CPU and CUDA batch proofs are byte-identical (both verified by the engine)");
    Ok(())
}
