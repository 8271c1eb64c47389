//! Three replicas on one PostgreSQL database (`COORDINATOR_TEST_POSTGRES`): A in this process, B
//! and C as `coordinator serve` processes. Three provers with real proofs, each knowing every
//! replica and moving to the next when one fails. B is killed with SIGKILL as a proof is being
//! sent to it (the request in flight: before or during its verification), C as a get_task is
//! being sent to it (before or during the assignment's transaction). Every
//! chunk task ends verified exactly once, by one assignment (nothing handed to two provers), and
//! every proof the provers sent is accounted for. Without a PostgreSQL server the test says so
//! and checks nothing (`scripts/test` runs it on a private cluster).

use crate::common;

use std::process::Child;
use std::time::Duration;

use common::{config, start};
use coordinator::TaskState;
use k256::ecdsa::SigningKey;
use prover_core::wire::{errcode, Envelope, GetTaskRequest, SubmitProofRequest, Task};
use tokio::sync::mpsc;

/// `coordinator serve` on `cfg`; the child and its URL. Its stdout is read to the end, so
/// that it never writes into a closed pipe.
fn spawn_replica(
    dir: &std::path::Path,
    name: &str,
    cfg: &coordinator::CoordinatorConfig,
) -> (Child, String) {
    let (child, url, lines) = common::spawn_serve(dir, &format!("{name}.json"), cfg);
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

/// What a prover tells the test just before it sends a request.
#[derive(Debug)]
enum Sending {
    GetTask(usize),
    Submit(usize),
}

struct Prover {
    http: reqwest::Client,
    urls: Vec<String>,
    cur: usize,
    key: SigningKey,
    name: String,
    vk: String,
    token: Option<String>,
    tell: mpsc::UnboundedSender<(String, Sending)>,
}

/// One attempt's result: a reply, or the replica failed (transport error, garbage, errcode 500).
type Attempt = Result<Envelope<serde_json::Value>, String>;

impl Prover {
    async fn login(&mut self) -> Result<(), String> {
        let token = common::login::signed_login(
            &self.http,
            &self.urls[self.cur],
            &self.key,
            &self.name,
            &self.vk,
        )
        .await?;
        self.token = Some(token);
        Ok(())
    }

    async fn post_once<T: serde::Serialize>(&mut self, route: &str, body: &T) -> Attempt {
        if self.token.is_none() {
            self.login().await?;
        }
        let base = &self.urls[self.cur];
        let env: Envelope<serde_json::Value> = self
            .http
            .post(format!("{base}/coordinator/v1/{route}"))
            .bearer_auth(self.token.as_deref().unwrap_or_default())
            .json(body)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if env.errcode == errcode::INTERNAL {
            return Err(env.errmsg);
        }
        Ok(env)
    }

    /// Posts, moving to the next replica while the current one fails; `unclear` is set when an
    /// attempt failed after the request may have reached a replica.
    async fn post<T: serde::Serialize>(
        &mut self,
        route: &str,
        body: &T,
        what: fn(usize) -> Sending,
        unclear: &mut bool,
    ) -> Envelope<serde_json::Value> {
        for _ in 0..200 {
            let _ = self.tell.send((self.name.clone(), what(self.cur)));
            match self.post_once(route, body).await {
                Ok(env) if env.errcode == errcode::JWT || env.errcode == errcode::JWT_EXPIRED => {
                    self.token = None;
                }
                Ok(env) => return env,
                Err(_) => {
                    *unclear = true;
                    self.cur = (self.cur + 1) % self.urls.len();
                    self.token = None;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        panic!("{}: {route} failed on every replica 200 times", self.name);
    }
}

#[derive(Default, Debug)]
struct Tally {
    /// Submissions that reached a replica only after another failed.
    failed_over: u32,
    accepted: Vec<String>,
    /// Refused as already verified after an unclear attempt: that attempt was recorded.
    already: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_killed_mid_verification_and_mid_assignment_lose_nothing() {
    if std::env::var_os("COORDINATOR_TEST_POSTGRES").is_none() {
        eprintln!("no COORDINATOR_TEST_POSTGRES: replicas need a shared database (scripts/test)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let a = start(cfg.clone()).await;
    let mut process_cfg = cfg.clone();
    process_cfg.listen = "127.0.0.1:0".into();
    let (mut b, b_url) = spawn_replica(dir.path(), "b", &process_cfg);
    let (mut c, c_url) = spawn_replica(dir.path(), "c", &process_cfg);
    let ids = a.enqueue_random(12, 31).await.expect("enqueue");
    let n = ids.len();
    assert_eq!(n, 6);

    let (tell, mut told) = mpsc::unbounded_channel();
    let vk = a.accepted_vks().chunk;
    let core = common::env().core.clone();
    // p0 starts at B, p1 at C, p2 at A; each then goes round the list.
    let lists = [
        vec![b_url.clone(), c_url.clone(), a.base_url()],
        vec![c_url.clone(), a.base_url(), b_url.clone()],
        vec![a.base_url(), b_url.clone(), c_url.clone()],
    ];
    let done = tokio_util::sync::CancellationToken::new();
    let mut handles = Vec::new();
    for (i, urls) in lists.into_iter().enumerate() {
        let mut secret = [9u8; 32];
        secret[0] = i as u8 + 1;
        let mut p = Prover {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            urls,
            cur: 0,
            key: SigningKey::from_slice(&secret).expect("key"),
            name: format!("p{i}"),
            vk: vk.clone(),
            token: None,
            tell: tell.clone(),
        };
        let core = core.clone();
        let done = done.clone();
        handles.push(tokio::spawn(async move {
            let mut t = Tally::default();
            let get = GetTaskRequest {
                task_types: vec![1],
                prover_height: None,
            };
            loop {
                let mut unclear = false;
                let env = tokio::select! {
                    env = p.post("get_task", &get, Sending::GetTask, &mut unclear) => env,
                    _ = done.cancelled() => return t,
                };
                if env.errcode == errcode::NO_TASK {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                assert_eq!(env.errcode, 0, "{} get_task: {}", p.name, env.errmsg);
                let task: Task = serde_json::from_value(env.data.expect("data")).expect("task");
                let proving = core.clone();
                let job = task.clone();
                let proof = tokio::task::spawn_blocking(move || {
                    proving.prove_task(&job, rand::thread_rng())
                })
                .await
                .expect("join")
                .expect("prove");
                let req = SubmitProofRequest {
                    uuid: task.uuid.clone(),
                    task_id: task.task_id.clone(),
                    task_type: task.task_type,
                    status: 0,
                    proof: serde_json::to_string(&proof).expect("proof json"),
                    failure_type: 0,
                    failure_msg: String::new(),
                };
                let mut unclear = false;
                let env = p
                    .post("submit_proof", &req, Sending::Submit, &mut unclear)
                    .await;
                if unclear {
                    eprintln!(
                        "{}: {} delivered after a replica failed",
                        p.name, task.task_id
                    );
                    t.failed_over += 1;
                }
                match env.errcode {
                    0 => t.accepted.push(task.task_id),
                    errcode::PROOF_FAILURE if unclear => t.already.push(task.task_id),
                    other => panic!("{} submit {}: {other} {}", p.name, task.task_id, env.errmsg),
                }
            }
        }));
    }
    drop(tell);

    // The kills, each right after the request it aims at was sent (the scenario's timing: the
    // assertions below hold wherever it lands).
    let mut b_killed = false;
    let mut c_killed = false;
    while !(b_killed && c_killed) {
        let (who, what) = tokio::time::timeout(Duration::from_secs(600), told.recv())
            .await
            .expect("provers kept working")
            .expect("provers running");
        match what {
            Sending::Submit(0) if who == "p0" && !b_killed => {
                b.kill().expect("SIGKILL B");
                eprintln!("SIGKILL B (a proof from p0 in flight)");
                b_killed = true;
            }
            Sending::GetTask(0) if who == "p1" && b_killed && !c_killed => {
                c.kill().expect("SIGKILL C");
                eprintln!("SIGKILL C (a get_task from p1 in flight)");
                c_killed = true;
            }
            _ => {}
        }
    }
    let _ = b.wait();
    let _ = c.wait();
    tokio::spawn(async move { while told.recv().await.is_some() {} });

    let report = tokio::time::timeout(Duration::from_secs(600), async {
        loop {
            let r = a.status().await.expect("status");
            let verified = r
                .tasks
                .iter()
                .filter(|t| t.task_type == "chunk" && t.state == TaskState::Verified)
                .count();
            if verified == n {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("every chunk task verified");
    done.cancel();
    let mut accepted = Vec::new();
    let mut already = Vec::new();
    let mut failed_over = 0;
    for h in handles {
        let t = h.await.expect("prover");
        failed_over += t.failed_over;
        accepted.extend(t.accepted);
        already.extend(t.already);
    }
    for t in report.tasks.iter().filter(|t| t.task_type == "chunk") {
        assert_eq!(t.attempts, 1, "{} was handed out more than once", t.task_id);
        assert!(a.proof(&t.task_id).await.expect("proof").is_some());
    }
    // Each task's proof was accepted once: by a live reply, or by a replica that died before
    // replying (then the next replica said "already verified").
    let mut all: Vec<String> = accepted.iter().chain(&already).cloned().collect();
    all.sort();
    let mut expected: Vec<String> = report
        .tasks
        .iter()
        .filter(|t| t.task_type == "chunk")
        .map(|t| t.task_id.clone())
        .collect();
    expected.sort();
    eprintln!("accepted {accepted:?}, already verified after a kill {already:?}");
    let verify_ms: Vec<_> = report.tasks.iter().map(|t| t.verify_ms).collect();
    eprintln!("verification times (ms): {verify_ms:?}");
    assert_eq!(all, expected, "one accepted proof per task");
    assert!(
        failed_over >= 1,
        "p0's proof, sent to B as B was killed, was delivered elsewhere"
    );
    a.shutdown().await;
}
