//! The `prover` binary as an operator uses it: params, tasks, prove, verify, and clear errors.

use std::path::Path;
use std::process::{Command, Output};

fn prover(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prover"))
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run prover")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !err.contains("panicked"),
        "panic instead of an error: {err}"
    );
    err
}

#[test]
fn params_gen_verify_downsize_and_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let err = fails(&prover(
        d,
        &["params", "gen", "--k", "10", "--out", "p10.srs"],
    ));
    assert!(err.contains("--dev"), "{err}");
    ok(&prover(
        d,
        &["params", "gen", "--k", "12", "--dev", "--out", "p12.srs"],
    ));
    let out = ok(&prover(d, &["params", "verify", "p12.srs"]));
    assert!(
        out.contains("k=12") && out.contains("sha256") && out.contains("INSECURE"),
        "{out}"
    );
    ok(&prover(
        d,
        &[
            "params", "downsize", "--from", "p12.srs", "--k", "10", "--out", "p10.srs",
        ],
    ));
    let out = ok(&prover(d, &["params", "verify", "p10.srs"]));
    assert!(out.contains("k=10"), "{out}");
    fails(&prover(
        d,
        &[
            "params", "downsize", "--from", "p10.srs", "--k", "12", "--out", "x.srs",
        ],
    ));

    let bytes = std::fs::read(d.join("p12.srs")).unwrap();
    std::fs::write(d.join("trunc.srs"), &bytes[..bytes.len() / 2]).unwrap();
    let err = fails(&prover(d, &["params", "verify", "trunc.srs"]));
    assert!(err.contains("NOT a valid SRS"), "{err}");
    let mut flipped = bytes.clone();
    flipped[4 + 64 * 5 + 10] ^= 0xff;
    std::fs::write(d.join("flip.srs"), &flipped).unwrap();
    let err = fails(&prover(d, &["params", "verify", "flip.srs"]));
    assert!(err.contains("NOT a valid SRS"), "{err}");
    let err = fails(&prover(d, &["params", "verify", "missing.srs"]));
    assert!(err.contains("missing.srs"), "{err}");
}

#[test]
fn prove_and_verify_a_sample_chunk_and_reject_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&prover(
        d,
        &[
            "params",
            "gen",
            "--k",
            "13",
            "--dev",
            "--out",
            "data/params/kzg_bn254_13.srs",
        ],
    ));
    let shape = ["--chunk-k", "13", "--tree-depth", "4", "--max-txs", "2"];
    let mut args = vec![
        "task",
        "chunks",
        "--chunks",
        "2",
        "--txs",
        "2",
        "--out-dir",
        "tasks",
    ];
    args.extend(shape);
    ok(&prover(d, &args));
    let out = ok(&prover(
        d,
        &[
            "prove",
            "--task",
            "tasks/chunk-0.json",
            "--out",
            "proof.json",
        ],
    ));
    assert!(out.contains("proved chunk task"), "{out}");
    let out = ok(&prover(
        d,
        &[
            "verify",
            "--proof",
            "proof.json",
            "--task",
            "tasks/chunk-0.json",
        ],
    ));
    assert!(out.contains("VALID"), "{out}");

    // A keys directory whose disk cannot keep the reserve: the proof is made from memory, each
    // cache says once why it was not written, and nothing is left there.
    let out = prover(
        d,
        &[
            "prove",
            "--task",
            "tasks/chunk-0.json",
            "--out",
            "proof-short.json",
            "--keys-dir",
            "short-keys",
            "--keys-disk-reserve-mib",
            &(u64::MAX >> 20).to_string(),
        ],
    );
    assert!(ok(&out).contains("proved chunk task"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("proving key not cached on disk").count(),
        1,
        "{err}"
    );
    assert_eq!(err.matches("coset cache not written").count(), 1, "{err}");
    assert!(err.contains("keys_disk_reserve_mib"), "{err}");
    let left = std::fs::read_dir(d.join("short-keys")).map_or(0, |entries| entries.count());
    assert_eq!(left, 0);
    let out = ok(&prover(
        d,
        &[
            "verify",
            "--proof",
            "proof-short.json",
            "--task",
            "tasks/chunk-0.json",
        ],
    ));
    assert!(out.contains("VALID"), "{out}");

    // The proof of chunk 0 is not a proof of chunk 1.
    let err = fails(&prover(
        d,
        &[
            "verify",
            "--proof",
            "proof.json",
            "--task",
            "tasks/chunk-1.json",
        ],
    ));
    assert!(err.contains("different statement"), "{err}");

    // Flip one bit of the proof bytes inside the JSON.
    let mut proof: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("proof.json")).unwrap()).unwrap();
    let b64 = proof["proof"].as_str().unwrap().to_string();
    let mut raw = base64_decode(&b64);
    raw[100] ^= 1;
    proof["proof"] = serde_json::Value::String(base64_encode(&raw));
    std::fs::write(d.join("bad.json"), proof.to_string()).unwrap();
    let err = fails(&prover(d, &["verify", "--proof", "bad.json"]));
    assert!(err.contains("INVALID"), "{err}");

    // The proof claiming a circuit configuration with no cached keys: refused quickly, without
    // generating keys (before, `verify` generated and stored keys for whatever `spec` said).
    let keys_before = listing(&d.join("data/keys"));
    // One entry: its metadata, its key and the native engine's coset file.
    assert_eq!(keys_before.len(), 3, "{keys_before:?}");
    let mut other: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("proof.json")).unwrap()).unwrap();
    other["spec"]["config"]["tree_depth"] = 5.into();
    std::fs::write(d.join("other.json"), other.to_string()).unwrap();
    let started = std::time::Instant::now();
    let err = fails(&prover(d, &["verify", "--proof", "other.json"]));
    eprintln!("unknown circuit refused in {:?}", started.elapsed());
    assert!(
        err.contains("cannot verify the proof")
            && !err.contains("INVALID")
            && err.contains(r#""tree_depth":5"#)
            && err.contains("--allow-keygen"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(
        listing(&d.join("data/keys")),
        keys_before,
        "no keys written"
    );
    // Absurd parameters: refused before any lookup.
    other["spec"]["config"]["k"] = 99.into();
    std::fs::write(d.join("absurd.json"), other.to_string()).unwrap();
    let err = fails(&prover(d, &["verify", "--proof", "absurd.json"]));
    assert!(err.contains("k 99 is outside"), "{err}");
    assert_eq!(
        listing(&d.join("data/keys")),
        keys_before,
        "no keys written"
    );
    // `--allow-keygen`: the operator trusts the configuration; its keys are made, and the proof,
    // made for another circuit, is then invalid for it.
    let err = fails(&prover(
        d,
        &["verify", "--proof", "other.json", "--allow-keygen"],
    ));
    assert!(
        err.contains("INVALID") && err.contains("verifying key"),
        "{err}"
    );
    // The trusted entry's metadata and key (verification makes no coset file).
    assert_eq!(listing(&d.join("data/keys")).len(), 5, "the trusted entry");

    // The committed sample task (same circuit configuration) stays provable.
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/chunk-k13.task.json");
    std::fs::copy(sample, d.join("sample.json")).unwrap();
    ok(&prover(
        d,
        &[
            "prove",
            "--task",
            "sample.json",
            "--out",
            "sample.proof.json",
        ],
    ));
    let out = ok(&prover(
        d,
        &[
            "verify",
            "--proof",
            "sample.proof.json",
            "--task",
            "sample.json",
        ],
    ));
    assert!(out.contains("VALID"), "{out}");

    std::fs::write(d.join("garbage.json"), "{not json").unwrap();
    let err = fails(&prover(d, &["verify", "--proof", "garbage.json"]));
    assert!(err.contains("malformed proof JSON"), "{err}");
}

#[test]
fn malformed_and_unknown_tasks_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("bad.json"), "{\"uuid\": 1").unwrap();
    let err = fails(&prover(
        d,
        &["prove", "--task", "bad.json", "--out", "p.json"],
    ));
    assert!(err.contains("malformed task JSON"), "{err}");
    let task =
        r#"{"uuid":"u","task_id":"t","task_type":7,"task_data":"{}","hard_fork_name":"pnode-v1"}"#;
    std::fs::write(d.join("t7.json"), task).unwrap();
    let err = fails(&prover(
        d,
        &["prove", "--task", "t7.json", "--out", "p.json"],
    ));
    assert!(err.contains("unknown task type 7"), "{err}");
    let err = fails(&prover(
        d,
        &["prove", "--task", "nope.json", "--out", "p.json"],
    ));
    assert!(err.contains("nope.json"), "{err}");
}

#[test]
fn engine_backend_and_seed_flags() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&prover(
        d,
        &[
            "params",
            "gen",
            "--k",
            "13",
            "--dev",
            "--out",
            "data/params/kzg_bn254_13.srs",
        ],
    ));
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/chunk-k13.task.json");
    std::fs::copy(sample, d.join("task.json")).unwrap();
    let native = |out: &str, seed: &str| {
        ok(&prover(
            d,
            &[
                "prove",
                "--task",
                "task.json",
                "--out",
                out,
                "--engine",
                "native",
                "--backend",
                "cpu",
                "--seed",
                seed,
            ],
        ))
    };
    let out = native("a.json", "7");
    assert!(out.contains("with engine native on backend cpu"), "{out}");
    native("b.json", "7");
    native("c.json", "8");
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join(name)).unwrap()).unwrap()
    };
    let (a, b, c) = (read("a.json"), read("b.json"), read("c.json"));
    assert_eq!(a["meta"]["engine"], "native");
    assert_eq!(a["meta"]["backend"], "cpu");
    assert_eq!(
        a["proof"], b["proof"],
        "--seed 7 twice: identical proof bytes"
    );
    assert_ne!(a["proof"], c["proof"], "another seed, another proof");
    let out = ok(&prover(
        d,
        &["verify", "--proof", "a.json", "--task", "task.json"],
    ));
    assert!(out.contains("VALID"), "{out}");

    // The reference engine, for cross-checks; its proof verifies the same way.
    ok(&prover(
        d,
        &[
            "prove",
            "--task",
            "task.json",
            "--out",
            "r.json",
            "--engine",
            "reference",
        ],
    ));
    assert_eq!(read("r.json")["meta"]["engine"], "reference");
    assert_eq!(read("r.json")["meta"]["backend"], "cpu");
    ok(&prover(
        d,
        &["verify", "--proof", "r.json", "--task", "task.json"],
    ));

    // Bad values are clear errors, before anything is proved.
    let prove_with = |extra: &[&str]| {
        let mut args = vec!["prove", "--task", "task.json", "--out", "x.json"];
        args.extend(extra);
        fails(&prover(d, &args))
    };
    let err = prove_with(&["--engine", "bogus"]);
    assert!(err.contains("invalid value 'bogus' for '--engine"), "{err}");
    assert!(err.contains("reference, native"), "{err}");
    let err = prove_with(&["--backend", "opencl"]);
    assert!(
        err.contains("invalid value 'opencl' for '--backend"),
        "{err}"
    );
    assert!(err.contains("auto, cpu, cuda"), "{err}");
    let err = prove_with(&["--seed", "seven"]);
    assert!(err.contains("invalid value 'seven' for '--seed"), "{err}");
    let err = prove_with(&["--engine", "reference", "--backend", "cuda"]);
    assert!(
        err.contains("--backend cuda needs --engine native"),
        "{err}"
    );
    assert!(!d.join("x.json").exists());
}

/// File names and sizes in `dir` (empty if it does not exist).
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| {
                    let e = e.unwrap();
                    let name = e.file_name().to_string_lossy().into_owned();
                    (name, e.metadata().unwrap().len())
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Each cause is said once, with what to do: `prove` without parameters used to print
/// "list directory data/params: No such file or directory" three times.
#[test]
fn an_error_is_said_once_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&prover(
        d,
        &[
            "task",
            "chunks",
            "--chunks",
            "1",
            "--txs",
            "2",
            "--chunk-k",
            "13",
            "--tree-depth",
            "4",
            "--max-txs",
            "2",
            "--out-dir",
            "t",
        ],
    ));
    let err = fails(&prover(
        d,
        &["prove", "--task", "t/chunk-0.json", "--out", "p.json"],
    ));
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(err.contains("data/params"), "{err}");
    assert!(
        err.contains("prover params gen") && err.contains("prover demo"),
        "{err}"
    );
}

/// A CPU without the instructions of the build's field arithmetic (x86-64: BMI2 and ADX) is
/// refused at start with one line naming what it lacks, not stopped by SIGILL mid-work. The CPU
/// here is valgrind's: version 3.19 reports no ADX to the program it runs. Where valgrind is
/// missing, or reports ADX, there is nothing to refuse.
#[test]
fn a_cpu_without_the_field_arithmetics_instructions_is_refused_at_start() {
    let have_valgrind = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !cfg!(target_arch = "x86_64") || !have_valgrind {
        eprintln!("no valgrind on x86-64 here: nothing to check");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("valgrind")
        .args(["-q", env!("CARGO_BIN_EXE_prover")])
        .args(["params", "gen", "--dev", "--k", "4", "--out", "p.srs"])
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .env_remove(gpu::SKIP_CPU_CHECK_VAR)
        .output()
        .expect("run valgrind");
    if out.status.success() {
        eprintln!("this valgrind reports ADX: nothing to refuse");
        return;
    }
    let err = fails(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with("error: this build's BN254 field arithmetic uses the x86-64 instruction sets bmi2 and adx")
            && err.trim_end().ends_with("this CPU lacks adx"),
        "{err}"
    );
    assert!(!dir.path().join("p.srs").exists());
}
