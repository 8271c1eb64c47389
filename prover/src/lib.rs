//! The prover node: circuits (`chunk`, `batch`), the rollup witness generator, the proving core
//! (keys, parameters, the reference engine), and the wire types shared with the coordinator.
#![forbid(unsafe_code)]

pub mod circuits;
pub mod config;
pub mod core;
pub mod engine;
pub mod keys;
pub mod login;
pub mod rollup;
pub mod wire;

pub use crate::core::{CoreConfig, CoreError, ProvingCore, Verified};
