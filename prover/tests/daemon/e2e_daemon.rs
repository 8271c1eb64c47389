//! End to end, over real HTTP on loopback with real redb files: the coordinator (in this process)
//! and `prover run` processes.
//! - two provers take every enqueued task to "verified", none proved twice;
//! - SIGKILL while proving: after a restart the same task is finished and accepted exactly once;
//! - SIGKILL after the proof was persisted but before it was delivered: the restarted node delivers
//!   the stored proof without proving again;
//! - a coordinator outage of 30 s while a proof is ready: the proof is delivered after the restart,
//!   and the coordinator's state survived it;
//! - a task with an invalid payload is reported as a failure (failure_type 2); the node keeps working.

use crate::e2e;

use std::time::Duration;

use coordinator::TaskState;
use e2e::{all_verified, wait_for, Node, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_provers_take_every_task_to_verified_and_none_is_proved_twice() {
    let mut world = World::new();
    let coordinator = world.start_coordinator().await;
    let ids = coordinator.enqueue_random(8, 7).await.expect("enqueue");
    assert_eq!(ids.len(), 4, "8 transfers in chunks of 2");
    let a = Node::spawn(&world.node_config("a", &coordinator.base_url()), 0);
    let b = Node::spawn(&world.node_config("b", &coordinator.base_url()), 0);

    let report = all_verified(&coordinator, 4).await;
    for t in &report.tasks {
        assert_eq!(
            t.attempts, 1,
            "task {} was assigned more than once",
            t.task_id
        );
        assert_eq!(t.failures, 0, "task {}", t.task_id);
        assert!(coordinator.proof(&t.task_id).await.unwrap().is_some());
    }
    // Every task proved once in total, across both nodes, and every proof accepted once.
    let proved =
        a.counter("prover_tasks_proved_total").await + b.counter("prover_tasks_proved_total").await;
    let submitted = a.counter("prover_tasks_submitted_total").await
        + b.counter("prover_tasks_submitted_total").await;
    assert_eq!(proved, 4.0, "a:\n{}\nb:\n{}", a.log_text(), b.log_text());
    assert_eq!(submitted, 4.0);
    let provers: std::collections::BTreeSet<_> = report
        .tasks
        .iter()
        .filter_map(|t| t.prover.clone())
        .collect();
    assert!(!provers.is_empty());
    a.terminate().await;
    b.terminate().await;
    coordinator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_proving_then_restart_finishes_the_same_task_once() {
    let mut world = World::new();
    let coordinator = world.start_coordinator().await;
    let ids = coordinator.enqueue_random(2, 11).await.expect("enqueue");
    assert_eq!(ids.len(), 1);
    let config = world.node_config("n", &coordinator.base_url());

    let node = Node::spawn(&config, 0);
    wait_for("the node to be proving", || async {
        match node.worker0().await {
            Some((state, Some(task))) if state == "proving" => Some(task),
            _ => None,
        }
    })
    .await;
    node.kill9();
    let row = coordinator.status().await.unwrap().task(&ids[0]).cloned();
    assert_eq!(row.map(|r| r.state), Some(TaskState::Assigned));

    let node = Node::spawn(&config, 1);
    let report = all_verified(&coordinator, 1).await;
    let t = &report.tasks[0];
    assert_eq!(
        t.attempts, 1,
        "the restarted node resumed its stored task instead of a new assignment"
    );
    assert_eq!(t.failures, 0);
    // The restarted node pulled nothing: it proved the task from its stack and delivered it once.
    assert_eq!(node.counter("prover_tasks_pulled_total").await, 0.0);
    assert_eq!(node.counter("prover_tasks_proved_total").await, 1.0);
    assert_eq!(node.counter("prover_tasks_submitted_total").await, 1.0);
    wait_for("the node's stack to be empty", || async {
        let h = node.health().await?;
        (h["stack_len"] == 0).then_some(())
    })
    .await;
    assert!(
        node.log_text().contains("attempt=2"),
        "the restart counts a second attempt:\n{}",
        node.log_text()
    );
    node.terminate().await;
    coordinator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_after_the_proof_was_persisted_delivers_it_without_proving_again() {
    let mut world = World::new();
    let coordinator = world.start_coordinator().await;
    let ids = coordinator.enqueue_random(2, 13).await.expect("enqueue");
    let config = world.node_config("n", &coordinator.base_url());
    let node = Node::spawn(&config, 0);
    wait_for("the node to be proving", || async {
        match node.worker0().await {
            Some((state, _)) if state == "proving" => Some(()),
            _ => None,
        }
    })
    .await;
    // The coordinator goes away, so the finished proof is persisted and cannot be delivered.
    coordinator.shutdown().await;
    wait_for("the proof to be stored and awaiting delivery", || async {
        match node.worker0().await {
            Some((state, Some(task)))
                if (state == "backoff" || state == "submitting") && task == ids[0] =>
            {
                Some(())
            }
            _ => None,
        }
    })
    .await;
    node.kill9();

    let coordinator = world.start_coordinator().await;
    let node = Node::spawn(&config, 1);
    let report = all_verified(&coordinator, 1).await;
    assert_eq!(report.tasks[0].attempts, 1);
    assert_eq!(node.counter("prover_tasks_proved_total").await, 0.0);
    assert_eq!(node.counter("prover_tasks_pulled_total").await, 0.0);
    assert_eq!(node.counter("prover_tasks_submitted_total").await, 1.0);
    node.terminate().await;
    coordinator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_outage_of_30_s_while_a_proof_is_ready() {
    let mut world = World::new();
    let coordinator = world.start_coordinator().await;
    let ids = coordinator.enqueue_random(4, 17).await.expect("enqueue");
    assert_eq!(ids.len(), 2);
    let node = Node::spawn(&world.node_config("n", &coordinator.base_url()), 0);
    wait_for("the node to be proving", || async {
        match node.worker0().await {
            Some((state, _)) if state == "proving" => Some(()),
            _ => None,
        }
    })
    .await;
    let before = coordinator.status().await.unwrap();
    coordinator.shutdown().await;
    wait_for("the proof to be ready and undeliverable", || async {
        match node.worker0().await {
            Some((state, Some(_))) if state == "backoff" => Some(()),
            _ => None,
        }
    })
    .await;
    // The outage itself: the scenario, not a synchronisation.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let coordinator = world.start_coordinator().await;
    let after = coordinator.status().await.unwrap();
    assert_eq!(
        before.tasks, after.tasks,
        "the coordinator's state survived its restart"
    );
    let report = all_verified(&coordinator, 2).await;
    for t in &report.tasks {
        assert_eq!(t.attempts, 1, "{}", t.task_id);
    }
    // The same node process delivered the stored proof, then took the second task.
    assert_eq!(node.counter("prover_tasks_proved_total").await, 2.0);
    assert_eq!(node.counter("prover_tasks_submitted_total").await, 2.0);
    assert!(node.counter("prover_tasks_pulled_total").await >= 2.0);
    node.terminate().await;
    coordinator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_task_payload_is_reported_as_a_failure_and_the_node_keeps_working() {
    use prover::rollup::RollupState;
    use prover::wire::{FrHex, Transfer};

    let mut world = World::new();
    // A chunk task whose claimed new root is wrong, written into the coordinator's store before it
    // starts (the coordinator itself only creates valid tasks).
    let genesis = world.coordinator_config.genesis;
    let mut state = RollupState::genesis(e2e::CHUNK.tree_depth, genesis.accounts, genesis.balance)
        .expect("genesis");
    let accounts: Vec<_> = state.accounts().map(|(i, a)| (*i, *a)).collect();
    let mut bad = state
        .apply_chunk(
            e2e::CHUNK,
            &[Transfer {
                from: 0,
                to: 1,
                amount: 5,
                nonce: 0,
            }],
        )
        .expect("valid chunk");
    bad.new_root = FrHex(halo2curves::bn256::Fr::from(12345u64));
    let store = coordinator::store::Store::open(&world.coordinator_config.db_path).expect("store");
    let ids = store
        .enqueue_chunks(&[bad], &accounts, coordinator::now_ms())
        .expect("enqueue the bad task");
    drop(store);

    let coordinator = world.start_coordinator().await;
    let node = Node::spawn(&world.node_config("n", &coordinator.base_url()), 0);
    // The node reports the failure. It has no verified proof yet, so the report is recorded but
    // not counted (throwaway keys cannot fail tasks), and the task is not handed back to it.
    let row = wait_for("the invalid task's failure report", || async {
        let r = coordinator.status().await.expect("status");
        let row = r.task(&ids[0])?.clone();
        (row.unproven_failures >= 1).then_some(row)
    })
    .await;
    assert_eq!((row.state, row.failures), (TaskState::Pending, 0));
    let reason = row.result.unwrap_or_default();
    assert!(reason.contains("root"), "failure reason: {reason}");
    assert!(node.counter("prover_tasks_failed_total").await >= 1.0);
    assert_eq!(node.counter("prover_tasks_proved_total").await, 0.0);

    // The node is still alive and proves the next, valid, task.
    let next = coordinator.enqueue_random(2, 23).await.expect("enqueue");
    wait_for("the valid task to be verified", || async {
        let r = coordinator.status().await.expect("status");
        (r.task(&next[0])?.state == TaskState::Verified).then_some(())
    })
    .await;
    assert_eq!(node.counter("prover_tasks_proved_total").await, 1.0);
    // Now proven, and the only prover: the bad task comes back to it and its failures count, up
    // to the attempt cap.
    let row = wait_for("the invalid task to be failed", || async {
        let r = coordinator.status().await.expect("status");
        let row = r.task(&ids[0])?.clone();
        (row.state == TaskState::Failed).then_some(row)
    })
    .await;
    assert_eq!(row.failures, world.coordinator_config.session_attempts);
    node.terminate().await;
    coordinator.shutdown().await;
}
