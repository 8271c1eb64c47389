//! L1 settlement: the contracts a proof is settled with and the node it is settled on.
//!
//! - [`solc`]: the Solidity compiler (solc-js from npm, or a native binary) in standard-JSON mode;
//! - [`contracts`]: snark-verifier's generated verifier and our rollup contract, compiled;
//! - [`chain`]: the L1 node through alloy (signing, raw transactions, receipts, the rollup's calls);
//! - [`anvil`]: a local development node (tests, `prover demo`).

pub mod anvil;
pub mod chain;
pub mod contracts;
pub mod solc;

/// Errors of the L1 side, each naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum L1Error {
    /// An external tool (solc, node) is missing or failed to run.
    #[error("{0}")]
    Tool(String),
    #[error("Solidity compilation failed: {0}")]
    Compile(String),
    #[error("{0}")]
    Io(String),
    #[error("L1 configuration: {0}")]
    Config(String),
    /// The node could not be reached or answered with an error.
    #[error("L1 node: {0}")]
    Rpc(String),
    /// A call or transaction reverted (the contract's error, decoded when it is the rollup's).
    #[error("reverted: {0}")]
    Revert(String),
    #[error("signing a transaction: {0}")]
    Sign(String),
}
