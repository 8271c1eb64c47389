//! `prover run` as a process: real keygen for a small chunk circuit, login of every worker against
//! the recording fake coordinator, SIGTERM → graceful stop with exit status 0; configuration
//! errors are reported before anything starts.

use crate::fake;

use fake::Fake;
use std::process::{Command, Stdio};

fn write_config(dir: &std::path::Path, base_url: &str) -> std::path::PathBuf {
    let params = dir.join("params");
    params::ensure_dev(&params, 13, false).expect("dev params");
    let config = serde_json::json!({
        "prover": {"params_dir": params, "keys_dir": dir.join("keys")},
        "node": {
            "name": "cli", "n_workers": 1, "identity_dir": dir.join("identity"),
            "db_path": dir.join("stack.redb"), "task_types": [1], "max_attempts": 3,
            "drain_timeout_sec": 5, "backend": "cpu", "engine": "reference", "provider_type": 1
        },
        "circuits": {"chunk_k": 13, "chunk_tree_depth": 4, "chunk_max_txs": 2, "batch_k": 20, "batch_num_chunks": 2},
        "coordinator": {
            "base_url": base_url, "poll_interval_ms": 50, "poll_jitter_ms": 10,
            "request_timeout_sec": 5, "retry_initial_ms": 10, "retry_max_ms": 100,
            "prover_version": "v9.9.9"
        },
        "metrics": {"listen": "127.0.0.1:0"}
    });
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_logs_in_every_worker_and_stops_with_status_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = Fake::start().await;
    let config = write_config(dir.path(), &fake.base_url());
    let child = Command::new(env!("CARGO_BIN_EXE_prover"))
        .args(["run", "--config"])
        .arg(&config)
        .env("PROVER_NODE_N_WORKERS", "2")
        // A cache reserve larger than any disk: the node says so at start, and its keys are
        // used from memory rather than written.
        .env("PROVER_KEYS_DISK_RESERVE_MIB", (u64::MAX >> 20).to_string())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let a = fake.next("login").await;
    let b = fake.next("login").await;
    assert_eq!(a.answered, 0);
    assert_eq!(b.answered, 0);
    assert_ne!(a.body["public_key"], b.body["public_key"]);
    assert_eq!(a.body["message"]["prover_version"], "v9.9.9");
    assert_eq!(a.body["message"]["prover_types"], serde_json::json!([1]));
    let vks = a.body["message"]["vks"].as_array().unwrap().clone();
    assert_eq!(vks.len(), 1);
    assert!(!vks[0].as_str().unwrap().is_empty());
    fake.next("get_task").await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exit {:?}\n{stderr}", out.status);
    assert!(stdout.contains("stopped: pulled 0"), "{stdout}");
    assert!(stderr.contains("health and metrics listening"), "{stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    for dir in ["keys_dir", "task_stack"] {
        let warning = stderr
            .lines()
            .find(|l| l.contains("disk: less free than") && l.contains(&format!("dir=\"{dir}\"")));
        assert!(warning.is_some(), "no disk warning for {dir}:\n{stderr}");
    }
    assert!(
        stderr.contains("proving key not cached on disk"),
        "{stderr}"
    );
    let keys = std::fs::read_dir(dir.path().join("keys")).map_or(0, |e| e.count());
    assert_eq!(keys, 0, "key cache files written under the reserve");
    // The keys were created with mode 0600.
    use std::os::unix::fs::PermissionsExt;
    for i in 0..2 {
        let meta = std::fs::metadata(dir.path().join(format!("identity/worker-{i}.key"))).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
}

#[test]
fn configuration_errors_stop_run_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "http://127.0.0.1:1");
    let no_driver = matches!(gpu::cuda_driver_probe(), gpu::DriverProbe::NotFound { .. });
    let mut cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("PROVER_NODE_WORKERS", "2")],
            "names no configuration key",
        ),
        (vec![("PROVER_NODE_N_WORKERS", "0")], "node.n_workers"),
        (
            vec![("PROVER_NODE_ENGINE", "bogus")],
            "environment variable PROVER_NODE_ENGINE: \"bogus\"",
        ),
        (
            vec![("PROVER_NODE_SEED", "x")],
            "expected an unsigned integer or null",
        ),
        (
            vec![("PROVER_NODE_BACKEND", "cuda")],
            "cuda needs node.engine native",
        ),
    ];
    if no_driver {
        cases.push((
            vec![
                ("PROVER_NODE_ENGINE", "native"),
                ("PROVER_NODE_BACKEND", "cuda"),
            ],
            "compute backend cuda: backend unavailable: CUDA driver library libcuda.so.1 not found",
        ));
    }
    for (vars, needle) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_prover"))
            .args(["run", "--config"])
            .arg(&config)
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{vars:?}");
        assert!(stderr.contains(needle), "{vars:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // The flags of `prover run` override the file and are checked the same way.
    let out = Command::new(env!("CARGO_BIN_EXE_prover"))
        .args(["run", "--engine", "fast", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("invalid value 'fast' for '--engine"),
        "{stderr}"
    );
    if no_driver {
        let out = Command::new(env!("CARGO_BIN_EXE_prover"))
            .args(["run", "--engine", "native", "--backend", "cuda", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains("libcuda.so.1 not found"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert!(!dir.path().join("stack.redb").exists());
}
