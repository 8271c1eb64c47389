//! The store's cost per request against what piles up in it: `get_task` (`Store::assign`) and
//! the `/metrics` read (`Store::summary`) with `N` finished tasks in the store and a few pending;
//! and the `get_task` of a prover that failed the only pending task (the failed-prover rule looks
//! for another prover that could take it) with `Q` keys that asked once, long ago, and went quiet.
//!
//! `cargo run --release --example store_latency -- [N...] [--quiet-provers Q...] [--postgres URL]`
//! (default: N = 100 10000). The history is made through the store's own API: N chunk tasks,
//! each assigned once and failed once (`session_attempts` 1), so they end `failed`, as finished as
//! a verified task for the scheduler. The quiet keys are written as their get_task writes them.
//! On redb in a temporary directory, or in a fresh database on the PostgreSQL server `URL`.

use std::time::Instant;

use clap::Parser;
use coordinator::store::{AssignOutcome, Policy, ProverIdentity, ProverSeen, Store};
use prover_core::rollup::{Account, RollupState};
use prover_core::wire::{ChunkConfig, ChunkTaskData, Transfer};

const CONFIG: ChunkConfig = ChunkConfig {
    k: 13,
    tree_depth: 4,
    max_txs: 2,
};

#[derive(Parser)]
struct Args {
    /// Finished tasks in the store (one run each).
    sizes: Vec<usize>,
    /// Quiet keys in the store for the failed-prover measurement (one run each).
    #[arg(long, num_args = 1..)]
    quiet_provers: Vec<usize>,
    /// PostgreSQL server URL: each run makes a fresh database there. redb in a temp dir without.
    #[arg(long)]
    postgres: Option<String>,
}

type Error = Box<dyn std::error::Error>;

/// A fresh store (and the directory that holds it, on redb).
fn fresh(postgres: Option<&str>) -> Result<(Store, tempfile::TempDir), Error> {
    let dir = tempfile::tempdir()?;
    let store = match postgres {
        Some(server) => {
            Store::open_postgres(&coordinator::store::pg::create_database(server, "latency")?)?
        }
        None => Store::open(&dir.path().join("c.redb"))?,
    };
    Ok((store, dir))
}

/// Chunk tasks and the rollup's accounts after them.
type Chain = (Vec<ChunkTaskData>, Vec<(u64, Account)>);

/// `n` chained chunks and the rollup's accounts after them.
fn chunks(n: usize) -> Result<Chain, Error> {
    let mut state = RollupState::genesis(CONFIG.tree_depth, 4, 1_000_000)?;
    let mut chunks = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let t = Transfer {
            from: 0,
            to: 1,
            amount: 1,
            nonce: i,
        };
        chunks.push(state.apply_chunk(CONFIG, &[t])?);
    }
    let accounts = state.accounts().map(|(i, a)| (*i, *a)).collect();
    Ok((chunks, accounts))
}

fn policy() -> Policy {
    Policy {
        chunk_timeout_ms: 3_600_000,
        batch_timeout_ms: 3_600_000,
        bundle_timeout_ms: 3_600_000,
        session_attempts: 1,
        max_invalid_proofs: 1_000_000,
        prover_active_ms: 60_000,
        batch: None,
        bundle: None,
        settle: false,
    }
}

fn main() -> Result<(), Error> {
    let args = Args::parse();
    let sizes = if args.sizes.is_empty() && args.quiet_provers.is_empty() {
        vec![100, 10_000]
    } else {
        args.sizes
    };
    let backend = if args.postgres.is_some() {
        "PostgreSQL"
    } else {
        "redb"
    };
    for n in sizes {
        history(n, args.postgres.as_deref(), backend)?;
    }
    for q in args.quiet_provers {
        quiet(q, args.postgres.as_deref(), backend)?;
    }
    Ok(())
}

/// get_task and the /metrics read with `n` finished tasks.
fn history(n: usize, postgres: Option<&str>, backend: &str) -> Result<(), Error> {
    let policy = policy();
    let (store, _dir) = fresh(postgres)?;
    let (chunks, accounts) = chunks(n + 64)?;
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
        "{backend}: {n} finished tasks (made in {:.1} s): get_task p50 {:.3} ms p99 {:.3} ms; /metrics read p50 {:.3} ms p99 {:.3} ms",
        history.as_secs_f64(),
        pct(&mut assign, 0.5),
        pct(&mut assign, 0.99),
        pct(&mut summary, 0.5),
        pct(&mut summary, 0.99),
    );
    Ok(())
}

/// The get_task of a proven prover that failed the only pending task, with `q` quiet keys in
/// the store (seen at 0, `prover_active_ms` before the measurement): none of them can take the
/// task, so the failed-prover rule finds nobody else and hands it back, each time.
fn quiet(q: usize, postgres: Option<&str>, backend: &str) -> Result<(), Error> {
    let policy = Policy {
        session_attempts: 1_000_000,
        ..self::policy()
    };
    let (store, _dir) = fresh(postgres)?;
    let (chunks, accounts) = chunks(1)?;
    store.enqueue_chunks(&chunks, &accounts, 0)?;
    let made = Instant::now();
    for start in (0..q).step_by(1000) {
        store.transaction(|tx| {
            for i in start..q.min(start + 1000) {
                let seen = ProverSeen {
                    name: "quiet".into(),
                    prover_types: vec![1],
                    last_seen_ms: 0,
                };
                tx.seen(&format!("quiet-{i:06}"), &seen)?;
            }
            Ok(())
        })?;
    }
    let made = made.elapsed();
    let who = ProverIdentity {
        public_key: "measured".into(),
        prover_name: "measured".into(),
        prover_types: vec![1],
    };
    store.transaction(|tx| tx.add_proven(&who.public_key))?;
    let now = policy.prover_active_ms + 1;
    let mut assign = Vec::new();
    for i in 0..65 {
        let started = Instant::now();
        let (outcome, _) = store.assign(&who, &[1], &policy, now + i)?;
        let took = started.elapsed().as_secs_f64() * 1e3;
        let AssignOutcome::Task { task, .. } = outcome else {
            return Err(format!("measured get_task {i}: {outcome:?}").into());
        };
        // The first one is a plain assignment (nobody failed the task yet).
        if i > 0 {
            assign.push(took);
        }
        store
            .record_failure(
                &who.public_key,
                &task.uuid,
                &task.task_id,
                1,
                "measured",
                false,
                &policy,
                now + i,
            )?
            .map_err(|e| format!("{e:?}"))?;
    }
    println!(
        "{backend}: {q} quiet keys (written in {:.1} s): a failed prover's get_task p50 {:.3} ms p99 {:.3} ms",
        made.as_secs_f64(),
        pct(&mut assign, 0.5),
        pct(&mut assign, 0.99),
    );
    Ok(())
}

fn pct(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}
