//! The PostgreSQL backend: state shared by any number of coordinator replicas.
//!
//! - **Client:** tokio-postgres with a deadpool pool, driven from the blocking store API by a
//!   small runtime of the backend's own (store calls run in `spawn_blocking`).
//! - **Schema:** versioned migrations (`coordinator/migrations/`, refinery) applied at connect,
//!   under an advisory lock so that replicas starting together apply them once. A database whose
//!   schema is newer than this build (a migration this build does not know) is refused.
//! - **Concurrency:** each scheduler decision is one transaction (READ COMMITTED). What a rule
//!   reads and then writes back (a task, an assignment, a counter) is read `FOR UPDATE`; the
//!   walk over pending tasks reads candidates without locks and locks only the one it picks
//!   (`claim`: `FOR UPDATE SKIP LOCKED`, pending re-checked on the row as it is then), and the
//!   sweep's read of expired assignments uses `FOR UPDATE SKIP LOCKED`, so two replicas never
//!   hand out one task twice nor time out one assignment twice.
//!   A `get_task` first writes its caller's `provers` row, which orders two requests of one key
//!   (the caller's `blocked` and `outstanding` rows are read in the same pipeline).
//!   A deadlock, serialization failure or unique-key race rolls the transaction back and runs it
//!   again; so does a connection lost before the commit. A submission's check before
//!   verification ([`Backend::read`]) reads outside a transaction, locking nothing: the
//!   transaction that records the outcome checks again.
//! - **Round trips:** statements are pipelined (see `PgTxn`): BEGIN goes with the first
//!   statement, writes whose answer nothing reads wait for the next statement or the COMMIT. A
//!   connection goes back to the pool only when it is known to be outside a transaction.
//! - **Proofs** live in the database (`proofs`, tens of KiB each): one transaction writes a
//!   proof with the task's state, every replica reads it, and one backup holds everything.
//! - **Flat cost:** `get_task` walks a partial index of the pending tasks; `/metrics` counts the
//!   unfinished tasks through a partial index and reads the verified counts from
//!   `verified_counts`, kept by every write of a task; the failed-prover rule reads the provers
//!   seen recently through `provers_by_seen` and the busy ones through `outstanding`.

use std::collections::HashMap;
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{ClientWrapper, Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::future::join_all;
use prover_core::rollup::Account;
use prover_core::wire::ProofPayload;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::{
    from_json, prunable, task_row, to_json, type_name, Assignment, AssignmentState, Backend,
    Consumers, ProverSeen, Pruned, Reads, StatusReport, TaskRecord, TaskState, Txn,
    PURGE_PER_LOGIN, R,
};
use crate::CoordinatorError;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Connections per coordinator process unless configured (`database_pool_size`). Few: each
/// request holds one only for its transaction, and more server processes than the database
/// server has cores to run them wait for a core holding locks (a commit waits behind others
/// for the WAL): on a 2-core server, 16 connections gave a p99 get_task of 12–25 ms where 4 gave
/// 6.8–16 ms at 100 finished tasks (`benches/RESULTS.md`, fortieth session).
pub const DEFAULT_POOL_SIZE: usize = 8;
/// Runs of one transaction after conflicts before giving up.
const MAX_RUNS: u32 = 20;
/// Arbitrary key of the advisory lock held while migrating.
const MIGRATION_LOCK: i64 = 0x636f_6f72_645f_6d69;

/// One page of the pending walk: the pending tasks of one type (`$1`) after `ord` `$2`, oldest
/// first, at most `$3`. It must be planned as a walk of the partial index `tasks_pending_by_type`
/// (migration V4 removed the other index that gives this order; a service test checks the plan
/// with a finished history).
pub const PENDING_WALK: &str = "SELECT ord, record FROM tasks WHERE state = 'pending' \
     AND task_type = $1 AND ord > $2 ORDER BY ord LIMIT $3";

/// One page of the failed-prover rule's walk of the provers seen recently: those whose (last
/// seen, key) comes after (`$1`, `$2`), in that order, at most `$3`. It must be planned as a walk
/// of `provers_by_seen` (migration V5), which the keys that went quiet are not read through (a
/// service test checks the plan).
pub const RECENT_PROVERS: &str = "SELECT public_key, record, last_seen_ms FROM provers \
     WHERE (last_seen_ms, public_key) > ($1, $2) ORDER BY last_seen_ms, public_key LIMIT $3";

/// Locks the first task of `$1` (task ids, in the order to try them) that is pending and that
/// no other transaction holds, and returns it with its payload. Rows are locked in that order,
/// those held elsewhere skipped and `pending` checked again on each row as it is once locked,
/// until one is locked. The order is the array's, not `ORDER BY ord`: an order by `ord` could
/// be planned as a walk of the pending index from its oldest entry (a table not yet analysed
/// was: ~2,000 index entries read per get_task in one load run) instead of one primary-key
/// lookup per id.
const CLAIM: &str =
    "SELECT t.record, t.payload FROM unnest($1::text[]) WITH ORDINALITY AS c(id, i) \
     JOIN tasks t ON t.task_id = c.id WHERE t.state = 'pending' \
     ORDER BY c.i LIMIT 1 FOR UPDATE OF t SKIP LOCKED";

const READ_BLOCKED: &str = "SELECT reason FROM blocked WHERE public_key = $1";
const READ_OUTSTANDING: &str = "SELECT uuid FROM outstanding WHERE public_key = $1";

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];
/// The parameters of a statement sent later: owned.
type Owned = Vec<Box<dyn ToSql + Sync + Send>>;

/// Owned statement parameters.
macro_rules! owned {
    ($($p:expr),* $(,)?) => {
        vec![$(Box::new($p) as Box<dyn ToSql + Sync + Send>),*]
    };
}

/// A tokio-postgres error with its cause (the server's message), as one line.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{e}: {db}"),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// Whether running the transaction again may succeed.
fn is_conflict(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::UNIQUE_VIOLATION
    ) || e.is_closed()
}

fn pg_err(what: &'static str, e: &tokio_postgres::Error) -> CoordinatorError {
    CoordinatorError::store(what, describe(e))
}

/// Column `i` of a row, or a store error (never a panic on what the database returned).
fn col<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> R<T> {
    row.try_get(i)
        .map_err(|e| CoordinatorError::store("read column", describe(&e)))
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Provers as `RECENT_PROVERS` and the busy walk return them (key, record, last seen): the last
/// seen is the indexed column's, which the walk's cursor continues from.
fn prover_rows(rows: &[Row]) -> R<Vec<(String, ProverSeen)>> {
    rows.iter()
        .map(|r| {
            let mut seen: ProverSeen = from_json(&col::<String>(r, 1)?)?;
            seen.last_seen_ms = u64_of(col(r, 2)?);
            Ok((col(r, 0)?, seen))
        })
        .collect()
}

fn assignment_state(s: AssignmentState) -> &'static str {
    match s {
        AssignmentState::Live => "live",
        AssignmentState::TimedOut => "timed_out",
        AssignmentState::Submitted => "submitted",
        AssignmentState::Superseded => "superseded",
    }
}

/// Creates a new, empty database named `{prefix}_{random}` on the server of `server_url` (a URL
/// as `database_url` takes, naming any database the user may connect to) and returns the new
/// database's URL. For tests, benchmarks and first setups; the coordinator itself only needs the
/// database to exist. `prefix` must be a lower-case SQL identifier.
pub fn create_database(server_url: &str, prefix: &str) -> R<String> {
    if prefix.is_empty()
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(CoordinatorError::Config(format!(
            "database name prefix {prefix:?}: lower-case letters, digits and _ only"
        )));
    }
    let (base, _) = server_url.rsplit_once('/').ok_or_else(|| {
        CoordinatorError::Config(format!("{server_url:?} does not end in /DATABASE"))
    })?;
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let sql = format!("CREATE DATABASE {name}");
    let server_url = server_url.to_string();
    // Its own thread and runtime: callers may be inside another runtime.
    std::thread::spawn(move || -> R<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| CoordinatorError::Io {
                what: "starting a runtime to create a database".into(),
                source,
            })?;
        rt.block_on(async {
            let (client, conn) =
                tokio_postgres::connect(&server_url, NoTls)
                    .await
                    .map_err(|e| {
                        CoordinatorError::store("connect to create a database", describe(&e))
                    })?;
            let driver = tokio::spawn(conn);
            let r = client
                .batch_execute(&sql)
                .await
                .map_err(|e| CoordinatorError::store("create a database", describe(&e)));
            drop(client);
            let _ = driver.await;
            r
        })
    })
    .join()
    .map_err(|_| CoordinatorError::store("create a database", "the thread panicked"))??;
    Ok(format!("{base}/{name}"))
}

/// The PostgreSQL backend.
pub struct PgBackend {
    pool: Pool,
    /// Transactions committed without waiting for the WAL flush (see [`Txn::commit_lazily`]).
    lazy_commits: AtomicU64,
    /// Drives the pool's connections; `None` only while dropping.
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for PgBackend {
    fn drop(&mut self) {
        // A runtime may not be dropped (blocking) inside another runtime's thread.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl PgBackend {
    /// Connects with a pool of at most `pool_size` connections, checks the server is
    /// reachable, and applies the migrations.
    pub fn connect(url: &str, pool_size: usize) -> R<Self> {
        if pool_size == 0 {
            return Err(CoordinatorError::Config(
                "database_pool_size must be at least 1".into(),
            ));
        }
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| CoordinatorError::Config(format!("database_url: {}", describe(&e))))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("coordinator");
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("coordinator-pg")
            .enable_all()
            .build()
            .map_err(|source| CoordinatorError::Io {
                what: "starting the PostgreSQL client's runtime".into(),
                source,
            })?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| CoordinatorError::store("create the connection pool", e))?;
        let backend = Self {
            pool,
            lazy_commits: AtomicU64::new(0),
            rt: Some(rt),
        };
        backend.migrate()?;
        Ok(backend)
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        // Only `drop` takes it.
        self.rt.as_ref().unwrap_or_else(|| unreachable!())
    }

    fn client(&self) -> R<deadpool_postgres::Object> {
        self.rt()
            .block_on(self.pool.get())
            .map_err(|e| CoordinatorError::store("connect to PostgreSQL", e))
    }

    fn migrate(&self) -> R<()> {
        let mut client = self.client()?;
        self.rt().block_on(async {
            client
                .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
                .await
                .map_err(|e| pg_err("lock for migrations", &e))?;
            let report = embedded::migrations::runner()
                .run_async(&mut **client)
                .await
                .map_err(|e| {
                    CoordinatorError::store(
                        "migrate",
                        format!(
                            "{e} (a migration this build does not know means the database was \
                             made by a newer coordinator)"
                        ),
                    )
                });
            let unlock = client
                .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
                .await;
            let report = report?;
            unlock.map_err(|e| pg_err("unlock after migrations", &e))?;
            for m in report.applied_migrations() {
                tracing::info!(version = m.version(), name = m.name(), "applied migration");
            }
            Ok(())
        })
    }

    /// One query outside a scheduler transaction.
    fn query(&self, what: &'static str, sql: &str, params: Params<'_>) -> R<Vec<Row>> {
        let client = self.client()?;
        query_on(self.rt(), &client, what, sql, params)
    }

    /// The counts per type and state (indexed queries: none reads the finished tasks).
    fn counts(&self, report: &mut StatusReport) -> R<()> {
        let unfinished = self.query(
            "count tasks",
            "SELECT task_type, state, count(*) FROM tasks WHERE state <> 'verified' \
             GROUP BY task_type, state",
            &[],
        )?;
        for row in unfinished {
            let t: i16 = col(&row, 0)?;
            let s: String = col(&row, 1)?;
            let n: i64 = col(&row, 2)?;
            report
                .counts
                .entry(type_name(t as u8))
                .or_default()
                .insert(s, u64_of(n));
        }
        let verified = self.query(
            "count verified tasks",
            "SELECT task_type, n FROM verified_counts",
            &[],
        )?;
        for row in verified {
            let t: i16 = col(&row, 0)?;
            let n: i64 = col(&row, 1)?;
            report
                .counts
                .entry(type_name(t as u8))
                .or_default()
                .insert(TaskState::Verified.name().to_string(), u64_of(n));
        }
        Ok(())
    }

    /// The blocked keys and the invalid-proof counts (whole tables: for the admin status only).
    fn keys(&self, report: &mut StatusReport) -> R<()> {
        for row in self.query(
            "read blocked",
            "SELECT public_key FROM blocked ORDER BY public_key",
            &[],
        )? {
            report.blocked.push(col(&row, 0)?);
        }
        for row in self.query(
            "read invalid_proofs",
            "SELECT public_key, n FROM invalid_proofs",
            &[],
        )? {
            let n: i64 = col(&row, 1)?;
            report.invalid_proofs.insert(col(&row, 0)?, u64_of(n));
        }
        Ok(())
    }

    /// Runs `f` in one transaction and commits it; runs it again (up to `MAX_RUNS` times) when
    /// a statement met a conflict that another run may not (see [`is_conflict`]).
    fn run<T>(&self, mut f: impl FnMut(&mut PgTxn<'_>) -> R<T>) -> R<T> {
        let mut run = 0;
        loop {
            run += 1;
            let mut conn = Conn {
                obj: Some(self.client()?),
                idle: false,
            };
            let (result, conflict) = {
                let mut txn = PgTxn::new(self.rt(), conn.client());
                match f(&mut txn).and_then(|v| txn.finish().map(|()| v)) {
                    Ok(v) => match txn.commit() {
                        Ok(()) => {
                            if txn.lazy {
                                self.lazy_commits.fetch_add(1, Ordering::Relaxed);
                            }
                            conn.idle = true;
                            (Ok(v), None)
                        }
                        Err(failed) => {
                            conn.idle = failed.ended;
                            (Err(failed.error), failed.conflict)
                        }
                    },
                    Err(e) => {
                        let conflict = txn.conflict.take();
                        conn.idle = txn.rollback();
                        (Err(e), conflict)
                    }
                }
            };
            // Back to the pool only outside a transaction (else closed: see `Conn`).
            drop(conn);
            match (result, conflict) {
                (Ok(v), _) => return Ok(v),
                (Err(_), Some(why)) if run < MAX_RUNS => {
                    tracing::debug!(run, error = %why, "conflict; running the transaction again");
                    // A short, growing pause lets the other transaction finish.
                    std::thread::sleep(Duration::from_millis(u64::from(run) * 2));
                }
                (Err(e), _) => return Err(e),
            }
        }
    }
}

/// One statement on `client`, on its own (outside a transaction, or in the one `client` has
/// open).
fn query_on(
    rt: &tokio::runtime::Runtime,
    client: &ClientWrapper,
    what: &'static str,
    sql: &str,
    params: Params<'_>,
) -> R<Vec<Row>> {
    rt.block_on(async {
        let st = client
            .prepare_cached(sql)
            .await
            .map_err(|e| pg_err(what, &e))?;
        client
            .query(&st, params)
            .await
            .map_err(|e| pg_err(what, &e))
    })
}

/// The first column of the first row, as text.
fn first_text(rows: &[Row]) -> R<Option<String>> {
    rows.first().map(|r| col(r, 0)).transpose()
}

const READ_TASK: &str = "SELECT record FROM tasks WHERE task_id = $1";
const READ_ASSIGNMENT: &str = "SELECT record FROM assignments WHERE uuid = $1";
const READ_PAYLOAD: &str = "SELECT payload FROM tasks WHERE task_id = $1";

/// [`Backend::read`]'s reads: each a statement of its own on one pooled connection, outside a
/// transaction (no xid, no row lock, no commit to wait for).
struct PgReads<'a> {
    rt: &'a tokio::runtime::Runtime,
    client: &'a ClientWrapper,
}

impl PgReads<'_> {
    fn text(&self, what: &'static str, sql: &str, key: &str) -> R<Option<String>> {
        first_text(&query_on(self.rt, self.client, what, sql, &[&key])?)
    }
}

impl Reads for PgReads<'_> {
    fn task(&mut self, task_id: &str) -> R<Option<TaskRecord>> {
        self.text("read task", READ_TASK, task_id)?
            .map(|t| from_json(&t))
            .transpose()
    }

    fn assignment(&mut self, uuid: &str) -> R<Option<Assignment>> {
        self.text("read assignment", READ_ASSIGNMENT, uuid)?
            .map(|t| from_json(&t))
            .transpose()
    }

    fn payload(&mut self, task_id: &str) -> R<Option<String>> {
        self.text("read payload", READ_PAYLOAD, task_id)
    }

    fn outstanding(&mut self, public_key: &str) -> R<Option<String>> {
        self.text("read outstanding", READ_OUTSTANDING, public_key)
    }
}

/// A pooled connection that goes back to the pool only when it is known to be outside a
/// transaction (`idle`); otherwise (a statement failed and so did the rollback, a commit's
/// outcome is unknown, or a panic unwound through the transaction) it is closed, which ends
/// whatever it had open, and the pool makes a new one.
struct Conn {
    /// `None` only while dropping.
    obj: Option<deadpool_postgres::Object>,
    idle: bool,
}

impl Conn {
    fn client(&self) -> &ClientWrapper {
        match &self.obj {
            Some(o) => o,
            None => unreachable!("only `drop` takes the connection"),
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if !self.idle {
            if let Some(o) = self.obj.take() {
                drop(deadpool_postgres::Object::take(o));
            }
        }
    }
}

impl Backend for PgBackend {
    fn write(&self, f: &mut dyn FnMut(&mut dyn Txn) -> R<()>) -> R<()> {
        self.run(|tx| f(tx))
    }

    fn read(&self, f: &mut dyn FnMut(&mut dyn Reads) -> R<()>) -> R<()> {
        // Outside a transaction, the connection goes back to the pool as it is.
        let client = self.client()?;
        f(&mut PgReads {
            rt: self.rt(),
            client: &client,
        })
    }

    fn health(&self) -> R<u64> {
        let mut report = StatusReport::zeroed();
        self.counts(&mut report)?;
        Ok(report.counts.values().flat_map(|m| m.values()).sum())
    }

    fn load_accounts(&self) -> R<Vec<(u64, Account)>> {
        let rows = self.query(
            "read accounts",
            "SELECT idx, record FROM accounts ORDER BY idx",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                let i: i64 = col(r, 0)?;
                let text: String = col(r, 1)?;
                Ok((u64_of(i), from_json(&text)?))
            })
            .collect()
    }

    fn use_challenge(&self, nonce: &str, exp_ms: u64, purge_before_ms: u64) -> R<bool> {
        let mut out = false;
        self.run(|tx| {
            // At most `PURGE_PER_LOGIN` of the expired ones (through the `exp_ms` index), and
            // none another login is purging: concurrent logins do not queue on each other's
            // row locks.
            tx.queue(
                "purge challenges",
                "DELETE FROM challenges WHERE nonce IN (SELECT nonce FROM challenges \
                 WHERE exp_ms < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                owned![i64_of(purge_before_ms), PURGE_PER_LOGIN as i64],
            );
            let n = tx.exec(
                "record challenge",
                "INSERT INTO challenges (nonce, exp_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&nonce, &i64_of(exp_ms)],
            )?;
            out = n == 1;
            Ok(())
        })?;
        Ok(out)
    }

    fn prune(&self, before_ms: u64, consumers: Consumers) -> R<Pruned> {
        let mut pruned = Pruned::default();
        self.run(|tx| {
            pruned = Pruned::default();
            let rows = tx.q(
                "read verified tasks",
                "SELECT record FROM tasks WHERE state = 'verified' AND updated_ms < $1 \
                 FOR UPDATE",
                &[&i64_of(before_ms)],
            )?;
            let mut ids = Vec::new();
            for row in rows {
                let text: String = col(&row, 0)?;
                let rec: TaskRecord = from_json(&text)?;
                if prunable(&rec, before_ms, consumers) {
                    *pruned.tasks.entry(type_name(rec.task_type)).or_default() += 1;
                    tx.count_verified(rec.task_type, -1)?;
                    ids.push(rec.task_id);
                }
            }
            pruned.proofs = tx.exec(
                "remove proofs",
                "DELETE FROM proofs WHERE task_id = ANY($1)",
                &[&ids],
            )?;
            pruned.assignments = tx.exec(
                "remove assignments",
                "DELETE FROM assignments WHERE task_id = ANY($1) AND state <> 'live'",
                &[&ids],
            )?;
            tx.exec(
                "remove tasks",
                "DELETE FROM tasks WHERE task_id = ANY($1)",
                &[&ids],
            )?;
            Ok(())
        })?;
        Ok(pruned)
    }

    fn status(&self) -> R<StatusReport> {
        let mut report = StatusReport::zeroed();
        self.counts(&mut report)?;
        self.keys(&mut report)?;
        for row in self.query("read tasks", "SELECT record FROM tasks ORDER BY ord", &[])? {
            let text: String = col(&row, 0)?;
            report.tasks.push(task_row(from_json(&text)?));
        }
        Ok(report)
    }

    fn summary(&self) -> R<StatusReport> {
        let mut report = StatusReport::zeroed();
        self.counts(&mut report)?;
        Ok(report)
    }

    fn lazy_commits(&self) -> u64 {
        self.lazy_commits.load(Ordering::Relaxed)
    }
}

/// One PostgreSQL transaction, with its own BEGIN and COMMIT so that both travel with other
/// statements: BEGIN with the first statement, COMMIT with the last writes. Writes whose answer
/// nothing reads are queued and sent with the next statement that is waited for, in order, in
/// one pipeline (one round trip). A hand-out is 5 round trips and recording a verified proof 3;
/// with one round trip per statement they were 9 and 10.
struct PgTxn<'a> {
    rt: &'a tokio::runtime::Runtime,
    client: &'a ClientWrapper,
    /// Whether BEGIN has been sent.
    begun: bool,
    /// Writes not sent yet (see above).
    queued: Vec<Queued>,
    /// Set when a statement failed in a way that running the transaction again may cure.
    conflict: Option<String>,
    /// Changes to `verified_counts` per task type, written last (see [`PgTxn::finish`]).
    verified_delta: std::collections::BTreeMap<u8, i64>,
    /// What `seen` read of its caller, kept in step with this transaction's own writes.
    caller: Option<Caller>,
    /// The payload of the task `claim` locked last (task id, payload).
    claimed: Option<(String, String)>,
    /// The state of each task this transaction holds locked (read `FOR UPDATE`, claimed or
    /// inserted), as this transaction has left it: what `save_task` needs to know of the row
    /// it replaces, so that its write can be queued.
    locked: HashMap<String, TaskState>,
    /// Commit without waiting for the WAL flush ([`Txn::commit_lazily`]).
    lazy: bool,
}

/// A write sent later (see [`PgTxn`]).
struct Queued {
    what: &'static str,
    sql: &'static str,
    params: Owned,
}

/// A pipeline that failed: the first statement that did, and whether anything was sent.
struct SendError {
    what: &'static str,
    error: tokio_postgres::Error,
    sent: bool,
}

/// A commit that failed.
struct CommitFailed {
    error: CoordinatorError,
    /// Why running the transaction again may succeed, if it may.
    conflict: Option<String>,
    /// Whether the transaction is known to have ended (committed or not).
    ended: bool,
}

/// The caller of a `get_task` as its transaction sees it: read with the `provers` write, in the
/// same pipeline, since the scheduler reads both next.
struct Caller {
    public_key: String,
    blocked: Option<String>,
    outstanding: Option<String>,
}

impl<'a> PgTxn<'a> {
    fn new(rt: &'a tokio::runtime::Runtime, client: &'a ClientWrapper) -> Self {
        Self {
            rt,
            client,
            begun: false,
            queued: Vec::new(),
            conflict: None,
            verified_delta: Default::default(),
            caller: None,
            claimed: None,
            locked: HashMap::new(),
            lazy: false,
        }
    }

    fn note(&mut self, what: &'static str, e: tokio_postgres::Error) -> CoordinatorError {
        if is_conflict(&e) {
            self.conflict = Some(describe(&e));
        }
        pg_err(what, &e)
    }

    /// Queues a write whose answer nothing reads (see [`PgTxn`]). It fails, if it does, when
    /// the pipeline it goes with is sent: with the next statement waited for, or the commit.
    fn queue(&mut self, what: &'static str, sql: &'static str, params: Owned) {
        self.queued.push(Queued { what, sql, params });
    }

    /// Sends, in one pipeline: BEGIN (the first time), the queued writes, then `last`; waits for
    /// all of them. They run in that order; the first that fails is the error (any after it
    /// fail only because the transaction is then aborted).
    fn send_raw<T>(
        &mut self,
        what: &'static str,
        last: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, SendError> {
        let queued = std::mem::take(&mut self.queued);
        let begin = !self.begun;
        let client = self.client;
        let mut sent = false;
        let r = self.rt.block_on(async {
            // Prepared first (each statement is cached on its connection after its first use),
            // so that nothing waits between the sends below and the order holds.
            let mut statements = Vec::with_capacity(queued.len());
            for q in &queued {
                let st = client
                    .prepare_cached(q.sql)
                    .await
                    .map_err(|error| SendError {
                        what: q.what,
                        error,
                        sent: false,
                    })?;
                statements.push(st);
            }
            sent = true;
            let begun = async {
                if begin {
                    client.batch_execute("BEGIN").await
                } else {
                    Ok(())
                }
            };
            let written = join_all(queued.iter().zip(&statements).map(|(q, st)| async move {
                let params: Vec<&(dyn ToSql + Sync)> = q
                    .params
                    .iter()
                    .map(|p| &**p as &(dyn ToSql + Sync))
                    .collect();
                client.execute(st, &params).await.map_err(|e| (q.what, e))
            }));
            // `biased`: polled in this order, and each sends its statement when first polled.
            let (begun, written, answer) = tokio::join!(biased; begun, written, last);
            let failed = |what, error| SendError {
                what,
                error,
                sent: true,
            };
            begun.map_err(|e| failed("begin", e))?;
            for w in written {
                w.map_err(|(what, e)| failed(what, e))?;
            }
            answer.map_err(|e| failed(what, e))
        });
        self.begun |= sent;
        r
    }

    /// [`PgTxn::send_raw`] for a statement inside the transaction.
    fn send<T>(
        &mut self,
        what: &'static str,
        last: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> R<T> {
        self.send_raw(what, last)
            .map_err(|f| self.note(f.what, f.error))
    }

    fn q(&mut self, what: &'static str, sql: &str, params: Params<'_>) -> R<Vec<Row>> {
        let client = self.client;
        self.send(what, async move {
            let st = client.prepare_cached(sql).await?;
            client.query(&st, params).await
        })
    }

    fn exec(&mut self, what: &'static str, sql: &str, params: Params<'_>) -> R<u64> {
        let client = self.client;
        self.send(what, async move {
            let st = client.prepare_cached(sql).await?;
            client.execute(&st, params).await
        })
    }

    /// Sends what is queued with COMMIT.
    fn commit(&mut self) -> Result<(), Box<CommitFailed>> {
        if !self.begun && self.queued.is_empty() {
            // Nothing was sent: there is no transaction.
            return Ok(());
        }
        let client = self.client;
        match self.send_raw("commit", client.batch_execute("COMMIT")) {
            Ok(()) => Ok(()),
            Err(f) if !f.sent => {
                let error = self.note(f.what, f.error);
                Err(Box::new(CommitFailed {
                    error,
                    conflict: self.conflict.take(),
                    ended: self.rollback(),
                }))
            }
            // A lost connection: whether the commit happened is unknown, so it is not run
            // again here.
            Err(f) if f.error.is_closed() => Err(Box::new(CommitFailed {
                error: CoordinatorError::store(
                    "commit",
                    format!(
                        "{} (at {}; whether the transaction was committed is unknown)",
                        describe(&f.error),
                        f.what
                    ),
                ),
                conflict: None,
                ended: false,
            })),
            // A statement or the COMMIT failed: the transaction ended without effect (a COMMIT
            // after a failed statement rolls back).
            Err(f) => Err(Box::new(CommitFailed {
                conflict: is_conflict(&f.error).then(|| describe(&f.error)),
                error: pg_err(f.what, &f.error),
                ended: true,
            })),
        }
    }

    /// Ends the transaction without committing; whether the connection is known to be outside
    /// one now.
    fn rollback(&mut self) -> bool {
        self.queued.clear();
        if !self.begun {
            return true;
        }
        match self.rt.block_on(self.client.batch_execute("ROLLBACK")) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %describe(&e), "rollback failed; closing the connection");
                false
            }
        }
    }

    /// The caller's entry, if `seen` was called for `public_key` in this transaction.
    fn caller(&mut self, public_key: &str) -> Option<&mut Caller> {
        self.caller.as_mut().filter(|c| c.public_key == public_key)
    }

    fn one_text(&mut self, what: &'static str, sql: &str, params: Params<'_>) -> R<Option<String>> {
        first_text(&self.q(what, sql, params)?)
    }

    fn count_verified(&mut self, task_type: u8, delta: i64) -> R<()> {
        *self.verified_delta.entry(task_type).or_default() += delta;
        Ok(())
    }

    /// The transaction's last writes: the verified counts. Every transaction that verifies a
    /// task writes these rows, so they are locked last, after every task and assignment row;
    /// taken earlier, they would deadlock with a transaction holding a task this one needs.
    fn finish(&mut self) -> R<()> {
        for (task_type, delta) in std::mem::take(&mut self.verified_delta) {
            if delta == 0 {
                continue;
            }
            self.queue(
                "count verified tasks",
                "INSERT INTO verified_counts (task_type, n) VALUES ($1, GREATEST($2::bigint, 0)) \
                 ON CONFLICT (task_type) DO UPDATE \
                 SET n = GREATEST(verified_counts.n + $2::bigint, 0)",
                owned![i16::from(task_type), delta],
            );
        }
        Ok(())
    }

    /// Writes a task this transaction has not locked, and returns its state before (`None`:
    /// no such task).
    fn write_task(&mut self, task: &TaskRecord) -> R<Option<TaskState>> {
        let record = to_json(task)?;
        // One statement: the row locked, its previous state read, and the update made.
        let before = self.one_text(
            "write task",
            "UPDATE tasks AS t SET state = $2, updated_ms = $3, record = $4 \
             FROM (SELECT task_id, state FROM tasks WHERE task_id = $1 FOR UPDATE) AS old \
             WHERE t.task_id = old.task_id RETURNING old.state",
            &[
                &task.task_id,
                &task.state.name(),
                &i64_of(task.updated_ms),
                &record,
            ],
        )?;
        before
            .map(|name| {
                TaskState::ALL
                    .into_iter()
                    .find(|s| s.name() == name)
                    .ok_or_else(|| {
                        CoordinatorError::store(
                            "write task",
                            format!("task {} was in an unknown state {name:?}", task.task_id),
                        )
                    })
            })
            .transpose()
    }
}

impl Reads for PgTxn<'_> {
    fn task(&mut self, task_id: &str) -> R<Option<TaskRecord>> {
        let task: Option<TaskRecord> = self
            .one_text(
                "read task",
                "SELECT record FROM tasks WHERE task_id = $1 FOR UPDATE",
                &[&task_id],
            )?
            .map(|t| from_json(&t))
            .transpose()?;
        if let Some(t) = &task {
            self.locked.insert(t.task_id.clone(), t.state);
        }
        Ok(task)
    }

    fn assignment(&mut self, uuid: &str) -> R<Option<Assignment>> {
        self.one_text(
            "read assignment",
            "SELECT record FROM assignments WHERE uuid = $1 FOR UPDATE",
            &[&uuid],
        )?
        .map(|t| from_json(&t))
        .transpose()
    }

    fn outstanding(&mut self, public_key: &str) -> R<Option<String>> {
        if let Some(c) = self.caller(public_key) {
            return Ok(c.outstanding.clone());
        }
        self.one_text("read outstanding", READ_OUTSTANDING, &[&public_key])
    }

    fn payload(&mut self, task_id: &str) -> R<Option<String>> {
        if let Some((_, payload)) = self.claimed.take_if(|(id, _)| id == task_id) {
            return Ok(Some(payload));
        }
        self.one_text("read payload", READ_PAYLOAD, &[&task_id])
    }
}

impl Txn for PgTxn<'_> {
    fn insert_task(&mut self, task: &TaskRecord, payload: &str) -> R<()> {
        let record = to_json(task)?;
        // A task inserted twice (two replicas making one batch) is a unique-key conflict when
        // the write is sent: the transaction runs again and finds it.
        self.queue(
            "insert task",
            "INSERT INTO tasks (task_id, task_type, ord, state, updated_ms, record, payload) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            owned![
                task.task_id.clone(),
                i16::from(task.task_type),
                i64_of(task.order),
                task.state.name(),
                i64_of(task.updated_ms),
                record,
                payload.to_string(),
            ],
        );
        self.locked.insert(task.task_id.clone(), task.state);
        if task.state == TaskState::Verified {
            self.count_verified(task.task_type, 1)?;
        }
        Ok(())
    }

    fn save_task(&mut self, task: &TaskRecord) -> R<()> {
        let before = match self.locked.get(&task.task_id) {
            // Locked by this transaction: its state is known and the row cannot go away.
            Some(before) => {
                let before = *before;
                self.queue(
                    "write task",
                    "UPDATE tasks SET state = $2, updated_ms = $3, record = $4 \
                     WHERE task_id = $1",
                    owned![
                        task.task_id.clone(),
                        task.state.name(),
                        i64_of(task.updated_ms),
                        to_json(task)?,
                    ],
                );
                before
            }
            None => self.write_task(task)?.ok_or_else(|| {
                CoordinatorError::store("write task", format!("no task {} to update", task.task_id))
            })?,
        };
        self.locked.insert(task.task_id.clone(), task.state);
        let verified = TaskState::Verified;
        if before != verified && task.state == verified {
            self.count_verified(task.task_type, 1)?;
        } else if before == verified && task.state != verified {
            self.count_verified(task.task_type, -1)?;
        }
        Ok(())
    }

    fn pending(
        &mut self,
        task_types: &[u8],
        after: Option<u64>,
        limit: usize,
    ) -> R<Vec<TaskRecord>> {
        // One query per type, each an ordered walk of the (task_type, ord) pending index (V2;
        // since V4 no other index gives the order, so the plan does not depend on the table's
        // statistics, nor on the finished history). With `task_type = ANY(…)` a
        // table never analysed (a fresh database filling up) was planned as a scan of every
        // pending task and a sort, ~30 ms per get_task at 40,000 pending. The walks are merged
        // by `ord`. Nothing is locked here: a page locked for the whole transaction kept up to
        // 32 tasks per concurrent get_task from every other one, which then answered "no task"
        // with tasks free (48 concurrent claims on 96 tasks: most got none). The task chosen is
        // locked by `claim`.
        let after = after.map_or(-1, i64_of);
        let limit_sql = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut out: Vec<(i64, TaskRecord)> = Vec::new();
        let mut types: Vec<i16> = task_types.iter().map(|t| i16::from(*t)).collect();
        types.sort_unstable();
        types.dedup();
        for t in types {
            let rows = self.q(
                "read pending tasks",
                PENDING_WALK,
                &[&t, &after, &limit_sql],
            )?;
            for r in &rows {
                out.push((col::<i64>(r, 0)?, from_json(&col::<String>(r, 1)?)?));
            }
        }
        out.sort_by_key(|(ord, _)| *ord);
        out.truncate(limit);
        Ok(out.into_iter().map(|(_, t)| t).collect())
    }

    fn claim(&mut self, task_ids: &[&str]) -> R<Option<TaskRecord>> {
        if task_ids.is_empty() {
            return Ok(None);
        }
        // One statement for the lot (`CLAIM`): under load the oldest few are held by concurrent
        // get_tasks, and one statement per candidate cost a round trip for each of them. With
        // the payload, which the scheduler reads next when it hands the task out (a payload
        // never changes).
        let rows = self.q("claim task", CLAIM, &[&task_ids])?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let task: TaskRecord = from_json(&col::<String>(row, 0)?)?;
        self.claimed = Some((task.task_id.clone(), col(row, 1)?));
        self.locked.insert(task.task_id.clone(), task.state);
        Ok(Some(task))
    }

    fn put_assignment(&mut self, a: &Assignment) -> R<()> {
        let record = to_json(a)?;
        self.queue(
            "write assignment",
            "INSERT INTO assignments (uuid, task_id, state, deadline_ms, record) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (uuid) DO UPDATE \
             SET state = EXCLUDED.state, deadline_ms = EXCLUDED.deadline_ms, \
             record = EXCLUDED.record",
            owned![
                a.uuid.clone(),
                a.task_id.clone(),
                assignment_state(a.state),
                i64_of(a.deadline_ms),
                record,
            ],
        );
        Ok(())
    }

    fn expired(&mut self, now_ms: u64) -> R<Vec<Assignment>> {
        let rows = self.q(
            "read expired assignments",
            "SELECT record FROM assignments WHERE state = 'live' AND deadline_ms <= $1 \
             ORDER BY deadline_ms FOR UPDATE SKIP LOCKED",
            &[&i64_of(now_ms)],
        )?;
        rows.iter()
            .map(|r| from_json(&col::<String>(r, 0)?))
            .collect()
    }

    fn set_outstanding(&mut self, public_key: &str, uuid: &str) -> R<()> {
        // A plain insert: a second live assignment for one key is a unique-key conflict when
        // the write is sent (the transaction runs again and finds the first), never an
        // overwrite.
        self.queue(
            "write outstanding",
            "INSERT INTO outstanding (public_key, uuid) VALUES ($1, $2)",
            owned![public_key.to_string(), uuid.to_string()],
        );
        if let Some(c) = self.caller(public_key) {
            c.outstanding = Some(uuid.to_string());
        }
        Ok(())
    }

    fn clear_outstanding(&mut self, public_key: &str, uuid: &str) -> R<()> {
        self.queue(
            "clear outstanding",
            "DELETE FROM outstanding WHERE public_key = $1 AND uuid = $2",
            owned![public_key.to_string(), uuid.to_string()],
        );
        if let Some(c) = self.caller(public_key) {
            c.outstanding.take_if(|u| u == uuid);
        }
        Ok(())
    }

    fn seen(&mut self, public_key: &str, seen: &ProverSeen) -> R<()> {
        // The write first: it holds the caller's row until commit. The caller's blocked reason
        // and outstanding assignment, which `assign` reads next, go in the same pipeline, each
        // read after the write (as separate calls would be).
        self.queue(
            "write prover",
            "INSERT INTO provers (public_key, record, last_seen_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (public_key) DO UPDATE \
             SET record = EXCLUDED.record, last_seen_ms = EXCLUDED.last_seen_ms",
            owned![
                public_key.to_string(),
                to_json(seen)?,
                i64_of(seen.last_seen_ms)
            ],
        );
        let client = self.client;
        let (blocked, outstanding) = self.send("read prover", async move {
            let (blocked, outstanding) = tokio::try_join!(
                biased;
                client.prepare_cached(READ_BLOCKED),
                client.prepare_cached(READ_OUTSTANDING),
            )?;
            let key: [&(dyn ToSql + Sync); 1] = [&public_key];
            tokio::try_join!(
                biased;
                client.query_opt(&blocked, &key),
                client.query_opt(&outstanding, &key),
            )
        })?;
        self.caller = Some(Caller {
            public_key: public_key.to_string(),
            blocked: blocked.map(|r| col(&r, 0)).transpose()?,
            outstanding: outstanding.map(|r| col(&r, 0)).transpose()?,
        });
        Ok(())
    }

    fn recent_provers(&mut self, after: (u64, &str), limit: usize) -> R<Vec<(String, ProverSeen)>> {
        let rows = self.q(
            "read recent provers",
            RECENT_PROVERS,
            &[&i64_of(after.0), &after.1, &(limit as i64)],
        )?;
        prover_rows(&rows)
    }

    fn busy_provers(&mut self, after: Option<&str>, limit: usize) -> R<Vec<(String, ProverSeen)>> {
        let rows = self.q(
            "read busy provers",
            "SELECT o.public_key, p.record, p.last_seen_ms FROM outstanding o \
             JOIN provers p ON p.public_key = o.public_key \
             WHERE o.public_key > $1 ORDER BY o.public_key LIMIT $2",
            &[&after.unwrap_or(""), &(limit as i64)],
        )?;
        prover_rows(&rows)
    }

    fn proven(&mut self, public_key: &str) -> R<bool> {
        let rows = self.q(
            "read proven",
            "SELECT 1 FROM proven WHERE public_key = $1 AND n > 0",
            &[&public_key],
        )?;
        Ok(!rows.is_empty())
    }

    fn add_proven(&mut self, public_key: &str) -> R<()> {
        self.queue(
            "write proven",
            "INSERT INTO proven (public_key, n) VALUES ($1, 1) \
             ON CONFLICT (public_key) DO UPDATE SET n = proven.n + 1",
            owned![public_key.to_string()],
        );
        Ok(())
    }

    fn blocked(&mut self, public_key: &str) -> R<Option<String>> {
        if let Some(c) = self.caller(public_key) {
            return Ok(c.blocked.clone());
        }
        self.one_text("read blocked", READ_BLOCKED, &[&public_key])
    }

    fn block(&mut self, public_key: &str, reason: &str) -> R<()> {
        self.queue(
            "write blocked",
            "INSERT INTO blocked (public_key, reason) VALUES ($1, $2) \
             ON CONFLICT (public_key) DO UPDATE SET reason = EXCLUDED.reason",
            owned![public_key.to_string(), reason.to_string()],
        );
        if let Some(c) = self.caller(public_key) {
            c.blocked = Some(reason.to_string());
        }
        Ok(())
    }

    fn unblock(&mut self, public_key: &str) -> R<bool> {
        let n = self.exec(
            "write blocked",
            "DELETE FROM blocked WHERE public_key = $1",
            &[&public_key],
        )?;
        if let Some(c) = self.caller(public_key) {
            c.blocked = None;
        }
        self.queue(
            "write invalid_proofs",
            "DELETE FROM invalid_proofs WHERE public_key = $1",
            owned![public_key.to_string()],
        );
        Ok(n > 0)
    }

    fn add_invalid(&mut self, public_key: &str) -> R<u64> {
        let rows = self.q(
            "write invalid_proofs",
            "INSERT INTO invalid_proofs (public_key, n) VALUES ($1, 1) \
             ON CONFLICT (public_key) DO UPDATE SET n = invalid_proofs.n + 1 RETURNING n",
            &[&public_key],
        )?;
        match rows.first() {
            Some(r) => Ok(u64_of(col(r, 0)?)),
            None => Ok(1),
        }
    }

    fn proof(&mut self, task_id: &str) -> R<Option<ProofPayload>> {
        self.one_text(
            "read proof",
            "SELECT proof FROM proofs WHERE task_id = $1",
            &[&task_id],
        )?
        .map(|t| from_json(&t))
        .transpose()
    }

    fn put_proof(&mut self, task_id: &str, proof: &ProofPayload) -> R<()> {
        self.queue(
            "write proof",
            "INSERT INTO proofs (task_id, proof) VALUES ($1, $2) \
             ON CONFLICT (task_id) DO UPDATE SET proof = EXCLUDED.proof",
            owned![task_id.to_string(), to_json(proof)?],
        );
        Ok(())
    }

    fn counter(&mut self, name: &str) -> R<u64> {
        // An upsert, so that the row exists and is locked even the first time.
        let rows = self.q(
            "read counter",
            "INSERT INTO counters (name, v) VALUES ($1, 0) \
             ON CONFLICT (name) DO UPDATE SET v = counters.v RETURNING v",
            &[&name],
        )?;
        match rows.first() {
            Some(r) => Ok(u64_of(col(r, 0)?)),
            None => Ok(0),
        }
    }

    fn set_counter(&mut self, name: &str, v: u64) -> R<()> {
        self.queue(
            "write counter",
            "INSERT INTO counters (name, v) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET v = EXCLUDED.v",
            owned![name.to_string(), i64_of(v)],
        );
        Ok(())
    }

    fn bump(&mut self, name: &str) -> R<u64> {
        let rows = self.q(
            "bump counter",
            "INSERT INTO counters (name, v) VALUES ($1, 1) \
             ON CONFLICT (name) DO UPDATE SET v = counters.v + 1 RETURNING v - 1",
            &[&name],
        )?;
        match rows.first() {
            Some(r) => Ok(u64_of(col(r, 0)?)),
            None => Ok(0),
        }
    }

    fn save_accounts(&mut self, accounts: &[(u64, Account)]) -> R<()> {
        for (i, a) in accounts {
            self.queue(
                "write account",
                "INSERT INTO accounts (idx, record) VALUES ($1, $2) \
                 ON CONFLICT (idx) DO UPDATE SET record = EXCLUDED.record",
                owned![i64_of(*i), to_json(a)?],
            );
        }
        Ok(())
    }

    fn settlement(&mut self, index: u64) -> R<Option<String>> {
        self.one_text(
            "read settlement",
            "SELECT record FROM settlements WHERE idx = $1 FOR UPDATE",
            &[&i64_of(index)],
        )
    }

    fn put_settlement(&mut self, index: u64, record: &str) -> R<()> {
        self.queue(
            "write settlement",
            "INSERT INTO settlements (idx, record) VALUES ($1, $2) \
             ON CONFLICT (idx) DO UPDATE SET record = EXCLUDED.record",
            owned![i64_of(index), record.to_string()],
        );
        Ok(())
    }

    fn commit_lazily(&mut self) {
        if !self.lazy {
            // For the rest of this transaction only (`is_local`): its COMMIT returns without
            // waiting for the WAL flush. Queued like a write, so it travels with the COMMIT, and
            // a COMMIT after it still ends the transaction if it failed.
            self.queue(
                "commit lazily",
                "SELECT set_config('synchronous_commit', 'off', true)",
                owned![],
            );
            self.lazy = true;
        }
    }
}
