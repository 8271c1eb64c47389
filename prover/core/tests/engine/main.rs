//! The native engine's tests, in one test binary (one link, halo2's generic code compiled once):
//! `native` against halo2-axiom's verifier (and on the CUDA backend when one is usable),
//! `native_cuda` CPU-vs-CUDA byte identity, `device_fault` a device fault mid-proof (needs the
//! emulated device with a planted fault). Filter by module:
//! `cargo test --release --workspace --test engine -- native_cuda::`.

mod device_fault;
mod native;
mod native_cuda;
