//! The proving core's tests with real proofs, in one test binary: one link, and the generic code of
//! halo2 compiled once instead of once per file (each module was its own binary before). They share
//! one parameters directory and proving core (`common::env`, parameters made for every `k` asked).
//! `batch` is the suite's one aggregation test. Filter by module:
//! `cargo test --release --workspace --test proofs -- keys::`.

#[path = "../common/mod.rs"]
mod common;

mod batch;
mod chunk;
mod coset_cache;
mod engines;
mod keys;
