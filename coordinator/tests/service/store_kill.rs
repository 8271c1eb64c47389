//! A `coordinator serve` process killed with SIGKILL while 48 provers ask for tasks at once: every
//! assignment it answered is in the store when it is opened again. On redb concurrent requests
//! share one write transaction and one durable commit (`store/batch.rs`); this is the check that
//! no answer goes out before that commit (an uncommitted transaction is gone after the kill).
//! With `COORDINATOR_TEST_POSTGRES` the same on PostgreSQL.

use crate::common;

use std::time::Duration;

use common::{config, spawn_serve, start};
use k256::ecdsa::SigningKey;
use prover_core::login::public_key_hex;
use prover_core::wire::{errcode, Envelope, GetTaskRequest, Task};
use tokio::sync::mpsc;

const PROVERS: usize = 48;
/// Answers received before the kill; the other requests are in flight or not yet sent.
const ANSWERED_BEFORE_KILL: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_killed_under_load_keeps_every_assignment_it_answered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.listen = "127.0.0.1:0".into();
    // The tasks are made in this process, then the store is handed to the child.
    let c = start(cfg.clone()).await;
    let ids = c.enqueue_random(2 * PROVERS, 5).await.expect("enqueue");
    assert_eq!(ids.len(), PROVERS);
    let vk = c.accepted_vks().chunk;
    c.shutdown().await;

    let (mut child, url, lines) = spawn_serve(dir.path(), "serve.json", &cfg);
    std::thread::spawn(move || for _ in lines {});
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    // Log everyone in first, so that the get_tasks below arrive together.
    let mut provers = Vec::new();
    for i in 0..PROVERS {
        let mut secret = [3u8; 32];
        secret[0] = i as u8 + 1;
        let key = SigningKey::from_slice(&secret).expect("key");
        let token = common::login::signed_login(&http, &url, &key, &format!("p{i}"), &vk)
            .await
            .expect("login");
        provers.push((public_key_hex(&key), token));
    }
    // Each reply that came back: the prover's key and its task, or what was wrong with it.
    let (tx, mut answers) = mpsc::unbounded_channel::<Result<(String, Task), String>>();
    for (public_key, token) in provers {
        let (http, url, tx) = (http.clone(), url.clone(), tx.clone());
        tokio::spawn(async move {
            let reply = http
                .post(format!("{url}/coordinator/v1/get_task"))
                .bearer_auth(token)
                .json(&GetTaskRequest {
                    task_types: vec![1],
                    prover_height: None,
                })
                .send()
                .await;
            // After the kill: no answer, nothing to check.
            let Ok(reply) = reply else { return };
            let Ok(env) = reply.json::<Envelope<Task>>().await else {
                return;
            };
            let answer = match env.data {
                Some(task) if env.errcode == errcode::SUCCESS => Ok((public_key, task)),
                _ => Err(format!("errcode {}: {}", env.errcode, env.errmsg)),
            };
            let _ = tx.send(answer);
        });
    }
    drop(tx);
    let mut answered = Vec::new();
    while let Some(a) = answers.recv().await {
        answered.push(a.expect("get_task answered with a task"));
        if answered.len() == ANSWERED_BEFORE_KILL {
            break;
        }
    }
    child.kill().expect("SIGKILL serve");
    child.wait().expect("wait for the killed coordinator");
    // Answers already received before the kill landed count too.
    while let Ok(a) = answers.try_recv() {
        answered.push(a.expect("get_task answered with a task"));
    }
    assert!(answered.len() >= ANSWERED_BEFORE_KILL);

    // The store API blocks (PostgreSQL's runs a runtime of its own): off the test's runtime.
    let checked = answered.clone();
    tokio::task::spawn_blocking(move || {
        let store = coordinator::store::Store::from_config(&cfg).expect("the store opens again");
        for (public_key, task) in &checked {
            let live = store
                .outstanding(public_key)
                .expect("read")
                .unwrap_or_else(|| {
                    panic!(
                        "the assignment of {} answered before the kill is lost",
                        task.task_id
                    )
                });
            assert_eq!(live.uuid, task.uuid);
            assert_eq!(live.task_id, task.task_id);
        }
    })
    .await
    .expect("the check");
    eprintln!(
        "{} assignments answered before the kill, all in the store after it",
        answered.len()
    );
}
