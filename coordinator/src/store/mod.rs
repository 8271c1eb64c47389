//! The coordinator's store: every piece of state, behind a small storage trait with two
//! backends: **redb** (one embedded file, the default; [`redb`]) and **PostgreSQL** (shared by
//! several coordinator replicas; [`pg`]).
//!
//! The scheduler's rules are in [`crate::scheduler`], written against [`Txn`] (one write
//! transaction's reads and writes); [`Backend::write`] runs them in one transaction, so each
//! decision and the state change it implies commit together. The queries that are not rules
//! (status, metrics counts, challenges, prune) are [`Backend`] methods of their own.
//!
//! Records: [`TaskRecord`] (with its payload, the task_data JSON text, kept beside it),
//! [`Assignment`], the live assignment of each public key ("outstanding"), proofs, used challenge
//! nonces, blocked keys, invalid-proof counts, verified proofs delivered per key ("proven"),
//! [`ProverSeen`], the rollup accounts and named counters. Each backend keeps what makes
//! `get_task`, `submit_proof` and `/metrics` cost the same however many finished tasks there are:
//! the pending tasks in creation order and the counts per task type and state.
//!
//! All methods are blocking; async callers run them in `spawn_blocking`.

mod batch;
pub mod pg;
pub mod redb;

use std::collections::BTreeMap;
use std::path::Path;

use prover_core::rollup::Account;
use prover_core::wire::{ProofPayload, Task, TaskType};
use serde::{Deserialize, Serialize};

pub use crate::scheduler::{Consumers, Policy, MAX_FAILED_PASSED, MAX_UNPROVEN_REMEMBERED};
use crate::{scheduler, CoordinatorError};

type R<T> = Result<T, CoordinatorError>;

/// Lifecycle of a task.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for a prover.
    Pending,
    /// Handed to a prover; the assignment has not yet been submitted or timed out.
    Assigned,
    /// A valid proof is stored.
    Verified,
    /// `session_attempts` assignments failed or timed out (a late valid proof still verifies it).
    Failed,
}

impl TaskState {
    pub const ALL: [TaskState; 4] = [
        TaskState::Pending,
        TaskState::Assigned,
        TaskState::Verified,
        TaskState::Failed,
    ];
    pub fn name(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Verified => "verified",
            TaskState::Failed => "failed",
        }
    }
}

/// One task as stored (its payload is in the `payloads` table).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskRecord {
    pub task_id: String,
    pub task_type: u8,
    /// Position in its type's chain (chunk 0, 1, …; batch 0, 1, …).
    pub seq: u64,
    /// Global creation order (the scheduler hands out older tasks first).
    pub order: u64,
    pub state: TaskState,
    /// Assignments made.
    pub attempts: u32,
    /// Assignments of proven keys that failed, timed out or delivered an invalid proof.
    pub failures: u32,
    /// The same from keys without a verified proof: recorded, not counted towards failing.
    #[serde(default)]
    pub unproven_failures: u32,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Public keys of provers on which this task failed or timed out.
    pub failed_provers: Vec<String>,
    /// uuids of live assignments.
    pub live: Vec<String>,
    /// Public key and name of the last prover assigned (or the one whose proof was accepted).
    pub prover: Option<String>,
    pub prover_name: Option<String>,
    pub prove_ms: Option<u64>,
    pub verify_ms: Option<u64>,
    /// Last failure reason, or "verified".
    pub result: Option<String>,
    /// Consumed by the next level: a chunk part of a batch task, a batch part of a bundle task,
    /// a bundle enqueued for settlement.
    pub batched: bool,
}

/// State of one assignment.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentState {
    Live,
    TimedOut,
    Submitted,
    /// Another prover's proof verified the task first.
    Superseded,
}

/// One hand-out of a task to a prover.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Assignment {
    pub uuid: String,
    pub task_id: String,
    pub task_type: u8,
    pub public_key: String,
    pub prover_name: String,
    pub assigned_ms: u64,
    pub deadline_ms: u64,
    pub state: AssignmentState,
}

/// Last time a prover asked for work, and the task types it may be handed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProverSeen {
    pub name: String,
    pub prover_types: Vec<u8>,
    pub last_seen_ms: u64,
}

/// Who asks for work.
#[derive(Clone, Debug)]
pub struct ProverIdentity {
    pub public_key: String,
    pub prover_name: String,
    /// Task types it may be handed (from its login: declared prover types and vks; see
    /// `auth::check_vks`).
    pub prover_types: Vec<u8>,
}

/// Result of a `get_task`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AssignOutcome {
    /// A task (new, or the prover's outstanding one re-sent with the same uuid).
    Task {
        task: Task,
        resent: bool,
    },
    /// Nothing to do.
    NoTask,
    Blocked(String),
    /// The prover holds an outstanding assignment of a type it did not ask for.
    Busy(String),
}

/// Why a submission is refused (errcode 20003, except `Mismatch` which is 20001).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("no assignment with uuid {0}")]
    NoAssignment(String),
    #[error("assignment {0} belongs to another prover")]
    NotYours(String),
    #[error("cannot submit proof twice")]
    Twice,
    #[error("{0}")]
    Mismatch(String),
    #[error("task {0} is already verified")]
    AlreadyVerified(String),
}

/// Why an enqueue refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnqueueError {
    #[error(
        "the chunks were built after chunk {expected} but the store is at chunk {found} (another \
         replica enqueued); reload the state and build them again"
    )]
    Stale { expected: u64, found: u64 },
}

/// Why `requeue` refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequeueError {
    #[error("no task {0}")]
    NoSuchTask(String),
    #[error("task {task_id} is {state}; only a failed task can be requeued")]
    NotFailed {
        task_id: String,
        state: &'static str,
    },
}

/// What a submission is about, read before verification.
#[derive(Clone, Debug)]
pub struct SubmitContext {
    pub assignment: Assignment,
    pub task: TaskRecord,
    /// The task as handed out (for `payload()`).
    pub wire_task: Task,
}

/// A sweep or a submission's side effects, for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    pub timed_out: u64,
    pub tasks_failed: u64,
    pub batch_created: Option<String>,
    pub bundle_created: Option<String>,
    /// The last verified bundle enqueued for settlement.
    pub settlement_enqueued: Option<String>,
    pub blocked: bool,
}

/// One row of the status report.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskRow {
    pub task_id: String,
    pub task_type: String,
    pub state: TaskState,
    pub attempts: u32,
    pub failures: u32,
    #[serde(default)]
    pub unproven_failures: u32,
    pub prover: Option<String>,
    pub prover_name: Option<String>,
    pub prove_ms: Option<u64>,
    pub verify_ms: Option<u64>,
    pub result: Option<String>,
}

/// `coordinator status`: counts per task type and state, every task, blocked keys.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct StatusReport {
    /// type name → state name → count (every state listed, zeros included).
    pub counts: BTreeMap<String, BTreeMap<String, u64>>,
    pub tasks: Vec<TaskRow>,
    pub blocked: Vec<String>,
    /// Invalid proofs counted per public key.
    pub invalid_proofs: BTreeMap<String, u64>,
    /// The L1 settlement view (when settlement is configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l1: Option<crate::settle::L1Summary>,
}

impl StatusReport {
    /// Every task type and state listed with a count of 0.
    pub fn zeroed() -> Self {
        let mut report = Self::default();
        for t in [TaskType::Chunk, TaskType::Batch, TaskType::Bundle] {
            let m = report.counts.entry(t.name().to_string()).or_default();
            for s in TaskState::ALL {
                m.insert(s.name().to_string(), 0);
            }
        }
        report
    }

    pub fn count(&self, task_type: &str, state: TaskState) -> u64 {
        self.counts
            .get(task_type)
            .and_then(|m| m.get(state.name()))
            .copied()
            .unwrap_or(0)
    }
    pub fn task(&self, task_id: &str) -> Option<&TaskRow> {
        self.tasks.iter().find(|t| t.task_id == task_id)
    }
}

/// What `prune` removed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pruned {
    /// Task type name → tasks removed.
    pub tasks: BTreeMap<String, u64>,
    pub proofs: u64,
    pub assignments: u64,
}

/// Name of a task type number for reports.
pub fn type_name(t: u8) -> String {
    TaskType::from_u8(t)
        .map(|t| t.name().to_string())
        .unwrap_or_else(|_| format!("type{t}"))
}

/// The id of chunk `seq`.
pub fn chunk_id(seq: u64) -> String {
    format!("chunk-{seq}")
}

/// The reads a check before a decision needs ([`Backend::read`]), also part of every write
/// transaction ([`Txn`]).
pub trait Reads {
    fn task(&mut self, task_id: &str) -> R<Option<TaskRecord>>;
    fn assignment(&mut self, uuid: &str) -> R<Option<Assignment>>;
    fn payload(&mut self, task_id: &str) -> R<Option<String>>;
    /// The uuid of the live assignment of `public_key`.
    fn outstanding(&mut self, public_key: &str) -> R<Option<String>>;
}

/// The reads and writes of one write transaction: what the scheduler's rules are made of. A
/// backend commits them all or none. On a shared database, reads of tasks, assignments and
/// counters lock what they return until the end of the transaction (the rules write back what
/// they read); [`Txn::pending`] reads without locking (candidates), [`Txn::claim`] locks the
/// one chosen, and [`Txn::claim`] and [`Txn::expired`] skip rows another transaction holds.
pub trait Txn: Reads {
    /// A new task with its payload (the task_data JSON text).
    fn insert_task(&mut self, task: &TaskRecord, payload: &str) -> R<()>;
    /// Writes an existing task back (and moves it between the backend's indexes).
    fn save_task(&mut self, task: &TaskRecord) -> R<()>;
    /// Up to `limit` pending tasks of `task_types`, in creation order, after order `after`:
    /// candidates, not locked (on a shared database another transaction may take one first).
    fn pending(
        &mut self,
        task_types: &[u8],
        after: Option<u64>,
        limit: usize,
    ) -> R<Vec<TaskRecord>>;
    /// The first of `task_ids` (given oldest first, as `pending` returns them) that is pending
    /// and that no other transaction holds, as it is now, locked for this transaction; `None`
    /// when there is none (or `task_ids` is empty).
    fn claim(&mut self, task_ids: &[&str]) -> R<Option<TaskRecord>>;
    fn put_assignment(&mut self, a: &Assignment) -> R<()>;
    /// The live assignments whose deadline is not after `now_ms`.
    fn expired(&mut self, now_ms: u64) -> R<Vec<Assignment>>;
    fn set_outstanding(&mut self, public_key: &str, uuid: &str) -> R<()>;
    /// Clears the outstanding entry of `public_key` if it is `uuid`.
    fn clear_outstanding(&mut self, public_key: &str, uuid: &str) -> R<()>;
    /// Records `public_key`'s request (and moves it in the backend's last-seen index).
    fn seen(&mut self, public_key: &str, seen: &ProverSeen) -> R<()>;
    /// Up to `limit` provers in (last seen, key) order whose (last seen, key) comes after
    /// `after`: from `(t, "")`, those seen at or after `t`. Read through an index, so the keys
    /// that went quiet before `t` cost nothing however many there are.
    fn recent_provers(&mut self, after: (u64, &str), limit: usize) -> R<Vec<(String, ProverSeen)>>;
    /// Up to `limit` provers holding a live assignment, in key order, after key `after`.
    fn busy_provers(&mut self, after: Option<&str>, limit: usize) -> R<Vec<(String, ProverSeen)>>;
    /// Whether the key has delivered a verified proof.
    fn proven(&mut self, public_key: &str) -> R<bool>;
    fn add_proven(&mut self, public_key: &str) -> R<()>;
    fn blocked(&mut self, public_key: &str) -> R<Option<String>>;
    fn block(&mut self, public_key: &str, reason: &str) -> R<()>;
    /// Unblocks a key and resets its invalid-proof count; whether it was blocked.
    fn unblock(&mut self, public_key: &str) -> R<bool>;
    /// Adds one to the key's invalid-proof count; the new count.
    fn add_invalid(&mut self, public_key: &str) -> R<u64>;
    fn proof(&mut self, task_id: &str) -> R<Option<ProofPayload>>;
    fn put_proof(&mut self, task_id: &str, proof: &ProofPayload) -> R<()>;
    /// A named counter (0 when never set).
    fn counter(&mut self, name: &str) -> R<u64>;
    fn set_counter(&mut self, name: &str, v: u64) -> R<()>;
    /// Adds one to a counter; its value before.
    fn bump(&mut self, name: &str) -> R<u64> {
        let v = self.counter(name)?;
        self.set_counter(name, v + 1)?;
        Ok(v)
    }
    fn save_accounts(&mut self, accounts: &[(u64, Account)]) -> R<()>;
    /// Settlement record `index` (JSON text of [`crate::settle::Settlement`]), locked for the
    /// rest of the transaction where the backend locks rows.
    fn settlement(&mut self, index: u64) -> R<Option<String>>;
    fn put_settlement(&mut self, index: u64, record: &str) -> R<()>;
    /// Says that losing this transaction in a crash would cost nothing: its reply depends on
    /// nothing it wrote (a `get_task` that handed nothing out and only noted the caller as
    /// seen: [`scheduler::idle_poll`]; said by whoever knows everything the transaction holds).
    /// The backend may then commit it without waiting for the disk. PostgreSQL does
    /// (`synchronous_commit = off` for this transaction: atomic and in order, and made durable
    /// by the next durable commit or within the WAL writer's delay). redb does not: its grouped
    /// commit already shares one fsync among concurrent callers, and it frees pages only in
    /// durable commits, so an idle network committing only lazily would grow its file.
    fn commit_lazily(&mut self) {}
}

/// Expired challenges removed by one login at most: a login's cost stays bounded however many
/// expire together (anyone can log in with a fresh key), and the rest go with the next logins.
pub const PURGE_PER_LOGIN: usize = 1000;

/// How long past its expiry a used challenge is kept before it may be purged. A token's `exp` is
/// in whole seconds and is accepted through that second, and the login that checked it records
/// its nonce a little later: a purge at the expiry itself let a used challenge be replayed in its
/// last second (found by an audit, 2026-12-05).
pub const CHALLENGE_PURGE_GRACE_MS: u64 = 60_000;

/// A storage backend.
pub trait Backend: Send + Sync {
    /// Runs `f` in one write transaction and commits it when `f` returns `Ok`. A backend shared
    /// with other processes may run `f` again after the database reports a conflict
    /// (serialization failure, deadlock), so `f` must not have effects outside the transaction.
    fn write(&self, f: &mut dyn FnMut(&mut dyn Txn) -> R<()>) -> R<()>;
    /// Runs `f` over the committed state, locking nothing and waiting for no commit (redb: a
    /// read transaction; PostgreSQL: each read a statement of its own, outside a transaction).
    /// What it reads may change before the next write transaction, which must check again.
    fn read(&self, f: &mut dyn FnMut(&mut dyn Reads) -> R<()>) -> R<()>;
    /// The number of tasks (for `/health`; cheap).
    fn health(&self) -> R<u64>;
    fn load_accounts(&self) -> R<Vec<(u64, Account)>>;
    /// Records a challenge nonce as used until `exp_ms`; false if it was already used. Entries
    /// that expired before `purge_before_ms` are purged, at most [`PURGE_PER_LOGIN`] per call,
    /// found through an index on the expiry (not a scan of those still valid).
    fn use_challenge(&self, nonce: &str, exp_ms: u64, purge_before_ms: u64) -> R<bool>;
    /// See [`Store::prune`].
    fn prune(&self, before_ms: u64, consumers: Consumers) -> R<Pruned>;
    /// Every task, in creation order, with the counts and the keys.
    fn status(&self) -> R<StatusReport>;
    /// The counts only (cost independent of finished tasks and of the keys ever seen).
    fn summary(&self) -> R<StatusReport>;
    /// See [`Store::lazy_commits`].
    fn lazy_commits(&self) -> u64 {
        0
    }
}

/// The store: a backend and the scheduler's operations over it.
pub struct Store {
    backend: Box<dyn Backend>,
}

impl Store {
    /// Opens (or creates) a redb store file.
    pub fn open(path: &Path) -> R<Self> {
        Ok(Self {
            backend: Box::new(redb::RedbBackend::open(path)?),
        })
    }

    /// Connects to a PostgreSQL database (`postgresql://…` URL) with the default pool
    /// ([`pg::DEFAULT_POOL_SIZE`]) and applies its migrations.
    pub fn open_postgres(url: &str) -> R<Self> {
        Self::open_postgres_pooled(url, pg::DEFAULT_POOL_SIZE)
    }

    /// As [`Store::open_postgres`], with at most `pool_size` connections.
    pub fn open_postgres_pooled(url: &str, pool_size: usize) -> R<Self> {
        Ok(Self {
            backend: Box::new(pg::PgBackend::connect(url, pool_size)?),
        })
    }

    /// The backend named by the configuration: PostgreSQL when `database_url` is set, else the
    /// redb file `db_path`.
    pub fn from_config(config: &crate::CoordinatorConfig) -> R<Self> {
        match &config.database_url {
            Some(url) => Self::open_postgres_pooled(url, config.database_pool_size),
            None => Self::open(&config.db_path),
        }
    }

    /// Runs `f` in one write transaction (see [`Backend::write`]): the scheduler's functions
    /// (or several of them, committed together; tools seeding a store use this).
    pub fn transaction<T>(&self, mut f: impl FnMut(&mut dyn Txn) -> R<T>) -> R<T> {
        let mut out = None;
        self.backend.write(&mut |tx| {
            out = Some(f(tx)?);
            Ok(())
        })?;
        out.ok_or_else(|| CoordinatorError::store("write", "the transaction returned nothing"))
    }

    /// A cheap read of the store (for `/health`): the number of tasks.
    pub fn health(&self) -> R<u64> {
        self.backend.health()
    }

    /// Write transactions committed without waiting for the disk ([`Txn::commit_lazily`]) since
    /// the store was opened (always 0 on redb).
    pub fn lazy_commits(&self) -> u64 {
        self.backend.lazy_commits()
    }

    /// The persisted rollup accounts (empty for a new store).
    pub fn load_accounts(&self) -> R<Vec<(u64, Account)>> {
        self.backend.load_accounts()
    }

    /// See [`scheduler::save_genesis`]. One transaction.
    pub fn save_genesis(&self, accounts: &[(u64, Account)]) -> R<bool> {
        self.transaction(|tx| scheduler::save_genesis(tx, accounts))
    }

    /// Adds chunk tasks (in chain order) and the account state they lead to, in one transaction.
    /// Returns the new task ids.
    pub fn enqueue_chunks(
        &self,
        chunks: &[prover_core::wire::ChunkTaskData],
        accounts: &[(u64, Account)],
        now_ms: u64,
    ) -> R<Vec<String>> {
        self.transaction(|tx| scheduler::enqueue_chunks(tx, chunks, accounts, None, now_ms))?
            .map_err(|e| CoordinatorError::store("enqueue", e))
    }

    /// The same, only if the store's next chunk is `expected_seq` (see
    /// [`scheduler::enqueue_chunks`]).
    pub fn enqueue_chunks_at(
        &self,
        expected_seq: u64,
        chunks: &[prover_core::wire::ChunkTaskData],
        accounts: &[(u64, Account)],
        now_ms: u64,
    ) -> R<Result<Vec<String>, EnqueueError>> {
        self.transaction(|tx| {
            scheduler::enqueue_chunks(tx, chunks, accounts, Some(expected_seq), now_ms)
        })
    }

    /// The number of chunks ever enqueued.
    pub fn chunk_seq(&self) -> R<u64> {
        self.transaction(scheduler::chunk_seq)
    }

    /// Returns timed-out assignments' tasks to the pool (or fails them after the attempt cap).
    pub fn sweep(&self, policy: &Policy, now_ms: u64) -> R<Effects> {
        self.transaction(|tx| scheduler::sweep(tx, policy, now_ms))
    }

    /// `get_task`: sweep timeouts, then re-send the caller's outstanding task or assign a new one.
    /// One transaction; an idle poll's is committed lazily ([`scheduler::idle_poll`]).
    pub fn assign(
        &self,
        who: &ProverIdentity,
        task_types: &[u8],
        policy: &Policy,
        now_ms: u64,
    ) -> R<(AssignOutcome, Effects)> {
        self.transaction(|tx| {
            let (outcome, effects) = scheduler::assign(tx, who, task_types, policy, now_ms)?;
            // The transaction holds this decision only, so the decision alone says whether it
            // may be lost.
            if scheduler::idle_poll(&outcome, &effects) {
                tx.commit_lazily();
            }
            Ok((outcome, effects))
        })
    }

    /// Checks a submission before verification: the assignment exists, is the caller's, is not
    /// submitted, matches the task, and the task is not verified. Reads only ([`Backend::read`]):
    /// it neither waits for nor holds anything, and the transaction that records the outcome
    /// makes the same checks again.
    pub fn submit_context(
        &self,
        public_key: &str,
        uuid: &str,
        task_id: &str,
        task_type: u8,
    ) -> R<Result<SubmitContext, SubmitError>> {
        let mut out = None;
        self.backend.read(&mut |tx| {
            out = Some(scheduler::check_submission(
                tx, public_key, uuid, task_id, task_type,
            )?);
            Ok(())
        })?;
        out.ok_or_else(|| CoordinatorError::store("read", "the read returned nothing"))
    }

    /// See [`scheduler::record_failure`]. One transaction.
    #[allow(clippy::too_many_arguments)]
    pub fn record_failure(
        &self,
        public_key: &str,
        uuid: &str,
        task_id: &str,
        task_type: u8,
        reason: &str,
        invalid_proof: bool,
        policy: &Policy,
        now_ms: u64,
    ) -> R<Result<Effects, SubmitError>> {
        self.transaction(|tx| {
            scheduler::record_failure(
                tx,
                public_key,
                uuid,
                task_id,
                task_type,
                reason,
                invalid_proof,
                policy,
                now_ms,
            )
        })
    }

    /// See [`scheduler::record_verified`]. One transaction.
    #[allow(clippy::too_many_arguments)]
    pub fn record_verified(
        &self,
        public_key: &str,
        uuid: &str,
        task_id: &str,
        task_type: u8,
        proof: &ProofPayload,
        verify_ms: u64,
        policy: &Policy,
        now_ms: u64,
    ) -> R<Result<Effects, SubmitError>> {
        self.transaction(|tx| {
            scheduler::record_verified(
                tx, public_key, uuid, task_id, task_type, proof, verify_ms, policy, now_ms,
            )
        })
    }

    /// A task's payload (its task_data JSON text).
    pub fn payload(&self, task_id: &str) -> R<Option<String>> {
        self.transaction(|tx| tx.payload(task_id))
    }

    /// The stored proof of a verified task.
    pub fn proof(&self, task_id: &str) -> R<Option<ProofPayload>> {
        self.transaction(|tx| tx.proof(task_id))
    }

    /// Records a challenge nonce as used until `exp_ms`; false if it was already used. Entries
    /// expired more than [`CHALLENGE_PURGE_GRACE_MS`] before `now_ms` are purged in the same
    /// transaction (at most [`PURGE_PER_LOGIN`]).
    pub fn use_challenge(&self, nonce: &str, exp_ms: u64, now_ms: u64) -> R<bool> {
        self.backend.use_challenge(
            nonce,
            exp_ms,
            now_ms.saturating_sub(CHALLENGE_PURGE_GRACE_MS),
        )
    }

    /// Blocks a public key (its outstanding assignment stays until it times out or is submitted).
    pub fn block(&self, public_key: &str, reason: &str) -> R<()> {
        self.transaction(|tx| tx.block(public_key, reason))
    }

    /// Unblocks a key and resets its invalid-proof count. Returns whether it was blocked.
    pub fn unblock(&self, public_key: &str) -> R<bool> {
        self.transaction(|tx| tx.unblock(public_key))
    }

    /// The operator's `requeue` (see [`scheduler::requeue`]).
    pub fn requeue(&self, task_id: &str, now_ms: u64) -> R<Result<(), RequeueError>> {
        self.transaction(|tx| scheduler::requeue(tx, task_id, now_ms))
    }

    /// The operator's `prune`: removes the finished tasks last changed before `before_ms` — a
    /// verified chunk once it is part of a batch task (its proof lives on in the batch's payload),
    /// a verified batch once it is part of a bundle (or at once when `consumers` say bundles are
    /// off), a verified bundle once it is enqueued for settlement (or at once without settlement)
    /// — with their payloads, proofs and assignments, in one transaction. Pending, assigned and
    /// failed tasks, and verified tasks still to be consumed, stay. Returns what
    /// was removed. Walks the verified tasks: an operator's command, not a request path.
    pub fn prune(&self, before_ms: u64, consumers: Consumers) -> R<Pruned> {
        self.backend.prune(before_ms, consumers)
    }

    /// Everything `coordinator status` shows.
    pub fn status(&self) -> R<StatusReport> {
        self.backend.status()
    }

    /// What `/metrics` shows: counts per task type and state, from indexes (neither the task
    /// list nor the blocked keys and invalid-proof counts, tables any key can grow).
    pub fn summary(&self) -> R<StatusReport> {
        self.backend.summary()
    }

    /// The live assignment of a public key, if any.
    pub fn outstanding(&self, public_key: &str) -> R<Option<Assignment>> {
        self.transaction(|tx| scheduler::outstanding(tx, public_key))
    }

    /// Whether `public_key` holds a live assignment, as committed (a read: no transaction to
    /// wait for, nothing locked).
    pub fn holds_live_assignment(&self, public_key: &str) -> R<bool> {
        let mut live = false;
        self.backend.read(&mut |r| {
            live = r.outstanding(public_key)?.is_some();
            Ok(())
        })?;
        Ok(live)
    }
}

/// Whether a pruned task may go: verified, consumed (a chunk in a batch; a batch in a bundle, or
/// any batch when bundles are off; a bundle enqueued for settlement, or any bundle when
/// settlement is off), no live assignment, last changed before `before_ms`.
pub(crate) fn prunable(rec: &TaskRecord, before_ms: u64, consumers: Consumers) -> bool {
    let consumed = rec.batched
        || match TaskType::from_u8(rec.task_type) {
            Ok(TaskType::Chunk) => false,
            Ok(TaskType::Batch) => !consumers.bundles,
            Ok(TaskType::Bundle) => !consumers.settlement,
            Err(_) => true,
        };
    rec.state == TaskState::Verified
        && consumed
        && rec.live.is_empty()
        && rec.updated_ms < before_ms
}

/// A task's row in the status report.
pub(crate) fn task_row(rec: TaskRecord) -> TaskRow {
    TaskRow {
        task_type: type_name(rec.task_type),
        task_id: rec.task_id,
        state: rec.state,
        attempts: rec.attempts,
        failures: rec.failures,
        unproven_failures: rec.unproven_failures,
        prover: rec.prover,
        prover_name: rec.prover_name,
        prove_ms: rec.prove_ms,
        verify_ms: rec.verify_ms,
        result: rec.result,
    }
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> R<String> {
    serde_json::to_string(v).map_err(|e| CoordinatorError::store("encode record", e))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> R<T> {
    serde_json::from_str(s).map_err(|e| CoordinatorError::store("decode record", e))
}
