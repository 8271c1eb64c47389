//! Per-step profile of one chunk proof with each engine on the CPU backend, for finding hot spots
//! (the criterion bench `prove/chunk/{engine}/{backend}/k{k}` in benches/ is the measurement of
//! record). Prints the native engine's step events and both engines' wall times.
//!
//! `cargo run --release -p prover-core --example native_profile -- [k] [rounds]`
//! (k = 13 and 2 rounds by default; dev parameters and keys under $TMPDIR/native-profile).
//!
//! `... --example native_profile -- TASK.json PARAMS_DIR KEYS_DIR [rounds]` proves a task file
//! (e.g. a batch task from `prover task batch`) through the proving core: `rounds` native proofs
//! in one process (the first one builds the key cache), then one reference proof. With
//! `PROFILE_BACKEND=cuda` the native proofs run on CUDA (and print the emulator's counters when
//! the device is the emulated one); `PROFILE_NO_REFERENCE=1` skips the reference proof; `PROFILE_OUT=DIR` writes each native proof
//! there (`proof-{round}.json`).

use halo2_base::gates::circuit::builder::BaseCircuitBuilder;
use halo2_proofs::transcript::TranscriptWriterBuffer;
use halo2curves::bn256::Fr;
use prover_core::circuits::chunk;
use prover_core::rollup::RollupState;
use prover_core::wire::{ChunkConfig, Transfer};
use prover_core::{engine, native, CoreConfig, ProvingCore};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use snark_verifier_sdk::halo2::PoseidonTranscript;
use snark_verifier_sdk::NativeLoader;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter("prover_core=debug")
        .with_writer(std::io::stderr)
        .init();
    let all: Vec<String> = std::env::args().skip(1).collect();
    if all.first().is_some_and(|a| a.ends_with(".json")) {
        return profile_task(&all);
    }
    let mut args = all.into_iter();
    let k: u32 = args.next().map(|v| v.parse()).transpose()?.unwrap_or(13);
    let rounds: usize = args.next().map(|v| v.parse()).transpose()?.unwrap_or(2);
    let dir = std::env::temp_dir().join("native-profile");
    let params_dir = dir.join("params");
    std::fs::create_dir_all(&params_dir)?;
    params::ensure_dev(&params_dir, k, false)?;
    let core = ProvingCore::new(CoreConfig::new(params_dir, dir.join("keys")));
    let config = ChunkConfig {
        k,
        tree_depth: 4,
        max_txs: 2,
    };
    let keys = core.chunk_keys(config)?;
    let srs = core.srs(k)?;
    let mut state = RollupState::genesis(config.tree_depth, 4, 1000)?;
    let t = |from, to, amount| Transfer {
        from,
        to,
        amount,
        nonce: 0,
    };
    let data = state.apply_chunk(config, &[t(0, 1, 5), t(1, 2, 3)])?;
    let build = || {
        let mut b = BaseCircuitBuilder::prover(
            keys.meta.circuit_params.clone(),
            keys.meta.break_points.clone(),
        );
        chunk::synthesize(&mut b, &data);
        let instances: Vec<Fr> = b.assigned_instances[0].iter().map(|c| *c.value()).collect();
        (b, instances)
    };
    let vk = keys.pk.get_vk();
    let cs = vk.cs();
    eprintln!(
        "chunk k={k}: {} advice, {} fixed, {} instance columns, {} permutation columns, {} lookups, degree {}, extended k {}",
        cs.num_advice_columns(),
        cs.num_fixed_columns(),
        cs.num_instance_columns(),
        cs.permutation().get_columns().len(),
        cs.lookups().len(),
        cs.degree(),
        vk.get_domain().extended_k()
    );
    let cpu = gpu::CpuBackend::new();
    let bases = native::srs_bases(&srs)?;
    let started = std::time::Instant::now();
    let cache = native::KeyCache::new(&cpu, &keys.pk)?;
    eprintln!(
        "key cache: {:?}, {} MiB",
        started.elapsed(),
        cache.size_bytes() >> 20
    );
    for round in 0..rounds {
        let (circuit, instances) = build();
        let started = std::time::Instant::now();
        let mut transcript = PoseidonTranscript::<NativeLoader, Vec<u8>>::init(Vec::new());
        native::create_proof(
            &cpu,
            &srs,
            &bases,
            &keys.pk,
            Some(&cache),
            &circuit,
            &[&instances],
            &mut ChaCha20Rng::seed_from_u64(1),
            &mut transcript,
        )?;
        let native_time = started.elapsed();
        engine::verify(&srs, vk, &instances, &transcript.finalize())?;
        let (circuit, instances) = build();
        let started = std::time::Instant::now();
        engine::prove(
            &srs,
            &keys.pk,
            circuit,
            &instances,
            ChaCha20Rng::seed_from_u64(1),
        )?;
        let reference_time = started.elapsed();
        eprintln!(
            "round {round}: native {native_time:?}, reference {reference_time:?}, ratio {:.3}",
            native_time.as_secs_f64() / reference_time.as_secs_f64()
        );
    }
    Ok(())
}

fn profile_task(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let [task, params_dir, keys_dir, rest @ ..] = args else {
        return Err("usage: native_profile TASK.json PARAMS_DIR KEYS_DIR [rounds]".into());
    };
    let rounds: usize = rest.first().map(|v| v.parse()).transpose()?.unwrap_or(2);
    let task: prover_core::wire::Task = serde_json::from_str(&std::fs::read_to_string(task)?)?;
    let mut config = CoreConfig::new(params_dir, keys_dir);
    config.backend = match std::env::var("PROFILE_BACKEND").as_deref() {
        Ok("cuda") => gpu::BackendChoice::Cuda,
        _ => gpu::BackendChoice::Cpu,
    };
    let native_core = ProvingCore::new(config.clone());
    let emulator = gpu::Emulator::open();
    for round in 0..rounds {
        let started = std::time::Instant::now();
        let proof = native_core.prove_task(&task, ChaCha20Rng::seed_from_u64(round as u64))?;
        native_core.verify(&proof)?;
        use sha2::Digest;
        eprintln!(
            "native round {round} on {}: {:?} (core prove_ms {}), proof SHA-256 {}",
            proof.meta.backend,
            started.elapsed(),
            proof.meta.prove_ms,
            hex::encode(sha2::Sha256::digest(&proof.proof.0))
        );
        if let Ok(dir) = std::env::var("PROFILE_OUT") {
            let file = std::path::Path::new(&dir).join(format!("proof-{round}.json"));
            std::fs::write(&file, serde_json::to_string(&proof)?)?;
        }
        if let Some(e) = &emulator {
            let c = e.counters()?;
            eprintln!(
                "emulated device since start: {} bytes host→device, {} bytes device→host, \
                 {} launches, peak device memory {} bytes",
                c.htod_bytes, c.dtoh_bytes, c.launches, c.peak_bytes
            );
            e.reset()?;
        }
    }
    if std::env::var("PROFILE_NO_REFERENCE").is_ok() {
        return Ok(());
    }
    config.engine = engine::EngineKind::Reference;
    let reference_core = ProvingCore::new(config);
    let started = std::time::Instant::now();
    let proof = reference_core.prove_task(&task, ChaCha20Rng::seed_from_u64(0))?;
    eprintln!(
        "reference: {:?} (core prove_ms {})",
        started.elapsed(),
        proof.meta.prove_ms
    );
    Ok(())
}
