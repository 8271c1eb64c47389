//! The proving core with each engine: a chunk proved by the native engine on the CPU backend and
//! by the reference engine verifies, `meta` records what proved it, a fixed seed gives
//! byte-identical native proofs, and verification never selects a compute backend.

use crate::common;

use common::{env, genesis, transfer, SMALL};
use prover::config::{BackendChoice, EngineChoice};
use prover::{CoreConfig, CoreError, ProvingCore};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const KS: &[u32] = &[13];

/// A core over the shared test environment's parameters and key cache.
fn core(engine: EngineChoice, backend: BackendChoice) -> ProvingCore {
    let env = env(KS);
    ProvingCore::new(CoreConfig {
        engine,
        backend,
        ..CoreConfig::new(env.params_dir(), env.dir.path().join("keys"))
    })
}

fn data() -> prover::wire::ChunkTaskData {
    genesis(SMALL)
        .apply_chunk(SMALL, &[transfer(0, 1, 300, 0), transfer(1, 2, 1200, 0)])
        .expect("valid chunk")
}

#[test]
fn native_on_the_cpu_verifies_records_its_engine_and_is_deterministic_for_a_seed() {
    let native = core(EngineChoice::Native, BackendChoice::Cpu);
    let data = data();
    let a = native
        .prove_chunk("n0", &data, ChaCha20Rng::seed_from_u64(7))
        .expect("native proof");
    assert_eq!(a.meta.engine, "native");
    assert_eq!(a.meta.backend, "cpu");
    let verified = native.verify(&a).expect("native proof verifies");
    assert_eq!(verified.statement[0], data.old_root);
    assert_eq!(verified.statement[1], data.new_root);

    let b = native
        .prove_chunk("n1", &data, ChaCha20Rng::seed_from_u64(7))
        .expect("second native proof");
    assert_eq!(a.proof, b.proof, "same seed, same proof bytes");
    let c = native
        .prove_chunk("n2", &data, ChaCha20Rng::seed_from_u64(8))
        .expect("third native proof");
    assert_ne!(a.proof, c.proof, "another seed, other blinding");
    native.verify(&c).expect("proof of another seed verifies");

    // The backend was selected once and is the one that proved.
    assert_eq!(native.backend().unwrap().name(), gpu::BackendName::Cpu);
    // The SRS bases are built once per k and reused.
    let bases = native.bases(SMALL.k).unwrap();
    assert_eq!(bases.g.id(), native.bases(SMALL.k).unwrap().g.id());

    // Verification does not depend on the engine: the reference core accepts the native proof.
    let reference = core(EngineChoice::Reference, BackendChoice::Auto);
    reference
        .verify(&a)
        .expect("native proof verifies on a reference core");
}

#[test]
fn the_reference_engine_still_proves_and_its_proof_verifies_on_a_native_core() {
    let reference = core(EngineChoice::Reference, BackendChoice::Cpu);
    let data = data();
    let p = reference
        .prove_chunk("r0", &data, ChaCha20Rng::seed_from_u64(7))
        .expect("reference proof");
    assert_eq!(p.meta.engine, "reference");
    assert_eq!(p.meta.backend, "cpu");
    reference.verify(&p).expect("reference proof verifies");
    core(EngineChoice::Native, BackendChoice::Cpu)
        .verify(&p)
        .expect("reference proof verifies on a native core");
}

#[test]
fn verification_never_selects_a_backend_and_cuda_without_a_driver_fails_clearly() {
    let driver = gpu::cuda_driver_probe();
    let cuda = core(EngineChoice::Native, BackendChoice::Cuda);
    // A proof made elsewhere verifies on a core configured for CUDA: nothing is selected.
    let p = core(EngineChoice::Reference, BackendChoice::Cpu)
        .prove_chunk("v0", &data(), ChaCha20Rng::seed_from_u64(1))
        .expect("reference proof");
    cuda.verify(&p).expect("verifies without a backend");
    if let gpu::DriverProbe::Found(path) = driver {
        eprintln!(
            "CUDA driver present at {} — skipping the no-driver refusal",
            path.display()
        );
        return;
    }
    let err = cuda.backend().err().expect("no CUDA here");
    assert!(matches!(err, CoreError::Backend(_)), "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with("compute backend cuda: "), "{msg}");
    assert!(
        msg.contains("CUDA driver library libcuda.so.1 not found"),
        "{msg}"
    );
    // Proving with it fails with the same typed error, before any work.
    let err = cuda
        .prove_chunk("v1", &data(), ChaCha20Rng::seed_from_u64(1))
        .expect_err("cuda proving refused");
    assert!(matches!(err, CoreError::Backend(_)), "{err}");
}

#[test]
fn engine_and_backend_parse_and_core_config_json_stays_compatible() {
    assert_eq!(
        "native".parse::<EngineChoice>().unwrap(),
        EngineChoice::Native
    );
    assert_eq!(
        " Reference ".parse::<EngineChoice>().unwrap(),
        EngineChoice::Reference
    );
    let err = "fast".parse::<EngineChoice>().unwrap_err().to_string();
    assert!(
        err.contains("\"fast\"") && err.contains("reference or native"),
        "{err}"
    );
    assert_eq!(EngineChoice::default(), EngineChoice::Native);
    assert_eq!(
        serde_json::to_string(&EngineChoice::Reference).unwrap(),
        "\"reference\""
    );
    assert_eq!(BackendChoice::Cuda.name(), "cuda");
    assert_eq!(
        serde_json::to_string(&BackendChoice::Auto).unwrap(),
        "\"auto\""
    );

    // The C ABI's JSON: the old shape still parses, with the defaults.
    let old: CoreConfig = serde_json::from_str(r#"{"params_dir": "p", "keys_dir": "k"}"#).unwrap();
    assert_eq!(old, CoreConfig::new("p", "k"));
    assert_eq!(old.engine, EngineChoice::Native);
    assert_eq!(old.backend, BackendChoice::Auto);
    let new: CoreConfig = serde_json::from_str(
        r#"{"params_dir": "p", "keys_dir": "k", "engine": "reference", "backend": "cpu"}"#,
    )
    .unwrap();
    assert_eq!(new.engine, EngineChoice::Reference);
    assert_eq!(new.backend, BackendChoice::Cpu);
    for bad in [
        r#"{"params_dir": "p", "keys_dir": "k", "engine": "bogus"}"#,
        r#"{"params_dir": "p", "keys_dir": "k", "backend": "opencl"}"#,
        r#"{"params_dir": "p", "keys_dir": "k", "seed": 1}"#,
    ] {
        assert!(serde_json::from_str::<CoreConfig>(bad).is_err(), "{bad}");
    }
}
