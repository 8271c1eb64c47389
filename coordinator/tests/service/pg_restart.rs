//! The PostgreSQL server restarted, or crashed, under load: the coordinator answers "retry later"
//! (errcode 500, HTTP 503) while the database is away, reconnects by itself, and loses nothing it
//! answered — every failure report it accepted is recorded once, every task it handed out can be
//! reported, every task is still there. In the crash (an immediate shutdown: every server
//! process quits at once, then crash recovery) a prover also polls idly all along, so that
//! commits made without waiting for the disk (idle polls) are in flight beside the ones that
//! wait. A process crash loses only the WAL the server had not yet handed to the kernel, a
//! window far shorter than the one a machine crash opens, which no test here can make: that
//! only idle polls' commits may be lost rests on the classification (`scheduler.rs`'s
//! `only_idle_polls_commit_without_waiting_for_the_disk`) and on PostgreSQL's WAL order (a
//! durable commit makes every earlier commit durable).
//!
//! Runs when `COORDINATOR_TEST_POSTGRES` is set (PostgreSQL is installed; `scripts/test` sets
//! it), on a cluster of its own (`scripts/pg-cluster` in a temporary directory, stopped at the
//! end): the other tests of this binary use the shared server at the same time, and must not see
//! it restart. Without the variable it says so and checks nothing.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{config, start, Client};
use prover_core::wire::errcode;

#[derive(Default, Debug)]
struct Tally {
    /// Reports answered 0.
    accepted: u64,
    /// Reports answered "already submitted" after an earlier try got no clear answer: the
    /// earlier try was recorded.
    already: u64,
    /// Replies with errcode 500 (the database away), on either call.
    internal: u64,
    /// get_task calls answered (a task or "no task": both ran a transaction) after the restart
    /// finished.
    after_restart: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_restarted_under_load_loses_nothing() {
    under_load("restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_crashed_under_load_loses_nothing_it_answered() {
    under_load("crash").await;
}

/// The load, then `scripts/pg-cluster HOW` (restart or crash) in the middle of it, then the
/// checks.
async fn under_load(how: &'static str) {
    if std::env::var("COORDINATOR_TEST_POSTGRES").is_err() {
        eprintln!(
            "no COORDINATOR_TEST_POSTGRES: this test restarts a private PostgreSQL cluster \
             (scripts/test)"
        );
        return;
    }
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.database_url = Some(
        coordinator::store::pg::create_database(&cluster.url, "t").expect("create a database"),
    );
    cfg.session_attempts = 1_000;
    let c = start(cfg).await;
    let ids = c.enqueue_random(600, 5).await.expect("enqueue");
    let n_tasks = ids.len();
    assert!(n_tasks >= 50, "{n_tasks} tasks");

    let stop = Arc::new(AtomicBool::new(false));
    let restarted = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for i in 0..4u8 {
        let mut p = Client::new(&c, &format!("p{i}"), 10 + i);
        p.login().await;
        let (stop, restarted) = (stop.clone(), restarted.clone());
        handles.push(tokio::spawn(async move {
            let mut t = Tally::default();
            while !stop.load(Ordering::SeqCst) {
                let env = p.get_task_env(&[1]).await;
                if env.errcode == errcode::INTERNAL {
                    t.internal += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
                if restarted.load(Ordering::SeqCst) {
                    t.after_restart += 1;
                }
                match env.errcode {
                    errcode::SUCCESS => {}
                    errcode::NO_TASK => {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        continue;
                    }
                    other => panic!("get_task: {other} {}", env.errmsg),
                }
                let task = serde_json::from_value(env.data.expect("data")).expect("task");
                // The same report until it has a definite answer.
                let mut unclear = false;
                loop {
                    let r = p.report_failure(&task).await;
                    match r.errcode {
                        errcode::SUCCESS => {
                            t.accepted += 1;
                            break;
                        }
                        errcode::INTERNAL => {
                            t.internal += 1;
                            unclear = true;
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                        errcode::PROOF_FAILURE if unclear => {
                            t.already += 1;
                            break;
                        }
                        other => panic!("report: {other} {}", r.errmsg),
                    }
                }
            }
            t
        }));
    }
    // A prover that asks for batch tasks, which there are none of: idle polls all along.
    let idle = {
        let mut p = Client::new(&c, "idle", 20);
        p.login().await;
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut polls = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let env = p.get_task_env(&[2]).await;
                match env.errcode {
                    errcode::NO_TASK => polls += 1,
                    errcode::INTERNAL => {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await
                    }
                    other => panic!("idle get_task: {other} {}", env.errmsg),
                }
            }
            polls
        })
    };
    // Load first, then the restart in the middle of it (the scenario's timing, not a
    // synchronisation: the assertions hold whenever it falls).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let dir_arg = cluster.dir.path().to_string_lossy().into_owned();
    tokio::task::spawn_blocking(move || pg_cluster(&[how, &dir_arg]))
        .await
        .expect("restart");
    restarted.store(true, Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    stop.store(true, Ordering::SeqCst);
    let mut all = Tally::default();
    for h in handles {
        let t = h.await.expect("prover task");
        all.accepted += t.accepted;
        all.already += t.already;
        all.internal += t.internal;
        all.after_restart += t.after_restart;
    }
    let idle_polls = idle.await.expect("idle prover");
    eprintln!("{how}: {all:?}, {idle_polls} idle polls");
    assert!(idle_polls > 0, "the idle prover was answered");
    assert!(
        all.after_restart > 0,
        "no get_task succeeded after the restart: {all:?}"
    );
    let report = c.status().await.expect("status after the restart");
    assert_eq!(report.tasks.len(), n_tasks, "every task is still there");
    // Keys that never delivered a proof have their reports counted apart (issue 14's rule).
    let recorded: u64 = report
        .tasks
        .iter()
        .map(|t| u64::from(t.failures) + u64::from(t.unproven_failures))
        .sum();
    assert_eq!(
        recorded,
        all.accepted + all.already,
        "each report the coordinator accepted is recorded once: {all:?}"
    );
    c.shutdown().await;
}

const PG_CLUSTER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/pg-cluster");

/// Runs `scripts/pg-cluster ARGS`; its last line of stdout.
fn pg_cluster(args: &[&str]) -> String {
    let out = std::process::Command::new(PG_CLUSTER)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run scripts/pg-cluster {args:?}: {e}"));
    assert!(
        out.status.success(),
        "scripts/pg-cluster {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout.lines().last().unwrap_or_default().trim().to_string()
}

/// A PostgreSQL cluster of this test's own, in a temporary directory; stopped when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    url: String,
}

impl Cluster {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = pg_cluster(&["start", &dir.path().to_string_lossy()]);
        Cluster { dir, url }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let dir = self.dir.path().to_string_lossy().into_owned();
        let _ = std::process::Command::new(PG_CLUSTER)
            .args(["stop", &dir])
            .output();
    }
}
