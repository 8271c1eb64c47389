//! End to end over loopback: a real chunk proof accepted, a valid proof of the wrong statement
//! refused, the coordinator restarted in-process on the same port and store with all state intact,
//! and an assignment timing out and going to another prover.

use crate::common;

use std::time::Duration;

use common::{config, start, Client};
use coordinator::TaskState;
use prover_core::wire::{errcode, ChunkTaskData, Task, Transfer};

fn t(from: u64, to: u64, amount: u64, nonce: u64) -> Transfer {
    Transfer {
        from,
        to,
        amount,
        nonce,
    }
}

async fn prove(task: &Task) -> prover_core::wire::ProofPayload {
    let core = common::env().core.clone();
    let task = task.clone();
    tokio::task::spawn_blocking(move || core.prove_task(&task, rand::thread_rng()))
        .await
        .expect("join")
        .expect("prove")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_proofs_are_verified_and_state_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let c = start(cfg.clone()).await;

    // An invalid transfer list is refused as a whole and changes nothing.
    let err = c
        .enqueue_transfers(vec![t(0, 1, 5, 0), t(0, 2, 5, 7)])
        .await
        .expect_err("wrong nonce");
    assert!(err.to_string().contains("nonce 7"), "{err}");
    assert!(c.enqueue_transfers(vec![]).await.is_err());
    let ids = c
        .enqueue_transfers(vec![t(0, 1, 5, 0), t(1, 2, 3, 0), t(0, 3, 1, 1)])
        .await
        .expect("enqueue");
    assert_eq!(ids, ["chunk-0", "chunk-1"]);

    let mut a = Client::new(&c, "alice", 1);
    a.login().await;
    let t0 = a.get_task().await.expect("chunk-0");
    assert_eq!(t0.task_id, "chunk-0");
    let proof0 = prove(&t0).await;
    // The same proof sent twice at once: exactly one is accepted; the other is turned away while
    // the first is verified (500, retry later) or after it (cannot submit twice).
    let text = serde_json::to_string(&proof0).expect("json");
    let (e1, e2) = tokio::join!(
        a.submit_proof_text(&t0, text.clone()),
        a.submit_proof_text(&t0, text.clone())
    );
    let mut codes = [e1.errcode, e2.errcode];
    codes.sort();
    assert_eq!(codes[0], 0, "{} / {}", e1.errmsg, e2.errmsg);
    assert!(
        codes[1] == errcode::INTERNAL || codes[1] == errcode::PROOF_FAILURE,
        "{} / {}",
        e1.errmsg,
        e2.errmsg
    );
    let again = a.submit_proof_text(&t0, text).await;
    assert_eq!(again.errcode, errcode::PROOF_FAILURE, "{}", again.errmsg);
    assert!(again.errmsg.contains("twice"), "{}", again.errmsg);
    let row = c
        .status()
        .await
        .expect("status")
        .task("chunk-0")
        .cloned()
        .expect("row");
    assert_eq!(row.state, TaskState::Verified);
    assert_eq!(row.prover.as_deref(), Some(a.public_key().as_str()));
    assert_eq!(row.prove_ms, Some(proof0.meta.prove_ms));
    assert!(row.verify_ms.is_some());
    assert_eq!(
        c.proof("chunk-0").await.expect("read"),
        Some(proof0.clone())
    );

    // A valid proof, but of chunk-0's statement, relabelled for chunk-1: refused.
    let t1 = a.get_task().await.expect("chunk-1");
    assert_eq!(t1.task_id, "chunk-1");
    let mut relabelled = proof0.clone();
    relabelled.task_id = t1.task_id.clone();
    let env = a
        .submit_proof_text(&t1, serde_json::to_string(&relabelled).expect("json"))
        .await;
    assert_eq!(env.errcode, errcode::PROOF_FAILURE);
    assert!(env.errmsg.contains("statement"), "{}", env.errmsg);
    // Alice is the only prover: she gets chunk-1 again, with a new assignment.
    let t1b = a.get_task().await.expect("chunk-1 again");
    assert_eq!(t1b.task_id, "chunk-1");
    assert_ne!(t1b.uuid, t1.uuid);

    // Restart on the same address and store.
    let before = c.status().await.expect("status");
    let mut cfg2 = cfg.clone();
    cfg2.listen = c.addr().to_string();
    c.shutdown().await;
    let c = start(cfg2).await;
    assert_eq!(c.status().await.expect("status"), before);
    // The login token is still valid (same secret) and the outstanding task is re-sent.
    let again = a.get_task().await.expect("re-sent");
    assert_eq!(again, t1b);
    let proof1 = prove(&again).await;
    let env = a
        .submit_proof_text(&again, serde_json::to_string(&proof1).expect("json"))
        .await;
    assert_eq!(env.errcode, 0, "{}", env.errmsg);
    let status = c.status().await.expect("status");
    assert_eq!(status.count("chunk", TaskState::Verified), 2);
    let row = status.task("chunk-1").expect("row");
    assert_eq!((row.attempts, row.failures), (2, 1));

    // The account state survived too: the next chunk starts where chunk-1 ended, and account 0's
    // nonce is 2.
    let ids = c
        .enqueue_transfers(vec![t(0, 1, 1, 2)])
        .await
        .expect("enqueue");
    assert_eq!(ids, ["chunk-2"]);
    let t2 = a.get_task().await.expect("chunk-2");
    let d1: ChunkTaskData = serde_json::from_str(&again.task_data).expect("chunk-1 data");
    let d2: ChunkTaskData = serde_json::from_str(&t2.task_data).expect("chunk-2 data");
    assert_eq!(d2.old_root, d1.new_root);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assignment_times_out_and_goes_to_another_prover() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.chunk_timeout_sec = 1;
    cfg.session_attempts = 2;
    let c = start(cfg).await;
    c.enqueue_random(1, 3).await.expect("enqueue");
    let mut a = Client::new(&c, "alice", 1);
    let mut b = Client::new(&c, "bob", 2);
    a.login().await;
    b.login().await;
    let ta = a.get_task().await.expect("task");
    // The periodic sweep returns the task to the pool without any get_task call.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = c.status().await.expect("status");
        if s.count("chunk", TaskState::Pending) == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the sweep never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Bob polls until alice's assignment has timed out.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let got = loop {
        if let Some(task) = b.get_task().await {
            break task;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the task was never reassigned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let tb = got;
    assert_eq!(tb.task_id, ta.task_id);
    assert_ne!(tb.uuid, ta.uuid);
    // Alice's failure report for her timed-out assignment is accepted but not counted twice.
    assert_eq!(a.report_failure(&ta).await.errcode, 0);
    assert_eq!(a.report_failure(&ta).await.errcode, errcode::PROOF_FAILURE);
    let row = c
        .status()
        .await
        .expect("status")
        .task(&ta.task_id)
        .cloned()
        .expect("row");
    // Neither key has a verified proof: the timeout is recorded, not counted (the attempt cap
    // for proven keys is tested in scheduler.rs).
    assert_eq!(
        (row.state, row.attempts, row.failures, row.unproven_failures),
        (TaskState::Assigned, 2, 0, 1)
    );
    // Bob's failure report: the task goes back to pending, not failed, and neither unproven key
    // that failed it gets it again.
    assert_eq!(b.report_failure(&tb).await.errcode, 0);
    let row = c
        .status()
        .await
        .expect("status")
        .task(&ta.task_id)
        .cloned()
        .expect("row");
    assert_eq!(
        (row.state, row.failures, row.unproven_failures),
        (TaskState::Pending, 0, 2)
    );
    assert!(a.get_task().await.is_none());
    assert!(b.get_task().await.is_none());
    c.shutdown().await;
}
