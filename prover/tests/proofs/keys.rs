//! The key cache: a second core loads the keys from disk; a torn or corrupt entry is regenerated,
//! never parsed into a panic; the cached keys prove and verify; verifying a proof never generates
//! keys for a circuit configuration that is neither cached nor in `verify_allow`.

use crate::common;

use std::time::{Duration, Instant};

use common::{genesis, rng, transfer, SMALL};
use prover::circuits::batch;
use prover::wire::{BatchConfig, ChunkConfig, CircuitSpec, FrHex, ProofPayload};
use prover::{CoreConfig, CoreError, ProvingCore};

fn entry_files(keys_dir: &std::path::Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(keys_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(ext))
        .collect();
    v.sort();
    v
}

#[test]
fn keys_are_cached_and_corrupt_entries_regenerated() {
    let dir = tempfile::tempdir().unwrap();
    let params_dir = dir.path().join("params");
    params::ensure_dev(&params_dir, SMALL.k, false).unwrap();
    let config = CoreConfig::new(params_dir, dir.path().join("keys"));

    let first = ProvingCore::new(config.clone()).chunk_keys(SMALL).unwrap();
    let pk_files = entry_files(&config.keys_dir, "pk");
    assert_eq!(pk_files.len(), 1, "one cache entry");
    let pk_mtime = std::fs::metadata(&pk_files[0]).unwrap().modified().unwrap();

    // A fresh core (a restarted process) loads the same keys without regenerating.
    let second = ProvingCore::new(config.clone()).chunk_keys(SMALL).unwrap();
    assert_eq!(second.meta.vk_digest, first.meta.vk_digest);
    assert_eq!(
        std::fs::metadata(&pk_files[0]).unwrap().modified().unwrap(),
        pk_mtime,
        "not rewritten"
    );

    // A truncated key file: regenerated, same verifying key.
    let bytes = std::fs::read(&pk_files[0]).unwrap();
    std::fs::write(&pk_files[0], &bytes[..bytes.len() / 3]).unwrap();
    let core = ProvingCore::new(config.clone());
    let third = core.chunk_keys(SMALL).unwrap();
    assert_eq!(third.meta.vk_digest, first.meta.vk_digest);
    assert_eq!(
        std::fs::read(&pk_files[0]).unwrap().len(),
        bytes.len(),
        "entry rewritten whole"
    );

    // Garbage metadata: regenerated as well.
    let meta = entry_files(&config.keys_dir, "json");
    std::fs::write(&meta[0], "{ not json").unwrap();
    let fourth = ProvingCore::new(config.clone()).chunk_keys(SMALL).unwrap();
    assert_eq!(fourth.meta.vk_digest, first.meta.vk_digest);

    // The regenerated keys prove, and a proof made with them verifies on another core.
    let data = genesis(SMALL)
        .apply_chunk(SMALL, &[transfer(0, 1, 1, 0)])
        .unwrap();
    let proof = core.prove_chunk("k", &data, rng()).unwrap();
    ProvingCore::new(config)
        .verify(&proof)
        .expect("verifies with cached keys");
}

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A keys directory that cannot take the caches — short of their free-space reserve, or a write
/// that fails — costs the next process a keygen, never this proof: it is made and verifies from
/// memory, and no file or partial file is left behind.
#[test]
fn a_keys_dir_that_cannot_take_the_cache_costs_no_proof_and_keeps_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let params_dir = dir.path().join("params");
    params::ensure_dev(&params_dir, SMALL.k, false).unwrap();
    let data = genesis(SMALL)
        .apply_chunk(SMALL, &[transfer(0, 1, 1, 0)])
        .unwrap();

    // A reserve larger than any disk: neither the key nor the coset file is written.
    let config = CoreConfig {
        keys_disk_reserve_mib: u64::MAX >> 20,
        ..CoreConfig::new(&params_dir, dir.path().join("keys"))
    };
    let core = ProvingCore::new(config.clone());
    let proof = core.prove_chunk("short", &data, rng()).unwrap();
    core.verify(&proof)
        .expect("verifies with the keys in memory");
    assert_eq!(names(&config.keys_dir), Vec::<String>::new());
    // Nothing cached: another process has no keys to verify with (and does not make them).
    let err = ProvingCore::new(config).verify(&proof).unwrap_err();
    assert!(matches!(err, CoreError::UnknownCircuit { .. }), "{err}");

    // A write that fails: the entry's key file name is taken by a directory, so the rename of
    // the written key fails. The temporary key is removed, no metadata makes the entry valid,
    // and the proof is made all the same.
    let config = CoreConfig::new(&params_dir, dir.path().join("keys2"));
    ProvingCore::new(config.clone()).chunk_keys(SMALL).unwrap();
    let pk = entry_files(&config.keys_dir, "pk").remove(0);
    for name in names(&config.keys_dir) {
        std::fs::remove_file(config.keys_dir.join(name)).unwrap();
    }
    std::fs::create_dir_all(pk.join("in the way")).unwrap();
    let core = ProvingCore::new(config.clone());
    let proof = core.prove_chunk("failing", &data, rng()).unwrap();
    core.verify(&proof)
        .expect("verifies with the keys in memory");
    let left = names(&config.keys_dir);
    assert!(
        left.iter()
            .all(|n| !n.contains(".tmp") && !n.ends_with(".json")),
        "{left:?}"
    );
}

/// Two cores of one process (as in the test harness, or a node and an embedded coordinator)
/// generating the same entry at once: both get the keys, and the entry on disk is whole.
#[test]
fn two_cores_generating_the_same_keys_at_once_both_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let params_dir = dir.path().join("params");
    params::ensure_dev(&params_dir, SMALL.k, false).unwrap();
    let config = CoreConfig::new(params_dir, dir.path().join("keys"));
    let barrier = std::sync::Barrier::new(2);
    let digests: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let core = ProvingCore::new(config.clone());
                    barrier.wait();
                    core.chunk_keys(SMALL).map(|k| k.meta.vk_digest.clone())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().expect("concurrent keygen"))
            .collect()
    });
    assert_eq!(digests[0], digests[1]);
    assert!(entry_files(&config.keys_dir, "pk").len() == 1);
    let again = ProvingCore::new(config.clone()).chunk_keys(SMALL).unwrap();
    assert_eq!(again.meta.vk_digest, digests[0]);
    // No temporary files left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&config.keys_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Every file under `dir` with its size (the key cache's state, to see that nothing was written).
fn listing(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut v: Vec<_> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect(),
        Err(_) => vec![],
    };
    v.sort();
    v
}

fn with_spec(proof: &ProofPayload, spec: CircuitSpec) -> ProofPayload {
    ProofPayload {
        spec,
        ..proof.clone()
    }
}

/// Issue 14, item 10: a proof names its own circuit configuration, so an untrusted one must not
/// make the verifier generate (and store) keys. Before, `verify` ran keygen for any `spec`.
#[test]
fn verify_never_generates_keys_for_a_circuit_outside_the_cache_and_allow_list() {
    let dir = tempfile::tempdir().unwrap();
    let params_dir = dir.path().join("params");
    params::ensure_dev(&params_dir, SMALL.k, false).unwrap();
    let config = CoreConfig::new(&params_dir, dir.path().join("keys"));
    let data = genesis(SMALL)
        .apply_chunk(SMALL, &[transfer(0, 1, 1, 0)])
        .unwrap();
    let proof = ProvingCore::new(config.clone())
        .prove_chunk("v", &data, rng())
        .unwrap();
    let cached = listing(&config.keys_dir);
    // One entry: its metadata, its key and the native engine's coset file.
    assert_eq!(cached.len(), 3, "one entry: {cached:?}");

    // A restarted verifier: the proof's own circuit is in the key cache on disk, and verifies.
    let core = ProvingCore::new(config.clone());
    core.verify(&proof).expect("verifies with the cached keys");

    // The same proof claiming other circuits: refused without keygen, quickly, nothing written.
    let other_depth = ChunkConfig {
        tree_depth: SMALL.tree_depth + 1,
        ..SMALL
    };
    // k = 14 has no SRS here: the refusal must not need one (nor read one).
    let other_k = ChunkConfig { k: 14, ..SMALL };
    for config_of_proof in [other_depth, other_k] {
        let spec = CircuitSpec::Chunk {
            config: config_of_proof,
        };
        let started = Instant::now();
        let err = core.verify(&with_spec(&proof, spec.clone())).unwrap_err();
        let took = started.elapsed();
        eprintln!("unknown chunk circuit {config_of_proof:?} refused in {took:?}: {err}");
        assert!(
            matches!(&err, CoreError::UnknownCircuit { spec: s, .. } if **s == spec),
            "{err}"
        );
        assert!(!err.is_rejection(), "could not verify, not invalid");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("\"tree_depth\":{}", config_of_proof.tree_depth))
                && msg.contains(&format!("\"k\":{}", config_of_proof.k))
                && msg.contains("verify_allow")
                && msg.contains("--allow-keygen"),
            "{msg}"
        );
        assert!(took < Duration::from_secs(1), "refused in {took:?}");
        assert_eq!(listing(&config.keys_dir), cached, "key cache untouched");
    }

    // A batch spec with no cached keys (and no SRS for its k): refused the same way.
    let batch_spec = CircuitSpec::Batch {
        config: BatchConfig {
            k: 16,
            num_chunks: 1,
            chunk: SMALL,
        },
    };
    let batch_proof = ProofPayload {
        spec: batch_spec,
        instances: vec![FrHex(halo2curves::bn256::Fr::from(0u64)); batch::NUM_INSTANCES],
        ..proof.clone()
    };
    let err = core.verify(&batch_proof).unwrap_err();
    assert!(matches!(err, CoreError::UnknownCircuit { .. }), "{err}");
    assert_eq!(listing(&config.keys_dir), cached, "key cache untouched");

    // Out of the supported range: refused before any lookup, as an invalid proof.
    for absurd in [
        ChunkConfig { k: 40, ..SMALL },
        ChunkConfig {
            tree_depth: 1 << 40,
            ..SMALL
        },
        ChunkConfig {
            max_txs: usize::MAX,
            ..SMALL
        },
    ] {
        let err = core
            .verify(&with_spec(&proof, CircuitSpec::Chunk { config: absurd }))
            .unwrap_err();
        assert!(matches!(err, CoreError::Chunk(_)), "{absurd:?}: {err}");
        assert!(err.is_rejection());
    }
    let err = core
        .verify(&ProofPayload {
            spec: CircuitSpec::Batch {
                config: BatchConfig {
                    k: 16,
                    num_chunks: 1000,
                    chunk: SMALL,
                },
            },
            ..batch_proof.clone()
        })
        .unwrap_err();
    assert!(matches!(err, CoreError::Batch(_)), "{err}");
    assert_eq!(listing(&config.keys_dir), cached, "key cache untouched");

    // With the configuration in `verify_allow`, verification proceeds: the keys are generated and
    // cached, and the proof (made for another circuit) is then refused on its verifying key.
    let allowed_spec = CircuitSpec::Chunk {
        config: other_depth,
    };
    let allowing = ProvingCore::new(CoreConfig {
        verify_allow: vec![allowed_spec.clone()],
        ..config.clone()
    });
    let started = Instant::now();
    let err = allowing
        .verify(&with_spec(&proof, allowed_spec.clone()))
        .unwrap_err();
    eprintln!(
        "allow-listed circuit: keygen and refusal in {:?}: {err}",
        started.elapsed()
    );
    assert!(matches!(err, CoreError::VkMismatch { .. }), "{err}");
    // Its metadata and key (verification makes no coset file).
    assert_eq!(
        listing(&config.keys_dir).len(),
        5,
        "the allowed entry added"
    );
    // Its keys are now cached: a core without the allow-list looks them up (no longer unknown).
    let err = core.verify(&with_spec(&proof, allowed_spec)).unwrap_err();
    assert!(matches!(err, CoreError::VkMismatch { .. }), "{err}");
    assert_eq!(listing(&config.keys_dir).len(), 5);
}
