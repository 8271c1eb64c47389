//! `prove/chunk/{engine}/{backend}/k{k}`: one chunk proof with the reference engine (CPU), the
//! native engine on the CPU backend, and the native engine on CUDA when a device is usable. Same
//! chunk and fixed seed for all; keys are generated once before measuring. After the group, one
//! line gives the ratio native/reference of the mean proving times, measured over every iteration
//! criterion ran (warm-up included). `BENCH_CHUNK_K` sets k (default 13).

/// The allocator of the `prover` binary, so that both engines are measured as they run there.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::cell::Cell;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use prover::config::{BackendChoice, EngineChoice};
use prover::rollup::RollupState;
use prover::wire::{ChunkConfig, ChunkTaskData, Transfer};
use prover::{CoreConfig, ProvingCore};
use rand::SeedableRng;

/// Total time and iterations of one bench, for the mean.
#[derive(Default)]
struct Tally {
    total: Cell<Duration>,
    iters: Cell<u64>,
}

impl Tally {
    fn mean_secs(&self) -> Option<f64> {
        let n = self.iters.get();
        (n > 0).then(|| self.total.get().as_secs_f64() / n as f64)
    }
}

fn chunk_data(config: ChunkConfig) -> ChunkTaskData {
    let mut state = RollupState::genesis(config.tree_depth, 4, 1000).expect("genesis");
    let transfers = [
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
    ];
    state.apply_chunk(config, &transfers).expect("chunk")
}

fn prove_chunk(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let params_dir = dir.path().join("params");
    let keys_dir = dir.path().join("keys");
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
    let data = chunk_data(config);
    let core = |engine, backend| {
        ProvingCore::new(CoreConfig {
            engine,
            backend,
            ..CoreConfig::new(&params_dir, &keys_dir)
        })
    };
    let mut runs = vec![
        (core(EngineChoice::Reference, BackendChoice::Cpu), "cpu"),
        (core(EngineChoice::Native, BackendChoice::Cpu), "cpu"),
    ];
    let cuda = core(EngineChoice::Native, BackendChoice::Cuda);
    match cuda.backend() {
        Ok(_) => runs.push((cuda, "cuda")),
        Err(e) => eprintln!("prove/chunk/native/cuda/k{k}: skipped ({e})"),
    }
    for (core, _) in &runs {
        core.chunk_keys(config).expect("keys");
    }

    let mut group = c.benchmark_group("prove");
    group.sample_size(10);
    let mut tallies = vec![];
    for (core, backend) in &runs {
        let engine = core.config().engine;
        let tally = Tally::default();
        group.bench_function(format!("chunk/{engine}/{backend}/k{k}"), |b| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                for _ in 0..iters {
                    core.prove_chunk("bench", &data, rand_chacha::ChaCha20Rng::seed_from_u64(1))
                        .expect("prove");
                }
                let elapsed = started.elapsed();
                tally.total.set(tally.total.get() + elapsed);
                tally.iters.set(tally.iters.get() + iters);
                elapsed
            })
        });
        tallies.push((engine, *backend, tally));
    }
    group.finish();

    let mean = |engine, backend| {
        tallies
            .iter()
            .find(|(e, b, _)| *e == engine && *b == backend)
            .and_then(|(_, _, t)| t.mean_secs())
    };
    if let (Some(reference), Some(native)) = (
        mean(EngineChoice::Reference, "cpu"),
        mean(EngineChoice::Native, "cpu"),
    ) {
        println!(
            "prove/chunk/k{k}: native/reference mean time ratio (cpu) = {:.3} \
             (native {:.3} s, reference {:.3} s per proof)",
            native / reference,
            native,
            reference
        );
    }
    if let (Some(reference), Some(cuda)) = (
        mean(EngineChoice::Reference, "cpu"),
        mean(EngineChoice::Native, "cuda"),
    ) {
        println!(
            "prove/chunk/k{k}: native(cuda)/reference mean time ratio = {:.3} \
             (native cuda {:.3} s per proof)",
            cuda / reference,
            cuda
        );
    }
}

criterion_group!(benches, prove_chunk);
criterion_main!(benches);
