//! The proving core of the prover node: circuits (`chunk`, `batch`), the rollup witness generator,
//! the key cache, the proving engines (reference and native) and their compute backend, the
//! coordinator login signature, and the one wire-types module shared by the prover daemon and the
//! coordinator.
//!
//! It is a crate of its own so that both the node (`prover`) and the coordinator depend on it, and
//! the node can embed a coordinator for `prover demo` without a dependency cycle.
#![forbid(unsafe_code)]

pub mod circuits;
pub mod compute;
pub mod core;
pub mod disk;
pub mod engine;
pub mod evm;
pub mod keys;
pub mod login;
pub mod native;
pub mod redb_file;
pub mod report;
pub mod rollup;
pub mod wire;

pub use crate::core::{CoreConfig, CoreError, ProvingCore, Verified};
