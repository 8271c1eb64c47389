//! `prover::daemon::run` with the real proving core: a real chunk task from the fake coordinator is
//! proved in the daemon and the submitted proof verifies with the statement the task expects.

use crate::common;
use crate::fake;

use std::path::Path;
use std::sync::Arc;

use fake::{Fake, Reply};
use prover::config::NodeConfig;
use prover::wire::{proof_status, ProofPayload, SubmitProofRequest, TaskPayload};
use prover::ProvingCore;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_proves_a_real_chunk_and_the_proof_verifies() {
    let env = common::env(&[common::SMALL.k]);
    let dir = tempfile::tempdir().unwrap();
    let mut fake = Fake::start().await;
    let mut state = common::genesis(common::SMALL);
    let data = state
        .apply_chunk(
            common::SMALL,
            &[common::transfer(0, 1, 5, 0), common::transfer(1, 2, 3, 0)],
        )
        .unwrap();
    let task = common::chunk_task("real-1", &data);
    fake.script("get_task", [Reply::task(&task)]);

    let mut c = NodeConfig::from_json_str(
        r#"{"prover": {"params_dir": "p", "keys_dir": "k"}}"#,
        Path::new("test"),
        Vec::<(String, String)>::new(),
    )
    .unwrap();
    c.prover.params_dir = env.params_dir();
    c.prover.keys_dir = env.dir.path().join("keys");
    c.node.identity_dir = dir.path().join("identity");
    c.node.db_path = dir.path().join("stack.redb");
    c.node.task_types = vec![1];
    c.circuits.chunk_k = common::SMALL.k;
    c.circuits.chunk_tree_depth = common::SMALL.tree_depth;
    c.circuits.chunk_max_txs = common::SMALL.max_txs;
    c.coordinator.base_url = fake.base_url();
    c.coordinator.poll_interval_ms = 20;
    c.metrics.listen = "127.0.0.1:0".into();
    let core = Arc::new(ProvingCore::new(c.core_config()));
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(prover::daemon::run(c, core.clone(), shutdown.clone()));

    let call = fake.next("submit_proof").await;
    let sub: SubmitProofRequest = serde_json::from_value(call.body).unwrap();
    assert_eq!(sub.status, proof_status::OK, "{}", sub.failure_msg);
    assert_eq!(sub.task_id, "real-1");
    let proof = ProofPayload::from_json_str(&sub.proof).unwrap();
    // The default engine proved it, on the backend the daemon selected at start and handed over.
    assert_eq!(proof.meta.engine, "native");
    let backend = proof.meta.backend.clone();
    assert_eq!(core.backend().unwrap().name().to_string(), backend);
    let login = fake
        .calls()
        .into_iter()
        .find(|c| c.route == "login")
        .unwrap();
    assert_eq!(
        login.body["message"]["vks"],
        serde_json::json!([proof.vk_digest])
    );
    let core2 = core.clone();
    let verified = tokio::task::spawn_blocking(move || core2.verify(&proof))
        .await
        .unwrap()
        .expect("the daemon's proof verifies");
    let expected = prover::core::expected_statement(&TaskPayload::Chunk(data)).unwrap();
    assert_eq!(verified.statement, expected);

    fake.next("get_task").await;
    shutdown.cancel();
    let summary = daemon.await.unwrap().unwrap();
    assert_eq!(summary.tasks_proved, 1);
    assert_eq!(summary.backend, backend);
    assert_eq!(summary.submissions_accepted, 1);
    assert_eq!(summary.left_in_stack, 0);
}
