//! The native engine's coset cache on disk (CPU backend): the first proof with a key writes
//! `{entry}.coset` next to the key, a later process reads it instead of computing it again, and a
//! damaged or foreign file is refused, computed again and rewritten. The proofs stay
//! byte-identical throughout.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prover::wire::ChunkTaskData;
use prover::{CoreConfig, ProvingCore};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn coset_file(keys: &Path) -> Option<PathBuf> {
    std::fs::read_dir(keys)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "coset"))
}

fn prove(params: &Path, keys: &Path, data: &ChunkTaskData) -> Vec<u8> {
    // A new core each time: nothing is kept in memory between "processes".
    let core = ProvingCore::new(CoreConfig::new(params, keys));
    core.use_backend(Arc::new(gpu::CpuBackend::new()));
    core.prove_chunk("c", data, ChaCha20Rng::seed_from_u64(9))
        .expect("proof")
        .proof
        .0
}

#[test]
fn the_coset_cache_is_written_once_read_later_and_rebuilt_when_damaged() {
    let env = common::env(&[common::SMALL.k]);
    let keys = tempfile::tempdir().unwrap();
    let mut state = common::genesis(common::SMALL);
    let data = state
        .apply_chunk(common::SMALL, &[common::transfer(0, 1, 5, 0)])
        .unwrap();

    let first = prove(&env.params_dir(), keys.path(), &data);
    let file = coset_file(keys.path()).expect("the first proof writes the coset file");
    let written = std::fs::read(&file).unwrap();
    let modified = std::fs::metadata(&file).unwrap().modified().unwrap();

    // Read, not rewritten: same bytes, same modification time.
    let second = prove(&env.params_dir(), keys.path(), &data);
    assert_eq!(first, second, "proof from the file's columns differs");
    assert_eq!(std::fs::read(&file).unwrap(), written);
    assert_eq!(
        std::fs::metadata(&file).unwrap().modified().unwrap(),
        modified
    );

    // One flipped byte in the values: refused by the hash, computed again, rewritten whole.
    let mut damaged = written.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x40;
    std::fs::write(&file, &damaged).unwrap();
    let third = prove(&env.params_dir(), keys.path(), &data);
    assert_eq!(first, third);
    assert_eq!(
        std::fs::read(&file).unwrap(),
        written,
        "rewritten after the damage"
    );

    // Cut short: refused by its length, rewritten.
    std::fs::write(&file, &written[..written.len() - 100]).unwrap();
    assert_eq!(first, prove(&env.params_dir(), keys.path(), &data));
    assert_eq!(std::fs::read(&file).unwrap(), written);

    // Made for another key (the recorded SHA-256 differs): refused, rewritten.
    let mut foreign = written.clone();
    foreign[8] = if foreign[8] == b'0' { b'1' } else { b'0' };
    std::fs::write(&file, &foreign).unwrap();
    assert_eq!(first, prove(&env.params_dir(), keys.path(), &data));
    assert_eq!(std::fs::read(&file).unwrap(), written);
}
