//! The store under concurrent writers, without HTTP: `T` threads, each in a loop asking for a
//! task (`Store::assign`, a fresh prover key every time) and reporting it failed
//! (`Store::record_failure`, `session_attempts` 1: the task is finished), for 5 seconds, on redb
//! in a temporary directory. Prints the rounds per second and the mean time of each call.
//!
//! ```text
//! cargo run --release --workspace --example store_threads -- 1 4 16 64
//! ```
//!
//! Every call is one scheduler decision that must be on disk before it returns: on redb,
//! concurrent calls share a write transaction and its durable commit (see `store/batch.rs`), so
//! this is the cost of the decisions plus the commits, and how it scales with callers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coordinator::store::{AssignOutcome, Policy, ProverIdentity, Store};
use prover_core::rollup::RollupState;
use prover_core::wire::{ChunkConfig, Transfer};

const CONFIG: ChunkConfig = ChunkConfig {
    k: 13,
    tree_depth: 4,
    max_txs: 2,
};
const RUN: Duration = Duration::from_secs(5);
/// Pending tasks at the start: more than any run here takes.
const TASKS: u64 = 20_000;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Rounds, seconds in `assign`, seconds in `record_failure`.
fn rounds(
    store: &Store,
    policy: &Policy,
    thread: usize,
    end: Instant,
) -> Result<(u64, f64, f64), Error> {
    let (mut n, mut assign, mut fail) = (0u64, 0.0, 0.0);
    while Instant::now() < end {
        let who = ProverIdentity {
            public_key: format!("t{thread}-{n}"),
            prover_name: "threads".into(),
            prover_types: vec![1],
        };
        let started = Instant::now();
        let (outcome, _) = store.assign(&who, &[1], policy, 3)?;
        assign += started.elapsed().as_secs_f64();
        let AssignOutcome::Task { task, .. } = outcome else {
            return Err(format!("thread {thread}: no task: {outcome:?}").into());
        };
        let started = Instant::now();
        store
            .record_failure(
                &who.public_key,
                &task.uuid,
                &task.task_id,
                1,
                "threads",
                false,
                policy,
                4,
            )?
            .map_err(|e| format!("{e:?}"))?;
        fail += started.elapsed().as_secs_f64();
        n += 1;
    }
    Ok((n, assign, fail))
}

fn main() -> Result<(), Error> {
    let threads: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let threads = if threads.is_empty() {
        vec![1, 4, 16, 64]
    } else {
        threads
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
    let mut state = RollupState::genesis(CONFIG.tree_depth, 4, 1_000_000)?;
    let mut chunks = Vec::new();
    for nonce in 0..TASKS {
        let t = Transfer {
            from: 0,
            to: 1,
            amount: 1,
            nonce,
        };
        chunks.push(state.apply_chunk(CONFIG, &[t])?);
    }
    let accounts: Vec<_> = state.accounts().map(|(i, a)| (*i, *a)).collect();
    for t in threads {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(Store::open(&dir.path().join("c.redb"))?);
        store.enqueue_chunks(&chunks, &accounts, 0)?;
        let end = Instant::now() + RUN;
        let handles: Vec<_> = (0..t)
            .map(|i| {
                let (store, policy) = (store.clone(), policy);
                std::thread::spawn(move || rounds(&store, &policy, i, end))
            })
            .collect();
        let (mut n, mut assign, mut fail) = (0, 0.0, 0.0);
        for h in handles {
            let (a, b, c) = h.join().map_err(|_| "a thread panicked")??;
            n += a;
            assign += b;
            fail += c;
        }
        println!(
            "{t} thread(s): {:.0} rounds/s; assign mean {:.2} ms, record_failure mean {:.2} ms",
            n as f64 / RUN.as_secs_f64(),
            assign / n.max(1) as f64 * 1e3,
            fail / n.max(1) as f64 * 1e3
        );
    }
    Ok(())
}
