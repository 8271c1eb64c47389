//! The prover node: the daemon and its configuration, on top of the proving core
//! (`prover-core`, re-exported here so `prover::wire`, `prover::core`, … keep one path).
#![forbid(unsafe_code)]

pub mod config;
pub mod daemon;

/// The proving core (`prover_core::core`).
pub use prover_core::core;
pub use prover_core::{circuits, disk, engine, evm, keys, login, rollup, wire};
pub use prover_core::{CoreConfig, CoreError, ProvingCore, Verified};
