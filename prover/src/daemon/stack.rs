//! The crash-safe task stack (one redb file per process, shared by all workers).
//!
//! One entry per worker, keyed by the worker's public key: the task it holds, how many proving
//! attempts were started, and — once proving ended — the submission to deliver (a proof, or a
//! failure report). Every method is one redb transaction, committed (durably) before it returns,
//! and blocking: call it from `spawn_blocking`.
//!
//! The worker's rules built on it: the task is written before proving; [`TaskStack::begin_attempt`]
//! commits the incremented counter before each attempt and refuses a new attempt once
//! `max_attempts` were started; the submission is written before it is sent and the entry deleted
//! only after the coordinator accepted or definitively refused it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prover_core::wire::{SubmitProofRequest, Task};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks_v1");

/// Errors of the task stack. A storage error is never dropped: the worker stops on it.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("task stack {path}: {action}: {source}")]
    Db {
        path: PathBuf,
        action: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The file is not a readable redb database (truncated, overwritten, not redb at all).
    #[error(
        "task stack {path} is damaged ({reason}); move it aside (e.g. `mv {path} {path}.damaged`) \
         and start again: the node makes a new empty stack, and the coordinator reassigns the old \
         one's tasks after their timeout"
    )]
    Damaged { path: PathBuf, reason: String },
    #[error("task stack {path}: entry of worker {worker} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        worker: String,
        source: serde_json::Error,
    },
    #[error("worker {worker} already holds task {held}; cannot take task {new}")]
    Occupied {
        worker: String,
        held: String,
        new: String,
    },
    #[error("worker {worker} holds no task {task_id}")]
    Missing { worker: String, task_id: String },
}

/// What the stack holds for one worker.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StackEntry {
    pub task: Task,
    /// Proving attempts started (committed before each attempt).
    pub attempts: u32,
    /// Set once proving ended: the body to submit (a proof or a failure report).
    pub submission: Option<SubmitProofRequest>,
    /// When the task was stored, RFC 3339.
    pub stored_at: String,
}

/// The answer of [`TaskStack::begin_attempt`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// Attempt number `n` (1-based) is committed; prove now.
    Start(u32),
    /// `attempts` attempts were already started (the cap): report failure_type 1 instead.
    Exhausted { attempts: u32 },
}

/// The stack. Cheap to clone (shares the database).
#[derive(Clone)]
pub struct TaskStack {
    db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for TaskStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskStack")
            .field("path", &self.path)
            .finish()
    }
}

impl TaskStack {
    /// Opens (or creates) the stack file. Fails if another process holds it open.
    pub fn open(path: &Path) -> Result<Self, StackError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| db_err(path, "creating its directory", e))?;
        }
        let db = open_redb(path)?;
        let stack = Self {
            db: Arc::new(db),
            path: path.into(),
        };
        // Create the table so that readers never see "table does not exist".
        let tx = stack.write_tx()?;
        tx.open_table(TASKS)
            .map_err(|e| db_err(path, "creating the table", e))?;
        tx.commit().map_err(|e| db_err(path, "committing", e))?;
        Ok(stack)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entry of `worker`, if any.
    pub fn get(&self, worker: &str) -> Result<Option<StackEntry>, StackError> {
        let tx = self
            .db
            .begin_read()
            .map_err(|e| db_err(&self.path, "beginning a read", e))?;
        let table = tx
            .open_table(TASKS)
            .map_err(|e| db_err(&self.path, "opening the table", e))?;
        let value = table
            .get(worker)
            .map_err(|e| db_err(&self.path, "reading", e))?;
        value.map(|v| self.decode(worker, v.value())).transpose()
    }

    /// Number of entries (tasks held by any worker).
    pub fn len(&self) -> Result<u64, StackError> {
        let tx = self
            .db
            .begin_read()
            .map_err(|e| db_err(&self.path, "beginning a read", e))?;
        let table = tx
            .open_table(TASKS)
            .map_err(|e| db_err(&self.path, "opening the table", e))?;
        table.len().map_err(|e| db_err(&self.path, "counting", e))
    }

    pub fn is_empty(&self) -> Result<bool, StackError> {
        Ok(self.len()? == 0)
    }

    /// Stores a task for `worker` before anything is done with it. Storing the task the worker
    /// already holds (the coordinator re-sends an outstanding task) keeps its attempt count;
    /// another task while one is held is an error.
    pub fn put_task(&self, worker: &str, task: &Task) -> Result<StackEntry, StackError> {
        self.update(worker, |current| match current {
            Some(held) if held.task.task_id == task.task_id && held.task.uuid == task.uuid => {
                Ok(Some(held))
            }
            Some(held) => Err(StackError::Occupied {
                worker: worker.into(),
                held: held.task.task_id,
                new: task.task_id.clone(),
            }),
            None => Ok(Some(StackEntry {
                task: task.clone(),
                attempts: 0,
                submission: None,
                stored_at: chrono::Utc::now().to_rfc3339(),
            })),
        })
        .and_then(|e| {
            e.ok_or_else(|| StackError::Missing {
                worker: worker.into(),
                task_id: task.task_id.clone(),
            })
        })
    }

    /// Counts and commits one more proving attempt of `task_id`, unless `max_attempts` were
    /// already started.
    pub fn begin_attempt(
        &self,
        worker: &str,
        task_id: &str,
        max_attempts: u32,
    ) -> Result<Attempt, StackError> {
        let mut answer = None;
        self.update(worker, |current| {
            let mut entry = held(worker, task_id, current)?;
            if entry.attempts >= max_attempts {
                answer = Some(Attempt::Exhausted {
                    attempts: entry.attempts,
                });
            } else {
                entry.attempts += 1;
                answer = Some(Attempt::Start(entry.attempts));
            }
            Ok(Some(entry))
        })?;
        answer.ok_or_else(|| StackError::Missing {
            worker: worker.into(),
            task_id: task_id.into(),
        })
    }

    /// Stores the submission (proof or failure report) of the held task, before it is sent.
    pub fn put_submission(
        &self,
        worker: &str,
        submission: &SubmitProofRequest,
    ) -> Result<(), StackError> {
        self.update(worker, |current| {
            let mut entry = held(worker, &submission.task_id, current)?;
            entry.submission = Some(submission.clone());
            Ok(Some(entry))
        })
        .map(|_| ())
    }

    /// Deletes the entry of `worker` if it holds `task_id` (after the coordinator accepted or
    /// definitively refused the submission). Returns whether something was deleted.
    pub fn remove(&self, worker: &str, task_id: &str) -> Result<bool, StackError> {
        let mut removed = false;
        self.update(worker, |current| match current {
            Some(entry) if entry.task.task_id == task_id => {
                removed = true;
                Ok(None)
            }
            other => Ok(other),
        })?;
        Ok(removed)
    }

    /// All entries, keyed by worker public key.
    pub fn entries(&self) -> Result<Vec<(String, StackEntry)>, StackError> {
        let tx = self
            .db
            .begin_read()
            .map_err(|e| db_err(&self.path, "beginning a read", e))?;
        let table = tx
            .open_table(TASKS)
            .map_err(|e| db_err(&self.path, "opening the table", e))?;
        let mut out = vec![];
        for item in table
            .iter()
            .map_err(|e| db_err(&self.path, "iterating", e))?
        {
            let (k, v) = item.map_err(|e| db_err(&self.path, "iterating", e))?;
            let worker = k.value().to_string();
            let entry = self.decode(&worker, v.value())?;
            out.push((worker, entry));
        }
        Ok(out)
    }

    /// Read-modify-write of one worker's entry in one committed transaction.
    fn update<F>(&self, worker: &str, f: F) -> Result<Option<StackEntry>, StackError>
    where
        F: FnOnce(Option<StackEntry>) -> Result<Option<StackEntry>, StackError>,
    {
        let tx = self.write_tx()?;
        let result = {
            let mut table = tx
                .open_table(TASKS)
                .map_err(|e| db_err(&self.path, "opening the table", e))?;
            let current = table
                .get(worker)
                .map_err(|e| db_err(&self.path, "reading", e))?
                .map(|v| self.decode(worker, v.value()))
                .transpose()?;
            let next = f(current)?;
            match &next {
                Some(entry) => {
                    let bytes =
                        serde_json::to_vec(entry).map_err(|source| StackError::Corrupt {
                            path: self.path.clone(),
                            worker: worker.into(),
                            source,
                        })?;
                    table
                        .insert(worker, bytes.as_slice())
                        .map_err(|e| db_err(&self.path, "writing", e))?;
                }
                None => {
                    table
                        .remove(worker)
                        .map_err(|e| db_err(&self.path, "deleting", e))?;
                }
            }
            next
        };
        tx.commit()
            .map_err(|e| db_err(&self.path, "committing", e))?;
        Ok(result)
    }

    fn write_tx(&self) -> Result<redb::WriteTransaction, StackError> {
        self.db
            .begin_write()
            .map_err(|e| db_err(&self.path, "beginning a write", e))
    }

    fn decode(&self, worker: &str, bytes: &[u8]) -> Result<StackEntry, StackError> {
        serde_json::from_slice(bytes).map_err(|source| StackError::Corrupt {
            path: self.path.clone(),
            worker: worker.into(),
            source,
        })
    }
}

fn held(
    worker: &str,
    task_id: &str,
    current: Option<StackEntry>,
) -> Result<StackEntry, StackError> {
    match current {
        Some(entry) if entry.task.task_id == task_id => Ok(entry),
        _ => Err(StackError::Missing {
            worker: worker.into(),
            task_id: task_id.into(),
        }),
    }
}

/// Opens (or creates) the redb file; a damaged one is [`StackError::Damaged`], never a panic.
fn open_redb(path: &Path) -> Result<Database, StackError> {
    prover_core::redb_file::open(path).map_err(|e| match e {
        prover_core::redb_file::RedbOpenError::Damaged(reason) => StackError::Damaged {
            path: path.into(),
            reason,
        },
        prover_core::redb_file::RedbOpenError::Other(e) => db_err(path, "opening", e),
    })
}

fn db_err(
    path: &Path,
    action: &'static str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> StackError {
    StackError::Db {
        path: path.into(),
        action,
        source: Box::new(e),
    }
}
