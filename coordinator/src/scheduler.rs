//! The scheduler's rules, apart from storage: plain functions over one storage transaction
//! ([`Txn`]), so that each decision and the state change it implies commit together on every
//! backend (redb or PostgreSQL; see [`crate::store`]).
//!
//! **Who can fail a task.** Keys are free, so a failure (a `status` 1 report, an invalid proof,
//! a timeout) counts towards `session_attempts` only when it comes from a *proven* key, one that
//! has delivered at least one verified proof. A failure from an unproven key puts the task back
//! to pending and is recorded (`unproven_failures`), and that key is not given the task again
//! until it has proven itself on another. Throwaway keys can therefore delay a task by at most
//! one assignment each, never fail it; once [`MAX_UNPROVEN_REMEMBERED`] keys have failed a task
//! (as many as its record remembers) it goes to proven keys only, so a swarm of fresh keys
//! cannot take it in turn for ever. An unproven key that has failed [`MAX_FAILED_PASSED`] of the
//! pending tasks gets no more (its walk past them would grow with each). A failed task goes
//! back to pending only through the operator's `requeue`, which clears its failed set.
//!
//! The other rules: one live assignment per public key (a `get_task` while one is live re-sends
//! it, same uuid); assignments time out (`sweep`, run by every `get_task` and by a timer); a task
//! is not handed to a prover that failed it while another prover that can take it is available;
//! blocked keys get nothing; `num_chunks` consecutive verified chunks make a batch task, and
//! `num_batches` consecutive verified batches a bundle task; verified bundles are enqueued for L1
//! settlement in chain order; a proof that arrives after its assignment timed out still verifies
//! the task.

use prover_core::rollup::Account;
use prover_core::wire::{
    BatchConfig, BatchTaskData, BundleConfig, BundleTaskData, ChunkTaskData, ProofPayload, Task,
    TaskType, HARD_FORK_NAME, TASK_DATA_VERSION,
};

use crate::store::{
    chunk_id, type_name, AssignOutcome, Assignment, AssignmentState, Effects, EnqueueError,
    ProverIdentity, ProverSeen, Reads, RequeueError, SubmitContext, SubmitError, TaskRecord,
    TaskState, Txn,
};
use crate::CoordinatorError;

type R<T> = Result<T, CoordinatorError>;

const NEXT_CHUNK_SEQ: &str = "next_chunk_seq";
const NEXT_BATCH_SEQ: &str = "next_batch_seq";
const NEXT_UNBATCHED: &str = "next_unbatched_chunk";
const NEXT_BUNDLE_SEQ: &str = "next_bundle_seq";
const NEXT_UNBUNDLED: &str = "next_unbundled_batch";
const NEXT_UNSETTLED: &str = "next_unsettled_bundle";
const NEXT_ORDER: &str = "next_order";

/// Pending tasks read per step of [`assign`]'s walk (most `get_task`s take the first).
const PENDING_PAGE: usize = 32;
/// Pending tasks read by the first step of that walk.
const FIRST_PENDING_PAGE: usize = 4;
/// Provers read at a time by the failed-prover rule.
const PROVERS_PAGE: usize = 32;

/// Most entries unproven keys may add to a task's failed set (see [`fail_once`]); a task whose
/// set is that large goes to proven keys only.
pub const MAX_UNPROVEN_REMEMBERED: usize = 64;

/// Pending tasks an unproven key's walk passes over because it failed them before the walk gives
/// up (no task): however many tasks a throwaway key fails, its get_task reads a bounded number.
pub const MAX_FAILED_PASSED: usize = 64;

/// The scheduler's parameters (from the configuration).
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub chunk_timeout_ms: u64,
    pub batch_timeout_ms: u64,
    pub bundle_timeout_ms: u64,
    pub session_attempts: u32,
    pub max_invalid_proofs: u32,
    pub prover_active_ms: u64,
    /// Batch creation (None: disabled).
    pub batch: Option<BatchConfig>,
    /// Bundle creation from consecutive verified batches (None: disabled).
    pub bundle: Option<BundleConfig>,
    /// Whether verified bundles are enqueued, in order, for settlement on L1.
    pub settle: bool,
}

impl Policy {
    pub fn from_config(c: &crate::CoordinatorConfig) -> Self {
        Self {
            chunk_timeout_ms: c.chunk_timeout_sec.saturating_mul(1000),
            batch_timeout_ms: c.batch_timeout_sec.saturating_mul(1000),
            bundle_timeout_ms: c.bundle_timeout_sec.saturating_mul(1000),
            session_attempts: c.session_attempts,
            max_invalid_proofs: c.max_invalid_proofs,
            prover_active_ms: c.prover_active_sec.saturating_mul(1000),
            batch: c.batch_enabled(),
            bundle: c.bundle_enabled(),
            settle: c.settlement.is_some(),
        }
    }
    fn timeout_ms(&self, task_type: u8) -> u64 {
        match TaskType::from_u8(task_type) {
            Ok(TaskType::Chunk) => self.chunk_timeout_ms,
            Ok(TaskType::Bundle) => self.bundle_timeout_ms,
            Ok(TaskType::Batch) | Err(_) => self.batch_timeout_ms,
        }
    }
    /// What consumes verified tasks of each level, for [`crate::store::Store::prune`].
    pub fn consumers(&self) -> Consumers {
        Consumers {
            bundles: self.bundle.is_some(),
            settlement: self.settle,
        }
    }
}

/// Whether verified batches are still to be bundled and verified bundles still to be settled:
/// such tasks are kept by `prune` until they are (a chunk is kept until it is batched).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Consumers {
    pub bundles: bool,
    pub settlement: bool,
}

/// Adds chunk tasks (in chain order) and the account state they lead to. Returns the new ids.
/// With `expected_seq`, only if the store's next chunk is that one (the chunks were built on the
/// state after its last chunk): replicas sharing a database each keep the state in memory, and
/// one whose state is behind gets [`EnqueueError::Stale`] instead of forking the chain.
pub fn enqueue_chunks(
    tx: &mut dyn Txn,
    chunks: &[ChunkTaskData],
    accounts: &[(u64, Account)],
    expected_seq: Option<u64>,
    now_ms: u64,
) -> R<Result<Vec<String>, EnqueueError>> {
    if let Some(expected) = expected_seq {
        // Read (and, on a shared database, locked) before anything is written.
        let next = tx.counter(NEXT_CHUNK_SEQ)?;
        if next != expected {
            return Ok(Err(EnqueueError::Stale {
                expected,
                found: next,
            }));
        }
    }
    let mut ids = Vec::with_capacity(chunks.len());
    for data in chunks {
        let seq = tx.bump(NEXT_CHUNK_SEQ)?;
        let id = chunk_id(seq);
        let payload =
            serde_json::to_string(data).map_err(|e| CoordinatorError::store("encode task", e))?;
        insert_task(tx, &id, TaskType::Chunk, seq, &payload, now_ms)?;
        ids.push(id);
    }
    tx.save_accounts(accounts)?;
    Ok(Ok(ids))
}

/// Writes the genesis accounts, only while no chunk was ever enqueued (the chain counter, read
/// and locked here, is the one every enqueue bumps): a replica starting on an empty store
/// never overwrites the accounts another replica's first enqueue wrote. Returns whether it
/// wrote them.
pub fn save_genesis(tx: &mut dyn Txn, accounts: &[(u64, Account)]) -> R<bool> {
    if tx.counter(NEXT_CHUNK_SEQ)? != 0 {
        return Ok(false);
    }
    tx.save_accounts(accounts)?;
    Ok(true)
}

/// The number of chunks ever enqueued (the next chunk's sequence number).
pub fn chunk_seq(tx: &mut dyn Txn) -> R<u64> {
    tx.counter(NEXT_CHUNK_SEQ)
}

fn insert_task(
    tx: &mut dyn Txn,
    id: &str,
    kind: TaskType,
    seq: u64,
    payload: &str,
    now_ms: u64,
) -> R<()> {
    let order = tx.bump(NEXT_ORDER)?;
    let rec = TaskRecord {
        task_id: id.to_string(),
        task_type: kind.as_u8(),
        seq,
        order,
        state: TaskState::Pending,
        attempts: 0,
        failures: 0,
        unproven_failures: 0,
        created_ms: now_ms,
        updated_ms: now_ms,
        failed_provers: Vec::new(),
        live: Vec::new(),
        prover: None,
        prover_name: None,
        prove_ms: None,
        verify_ms: None,
        result: None,
        batched: false,
    };
    tx.insert_task(&rec, payload)
}

/// Records one failed attempt of `task` on `prover`; it counts towards failing the task only if
/// `proven` (see the module doc). Returns true if the task is now failed.
pub fn fail_once(
    task: &mut TaskRecord,
    prover: &str,
    reason: &str,
    proven: bool,
    policy: &Policy,
) -> bool {
    // Unproven keys are free: they are remembered only while the failed set is smaller than
    // MAX_UNPROVEN_REMEMBERED, so a swarm of them cannot grow a task's record (and every scan of
    // it) without bound. From then on the task goes to proven keys only (`may_take`).
    if !task.failed_provers.iter().any(|p| p == prover)
        && (proven || task.failed_provers.len() < MAX_UNPROVEN_REMEMBERED)
    {
        task.failed_provers.push(prover.to_string());
    }
    if proven {
        task.failures += 1;
        task.result = Some(reason.to_string());
    } else {
        task.unproven_failures += 1;
        task.result = Some(format!(
            "{reason} (not counted: the key has no verified proof)"
        ));
    }
    if matches!(task.state, TaskState::Verified | TaskState::Failed) {
        return false;
    }
    if proven && task.failures >= policy.session_attempts {
        task.state = TaskState::Failed;
        return true;
    }
    if task.live.is_empty() && task.state == TaskState::Assigned {
        task.state = TaskState::Pending;
    }
    false
}

/// Returns timed-out assignments' tasks to the pool (or fails them after the attempt cap).
pub fn sweep(tx: &mut dyn Txn, policy: &Policy, now_ms: u64) -> R<Effects> {
    let mut effects = Effects::default();
    for mut a in tx.expired(now_ms)? {
        a.state = AssignmentState::TimedOut;
        tx.put_assignment(&a)?;
        tx.clear_outstanding(&a.public_key, &a.uuid)?;
        effects.timed_out += 1;
        if let Some(mut task) = tx.task(&a.task_id)? {
            task.live.retain(|u| u != &a.uuid);
            let proven = tx.proven(&a.public_key)?;
            if fail_once(
                &mut task,
                &a.public_key,
                "assignment timed out",
                proven,
                policy,
            ) {
                effects.tasks_failed += 1;
            }
            task.updated_ms = now_ms;
            tx.save_task(&task)?;
        }
    }
    Ok(effects)
}

fn wire_task(tx: &mut dyn Reads, a: &Assignment) -> R<Task> {
    let payload = tx.payload(&a.task_id)?.ok_or_else(|| {
        CoordinatorError::store("read payload", format!("task {} has no payload", a.task_id))
    })?;
    Ok(Task {
        uuid: a.uuid.clone(),
        task_id: a.task_id.clone(),
        task_type: a.task_type,
        task_data: payload,
        hard_fork_name: HARD_FORK_NAME.to_string(),
    })
}

/// `get_task`: note the caller as seen, sweep timeouts, then re-send the caller's outstanding
/// task or assign a new one.
pub fn assign(
    tx: &mut dyn Txn,
    who: &ProverIdentity,
    task_types: &[u8],
    policy: &Policy,
    now_ms: u64,
) -> R<(AssignOutcome, Effects)> {
    // First: on a shared database this write holds the caller's row until commit, so two
    // requests of one key (on two replicas) are decided one after the other.
    tx.seen(
        &who.public_key,
        &ProverSeen {
            name: who.prover_name.clone(),
            prover_types: who.prover_types.clone(),
            last_seen_ms: now_ms,
        },
    )?;
    let effects = sweep(tx, policy, now_ms)?;
    let outcome = assign_in(tx, who, task_types, policy, now_ms)?;
    Ok((outcome, effects))
}

/// Whether [`assign`] gave `outcome` and `effects` as an idle poll: nothing handed out, nothing
/// timed out, only the caller's last-seen time written. A crash that loses that write costs
/// nothing (the reply does not depend on it), so a transaction that did only that need not wait
/// for the disk ([`Txn::commit_lazily`]). A new assignment must: a prover would otherwise prove
/// a task the coordinator forgot it gave.
pub fn idle_poll(outcome: &AssignOutcome, effects: &Effects) -> bool {
    !matches!(outcome, AssignOutcome::Task { resent: false, .. }) && effects.timed_out == 0
}

fn assign_in(
    tx: &mut dyn Txn,
    who: &ProverIdentity,
    task_types: &[u8],
    policy: &Policy,
    now_ms: u64,
) -> R<AssignOutcome> {
    if let Some(reason) = tx.blocked(&who.public_key)? {
        return Ok(AssignOutcome::Blocked(format!(
            "prover is blocked: {reason}"
        )));
    }
    if let Some(uuid) = tx.outstanding(&who.public_key)? {
        if let Some(a) = tx.assignment(&uuid)? {
            if a.state == AssignmentState::Live {
                if !task_types.contains(&a.task_type) {
                    return Ok(AssignOutcome::Busy(format!(
                        "prover already holds {} task {} (uuid {}); finish or let it time out",
                        type_name(a.task_type),
                        a.task_id,
                        a.uuid
                    )));
                }
                return Ok(AssignOutcome::Task {
                    task: wire_task(tx, &a)?,
                    resent: true,
                });
            }
        }
    }
    let types: Vec<u8> = task_types
        .iter()
        .copied()
        .filter(|t| who.prover_types.contains(t))
        .collect();
    if types.is_empty() {
        return Ok(AssignOutcome::NoTask);
    }
    // The pending tasks of those types, oldest first, a page at a time (an index: the cost does
    // not grow with finished tasks).
    let mut chosen = None;
    let mut after = None;
    // The first page is small: the oldest candidate is usually the one taken, and each one read
    // is a record decoded inside the write transaction.
    let mut limit = FIRST_PENDING_PAGE;
    let mut proven = None;
    let mut passed = 0;
    'walk: loop {
        let page = tx.pending(&types, after, limit)?;
        let last = page.len() < limit;
        limit = PENDING_PAGE;
        let mut eligible = Vec::with_capacity(page.len());
        for candidate in &page {
            after = Some(candidate.order);
            if candidate.failed_provers.contains(&who.public_key)
                && !is_proven(tx, &who.public_key, &mut proven)?
            {
                passed += 1;
                if passed >= MAX_FAILED_PASSED {
                    break 'walk;
                }
                continue;
            }
            if may_take(tx, candidate, who, &mut proven, policy, now_ms)? {
                eligible.push(candidate.task_id.as_str());
            }
        }
        // Lock the first of them that is free, in one step: on a shared database the oldest
        // ones are often held by concurrent get_tasks, or taken since the page was read. The
        // rules are checked again on the task as it is now.
        while let Some(task) = tx.claim(&eligible)? {
            if may_take(tx, &task, who, &mut proven, policy, now_ms)? {
                chosen = Some(task);
                break 'walk;
            }
            match eligible.iter().position(|id| *id == task.task_id) {
                Some(i) => {
                    eligible.drain(..=i);
                }
                // Not one of those asked for: a backend fault, not a reason to loop.
                None => break,
            }
        }
        if last {
            break;
        }
    }
    let Some(mut task) = chosen else {
        return Ok(AssignOutcome::NoTask);
    };
    let a = Assignment {
        uuid: uuid::Uuid::new_v4().to_string(),
        task_id: task.task_id.clone(),
        task_type: task.task_type,
        public_key: who.public_key.clone(),
        prover_name: who.prover_name.clone(),
        assigned_ms: now_ms,
        deadline_ms: now_ms.saturating_add(policy.timeout_ms(task.task_type)),
        state: AssignmentState::Live,
    };
    task.state = TaskState::Assigned;
    task.attempts += 1;
    task.live.push(a.uuid.clone());
    task.prover = Some(a.public_key.clone());
    task.prover_name = Some(a.prover_name.clone());
    task.updated_ms = now_ms;
    tx.save_task(&task)?;
    tx.put_assignment(&a)?;
    tx.set_outstanding(&a.public_key, &a.uuid)?;
    Ok(AssignOutcome::Task {
        task: wire_task(tx, &a)?,
        resent: false,
    })
}

/// Whether `public_key` has delivered a verified proof, read once per request (`cache`).
fn is_proven(tx: &mut dyn Txn, public_key: &str, cache: &mut Option<bool>) -> R<bool> {
    if let Some(p) = *cache {
        return Ok(p);
    }
    let p = tx.proven(public_key)?;
    *cache = Some(p);
    Ok(p)
}

/// Whether pending task `task` may be given to `who` (the failed-prover rule; `proven` caches
/// whether `who` is proven).
fn may_take(
    tx: &mut dyn Txn,
    task: &TaskRecord,
    who: &ProverIdentity,
    proven: &mut Option<bool>,
    policy: &Policy,
    now_ms: u64,
) -> R<bool> {
    if task.state != TaskState::Pending {
        return Ok(false);
    }
    if !task.failed_provers.contains(&who.public_key) {
        // As many keys failed it as its record remembers: proven keys only (module doc).
        return Ok(task.failed_provers.len() < MAX_UNPROVEN_REMEMBERED
            || is_proven(tx, &who.public_key, proven)?);
    }
    // An unproven key that failed this task does not get it again (module doc).
    if !is_proven(tx, &who.public_key, proven)? {
        return Ok(false);
    }
    // Not to the same failed prover while another prover that can take it (declared the type,
    // asked for work recently or is busy with a live assignment — it asks again when done —, not
    // blocked, not failed on it) exists. Only those two groups are read (through indexes, a page
    // at a time, the walk ending at the first such prover): keys that went quiet cost nothing.
    let other = |tx: &mut dyn Txn, key: &str, seen: &ProverSeen| -> R<bool> {
        Ok(key != who.public_key
            && seen.prover_types.contains(&task.task_type)
            && !task.failed_provers.iter().any(|f| f == key)
            && tx.blocked(key)?.is_none())
    };
    let mut after = (
        now_ms.saturating_sub(policy.prover_active_ms),
        String::new(),
    );
    loop {
        let page = tx.recent_provers((after.0, &after.1), PROVERS_PAGE)?;
        let page_full = page.len() == PROVERS_PAGE;
        for (key, seen) in &page {
            if other(tx, key, seen)? {
                return Ok(false);
            }
        }
        match page.into_iter().last() {
            Some((key, seen)) if page_full => after = (seen.last_seen_ms, key),
            _ => break,
        }
    }
    let mut after: Option<String> = None;
    loop {
        let page = tx.busy_provers(after.as_deref(), PROVERS_PAGE)?;
        let page_full = page.len() == PROVERS_PAGE;
        for (key, seen) in &page {
            if other(tx, key, seen)? {
                return Ok(false);
            }
        }
        match page.into_iter().last() {
            Some((key, _)) if page_full => after = Some(key),
            _ => return Ok(true),
        }
    }
}

/// Checks a submission: the assignment exists, is the caller's, is not submitted, matches the
/// task, and the task is not verified. With the task as handed out (its payload, which the proof
/// is checked against): what the proof path reads before verification, outside a transaction
/// (the recording transaction makes the same checks).
pub fn check_submission(
    tx: &mut dyn Reads,
    public_key: &str,
    uuid: &str,
    task_id: &str,
    task_type: u8,
) -> R<Result<SubmitContext, SubmitError>> {
    let (assignment, task) = match checked(tx, public_key, uuid, task_id, task_type)? {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    let wire_task = wire_task(tx, &assignment)?;
    Ok(Ok(SubmitContext {
        assignment,
        task,
        wire_task,
    }))
}

/// [`check_submission`]'s checks, without reading the payload (what the recording
/// transactions need: they do not look at it).
fn checked(
    tx: &mut dyn Reads,
    public_key: &str,
    uuid: &str,
    task_id: &str,
    task_type: u8,
) -> R<Result<(Assignment, TaskRecord), SubmitError>> {
    let Some(a) = tx.assignment(uuid)? else {
        return Ok(Err(SubmitError::NoAssignment(uuid.to_string())));
    };
    if a.public_key != public_key {
        return Ok(Err(SubmitError::NotYours(uuid.to_string())));
    }
    if matches!(a.state, AssignmentState::Submitted) {
        return Ok(Err(SubmitError::Twice));
    }
    if a.task_id != task_id || a.task_type != task_type {
        return Ok(Err(SubmitError::Mismatch(format!(
            "assignment {uuid} is for {} task {}, not {} task {task_id}",
            type_name(a.task_type),
            a.task_id,
            type_name(task_type)
        ))));
    }
    let Some(task) = tx.task(&a.task_id)? else {
        return Err(CoordinatorError::store(
            "read task",
            format!("assignment {uuid} names a missing task {}", a.task_id),
        ));
    };
    if task.state == TaskState::Verified {
        return Ok(Err(SubmitError::AlreadyVerified(task.task_id)));
    }
    Ok(Ok((a, task)))
}

/// A failure report (`status` 1) or an invalid proof: the attempt is consumed, the prover joins
/// the task's failed set; with `invalid_proof` the key's invalid count grows and the key is
/// blocked at the cap.
#[allow(clippy::too_many_arguments)]
pub fn record_failure(
    tx: &mut dyn Txn,
    public_key: &str,
    uuid: &str,
    task_id: &str,
    task_type: u8,
    reason: &str,
    invalid_proof: bool,
    policy: &Policy,
    now_ms: u64,
) -> R<Result<Effects, SubmitError>> {
    let (mut a, mut task) = match checked(tx, public_key, uuid, task_id, task_type)? {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    let mut effects = Effects::default();
    let was_live = a.state == AssignmentState::Live;
    a.state = AssignmentState::Submitted;
    tx.put_assignment(&a)?;
    tx.clear_outstanding(&a.public_key, &a.uuid)?;
    if was_live {
        // A timed-out assignment's failure was already counted by the sweep.
        task.live.retain(|u| u != &a.uuid);
        let proven = tx.proven(&a.public_key)?;
        if fail_once(&mut task, &a.public_key, reason, proven, policy) {
            effects.tasks_failed += 1;
        }
    } else {
        task.result = Some(reason.to_string());
    }
    task.updated_ms = now_ms;
    tx.save_task(&task)?;
    if invalid_proof {
        let count = tx.add_invalid(public_key)?;
        if count >= u64::from(policy.max_invalid_proofs) {
            tx.block(public_key, &format!("{count} invalid proofs"))?;
            effects.blocked = true;
        }
    }
    Ok(Ok(effects))
}

/// A verified proof: store it, mark the task verified, free every prover holding it, and create
/// a batch task if enough consecutive chunks are now verified (a bundle task from batches, the
/// same way), or enqueue the verified bundles that are next in chain order for settlement.
#[allow(clippy::too_many_arguments)]
pub fn record_verified(
    tx: &mut dyn Txn,
    public_key: &str,
    uuid: &str,
    task_id: &str,
    task_type: u8,
    proof: &ProofPayload,
    verify_ms: u64,
    policy: &Policy,
    now_ms: u64,
) -> R<Result<Effects, SubmitError>> {
    let makes_batches = policy.batch.is_some() && task_type == TaskType::Chunk.as_u8();
    if makes_batches {
        // Batch creation reads and marks several chunks. On a shared database the counter's row
        // lock, taken before any task's, puts chunk verifications in one order; locking it
        // after this chunk's row would deadlock with the verification of the next chunk.
        tx.counter(NEXT_UNBATCHED)?;
    }
    let makes_bundles = policy.bundle.is_some() && task_type == TaskType::Batch.as_u8();
    if makes_bundles {
        tx.counter(NEXT_UNBUNDLED)?; // as above, for bundle creation
    }
    let settles = policy.settle && task_type == TaskType::Bundle.as_u8();
    if settles {
        tx.counter(NEXT_UNSETTLED)?; // as above, for the settlement order
    }
    let (mut a, mut task) = match checked(tx, public_key, uuid, task_id, task_type)? {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    a.state = AssignmentState::Submitted;
    tx.put_assignment(&a)?;
    tx.clear_outstanding(&a.public_key, &a.uuid)?;
    for other in std::mem::take(&mut task.live) {
        if other == a.uuid {
            continue;
        }
        if let Some(mut o) = tx.assignment(&other)? {
            o.state = AssignmentState::Superseded;
            tx.put_assignment(&o)?;
            tx.clear_outstanding(&o.public_key, &other)?;
        }
    }
    tx.add_proven(&a.public_key)?;
    task.state = TaskState::Verified;
    task.prover = Some(a.public_key.clone());
    task.prover_name = Some(a.prover_name.clone());
    task.prove_ms = Some(proof.meta.prove_ms);
    task.verify_ms = Some(verify_ms);
    task.result = Some("verified".into());
    task.updated_ms = now_ms;
    tx.save_task(&task)?;
    tx.put_proof(&task.task_id, proof)?;
    let mut effects = Effects::default();
    if let (true, Some(batch)) = (makes_batches, policy.batch) {
        effects.batch_created = make_batches(tx, batch, now_ms)?;
    }
    if let (true, Some(bundle)) = (makes_bundles, policy.bundle) {
        effects.bundle_created = make_bundles(tx, bundle, now_ms)?;
    }
    if settles {
        effects.settlement_enqueued = enqueue_settlements(tx, now_ms)?;
    }
    Ok(Ok(effects))
}

/// One level of aggregation: `n` consecutive verified tasks of the level below make one task.
struct Level<'a> {
    /// Counter of the first task below not yet part of a task of this level.
    next_unconsumed: &'static str,
    /// Counter of this level's task numbers.
    next_seq: &'static str,
    n: usize,
    below: fn(u64) -> String,
    here: fn(u64) -> String,
    task_type: TaskType,
    /// The task data over the proofs below, as JSON.
    payload: &'a dyn Fn(Vec<ProofPayload>) -> serde_json::Result<String>,
}

/// Creates tasks of `level` while `n` consecutive unconsumed tasks below are verified. Returns
/// the last id created.
fn make_level(tx: &mut dyn Txn, level: &Level, now_ms: u64) -> R<Option<String>> {
    let mut created = None;
    loop {
        // Read (and, on a shared database, locked) first: one creation at a time.
        let start = tx.counter(level.next_unconsumed)?;
        let mut proofs = Vec::with_capacity(level.n);
        let mut records = Vec::with_capacity(level.n);
        for seq in start..start + level.n as u64 {
            let Some((rec, proof)) = verified(tx, &(level.below)(seq))? else {
                return Ok(created);
            };
            proofs.push(proof);
            records.push(rec);
        }
        let payload =
            (level.payload)(proofs).map_err(|e| CoordinatorError::store("encode task", e))?;
        let seq = tx.bump(level.next_seq)?;
        let id = (level.here)(seq);
        insert_task(tx, &id, level.task_type, seq, &payload, now_ms)?;
        for mut rec in records {
            rec.batched = true;
            tx.save_task(&rec)?;
        }
        tx.set_counter(level.next_unconsumed, start + level.n as u64)?;
        created = Some(id);
    }
}

/// A task's record and proof, if it is verified.
fn verified(tx: &mut dyn Txn, id: &str) -> R<Option<(TaskRecord, ProofPayload)>> {
    let Some(rec) = tx.task(id)? else {
        return Ok(None);
    };
    if rec.state != TaskState::Verified {
        return Ok(None);
    }
    let proof = tx.proof(id)?.ok_or_else(|| {
        CoordinatorError::store("read proof", format!("verified {id} has no proof"))
    })?;
    Ok(Some((rec, proof)))
}

/// Creates batch tasks while `num_chunks` consecutive unbatched chunks are verified. Returns the
/// last batch id created.
fn make_batches(tx: &mut dyn Txn, batch: BatchConfig, now_ms: u64) -> R<Option<String>> {
    let payload = |chunk_proofs| {
        serde_json::to_string(&BatchTaskData {
            version: TASK_DATA_VERSION,
            config: batch,
            chunk_proofs,
        })
    };
    let level = Level {
        next_unconsumed: NEXT_UNBATCHED,
        next_seq: NEXT_BATCH_SEQ,
        n: batch.num_chunks,
        below: chunk_id,
        here: batch_id,
        task_type: TaskType::Batch,
        payload: &payload,
    };
    make_level(tx, &level, now_ms)
}

/// Creates bundle tasks while `num_batches` consecutive unbundled batches are verified. Returns
/// the last bundle id created.
fn make_bundles(tx: &mut dyn Txn, bundle: BundleConfig, now_ms: u64) -> R<Option<String>> {
    let payload = |batch_proofs| {
        serde_json::to_string(&BundleTaskData {
            version: TASK_DATA_VERSION,
            config: bundle,
            batch_proofs,
        })
    };
    let level = Level {
        next_unconsumed: NEXT_UNBUNDLED,
        next_seq: NEXT_BUNDLE_SEQ,
        n: bundle.num_batches,
        below: batch_id,
        here: bundle_id,
        task_type: TaskType::Bundle,
        payload: &payload,
    };
    make_level(tx, &level, now_ms)
}

/// Enqueues for settlement every verified bundle that is next in chain order (bundles may be
/// verified out of order; L1 takes them in order). Returns the last bundle enqueued.
fn enqueue_settlements(tx: &mut dyn Txn, now_ms: u64) -> R<Option<String>> {
    let mut enqueued = None;
    loop {
        let seq = tx.counter(NEXT_UNSETTLED)?;
        let id = bundle_id(seq);
        let Some((mut rec, proof)) = verified(tx, &id)? else {
            return Ok(enqueued);
        };
        crate::settle::enqueue_proof(tx, &id, &proof, now_ms)?;
        rec.batched = true;
        tx.save_task(&rec)?;
        tx.set_counter(NEXT_UNSETTLED, seq + 1)?;
        enqueued = Some(id);
    }
}

fn batch_id(seq: u64) -> String {
    format!("batch-{seq}")
}

fn bundle_id(seq: u64) -> String {
    format!("bundle-{seq}")
}

/// The operator's `requeue`: a failed task goes back to pending with its failure counts and
/// failed-prover set cleared (its attempt count and history stay).
pub fn requeue(tx: &mut dyn Txn, task_id: &str, now_ms: u64) -> R<Result<(), RequeueError>> {
    let Some(mut task) = tx.task(task_id)? else {
        return Ok(Err(RequeueError::NoSuchTask(task_id.to_string())));
    };
    if task.state != TaskState::Failed {
        return Ok(Err(RequeueError::NotFailed {
            task_id: task_id.to_string(),
            state: task.state.name(),
        }));
    }
    task.state = if task.live.is_empty() {
        TaskState::Pending
    } else {
        TaskState::Assigned
    };
    task.failures = 0;
    task.unproven_failures = 0;
    task.failed_provers.clear();
    task.result = Some("requeued by the operator".into());
    task.updated_ms = now_ms;
    tx.save_task(&task)?;
    Ok(Ok(()))
}

/// The live assignment of a public key, if any.
pub fn outstanding(tx: &mut dyn Txn, public_key: &str) -> R<Option<Assignment>> {
    match tx.outstanding(public_key)? {
        Some(uuid) => tx.assignment(&uuid),
        None => Ok(None),
    }
}
