//! The redb backend: one embedded file, every write one redb write transaction (redb has one
//! writer at a time, so the scheduler's transactions never conflict).
//!
//! Tables (keys and values are strings or integers; records are JSON): `tasks` task id →
//! [`TaskRecord`]; `payloads` task id → task_data JSON text; `assignments` uuid → [`Assignment`];
//! `outstanding` public key → uuid of its live assignment; `proofs` task id → proof JSON;
//! `challenges` challenge nonce → expiry (ms), with `challenges_by_expiry` (expiry, nonce) so
//! that a login reads only expired ones, at most [`PURGE_PER_LOGIN`] (index version 3);
//! `blocked` public key → reason; `invalid_proofs` public key → count; `proven` public key →
//! verified proofs delivered; `provers` public key → [`ProverSeen`]; `accounts` index → account
//! JSON (the rollup state); `counters` name → value; two indexes kept in step with `tasks` by every write of a task (`save_task`):
//! `pending_by_type` (task type, creation order) → task id of every pending task (what `get_task`
//! walks, oldest first, only in the types asked for; index version 4, before it
//! `pending_by_order` held every type in one order) and `task_counts` "type/state" → tasks in that state (what `/metrics` reads);
//! one kept in step with `assignments` (`put_assignment`): `live_by_deadline` (deadline, uuid) of
//! every live assignment (what the timeout sweep of every `get_task` reads: only the expired
//! ones); one kept in step with `provers` (`seen`): `provers_by_seen` (last seen, key) of every
//! prover (what the failed-prover rule walks: only the keys seen recently; index version 5). So
//! none costs more as finished tasks, busy provers or quiet keys pile up; a store made before
//! the indexes gets them built once when opened.
//!
//! Concurrent writes share one transaction and one durable commit ([`super::batch`]): each
//! caller's closure runs in turn in the open transaction, and the caller returns once that
//! transaction is on disk, so concurrent requests share one commit instead of queueing behind
//! one each.

use std::path::Path;

use prover_core::rollup::Account;
use prover_core::wire::ProofPayload;
use redb::{
    Database, Durability, ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};

use super::batch::Batcher;
use super::{
    from_json, prunable, task_row, to_json, type_name, Assignment, AssignmentState, Backend,
    Consumers, ProverSeen, Pruned, Reads, StatusReport, TaskRecord, TaskState, Txn,
    PURGE_PER_LOGIN, R,
};
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
const PENDING: TableDefinition<(u8, u64), &str> = TableDefinition::new("pending_by_type");
/// The pending index of index versions 1 to 3 (all types in one order), removed at version 4.
const PENDING_BY_ORDER: TableDefinition<u64, &str> = TableDefinition::new("pending_by_order");
const TASK_COUNTS: TableDefinition<&str, u64> = TableDefinition::new("task_counts");
const SETTLEMENTS: TableDefinition<u64, &str> = TableDefinition::new("settlements");
const LIVE: TableDefinition<(u64, &str), ()> = TableDefinition::new("live_by_deadline");
const CHALLENGE_EXPIRY: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("challenges_by_expiry");
const PROVERS_BY_SEEN: TableDefinition<(u64, &str), ()> = TableDefinition::new("provers_by_seen");

/// 1 once the pending index and `task_counts` hold every task; 2 once `live_by_deadline` holds
/// every live assignment; 3 once `challenges_by_expiry` holds every used challenge; 4 once
/// `pending_by_type` replaces `pending_by_order`; 5 once `provers_by_seen` holds every prover.
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

/// A text table's value, read in a write or a read-only transaction.
trait Text {
    fn text<T>(
        &self,
        table: TableDefinition<&str, &str>,
        key: &str,
        f: impl FnOnce(&str) -> R<T>,
    ) -> R<Option<T>>;
}

/// `f` of the value under `key`, if any.
fn text_in<T>(
    t: &impl ReadableTable<&'static str, &'static str>,
    key: &str,
    f: impl FnOnce(&str) -> R<T>,
) -> R<Option<T>> {
    t.get(key).ctx("read")?.map(|g| f(g.value())).transpose()
}

/// The same body for both: their `open_table`s return different table types.
macro_rules! impl_text {
    ($($txn:ty),*) => {$(
        impl Text for $txn {
            fn text<T>(
                &self,
                table: TableDefinition<&str, &str>,
                key: &str,
                f: impl FnOnce(&str) -> R<T>,
            ) -> R<Option<T>> {
                text_in(&self.open_table(table).ctx("open table")?, key, f)
            }
        }
    )*};
}

impl_text!(WriteTransaction, ReadTransaction);

fn get_json<T: serde::de::DeserializeOwned>(
    txn: &impl Text,
    table: TableDefinition<&str, &str>,
    key: &str,
) -> R<Option<T>> {
    txn.text(table, key, from_json)
}

fn put_json<T: serde::Serialize>(
    txn: &WriteTransaction,
    table: TableDefinition<&str, &str>,
    key: &str,
    value: &T,
) -> R<()> {
    let text = to_json(value)?;
    let mut t = txn.open_table(table).ctx("open table")?;
    t.insert(key, text.as_str()).ctx("write")?;
    Ok(())
}

fn get_u64(txn: &WriteTransaction, table: TableDefinition<&str, u64>, key: &str) -> R<u64> {
    let t = txn.open_table(table).ctx("open table")?;
    let v = t.get(key).ctx("read")?.map(|g| g.value());
    Ok(v.unwrap_or(0))
}

fn put_u64(txn: &WriteTransaction, table: TableDefinition<&str, u64>, key: &str, v: u64) -> R<()> {
    let mut t = txn.open_table(table).ctx("open table")?;
    t.insert(key, v).ctx("write")?;
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
) -> R<()> {
    {
        let mut p = txn.open_table(PENDING).ctx("open pending_by_type")?;
        let key = (task.task_type, task.order);
        if from == Some(TaskState::Pending) {
            p.remove(key).ctx("write pending_by_type")?;
        }
        if to == Some(TaskState::Pending) {
            p.insert(key, task.task_id.as_str())
                .ctx("write pending_by_type")?;
        }
    }
    for (state, up) in [(from, false), (to, true)] {
        let Some(state) = state else { continue };
        let key = count_key(task.task_type, state);
        let v = get_u64(txn, TASK_COUNTS, &key)?;
        let v = if up { v + 1 } else { v.saturating_sub(1) };
        put_u64(txn, TASK_COUNTS, &key, v)?;
    }
    Ok(())
}

/// Every record of a table of JSON records (to build an index once, when a store is opened).
fn every_record<T: serde::de::DeserializeOwned>(
    txn: &WriteTransaction,
    table: TableDefinition<&str, &str>,
) -> R<Vec<T>> {
    let t = txn.open_table(table).ctx("open a table to index")?;
    let mut v = Vec::new();
    for item in t.iter().ctx("iterate a table to index")? {
        let (_, r) = item.ctx("iterate a table to index")?;
        v.push(from_json(r.value())?);
    }
    Ok(v)
}

/// Fills the indexes from every task (a store made before them; once, when opened).
fn build_indexes(txn: &WriteTransaction) -> R<()> {
    let records: Vec<TaskRecord> = every_record(txn, TASKS)?;
    for r in &records {
        index_task(txn, r, None, Some(r.state))?;
    }
    put_u64(txn, COUNTERS, INDEX_VERSION, 1)
}

/// Fills `live_by_deadline` from every assignment (a store made before it; once, when opened).
fn build_live_index(txn: &WriteTransaction) -> R<()> {
    let mut live: Vec<Assignment> = every_record(txn, ASSIGNMENTS)?;
    live.retain(|a| a.state == AssignmentState::Live);
    let mut t = txn.open_table(LIVE).ctx("open live_by_deadline")?;
    for a in &live {
        t.insert((a.deadline_ms, a.uuid.as_str()), ())
            .ctx("write live_by_deadline")?;
    }
    drop(t);
    put_u64(txn, COUNTERS, INDEX_VERSION, 2)
}

/// Fills `challenges_by_expiry` from `challenges` (a store made before it; once, when opened).
fn build_challenge_index(txn: &WriteTransaction) -> R<()> {
    let used: Vec<(String, u64)> = {
        let t = txn.open_table(CHALLENGES).ctx("open challenges")?;
        let mut v = Vec::new();
        for item in t.iter().ctx("iterate challenges")? {
            let (nonce, exp) = item.ctx("iterate challenges")?;
            v.push((nonce.value().to_string(), exp.value()));
        }
        v
    };
    let mut t = txn
        .open_table(CHALLENGE_EXPIRY)
        .ctx("open challenges_by_expiry")?;
    for (nonce, exp) in &used {
        t.insert((*exp, nonce.as_str()), ())
            .ctx("write challenges_by_expiry")?;
    }
    drop(t);
    put_u64(txn, COUNTERS, INDEX_VERSION, 3)
}

/// Fills `pending_by_type` from every pending task and drops `pending_by_order` (a store made
/// before it; once, when opened).
fn build_pending_by_type(txn: &WriteTransaction) -> R<()> {
    let mut pending: Vec<TaskRecord> = every_record(txn, TASKS)?;
    pending.retain(|t| t.state == TaskState::Pending);
    let mut t = txn.open_table(PENDING).ctx("open pending_by_type")?;
    for rec in &pending {
        t.insert((rec.task_type, rec.order), rec.task_id.as_str())
            .ctx("write pending_by_type")?;
    }
    drop(t);
    txn.delete_table(PENDING_BY_ORDER)
        .ctx("drop pending_by_order")?;
    put_u64(txn, COUNTERS, INDEX_VERSION, 4)
}

/// Fills `provers_by_seen` from `provers` (a store made before it; once, when opened).
fn build_seen_index(txn: &WriteTransaction) -> R<()> {
    let seen: Vec<(String, u64)> = {
        let t = txn.open_table(PROVERS).ctx("open provers")?;
        let mut v = Vec::new();
        for item in t.iter().ctx("iterate provers")? {
            let (key, r) = item.ctx("iterate provers")?;
            let r: ProverSeen = from_json(r.value())?;
            v.push((key.value().to_string(), r.last_seen_ms));
        }
        v
    };
    let mut t = txn
        .open_table(PROVERS_BY_SEEN)
        .ctx("open provers_by_seen")?;
    for (key, ms) in &seen {
        t.insert((*ms, key.as_str()), ())
            .ctx("write provers_by_seen")?;
    }
    drop(t);
    put_u64(txn, COUNTERS, INDEX_VERSION, 5)
}

/// Opens (or creates) the redb file; a damaged one is [`CoordinatorError::Damaged`], never a
/// panic.
fn open_redb(path: &Path) -> R<Database> {
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

/// The redb backend.
pub struct RedbBackend {
    db: Database,
    batch: Batcher<WriteTransaction>,
}

impl RedbBackend {
    /// Opens (or creates) the store file and its tables.
    pub fn open(path: &Path) -> R<Self> {
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
            txn.open_table(PROVEN).ctx("create proven")?;
            txn.open_table(PROVERS).ctx("create provers")?;
            txn.open_table(ACCOUNTS).ctx("create accounts")?;
            txn.open_table(COUNTERS).ctx("create counters")?;
            txn.open_table(PENDING).ctx("create pending_by_type")?;
            txn.open_table(TASK_COUNTS).ctx("create task_counts")?;
            txn.open_table(LIVE).ctx("create live_by_deadline")?;
            txn.open_table(CHALLENGE_EXPIRY)
                .ctx("create challenges_by_expiry")?;
            txn.open_table(PROVERS_BY_SEEN)
                .ctx("create provers_by_seen")?;
        }
        let version = get_u64(&txn, COUNTERS, INDEX_VERSION)?;
        if version < 1 {
            build_indexes(&txn)?;
        }
        if version < 2 {
            build_live_index(&txn)?;
        }
        if version < 3 {
            build_challenge_index(&txn)?;
        }
        if version < 4 {
            build_pending_by_type(&txn)?;
        }
        if version < 5 {
            build_seen_index(&txn)?;
        }
        txn.commit().ctx("commit")?;
        Ok(Self {
            db,
            batch: Batcher::default(),
        })
    }

    /// Runs `f` in the shared write transaction; returns once it is durably committed.
    fn shared(&self, f: &mut dyn FnMut(&WriteTransaction) -> R<()>) -> R<()> {
        self.batch.run(
            || {
                let mut txn = self.db.begin_write().ctx("begin")?;
                txn.set_durability(Durability::Immediate);
                Ok(txn)
            },
            |txn| txn.commit().ctx("commit"),
            f,
        )
    }
}

/// The blocked keys and the invalid-proof counts, into `report`.
fn read_keys(r: &redb::ReadTransaction, report: &mut StatusReport) -> R<()> {
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

impl Backend for RedbBackend {
    fn write(&self, f: &mut dyn FnMut(&mut dyn Txn) -> R<()>) -> R<()> {
        self.shared(&mut |txn| f(&mut RedbTxn { txn }))
    }

    fn read(&self, f: &mut dyn FnMut(&mut dyn Reads) -> R<()>) -> R<()> {
        let txn = self.db.begin_read().ctx("begin read")?;
        f(&mut RedbTxn { txn: &txn })
    }

    fn health(&self) -> R<u64> {
        let r = self.db.begin_read().ctx("begin read")?;
        let t = r.open_table(TASKS).ctx("open tasks")?;
        t.len().ctx("count tasks")
    }

    fn load_accounts(&self) -> R<Vec<(u64, Account)>> {
        let r = self.db.begin_read().ctx("begin read")?;
        let t = r.open_table(ACCOUNTS).ctx("open accounts")?;
        let mut out = Vec::new();
        for item in t.iter().ctx("iterate accounts")? {
            let (k, v) = item.ctx("iterate accounts")?;
            out.push((k.value(), from_json(v.value())?));
        }
        Ok(out)
    }

    fn use_challenge(&self, nonce: &str, exp_ms: u64, purge_before_ms: u64) -> R<bool> {
        let mut fresh = false;
        self.shared(&mut |txn| {
            let mut by_expiry = txn
                .open_table(CHALLENGE_EXPIRY)
                .ctx("open challenges_by_expiry")?;
            let mut t = txn.open_table(CHALLENGES).ctx("open challenges")?;
            // The index's front, expired before `purge_before_ms` ("" sorts before every
            // nonce): the challenges still valid are not read.
            let expired: Vec<(u64, String)> = {
                let mut v = Vec::new();
                for item in by_expiry
                    .range(..(purge_before_ms, ""))
                    .ctx("iterate challenges_by_expiry")?
                    .take(PURGE_PER_LOGIN)
                {
                    let (k, _) = item.ctx("iterate challenges_by_expiry")?;
                    let (exp, nonce) = k.value();
                    v.push((exp, nonce.to_string()));
                }
                v
            };
            for (exp, old) in &expired {
                by_expiry
                    .remove((*exp, old.as_str()))
                    .ctx("purge challenges_by_expiry")?;
                t.remove(old.as_str()).ctx("purge challenges")?;
            }
            // Still stored: used (or expired and not purged yet, when more than
            // `PURGE_PER_LOGIN` expired at once; its token has expired too).
            fresh = t.get(nonce).ctx("read challenge")?.is_none();
            if fresh {
                t.insert(nonce, exp_ms).ctx("write challenge")?;
                by_expiry
                    .insert((exp_ms, nonce), ())
                    .ctx("write challenges_by_expiry")?;
            }
            Ok(())
        })?;
        Ok(fresh)
    }

    fn prune(&self, before_ms: u64, consumers: Consumers) -> R<Pruned> {
        let txn = self.db.begin_write().ctx("begin")?;
        let doomed: Vec<TaskRecord> = {
            let t = txn.open_table(TASKS).ctx("open tasks")?;
            let mut v = Vec::new();
            for item in t.iter().ctx("iterate tasks")? {
                let (_, r) = item.ctx("iterate tasks")?;
                let rec = from_json::<TaskRecord>(r.value())?;
                if prunable(&rec, before_ms, consumers) {
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

    fn status(&self) -> R<StatusReport> {
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
            *report
                .counts
                .entry(type_name(rec.task_type))
                .or_default()
                .entry(rec.state.name().to_string())
                .or_default() += 1;
            report.tasks.push(task_row(rec));
        }
        read_keys(&r, &mut report)?;
        Ok(report)
    }

    fn summary(&self) -> R<StatusReport> {
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
        Ok(report)
    }
}

/// One redb transaction: a write transaction, or a read-only one for [`Reads`].
struct RedbTxn<'a, X = WriteTransaction> {
    txn: &'a X,
}

impl<X: Text> Reads for RedbTxn<'_, X> {
    fn task(&mut self, task_id: &str) -> R<Option<TaskRecord>> {
        get_json(self.txn, TASKS, task_id)
    }

    fn assignment(&mut self, uuid: &str) -> R<Option<Assignment>> {
        get_json(self.txn, ASSIGNMENTS, uuid)
    }

    fn payload(&mut self, task_id: &str) -> R<Option<String>> {
        self.txn.text(PAYLOADS, task_id, |v| Ok(v.to_string()))
    }

    fn outstanding(&mut self, public_key: &str) -> R<Option<String>> {
        self.txn
            .text(OUTSTANDING, public_key, |v| Ok(v.to_string()))
    }
}

impl Txn for RedbTxn<'_> {
    fn insert_task(&mut self, task: &TaskRecord, payload: &str) -> R<()> {
        self.save_task(task)?;
        let mut t = self.txn.open_table(PAYLOADS).ctx("open payloads")?;
        t.insert(task.task_id.as_str(), payload)
            .ctx("write payload")?;
        Ok(())
    }

    fn save_task(&mut self, task: &TaskRecord) -> R<()> {
        let before = get_json::<TaskRecord>(self.txn, TASKS, &task.task_id)?.map(|t| t.state);
        put_json(self.txn, TASKS, &task.task_id, task)?;
        if before != Some(task.state) {
            index_task(self.txn, task, before, Some(task.state))?;
        }
        Ok(())
    }

    fn pending(
        &mut self,
        task_types: &[u8],
        after: Option<u64>,
        limit: usize,
    ) -> R<Vec<TaskRecord>> {
        let p = self.txn.open_table(PENDING).ctx("open pending_by_type")?;
        let from = after.map_or(0, |o| o.saturating_add(1));
        // Up to `limit` of each type asked for, then the oldest `limit` of them: only the
        // types asked for are read, and only the records handed back are decoded.
        let mut types = task_types.to_vec();
        types.sort_unstable();
        types.dedup();
        let mut ids: Vec<(u64, String)> = Vec::new();
        for t in types {
            for item in p
                .range((t, from)..=(t, u64::MAX))
                .ctx("iterate pending_by_type")?
                .take(limit)
            {
                let (k, id) = item.ctx("iterate pending_by_type")?;
                ids.push((k.value().1, id.value().to_string()));
            }
        }
        ids.sort_unstable();
        ids.truncate(limit);
        let mut out = Vec::with_capacity(ids.len());
        for (_, id) in ids {
            let Some(task) = get_json::<TaskRecord>(self.txn, TASKS, &id)? else {
                return Err(CoordinatorError::store(
                    "read task",
                    format!("the pending index names a missing task {id}"),
                ));
            };
            out.push(task);
        }
        Ok(out)
    }

    fn claim(&mut self, task_ids: &[&str]) -> R<Option<TaskRecord>> {
        // One writer at a time: nothing else holds them.
        for id in task_ids {
            if let Some(t) = self.task(id)?.filter(|t| t.state == TaskState::Pending) {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    fn put_assignment(&mut self, a: &Assignment) -> R<()> {
        put_json(self.txn, ASSIGNMENTS, &a.uuid, a)?;
        // An assignment's deadline is set when it is made, so its index entry is keyed by the
        // deadline it has now: no read of the record before. (An entry left behind by a changed
        // deadline would be dropped by `expired` once due.)
        let mut t = self.txn.open_table(LIVE).ctx("open live_by_deadline")?;
        let key = (a.deadline_ms, a.uuid.as_str());
        if a.state == AssignmentState::Live {
            t.insert(key, ()).ctx("write live_by_deadline")?;
        } else {
            t.remove(key).ctx("write live_by_deadline")?;
        }
        Ok(())
    }

    fn expired(&mut self, now_ms: u64) -> R<Vec<Assignment>> {
        // The index's entries up to `now_ms` ("" sorts before every uuid).
        let due: Vec<(u64, String)> = {
            let t = self.txn.open_table(LIVE).ctx("open live_by_deadline")?;
            let mut v = Vec::new();
            let end = (now_ms.saturating_add(1), "");
            for item in t.range(..end).ctx("iterate live_by_deadline")? {
                let (k, _) = item.ctx("iterate live_by_deadline")?;
                let (deadline, uuid) = k.value();
                v.push((deadline, uuid.to_string()));
            }
            v
        };
        let mut out = Vec::new();
        for (deadline, uuid) in due {
            match self.assignment(&uuid)? {
                Some(a) if a.state == AssignmentState::Live && a.deadline_ms <= now_ms => {
                    out.push(a)
                }
                // An entry out of step with its assignment: drop it.
                _ => {
                    let mut t = self.txn.open_table(LIVE).ctx("open live_by_deadline")?;
                    t.remove((deadline, uuid.as_str()))
                        .ctx("write live_by_deadline")?;
                }
            }
        }
        Ok(out)
    }

    fn set_outstanding(&mut self, public_key: &str, uuid: &str) -> R<()> {
        let mut t = self.txn.open_table(OUTSTANDING).ctx("open outstanding")?;
        t.insert(public_key, uuid).ctx("write outstanding")?;
        Ok(())
    }

    fn clear_outstanding(&mut self, public_key: &str, uuid: &str) -> R<()> {
        let mut t = self.txn.open_table(OUTSTANDING).ctx("open outstanding")?;
        let current = t
            .get(public_key)
            .ctx("read outstanding")?
            .map(|g| g.value().to_string());
        if current.as_deref() == Some(uuid) {
            t.remove(public_key).ctx("write outstanding")?;
        }
        Ok(())
    }

    fn seen(&mut self, public_key: &str, seen: &ProverSeen) -> R<()> {
        let before: Option<ProverSeen> = get_json(self.txn, PROVERS, public_key)?;
        let mut t = self
            .txn
            .open_table(PROVERS_BY_SEEN)
            .ctx("open provers_by_seen")?;
        if let Some(before) = before {
            t.remove((before.last_seen_ms, public_key))
                .ctx("write provers_by_seen")?;
        }
        t.insert((seen.last_seen_ms, public_key), ())
            .ctx("write provers_by_seen")?;
        drop(t);
        put_json(self.txn, PROVERS, public_key, seen)
    }

    fn recent_provers(&mut self, after: (u64, &str), limit: usize) -> R<Vec<(String, ProverSeen)>> {
        use std::ops::Bound;
        let index = self
            .txn
            .open_table(PROVERS_BY_SEEN)
            .ctx("open provers_by_seen")?;
        let provers = self.txn.open_table(PROVERS).ctx("open provers")?;
        let mut v = Vec::new();
        for item in index
            .range::<(u64, &str)>((Bound::Excluded(after), Bound::Unbounded))
            .ctx("iterate provers_by_seen")?
            .take(limit)
        {
            let (k, _) = item.ctx("iterate provers_by_seen")?;
            let key = k.value().1;
            let seen = text_in(&provers, key, from_json::<ProverSeen>)?
                .ok_or_else(|| CoordinatorError::store("read provers", "indexed but absent"))?;
            v.push((key.to_string(), seen));
        }
        Ok(v)
    }

    fn busy_provers(&mut self, after: Option<&str>, limit: usize) -> R<Vec<(String, ProverSeen)>> {
        use std::ops::Bound;
        let busy = self.txn.open_table(OUTSTANDING).ctx("open outstanding")?;
        let provers = self.txn.open_table(PROVERS).ctx("open provers")?;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut v = Vec::new();
        for item in busy
            .range::<&str>((from, Bound::Unbounded))
            .ctx("iterate outstanding")?
        {
            if v.len() == limit {
                break;
            }
            let (k, _) = item.ctx("iterate outstanding")?;
            let key = k.value();
            // Every key asks (and is seen) before it is given an assignment; one that was not
            // has no declared types to count it by and is passed over, as PostgreSQL's join does.
            if let Some(seen) = text_in(&provers, key, from_json::<ProverSeen>)? {
                v.push((key.to_string(), seen));
            }
        }
        Ok(v)
    }

    fn proven(&mut self, public_key: &str) -> R<bool> {
        Ok(get_u64(self.txn, PROVEN, public_key)? > 0)
    }

    fn add_proven(&mut self, public_key: &str) -> R<()> {
        let n = get_u64(self.txn, PROVEN, public_key)?;
        put_u64(self.txn, PROVEN, public_key, n + 1)
    }

    fn blocked(&mut self, public_key: &str) -> R<Option<String>> {
        let t = self.txn.open_table(BLOCKED).ctx("open blocked")?;
        let v = t
            .get(public_key)
            .ctx("read blocked")?
            .map(|g| g.value().to_string());
        Ok(v)
    }

    fn block(&mut self, public_key: &str, reason: &str) -> R<()> {
        let mut t = self.txn.open_table(BLOCKED).ctx("open blocked")?;
        t.insert(public_key, reason).ctx("write blocked")?;
        Ok(())
    }

    fn unblock(&mut self, public_key: &str) -> R<bool> {
        let was = {
            let mut t = self.txn.open_table(BLOCKED).ctx("open blocked")?;
            let was = t.remove(public_key).ctx("write blocked")?.is_some();
            was
        };
        let mut t = self.txn.open_table(INVALID).ctx("open invalid_proofs")?;
        t.remove(public_key).ctx("write invalid_proofs")?;
        Ok(was)
    }

    fn add_invalid(&mut self, public_key: &str) -> R<u64> {
        let n = get_u64(self.txn, INVALID, public_key)? + 1;
        put_u64(self.txn, INVALID, public_key, n)?;
        Ok(n)
    }

    fn proof(&mut self, task_id: &str) -> R<Option<ProofPayload>> {
        get_json(self.txn, PROOFS, task_id)
    }

    fn put_proof(&mut self, task_id: &str, proof: &ProofPayload) -> R<()> {
        put_json(self.txn, PROOFS, task_id, proof)
    }

    fn counter(&mut self, name: &str) -> R<u64> {
        get_u64(self.txn, COUNTERS, name)
    }

    fn set_counter(&mut self, name: &str, v: u64) -> R<()> {
        put_u64(self.txn, COUNTERS, name, v)
    }

    fn save_accounts(&mut self, accounts: &[(u64, Account)]) -> R<()> {
        let mut t = self.txn.open_table(ACCOUNTS).ctx("open accounts")?;
        for (i, a) in accounts {
            let text = to_json(a)?;
            t.insert(*i, text.as_str()).ctx("write account")?;
        }
        Ok(())
    }

    fn settlement(&mut self, index: u64) -> R<Option<String>> {
        let t = self.txn.open_table(SETTLEMENTS).ctx("open settlements")?;
        let v = t.get(index).ctx("read settlement")?;
        Ok(v.map(|g| g.value().to_string()))
    }

    fn put_settlement(&mut self, index: u64, record: &str) -> R<()> {
        let mut t = self.txn.open_table(SETTLEMENTS).ctx("open settlements")?;
        t.insert(index, record).ctx("write settlement")?;
        Ok(())
    }
}
