//! The `coordinator` binary: admin subcommands against a running coordinator, and `serve` with a
//! config file, stopped by SIGTERM.

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{config, spawn_serve, start};
use coordinator::{StatusReport, TaskState};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_coordinator"))
}

async fn run(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || bin().args(&args).output().expect("run coordinator"))
        .await
        .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_subcommands_talk_to_a_running_coordinator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start(config(dir.path())).await;
    let url = c.base_url();
    let token = c.config().admin_token.clone();
    let admin = |cmd: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        v.extend([
            "--url".into(),
            url.clone(),
            "--admin-token".into(),
            token.clone(),
        ]);
        v
    };

    let file = dir.path().join("transfers.json");
    std::fs::write(&file, r#"[{"from": 5, "to": 6, "amount": 10, "nonce": 0}]"#).expect("write");
    let out = run(admin(&[
        "enqueue",
        "--transfers",
        file.to_str().expect("utf8"),
    ]))
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "chunk-0\n");

    let out = run(admin(&["enqueue", "--random", "3", "--seed", "5"])).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "chunk-1\nchunk-2\n");

    let out = run(admin(&["status", "--json"])).await;
    assert!(out.status.success());
    let report: StatusReport = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(report.count("chunk", TaskState::Pending), 3);

    let out = run(admin(&["status"])).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("pending") && table.contains("chunk-2"),
        "{table}"
    );

    let out = run(admin(&["block", "02abcdef"])).await;
    assert!(out.status.success());
    assert_eq!(
        c.status().await.expect("status").blocked,
        vec!["02abcdef".to_string()]
    );
    let out = run(admin(&["unblock", "02abcdef"])).await;
    assert!(out.status.success());
    assert!(c.status().await.expect("status").blocked.is_empty());

    // requeue: only a failed task (the store tests requeue a failed one).
    let out = run(admin(&["requeue", "chunk-1"])).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("task chunk-1 is pending; only a failed task can be requeued"),
        "{err}"
    );

    // prune: nothing is finished, so nothing goes (the store tests prune finished tasks).
    let out = run(admin(&["prune", "--older-than-hours", "0"])).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "pruned 0 task(s) (none), 0 proof(s), 0 assignment(s)\n"
    );
    assert_eq!(
        c.status()
            .await
            .expect("status")
            .count("chunk", TaskState::Pending),
        3
    );

    // A wrong admin token: a one-line error and a non-zero exit.
    let out = run(vec![
        "status".into(),
        "--url".into(),
        url.clone(),
        "--admin-token".into(),
        "wrong".into(),
    ])
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("errcode 50000"), "{err}");
    c.shutdown().await;
}

fn signal(child: &std::process::Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Waits for the child to exit; panics after `limit`.
fn exit_within(
    child: &mut std::process::Child,
    limit: Duration,
    what: &str,
) -> (std::process::ExitStatus, Duration) {
    let started = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return (s, started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An admin request whose body never completes: a request in flight for as long as it is open.
fn half_sent_request(url: &str, admin_token: &str) -> std::net::TcpStream {
    use std::io::Write;
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "POST /admin/v1/enqueue HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {admin_token}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"random\""
    )
    .expect("write");
    s
}

#[test]
fn serve_runs_from_a_config_file_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    // Long client timeouts: only the shutdown grace can end the request in flight below.
    cfg.http.header_timeout_ms = 120_000;
    cfg.http.body_timeout_ms = 120_000;
    cfg.http.shutdown_grace_ms = 1_000;
    let (mut child, url, _lines) = spawn_serve(dir.path(), "coordinator.json", &cfg);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let health: serde_json::Value = rt.block_on(async {
        reqwest::get(format!("{url}/health"))
            .await
            .expect("health")
            .json()
            .await
            .expect("json")
    });
    assert_eq!(health["errcode"], 0);
    let _open = half_sent_request(&url, &cfg.admin_token);
    signal(&child, "TERM");
    // Before the deadline, a request in flight kept the process alive for ever.
    let (exit, took) = exit_within(&mut child, Duration::from_secs(20), "serve after SIGTERM");
    assert!(exit.success(), "serve exited with {exit}");
    eprintln!("stopped {took:?} after SIGTERM with a request in flight (grace 1 s)");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // The store was released: it opens again.
    coordinator::store::Store::from_config(&cfg).expect("store reopens");
}

#[test]
fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.http.header_timeout_ms = 120_000;
    cfg.http.body_timeout_ms = 120_000;
    cfg.http.shutdown_grace_ms = 120_000;
    let (mut child, url, mut lines) = spawn_serve(dir.path(), "coordinator.json", &cfg);
    let _open = half_sent_request(&url, &cfg.admin_token);
    signal(&child, "TERM");
    // Wait until the first signal was handled, then send the second.
    loop {
        let line = lines
            .next()
            .expect("serve announced the shutdown")
            .expect("read");
        if line.contains("shutting down") {
            break;
        }
    }
    signal(&child, "INT");
    let (exit, took) = exit_within(
        &mut child,
        Duration::from_secs(10),
        "serve after a second signal",
    );
    assert_eq!(exit.code(), Some(130), "{exit}");
    eprintln!("exited {took:?} after the second signal");
    // Nothing was left half-written: the store opens.
    coordinator::store::Store::from_config(&cfg).expect("store reopens");
}
