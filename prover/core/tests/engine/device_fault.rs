//! A device fault in the middle of a proof: the proof is made again on the CPU backend in the
//! same call, with the same randomness, and says so (`meta.backend`, `meta.fallback`); the core
//! counts the fault and keeps proving.
//!
//! Needs the emulated device (`gpu/emu/`) with a fault planted by `CUDA_EMU_FAIL_LAUNCH`
//! (`scripts/test` runs it with `CUDA_EMU_FAIL_LAUNCH=poly_batch_invert:1`: the first batch
//! inversion, in the permutation products, after the advice commitments). Skips with a message
//! elsewhere, unless `PROVER_REQUIRE_GPU=1`.

use std::sync::Arc;

use gpu::{BackendChoice, ComputeBackend};
use prover_core::engine::EngineKind;
use prover_core::rollup::RollupState;
use prover_core::wire::{ChunkConfig, Transfer};
use prover_core::{CoreConfig, ProvingCore};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn planted_emulator() -> Option<Arc<dyn ComputeBackend>> {
    let required = std::env::var("PROVER_REQUIRE_GPU").is_ok_and(|v| v == "1");
    let planted = std::env::var("CUDA_EMU_FAIL_LAUNCH").is_ok();
    let backend = match gpu::select(BackendChoice::Cuda) {
        Ok(s) => s.backend,
        Err(e) => {
            assert!(!required, "PROVER_REQUIRE_GPU=1 but no CUDA backend: {e}");
            eprintln!("no usable CUDA device ({e}); device-fault test SKIPPED");
            return None;
        }
    };
    if gpu::Emulator::open().is_none() || !planted {
        eprintln!(
            "the device-fault test needs the emulated device with CUDA_EMU_FAIL_LAUNCH set; SKIPPED"
        );
        return None;
    }
    Some(backend)
}

#[test]
fn a_device_fault_mid_proof_is_proved_again_on_the_cpu() {
    let Some(cuda) = planted_emulator() else {
        return;
    };
    let base = option_env!("CARGO_TARGET_TMPDIR")
        .map(std::path::PathBuf::from)
        .filter(|p| p.exists())
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("device-fault-{}", std::process::id()));
    let k = 13;
    params::ensure_dev(&dir.join("params"), k, false).expect("dev params");
    let config = ChunkConfig {
        k,
        tree_depth: 4,
        max_txs: 2,
    };
    let mut state = RollupState::genesis(config.tree_depth, 4, 1000).expect("genesis");
    let data = state
        .apply_chunk(
            config,
            &[Transfer {
                from: 0,
                to: 1,
                amount: 5,
                nonce: 0,
            }],
        )
        .expect("chunk");
    let core_on = |backend: Option<Arc<dyn ComputeBackend>>| {
        let core = ProvingCore::new(CoreConfig {
            engine: EngineKind::Native,
            ..CoreConfig::new(dir.join("params"), dir.join("keys"))
        });
        if let Some(b) = backend {
            core.use_backend(b);
        }
        core
    };
    let on_device = core_on(Some(cuda.clone()));
    let proof = on_device
        .prove_chunk("fault", &data, ChaCha20Rng::seed_from_u64(5))
        .expect("the proof survives the device fault");
    assert_eq!(proof.meta.backend, "cpu", "made again on the CPU backend");
    let fallback = proof
        .meta
        .fallback
        .clone()
        .expect("the fallback is recorded");
    println!("fallback recorded in the proof's meta: {fallback}");
    assert!(
        fallback.contains(&cuda.name().to_string())
            && fallback.contains("fault injected")
            && fallback.contains("after \"lookup"),
        "the fallback names the device, the fault and the step: {fallback}"
    );
    assert_eq!(on_device.device_faults(), 1);
    on_device
        .verify(&proof)
        .expect("the fallback proof verifies");

    // Same randomness as the attempt: the CPU backend alone gives the same bytes.
    let on_cpu = core_on(Some(Arc::new(gpu::CpuBackend::new())));
    let direct = on_cpu
        .prove_chunk("fault", &data, ChaCha20Rng::seed_from_u64(5))
        .expect("cpu proof");
    assert_eq!(direct.proof, proof.proof, "fallback and CPU proofs differ");
    assert_eq!(direct.meta.fallback, None);

    // The device's context is now faulted (as after a real kernel fault): the next proof falls
    // back too, and nothing is lost.
    let again = on_device
        .prove_chunk("again", &data, ChaCha20Rng::seed_from_u64(6))
        .expect("the next proof survives too");
    assert_eq!(again.meta.backend, "cpu");
    assert_eq!(on_device.device_faults(), 2);
    on_device.verify(&again).expect("verifies");
    let _ = std::fs::remove_dir_all(&dir);
}
