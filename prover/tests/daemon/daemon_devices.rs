//! A node with several devices: worker i proves on device i mod n, and `/health` and `/metrics`
//! name each worker's device. Needs two CUDA devices — the emulated device offers them with
//! `CUDA_EMU_DEVICES=2` (`scripts/test` runs it so); skips with a message elsewhere, unless
//! `PROVER_REQUIRE_GPU=1`.

use crate::fake;

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use fake::{Fake, Reply};
use prover::config::{BackendChoice, NodeConfig};
use prover::daemon::{self, ProveError, TaskProver};
use prover::wire::{
    Base64Bytes, ChunkConfig, CircuitSpec, ProofMeta, ProofPayload, Task, HARD_FORK_NAME,
};
use rand_chacha::ChaCha20Rng;
use tokio_util::sync::CancellationToken;

/// Records which backend each proof was asked to run on. Each proof waits (up to 20 s) until
/// `together` proofs are running at once, so that every worker holds one task.
#[derive(Default)]
struct Recorder {
    on: Mutex<Vec<(String, String)>>,
    together: usize,
    running: (Mutex<usize>, Condvar),
}

impl TaskProver for Recorder {
    fn prove(&self, task: &Task, rng: ChaCha20Rng) -> Result<ProofPayload, ProveError> {
        self.prove_on(None, task, rng)
    }
    fn prove_on(
        &self,
        backend: Option<&Arc<dyn gpu::ComputeBackend>>,
        task: &Task,
        _rng: ChaCha20Rng,
    ) -> Result<ProofPayload, ProveError> {
        let name = backend.map_or_else(|| "none".to_string(), |b| b.name().to_string());
        self.on
            .lock()
            .unwrap()
            .push((task.task_id.clone(), name.clone()));
        let (count, cv) = &self.running;
        let mut n = count.lock().unwrap();
        *n += 1;
        cv.notify_all();
        let _ = cv
            .wait_timeout_while(n, Duration::from_secs(20), |n| *n < self.together)
            .unwrap();
        Ok(ProofPayload {
            version: 1,
            task_id: task.task_id.clone(),
            spec: CircuitSpec::Chunk {
                config: ChunkConfig::default(),
            },
            vk_digest: "vk-chunk".into(),
            instances: vec![],
            proof: Base64Bytes(vec![1; 8]),
            meta: ProofMeta {
                engine: "recorder".into(),
                backend: name,
                prove_ms: 1,
                fallback: None,
            },
        })
    }
    fn vk_digest(&self, spec: &CircuitSpec) -> Result<String, ProveError> {
        Ok(format!("vk-{}", spec.task_type()))
    }
}

fn two_devices() -> bool {
    let required = std::env::var("PROVER_REQUIRE_GPU").is_ok_and(|v| v == "1");
    match gpu::CudaBackend::device_count() {
        Ok(n) if n >= 2 => true,
        other => {
            assert!(
                !required,
                "PROVER_REQUIRE_GPU=1 but two CUDA devices are not there: {other:?}"
            );
            eprintln!("two CUDA devices are needed ({other:?}); multi-device test SKIPPED");
            false
        }
    }
}

fn config(dir: &Path, base_url: &str, workers: usize) -> NodeConfig {
    let mut c = fake::node_config(dir, base_url);
    c.node.backend = BackendChoice::Cuda;
    c.node.n_workers = workers;
    c.validate().unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_prove_on_their_own_devices_and_health_names_them() {
    if !two_devices() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut fake = Fake::start().await;
    let tasks: Vec<Task> = (0..3)
        .map(|i| Task {
            uuid: format!("u{i}"),
            task_id: format!("t{i}"),
            task_type: 1,
            task_data: "{}".into(),
            hard_fork_name: HARD_FORK_NAME.into(),
        })
        .collect();
    fake.script("get_task", tasks.iter().map(Reply::task));
    let c = config(dir.path(), &fake.base_url(), 3);
    let prover = Arc::new(Recorder {
        together: 3,
        ..Recorder::default()
    });
    let running = daemon::start(c, prover.clone(), CancellationToken::new())
        .await
        .unwrap();
    for _ in 0..3 {
        fake.next("submit_proof").await;
    }
    let base = format!("http://{}", running.health_addr());
    let health: serde_json::Value = reqwest::get(format!("{base}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let devices: Vec<String> = (0..3)
        .map(|i| health["workers"][i]["device"].as_str().unwrap().to_string())
        .collect();
    assert!(devices[0].starts_with("cuda:0 "), "{devices:?}");
    assert!(devices[1].starts_with("cuda:1 "), "{devices:?}");
    assert!(devices[2].starts_with("cuda:0 "), "{devices:?}");
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for d in &devices[..2] {
        let line = format!("prover_device_faults_total{{device=\"{d}\"}} 0");
        assert!(metrics.contains(&line), "missing {line:?} in\n{metrics}");
    }
    running.stop().await.unwrap();
    // The three workers held one task each at the same time: two proofs ran on device 0
    // (workers 0 and 2), one on device 1.
    let on = prover.on.lock().unwrap().clone();
    assert_eq!(on.len(), 3, "{on:?}");
    let on_device = |d: &str| on.iter().filter(|(_, b)| b.starts_with(d)).count();
    assert_eq!(
        (on_device("cuda:0 "), on_device("cuda:1 ")),
        (2, 1),
        "{on:?}"
    );
}

#[tokio::test]
async fn a_device_the_driver_does_not_have_stops_the_start() {
    if !two_devices() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), "http://127.0.0.1:1", 1);
    c.node.devices = Some(vec![0, 7]);
    let err = daemon::start(
        c.clone(),
        Arc::new(Recorder::default()),
        CancellationToken::new(),
    )
    .await
    .err()
    .expect("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("CUDA device 7 configured, but the driver sees"),
        "{msg}"
    );
    assert!(!c.node.db_path.exists(), "nothing started");
}
