//! Several coordinator replicas on one PostgreSQL database (`COORDINATOR_TEST_POSTGRES`; redb
//! is one process's file, so without a server these tests say so and check nothing).
//! `scripts/test` runs them on a private PostgreSQL cluster.

use crate::common;

use common::{config, start, Client};
use coordinator::{RunningCoordinator, TaskState};
use prover_core::wire::{ChunkTaskData, TokenReply, Transfer};

fn have_postgres() -> bool {
    let yes = std::env::var_os("COORDINATOR_TEST_POSTGRES").is_some();
    if !yes {
        eprintln!("no COORDINATOR_TEST_POSTGRES: replicas need a shared database (scripts/test)");
    }
    yes
}

/// `n` replicas with one configuration (secret, admin token, database), each on its own port.
async fn replicas(dir: &std::path::Path, n: usize) -> Vec<RunningCoordinator> {
    let first = config(dir);
    assert!(first.database_url.is_some());
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(start(first.clone()).await);
    }
    out
}

fn transfer(nonce: u64) -> Transfer {
    Transfer {
        from: 0,
        to: 1,
        amount: 1,
        nonce,
    }
}

/// The chunk tasks chain: each starts from the root the one before it ends at.
async fn assert_chained(c: &RunningCoordinator, n: usize) {
    let url = c.config().database_url.clone().expect("url");
    // The store is blocking: off the async threads.
    tokio::task::spawn_blocking(move || chained(&url, n))
        .await
        .expect("chain check");
}

fn chained(url: &str, n: usize) {
    let store = coordinator::store::Store::open_postgres(url).expect("open the shared store");
    let mut prev: Option<ChunkTaskData> = None;
    for seq in 0..n {
        let id = format!("chunk-{seq}");
        let text = store
            .payload(&id)
            .expect("read payload")
            .unwrap_or_else(|| panic!("{id} missing"));
        let data: ChunkTaskData = serde_json::from_str(&text).expect("chunk task data");
        if let Some(p) = &prev {
            assert_eq!(
                data.old_root,
                p.new_root,
                "{id} does not continue chunk-{}",
                seq - 1
            );
        }
        prev = Some(data);
    }
}

/// A replica whose in-memory state is behind (another replica enqueued) reloads it and
/// continues the chain instead of forking it; concurrent enqueues on two replicas still make one
/// chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueues_on_two_replicas_make_one_chain() {
    if !have_postgres() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let r = replicas(dir.path(), 2).await;
    let a = r[0]
        .enqueue_transfers(vec![transfer(0), transfer(1), transfer(2), transfer(3)])
        .await
        .expect("enqueue on A");
    assert_eq!(a, ["chunk-0", "chunk-1"]);
    // B started before A's enqueue: its state is stale. Nonce 4 is valid only after A's chunks.
    let b = r[1]
        .enqueue_transfers(vec![transfer(4)])
        .await
        .expect("enqueue on B (reloads its state)");
    assert_eq!(b, ["chunk-2"]);
    assert_chained(&r[0], 3).await;
    // Both at once, several rounds, from two senders (valid in either order).
    let mut total = 3;
    for round in 0..6u64 {
        let from = |from: u64| Transfer {
            from,
            to: from + 1,
            amount: 1,
            nonce: round,
        };
        let (x, y) = tokio::join!(
            r[0].enqueue_transfers(vec![from(2)]),
            r[1].enqueue_transfers(vec![from(4)])
        );
        total += x.expect("enqueue on A").len() + y.expect("enqueue on B").len();
    }
    assert_eq!(total, 15);
    assert_chained(&r[0], total).await;
    let status = r[1].status().await.expect("status");
    assert_eq!(status.count("chunk", TaskState::Pending), total as u64);
    for c in r {
        c.shutdown().await;
    }
}

/// A challenge from one replica logs in at another, the token works at a third, and a used
/// challenge is refused everywhere; one prover holds one task across replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_and_assignments_are_shared_by_the_replicas() {
    if !have_postgres() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let r = replicas(dir.path(), 3).await;
    r[0].enqueue_random(4, 1).await.expect("enqueue");
    let mut p = Client::new(&r[0], "p", 1);
    let challenge = p.challenge().await;
    p.base = r[1].base_url();
    let req = p.login_request(&challenge, "0.1.0");
    let reply = p.send_login(&challenge, &req).await;
    assert_eq!(
        reply.errcode, 0,
        "login at B with A's challenge: {}",
        reply.errmsg
    );
    let token: TokenReply = serde_json::from_value(reply.data.expect("data")).expect("token");
    p.token = token.token;
    // The same challenge again, at the third replica: used.
    p.base = r[2].base_url();
    let again = p.send_login(&challenge, &req).await;
    assert_ne!(
        again.errcode, 0,
        "a used challenge was accepted at another replica"
    );
    // The token from B works at C; the task is re-sent, not a second one, at A.
    let t1 = p.get_task().await.expect("a task at C");
    p.base = r[0].base_url();
    let t2 = p.get_task().await.expect("the task again at A");
    assert_eq!(
        t1.uuid, t2.uuid,
        "one live assignment per key across replicas"
    );
    // Another prover gets the next task, not the same one.
    let mut q = Client::new(&r[1], "q", 2);
    q.login().await;
    let t3 = q.get_task().await.expect("a task for q");
    assert_ne!(t3.task_id, t1.task_id);
    for c in r {
        c.shutdown().await;
    }
}

/// A replica with a pool of one connection serves provers at once: no request holds a second
/// connection while it has one (it would wait for itself until the pool's timeout), whatever
/// `database_pool_size` an operator sets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_serves_provers_at_once() {
    if !have_postgres() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.database_pool_size = 1;
    let c = start(cfg).await;
    let ids = c.enqueue_random(12, 3).await.expect("enqueue");
    assert!(ids.len() >= 6, "{ids:?}");
    let rounds: Vec<_> = (0..6u8)
        .map(|i| {
            let mut p = Client::new(&c, &format!("p{i}"), 10 + i);
            async move {
                p.login().await;
                let task = p.get_task().await.expect("a task");
                let again = p.get_task().await.expect("the same task again");
                assert_eq!(task.uuid, again.uuid);
                let reply = p.report_failure(&task).await;
                assert_eq!(reply.errcode, 0, "{}", reply.errmsg);
                let health = p.get_json("/health").await;
                assert_eq!(health["data"]["status"], "ok", "{health}");
                assert!(p.get_text("/metrics").await.contains("coordinator_tasks"));
                task.task_id
            }
        })
        .map(tokio::spawn)
        .collect();
    let mut got = Vec::new();
    for r in rounds {
        got.push(r.await.expect("a prover's round"));
    }
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 6, "six provers, six different tasks: {got:?}");
    c.shutdown().await;
}
