//! Many provers at once through several store handles: on PostgreSQL (when
//! `COORDINATOR_TEST_POSTGRES` names a server) each thread is its own replica with its own
//! connection pool on one database; on redb the threads share the one handle a file allows.
//! Every task must be handed out once, verified once, and a proof submitted twice at the same
//! moment must be accepted once.

use crate::common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use coordinator::store::{AssignOutcome, Policy, ProverIdentity, Store, SubmitError};
use coordinator::TaskState;
use prover_core::rollup::RollupState;
use prover_core::wire::{
    Base64Bytes, BatchConfig, ChunkConfig, CircuitSpec, ProofMeta, ProofPayload, Task, Transfer,
};

const SMALL: ChunkConfig = ChunkConfig {
    k: 13,
    tree_depth: 4,
    max_txs: 2,
};

const REPLICAS: usize = 4;
const PROVERS_PER_REPLICA: usize = 6;
const TASKS: usize = 120;

fn policy() -> Policy {
    Policy {
        // Long: no assignment times out, so each task must be handed out exactly once.
        chunk_timeout_ms: 3_600_000,
        batch_timeout_ms: 3_600_000,
        bundle_timeout_ms: 3_600_000,
        session_attempts: 3,
        max_invalid_proofs: 3,
        prover_active_ms: 10_000,
        batch: Some(BatchConfig {
            k: 16,
            num_chunks: 2,
            chunk: SMALL,
        }),
        bundle: None,
        settle: false,
    }
}

fn proof_for(task: &Task) -> ProofPayload {
    ProofPayload {
        version: 1,
        task_id: task.task_id.clone(),
        spec: CircuitSpec::Chunk { config: SMALL },
        vk_digest: "vk".into(),
        instances: vec![],
        proof: Base64Bytes(vec![1, 2, 3]),
        meta: ProofMeta {
            engine: "reference".into(),
            backend: "cpu".into(),
            prove_ms: 1,
            fallback: None,
        },
    }
}

/// The stores under test: `REPLICAS` handles on one database, or one redb handle shared.
fn stores(dir: &std::path::Path) -> (Vec<Arc<Store>>, &'static str) {
    match common::fresh_database() {
        Some(url) => (
            (0..REPLICAS)
                .map(|_| Arc::new(Store::open_postgres(&url).expect("open PostgreSQL store")))
                .collect(),
            "postgres",
        ),
        None => {
            let s = Arc::new(Store::open(&dir.join("c.redb")).expect("open redb store"));
            (vec![s; REPLICAS], "redb")
        }
    }
}

fn enqueue(store: &Store, n: usize) {
    let mut state = RollupState::genesis(SMALL.tree_depth, 4, 1_000_000).expect("genesis");
    let chunks: Vec<_> = (0..n as u64)
        .map(|i| {
            state
                .apply_chunk(
                    SMALL,
                    &[Transfer {
                        from: 0,
                        to: 1,
                        amount: 1,
                        nonce: i,
                    }],
                )
                .expect("chunk")
        })
        .collect();
    store.enqueue_chunks(&chunks, &[], 0).expect("enqueue");
}

#[test]
fn concurrent_provers_on_several_replicas_get_each_task_once_and_verify_it_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (stores, backend) = stores(dir.path());
    enqueue(&stores[0], TASKS);
    let p = policy();
    // task id → times handed out (new, not re-sent); task id → verifications accepted.
    let handed: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
    let verified: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
    let done = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(REPLICAS * PROVERS_PER_REPLICA));
    let started = std::time::Instant::now();
    let mut threads = Vec::new();
    for (r, store) in stores.iter().enumerate() {
        for i in 0..PROVERS_PER_REPLICA {
            let (store, handed, verified, start, done) = (
                store.clone(),
                handed.clone(),
                verified.clone(),
                start.clone(),
                done.clone(),
            );
            threads.push(std::thread::spawn(move || {
                let who = ProverIdentity {
                    public_key: format!("key-{r}-{i}"),
                    prover_name: format!("p{r}-{i}"),
                    // Every other prover also takes batches.
                    prover_types: if i % 2 == 0 { vec![1, 2] } else { vec![1] },
                };
                start.wait();
                let mut now = 1;
                loop {
                    now += 1;
                    let (outcome, _) = store
                        .assign(&who, &who.prover_types, &p, now)
                        .expect("assign");
                    let task = match outcome {
                        AssignOutcome::Task { task, resent } => {
                            assert!(
                                !resent,
                                "{} was re-sent a task it had submitted",
                                who.prover_name
                            );
                            task
                        }
                        AssignOutcome::NoTask => {
                            // Nothing free now; done once everything is verified (batches
                            // appear as chunks are verified), else ask again, as a prover polls.
                            if done.load(Ordering::SeqCst) == TASKS + TASKS / 2 {
                                return;
                            }
                            std::thread::sleep(std::time::Duration::from_millis(2));
                            continue;
                        }
                        other => panic!("unexpected {other:?}"),
                    };
                    *handed
                        .lock()
                        .expect("lock")
                        .entry(task.task_id.clone())
                        .or_default() += 1;
                    let r = store
                        .record_verified(
                            &who.public_key,
                            &task.uuid,
                            &task.task_id,
                            task.task_type,
                            &proof_for(&task),
                            1,
                            &p,
                            now,
                        )
                        .expect("record_verified");
                    assert_eq!(r.as_ref().map(|_| ()), Ok(()), "{}", task.task_id);
                    *verified
                        .lock()
                        .expect("lock")
                        .entry(task.task_id)
                        .or_default() += 1;
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
    }
    for t in threads {
        t.join().expect("a prover thread failed");
    }
    let took = started.elapsed();
    let handed = handed.lock().expect("lock").clone();
    let verified = verified.lock().expect("lock").clone();
    let batches = TASKS / 2;
    eprintln!(
        "{backend}: {} tasks ({TASKS} chunks, {batches} batches) by {} provers on {REPLICAS} handles in {took:?}",
        handed.len(),
        REPLICAS * PROVERS_PER_REPLICA
    );
    assert_eq!(
        handed.len(),
        TASKS + batches,
        "every chunk and batch handed out"
    );
    let twice: Vec<_> = handed.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "handed out more than once: {twice:?}");
    assert_eq!(verified, handed, "each task verified exactly once");
    let s = stores[0].summary().expect("summary");
    assert_eq!(s.count("chunk", TaskState::Verified), TASKS as u64);
    assert_eq!(s.count("batch", TaskState::Verified), batches as u64);
    for st in [TaskState::Pending, TaskState::Assigned, TaskState::Failed] {
        assert_eq!(s.count("chunk", st) + s.count("batch", st), 0, "{st:?}");
    }
    // The batches chain the chunks in order: batch-k holds chunk-2k and chunk-2k+1.
    let status = stores[0].status().expect("status");
    assert_eq!(status.tasks.len(), TASKS + batches);
}

#[test]
fn one_proof_submitted_twice_at_once_is_accepted_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (stores, _) = stores(dir.path());
    enqueue(&stores[0], 8);
    let p = policy();
    let who = ProverIdentity {
        public_key: "key-x".into(),
        prover_name: "x".into(),
        prover_types: vec![1],
    };
    for round in 0..8 {
        let (outcome, _) = stores[0]
            .assign(&who, &[1], &p, 10 + round)
            .expect("assign");
        let AssignOutcome::Task { task, .. } = outcome else {
            panic!("no task in round {round}: {outcome:?}");
        };
        let go = Arc::new(Barrier::new(REPLICAS));
        let results: Vec<Result<_, SubmitError>> = std::thread::scope(|s| {
            let handles: Vec<_> = stores
                .iter()
                .map(|store| {
                    let (task, who, go) = (&task, &who, go.clone());
                    s.spawn(move || {
                        go.wait();
                        store
                            .record_verified(
                                &who.public_key,
                                &task.uuid,
                                &task.task_id,
                                task.task_type,
                                &proof_for(task),
                                1,
                                &p,
                                20 + round,
                            )
                            .expect("record_verified")
                            .map(|_| ())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("submit thread"))
                .collect()
        });
        let accepted = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(accepted, 1, "round {round}: {results:?}");
        for r in results.iter().filter_map(|r| r.as_ref().err()) {
            assert!(
                matches!(r, SubmitError::Twice | SubmitError::AlreadyVerified(_)),
                "round {round}: {r:?}"
            );
        }
    }
}

/// `claim` locks the first of the tasks it is given that is free: one no longer pending is
/// passed over, and on PostgreSQL so is one another transaction holds (skipped, not waited for).
#[test]
fn a_claim_takes_the_first_free_task_of_those_it_is_given() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (stores, backend) = stores(dir.path());
    enqueue(&stores[0], 4);
    let ids: Vec<String> = stores[0]
        .transaction(|tx| tx.pending(&[1], None, 10))
        .expect("pending")
        .into_iter()
        .map(|t| t.task_id)
        .collect();
    assert_eq!(ids.len(), 4);
    let claim = |store: &Store, ids: &[&str]| {
        store
            .transaction(|tx| tx.claim(ids))
            .expect("claim")
            .map(|t| t.task_id)
    };
    assert_eq!(claim(&stores[0], &[]), None);
    assert_eq!(claim(&stores[0], &["no-such-task"]), None);
    // The oldest is handed out: no longer pending.
    let who = ProverIdentity {
        public_key: "key-a".into(),
        prover_name: "a".into(),
        prover_types: vec![1],
    };
    let (outcome, _) = stores[0].assign(&who, &[1], &policy(), 1).expect("assign");
    assert!(
        matches!(&outcome, AssignOutcome::Task { task, .. } if task.task_id == ids[0]),
        "{outcome:?}"
    );
    let all: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(claim(&stores[0], &all).as_deref(), Some(ids[1].as_str()));
    assert_eq!(
        claim(&stores[0], &all[2..]).as_deref(),
        Some(ids[2].as_str())
    );
    if backend == "postgres" {
        // Another replica holds the second one in an open transaction.
        let held = Arc::new(Barrier::new(2));
        let release = Arc::new(Barrier::new(2));
        let holder = {
            let (store, id, held, release) = (
                stores[1].clone(),
                ids[1].clone(),
                held.clone(),
                release.clone(),
            );
            std::thread::spawn(move || {
                store
                    .transaction(|tx| {
                        let t = tx.claim(&[id.as_str()])?;
                        assert_eq!(t.map(|t| t.task_id).as_deref(), Some(id.as_str()));
                        held.wait();
                        release.wait();
                        Ok(())
                    })
                    .expect("hold a task");
            })
        };
        held.wait();
        assert_eq!(claim(&stores[0], &all).as_deref(), Some(ids[2].as_str()));
        assert_eq!(claim(&stores[0], &all[..2]), None);
        release.wait();
        holder.join().expect("holder thread");
        assert_eq!(claim(&stores[0], &all).as_deref(), Some(ids[1].as_str()));
    }
}

/// A transaction that fails leaves nothing behind, whether its writes were sent (a read sends
/// them) or not yet (on PostgreSQL a write waits for the next statement or the commit), and
/// the connections it used serve the next transactions (more of them than the pool has
/// connections): a connection goes back to the pool only outside a transaction. On
/// PostgreSQL, the same after a panic inside a transaction.
#[test]
fn a_failed_transaction_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (stores, backend) = stores(dir.path());
    let store = &stores[0];
    let fail = || coordinator::CoordinatorError::store("test", "failing on purpose");
    for _ in 0..20 {
        let sent: Result<(), _> = store.transaction(|tx| {
            tx.set_counter("sent", 7)?;
            assert_eq!(tx.counter("sent")?, 7);
            Err(fail())
        });
        assert!(sent.is_err());
        let queued: Result<(), _> = store.transaction(|tx| {
            tx.set_counter("queued", 7)?;
            Err(fail())
        });
        assert!(queued.is_err());
    }
    if backend == "postgres" {
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            store.transaction(|tx| -> Result<(), _> {
                tx.set_counter("panicked", 7)?;
                assert_eq!(tx.counter("panicked")?, 7);
                panic!("on purpose, inside a transaction");
            })
        }));
        assert!(panicked.is_err());
    }
    for _ in 0..20 {
        let counts = store
            .transaction(|tx| {
                Ok((
                    tx.counter("sent")?,
                    tx.counter("queued")?,
                    tx.counter("panicked")?,
                ))
            })
            .expect("read the counters");
        assert_eq!(counts, (0, 0, 0));
    }
}

/// A submission's check before verification only reads: it finishes while another transaction
/// (another replica's, on PostgreSQL) holds the assignment's row, and on redb while the one
/// writer is busy, and it sees the assignment as last committed.
#[test]
fn a_submission_check_waits_for_no_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (stores, backend) = stores(dir.path());
    enqueue(&stores[0], 1);
    let who = ProverIdentity {
        public_key: "key-a".into(),
        prover_name: "a".into(),
        prover_types: vec![1],
    };
    let (outcome, _) = stores[0].assign(&who, &[1], &policy(), 1).expect("assign");
    let AssignOutcome::Task { task, .. } = outcome else {
        panic!("no task handed out: {outcome:?}");
    };
    let (done, checked) = std::sync::mpsc::channel();
    let mut checker = None;
    let result = stores[1]
        .transaction(|tx| {
            // Held until this transaction ends.
            assert!(tx.assignment(&task.uuid)?.is_some());
            let (store, key, uuid, id, done) = (
                stores[0].clone(),
                who.public_key.clone(),
                task.uuid.clone(),
                task.task_id.clone(),
                done.clone(),
            );
            checker = Some(std::thread::spawn(move || {
                let _ = done.send(store.submit_context(&key, &uuid, &id, 1));
            }));
            Ok(checked.recv_timeout(std::time::Duration::from_secs(20)))
        })
        .expect("transaction");
    if let Some(t) = checker {
        t.join().expect("checker thread");
    }
    let ctx = result
        .unwrap_or_else(|e| panic!("{backend}: the check waited for the open transaction: {e}"))
        .expect("check")
        .expect("a valid submission");
    assert_eq!(ctx.assignment.uuid, task.uuid);
    assert_eq!(ctx.task.task_id, task.task_id);
    assert_eq!(ctx.wire_task.task_data, task.task_data);
}
