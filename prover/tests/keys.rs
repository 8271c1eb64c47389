//! The key cache: a second core loads the keys from disk; a torn or corrupt entry is regenerated,
//! never parsed into a panic; the cached keys prove and verify.

mod common;

use common::{genesis, rng, transfer, SMALL};
use prover::{CoreConfig, ProvingCore};

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
