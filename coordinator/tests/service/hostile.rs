//! Hostile and foreign clients against a real coordinator on loopback (issue: hostile input and
//! real clients). Each test fails on the coordinator as it was before these rules:
//! - request bodies are read only after the caller is authenticated, with small limits on the
//!   small routes and a declared oversize refused before reading;
//! - `null` in a request body reads as Go's zero value, unknown fields are ignored;
//! - text from provers is bounded and escaped; admin input is checked; overflowing versions are
//!   refused;
//! - slow, silent and idle connections are closed, and a connection cap keeps the server
//!   answering, with a share per client address; a body that stops arriving is refused;
//! - fresh keys reporting failures cannot fail a task; only a failed task can be requeued;
//! - a duplicate submission during verification is a retry-later HTTP 503, not a refusal.

use crate::common;

use std::time::Duration;

use common::{config, start, Client};
use prover_core::wire::errcode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends the head of a POST declaring `declared` body bytes plus `sent` of them, and returns the
/// reply, which must come within 5 s although most of the body was never sent.
async fn post_partial(
    base: &str,
    path: &str,
    bearer: Option<&str>,
    declared: u64,
    sent: usize,
) -> String {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}Content-Length: {declared}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("write head");
    s.write_all(&vec![b' '; sent]).await.expect("write body");
    let mut buf = vec![0u8; 64 << 10];
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = s.read(&mut buf).await.expect("read");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if n == 0 || (text.contains("\r\n\r\n") && text.contains("errcode")) {
                break;
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "{path}: no reply within 5 s to a request whose body was not sent: the server is waiting \
         for the body"
    );
    String::from_utf8_lossy(&got).into_owned()
}

/// POSTs `body` to submit_proof with the client's login token.
async fn submit_json(
    client: &Client,
    body: serde_json::Value,
) -> prover_core::wire::Envelope<serde_json::Value> {
    client
        .post_raw(
            "/coordinator/v1/submit_proof",
            Some(&client.token),
            serde_json::to_vec(&body).expect("json"),
        )
        .await
}

fn errcode_of(reply: &str) -> i64 {
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
    let start = body.find('{').unwrap_or(0);
    let v: serde_json::Value = serde_json::from_str(&body[start..]).unwrap_or_else(|e| {
        panic!("reply body is not the JSON envelope ({e}): {reply}");
    });
    v["errcode"].as_i64().expect("errcode")
}

#[tokio::test]
async fn nothing_is_read_before_authentication() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start(config(dir.path())).await;
    let base = c.base_url();
    // Unauthenticated uploads: refused from the headers alone, the 50 MB body never read.
    for (path, bearer) in [
        ("/coordinator/v1/submit_proof", None),
        ("/coordinator/v1/submit_proof", Some("not-a-token")),
        ("/coordinator/v1/get_task", None),
        ("/coordinator/v1/login", None),
        ("/coordinator/v1/login", Some("forged.challenge.token")),
        ("/admin/v1/enqueue", None),
        ("/admin/v1/enqueue", Some("wrong-admin-token")),
    ] {
        let reply = post_partial(&base, path, bearer, 50_000_000, 100).await;
        assert_eq!(errcode_of(&reply), errcode::JWT as i64, "{path}: {reply}");
    }
    // Authenticated, but a declared 1 GiB is refused before reading.
    let mut a = Client::new(&c, "honest", 1);
    a.login().await;
    let reply = post_partial(
        &base,
        "/coordinator/v1/submit_proof",
        Some(&a.token),
        1 << 30,
        10,
    )
    .await;
    assert_eq!(
        errcode_of(&reply),
        errcode::INVALID_PARAMETER as i64,
        "{reply}"
    );
    assert!(reply.contains("too large"), "{reply}");
    // The small routes have small limits: a 100 KiB get_task is refused.
    let pad = "x".repeat(100 << 10);
    let body = format!(r#"{{"task_types": [1], "pad": "{pad}"}}"#);
    let env = a
        .post_raw(
            "/coordinator/v1/get_task",
            Some(&a.token),
            body.into_bytes(),
        )
        .await;
    assert_eq!(env.errcode, errcode::INVALID_PARAMETER, "{}", env.errmsg);
    assert!(env.errmsg.contains("limit 65536"), "{}", env.errmsg);
    // And the coordinator still serves.
    let env = a.get_task_env(&[1]).await;
    assert_eq!(env.errcode, errcode::NO_TASK, "{}", env.errmsg);
    c.shutdown().await;
}

#[tokio::test]
async fn null_fields_read_as_zero_values_and_unknown_fields_are_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start(config(dir.path())).await;
    c.enqueue_random(2, 1).await.expect("enqueue");
    let mut a = Client::new(&c, "sdk-like", 2);
    a.login().await;
    let task = a.get_task().await.expect("a task");
    // As scroll-proving-sdk sends a failure report: nulls, and a field we do not know.
    let body = serde_json::json!({
        "uuid": task.uuid,
        "task_id": task.task_id,
        "task_type": task.task_type,
        "status": 1,
        "proof": null,
        "failure_type": null,
        "failure_msg": null,
        "hard_fork_name": "euclid",
    });
    let env = submit_json(&a, body).await;
    assert_eq!(env.errcode, 0, "{}", env.errmsg);
    // A successful proof with null failure fields reaches the verifier (an invalid proof: 20003),
    // instead of being refused as a malformed body (20001).
    let mut b = Client::new(&c, "sdk-like-2", 3);
    b.login().await;
    let task = b.get_task().await.expect("a task");
    let body = serde_json::json!({
        "uuid": task.uuid,
        "task_id": task.task_id,
        "task_type": task.task_type,
        "status": 0,
        "proof": "{}",
        "failure_type": null,
        "failure_msg": null,
    });
    let env = submit_json(&b, body).await;
    assert_eq!(env.errcode, errcode::PROOF_FAILURE, "{}", env.errmsg);
    c.shutdown().await;
}

#[tokio::test]
async fn prover_text_is_bounded_and_escaped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start(config(dir.path())).await;
    c.enqueue_random(2, 1).await.expect("enqueue");
    // Names: too long, or with a control character (a forged log line), are refused at login.
    for name in ["n".repeat(200), "honest\nINFO forged log line".to_string()] {
        let mut bad = Client::new(&c, &name, 4);
        let ch = bad.challenge().await;
        let req = bad.login_request(&ch, "0.1.0");
        let env = bad.send_login(&ch, &req).await;
        assert_eq!(env.errcode, errcode::INVALID_PARAMETER, "{}", env.errmsg);
        assert!(env.errmsg.contains("prover_name"), "{}", env.errmsg);
        bad.name = "fine".into();
    }
    // A 1 MiB failure message with terminal escapes is stored truncated and escaped.
    let mut a = Client::new(&c, "reporter", 5);
    a.login().await;
    let task = a.get_task().await.expect("a task");
    let msg = format!("\u{1b}[31mred\nforged{}", "y".repeat(1 << 20));
    let body = serde_json::json!({
        "uuid": task.uuid, "task_id": task.task_id, "task_type": task.task_type,
        "status": 1, "failure_type": 2, "failure_msg": msg,
    });
    let env = submit_json(&a, body).await;
    assert_eq!(env.errcode, 0, "{}", env.errmsg);
    let status = c.status().await.expect("status");
    let row = status
        .tasks
        .iter()
        .find(|t| t.task_id == task.task_id)
        .expect("task row");
    let stored = row.result.clone().unwrap_or_default();
    assert!(stored.len() < 5000, "stored {} bytes", stored.len());
    assert!(stored.contains("truncated from"), "{stored}");
    assert!(!stored.chars().any(char::is_control), "{stored:?}");
    assert!(stored.contains("\\u{1b}[31mred\\nforged"), "{stored}");
    c.shutdown().await;
}

#[tokio::test]
async fn admin_input_is_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let admin = cfg.admin_token.clone();
    let c = start(cfg).await;
    let a = Client::new(&c, "admin-client", 6);
    let env = a
        .post_raw(
            "/admin/v1/enqueue",
            Some(&admin),
            br#"{"random": 1000000000000}"#.to_vec(),
        )
        .await;
    assert_eq!(env.errcode, errcode::INVALID_PARAMETER, "{}", env.errmsg);
    assert!(env.errmsg.contains("at most 10000"), "{}", env.errmsg);
    // Blocking an upper-case (0x-prefixed) key blocks the prover that logs in with it.
    c.enqueue_random(2, 1).await.expect("enqueue");
    let mut p = Client::new(&c, "to-block", 7);
    let key = format!("0x{}", p.public_key().to_ascii_uppercase());
    let env = a
        .post_raw(
            "/admin/v1/block",
            Some(&admin),
            serde_json::to_vec(&serde_json::json!({"public_key": key})).unwrap(),
        )
        .await;
    assert_eq!(env.errcode, 0, "{}", env.errmsg);
    p.login().await;
    let env = p.get_task_env(&[1]).await;
    assert_eq!(env.errcode, errcode::GET_TASK_FAILURE, "{}", env.errmsg);
    let env = a
        .post_raw(
            "/admin/v1/block",
            Some(&admin),
            br#"{"public_key": "not a key"}"#.to_vec(),
        )
        .await;
    assert_eq!(env.errcode, errcode::INVALID_PARAMETER, "{}", env.errmsg);
    c.shutdown().await;
}

#[tokio::test]
async fn overflowing_versions_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start(config(dir.path())).await; // no minimum version
    let a = Client::new(&c, "overflow", 8);
    let ch = a.challenge().await;
    let req = a.login_request(&ch, "18446744073709551616.0.0");
    let env = a.send_login(&ch, &req).await;
    assert_eq!(env.errcode, errcode::INVALID_PARAMETER, "{}", env.errmsg);
    c.shutdown().await;
}

/// Reads from `s` until the server closes the connection; panics if it is still open after
/// `within`.
async fn closed_by_server(s: &mut TcpStream, within: Duration, what: &str) {
    let mut buf = [0u8; 4096];
    let r = tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        r.is_ok(),
        "{what}: the connection is still open after {within:?}"
    );
}

/// An HTTP client whose connections come from `ip` (a loopback address other than 127.0.0.1
/// stands for another client).
fn client_at(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(ip))
        .build()
        .expect("client")
}

/// `/health` through `http` answers errcode 0 within 10 s (`when` says under what).
async fn health_within(http: &reqwest::Client, base: &str, when: &str) {
    let health: serde_json::Value = tokio::time::timeout(Duration::from_secs(10), async {
        http.get(format!("{base}/health"))
            .send()
            .await
            .expect("health")
            .json()
            .await
            .expect("json")
    })
    .await
    .unwrap_or_else(|_| panic!("/health not answered within 10 s {when}"));
    assert_eq!(health["errcode"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_silent_and_idle_connections_are_closed_and_the_server_keeps_answering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.http.header_timeout_ms = 500;
    cfg.http.body_timeout_ms = 500;
    cfg.http.max_connections = 16;
    let c = start(cfg).await;
    let addr = c.addr();
    // More silent connections than the cap, and slowloris ones: half a request head each.
    let mut silent = Vec::new();
    for _ in 0..24 {
        silent.push(TcpStream::connect(addr).await.expect("connect"));
    }
    let mut slow = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .expect("write");
        slow.push(s);
    }
    // A real client still gets an answer: the silent connections holding the cap are closed by
    // the header timeout and the waiting ones are then served.
    let started = std::time::Instant::now();
    health_within(
        &reqwest::Client::new(),
        &c.base_url(),
        "with 32 hostile connections open",
    )
    .await;
    eprintln!(
        "/health answered after {:?} with 24 silent and 8 slow connections",
        started.elapsed()
    );
    for s in silent.iter_mut().chain(slow.iter_mut()) {
        closed_by_server(s, Duration::from_secs(5), "silent or slowloris").await;
    }
    // A kept-alive connection that goes idle after a request is closed too.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    closed_by_server(&mut idle, Duration::from_secs(5), "idle keep-alive").await;
    // A header trickled a byte at a time is cut off at the header timeout, not per byte.
    let mut trickle = TcpStream::connect(addr).await.expect("connect");
    trickle
        .write_all(b"GET /health HTTP/1.1\r\n")
        .await
        .expect("write");
    let cut = tokio::time::timeout(Duration::from_secs(5), async {
        let mut ticks = tokio::time::interval(Duration::from_millis(50));
        loop {
            ticks.tick().await;
            if trickle.write_all(b"X").await.is_err() {
                return;
            }
            let mut probe = [0u8; 1];
            if let Ok(Ok(0)) =
                tokio::time::timeout(Duration::from_millis(1), trickle.read(&mut probe)).await
            {
                return;
            }
        }
    })
    .await;
    assert!(
        cut.is_ok(),
        "a trickled header kept the connection open for 5 s"
    );
    // An authenticated body that stops arriving is refused after the body timeout.
    let mut a = Client::new(&c, "stalls", 9);
    a.login().await;
    let reply = post_partial(
        &c.base_url(),
        "/coordinator/v1/submit_proof",
        Some(&a.token),
        1000,
        10,
    )
    .await;
    assert_eq!(
        errcode_of(&reply),
        errcode::INVALID_PARAMETER as i64,
        "{reply}"
    );
    assert!(reply.contains("not received within 500 ms"), "{reply}");
    c.shutdown().await;
}

/// One address's idle connections cannot hold the server: past `http.max_connections_per_client`
/// its further connections are closed at once, and a client at another address is served
/// (before: 1,024 silent connections from one address held every slot for the header timeout,
/// again and again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_more_than_its_share_of_the_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    // Long enough that an idle connection still open at the checks below is held, not timed out.
    cfg.http.header_timeout_ms = 60_000;
    cfg.http.max_connections = 6;
    cfg.http.max_connections_per_client = 4;
    let c = start(cfg).await;
    let addr = c.addr();
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(addr).await.expect("connect"));
    }
    // The fifth from 127.0.0.1 is closed at once, not held for the minute of the header timeout.
    for _ in 0..3 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        closed_by_server(
            &mut s,
            Duration::from_secs(5),
            "a fifth connection of one address",
        )
        .await;
    }
    // Another address is served, over the slots the refused ones did not keep.
    health_within(
        &client_at([127, 0, 0, 2]),
        &c.base_url(),
        "from 127.0.0.2 while 127.0.0.1 holds its four connections",
    )
    .await;
    // The four held ones are still open (only the connections past the cap were closed).
    for s in &mut silent {
        let mut probe = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(50), s.read(&mut probe))
                .await
                .is_err(),
            "a connection within the cap was closed"
        );
    }
    c.shutdown().await;
}

/// Logins from one address past `logins_per_minute_per_client` are told to retry later (HTTP 503
/// with `Retry-After`, which stock clients and our node retry) before any signature check or
/// store write: the refused request, sent again from another address, logs in with the same
/// challenge (before: one address could log in back to back, a durable write each, slowing
/// every prover's requests; see `login_limit.rs`).
#[tokio::test]
async fn logins_from_one_address_are_limited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.logins_per_minute_per_client = 3;
    let c = start(cfg).await;
    let mut a = Client::new(&c, "flood", 31);
    for _ in 0..3 {
        a.login().await;
    }
    let ch = a.challenge().await;
    let req = a.login_request(&ch, "0.1.0");
    // `post_raw` checks that an errcode 500 comes as HTTP 503 with Retry-After.
    let env = a.send_login(&ch, &req).await;
    assert_eq!(env.errcode, errcode::INTERNAL, "{}", env.errmsg);
    assert!(
        env.errmsg
            .contains("too many logins from this address (3 a minute); retry in"),
        "{}",
        env.errmsg
    );
    let mut b = Client::new(&c, "elsewhere", 32);
    b.http = client_at([127, 0, 0, 2]);
    let env = b.send_login(&ch, &req).await;
    assert_eq!(
        env.errcode, 0,
        "the refused login's challenge was not used: {}",
        env.errmsg
    );
    let metrics = a.get_text("/metrics").await;
    assert!(
        metrics.contains("coordinator_logins_total{result=\"limited\"} 1"),
        "{metrics}"
    );
    c.shutdown().await;
}

#[tokio::test]
async fn fresh_keys_reporting_failures_cannot_fail_a_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let admin = cfg.admin_token.clone();
    let attempts = cfg.session_attempts;
    let c = start(cfg).await;
    c.enqueue_random(1, 3).await.expect("enqueue");
    // More throwaway keys than session_attempts each take the task and report failure.
    for i in 0..attempts + 2 {
        let mut k = Client::new(&c, &format!("throwaway-{i}"), 100 + i as u8);
        k.login().await;
        let task = k.get_task().await.expect("the task is handed out again");
        assert_eq!(task.task_id, "chunk-0");
        let body = serde_json::json!({
            "uuid": task.uuid, "task_id": task.task_id, "task_type": task.task_type,
            "status": 1, "failure_type": 1, "failure_msg": "gave up",
        });
        let env = submit_json(&k, body).await;
        assert_eq!(env.errcode, 0, "{}", env.errmsg);
        // It does not get the task back.
        let env = k.get_task_env(&[1]).await;
        assert_eq!(env.errcode, errcode::NO_TASK, "{}", env.errmsg);
    }
    let row = c
        .status()
        .await
        .expect("status")
        .task("chunk-0")
        .cloned()
        .expect("row");
    assert_eq!(
        (row.state, row.failures, row.unproven_failures),
        (coordinator::TaskState::Pending, 0, attempts + 2)
    );
    // requeue is for failed tasks only, and says so.
    let env = Client::new(&c, "admin", 99)
        .post_raw(
            "/admin/v1/requeue",
            Some(&admin),
            br#"{"task_id": "chunk-0"}"#.to_vec(),
        )
        .await;
    assert_eq!(env.errcode, errcode::INVALID_PARAMETER, "{}", env.errmsg);
    assert!(env.errmsg.contains("only a failed task"), "{}", env.errmsg);
    c.shutdown().await;
}

#[tokio::test]
async fn an_openvm_prover_type_3_takes_the_task_types_it_asks_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start(config(dir.path())).await;
    c.enqueue_random(2, 4).await.expect("enqueue");
    // Scroll's OpenVM prover declares prover type 3 and asks for task types [1, 2, 3].
    let mut openvm = Client::new(&c, "openvm", 20);
    openvm.types = vec![3];
    openvm.login().await;
    let env = openvm.get_task_env(&[1, 2, 3]).await;
    assert_eq!(
        env.errcode, 0,
        "a type-3 prover gets a chunk task: {}",
        env.errmsg
    );
    let task: prover_core::wire::Task =
        serde_json::from_value(env.data.expect("data")).expect("task");
    assert_eq!(task.task_type, 1);
    // Without any of this coordinator's vks it cannot log in: it could not prove our circuits.
    let mut stock = Client::new(&c, "stock-openvm", 21);
    stock.types = vec![3];
    stock.vks = vec!["c2Nyb2xsLWJ1bmRsZS12aw==".into()];
    let ch = stock.challenge().await;
    let env = stock
        .send_login(&ch, &stock.login_request(&ch, "v4.5.0"))
        .await;
    assert_eq!(env.errcode, errcode::INVALID_PARAMETER, "{}", env.errmsg);
    assert!(
        env.errmsg
            .contains("prover type 3 (OpenVM) must present the vk"),
        "{}",
        env.errmsg
    );
    c.shutdown().await;
}

/// Sends the head of a POST declaring `declared` body bytes with `Expect: 100-continue`, and
/// returns the open connection once the server has said to go on: its handler has started to
/// read the body (and so holds whatever it takes before reading). No body byte is sent.
async fn open_upload(base: &str, path: &str, bearer: &str, declared: u64) -> TcpStream {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {bearer}\r\nContent-Length: {declared}\r\n\
         Expect: 100-continue\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("write head");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the server's answer to the upload's head");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 100"), "{text}");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_submission_needs_a_live_assignment_and_fits_one_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.max_body_bytes = 1 << 20;
    cfg.large_body_budget_bytes = 3 << 19; // 1.5 MiB: one large body at a time
    let c = start(cfg).await;
    let base = c.base_url();
    let path = "/coordinator/v1/submit_proof";
    c.enqueue_random(4, 7).await.expect("enqueue");
    let mut idle = Client::new(&c, "idle", 3);
    let mut a = Client::new(&c, "alice", 1);
    let mut b = Client::new(&c, "bob", 2);
    for p in [&mut idle, &mut a, &mut b] {
        p.login().await;
    }
    let ta = a.get_task().await.expect("task for alice");
    let tb = b.get_task().await.expect("task for bob");

    // A key without a live assignment: refused from its Content-Length, nothing read.
    let reply = post_partial(&base, path, Some(&idle.token), 1 << 20, 10).await;
    assert_eq!(
        errcode_of(&reply),
        errcode::INVALID_PARAMETER as i64,
        "{reply}"
    );
    assert!(reply.contains("holds no live assignment"), "{reply}");

    // Alice's large upload in progress: her second one, and Bob's, are told to retry later.
    let upload = open_upload(&base, path, &a.token, 1 << 20).await;
    let busy = |reply: String, why: &str| {
        assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
        assert!(reply.contains(why), "{reply}");
    };
    let reply = post_partial(&base, path, Some(&a.token), 1 << 20, 10).await;
    busy(reply, "sending another large submission");
    let reply = post_partial(&base, path, Some(&b.token), 1 << 20, 10).await;
    busy(reply, "as many large submissions as it may");
    // A small submission of Bob's is read: his failure report is recorded.
    let env = b.report_failure(&tb).await;
    assert_eq!(env.errcode, errcode::SUCCESS, "{}", env.errmsg);

    // Alice's connection drops: her leave and the budget come back.
    drop(upload);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let body = serde_json::json!({
        "uuid": ta.uuid, "task_id": ta.task_id, "task_type": ta.task_type, "status": 0,
        "proof": "x".repeat(200 << 10),
    });
    loop {
        let env = submit_json(&a, body.clone()).await;
        if env.errcode != errcode::INTERNAL {
            // Read whole and judged: not a proof.
            assert_eq!(env.errcode, errcode::PROOF_FAILURE, "{}", env.errmsg);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", env.errmsg);
        tokio::time::sleep(Duration::from_millis(20)).await; // pacing, not ordering
    }
    // Identifiers are bounded.
    let env = submit_json(
        &a,
        serde_json::json!({"uuid": "u".repeat(300), "task_id": "t", "task_type": 1, "status": 1}),
    )
    .await;
    assert_eq!(env.errcode, errcode::INVALID_PARAMETER, "{}", env.errmsg);
    assert!(env.errmsg.contains("at most 256 bytes"), "{}", env.errmsg);
    c.shutdown().await;
}
