//! Builds the cgo host in `examples/go` against the freshly built `libprover_ffi.so` and runs it:
//! init, a chunk proof, its verification, the error paths and two proofs from two goroutines.
//!
//! Needs a Go toolchain (`scripts/ensure-go` installs Debian's `golang-go`). The build is offline
//! (the host uses the standard library only) and caches under `target/go-cache`.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

fn go() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("go"))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| Some(PathBuf::from("/usr/lib/go/bin/go")).filter(|p| p.is_file()))
        .expect("no Go toolchain: run scripts/ensure-go (installs the golang-go package)")
}

#[test]
fn go_host_builds_and_runs() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = common::lib_dir();
    let release = common::release_dir();
    let work = tempfile::tempdir().unwrap();
    let exe = work.path().join("prover-host");

    let started = std::time::Instant::now();
    let out = Command::new(go())
        .args(["build", "-o"])
        .arg(&exe)
        .arg(".")
        .current_dir(crate_dir.join("examples/go"))
        .env("CGO_ENABLED", "1")
        .env(
            "CGO_CFLAGS",
            format!("-I{}", crate_dir.join("include").display()),
        )
        .env(
            "CGO_LDFLAGS",
            format!("-L{0} -lprover_ffi -Wl,-rpath,{0}", lib.display()),
        )
        .env("GOCACHE", release.join("go-cache"))
        .env("GOPATH", release.join("go-path"))
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("GO111MODULE", "on")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "go build failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("go build: {:?}", started.elapsed());

    let params = tempfile::tempdir().unwrap();
    params::ensure_dev(params.path(), 13, false).unwrap();
    let keys = tempfile::tempdir().unwrap();
    let task = crate_dir.join("../tests/data/chunk-k13.task.json");

    let started = std::time::Instant::now();
    let out = Command::new(&exe)
        .arg(params.path())
        .arg(keys.path())
        .arg(&task)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("go host ({:?}):\n{stdout}{stderr}", started.elapsed());
    assert!(out.status.success(), "go host failed");
    for line in [
        "version: ",
        "init error (expected): prover status 6: invalid config: params_dir",
        "init: ok",
        "prove: ok",
        "verify: valid",
        "malformed task (expected): code=3 last_error=\"malformed task JSON",
        "unknown task type (expected): code=4 last_error=\"unknown task type 9",
        "tampered proof (expected): valid=false reason=\"proof is invalid",
        "concurrent: 2 proofs from 2 goroutines, both valid",
        "go host: all checks passed",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in the output");
    }
}
