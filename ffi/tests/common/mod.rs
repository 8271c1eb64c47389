//! Shared by the integration tests: where the freshly built `libprover_ffi.so` is.

use std::path::PathBuf;

/// The directory holding the newest `libprover_ffi.so`: `target/release/deps` (where `cargo test`
/// builds it; test binaries run from there) or `target/release` (where `cargo build` puts it).
pub fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary directory").to_path_buf();
    let release = deps.parent().expect("target/release").to_path_buf();
    let name = format!(
        "{}prover_ffi{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    [deps, release]
        .into_iter()
        .filter_map(|dir| {
            let modified = std::fs::metadata(dir.join(&name)).ok()?.modified().ok()?;
            Some((modified, dir))
        })
        .max_by_key(|(modified, _)| *modified)
        .map(|(_, dir)| dir)
        .unwrap_or_else(|| panic!("{name} is not built (cargo build --release -p ffi)"))
}

/// `target/release`, for caches (`go-cache`) that outlive one test run.
#[allow(dead_code)]
pub fn release_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}
