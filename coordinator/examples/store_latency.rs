//! The store's cost per request against the size of its history: `get_task` (`Store::assign`) and
//! the `/metrics` read (`Store::summary`) with `N` finished tasks in the store and a few pending.
//!
//! `cargo run --release --example store_latency -- [N...]` (default: 100 10000). The history is
//! made through the store's own API: N chunk tasks, each assigned once and failed once
//! (`session_attempts` 1), so they end `failed`, as finished as a verified task for the scheduler.

use std::time::Instant;

use coordinator::store::{AssignOutcome, Policy, ProverIdentity, Store};
use prover_core::rollup::RollupState;
use prover_core::wire::{ChunkConfig, Transfer};

const CONFIG: ChunkConfig = ChunkConfig {
    k: 13,
    tree_depth: 4,
    max_txs: 2,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let sizes = if sizes.is_empty() {
        vec![100, 10_000]
    } else {
        sizes
    };
    let policy = Policy {
        chunk_timeout_ms: 3_600_000,
        batch_timeout_ms: 3_600_000,
        bundle_timeout_ms: 3_600_000,
        session_attempts: 1,
        max_invalid_proofs: 1_000_000,
        prover_active_ms: 60_000,
        batch: None,
        bundle: None,
        settle: false,
    };
    for n in sizes {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&dir.path().join("c.redb"))?;
        let mut state = RollupState::genesis(CONFIG.tree_depth, 4, 1_000_000)?;
        let mut chunks = Vec::with_capacity(n + 64);
        for i in 0..(n + 64) as u64 {
            let t = Transfer {
                from: 0,
                to: 1,
                amount: 1,
                nonce: i,
            };
            chunks.push(state.apply_chunk(CONFIG, &[t])?);
        }
        let accounts: Vec<_> = state.accounts().map(|(i, a)| (*i, *a)).collect();
        let made = Instant::now();
        store.enqueue_chunks(&chunks[..n], &accounts, 0)?;
        // Finish the history: each task assigned and failed once, by rotating provers.
        for i in 0..n {
            let who = ProverIdentity {
                public_key: format!("history-{}", i % 16),
                prover_name: "history".into(),
                prover_types: vec![1],
            };
            let (outcome, _) = store.assign(&who, &[1], &policy, 1)?;
            let AssignOutcome::Task { task, .. } = outcome else {
                return Err(format!("no task for history item {i}: {outcome:?}").into());
            };
            store
                .record_failure(
                    &who.public_key,
                    &task.uuid,
                    &task.task_id,
                    1,
                    "history",
                    false,
                    &policy,
                    1,
                )?
                .map_err(|e| format!("{e:?}"))?;
        }
        let history = made.elapsed();
        // 64 pending tasks; each measured get_task is answered with one (a fresh prover each
        // time, so none is re-sent an outstanding one).
        store.enqueue_chunks(&chunks[n..], &accounts, 2)?;
        let mut assign = Vec::new();
        for i in 0..64 {
            let who = ProverIdentity {
                public_key: format!("measured-{i}"),
                prover_name: "measured".into(),
                prover_types: vec![1],
            };
            let started = Instant::now();
            let (outcome, _) = store.assign(&who, &[1], &policy, 3)?;
            assign.push(started.elapsed().as_secs_f64() * 1e3);
            if !matches!(outcome, AssignOutcome::Task { .. }) {
                return Err(format!("measured get_task {i}: {outcome:?}").into());
            }
        }
        let mut summary = Vec::new();
        for _ in 0..64 {
            let started = Instant::now();
            let s = store.summary()?;
            summary.push(started.elapsed().as_secs_f64() * 1e3);
            std::hint::black_box(s);
        }
        println!(
            "{n} finished tasks (made in {:.1} s): get_task p50 {:.3} ms p99 {:.3} ms; /metrics read p50 {:.3} ms p99 {:.3} ms",
            history.as_secs_f64(),
            pct(&mut assign, 0.5),
            pct(&mut assign, 0.99),
            pct(&mut summary, 0.5),
            pct(&mut summary, 0.99),
        );
    }
    Ok(())
}

fn pct(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}
