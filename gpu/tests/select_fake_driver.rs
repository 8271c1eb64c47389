//! Backend selection when the driver probe finds a `libcuda.so.1` that cannot actually be used
//! (here: an empty shared library planted in a directory on `$LD_LIBRARY_PATH`, which the probe
//! reads at call time while the dynamic loader does not). Loading it fails (cudarc's loader would
//! panic; the backend checks first) and must come back as an error: `Auto` falls back to the CPU
//! with the reason, `Cuda` is an error. The only test in this binary, because it changes the environment.
//! Skipped (with a message) where no C compiler is available or a real driver is installed.

use std::process::Command;

use gpu::{cuda_driver_probe, select, BackendChoice, BackendError, BackendName, DriverProbe};

#[test]
fn unusable_driver_falls_back_without_panicking() {
    if let DriverProbe::Found(path) = cuda_driver_probe() {
        eprintln!("a driver is installed at {}; test SKIPPED", path.display());
        return;
    }
    let dir = std::env::temp_dir().join(format!("pnode-fake-cuda-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let src = dir.join("empty.c");
    std::fs::write(&src, "int pnode_fake_cuda_marker;\n").expect("write source");
    let lib = dir.join("libcuda.so.1");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    match Command::new(&cc)
        .arg("-shared")
        .arg("-fPIC")
        .arg("-o")
        .arg(&lib)
        .arg(&src)
        .status()
    {
        Ok(s) if s.success() => {}
        other => {
            eprintln!("cannot build a fake libcuda with {cc} ({other:?}); test SKIPPED");
            return;
        }
    }
    let old = std::env::var_os("LD_LIBRARY_PATH").unwrap_or_default();
    let mut paths = vec![dir.clone()];
    paths.extend(std::env::split_paths(&old));
    std::env::set_var(
        "LD_LIBRARY_PATH",
        std::env::join_paths(paths).expect("join"),
    );

    assert_eq!(cuda_driver_probe(), DriverProbe::Found(lib.clone()));
    let auto = select(BackendChoice::Auto).expect("auto never fails");
    assert_eq!(auto.backend.name(), BackendName::Cpu);
    let reason = auto.fallback_reason.expect("fallback reason");
    assert!(reason.contains("cannot be loaded"), "{reason}");
    let err = select(BackendChoice::Cuda).expect_err("cuda must fail");
    assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");

    std::env::set_var("LD_LIBRARY_PATH", old);
    std::fs::remove_dir_all(&dir).expect("clean up");
}
