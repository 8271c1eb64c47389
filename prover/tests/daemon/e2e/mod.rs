//! Harness of the end-to-end tests: a real coordinator (in this process, real HTTP on loopback,
//! real redb file) and real `prover run` processes (killed with SIGKILL where a test says so).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coordinator::{Coordinator, CoordinatorConfig, RunningCoordinator, StatusReport, TaskState};
use prover::wire::ChunkConfig;
use prover::{CoreConfig, ProvingCore};

/// The chunk circuit of these tests (k ≤ 14 keeps CI fast).
pub const CHUNK: ChunkConfig = ChunkConfig {
    k: 13,
    tree_depth: 4,
    max_txs: 2,
};

/// Every wait in these tests is a poll of a condition with this deadline.
pub const DEADLINE: Duration = Duration::from_secs(600);

/// A test world: params, keys, one proving core shared by the in-process coordinator.
pub struct World {
    pub dir: tempfile::TempDir,
    pub core: Arc<ProvingCore>,
    pub coordinator_config: CoordinatorConfig,
}

impl World {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let params_dir = dir.path().join("params");
        params::ensure_dev(&params_dir, CHUNK.k, false).expect("dev params");
        let core = Arc::new(ProvingCore::new(CoreConfig::new(
            params_dir.clone(),
            dir.path().join("keys"),
        )));
        let coord_dir = dir.path().join("coordinator");
        std::fs::create_dir_all(&coord_dir).expect("coordinator dir");
        let coordinator_config = CoordinatorConfig::local(
            &coord_dir,
            &params_dir,
            dir.path().join("keys"),
            CHUNK,
            None,
        );
        World {
            dir,
            core,
            coordinator_config,
        }
    }

    /// Starts (or restarts, on the same port and store) the coordinator.
    pub async fn start_coordinator(&mut self) -> RunningCoordinator {
        let c = Coordinator::start(self.coordinator_config.clone(), self.core.clone())
            .await
            .expect("coordinator starts");
        // A restart must come back on the same address: pin the port the first start chose.
        self.coordinator_config.listen = c.addr().to_string();
        c
    }

    /// Starts another replica of the coordinator (same configuration and database, a port of its
    /// own): only with a PostgreSQL `database_url`.
    #[allow(dead_code)]
    pub async fn start_replica(&self) -> RunningCoordinator {
        let mut config = self.coordinator_config.clone();
        config.listen = "127.0.0.1:0".into();
        Coordinator::start(config, self.core.clone())
            .await
            .expect("replica starts")
    }

    /// Writes the config of node `name` (one worker) and returns its path.
    pub fn node_config(&self, name: &str, base_url: &str) -> PathBuf {
        self.node_config_with_failover(name, base_url, &[])
    }

    /// The same, with `coordinator.failover_urls`.
    pub fn node_config_with_failover(
        &self,
        name: &str,
        base_url: &str,
        failover_urls: &[String],
    ) -> PathBuf {
        let node_dir = self.dir.path().join(name);
        std::fs::create_dir_all(&node_dir).expect("node dir");
        let config = serde_json::json!({
            "prover": {
                "params_dir": self.core.config().params_dir,
                "keys_dir": self.core.config().keys_dir,
            },
            "node": {
                "name": name, "n_workers": 1, "identity_dir": node_dir.join("identity"),
                "db_path": node_dir.join("stack.redb"), "task_types": [1], "max_attempts": 3,
                "drain_timeout_sec": 60, "backend": "cpu", "engine": "native", "provider_type": 1
            },
            "circuits": {
                "chunk_k": CHUNK.k, "chunk_tree_depth": CHUNK.tree_depth,
                "chunk_max_txs": CHUNK.max_txs, "batch_k": 20, "batch_num_chunks": 2
            },
            "coordinator": {
                "base_url": base_url, "failover_urls": failover_urls, "poll_interval_ms": 100, "poll_jitter_ms": 50,
                "request_timeout_sec": 10, "retry_initial_ms": 100, "retry_max_ms": 1000,
                "prover_version": null
            },
            "metrics": {"listen": "127.0.0.1:0"}
        });
        let path = node_dir.join("config.json");
        std::fs::write(&path, serde_json::to_string_pretty(&config).expect("json"))
            .expect("write config");
        path
    }
}

/// A `prover run` process. Its log goes to a file in the node's directory (printed on failure).
pub struct Node {
    pub child: Child,
    pub health: SocketAddr,
    pub log: PathBuf,
}

impl Node {
    /// Starts `prover run --config config`, with `/health` on a port chosen here.
    pub fn spawn(config: &Path, run: u32) -> Node {
        let port = free_port();
        let log = config.with_file_name(format!("run-{run}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_prover"))
            .args(["run", "--config"])
            .arg(config)
            .env("PROVER_METRICS_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info")
            .env_remove("PROVER_PARAMS_DIR")
            .env_remove("PROVER_KEYS_DIR")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn prover run");
        Node {
            child,
            health: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    /// SIGTERM and the exit status (must be 0: a graceful stop).
    pub async fn terminate(mut self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM")
            .success();
        assert!(ok, "kill -TERM failed");
        let log = self.log.clone();
        let status = tokio::task::spawn_blocking(move || self.child.wait())
            .await
            .expect("join")
            .expect("wait");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(status.success(), "prover run exited with {status}\n{text}");
    }

    /// `/health` JSON, or `None` while the process is not (yet) serving.
    pub async fn health(&self) -> Option<serde_json::Value> {
        let url = format!("http://{}/health", self.health);
        let reply = reqwest::get(url).await.ok()?;
        reply.json().await.ok()
    }

    /// The state and task of worker 0 from `/health`.
    pub async fn worker0(&self) -> Option<(String, Option<String>)> {
        let h = self.health().await?;
        let w = h.get("workers")?.get(0)?;
        Some((
            w.get("state")?.as_str()?.to_string(),
            w.get("task_id").and_then(|t| t.as_str()).map(String::from),
        ))
    }

    /// Sum of the samples of a counter in `/metrics` (all label sets).
    pub async fn counter(&self, name: &str) -> f64 {
        let url = format!("http://{}/metrics", self.health);
        let text = reqwest::get(url)
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                let metric = l.split(['{', ' ']).next().unwrap_or("");
                metric == name
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Polls `probe` every 100 ms until it returns `Some`, or panics after `DEADLINE` with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out after {:?} waiting for {what}",
            DEADLINE
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every task of the coordinator is verified and returns the report.
pub async fn all_verified(c: &RunningCoordinator, n: usize) -> StatusReport {
    wait_for(&format!("{n} verified tasks"), || async {
        let r = c.status().await.expect("status");
        let failed: Vec<_> = r
            .tasks
            .iter()
            .filter(|t| t.state == TaskState::Failed)
            .collect();
        assert!(failed.is_empty(), "a task failed: {failed:?}");
        (r.tasks.len() == n && r.tasks.iter().all(|t| t.state == TaskState::Verified)).then_some(r)
    })
    .await
}
