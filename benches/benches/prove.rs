//! `prove/{circuit}/{engine}/{backend}/k{k}`: one chunk proof with the reference engine on the CPU.
//! Keys are generated once before measuring.

use criterion::{criterion_group, criterion_main, Criterion};
use prover::rollup::RollupState;
use prover::wire::{ChunkConfig, Transfer};
use prover::{CoreConfig, ProvingCore};
use rand::SeedableRng;

fn prove_chunk(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let params_dir = dir.path().join("params");
    let k: u32 = std::env::var("BENCH_CHUNK_K")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(13);
    let config = ChunkConfig {
        k,
        tree_depth: 4,
        max_txs: 2,
    };
    params::ensure_dev(&params_dir, k, false).expect("dev params");
    let core = ProvingCore::new(CoreConfig {
        params_dir,
        keys_dir: dir.path().join("keys"),
    });
    let mut state = RollupState::genesis(config.tree_depth, 4, 1000).expect("genesis");
    let data = state
        .apply_chunk(
            config,
            &[
                Transfer {
                    from: 0,
                    to: 1,
                    amount: 5,
                    nonce: 0,
                },
                Transfer {
                    from: 1,
                    to: 2,
                    amount: 7,
                    nonce: 0,
                },
            ],
        )
        .expect("chunk");
    core.chunk_keys(config).expect("keys");
    let mut group = c.benchmark_group("prove");
    group.sample_size(10);
    group.bench_function(format!("chunk/reference/cpu/k{k}"), |b| {
        b.iter(|| {
            core.prove_chunk("bench", &data, rand_chacha::ChaCha20Rng::seed_from_u64(1))
                .expect("prove")
        })
    });
    group.finish();
}

criterion_group!(benches, prove_chunk);
criterion_main!(benches);
