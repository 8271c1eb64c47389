//! The node's daemon, CLI and end-to-end tests, in one test binary: one link, and the generic code
//! of axum, tokio, reqwest and halo2 compiled once instead of once per file. Each module was its own
//! binary before; `fake` is a scripted coordinator, `e2e` real coordinator and node processes,
//! `common` the proving setup shared with the other test binaries. Filter by module:
//! `cargo test --release --workspace --test daemon -- daemon_memory::`.

#[path = "../common/mod.rs"]
mod common;
mod e2e;
mod fake;

mod cli;
mod config;
mod daemon_cli;
mod daemon_client;
mod daemon_config;
mod daemon_devices;
mod daemon_identity;
mod daemon_memory;
mod daemon_prove;
mod daemon_stack;
mod daemon_worker;
mod e2e_daemon;
mod e2e_replicas;
mod login;
