//! The scheduler and the store, driven directly with explicit clocks (no HTTP, no proving).
//! On redb, or on PostgreSQL when `COORDINATOR_TEST_POSTGRES` names a server (a fresh database
//! per test; `scripts/test` runs this file both ways).

use crate::common;

use coordinator::store::{AssignOutcome, Policy, ProverIdentity, Store, SubmitError};
use coordinator::TaskState;
use prover_core::rollup::RollupState;
use prover_core::wire::{
    Base64Bytes, BatchConfig, BatchTaskData, BundleConfig, BundleTaskData, ChunkConfig,
    CircuitSpec, FrHex, ProofMeta, ProofPayload, Task, Transfer,
};

const SMALL: ChunkConfig = ChunkConfig {
    k: 13,
    tree_depth: 4,
    max_txs: 2,
};

fn policy() -> Policy {
    Policy {
        chunk_timeout_ms: 1000,
        batch_timeout_ms: 2000,
        bundle_timeout_ms: 3000,
        session_attempts: 3,
        max_invalid_proofs: 2,
        prover_active_ms: 10_000,
        batch: None,
        bundle: None,
        settle: false,
    }
}

fn prover(name: &str, types: &[u8]) -> ProverIdentity {
    ProverIdentity {
        public_key: format!("key-{name}"),
        prover_name: name.into(),
        prover_types: types.to_vec(),
    }
}

/// Where a test's store lives.
enum Backing {
    Redb(std::path::PathBuf),
    Postgres(String),
}

impl Backing {
    /// The backend under test: PostgreSQL when the environment names a server, else redb.
    fn new(dir: &std::path::Path) -> Self {
        match common::fresh_database() {
            Some(url) => Backing::Postgres(url),
            None => Backing::Redb(dir.join("c.redb")),
        }
    }
    fn open(&self) -> Store {
        match self {
            Backing::Redb(path) => Store::open(path).expect("open redb store"),
            Backing::Postgres(url) => Store::open_postgres(url).expect("open PostgreSQL store"),
        }
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    backing: Backing,
    store: Store,
}

/// A store with `n` chained chunk tasks (chunk-0 … chunk-{n-1}).
fn fixture(n: usize) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let backing = Backing::new(dir.path());
    fixture_on(dir, backing, n)
}

/// The same on redb whatever the environment (tests of the redb file itself).
fn redb_fixture(n: usize) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let backing = Backing::Redb(dir.path().join("c.redb"));
    fixture_on(dir, backing, n)
}

fn fixture_on(dir: tempfile::TempDir, backing: Backing, n: usize) -> Fixture {
    let store = backing.open();
    let mut state = RollupState::genesis(SMALL.tree_depth, 4, 1000).expect("genesis");
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
    let ids = store.enqueue_chunks(&chunks, &[], 0).expect("enqueue");
    assert_eq!(
        ids,
        (0..n).map(|i| format!("chunk-{i}")).collect::<Vec<_>>()
    );
    Fixture {
        _dir: dir,
        backing,
        store,
    }
}

fn assign(
    store: &Store,
    who: &ProverIdentity,
    types: &[u8],
    policy: &Policy,
    now: u64,
) -> AssignOutcome {
    let out = store.assign(who, types, policy, now).expect("assign").0;
    counts_agree(store);
    out
}

/// The counts `/metrics` reads from the store's index equal those of a scan of every task, and
/// every pending task is in the index (what `get_task` walks): checked after each step the
/// helpers take.
fn counts_agree(store: &Store) {
    let full = store.status().expect("status");
    let summary = store.summary().expect("summary");
    assert_eq!(
        summary.counts, full.counts,
        "indexed counts differ from a scan"
    );
    // Counts only: the task list and the tables of keys are read by the admin status alone.
    assert!(summary.tasks.is_empty());
    assert!(summary.blocked.is_empty());
    assert!(summary.invalid_proofs.is_empty());
}

fn task(outcome: AssignOutcome) -> (Task, bool) {
    match outcome {
        AssignOutcome::Task { task, resent } => (task, resent),
        other => panic!("expected a task, got {other:?}"),
    }
}

/// A proof the store takes as verified. A bundle's carries the public inputs settlement reads:
/// bundle-n goes from root n to root n+1.
fn fake_proof(task: &Task) -> ProofPayload {
    let (spec, instances) = if task.task_type == 3 {
        let data: BundleTaskData = serde_json::from_str(&task.task_data).expect("bundle data");
        let n: u64 = task.task_id["bundle-".len()..]
            .parse()
            .expect("bundle number");
        let mut instances = vec![FrHex::default(); 12];
        instances.extend([n, n + 1, 99].map(|x| FrHex(x.into())));
        (
            CircuitSpec::Bundle {
                config: data.config,
            },
            instances,
        )
    } else {
        (CircuitSpec::Chunk { config: SMALL }, vec![])
    };
    ProofPayload {
        version: 1,
        task_id: task.task_id.clone(),
        spec,
        vk_digest: "vk".into(),
        instances,
        proof: Base64Bytes(vec![1, 2, 3]),
        meta: ProofMeta {
            engine: "reference".into(),
            backend: "cpu".into(),
            prove_ms: 42,
            fallback: None,
        },
    }
}

fn verify(
    store: &Store,
    who: &ProverIdentity,
    t: &Task,
    p: &Policy,
    now: u64,
) -> Result<coordinator::store::Effects, SubmitError> {
    store
        .record_verified(
            &who.public_key,
            &t.uuid,
            &t.task_id,
            t.task_type,
            &fake_proof(t),
            7,
            p,
            now,
        )
        .inspect(|_| counts_agree(store))
        .expect("store")
}

fn fail(
    store: &Store,
    who: &ProverIdentity,
    t: &Task,
    invalid: bool,
    p: &Policy,
    now: u64,
) -> Result<coordinator::store::Effects, SubmitError> {
    store
        .record_failure(
            &who.public_key,
            &t.uuid,
            &t.task_id,
            t.task_type,
            "bad",
            invalid,
            p,
            now,
        )
        .expect("store")
}

/// Makes each prover *proven* (module doc of the store): it takes the next task and delivers a
/// verified proof of it. Returns the ids of the tasks used.
fn prove_one_each(store: &Store, who: &[&ProverIdentity], p: &Policy, now: u64) -> Vec<String> {
    who.iter()
        .map(|w| {
            let (t, _) = task(assign(store, w, &[1], p, now));
            verify(store, w, &t, p, now).expect("verified");
            t.task_id
        })
        .collect()
}

#[test]
fn one_task_per_prover_and_the_same_task_is_resent() {
    let f = fixture(2);
    let p = policy();
    let (a, b, c) = (prover("a", &[1]), prover("b", &[1]), prover("c", &[1]));
    let (t1, resent) = task(assign(&f.store, &a, &[1], &p, 0));
    assert_eq!((t1.task_id.as_str(), resent), ("chunk-0", false));
    assert!(t1.task_data.contains("\"transfers\""));
    let (again, resent) = task(assign(&f.store, &a, &[1], &p, 10));
    assert!(resent);
    assert_eq!(again, t1, "same task, same uuid");
    let (t2, _) = task(assign(&f.store, &b, &[1, 2], &p, 20));
    assert_eq!(t2.task_id, "chunk-1");
    assert_eq!(assign(&f.store, &c, &[1], &p, 30), AssignOutcome::NoTask);
    // Asking for another type while holding a chunk task is refused, not silently dropped.
    assert!(matches!(
        assign(&f.store, &a, &[2], &p, 40),
        AssignOutcome::Busy(_)
    ));
    let s = f.store.status().expect("status");
    assert_eq!(s.count("chunk", TaskState::Assigned), 2);
    assert_eq!(s.task("chunk-0").expect("row").attempts, 1);
}

#[test]
fn timeouts_reassign_and_the_attempt_cap_fails_the_task() {
    let f = fixture(3);
    let p = Policy {
        session_attempts: 2,
        ..policy()
    };
    let (a, b, c) = (prover("a", &[1]), prover("b", &[1]), prover("c", &[1]));
    prove_one_each(&f.store, &[&a, &b], &p, 0);
    let (ta, _) = task(assign(&f.store, &a, &[1], &p, 0));
    assert_eq!(ta.task_id, "chunk-2");
    assert_eq!(f.store.sweep(&p, 999).expect("sweep").timed_out, 0);
    // b asks after a's deadline: the sweep returns the task and b gets it with a new uuid.
    let (outcome, effects) = f.store.assign(&b, &[1], &p, 1500).expect("assign");
    assert_eq!(effects.timed_out, 1);
    let (tb, _) = task(outcome);
    assert_eq!(tb.task_id, ta.task_id);
    assert_ne!(tb.uuid, ta.uuid);
    // a's outstanding assignment is gone; it is not re-sent the timed-out uuid.
    assert!(f.store.outstanding(&a.public_key).expect("read").is_none());
    // b times out too: two failed sessions reach the cap.
    let effects = f.store.sweep(&p, 3000).expect("sweep");
    assert_eq!((effects.timed_out, effects.tasks_failed), (1, 1));
    assert_eq!(assign(&f.store, &c, &[1], &p, 3001), AssignOutcome::NoTask);
    let s = f.store.status().expect("status");
    let row = s.task("chunk-2").expect("row");
    assert_eq!(
        (row.state, row.attempts, row.failures),
        (TaskState::Failed, 2, 2)
    );
    // A late but valid proof of the failed task is still accepted.
    verify(&f.store, &a, &ta, &p, 3500).expect("late proof accepted");
    let row = f
        .store
        .status()
        .expect("status")
        .task("chunk-2")
        .cloned()
        .expect("row");
    assert_eq!(row.state, TaskState::Verified);
    assert_eq!(row.prover.as_deref(), Some("key-a"));
    assert_eq!((row.prove_ms, row.verify_ms), (Some(42), Some(7)));
    // b's late submission finds the task verified.
    assert_eq!(
        verify(&f.store, &b, &tb, &p, 3600),
        Err(SubmitError::AlreadyVerified("chunk-2".into()))
    );
}

#[test]
fn a_failed_prover_does_not_get_the_task_back_while_another_can_take_it() {
    let f = fixture(3);
    let p = policy();
    let (a, b) = (prover("a", &[1]), prover("b", &[1]));
    prove_one_each(&f.store, &[&a, &b], &p, 0);
    let (ta, _) = task(assign(&f.store, &a, &[1], &p, 0));
    assert_eq!(ta.task_id, "chunk-2");
    assert_eq!(assign(&f.store, &b, &[1], &p, 10), AssignOutcome::NoTask);
    fail(&f.store, &a, &ta, false, &p, 20).expect("failure recorded");
    assert_eq!(
        f.store
            .status()
            .expect("s")
            .count("chunk", TaskState::Pending),
        1
    );
    // b asked recently and has not failed on it: a is skipped.
    assert_eq!(assign(&f.store, &a, &[1], &p, 30), AssignOutcome::NoTask);
    let (tb, _) = task(assign(&f.store, &b, &[1], &p, 40));
    assert_eq!(tb.task_id, "chunk-2");
    fail(&f.store, &b, &tb, false, &p, 50).expect("failure recorded");
    // Both failed on it: nobody else is available, so a may try again.
    let (ta2, _) = task(assign(&f.store, &a, &[1], &p, 60));
    assert_eq!(ta2.task_id, "chunk-2");
    fail(&f.store, &a, &ta2, false, &p, 70).expect("failure recorded");
    // Third failure reaches session_attempts = 3.
    let row = f
        .store
        .status()
        .expect("s")
        .task("chunk-2")
        .cloned()
        .expect("row");
    assert_eq!((row.state, row.failures), (TaskState::Failed, 3));
}

/// The failed-prover rule reads the provers a page at a time: the one other prover that can take
/// the task is found behind more than a page of provers that cannot (they declared batch
/// proving only), and when it cannot either the failed prover gets the task back.
#[test]
fn the_failed_prover_rule_looks_past_a_page_of_provers() {
    let f = fixture(3);
    let p = policy();
    let (a, z) = (prover("a", &[1]), prover("z", &[1]));
    prove_one_each(&f.store, &[&a, &z], &p, 0);
    // 40 provers between "key-a" and "key-z" in key order, all recently seen, none for chunks.
    for i in 0..40 {
        let m = prover(&format!("m{i:02}"), &[2]);
        assert_eq!(assign(&f.store, &m, &[2], &p, 5), AssignOutcome::NoTask);
    }
    let (ta, _) = task(assign(&f.store, &a, &[1], &p, 10));
    assert_eq!(ta.task_id, "chunk-2");
    assert_eq!(assign(&f.store, &z, &[1], &p, 11), AssignOutcome::NoTask);
    fail(&f.store, &a, &ta, false, &p, 20).expect("failure recorded");
    // z (past the first page) can take it: a is skipped.
    assert_eq!(assign(&f.store, &a, &[1], &p, 30), AssignOutcome::NoTask);
    let (tz, _) = task(assign(&f.store, &z, &[1], &p, 40));
    assert_eq!(tz.task_id, "chunk-2");
    fail(&f.store, &z, &tz, false, &p, 50).expect("failure recorded");
    // Both failed on it, and none of the 40 can take it: a may try again.
    let (ta2, _) = task(assign(&f.store, &a, &[1], &p, 60));
    assert_eq!(ta2.task_id, "chunk-2");
}

#[test]
fn a_prover_not_seen_recently_does_not_hold_back_a_failed_task() {
    let f = fixture(2);
    let p = policy();
    let (a, b) = (prover("a", &[1]), prover("b", &[1]));
    prove_one_each(&f.store, &[&a], &p, 0);
    let (ta, _) = task(assign(&f.store, &a, &[1], &p, 0));
    assert_eq!(assign(&f.store, &b, &[1], &p, 1), AssignOutcome::NoTask);
    fail(&f.store, &a, &ta, false, &p, 2).expect("failure recorded");
    assert_eq!(assign(&f.store, &a, &[1], &p, 3), AssignOutcome::NoTask);
    // b was last seen at 1; after prover_active_ms it no longer counts.
    let (again, _) = task(assign(&f.store, &a, &[1], &p, 20_000));
    assert_eq!(again.task_id, "chunk-1");
}

#[test]
fn a_busy_prover_counts_as_available_even_if_it_has_not_asked_recently() {
    let f = fixture(2);
    let p = Policy {
        chunk_timeout_ms: 100_000,
        ..policy()
    };
    let (a, b) = (prover("a", &[1]), prover("b", &[1]));
    let (ta, _) = task(assign(&f.store, &a, &[1], &p, 0));
    let (tb, _) = task(assign(&f.store, &b, &[1], &p, 1));
    assert_eq!(
        (ta.task_id.as_str(), tb.task_id.as_str()),
        ("chunk-0", "chunk-1")
    );
    fail(&f.store, &a, &ta, false, &p, 2).expect("failure recorded");
    // b last asked at 1, long before prover_active_ms, but it is proving chunk-1 and will ask
    // again when done: a does not get chunk-0 back (nor is chunk-0 burnt by a fast-failing a).
    assert_eq!(
        assign(&f.store, &a, &[1], &p, 20_000),
        AssignOutcome::NoTask
    );
    verify(&f.store, &b, &tb, &p, 20_001).expect("verified");
    let (again, _) = task(assign(&f.store, &b, &[1], &p, 20_002));
    assert_eq!(again.task_id, "chunk-0");
}

/// An idle poll (nothing handed out, nothing timed out) is committed without waiting for the
/// disk on PostgreSQL, and is still committed; a hand-out, and a poll whose sweep timed out an
/// assignment, wait for it. redb commits everything durably.
#[test]
fn only_idle_polls_commit_without_waiting_for_the_disk() {
    let f = fixture(1);
    let p = policy();
    let (a, b, c) = (prover("a", &[1]), prover("b", &[1]), prover("c", &[2]));
    let postgres = matches!(f.backing, Backing::Postgres(_));
    let lazy = |before: u64| f.store.lazy_commits() - before;
    let start = f.store.lazy_commits();
    let (t, _) = task(assign(&f.store, &a, &[1], &p, 0));
    assert_eq!(lazy(start), 0, "a hand-out waits for the disk");
    let (again, resent) = task(assign(&f.store, &a, &[1], &p, 10));
    assert!(resent);
    assert_eq!(again, t);
    assert_eq!(assign(&f.store, &b, &[1], &p, 20), AssignOutcome::NoTask);
    assert_eq!(lazy(start), if postgres { 2 } else { 0 });
    assert_eq!(
        recent(&f.store, 0, 10),
        [("key-a".to_string(), 10), ("key-b".to_string(), 20)],
        "the lazily committed writes are committed"
    );
    // Past the deadline: c's poll times out a's assignment (and hands nothing out, since c
    // asks for batches): what it changed is more than a last-seen time, so it waits.
    let before = f.store.lazy_commits();
    assert_eq!(assign(&f.store, &c, &[2], &p, 5_000), AssignOutcome::NoTask);
    assert_eq!(
        lazy(before),
        0,
        "a sweep that timed out an assignment waits for the disk"
    );
    let s = f.store.status().expect("status");
    assert_eq!(s.count("chunk", TaskState::Pending), 1);
}

/// The provers seen at or after `since` as the store's walk gives them, read `page` at a time:
/// (key, last seen) in (last seen, key) order.
fn recent(store: &Store, since: u64, page: usize) -> Vec<(String, u64)> {
    store
        .transaction(|tx| {
            let mut all = Vec::new();
            let mut after = (since, String::new());
            loop {
                let got = tx.recent_provers((after.0, &after.1), page)?;
                assert!(got.len() <= page);
                let full = got.len() == page;
                all.extend(got.into_iter().map(|(k, s)| (k, s.last_seen_ms)));
                match all.last() {
                    Some((key, ms)) if full => after = (*ms, key.clone()),
                    _ => return Ok(all),
                }
            }
        })
        .expect("walk the recent provers")
}

/// The provers holding a live assignment as the store's walk gives them, one page.
fn busy(store: &Store, after: Option<&str>) -> Vec<String> {
    store
        .transaction(|tx| tx.busy_provers(after, 100))
        .expect("walk the busy provers")
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// The failed-prover rule's two walks, as the store gives them: the provers seen at or after a
/// time, in (last seen, key) order a page at a time, each key once at its latest request (a
/// request moves it); and the provers with a live assignment, in key order.
#[test]
fn the_store_walks_the_provers_seen_recently_and_the_busy_ones() {
    let f = fixture(2);
    let p = Policy {
        chunk_timeout_ms: 100_000,
        ..policy()
    };
    // 40 keys asking for batch work (there is none) at 100 + i, in reverse key order.
    for i in 0..40u64 {
        let q = prover(&format!("q{:02}", 39 - i), &[2]);
        assert_eq!(
            assign(&f.store, &q, &[2], &p, 100 + i),
            AssignOutcome::NoTask
        );
    }
    let name = |i: u64| format!("key-q{:02}", 39 - i);
    let expected: Vec<(String, u64)> = (20..40).map(|i| (name(i), 100 + i)).collect();
    assert_eq!(recent(&f.store, 120, 32), expected);
    assert_eq!(recent(&f.store, 120, 7), expected, "read a page at a time");
    assert_eq!(recent(&f.store, 140, 7), vec![]);
    // key-q39 (first seen at 100) and key-q30 (109) ask again at 500: each moves to the end.
    for q in ["q39", "q30"] {
        let q = prover(q, &[2]);
        assert_eq!(assign(&f.store, &q, &[2], &p, 500), AssignOutcome::NoTask);
    }
    let mut expected: Vec<(String, u64)> = (0..40)
        .filter(|&i| i != 0 && i != 9)
        .map(|i| (name(i), 100 + i))
        .collect();
    expected.push(("key-q30".into(), 500));
    expected.push(("key-q39".into(), 500));
    assert_eq!(recent(&f.store, 0, 5), expected);
    assert_eq!(recent(&f.store, 200, 5).len(), 2);
    // The busy ones: those with a live assignment, until it ends.
    let (a, b) = (prover("a", &[1]), prover("b", &[1]));
    assert_eq!(busy(&f.store, None), Vec::<String>::new());
    let (ta, _) = task(assign(&f.store, &a, &[1], &p, 600));
    let (tb, _) = task(assign(&f.store, &b, &[1], &p, 601));
    assert_eq!(busy(&f.store, None), ["key-a", "key-b"]);
    assert_eq!(busy(&f.store, Some("key-a")), ["key-b"]);
    verify(&f.store, &a, &ta, &p, 602).expect("verified");
    assert_eq!(busy(&f.store, None), ["key-b"]);
    fail(&f.store, &b, &tb, false, &p, 603).expect("failure recorded");
    assert_eq!(busy(&f.store, None), Vec::<String>::new());
}

#[test]
fn invalid_proofs_block_the_key_at_the_cap_and_unblock_resets() {
    let f = fixture(3);
    let p = policy();
    let a = prover("a", &[1]);
    let (t, _) = task(assign(&f.store, &a, &[1], &p, 0));
    assert!(!fail(&f.store, &a, &t, true, &p, 1).expect("ok").blocked);
    let (t, _) = task(assign(&f.store, &a, &[1], &p, 2));
    assert!(fail(&f.store, &a, &t, true, &p, 3).expect("ok").blocked);
    match assign(&f.store, &a, &[1], &p, 4) {
        AssignOutcome::Blocked(m) => assert!(m.contains("2 invalid proofs"), "{m}"),
        other => panic!("expected blocked, got {other:?}"),
    }
    let s = f.store.status().expect("s");
    assert_eq!(s.blocked, vec!["key-a".to_string()]);
    assert_eq!(s.invalid_proofs.get("key-a"), Some(&2));
    assert!(f.store.unblock(&a.public_key).expect("unblock"));
    assert!(matches!(
        assign(&f.store, &a, &[1], &p, 5),
        AssignOutcome::Task { .. }
    ));
    f.store.block(&a.public_key, "manual").expect("block");
    // The outstanding assignment is not re-sent to a blocked key either.
    assert!(matches!(
        assign(&f.store, &a, &[1], &p, 6),
        AssignOutcome::Blocked(_)
    ));
}

#[test]
fn submissions_are_checked_before_anything_changes() {
    let f = fixture(2);
    let p = policy();
    let (a, b) = (prover("a", &[1]), prover("b", &[1]));
    let (ta, _) = task(assign(&f.store, &a, &[1], &p, 0));
    let (tb, _) = task(assign(&f.store, &b, &[1], &p, 0));
    let ctx = |key: &str, uuid: &str, id: &str, ty: u8| {
        f.store
            .submit_context(key, uuid, id, ty)
            .expect("store")
            .map(|_| ())
    };
    assert_eq!(
        ctx("key-a", "nope", "chunk-0", 1),
        Err(SubmitError::NoAssignment("nope".into()))
    );
    assert_eq!(
        ctx("key-a", &tb.uuid, "chunk-1", 1),
        Err(SubmitError::NotYours(tb.uuid.clone()))
    );
    assert!(matches!(
        ctx("key-a", &ta.uuid, "chunk-1", 1),
        Err(SubmitError::Mismatch(_))
    ));
    assert!(matches!(
        ctx("key-a", &ta.uuid, "chunk-0", 2),
        Err(SubmitError::Mismatch(_))
    ));
    assert_eq!(ctx("key-a", &ta.uuid, "chunk-0", 1), Ok(()));
    verify(&f.store, &a, &ta, &p, 1).expect("verified");
    assert_eq!(verify(&f.store, &a, &ta, &p, 2), Err(SubmitError::Twice));
    assert_eq!(
        fail(&f.store, &a, &ta, false, &p, 2),
        Err(SubmitError::Twice)
    );
    // a is free again right after its proof was accepted.
    assert_eq!(assign(&f.store, &a, &[1], &p, 3), AssignOutcome::NoTask);
    assert!(f.store.proof("chunk-0").expect("read").is_some());
    assert!(f.store.proof("chunk-1").expect("read").is_none());
}

#[test]
fn consecutive_verified_chunks_become_a_batch_for_batch_provers_only() {
    let f = fixture(3);
    let batch = BatchConfig {
        k: 16,
        num_chunks: 2,
        chunk: SMALL,
    };
    let p = Policy {
        batch: Some(batch),
        ..policy()
    };
    let (a, b, c) = (prover("a", &[1]), prover("b", &[1]), prover("c", &[1]));
    let (t0, _) = task(assign(&f.store, &a, &[1], &p, 0));
    let (t1, _) = task(assign(&f.store, &b, &[1], &p, 0));
    let (t2, _) = task(assign(&f.store, &c, &[1], &p, 0));
    // Out of chain order: chunk-1 first does not make a batch.
    assert_eq!(
        verify(&f.store, &b, &t1, &p, 1).expect("ok").batch_created,
        None
    );
    assert_eq!(
        verify(&f.store, &a, &t0, &p, 2)
            .expect("ok")
            .batch_created
            .as_deref(),
        Some("batch-0")
    );
    assert_eq!(
        verify(&f.store, &c, &t2, &p, 3).expect("ok").batch_created,
        None
    );
    let s = f.store.status().expect("s");
    assert_eq!(s.count("batch", TaskState::Pending), 1);
    assert_eq!(s.count("chunk", TaskState::Verified), 3);
    // A chunk-only prover never gets it, nor a batch prover asking only for chunks.
    let chunk_only = prover("d", &[1]);
    let batcher = prover("e", &[1, 2]);
    assert_eq!(
        assign(&f.store, &chunk_only, &[1, 2], &p, 10),
        AssignOutcome::NoTask
    );
    assert_eq!(
        assign(&f.store, &batcher, &[1], &p, 10),
        AssignOutcome::NoTask
    );
    let (bt, _) = task(assign(&f.store, &batcher, &[2], &p, 11));
    assert_eq!((bt.task_id.as_str(), bt.task_type), ("batch-0", 2));
    let data: BatchTaskData = serde_json::from_str(&bt.task_data).expect("batch data");
    assert_eq!(data.config, batch);
    let ids: Vec<_> = data
        .chunk_proofs
        .iter()
        .map(|p| p.task_id.as_str())
        .collect();
    assert_eq!(ids, ["chunk-0", "chunk-1"]);
    // The batch timeout applies to batch tasks (2000 ms, not the chunk's 1000 ms).
    assert_eq!(f.store.sweep(&p, 1500).expect("sweep").timed_out, 0);
    assert_eq!(f.store.sweep(&p, 2100).expect("sweep").timed_out, 1);
}

/// `num_batches` consecutive verified batches make a bundle task, handed only to provers asking
/// for type 3, with its own timeout; verified bundles are enqueued for settlement in chain order
/// whatever order they are verified in; and `prune` keeps batches until they are bundled and
/// bundles until they are enqueued.
#[test]
fn consecutive_verified_batches_become_bundles_settled_in_chain_order() {
    let f = fixture(8);
    let batch = BatchConfig {
        k: 16,
        num_chunks: 2,
        chunk: SMALL,
    };
    let bundle = BundleConfig {
        k: 16,
        num_batches: 2,
        batch,
    };
    let p = Policy {
        batch: Some(batch),
        bundle: Some(bundle),
        settle: true,
        ..policy()
    };
    let a = prover("a", &[1, 2, 3]);
    for i in 0..8u64 {
        let (t, _) = task(assign(&f.store, &a, &[1], &p, i));
        verify(&f.store, &a, &t, &p, i).expect("chunk verified");
    }
    let mut batches = Vec::new();
    for _ in 0..4 {
        let (t, _) = task(assign(&f.store, &a, &[2], &p, 10));
        verify(&f.store, &a, &t, &p, 10).expect("batch verified");
        batches.push(t);
    }
    assert_eq!(
        f.store
            .status()
            .expect("s")
            .count("bundle", TaskState::Pending),
        2
    );
    // Only a prover asking for type 3 gets a bundle.
    assert_eq!(assign(&f.store, &a, &[1, 2], &p, 20), AssignOutcome::NoTask);
    let b = prover("b", &[1, 2, 3]);
    let (u0, _) = task(assign(&f.store, &a, &[3], &p, 20));
    let (u1, _) = task(assign(&f.store, &b, &[3], &p, 20));
    assert_eq!(
        (u0.task_id.as_str(), u0.task_type, u1.task_id.as_str()),
        ("bundle-0", 3, "bundle-1")
    );
    let data: BundleTaskData = serde_json::from_str(&u0.task_data).expect("bundle data");
    assert_eq!(data.config, bundle);
    let ids: Vec<_> = data
        .batch_proofs
        .iter()
        .map(|p| p.task_id.as_str())
        .collect();
    assert_eq!(ids, ["batch-0", "batch-1"]);
    // The bundle timeout (3000 ms) applies, not the batch's (2000 ms).
    assert_eq!(f.store.sweep(&p, 2500).expect("sweep").timed_out, 0);
    // bundle-1 verified first waits for bundle-0: L1 takes them in order.
    let e1 = verify(&f.store, &b, &u1, &p, 2600).expect("bundle-1 verified");
    assert_eq!(e1.settlement_enqueued, None);
    assert!(coordinator::settle::item(&f.store, 0)
        .expect("read")
        .is_none());
    // Batches are pruned once bundled, bundles only once enqueued.
    let pruned = f.store.prune(5000, p.consumers()).expect("prune");
    assert_eq!(pruned.tasks.get("batch"), Some(&4));
    assert_eq!(
        pruned.tasks.get("bundle"),
        None,
        "bundle-1 is not enqueued yet"
    );
    let e0 = verify(&f.store, &a, &u0, &p, 2700).expect("bundle-0 verified");
    assert_eq!(e0.settlement_enqueued.as_deref(), Some("bundle-1"));
    for (index, label) in [(0, "bundle-0"), (1, "bundle-1")] {
        let item = coordinator::settle::item(&f.store, index)
            .expect("read")
            .expect("enqueued");
        assert_eq!(item.label, label);
        let root = |x: u64| alloy::primitives::B256::from(prover_core::evm::fr_be(&x.into()));
        assert_eq!(
            (item.old_root, item.new_root),
            (root(index), root(index + 1))
        );
        assert_eq!(item.instances.len(), 15);
    }
    assert!(coordinator::settle::item(&f.store, 2)
        .expect("read")
        .is_none());
    let pruned = f.store.prune(5000, p.consumers()).expect("prune");
    assert_eq!(pruned.tasks.get("bundle"), Some(&2));
    counts_agree(&f.store);
}

#[test]
fn the_store_survives_reopening() {
    let f = fixture(2);
    let p = policy();
    let a = prover("a", &[1]);
    let (ta, _) = task(assign(&f.store, &a, &[1], &p, 0));
    assert!(f
        .store
        .use_challenge("nonce", 10_000, 0)
        .expect("challenge"));
    let before = f.store.status().expect("status");
    let Fixture {
        _dir,
        backing,
        store,
    } = f;
    drop(store);
    let store = backing.open();
    assert_eq!(store.status().expect("status"), before);
    let (again, resent) = task(assign(&store, &a, &[1], &p, 10));
    assert!(resent);
    assert_eq!(again.uuid, ta.uuid);
    assert!(
        !store.use_challenge("nonce", 10_000, 20).expect("challenge"),
        "used challenge remembered"
    );
    // Expired challenges are purged (once past the grace).
    let grace = coordinator::store::CHALLENGE_PURGE_GRACE_MS;
    assert!(store
        .use_challenge("nonce", 200_000, 10_001 + grace)
        .expect("challenge"));
}

/// A truncated or overwritten store file is a one-line error naming the file and saying what to
/// do, not a panic.
#[test]
fn a_damaged_store_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("coordinator.redb");
    drop(Store::open(&path).expect("create"));
    let full = std::fs::read(&path).expect("read");
    let garbage: Vec<u8> = (0..full.len()).map(|i| (i * 131 % 251) as u8).collect();
    for (what, bytes) in [
        ("truncated", full[..full.len() / 3].to_vec()),
        ("overwritten", garbage),
        ("header only", full[..64].to_vec()),
    ] {
        std::fs::write(&path, &bytes).expect("write");
        let err = Store::open(&path)
            .err()
            .unwrap_or_else(|| panic!("{what}: opened"));
        let msg = err.to_string();
        assert!(
            matches!(err, coordinator::CoordinatorError::Damaged { .. }),
            "{what}: {msg}"
        );
        assert!(
            msg.contains(path.to_str().expect("utf8")) && msg.contains("move it aside"),
            "{what}: {msg}"
        );
        assert!(!msg.contains('\n'), "{what}: one line: {msg}");
    }
}

#[test]
fn throwaway_keys_cannot_fail_a_task_and_an_unproven_key_does_not_get_it_back() {
    let f = fixture(2);
    let p = policy();
    // Five fresh keys each take chunk-0 and report failure (the attack of the issue: before the
    // rule, three such reports failed the task for good).
    for i in 0..5 {
        let k = prover(&format!("throwaway-{i}"), &[1]);
        let (t, _) = task(assign(&f.store, &k, &[1], &p, i));
        assert_eq!(t.task_id, "chunk-0");
        let effects = fail(&f.store, &k, &t, false, &p, i).expect("failure recorded");
        assert_eq!(effects.tasks_failed, 0);
        // Alone, it still does not get chunk-0 again: it is handed the next task.
        let (next, _) = task(assign(&f.store, &k, &[1], &p, i));
        assert_eq!(next.task_id, "chunk-1");
        fail(&f.store, &k, &next, false, &p, i).expect("failure recorded");
    }
    let s = f.store.status().expect("status");
    let row = s.task("chunk-0").expect("row");
    assert_eq!(
        (row.state, row.failures, row.unproven_failures),
        (TaskState::Pending, 0, 5)
    );
    assert!(row.result.as_deref().unwrap_or("").contains("not counted"));
    // An unproven key that times out does not count either.
    let slow = prover("slow", &[1]);
    let (t, _) = task(assign(&f.store, &slow, &[1], &p, 100));
    assert_eq!(t.task_id, "chunk-0");
    let effects = f.store.sweep(&p, 100 + p.chunk_timeout_ms).expect("sweep");
    assert_eq!((effects.timed_out, effects.tasks_failed), (1, 0));
    // An honest newcomer proves it, and becomes proven.
    let honest = prover("honest", &[1]);
    let (t, _) = task(assign(&f.store, &honest, &[1], &p, 5000));
    assert_eq!(t.task_id, "chunk-0");
    verify(&f.store, &honest, &t, &p, 5001).expect("verified");
    // Proven keys' failures count: three of them fail chunk-1 (session_attempts = 3).
    let (x, y) = (prover("x", &[1]), prover("y", &[1]));
    let f2 = fixture(3);
    prove_one_each(&f2.store, &[&x, &y], &p, 0);
    for (i, who) in [&x, &y, &x].into_iter().enumerate() {
        let (t, _) = task(assign(&f2.store, who, &[1], &p, 10 + i as u64));
        assert_eq!(t.task_id, "chunk-2");
        fail(&f2.store, who, &t, false, &p, 10 + i as u64).expect("failure recorded");
    }
    let row = f2
        .store
        .status()
        .expect("status")
        .task("chunk-2")
        .cloned()
        .expect("row");
    assert_eq!((row.state, row.failures), (TaskState::Failed, 3));
}

#[test]
fn requeue_brings_a_failed_task_back_and_refuses_others() {
    use coordinator::RequeueError;
    let f = fixture(3);
    let p = Policy {
        session_attempts: 1,
        ..policy()
    };
    let a = prover("a", &[1]);
    prove_one_each(&f.store, &[&a], &p, 0);
    let (t, _) = task(assign(&f.store, &a, &[1], &p, 1));
    assert_eq!(t.task_id, "chunk-1");
    assert_eq!(
        fail(&f.store, &a, &t, false, &p, 2)
            .expect("ok")
            .tasks_failed,
        1
    );
    assert_eq!(
        f.store.requeue("chunk-0", 3).expect("store"),
        Err(RequeueError::NotFailed {
            task_id: "chunk-0".into(),
            state: "verified"
        })
    );
    assert_eq!(
        f.store.requeue("chunk-9", 3).expect("store"),
        Err(RequeueError::NoSuchTask("chunk-9".into()))
    );
    f.store
        .requeue("chunk-1", 3)
        .expect("store")
        .expect("requeued");
    let row = f
        .store
        .status()
        .expect("status")
        .task("chunk-1")
        .cloned()
        .expect("row");
    assert_eq!(
        (row.state, row.failures, row.unproven_failures),
        (TaskState::Pending, 0, 0)
    );
    // Its failed-prover set was cleared too: a gets it back at once, ahead of chunk-2.
    let (again, _) = task(assign(&f.store, &a, &[1], &p, 4));
    assert_eq!(again.task_id, "chunk-1");
    assert_eq!(
        f.store.requeue("chunk-1", 5).expect("store"),
        Err(RequeueError::NotFailed {
            task_id: "chunk-1".into(),
            state: "assigned"
        })
    );
}

/// A swarm of fresh keys failing one task: each is remembered up to the limit (the record stays
/// bounded) and does not get it back; from then on the task goes to proven keys only, so keys
/// past the limit cannot take it in turn for ever (before: each further key took it again).
#[test]
fn a_swarm_of_unproven_keys_cannot_grow_a_task_or_take_it_in_turn() {
    use coordinator::store::MAX_UNPROVEN_REMEMBERED;
    let f = fixture(2);
    let p = policy();
    let z = prover("z", &[1]);
    prove_one_each(&f.store, &[&z], &p, 0);
    let swarm: Vec<ProverIdentity> = (0..MAX_UNPROVEN_REMEMBERED + 1)
        .map(|i| prover(&format!("swarm-{i}"), &[1]))
        .collect();
    for (i, k) in swarm[..MAX_UNPROVEN_REMEMBERED].iter().enumerate() {
        let (t, _) = task(assign(&f.store, k, &[1], &p, 1 + i as u64));
        assert_eq!(t.task_id, "chunk-1");
        fail(&f.store, k, &t, false, &p, 1 + i as u64).expect("failure recorded");
    }
    let row = f
        .store
        .status()
        .expect("status")
        .task("chunk-1")
        .cloned()
        .expect("row");
    assert_eq!(
        (row.state, row.failures, row.unproven_failures as usize),
        (TaskState::Pending, 0, MAX_UNPROVEN_REMEMBERED)
    );
    // Those remembered do not get it back, nor does a further fresh key: proven keys only now.
    assert_eq!(
        assign(&f.store, &swarm[0], &[1], &p, 1000),
        AssignOutcome::NoTask
    );
    assert_eq!(
        assign(&f.store, &swarm[MAX_UNPROVEN_REMEMBERED], &[1], &p, 1001),
        AssignOutcome::NoTask
    );
    let (again, _) = task(assign(&f.store, &z, &[1], &p, 1002));
    assert_eq!(again.task_id, "chunk-1");
}

/// An unproven key that has failed `MAX_FAILED_PASSED` pending tasks gets no more, although
/// tasks it has not failed are pending: its walk past the tasks it failed stays bounded (before:
/// it read every one, 16 ms a get_task after failing 5,000 in an audit). Another key still gets
/// the oldest.
#[test]
fn an_unproven_key_that_failed_many_pending_tasks_gets_no_more() {
    use coordinator::store::MAX_FAILED_PASSED;
    let f = fixture(MAX_FAILED_PASSED + 2);
    let p = policy();
    let k = prover("k", &[1]);
    for i in 0..MAX_FAILED_PASSED {
        let (t, _) = task(assign(&f.store, &k, &[1], &p, i as u64));
        assert_eq!(t.task_id, format!("chunk-{i}"));
        fail(&f.store, &k, &t, false, &p, i as u64).expect("failure recorded");
    }
    assert_eq!(
        assign(&f.store, &k, &[1], &p, 1000),
        AssignOutcome::NoTask,
        "two tasks it has not failed are pending, behind the ones it failed"
    );
    let other = prover("other", &[1]);
    let (t, _) = task(assign(&f.store, &other, &[1], &p, 1001));
    assert_eq!(t.task_id, "chunk-0");
}

/// Closes a redb fixture's store, changes its file with `edit` in one redb transaction (to the
/// layout of an older store) and opens it again.
fn reopen_edited(f: Fixture, edit: impl FnOnce(&redb::WriteTransaction)) -> Fixture {
    let Backing::Redb(path) = &f.backing else {
        unreachable!("a redb fixture")
    };
    let path = path.clone();
    drop(f.store);
    {
        let db = redb::Database::open(&path).expect("open the file with redb");
        let txn = db.begin_write().expect("begin");
        edit(&txn);
        txn.commit().expect("commit");
    }
    Fixture {
        store: Store::open(&path).expect("reopen"),
        ..f
    }
}

/// Sets (or removes) the store's index version counter.
fn index_version(txn: &redb::WriteTransaction, v: Option<u64>) {
    let counters: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("counters");
    let mut t = txn.open_table(counters).expect("counters");
    match v {
        Some(v) => {
            t.insert("index_version", v).expect("write");
        }
        None => assert!(t.remove("index_version").expect("remove").is_some()),
    }
}

/// A store written before the indexes (no pending index, no `task_counts`) gets them built when
/// opened: the counts match a scan and the oldest pending task is handed out first.
#[test]
fn a_store_from_before_the_indexes_gets_them_when_opened() {
    let f = redb_fixture(5);
    let p = policy();
    let a = prover("a", &[1]);
    let b = prover("b", &[1]);
    let (t0, _) = task(assign(&f.store, &a, &[1], &p, 10));
    verify(&f.store, &a, &t0, &p, 20).expect("verified");
    let (t1, _) = task(assign(&f.store, &b, &[1], &p, 30));
    assert_eq!(t1.task_id, "chunk-1");
    // Back to the layout of a store from before the indexes.
    let f = reopen_edited(f, |txn| {
        let pending: redb::TableDefinition<(u8, u64), &str> =
            redb::TableDefinition::new("pending_by_type");
        let counts: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("task_counts");
        assert!(txn.delete_table(pending).expect("delete pending_by_type"));
        assert!(txn.delete_table(counts).expect("delete task_counts"));
        index_version(txn, None);
    });
    let store = &f.store;
    counts_agree(store);
    let s = store.summary().expect("summary");
    assert_eq!(s.count("chunk", TaskState::Verified), 1);
    assert_eq!(s.count("chunk", TaskState::Assigned), 1);
    assert_eq!(s.count("chunk", TaskState::Pending), 3);
    let c = prover("c", &[1]);
    let (t2, _) = task(assign(store, &c, &[1], &p, 40));
    assert_eq!(t2.task_id, "chunk-2", "the oldest pending task first");
}

/// A store of index version 3 (one pending index of every type, `pending_by_order`) gets the
/// per-type one when opened and loses the old one: the pending tasks are handed out oldest first,
/// the others are not.
#[test]
fn a_store_from_before_the_per_type_pending_index_gets_it_when_opened() {
    let f = redb_fixture(4);
    let p = policy();
    let a = prover("a", &[1]);
    let (t0, _) = task(assign(&f.store, &a, &[1], &p, 10));
    verify(&f.store, &a, &t0, &p, 20).expect("verified");
    let b = prover("b", &[1]);
    let (t1, _) = task(assign(&f.store, &b, &[1], &p, 30));
    assert_eq!(t1.task_id, "chunk-1");
    let f = reopen_edited(f, |txn| {
        let by_type: redb::TableDefinition<(u8, u64), &str> =
            redb::TableDefinition::new("pending_by_type");
        let by_order: redb::TableDefinition<u64, &str> =
            redb::TableDefinition::new("pending_by_order");
        let entries: Vec<(u64, String)> = {
            use redb::ReadableTable;
            let t = txn.open_table(by_type).expect("pending_by_type");
            let v: Vec<(u64, String)> = t
                .iter()
                .expect("iterate")
                .map(|e| {
                    let (k, id) = e.expect("entry");
                    (k.value().1, id.value().to_string())
                })
                .collect();
            v
        };
        assert_eq!(entries.len(), 2, "chunk-2 and chunk-3 pending");
        assert!(txn.delete_table(by_type).expect("delete pending_by_type"));
        let mut old = txn.open_table(by_order).expect("pending_by_order");
        for (order, id) in &entries {
            old.insert(*order, id.as_str()).expect("write");
        }
        drop(old);
        index_version(txn, Some(3));
    });
    let (f, old_left) = {
        let mut left = true;
        let f = reopen_edited(f, |txn| {
            let by_order: redb::TableDefinition<u64, &str> =
                redb::TableDefinition::new("pending_by_order");
            left = txn.delete_table(by_order).expect("delete pending_by_order");
        });
        (f, left)
    };
    assert!(
        !old_left,
        "pending_by_order dropped when the store was opened"
    );
    let store = &f.store;
    counts_agree(store);
    let c = prover("c", &[1]);
    let (t2, _) = task(assign(store, &c, &[1], &p, 40));
    assert_eq!(t2.task_id, "chunk-2", "the oldest pending task first");
    let d = prover("d", &[1]);
    let (t3, _) = task(assign(store, &d, &[1], &p, 50));
    assert_eq!(t3.task_id, "chunk-3");
    let e = prover("e", &[1]);
    assert!(matches!(
        assign(store, &e, &[1], &p, 60),
        AssignOutcome::NoTask
    ));
}

/// A store from before the last-seen index (`provers_by_seen`, index version 4) gets it built
/// when opened: the failed-prover rule still finds the other prover that asked recently.
#[test]
fn a_store_from_before_the_last_seen_index_gets_it_when_opened() {
    let f = redb_fixture(3);
    let p = policy();
    let (a, b) = (prover("a", &[1]), prover("b", &[1]));
    prove_one_each(&f.store, &[&a, &b], &p, 0);
    let (ta, _) = task(assign(&f.store, &a, &[1], &p, 10));
    assert_eq!(assign(&f.store, &b, &[1], &p, 11), AssignOutcome::NoTask);
    fail(&f.store, &a, &ta, false, &p, 20).expect("failure recorded");
    let f = reopen_edited(f, |txn| {
        let by_seen: redb::TableDefinition<(u64, &str), ()> =
            redb::TableDefinition::new("provers_by_seen");
        assert!(txn.delete_table(by_seen).expect("delete provers_by_seen"));
        index_version(txn, Some(4));
    });
    assert_eq!(
        recent(&f.store, 0, 32),
        [("key-a".to_string(), 10), ("key-b".to_string(), 11)]
    );
    // b asked at 11 and has not failed on chunk-2: a is skipped, b gets it.
    assert_eq!(assign(&f.store, &a, &[1], &p, 30), AssignOutcome::NoTask);
    let (tb, _) = task(assign(&f.store, &b, &[1], &p, 40));
    assert_eq!(tb.task_id, "chunk-2");
}

/// A store written before the deadline index (`live_by_deadline`, index version 2) gets it built
/// when opened: an assignment made before then still times out and its task goes to another
/// prover, and one that has not timed out stays.
#[test]
fn a_store_from_before_the_deadline_index_still_times_out_its_assignments() {
    let f = redb_fixture(3);
    let p = policy();
    let a = prover("a", &[1]);
    let b = prover("b", &[1]);
    let (t0, _) = task(assign(&f.store, &a, &[1], &p, 10));
    let (t1, _) = task(assign(&f.store, &b, &[1], &p, 600));
    assert_eq!(
        (t0.task_id.as_str(), t1.task_id.as_str()),
        ("chunk-0", "chunk-1")
    );
    let f = reopen_edited(f, |txn| {
        let live: redb::TableDefinition<(u64, &str), ()> =
            redb::TableDefinition::new("live_by_deadline");
        assert!(txn.delete_table(live).expect("delete live_by_deadline"));
        index_version(txn, Some(1));
    });
    let store = &f.store;
    // a's deadline (10 + 1000) has passed at 1100, b's (600 + 1000) has not.
    let c = prover("c", &[1]);
    let (t, _) = task(assign(store, &c, &[1], &p, 1100));
    assert_eq!(t.task_id, "chunk-0", "a's timed-out task, handed out again");
    let d = prover("d", &[1]);
    let (t, _) = task(assign(store, &d, &[1], &p, 1101));
    assert_eq!(t.task_id, "chunk-2", "b still holds chunk-1");
    let s = store.summary().expect("summary");
    assert_eq!(s.count("chunk", TaskState::Assigned), 3);
}

/// The used challenges the store holds (redb: `challenges` and its expiry index, which must
/// agree).
fn used_challenges(f: Fixture) -> (Fixture, u64) {
    match &f.backing {
        Backing::Redb(_) => {
            let mut n = 0;
            let f = reopen_edited(f, |txn| {
                use redb::ReadableTableMetadata;
                let used: redb::TableDefinition<&str, u64> =
                    redb::TableDefinition::new("challenges");
                let by_expiry: redb::TableDefinition<(u64, &str), ()> =
                    redb::TableDefinition::new("challenges_by_expiry");
                n = txn
                    .open_table(used)
                    .expect("challenges")
                    .len()
                    .expect("len");
                let indexed = txn
                    .open_table(by_expiry)
                    .expect("challenges_by_expiry")
                    .len()
                    .expect("len");
                assert_eq!(indexed, n, "the expiry index holds every used challenge");
            });
            (f, n)
        }
        Backing::Postgres(url) => {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            let n = rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .expect("connect");
                tokio::spawn(conn);
                let row = client
                    .query_one("SELECT count(*) FROM challenges", &[])
                    .await
                    .expect("count challenges");
                row.get::<_, i64>(0)
            });
            (f, u64::try_from(n).expect("a count"))
        }
    }
}

/// A login purges expired challenges through the expiry index, at most `PURGE_PER_LOGIN` of them
/// (anyone can log in with a fresh key, so one login must not pay for a whole hour's logins),
/// and leaves those still valid; a used challenge is refused until it is purged.
#[test]
fn a_login_purges_a_bounded_number_of_expired_challenges() {
    use coordinator::store::{CHALLENGE_PURGE_GRACE_MS, PURGE_PER_LOGIN};
    let f = fixture(1);
    let extra = 100;
    let n = PURGE_PER_LOGIN as u64 + extra;
    for i in 0..n {
        assert!(f
            .store
            .use_challenge(&format!("c-{i}"), 1000 + i, 0)
            .expect("challenge"));
    }
    assert!(f
        .store
        .use_challenge("valid", 1_000_000, 0)
        .expect("challenge"));
    let (f, stored) = used_challenges(f);
    assert_eq!(stored, n + 1);
    // Every c-* has expired at 500,000: the oldest PURGE_PER_LOGIN go with this login.
    assert!(f
        .store
        .use_challenge("x", 2_000_000, 500_000)
        .expect("challenge"));
    let (f, stored) = used_challenges(f);
    assert_eq!(stored, extra + 2, "{PURGE_PER_LOGIN} purged, \"x\" added");
    // The next login purges the rest; "valid" has not expired and is still refused.
    assert!(!f
        .store
        .use_challenge("valid", 1_000_000, 500_000)
        .expect("challenge"));
    let (f, stored) = used_challenges(f);
    assert_eq!(stored, 2, "only \"valid\" and \"x\" left");
    assert!(
        f.store
            .use_challenge("c-0", 600_000, 500_000)
            .expect("challenge"),
        "a purged challenge is forgotten"
    );
    // A used challenge is kept past its expiry: its token is still accepted through the expiry's
    // second, and a login checking it then must find it used (an audit replayed one at exp +
    // 0.3 s when the purge ran at the expiry itself).
    assert!(f
        .store
        .use_challenge("late", 700_000, 600_000)
        .expect("challenge"));
    assert!(!f
        .store
        .use_challenge("late", 700_000, 700_300)
        .expect("challenge"));
    assert!(!f
        .store
        .use_challenge("late", 700_000, 700_000 + CHALLENGE_PURGE_GRACE_MS)
        .expect("challenge"));
    assert!(
        f.store
            .use_challenge("late", 700_000, 700_001 + CHALLENGE_PURGE_GRACE_MS)
            .expect("challenge"),
        "purged once past the grace"
    );
}

/// A store written before the challenges' expiry index (index version 3) gets it built when
/// opened: a challenge used before then is still refused, and purged once expired.
#[test]
fn a_store_from_before_the_challenge_index_still_purges_its_challenges() {
    let f = redb_fixture(1);
    assert!(f.store.use_challenge("old", 1000, 0).expect("challenge"));
    let f = reopen_edited(f, |txn| {
        let by_expiry: redb::TableDefinition<(u64, &str), ()> =
            redb::TableDefinition::new("challenges_by_expiry");
        assert!(txn
            .delete_table(by_expiry)
            .expect("delete challenges_by_expiry"));
        index_version(txn, Some(2));
    });
    let (f, stored) = used_challenges(f);
    assert_eq!(stored, 1);
    assert!(!f.store.use_challenge("old", 1000, 10).expect("challenge"));
    let grace = coordinator::store::CHALLENGE_PURGE_GRACE_MS;
    assert!(f
        .store
        .use_challenge("new", 200_000, 1001 + grace)
        .expect("challenge"));
    let (_, stored) = used_challenges(f);
    assert_eq!(stored, 1, "\"old\" purged once expired");
}

/// `prune` removes verified chunks already in a batch and verified batches changed before the
/// cut-off, with their proofs and assignments; unbatched, pending and newer tasks stay, the counts
/// follow, and the chain goes on (the next batch is still made from the chunks that stayed).
#[test]
fn prune_removes_only_finished_consumed_tasks_before_the_cutoff() {
    let f = fixture(5);
    let batch = BatchConfig {
        k: 16,
        num_chunks: 2,
        chunk: SMALL,
    };
    let p = Policy {
        batch: Some(batch),
        ..policy()
    };
    let a = prover("a", &[1, 2]);
    // chunk-0 and chunk-1 verified (batch-0 made), chunk-2 verified and waiting for chunk-3.
    for (i, now) in [(0, 10), (1, 20), (2, 30)] {
        let (t, _) = task(assign(&f.store, &a, &[1], &p, now));
        assert_eq!(t.task_id, format!("chunk-{i}"));
        verify(&f.store, &a, &t, &p, now + 1).expect("verified");
    }
    let (bt, _) = task(assign(&f.store, &a, &[2], &p, 40));
    assert_eq!(bt.task_id, "batch-0");
    // Nothing finished before t=5.
    assert_eq!(
        f.store.prune(5, p.consumers()).expect("prune"),
        Default::default()
    );
    // Before t=25: chunk-0 and chunk-1 (batched, verified at 11 and 21); not chunk-2 (unbatched),
    // not batch-0 (assigned).
    let pruned = f.store.prune(25, p.consumers()).expect("prune");
    assert_eq!(pruned.tasks.get("chunk"), Some(&2));
    assert_eq!(pruned.tasks.get("batch"), None);
    assert_eq!((pruned.proofs, pruned.assignments), (2, 2));
    counts_agree(&f.store);
    let s = f.store.status().expect("status");
    assert!(s.task("chunk-0").is_none() && s.task("chunk-1").is_none());
    assert!(f.store.proof("chunk-0").expect("read").is_none());
    assert!(f.store.proof("chunk-2").expect("read").is_some());
    assert_eq!(s.count("chunk", TaskState::Verified), 1);
    assert_eq!(s.count("chunk", TaskState::Pending), 2);
    // The batch still carries its chunks' proofs and can be verified, then pruned itself.
    let data: BatchTaskData = serde_json::from_str(&bt.task_data).expect("batch data");
    assert_eq!(data.chunk_proofs.len(), 2);
    verify(&f.store, &a, &bt, &p, 50).expect("batch verified");
    // The chain goes on: chunk-3 verified makes batch-1 from chunk-2 and chunk-3.
    let (t3, _) = task(assign(&f.store, &a, &[1], &p, 60));
    assert_eq!(t3.task_id, "chunk-3");
    let effects = verify(&f.store, &a, &t3, &p, 61).expect("verified");
    assert_eq!(effects.batch_created.as_deref(), Some("batch-1"));
    let pruned = f.store.prune(100, p.consumers()).expect("prune");
    assert_eq!(pruned.tasks.get("batch"), Some(&1), "batch-0, verified");
    assert_eq!(
        pruned.tasks.get("chunk"),
        Some(&2),
        "chunk-2 and chunk-3, now batched"
    );
    counts_agree(&f.store);
    let s = f.store.status().expect("status");
    let left: Vec<&str> = s.tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(left, ["chunk-4", "batch-1"]);
}

/// The plan of `statement` (prepared with parameter types `types`, run with `args`) on a fresh,
/// migrated database after `seed` (SQL, ending with an ANALYZE): EXPLAIN ANALYZE's JSON, as text.
fn pg_plan(url: &str, seed: &str, statement: &str, types: &str, args: &str) -> String {
    // Migrates the fresh database.
    drop(Store::open_postgres(url).expect("open PostgreSQL store"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        client.batch_execute(seed).await.expect("seed");
        // The statement as the store prepares it, with parameters (EXPLAIN's JSON column comes
        // back as text through the simple protocol).
        let messages = client
            .simple_query(&format!(
                "PREPARE walk ({types}) AS {statement}; \
                 EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE walk ({args})"
            ))
            .await
            .expect("explain");
        let text = messages
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .expect("a plan row");
        serde_json::from_str::<serde_json::Value>(&text)
            .expect("a JSON plan")
            .to_string()
    })
}

/// PostgreSQL only: the pending walk is planned as a walk of the pending index when the finished
/// history sorts before the pending tasks and the table has been analysed (the state of any
/// coordinator that has run a while). With another index that gave the same order (the unique
/// index on `ord` before migration V4), the planner walked it and filtered every finished task on
/// each get_task.
#[test]
fn the_pending_walk_reads_the_pending_index_behind_a_finished_history() {
    let Some(url) = common::fresh_database() else {
        eprintln!("no COORDINATOR_TEST_POSTGRES: a PostgreSQL plan (scripts/test)");
        return;
    };
    // 10,000 verified tasks, then 40,000 pending ones (the walk only needs the columns; the
    // shape of the load example, where the planner misjudged: with few pending tasks it did not).
    let text = pg_plan(
        &url,
        "INSERT INTO tasks (task_id, task_type, ord, state, updated_ms, record, payload) \
         SELECT 'h-' || i, 1, i, CASE WHEN i < 10000 THEN 'verified' ELSE 'pending' END, \
         0, '{}', '' FROM generate_series(0, 49999) AS i; ANALYZE tasks",
        coordinator::store::pg::PENDING_WALK,
        "smallint, bigint, bigint",
        "1, -1, 4",
    );
    assert!(
        text.contains("\"Index Name\":\"tasks_pending_by_type\""),
        "the pending walk is not planned on the pending index: {text}"
    );
    assert!(
        !text.contains("Rows Removed by Filter"),
        "the pending walk filters rows: {text}"
    );
}

/// PostgreSQL only: the failed-prover rule's walk of the provers seen recently reads the
/// last-seen index from the first recent key on, not the keys that went quiet (50,000 of them
/// here, as throwaway logins leave), and finds the recent ones.
#[test]
fn the_recent_provers_walk_reads_the_last_seen_index_past_quiet_keys() {
    let Some(url) = common::fresh_database() else {
        eprintln!("no COORDINATOR_TEST_POSTGRES: a PostgreSQL plan (scripts/test)");
        return;
    };
    let text = pg_plan(
        &url,
        "INSERT INTO provers (public_key, record, last_seen_ms) \
         SELECT 'q-' || i, '{}', CASE WHEN i < 50000 THEN i ELSE 1000000 + i END \
         FROM generate_series(0, 50009) AS i; ANALYZE provers",
        coordinator::store::pg::RECENT_PROVERS,
        "bigint, text, bigint",
        "1000000, '', 32",
    );
    assert!(
        text.contains("\"Index Name\":\"provers_by_seen\""),
        "the recent walk is not planned on the last-seen index: {text}"
    );
    assert!(
        !text.contains("Rows Removed by Filter"),
        "the recent walk filters rows: {text}"
    );
    assert!(
        text.contains("\"Actual Rows\":10"),
        "the recent walk does not find the 10 recent keys: {text}"
    );
}
