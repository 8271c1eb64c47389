//! Builds the C host in `examples/c` with gcc against the freshly built `libprover_ffi.so` and runs
//! it: every export's lifecycle and error paths. When valgrind is installed the host also runs
//! under `valgrind --leak-check=full`, which must report no error and no definite or possible leak,
//! and once more without skipping the CPU check, which valgrind's CPU (no ADX) fails in
//! `prover_init`.

use std::path::Path;
use std::process::Command;

mod common;

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn c_host_runs_clean() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = common::lib_dir();
    let work = tempfile::tempdir().unwrap();
    let exe = work.path().join("prover-c-host");
    let out = Command::new("gcc")
        .args(["-Wall", "-Wextra", "-Werror", "-std=c11", "-I"])
        .arg(crate_dir.join("include"))
        .arg(crate_dir.join("examples/c/host.c"))
        .arg(format!("-L{}", lib.display()))
        .arg("-lprover_ffi")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("running gcc");
    assert!(
        out.status.success(),
        "gcc failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let params = tempfile::tempdir().unwrap(); // init needs the directory; nothing is proved
    let keys = tempfile::tempdir().unwrap();
    let task = crate_dir.join("../tests/data/chunk-k13.task.json");
    let args = [params.path(), keys.path(), task.as_path()];

    let out = Command::new(&exe).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "C host failed");
    assert!(stdout.contains("c host: all checks passed"));

    // The same host linked against the static library.
    let static_exe = work.path().join("prover-c-host-static");
    let out = Command::new("gcc")
        .args(["-Wall", "-Wextra", "-Werror", "-std=c11", "-I"])
        .arg(crate_dir.join("include"))
        .arg(crate_dir.join("examples/c/host.c"))
        .arg(lib.join("libprover_ffi.a"))
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&static_exe)
        .output()
        .expect("running gcc");
    assert!(
        out.status.success(),
        "gcc (static) failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&static_exe).args(args).output().unwrap();
    assert!(out.status.success(), "statically linked C host failed");
    assert!(String::from_utf8_lossy(&out.stdout).contains("c host: all checks passed"));

    if !have("valgrind") {
        eprintln!("valgrind is not installed: skipping the memcheck run");
        return;
    }
    // Valgrind 3.19's CPU reports no ADX (it runs the instructions all the same), so the
    // library's CPU check would refuse `prover_init` under it: skipped for memcheck
    // (`gpu::check_host_cpu`).
    let started = std::time::Instant::now();
    let out = Command::new("valgrind")
        .args(["--leak-check=full", "--error-exitcode=99"])
        .arg(&exe)
        .args(args)
        .env(gpu::SKIP_CPU_CHECK_VAR, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = String::from_utf8_lossy(&out.stderr);
    eprintln!("valgrind ({:?}):\n{report}", started.elapsed());
    assert!(out.status.success(), "C host failed under valgrind");
    assert!(stdout.contains("c host: all checks passed"));
    assert!(
        report.contains("ERROR SUMMARY: 0 errors"),
        "valgrind found errors"
    );
    assert!(
        report.contains("definitely lost: 0 bytes") || report.contains("no leaks are possible"),
        "valgrind found a leak"
    );
    assert!(!report.contains("possibly lost: ") || report.contains("possibly lost: 0 bytes"));

    // Without the skip, valgrind's CPU is one without ADX as far as the library can tell:
    // `prover_init` refuses it (PROVER_STATUS_SETUP, the message naming what is missing) instead
    // of stopping the host at its first field multiplication. A valgrind that runs ADX passes
    // every check as above.
    let out = Command::new("valgrind")
        .arg("-q")
        .arg(&exe)
        .args(args)
        .env_remove(gpu::SKIP_CPU_CHECK_VAR)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.contains("c host: all checks passed") {
        assert!(
            stdout.contains(
                "FAIL init: code 8, expected 0, last error \"this build's BN254 field arithmetic \
                 uses the x86-64 instruction sets bmi2 and adx"
            ) && stdout.contains("this CPU lacks adx\""),
            "{stdout}"
        );
    }
}
