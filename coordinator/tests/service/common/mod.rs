//! Shared setup of the coordinator's integration tests: dev parameters and one proving core per
//! test binary, a coordinator on loopback with its store in a temp dir, and an HTTP client that
//! logs in like a prover.
#![allow(dead_code)]

pub mod anvil;
pub mod login;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use coordinator::{Coordinator, CoordinatorConfig, RunningCoordinator};
use k256::ecdsa::SigningKey;
use prover_core::login::sign_login;
use prover_core::wire::{
    errcode, ChunkConfig, Envelope, GetTaskRequest, LoginMessage, LoginRequest, SubmitProofRequest,
    Task, TokenReply,
};
use prover_core::{CoreConfig, ProvingCore};

/// The small chunk circuit of the prover's own tests.
pub const SMALL: ChunkConfig = ChunkConfig {
    k: 13,
    tree_depth: 4,
    max_txs: 2,
};

pub struct Env {
    pub dir: tempfile::TempDir,
    pub core: Arc<ProvingCore>,
}

/// One params/keys directory and proving core per test binary.
pub fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let params_dir = dir.path().join("params");
        params::ensure_dev(&params_dir, SMALL.k, false).expect("dev params");
        let core = Arc::new(ProvingCore::new(CoreConfig::new(
            params_dir,
            dir.path().join("keys"),
        )));
        Env { dir, core }
    })
}

/// A loopback coordinator's configuration, its store in `dir` (redb) or, when
/// `COORDINATOR_TEST_POSTGRES` names a server, in a fresh PostgreSQL database.
pub fn config(dir: &Path) -> CoordinatorConfig {
    let e = env();
    let mut c = CoordinatorConfig::local(
        dir,
        e.dir.path().join("params"),
        e.dir.path().join("keys"),
        SMALL,
        None,
    );
    c.database_url = fresh_database();
    c
}

/// With `COORDINATOR_TEST_POSTGRES` set (a server URL as `scripts/pg-cluster` prints it, ending
/// in `/DATABASE`), a new empty database on that server and its URL; `None` without.
pub fn fresh_database() -> Option<String> {
    let server = std::env::var("COORDINATOR_TEST_POSTGRES").ok()?;
    Some(
        coordinator::store::pg::create_database(&server, "t")
            .expect("create a test database (COORDINATOR_TEST_POSTGRES)"),
    )
}

/// `coordinator serve` with `cfg` written to `dir/file`; returns the child, its URL and the rest
/// of its stdout.
pub fn spawn_serve(
    dir: &Path,
    file: &str,
    cfg: &CoordinatorConfig,
) -> (
    std::process::Child,
    String,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
) {
    let path = dir.join(file);
    std::fs::write(&path, serde_json::to_string_pretty(cfg).expect("json")).expect("write");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .args(["serve", "--config", path.to_str().expect("utf8")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn coordinator serve");
    let stdout = child.stdout.take().expect("stdout");
    // Any lines before the address are skipped (the key generation logs through tracing, on stderr).
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("serve printed its address before exiting")
            .expect("read");
        if let Some(url) = line.trim().strip_prefix("coordinator listening on ") {
            break url.to_string();
        }
    };
    (child, url, lines)
}

pub async fn start(config: CoordinatorConfig) -> RunningCoordinator {
    Coordinator::start(config, env().core.clone())
        .await
        .expect("coordinator starts")
}

/// A prover identity speaking HTTP to the coordinator.
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    pub key: SigningKey,
    pub name: String,
    pub types: Vec<u8>,
    pub vks: Vec<String>,
    pub token: String,
}

impl Client {
    pub fn new(c: &RunningCoordinator, name: &str, seed: u8) -> Self {
        let mut secret = [7u8; 32];
        secret[0] = seed;
        Self {
            base: c.base_url(),
            http: reqwest::Client::new(),
            key: SigningKey::from_slice(&secret).expect("key"),
            name: name.into(),
            types: vec![1],
            vks: vec![c.accepted_vks().chunk],
            token: String::new(),
        }
    }

    pub fn public_key(&self) -> String {
        prover_core::login::public_key_hex(&self.key)
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        serde_json::from_str(&self.get_text(path).await).expect("json reply")
    }

    pub async fn get_text(&self, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("text reply")
    }

    /// POSTs raw bytes with an optional bearer token; returns the decoded envelope.
    pub async fn post_raw(
        &self,
        path: &str,
        bearer: Option<&str>,
        body: Vec<u8>,
    ) -> Envelope<serde_json::Value> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let retry_after = resp.headers().contains_key("retry-after");
        let env: Envelope<serde_json::Value> = resp.json().await.expect("envelope");
        if env.errcode == errcode::INTERNAL {
            // Transient: a stock client retries only on HTTP 5xx.
            assert_eq!(
                status, 503,
                "a retry-later reply is HTTP 503: {}",
                env.errmsg
            );
            assert!(retry_after, "a 503 says when to retry");
        } else {
            assert_eq!(status, 200, "a final reply is HTTP 200: {}", env.errmsg);
        }
        env
    }

    pub async fn challenge(&self) -> String {
        let v = self.get_json("/coordinator/v1/challenge").await;
        let env: Envelope<TokenReply> = serde_json::from_value(v).expect("challenge envelope");
        assert_eq!(env.errcode, 0, "{}", env.errmsg);
        env.data.expect("data").token
    }

    pub fn login_request(&self, challenge: &str, version: &str) -> LoginRequest {
        sign_login(
            &self.key,
            LoginMessage {
                challenge: challenge.into(),
                prover_version: version.into(),
                prover_name: self.name.clone(),
                prover_provider_type: 1,
                prover_types: self.types.clone(),
                vks: self.vks.clone(),
            },
        )
        .expect("sign")
    }

    pub async fn send_login(
        &self,
        challenge: &str,
        req: &LoginRequest,
    ) -> Envelope<serde_json::Value> {
        self.post_raw(
            "/coordinator/v1/login",
            Some(challenge),
            serde_json::to_vec(req).expect("json"),
        )
        .await
    }

    pub async fn login(&mut self) {
        let ch = self.challenge().await;
        let req = self.login_request(&ch, "0.1.0");
        let env = self.send_login(&ch, &req).await;
        assert_eq!(env.errcode, 0, "login: {}", env.errmsg);
        let reply: TokenReply = serde_json::from_value(env.data.expect("data")).expect("token");
        self.token = reply.token;
    }

    pub async fn get_task_env(&self, types: &[u8]) -> Envelope<serde_json::Value> {
        let body = serde_json::to_vec(&GetTaskRequest {
            task_types: types.to_vec(),
            prover_height: None,
        })
        .expect("json");
        self.post_raw("/coordinator/v1/get_task", Some(&self.token), body)
            .await
    }

    pub async fn get_task(&self) -> Option<Task> {
        let env = self.get_task_env(&self.types).await;
        if env.errcode == errcode::NO_TASK {
            return None;
        }
        assert_eq!(env.errcode, 0, "get_task: {}", env.errmsg);
        Some(serde_json::from_value(env.data.expect("data")).expect("task"))
    }

    pub async fn submit(&self, req: &SubmitProofRequest) -> Envelope<serde_json::Value> {
        self.post_raw(
            "/coordinator/v1/submit_proof",
            Some(&self.token),
            serde_json::to_vec(req).expect("json"),
        )
        .await
    }

    pub async fn submit_proof_text(
        &self,
        task: &Task,
        proof: String,
    ) -> Envelope<serde_json::Value> {
        self.submit(&SubmitProofRequest {
            uuid: task.uuid.clone(),
            task_id: task.task_id.clone(),
            task_type: task.task_type,
            status: 0,
            proof,
            failure_type: 0,
            failure_msg: String::new(),
        })
        .await
    }

    pub async fn report_failure(&self, task: &Task) -> Envelope<serde_json::Value> {
        self.submit(&SubmitProofRequest {
            uuid: task.uuid.clone(),
            task_id: task.task_id.clone(),
            task_type: task.task_type,
            status: 1,
            proof: String::new(),
            failure_type: 2,
            failure_msg: "test failure".into(),
        })
        .await
    }
}
