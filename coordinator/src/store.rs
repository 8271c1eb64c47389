//! The coordinator's store: one redb file, every state change one write transaction.
//!
//! Tables (keys and values are strings or integers; records are JSON):
//! `tasks` task id → [`TaskRecord`]; `payloads` task id → task_data JSON text; `assignments`
//! uuid → [`Assignment`]; `outstanding` public key → uuid of its live assignment; `proofs` task id →
//! proof JSON; `challenges` challenge nonce → expiry (ms); `blocked` public key → reason;
//! `invalid_proofs` public key → count; `proven` public key → verified proofs delivered;
//! `provers` public key → [`ProverSeen`]; `accounts` index → account JSON (the rollup state);
//! `counters` name → value; two indexes kept in step with `tasks` by every write of a task
//! ([`save_task`]): `pending_by_order` creation order → task id of every pending task (what
//! `get_task` walks, oldest first) and `task_counts` "type/state" → tasks in that state (what
//! `/metrics` reads). So neither costs more as finished tasks pile up; a store made before the
//! indexes gets them built once when opened.
//!
//! **Who can fail a task.** Keys are free, so a failure (a `status` 1 report, an invalid proof,
//! a timeout) counts towards `session_attempts` only when it comes from a *proven* key, one that
//! has delivered at least one verified proof. A failure from an unproven key puts the task back
//! to pending and is recorded (`unproven_failures`), and that key is not given the task again
//! until it has proven itself on another. Throwaway keys can therefore delay a task by at most
//! one assignment each, never fail it. A failed task goes back to pending only through the
//! operator's `requeue`.
//!
//! The scheduler lives here because its decisions and the state changes they imply must commit
//! together. All methods are blocking; async callers run them in `spawn_blocking`.

use std::collections::BTreeMap;
use std::path::Path;

use prover_core::rollup::Account;
use prover_core::wire::{
    BatchConfig, BatchTaskData, ChunkTaskData, ProofPayload, Task, TaskType, HARD_FORK_NAME,
    TASK_DATA_VERSION,
};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::CoordinatorError;

const TASKS: TableDefinition<&str, &str> = TableDefinition::new("tasks");
const PAYLOADS: TableDefinition<&str, &str> = TableDefinition::new("payloads");
const ASSIGNMENTS: TableDefinition<&str, &str> = TableDefinition::new("assignments");
const OUTSTANDING: TableDefinition<&str, &str> = TableDefinition::new("outstanding");
const PROOFS: TableDefinition<&str, &str> = TableDefinition::new("proofs");
const CHALLENGES: TableDefinition<&str, u64> = TableDefinition::new("challenges");
const BLOCKED: TableDefinition<&str, &str> = TableDefinition::new("blocked");
const INVALID: TableDefinition<&str, u64> = TableDefinition::new("invalid_proofs");
const PROVEN: TableDefinition<&str, u64> = TableDefinition::new("proven");
const PROVERS: TableDefinition<&str, &str> = TableDefinition::new("provers");
const ACCOUNTS: TableDefinition<u64, &str> = TableDefinition::new("accounts");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
const PENDING: TableDefinition<u64, &str> = TableDefinition::new("pending_by_order");
const TASK_COUNTS: TableDefinition<&str, u64> = TableDefinition::new("task_counts");

const NEXT_CHUNK_SEQ: &str = "next_chunk_seq";
const NEXT_BATCH_SEQ: &str = "next_batch_seq";
const NEXT_UNBATCHED: &str = "next_unbatched_chunk";
const NEXT_ORDER: &str = "next_order";
/// 1 once `pending_by_order` and `task_counts` hold every task.
const INDEX_VERSION: &str = "index_version";

/// Maps any displayable error to a store error naming the operation.
trait Ctx<T> {
    fn ctx(self, what: &'static str) -> Result<T, CoordinatorError>;
}

impl<T, E: std::fmt::Display> Ctx<T> for Result<T, E> {
    fn ctx(self, what: &'static str) -> Result<T, CoordinatorError> {
        self.map_err(|e| CoordinatorError::store(what, e))
    }
}

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
    /// For a chunk: already part of a batch task.
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

/// The scheduler's parameters (from the configuration).
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub chunk_timeout_ms: u64,
    pub batch_timeout_ms: u64,
    pub session_attempts: u32,
    pub max_invalid_proofs: u32,
    pub prover_active_ms: u64,
    /// Batch creation (None: disabled).
    pub batch: Option<BatchConfig>,
}

impl Policy {
    pub fn from_config(c: &crate::CoordinatorConfig) -> Self {
        Self {
            chunk_timeout_ms: c.chunk_timeout_sec.saturating_mul(1000),
            batch_timeout_ms: c.batch_timeout_sec.saturating_mul(1000),
            session_attempts: c.session_attempts,
            max_invalid_proofs: c.max_invalid_proofs,
            prover_active_ms: c.prover_active_sec.saturating_mul(1000),
            batch: c.batch_enabled(),
        }
    }
    fn timeout_ms(&self, task_type: u8) -> u64 {
        if task_type == TaskType::Chunk.as_u8() {
            self.chunk_timeout_ms
        } else {
            self.batch_timeout_ms
        }
    }
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
}

impl StatusReport {
    /// Every task type and state listed with a count of 0.
    fn zeroed() -> Self {
        let mut report = Self::default();
        for t in [TaskType::Chunk, TaskType::Batch] {
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

/// The store.
pub struct Store {
    db: Database,
}

fn to_json<T: Serialize>(v: &T) -> Result<String, CoordinatorError> {
    serde_json::to_string(v).ctx("encode record")
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, CoordinatorError> {
    serde_json::from_str(s).ctx("decode record")
}

fn get_json<T: serde::de::DeserializeOwned>(
    txn: &WriteTransaction,
    table: TableDefinition<&str, &str>,
    key: &str,
) -> Result<Option<T>, CoordinatorError> {
    let t = txn.open_table(table).ctx("open table")?;
    let v = t.get(key).ctx("read")?;
    match v {
        Some(g) => Ok(Some(from_json(g.value())?)),
        None => Ok(None),
    }
}

fn put_json<T: Serialize>(
    txn: &WriteTransaction,
    table: TableDefinition<&str, &str>,
    key: &str,
    value: &T,
) -> Result<(), CoordinatorError> {
    let text = to_json(value)?;
    let mut t = txn.open_table(table).ctx("open table")?;
    t.insert(key, text.as_str()).ctx("write")?;
    Ok(())
}

fn counter(txn: &WriteTransaction, name: &str) -> Result<u64, CoordinatorError> {
    let t = txn.open_table(COUNTERS).ctx("open counters")?;
    let v = t.get(name).ctx("read counter")?.map(|g| g.value());
    Ok(v.unwrap_or(0))
}

fn set_counter(txn: &WriteTransaction, name: &str, v: u64) -> Result<(), CoordinatorError> {
    let mut t = txn.open_table(COUNTERS).ctx("open counters")?;
    t.insert(name, v).ctx("write counter")?;
    Ok(())
}

fn bump(txn: &WriteTransaction, name: &str) -> Result<u64, CoordinatorError> {
    let v = counter(txn, name)?;
    set_counter(txn, name, v + 1)?;
    Ok(v)
}

/// Writes a task record, and moves it between the indexes when its state changed.
fn save_task(txn: &WriteTransaction, task: &TaskRecord) -> Result<(), CoordinatorError> {
    let before = get_json::<TaskRecord>(txn, TASKS, &task.task_id)?.map(|t| t.state);
    put_json(txn, TASKS, &task.task_id, task)?;
    if before != Some(task.state) {
        index_task(txn, task, before, Some(task.state))?;
    }
    Ok(())
}

fn count_key(task_type: u8, state: TaskState) -> String {
    format!("{}/{}", type_name(task_type), state.name())
}

/// Moves `task` in the indexes from state `from` to state `to` (`None`: not in the store).
fn index_task(
    txn: &WriteTransaction,
    task: &TaskRecord,
    from: Option<TaskState>,
    to: Option<TaskState>,
) -> Result<(), CoordinatorError> {
    {
        let mut p = txn.open_table(PENDING).ctx("open pending_by_order")?;
        if from == Some(TaskState::Pending) {
            p.remove(task.order).ctx("write pending_by_order")?;
        }
        if to == Some(TaskState::Pending) {
            p.insert(task.order, task.task_id.as_str())
                .ctx("write pending_by_order")?;
        }
    }
    let mut c = txn.open_table(TASK_COUNTS).ctx("open task_counts")?;
    for (state, up) in [(from, false), (to, true)] {
        let Some(state) = state else { continue };
        let key = count_key(task.task_type, state);
        let v = c
            .get(key.as_str())
            .ctx("read task_counts")?
            .map(|g| g.value());
        let v = v.unwrap_or(0);
        let v = if up { v + 1 } else { v.saturating_sub(1) };
        c.insert(key.as_str(), v).ctx("write task_counts")?;
    }
    Ok(())
}

/// Fills the indexes from every task (a store made before them; once, when opened).
fn build_indexes(txn: &WriteTransaction) -> Result<(), CoordinatorError> {
    let records: Vec<TaskRecord> = {
        let t = txn.open_table(TASKS).ctx("open tasks")?;
        let mut v = Vec::new();
        for item in t.iter().ctx("iterate tasks")? {
            let (_, r) = item.ctx("iterate tasks")?;
            v.push(from_json::<TaskRecord>(r.value())?);
        }
        v
    };
    for r in &records {
        index_task(txn, r, None, Some(r.state))?;
    }
    set_counter(txn, INDEX_VERSION, 1)
}

/// Whether `key` holds a live assignment (it is proving and will ask for work again).
fn has_outstanding(txn: &WriteTransaction, key: &str) -> Result<bool, CoordinatorError> {
    let t = txn.open_table(OUTSTANDING).ctx("open outstanding")?;
    let found = t.get(key).ctx("read outstanding")?.is_some();
    Ok(found)
}

/// Whether `key` has delivered a verified proof (its failures count; see the module doc).
fn is_proven(txn: &WriteTransaction, key: &str) -> Result<bool, CoordinatorError> {
    let t = txn.open_table(PROVEN).ctx("open proven")?;
    let v = t.get(key).ctx("read proven")?.is_some();
    Ok(v)
}

fn is_blocked(txn: &WriteTransaction, key: &str) -> Result<Option<String>, CoordinatorError> {
    let t = txn.open_table(BLOCKED).ctx("open blocked")?;
    let v = t
        .get(key)
        .ctx("read blocked")?
        .map(|g| g.value().to_string());
    Ok(v)
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

/// Opens (or creates) the redb file; a damaged one is [`CoordinatorError::Damaged`], never a
/// panic.
fn open_redb(path: &Path) -> Result<Database, CoordinatorError> {
    prover_core::redb_file::open(path).map_err(|e| match e {
        prover_core::redb_file::RedbOpenError::Damaged(reason) => CoordinatorError::Damaged {
            path: path.into(),
            reason,
        },
        prover_core::redb_file::RedbOpenError::Other(e) => CoordinatorError::Store {
            what: "open",
            reason: format!("{}: {e}", path.display()),
        },
    })
}

impl Store {
    /// Opens (or creates) the store file and its tables.
    pub fn open(path: &Path) -> Result<Self, CoordinatorError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| CoordinatorError::Io {
                what: format!("creating {}", dir.display()),
                source,
            })?;
        }
        let db = open_redb(path)?;
        let txn = db.begin_write().ctx("begin")?;
        {
            txn.open_table(TASKS).ctx("create tasks")?;
            txn.open_table(PAYLOADS).ctx("create payloads")?;
            txn.open_table(ASSIGNMENTS).ctx("create assignments")?;
            txn.open_table(OUTSTANDING).ctx("create outstanding")?;
            txn.open_table(PROOFS).ctx("create proofs")?;
            txn.open_table(CHALLENGES).ctx("create challenges")?;
            txn.open_table(BLOCKED).ctx("create blocked")?;
            txn.open_table(INVALID).ctx("create invalid_proofs")?;
            txn.open_table(PROVERS).ctx("create provers")?;
            txn.open_table(ACCOUNTS).ctx("create accounts")?;
            txn.open_table(COUNTERS).ctx("create counters")?;
            txn.open_table(PENDING).ctx("create pending_by_order")?;
            txn.open_table(TASK_COUNTS).ctx("create task_counts")?;
        }
        if counter(&txn, INDEX_VERSION)? < 1 {
            build_indexes(&txn)?;
        }
        txn.commit().ctx("commit")?;
        Ok(Self { db })
    }

    /// A cheap read of the store (for `/health`): the number of tasks.
    pub fn health(&self) -> Result<u64, CoordinatorError> {
        let r = self.db.begin_read().ctx("begin read")?;
        let t = r.open_table(TASKS).ctx("open tasks")?;
        t.len().ctx("count tasks")
    }

    /// The persisted rollup accounts (empty for a new store).
    pub fn load_accounts(&self) -> Result<Vec<(u64, Account)>, CoordinatorError> {
        let r = self.db.begin_read().ctx("begin read")?;
        let t = r.open_table(ACCOUNTS).ctx("open accounts")?;
        let mut out = Vec::new();
        for item in t.iter().ctx("iterate accounts")? {
            let (k, v) = item.ctx("iterate accounts")?;
            out.push((k.value(), from_json(v.value())?));
        }
        Ok(out)
    }

    /// Writes accounts (genesis, or those changed by an enqueue) without tasks.
    pub fn save_accounts(&self, accounts: &[(u64, Account)]) -> Result<(), CoordinatorError> {
        let txn = self.db.begin_write().ctx("begin")?;
        write_accounts(&txn, accounts)?;
        txn.commit().ctx("commit")
    }

    /// Adds chunk tasks (in chain order) and the account state they lead to, in one transaction.
    /// Returns the new task ids.
    pub fn enqueue_chunks(
        &self,
        chunks: &[ChunkTaskData],
        accounts: &[(u64, Account)],
        now_ms: u64,
    ) -> Result<Vec<String>, CoordinatorError> {
        let txn = self.db.begin_write().ctx("begin")?;
        let mut ids = Vec::with_capacity(chunks.len());
        for data in chunks {
            let seq = bump(&txn, NEXT_CHUNK_SEQ)?;
            let id = chunk_id(seq);
            let payload = to_json(data)?;
            insert_task(&txn, &id, TaskType::Chunk, seq, &payload, now_ms)?;
            ids.push(id);
        }
        write_accounts(&txn, accounts)?;
        txn.commit().ctx("commit")?;
        Ok(ids)
    }

    /// Returns timed-out assignments' tasks to the pool (or fails them after the attempt cap).
    pub fn sweep(&self, policy: &Policy, now_ms: u64) -> Result<Effects, CoordinatorError> {
        let txn = self.db.begin_write().ctx("begin")?;
        let effects = sweep_in(&txn, policy, now_ms)?;
        txn.commit().ctx("commit")?;
        Ok(effects)
    }

    /// `get_task`: sweep timeouts, then re-send the caller's outstanding task or assign a new one.
    pub fn assign(
        &self,
        who: &ProverIdentity,
        task_types: &[u8],
        policy: &Policy,
        now_ms: u64,
    ) -> Result<(AssignOutcome, Effects), CoordinatorError> {
        let txn = self.db.begin_write().ctx("begin")?;
        let effects = sweep_in(&txn, policy, now_ms)?;
        put_json(
            &txn,
            PROVERS,
            &who.public_key,
            &ProverSeen {
                name: who.prover_name.clone(),
                prover_types: who.prover_types.clone(),
                last_seen_ms: now_ms,
            },
        )?;
        let outcome = assign_in(&txn, who, task_types, policy, now_ms)?;
        txn.commit().ctx("commit")?;
        Ok((outcome, effects))
    }

    /// Checks a submission before verification (read only): the assignment exists, is the
    /// caller's, is not submitted, matches the task, and the task is not verified.
    pub fn submit_context(
        &self,
        public_key: &str,
        uuid: &str,
        task_id: &str,
        task_type: u8,
    ) -> Result<Result<SubmitContext, SubmitError>, CoordinatorError> {
        let txn = self.db.begin_write().ctx("begin")?;
        let r = check_submission(&txn, public_key, uuid, task_id, task_type);
        txn.abort().ctx("abort")?;
        r
    }

    /// A failure report (`status` 1) or an invalid proof: the attempt is consumed, the prover
    /// joins the task's failed set; with `invalid_proof` the key's invalid count grows and the key
    /// is blocked at the cap.
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
    ) -> Result<Result<Effects, SubmitError>, CoordinatorError> {
        let txn = self.db.begin_write().ctx("begin")?;
        let ctx = match check_submission(&txn, public_key, uuid, task_id, task_type)? {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let mut effects = Effects::default();
        let mut a = ctx.assignment;
        let was_live = a.state == AssignmentState::Live;
        a.state = AssignmentState::Submitted;
        put_json(&txn, ASSIGNMENTS, &a.uuid, &a)?;
        clear_outstanding(&txn, &a.public_key, &a.uuid)?;
        let mut task = ctx.task;
        if was_live {
            // A timed-out assignment's failure was already counted by the sweep.
            task.live.retain(|u| u != &a.uuid);
            let proven = is_proven(&txn, &a.public_key)?;
            if fail_once(&mut task, &a.public_key, reason, proven, policy) {
                effects.tasks_failed += 1;
            }
        } else {
            task.result = Some(reason.to_string());
        }
        task.updated_ms = now_ms;
        save_task(&txn, &task)?;
        if invalid_proof {
            let count = {
                let mut t = txn.open_table(INVALID).ctx("open invalid_proofs")?;
                let c = t
                    .get(public_key)
                    .ctx("read")?
                    .map(|g| g.value())
                    .unwrap_or(0)
                    + 1;
                t.insert(public_key, c).ctx("write")?;
                c
            };
            if count >= u64::from(policy.max_invalid_proofs) {
                let mut t = txn.open_table(BLOCKED).ctx("open blocked")?;
                let why = format!("{count} invalid proofs");
                t.insert(public_key, why.as_str()).ctx("write")?;
                effects.blocked = true;
            }
        }
        txn.commit().ctx("commit")?;
        Ok(Ok(effects))
    }

    /// A verified proof: store it, mark the task verified, free every prover holding it, and create
    /// a batch task if enough consecutive chunks are now verified. One transaction.
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
    ) -> Result<Result<Effects, SubmitError>, CoordinatorError> {
        let txn = self.db.begin_write().ctx("begin")?;
        let ctx = match check_submission(&txn, public_key, uuid, task_id, task_type)? {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let mut a = ctx.assignment;
        a.state = AssignmentState::Submitted;
        put_json(&txn, ASSIGNMENTS, &a.uuid, &a)?;
        clear_outstanding(&txn, &a.public_key, &a.uuid)?;
        let mut task = ctx.task;
        for other in std::mem::take(&mut task.live) {
            if other == a.uuid {
                continue;
            }
            if let Some(mut o) = get_json::<Assignment>(&txn, ASSIGNMENTS, &other)? {
                o.state = AssignmentState::Superseded;
                put_json(&txn, ASSIGNMENTS, &other, &o)?;
                clear_outstanding(&txn, &o.public_key, &other)?;
            }
        }
        {
            let mut t = txn.open_table(PROVEN).ctx("open proven")?;
            let n = t
                .get(a.public_key.as_str())
                .ctx("read proven")?
                .map(|g| g.value())
                .unwrap_or(0);
            t.insert(a.public_key.as_str(), n + 1).ctx("write proven")?;
        }
        task.state = TaskState::Verified;
        task.prover = Some(a.public_key.clone());
        task.prover_name = Some(a.prover_name.clone());
        task.prove_ms = Some(proof.meta.prove_ms);
        task.verify_ms = Some(verify_ms);
        task.result = Some("verified".into());
        task.updated_ms = now_ms;
        save_task(&txn, &task)?;
        {
            let text = to_json(proof)?;
            let mut t = txn.open_table(PROOFS).ctx("open proofs")?;
            t.insert(task.task_id.as_str(), text.as_str())
                .ctx("write proof")?;
        }
        let mut effects = Effects::default();
        if task.task_type == TaskType::Chunk.as_u8() {
            if let Some(batch) = policy.batch {
                effects.batch_created = make_batches(&txn, batch, now_ms)?;
            }
        }
        txn.commit().ctx("commit")?;
        Ok(Ok(effects))
    }

    /// The stored proof of a verified task.
    pub fn proof(&self, task_id: &str) -> Result<Option<ProofPayload>, CoordinatorError> {
        let r = self.db.begin_read().ctx("begin read")?;
        let t = r.open_table(PROOFS).ctx("open proofs")?;
        let v = t.get(task_id).ctx("read proof")?;
        match v {
            Some(g) => Ok(Some(from_json(g.value())?)),
            None => Ok(None),
        }
    }

    /// Records a challenge nonce as used until `exp_ms`; false if it was already used. Expired
    /// entries are purged in the same transaction.
    pub fn use_challenge(
        &self,
        nonce: &str,
        exp_ms: u64,
        now_ms: u64,
    ) -> Result<bool, CoordinatorError> {
        let txn = self.db.begin_write().ctx("begin")?;
        let fresh = {
            let mut t = txn.open_table(CHALLENGES).ctx("open challenges")?;
            t.retain(|_, exp| exp >= now_ms).ctx("purge challenges")?;
            if t.get(nonce).ctx("read challenge")?.is_some() {
                false
            } else {
                t.insert(nonce, exp_ms).ctx("write challenge")?;
                true
            }
        };
        txn.commit().ctx("commit")?;
        Ok(fresh)
    }

    /// Blocks a public key (its outstanding assignment stays until it times out or is submitted).
    pub fn block(&self, public_key: &str, reason: &str) -> Result<(), CoordinatorError> {
        let txn = self.db.begin_write().ctx("begin")?;
        {
            let mut t = txn.open_table(BLOCKED).ctx("open blocked")?;
            t.insert(public_key, reason).ctx("write")?;
        }
        txn.commit().ctx("commit")
    }

    /// Unblocks a key and resets its invalid-proof count. Returns whether it was blocked.
    pub fn unblock(&self, public_key: &str) -> Result<bool, CoordinatorError> {
        let txn = self.db.begin_write().ctx("begin")?;
        let was = {
            let mut t = txn.open_table(BLOCKED).ctx("open blocked")?;
            let was = t.remove(public_key).ctx("write")?.is_some();
            was
        };
        {
            let mut t = txn.open_table(INVALID).ctx("open invalid_proofs")?;
            t.remove(public_key).ctx("write")?;
        }
        txn.commit().ctx("commit")?;
        Ok(was)
    }

    /// The operator's `requeue`: a failed task goes back to pending with its failure counts and
    /// failed-prover set cleared (its attempt count and history stay).
    pub fn requeue(
        &self,
        task_id: &str,
        now_ms: u64,
    ) -> Result<Result<(), RequeueError>, CoordinatorError> {
        let txn = self.db.begin_write().ctx("begin")?;
        let Some(mut task) = get_json::<TaskRecord>(&txn, TASKS, task_id)? else {
            txn.abort().ctx("abort")?;
            return Ok(Err(RequeueError::NoSuchTask(task_id.to_string())));
        };
        if task.state != TaskState::Failed {
            txn.abort().ctx("abort")?;
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
        save_task(&txn, &task)?;
        txn.commit().ctx("commit")?;
        Ok(Ok(()))
    }

    /// The operator's `prune`: removes the finished tasks last changed before `before_ms` — a
    /// verified chunk once it is part of a batch task (its proof lives on in the batch's payload),
    /// a verified batch — with their payloads, proofs and assignments, in one transaction.
    /// Pending, assigned and failed tasks, and verified chunks not yet batched, stay. Returns what
    /// was removed. Walks every task and assignment: an operator's command, not a request path.
    pub fn prune(&self, before_ms: u64) -> Result<Pruned, CoordinatorError> {
        let txn = self.db.begin_write().ctx("begin")?;
        let doomed: Vec<TaskRecord> = {
            let t = txn.open_table(TASKS).ctx("open tasks")?;
            let mut v = Vec::new();
            for item in t.iter().ctx("iterate tasks")? {
                let (_, r) = item.ctx("iterate tasks")?;
                let rec = from_json::<TaskRecord>(r.value())?;
                let consumed = rec.task_type != TaskType::Chunk.as_u8() || rec.batched;
                if rec.state == TaskState::Verified
                    && consumed
                    && rec.live.is_empty()
                    && rec.updated_ms < before_ms
                {
                    v.push(rec);
                }
            }
            v
        };
        let ids: std::collections::HashSet<&str> =
            doomed.iter().map(|r| r.task_id.as_str()).collect();
        let mut pruned = Pruned::default();
        {
            let mut tasks = txn.open_table(TASKS).ctx("open tasks")?;
            let mut payloads = txn.open_table(PAYLOADS).ctx("open payloads")?;
            let mut proofs = txn.open_table(PROOFS).ctx("open proofs")?;
            for r in &doomed {
                tasks.remove(r.task_id.as_str()).ctx("remove task")?;
                payloads.remove(r.task_id.as_str()).ctx("remove payload")?;
                if proofs
                    .remove(r.task_id.as_str())
                    .ctx("remove proof")?
                    .is_some()
                {
                    pruned.proofs += 1;
                }
                *pruned.tasks.entry(type_name(r.task_type)).or_default() += 1;
            }
        }
        for r in &doomed {
            index_task(&txn, r, Some(r.state), None)?;
        }
        {
            let mut a = txn.open_table(ASSIGNMENTS).ctx("open assignments")?;
            let mut gone = Vec::new();
            for item in a.iter().ctx("iterate assignments")? {
                let (k, v) = item.ctx("iterate assignments")?;
                let rec = from_json::<Assignment>(v.value())?;
                if rec.state != AssignmentState::Live && ids.contains(rec.task_id.as_str()) {
                    gone.push(k.value().to_string());
                }
            }
            for uuid in gone {
                a.remove(uuid.as_str()).ctx("remove assignment")?;
                pruned.assignments += 1;
            }
        }
        txn.commit().ctx("commit")?;
        Ok(pruned)
    }

    /// Everything `coordinator status` shows.
    pub fn status(&self) -> Result<StatusReport, CoordinatorError> {
        let r = self.db.begin_read().ctx("begin read")?;
        let mut report = StatusReport::zeroed();
        let tasks = r.open_table(TASKS).ctx("open tasks")?;
        let mut records = Vec::new();
        for item in tasks.iter().ctx("iterate tasks")? {
            let (_, v) = item.ctx("iterate tasks")?;
            records.push(from_json::<TaskRecord>(v.value())?);
        }
        records.sort_by_key(|r| r.order);
        for rec in records {
            let name = type_name(rec.task_type);
            *report
                .counts
                .entry(name.clone())
                .or_default()
                .entry(rec.state.name().to_string())
                .or_default() += 1;
            report.tasks.push(TaskRow {
                task_id: rec.task_id,
                task_type: name,
                state: rec.state,
                attempts: rec.attempts,
                failures: rec.failures,
                unproven_failures: rec.unproven_failures,
                prover: rec.prover,
                prover_name: rec.prover_name,
                prove_ms: rec.prove_ms,
                verify_ms: rec.verify_ms,
                result: rec.result,
            });
        }
        read_keys(&r, &mut report)?;
        Ok(report)
    }

    /// What `/metrics` shows: counts per task type and state, blocked keys and invalid-proof
    /// counts, without the task list.
    pub fn summary(&self) -> Result<StatusReport, CoordinatorError> {
        let r = self.db.begin_read().ctx("begin read")?;
        let mut report = StatusReport::zeroed();
        let counts = r.open_table(TASK_COUNTS).ctx("open task_counts")?;
        for item in counts.iter().ctx("iterate task_counts")? {
            let (k, v) = item.ctx("iterate task_counts")?;
            let Some((kind, state)) = k.value().split_once('/') else {
                continue;
            };
            report
                .counts
                .entry(kind.to_string())
                .or_default()
                .insert(state.to_string(), v.value());
        }
        drop(counts);
        read_keys(&r, &mut report)?;
        Ok(report)
    }

    /// The live assignment of a public key, if any.
    pub fn outstanding(&self, public_key: &str) -> Result<Option<Assignment>, CoordinatorError> {
        let r = self.db.begin_read().ctx("begin read")?;
        let t = r.open_table(OUTSTANDING).ctx("open outstanding")?;
        let uuid = match t.get(public_key).ctx("read")? {
            Some(g) => g.value().to_string(),
            None => return Ok(None),
        };
        let a = r.open_table(ASSIGNMENTS).ctx("open assignments")?;
        let v = a.get(uuid.as_str()).ctx("read")?;
        match v {
            Some(g) => Ok(Some(from_json(g.value())?)),
            None => Ok(None),
        }
    }
}

/// The blocked keys and the invalid-proof counts, into `report`.
fn read_keys(r: &redb::ReadTransaction, report: &mut StatusReport) -> Result<(), CoordinatorError> {
    let blocked = r.open_table(BLOCKED).ctx("open blocked")?;
    for item in blocked.iter().ctx("iterate blocked")? {
        let (k, _) = item.ctx("iterate blocked")?;
        report.blocked.push(k.value().to_string());
    }
    let invalid = r.open_table(INVALID).ctx("open invalid_proofs")?;
    for item in invalid.iter().ctx("iterate invalid_proofs")? {
        let (k, v) = item.ctx("iterate invalid_proofs")?;
        report
            .invalid_proofs
            .insert(k.value().to_string(), v.value());
    }
    Ok(())
}

fn write_accounts(
    txn: &WriteTransaction,
    accounts: &[(u64, Account)],
) -> Result<(), CoordinatorError> {
    let mut t = txn.open_table(ACCOUNTS).ctx("open accounts")?;
    for (i, a) in accounts {
        let text = to_json(a)?;
        t.insert(*i, text.as_str()).ctx("write account")?;
    }
    Ok(())
}

fn insert_task(
    txn: &WriteTransaction,
    id: &str,
    kind: TaskType,
    seq: u64,
    payload: &str,
    now_ms: u64,
) -> Result<(), CoordinatorError> {
    let order = bump(txn, NEXT_ORDER)?;
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
    save_task(txn, &rec)?;
    let mut t = txn.open_table(PAYLOADS).ctx("open payloads")?;
    t.insert(id, payload).ctx("write payload")?;
    Ok(())
}

fn clear_outstanding(
    txn: &WriteTransaction,
    key: &str,
    uuid: &str,
) -> Result<(), CoordinatorError> {
    let mut t = txn.open_table(OUTSTANDING).ctx("open outstanding")?;
    let current = t.get(key).ctx("read")?.map(|g| g.value().to_string());
    if current.as_deref() == Some(uuid) {
        t.remove(key).ctx("write")?;
    }
    Ok(())
}

/// Most entries unproven keys may add to a task's failed set (see [`fail_once`]).
pub const MAX_UNPROVEN_REMEMBERED: usize = 64;

/// Records one failed attempt of `task` on `prover`; it counts towards failing the task only if
/// `proven` (see the module doc). Returns true if the task is now failed.
fn fail_once(
    task: &mut TaskRecord,
    prover: &str,
    reason: &str,
    proven: bool,
    policy: &Policy,
) -> bool {
    // Unproven keys are free: they are remembered only while the failed set is smaller than
    // MAX_UNPROVEN_REMEMBERED, so a swarm of them cannot grow a task's record (and every scan of
    // it) without bound. A key past the limit may get the task again: a delay, never a failure.
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

fn sweep_in(
    txn: &WriteTransaction,
    policy: &Policy,
    now_ms: u64,
) -> Result<Effects, CoordinatorError> {
    let mut effects = Effects::default();
    let live: Vec<(String, String)> = {
        let t = txn.open_table(OUTSTANDING).ctx("open outstanding")?;
        let mut v = Vec::new();
        for item in t.iter().ctx("iterate outstanding")? {
            let (k, u) = item.ctx("iterate outstanding")?;
            v.push((k.value().to_string(), u.value().to_string()));
        }
        v
    };
    for (key, uuid) in live {
        let Some(mut a) = get_json::<Assignment>(txn, ASSIGNMENTS, &uuid)? else {
            clear_outstanding(txn, &key, &uuid)?;
            continue;
        };
        if a.deadline_ms > now_ms {
            continue;
        }
        a.state = AssignmentState::TimedOut;
        put_json(txn, ASSIGNMENTS, &uuid, &a)?;
        clear_outstanding(txn, &key, &uuid)?;
        effects.timed_out += 1;
        if let Some(mut task) = get_json::<TaskRecord>(txn, TASKS, &a.task_id)? {
            task.live.retain(|u| u != &uuid);
            let proven = is_proven(txn, &key)?;
            if fail_once(&mut task, &key, "assignment timed out", proven, policy) {
                effects.tasks_failed += 1;
            }
            task.updated_ms = now_ms;
            save_task(txn, &task)?;
        }
    }
    Ok(effects)
}

fn wire_task(txn: &WriteTransaction, a: &Assignment) -> Result<Task, CoordinatorError> {
    let t = txn.open_table(PAYLOADS).ctx("open payloads")?;
    let payload = t
        .get(a.task_id.as_str())
        .ctx("read payload")?
        .map(|g| g.value().to_string())
        .ok_or_else(|| {
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

fn assign_in(
    txn: &WriteTransaction,
    who: &ProverIdentity,
    task_types: &[u8],
    policy: &Policy,
    now_ms: u64,
) -> Result<AssignOutcome, CoordinatorError> {
    if let Some(reason) = is_blocked(txn, &who.public_key)? {
        return Ok(AssignOutcome::Blocked(format!(
            "prover is blocked: {reason}"
        )));
    }
    let current = {
        let t = txn.open_table(OUTSTANDING).ctx("open outstanding")?;
        let v = t
            .get(who.public_key.as_str())
            .ctx("read")?
            .map(|g| g.value().to_string());
        v
    };
    if let Some(uuid) = current {
        if let Some(a) = get_json::<Assignment>(txn, ASSIGNMENTS, &uuid)? {
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
                    task: wire_task(txn, &a)?,
                    resent: true,
                });
            }
        }
    }
    // The pending tasks, oldest first (the index: the cost does not grow with finished tasks).
    // The provers are read only when the failed-prover rule needs them.
    let mut provers: Option<Vec<(String, ProverSeen)>> = None;
    let mut chosen = None;
    let pending = txn.open_table(PENDING).ctx("open pending_by_order")?;
    for item in pending.iter().ctx("iterate pending_by_order")? {
        let (_, id) = item.ctx("iterate pending_by_order")?;
        let Some(task) = get_json::<TaskRecord>(txn, TASKS, id.value())? else {
            return Err(CoordinatorError::store(
                "read task",
                format!("the pending index names a missing task {}", id.value()),
            ));
        };
        if task.state != TaskState::Pending
            || !task_types.contains(&task.task_type)
            || !who.prover_types.contains(&task.task_type)
        {
            continue;
        }
        if task.failed_provers.contains(&who.public_key) {
            // An unproven key that failed this task does not get it again (module doc).
            if !is_proven(txn, &who.public_key)? {
                continue;
            }
            // Our rule: not to the same failed prover while another prover that can take it
            // (declared the type, asked for work recently or is busy with a live assignment —
            // it asks again when done —, not blocked, not failed on it) exists.
            if provers.is_none() {
                let t = txn.open_table(PROVERS).ctx("open provers")?;
                let mut v = Vec::new();
                for item in t.iter().ctx("iterate provers")? {
                    let (k, p) = item.ctx("iterate provers")?;
                    v.push((k.value().to_string(), from_json::<ProverSeen>(p.value())?));
                }
                provers = Some(v);
            }
            let mut other_available = false;
            for (key, seen) in provers.iter().flatten() {
                if key != &who.public_key
                    && seen.prover_types.contains(&task.task_type)
                    && (seen.last_seen_ms.saturating_add(policy.prover_active_ms) >= now_ms
                        || has_outstanding(txn, key)?)
                    && !task.failed_provers.contains(key)
                    && is_blocked(txn, key)?.is_none()
                {
                    other_available = true;
                    break;
                }
            }
            if other_available {
                continue;
            }
        }
        chosen = Some(task);
        break;
    }
    drop(pending);
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
    save_task(txn, &task)?;
    put_json(txn, ASSIGNMENTS, &a.uuid, &a)?;
    {
        let mut t = txn.open_table(OUTSTANDING).ctx("open outstanding")?;
        t.insert(a.public_key.as_str(), a.uuid.as_str())
            .ctx("write")?;
    }
    Ok(AssignOutcome::Task {
        task: wire_task(txn, &a)?,
        resent: false,
    })
}

fn check_submission(
    txn: &WriteTransaction,
    public_key: &str,
    uuid: &str,
    task_id: &str,
    task_type: u8,
) -> Result<Result<SubmitContext, SubmitError>, CoordinatorError> {
    let Some(a) = get_json::<Assignment>(txn, ASSIGNMENTS, uuid)? else {
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
    let Some(task) = get_json::<TaskRecord>(txn, TASKS, &a.task_id)? else {
        return Err(CoordinatorError::store(
            "read task",
            format!("assignment {uuid} names a missing task {}", a.task_id),
        ));
    };
    if task.state == TaskState::Verified {
        return Ok(Err(SubmitError::AlreadyVerified(task.task_id)));
    }
    let wire = wire_task(txn, &a)?;
    Ok(Ok(SubmitContext {
        assignment: a,
        task,
        wire_task: wire,
    }))
}

/// Creates batch tasks while `num_chunks` consecutive unbatched chunks are verified. Returns the
/// last batch id created.
fn make_batches(
    txn: &WriteTransaction,
    batch: BatchConfig,
    now_ms: u64,
) -> Result<Option<String>, CoordinatorError> {
    let mut created = None;
    loop {
        let start = counter(txn, NEXT_UNBATCHED)?;
        let n = batch.num_chunks as u64;
        let mut proofs = Vec::with_capacity(batch.num_chunks);
        let mut records = Vec::with_capacity(batch.num_chunks);
        for seq in start..start + n {
            let id = chunk_id(seq);
            let Some(rec) = get_json::<TaskRecord>(txn, TASKS, &id)? else {
                return Ok(created);
            };
            if rec.state != TaskState::Verified {
                return Ok(created);
            }
            let t = txn.open_table(PROOFS).ctx("open proofs")?;
            let text = t
                .get(id.as_str())
                .ctx("read proof")?
                .map(|g| g.value().to_string())
                .ok_or_else(|| {
                    CoordinatorError::store("read proof", format!("verified {id} has no proof"))
                })?;
            proofs.push(from_json::<ProofPayload>(&text)?);
            records.push(rec);
        }
        let data = BatchTaskData {
            version: TASK_DATA_VERSION,
            config: batch,
            chunk_proofs: proofs,
        };
        let seq = bump(txn, NEXT_BATCH_SEQ)?;
        let id = format!("batch-{seq}");
        insert_task(txn, &id, TaskType::Batch, seq, &to_json(&data)?, now_ms)?;
        for mut rec in records {
            rec.batched = true;
            save_task(txn, &rec)?;
        }
        set_counter(txn, NEXT_UNBATCHED, start + n)?;
        created = Some(id);
    }
}
