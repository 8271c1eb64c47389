//! The CUDA backend's own run-time compile path (its NVRTC binding and the on-disk CUBIN cache),
//! without a GPU: `gpu::cuda::precompile` for sm_90 into a fresh directory, a second call served
//! from the cache, and a compile error carrying the NVRTC log and options.
//!
//! NVRTC is found as the backend finds it (`GPU_NVRTC_LIB`, the system, or the repository's
//! `.tools/nvrtc` wheel from `scripts/ensure-nvrtc`). Missing NVRTC skips with a message, unless
//! `GPU_REQUIRE_NVRTC=1`.

use std::time::Instant;

use gpu::cuda::{compile_source, precompile};
use gpu::BackendError;

fn nvrtc_missing(e: &BackendError) -> bool {
    let missing = matches!(e, BackendError::Unavailable(m) if m.contains("NVRTC"));
    if missing {
        assert!(
            !std::env::var("GPU_REQUIRE_NVRTC").is_ok_and(|v| v == "1"),
            "GPU_REQUIRE_NVRTC=1 but NVRTC is missing: {e}"
        );
        eprintln!("{e}; backend compile-path test SKIPPED");
    }
    missing
}

#[test]
fn precompile_fills_and_reuses_the_cache() {
    let dir = std::env::temp_dir().join(format!("pnode-kernels-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let t = Instant::now();
    let paths = match precompile((9, 0), &dir) {
        Ok(p) => p,
        Err(e) if nvrtc_missing(&e) => return,
        Err(e) => panic!("precompile: {e}"),
    };
    let first = t.elapsed();
    // Every unit the backend loads: msm, ntt, poly, arith_check.
    assert_eq!(paths.len(), 4);
    for p in &paths {
        assert!(p.starts_with(&dir), "{} not in the cache dir", p.display());
        let bytes = std::fs::read(p).expect("read cubin");
        assert_eq!(&bytes[..4], b"\x7fELF", "{} is not a CUBIN", p.display());
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        // name-<64 hex digits>.cubin
        let key = name.rsplit('-').next().unwrap().trim_end_matches(".cubin");
        assert_eq!(key.len(), 64, "{name}");
    }
    let t = Instant::now();
    let again = precompile((9, 0), &dir).expect("second precompile");
    assert_eq!(again, paths, "same keys, same files");
    assert!(
        t.elapsed() < first / 4,
        "the second call should be served from the cache ({:?} vs {first:?})",
        t.elapsed()
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn compile_errors_carry_log_and_options() {
    let src = "#include \"field.cuh\"\nextern \"C\" __global__ void k(u32* x) { x[0] = undefined_name; }\n";
    let err = match compile_source("broken.cu", src, (9, 0)) {
        Ok(_) => panic!("a broken kernel compiled"),
        Err(e) if nvrtc_missing(&e) => return,
        Err(e) => e,
    };
    match &err {
        BackendError::Compile {
            unit, options, log, ..
        } => {
            assert_eq!(unit, "broken.cu");
            assert!(options.iter().any(|o| o == "--gpu-architecture=sm_90"));
            assert!(log.contains("undefined_name"), "log: {log}");
        }
        other => panic!("expected a Compile error, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("broken.cu") && msg.contains("undefined_name"),
        "{msg}"
    );
    // And a good one compiles to a CUBIN.
    let ok = compile_source(
        "ok.cu",
        "#include \"field.cuh\"\nextern \"C\" __global__ void k(u32* x) { x[0] = 1; }\n",
        (9, 0),
    )
    .expect("compile");
    assert_eq!(&ok[..4], b"\x7fELF");
}
