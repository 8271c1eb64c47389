//! A prover node given several replicas of one coordinator (`coordinator.failover_urls`; the
//! replicas share a PostgreSQL database, `COORDINATOR_TEST_POSTGRES`): when the replica it works
//! with stops in the middle of a proof, the node delivers the proof to the other replica and takes
//! its next task there; every task is verified once, none assigned twice. Real processes for the
//! node, real proofs, real HTTP. Without a PostgreSQL server (redb is one process's file) the
//! test says so and checks nothing; `scripts/test` runs it on a private cluster.

use crate::e2e;

use e2e::{all_verified, wait_for, Node, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_fails_over_to_the_second_replica_when_the_first_stops_mid_proof() {
    let Ok(server) = std::env::var("COORDINATOR_TEST_POSTGRES") else {
        eprintln!("no COORDINATOR_TEST_POSTGRES: replicas need a shared database (scripts/test)");
        return;
    };
    let mut world = World::new();
    world.coordinator_config.database_url =
        Some(coordinator::store::pg::create_database(&server, "e2e").expect("a test database"));
    let a = world.start_coordinator().await;
    let b = world.start_replica().await;
    let ids = a.enqueue_random(4, 23).await.expect("enqueue");
    assert_eq!(ids.len(), 2, "4 transfers in chunks of 2");
    let node = Node::spawn(
        &world.node_config_with_failover("n", &a.base_url(), &[b.base_url()]),
        0,
    );
    wait_for("the node to be proving (a task from replica A)", || async {
        match node.worker0().await {
            Some((state, _)) if state == "proving" => Some(()),
            _ => None,
        }
    })
    .await;
    a.shutdown().await;

    let report = all_verified(&b, 2).await;
    for t in &report.tasks {
        assert_eq!(t.attempts, 1, "task {} was assigned again", t.task_id);
        assert_eq!(t.failures, 0, "task {}", t.task_id);
        assert!(b.proof(&t.task_id).await.expect("proof").is_some());
    }
    assert_eq!(node.counter("prover_tasks_proved_total").await, 2.0);
    assert_eq!(node.counter("prover_tasks_submitted_total").await, 2.0);
    let log = node.log_text();
    assert!(
        log.contains("trying the next one"),
        "the node did not say it failed over:\n{log}"
    );
    node.terminate().await;
    b.shutdown().await;
}
