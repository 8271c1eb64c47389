//! The coordinator's integration tests, in one test binary: one link, and the generic code of
//! axum, tokio, alloy and halo2 compiled once instead of once per file (the clean build's test
//! binaries were most of its half hour). Each module was its own binary before; `common` is their
//! shared setup. Filter by module: `cargo test --release --workspace --test service -- settlement::`.

mod common;

mod api;
mod concurrency;
mod coordinator_cli;
mod flow;
mod hostile;
mod l1_contracts;
mod pg_restart;
mod replica_kill;
mod replicas;
mod scheduler;
mod settle_rules;
mod settlement;
mod store_kill;
