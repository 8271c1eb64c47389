//! The daemon end to end against the recording fake coordinator, with stand-in provers (and the
//! real proving core for a bad task): resume before polling, attempt cap → failure_type 1, a
//! proving error → failure_type 2, retries while submission fails, drain on shutdown, /health and
//! /metrics.

use crate::fake;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use fake::{Fake, Reply};
use prover::config::{BackendChoice, NodeConfig};
use prover::daemon::stack::{Attempt, TaskStack};
use prover::daemon::{self, ProveError, TaskProver};
use prover::wire::{
    failure_type, proof_status, Base64Bytes, ChunkConfig, CircuitSpec, ProofMeta, ProofPayload,
    SubmitProofRequest, Task, HARD_FORK_NAME,
};
use prover::ProvingCore;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use tokio_util::sync::CancellationToken;

fn config(dir: &Path, base_url: &str) -> NodeConfig {
    let c = fake::node_config(dir, base_url);
    c.validate().unwrap();
    c
}

fn task(id: &str, data: &str) -> Task {
    Task {
        uuid: format!("uuid-{id}"),
        task_id: id.into(),
        task_type: 1,
        task_data: data.into(),
        hard_fork_name: HARD_FORK_NAME.into(),
    }
}

fn fake_proof(task: &Task) -> ProofPayload {
    ProofPayload {
        version: 1,
        task_id: task.task_id.clone(),
        spec: CircuitSpec::Chunk {
            config: ChunkConfig::default(),
        },
        vk_digest: "vk-chunk".into(),
        instances: vec![],
        proof: Base64Bytes(vec![7; 16]),
        meta: ProofMeta {
            engine: "stand-in".into(),
            backend: "cpu".into(),
            prove_ms: 1,
            fallback: None,
        },
    }
}

/// Proves instantly (or panics, or waits for a release), counting calls.
#[derive(Default)]
struct StandIn {
    calls: AtomicUsize,
    panic: bool,
    gate: Mutex<Option<mpsc::Receiver<()>>>,
    started: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    /// The first draw of each proof's rng.
    draws: Mutex<Vec<u64>>,
    /// Names of the backends the daemon handed over.
    backends: Mutex<Vec<String>>,
    /// A device fault the stand-in reports as having moved its proofs to the CPU.
    fallback: Option<String>,
}

impl TaskProver for StandIn {
    fn prove(&self, task: &Task, mut rng: ChaCha20Rng) -> Result<ProofPayload, ProveError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.draws.lock().unwrap().push(rng.next_u64());
        if let Some(tx) = self.started.lock().unwrap().as_ref() {
            let _ = tx.send(());
        }
        if self.panic {
            panic!("stand-in prover crashed");
        }
        if let Some(gate) = self.gate.lock().unwrap().take() {
            // Bounded so that the test's runtime can always shut down.
            let _ = gate.recv_timeout(Duration::from_secs(10));
        }
        let mut proof = fake_proof(task);
        proof.meta.fallback = self.fallback.clone();
        Ok(proof)
    }
    fn vk_digest(&self, spec: &CircuitSpec) -> Result<String, ProveError> {
        Ok(format!("vk-{}", spec.task_type()))
    }
    fn use_backend(&self, backend: Arc<dyn gpu::ComputeBackend>) {
        self.backends
            .lock()
            .unwrap()
            .push(backend.name().to_string());
    }
}

/// The real proving core for `prove`, stand-in verifying keys for the login.
struct RealCore(ProvingCore);

impl TaskProver for RealCore {
    fn prove(&self, task: &Task, rng: ChaCha20Rng) -> Result<ProofPayload, ProveError> {
        TaskProver::prove(&self.0, task, rng)
    }
    fn vk_digest(&self, spec: &CircuitSpec) -> Result<String, ProveError> {
        Ok(format!("vk-{}", spec.task_type()))
    }
}

fn submitted(call: &fake::Call) -> SubmitProofRequest {
    serde_json::from_value(call.body.clone()).unwrap()
}

async fn worker0_key(c: &NodeConfig) -> String {
    prover::daemon::identity::load_or_create(&c.node.identity_dir, 0)
        .unwrap()
        .public_key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_proves_submits_and_reports_health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = Fake::start().await;
    let t = task("t1", "{}");
    fake.script("get_task", [Reply::task(&t)]);
    let c = config(dir.path(), &fake.base_url());
    let prover = Arc::new(StandIn::default());
    let running = daemon::start(c.clone(), prover.clone(), CancellationToken::new())
        .await
        .unwrap();
    let call = fake.next("submit_proof").await;
    let sub = submitted(&call);
    assert_eq!(sub.task_id, "t1");
    assert_eq!(sub.uuid, "uuid-t1");
    assert_eq!(sub.status, proof_status::OK);
    let proof = ProofPayload::from_json_str(&sub.proof).unwrap();
    assert_eq!(proof, fake_proof(&t));
    // Login announced the stand-in vks of the configured types.
    let login = fake
        .calls()
        .into_iter()
        .find(|c| c.route == "login")
        .unwrap();
    assert_eq!(
        login.body["message"]["vks"],
        serde_json::json!(["vk-chunk", "vk-batch"])
    );
    assert_eq!(login.body["message"]["prover_name"], "prover-0");
    // The worker goes back to polling after the accepted submission.
    fake.next("get_task").await;

    let base = format!("http://{}", running.health_addr());
    let health: serde_json::Value = reqwest::get(format!("{base}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["backend"], "cpu");
    assert_eq!(health["stack_len"], 0);
    assert_eq!(health["workers"][0]["index"], 0);
    assert_eq!(health["workers"][0]["device"], "cpu");
    assert_eq!(health["workers"][0]["public_key"], worker0_key(&c).await);
    assert!(health["workers"][0]["state"].is_string());
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "prover_tasks_pulled_total{task_type=\"chunk\"} 1",
        "prover_tasks_proved_total{task_type=\"chunk\"} 1",
        "prover_tasks_submitted_total{task_type=\"chunk\"} 1",
        "prover_proof_duration_seconds_count{task_type=\"chunk\"} 1",
        "prover_proofs_in_flight 0",
        "prover_backend{backend=\"cpu\",engine=\"native\"} 1",
        "prover_device_faults_total{device=\"cpu\"} 0",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    // The free space of the key cache's and the task stack's filesystems, read at the scrape.
    for dir in ["keys_dir", "task_stack"] {
        let prefix = format!("prover_disk_free_bytes{{dir=\"{dir}\"}} ");
        let free: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} line in\n{metrics}"));
        assert!(free > 0, "{dir}: {free}");
    }
    let summary = running.stop().await.unwrap();
    assert_eq!(summary.tasks_pulled, 1);
    assert_eq!(summary.tasks_proved, 1);
    assert_eq!(summary.submissions_accepted, 1);
    assert_eq!(summary.left_in_stack, 0);
    assert_eq!(prover.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_moved_to_the_cpu_by_a_device_fault_is_submitted_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = Fake::start().await;
    let t = task("t1", "{}");
    fake.script("get_task", [Reply::task(&t)]);
    let c = config(dir.path(), &fake.base_url());
    let prover = Arc::new(StandIn {
        fallback: Some("cuda:0 (test): CUDA driver: launch failed".into()),
        ..StandIn::default()
    });
    let running = daemon::start(c.clone(), prover.clone(), CancellationToken::new())
        .await
        .unwrap();
    let sub = submitted(&fake.next("submit_proof").await);
    assert_eq!(
        sub.status,
        proof_status::OK,
        "the proof is submitted, not failed"
    );
    let proof = ProofPayload::from_json_str(&sub.proof).unwrap();
    assert_eq!(
        proof.meta.fallback.as_deref(),
        Some("cuda:0 (test): CUDA driver: launch failed"),
        "the coordinator sees why the proof was made on the CPU"
    );
    fake.next("get_task").await;
    let base = format!("http://{}", running.health_addr());
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "prover_device_faults_total{device=\"cpu\"} 1",
        "prover_tasks_proved_total{task_type=\"chunk\"} 1",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    assert!(
        !metrics.contains("prover_tasks_failed_total{task_type=\"chunk\"} 1"),
        "a device fault is not the task's failure:\n{metrics}"
    );
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_task_is_reported_as_failure_type_2_by_the_real_core() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = Fake::start().await;
    // A chunk of another shape than the node's circuits section (k=18 by default), and a bundle
    // task, a type the node does not prove (task_types [1, 2]): refused before any key is made.
    let mut state = crate::common::genesis(crate::common::SMALL);
    let data = state
        .apply_chunk(crate::common::SMALL, &[crate::common::transfer(0, 1, 5, 0)])
        .unwrap();
    fake.script(
        "get_task",
        [
            Reply::task(&task("bad-json", "{not json")),
            Reply::task(&Task {
                task_type: 9,
                ..task("bad-type", "{}")
            }),
            Reply::task(&crate::common::chunk_task("other-shape", &data)),
            Reply::task(&Task {
                task_type: 3,
                ..task("not-announced", "{}")
            }),
        ],
    );
    let c = config(dir.path(), &fake.base_url());
    assert_eq!(c.node.task_types, [1, 2]);
    assert_ne!(c.circuits.chunk(), crate::common::SMALL);
    let keys_dir = c.prover.keys_dir.clone();
    let core = ProvingCore::new(c.core_config());
    let running = daemon::start(c, Arc::new(RealCore(core)), CancellationToken::new())
        .await
        .unwrap();
    for (id, needle) in [
        ("bad-json", "malformed"),
        ("bad-type", "unknown task type 9"),
        ("other-shape", "is not the one this node is configured for"),
        (
            "not-announced",
            "task type 3 (bundle) is not one this node proves",
        ),
    ] {
        let sub = submitted(&fake.next("submit_proof").await);
        assert_eq!(sub.task_id, id);
        assert_eq!(sub.status, proof_status::ERROR);
        assert_eq!(sub.failure_type, failure_type::NO_PANIC);
        assert!(sub.failure_msg.contains(needle), "{}", sub.failure_msg);
    }
    let summary = running.stop().await.unwrap();
    assert_eq!(summary.tasks_failed, 4);
    assert_eq!(summary.left_in_stack, 0);
    let made: Vec<_> = std::fs::read_dir(&keys_dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(made.is_empty(), "keys made for refused tasks: {made:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_identifiers_are_not_short_printable_text_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = Fake::start().await;
    fake.script(
        "get_task",
        [
            Reply::task(&task("forged\nERROR line", "{}")),
            Reply::task(&Task {
                uuid: "u".repeat(300),
                ..task("long-uuid", "{}")
            }),
            Reply::task(&Task {
                hard_fork_name: "\u{7f}".repeat(100),
                ..task("long-fork", "{}")
            }),
            Reply::task(&task("fine", "{}")),
        ],
    );
    let prover = Arc::new(StandIn::default());
    let running = daemon::start(
        config(dir.path(), &fake.base_url()),
        prover.clone(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let sub = submitted(&fake.next("submit_proof").await);
    assert_eq!(sub.task_id, "fine");
    assert_eq!(prover.calls.load(Ordering::SeqCst), 1);
    let summary = running.stop().await.unwrap();
    assert_eq!(summary.left_in_stack, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_a_stored_proof_before_asking_for_work() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = Fake::start().await;
    let c = config(dir.path(), &fake.base_url());
    let key = worker0_key(&c).await;
    let t = task("held", "{}");
    let body = SubmitProofRequest {
        uuid: t.uuid.clone(),
        task_id: t.task_id.clone(),
        task_type: 1,
        status: proof_status::OK,
        proof: serde_json::to_string(&fake_proof(&t)).unwrap(),
        failure_type: 0,
        failure_msg: String::new(),
    };
    {
        let stack = TaskStack::open(&c.node.db_path).unwrap();
        stack.put_task(&key, &t).unwrap();
        stack.begin_attempt(&key, "held", 3).unwrap();
        stack.put_submission(&key, &body).unwrap();
    }
    let prover = Arc::new(StandIn::default());
    let running = daemon::start(c, prover.clone(), CancellationToken::new())
        .await
        .unwrap();
    let call = fake.next("submit_proof").await;
    assert_eq!(submitted(&call), body);
    fake.next("get_task").await;
    let routes = fake.routes();
    let first_auth = routes.iter().position(|r| *r == "submit_proof").unwrap();
    assert!(
        !routes[..first_auth].contains(&"get_task"),
        "polled before resuming: {routes:?}"
    );
    let summary = running.stop().await.unwrap();
    assert_eq!(summary.left_in_stack, 0);
    assert_eq!(prover.calls.load(Ordering::SeqCst), 0, "nothing re-proved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_attempts_are_spent_is_reported_as_failure_type_1() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = Fake::start().await;
    let c = config(dir.path(), &fake.base_url());
    let key = worker0_key(&c).await;
    {
        let stack = TaskStack::open(&c.node.db_path).unwrap();
        stack.put_task(&key, &task("crashy", "{}")).unwrap();
        for n in 1..=3 {
            assert_eq!(
                stack.begin_attempt(&key, "crashy", 3).unwrap(),
                Attempt::Start(n)
            );
        }
    }
    let prover = Arc::new(StandIn::default());
    let running = daemon::start(c, prover.clone(), CancellationToken::new())
        .await
        .unwrap();
    let sub = submitted(&fake.next("submit_proof").await);
    assert_eq!(sub.task_id, "crashy");
    assert_eq!(sub.status, proof_status::ERROR);
    assert_eq!(sub.failure_type, failure_type::PANIC);
    assert!(
        sub.failure_msg.contains("3 proving attempts"),
        "{}",
        sub.failure_msg
    );
    fake.next("get_task").await;
    running.stop().await.unwrap();
    assert_eq!(
        prover.calls.load(Ordering::SeqCst),
        0,
        "not proved a 4th time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_prover_uses_up_its_attempts_then_reports_failure_type_1() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = Fake::start().await;
    fake.script("get_task", [Reply::task(&task("boom", "{}"))]);
    let mut c = config(dir.path(), &fake.base_url());
    c.node.max_attempts = 2;
    let prover = Arc::new(StandIn {
        panic: true,
        ..Default::default()
    });
    let running = daemon::start(c, prover.clone(), CancellationToken::new())
        .await
        .unwrap();
    let sub = submitted(&fake.next("submit_proof").await);
    assert_eq!(sub.failure_type, failure_type::PANIC);
    assert_eq!(prover.calls.load(Ordering::SeqCst), 2);
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submission_is_retried_until_the_coordinator_answers_and_refusals_delete() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = Fake::start().await;
    fake.script(
        "get_task",
        [Reply::task(&task("a", "{}")), Reply::task(&task("b", "{}"))],
    );
    fake.script(
        "submit_proof",
        [
            Reply::Http(503),
            Reply::Http(502),
            Reply::err(500, "internal"),
            Reply::ok(serde_json::Value::Null),
            Reply::err(20003, "cannot submit proof twice"),
        ],
    );
    let c = config(dir.path(), &fake.base_url());
    let running = daemon::start(c, Arc::new(StandIn::default()), CancellationToken::new())
        .await
        .unwrap();
    for expected in [503, 502, 500, 0] {
        let call = fake.next("submit_proof").await;
        assert_eq!(submitted(&call).task_id, "a");
        assert_eq!(call.answered, expected);
    }
    let call = fake.next("submit_proof").await;
    assert_eq!(submitted(&call).task_id, "b");
    assert_eq!(call.answered, 20003);
    fake.next("get_task").await;
    let summary = running.stop().await.unwrap();
    assert_eq!(summary.submissions_accepted, 1);
    assert_eq!(summary.submissions_refused, 1);
    assert_eq!(summary.left_in_stack, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_a_proof_past_the_drain_timeout_keeps_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::start().await;
    fake.script("get_task", [Reply::task(&task("long", "{}"))]);
    let c = config(dir.path(), &fake.base_url());
    let key = worker0_key(&c).await;
    let (release, gate) = mpsc::channel();
    let (started_tx, started_rx) = mpsc::channel();
    let prover = Arc::new(StandIn {
        gate: Mutex::new(Some(gate)),
        started: Mutex::new(Some(started_tx)),
        ..Default::default()
    });
    let shutdown = CancellationToken::new();
    let running = daemon::start(c.clone(), prover.clone(), shutdown.clone())
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || started_rx.recv_timeout(Duration::from_secs(20)))
        .await
        .unwrap()
        .expect("proving started");
    let health: serde_json::Value =
        reqwest::get(format!("http://{}/health", running.health_addr()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(health["workers"][0]["state"], "proving");
    assert_eq!(health["workers"][0]["task_id"], "long");
    assert_eq!(health["workers"][0]["attempt"], 1);
    assert_eq!(health["stack_len"], 1);
    shutdown.cancel();
    let summary = running.wait().await.unwrap();
    release.send(()).ok();
    assert_eq!(summary.left_in_stack, 1);
    assert!(!fake.routes().contains(&"submit_proof"));
    let stack = TaskStack::open(&c.node.db_path).unwrap();
    let entry = stack.get(&key).unwrap().unwrap();
    assert_eq!(entry.task.task_id, "long");
    assert_eq!(entry.attempts, 1);
    assert!(entry.submission.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_within_the_drain_timeout_persists_the_finished_proof() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::start().await;
    fake.script("get_task", [Reply::task(&task("short", "{}"))]);
    let mut c = config(dir.path(), &fake.base_url());
    c.node.drain_timeout_sec = 30;
    let key = worker0_key(&c).await;
    let (release, gate) = mpsc::channel();
    let (started_tx, started_rx) = mpsc::channel();
    let prover = Arc::new(StandIn {
        gate: Mutex::new(Some(gate)),
        started: Mutex::new(Some(started_tx)),
        ..Default::default()
    });
    let shutdown = CancellationToken::new();
    let running = daemon::start(c.clone(), prover.clone(), shutdown.clone())
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || started_rx.recv_timeout(Duration::from_secs(20)))
        .await
        .unwrap()
        .expect("proving started");
    shutdown.cancel();
    release.send(()).unwrap();
    let summary = running.wait().await.unwrap();
    assert_eq!(summary.tasks_proved, 1);
    assert_eq!(summary.left_in_stack, 1, "delivered at the next start");
    let stack = TaskStack::open(&c.node.db_path).unwrap();
    let entry = stack.get(&key).unwrap().unwrap();
    let sub = entry.submission.expect("proof persisted");
    assert_eq!(sub.status, proof_status::OK);
    assert_eq!(sub.task_id, "short");
}

#[tokio::test]
async fn cuda_without_a_driver_is_refused_clearly_and_nothing_starts() {
    if let gpu::DriverProbe::Found(path) = gpu::cuda_driver_probe() {
        eprintln!(
            "CUDA driver present at {} — skipping the no-driver refusal",
            path.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), "http://127.0.0.1:1");
    c.node.backend = BackendChoice::Cuda;
    let err = daemon::start(
        c.clone(),
        Arc::new(StandIn::default()),
        CancellationToken::new(),
    )
    .await
    .err()
    .expect("cuda refused");
    let msg = err.to_string();
    assert!(matches!(err, daemon::DaemonError::Backend { .. }), "{msg}");
    assert!(msg.starts_with("compute backend cuda: "), "{msg}");
    assert!(
        msg.contains("CUDA driver library libcuda.so.1 not found"),
        "{msg}"
    );
    assert!(msg.contains("use the cpu backend"), "{msg}");
    assert!(!c.node.db_path.exists());
}

#[tokio::test]
async fn work_stored_under_a_key_no_worker_owns_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), "http://127.0.0.1:1");
    {
        let stack = TaskStack::open(&c.node.db_path).unwrap();
        stack
            .put_task(
                "02deadbeef-a-key-of-a-removed-worker",
                &task("orphan", "{}"),
            )
            .unwrap();
    }
    let err = daemon::start(c, Arc::new(StandIn::default()), CancellationToken::new())
        .await
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(msg.contains("task orphan"), "{msg}");
    assert!(
        msg.contains("02deadbeef-a-key-of-a-removed-worker"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_seed_gives_every_proof_the_same_rng_and_the_backend_is_handed_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = Fake::start().await;
    fake.script(
        "get_task",
        [
            Reply::task(&task("s1", "{}")),
            Reply::task(&task("s2", "{}")),
        ],
    );
    let mut c = config(dir.path(), &fake.base_url());
    c.node.seed = Some(5);
    let prover = Arc::new(StandIn::default());
    let running = daemon::start(c.clone(), prover.clone(), CancellationToken::new())
        .await
        .unwrap();
    fake.next("submit_proof").await;
    fake.next("submit_proof").await;
    running.stop().await.unwrap();
    let expected = ChaCha20Rng::seed_from_u64(5).next_u64();
    assert_eq!(*prover.draws.lock().unwrap(), vec![expected, expected]);
    assert_eq!(*prover.backends.lock().unwrap(), vec!["cpu".to_string()]);

    // Without a seed, every proof draws fresh randomness; the reference engine gets no backend.
    let dir = tempfile::tempdir().unwrap();
    let mut fake = Fake::start().await;
    fake.script(
        "get_task",
        [
            Reply::task(&task("r1", "{}")),
            Reply::task(&task("r2", "{}")),
        ],
    );
    let mut c = config(dir.path(), &fake.base_url());
    c.node.engine = prover::config::EngineChoice::Reference;
    let prover = Arc::new(StandIn::default());
    let running = daemon::start(c.clone(), prover.clone(), CancellationToken::new())
        .await
        .unwrap();
    fake.next("submit_proof").await;
    fake.next("submit_proof").await;
    running.stop().await.unwrap();
    let draws = prover.draws.lock().unwrap().clone();
    assert_eq!(draws.len(), 2);
    assert_ne!(draws[0], draws[1]);
    assert!(prover.backends.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_server_closes_silent_connections_and_keeps_answering() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::start().await;
    let mut c = config(dir.path(), &fake.base_url());
    c.metrics.header_timeout_ms = 300;
    c.metrics.max_connections = 4;
    c.validate().unwrap();
    let shutdown = CancellationToken::new();
    let running = daemon::start(c, Arc::new(StandIn::default()), shutdown.clone())
        .await
        .unwrap();
    let addr = running.health_addr();
    // Before the limits, 50 silent connections were held for ever and, with a low descriptor
    // limit, /health stopped answering.
    let mut silent = Vec::new();
    for _ in 0..12 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let health: serde_json::Value = tokio::time::timeout(Duration::from_secs(10), async {
        reqwest::get(format!("http://{addr}/health"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
    .await
    .expect("/health answered within 10 s with 12 silent connections and a cap of 4");
    assert!(health["status"].is_string());
    for s in &mut silent {
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "a silent connection is still open after 5 s"
        );
    }
    shutdown.cancel();
    running.wait().await.unwrap();
}
