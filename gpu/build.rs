//! Compiles the kernel headers with the host C++ compiler into a small static library used only
//! by `tests/host_arith.rs` (it is not linked into the library: the test names it with
//! `#[link]`). Reruns only when the headers or the shim change. If no C++ compiler is available,
//! the build continues with a warning and the host arithmetic tests are compiled out.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(gpu_host_shim)");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-changed=tests/host");

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file("tests/host/shim.cpp")
        .include("kernels")
        .flag_if_supported("-std=c++17")
        .flag_if_supported("-Wall")
        .opt_level(2)
        .debug(false)
        .cargo_metadata(false);
    match build.try_compile("gpu_host_shim") {
        Ok(()) => {
            let out_dir = std::env::var("OUT_DIR").unwrap_or_default();
            println!("cargo:rustc-link-search=native={out_dir}");
            println!("cargo:rustc-cfg=gpu_host_shim");
        }
        Err(e) => {
            println!(
                "cargo:warning=host C++ compiler unavailable ({e}); host arithmetic tests skipped"
            );
        }
    }
}
