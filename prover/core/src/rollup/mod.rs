//! The rollup the circuits prove: accounts in a Poseidon sparse Merkle tree, transfers between them,
//! and the witness generator that turns a state plus transfers into a chunk task payload.

pub mod hash;
pub mod smt;
mod state;

pub use state::{check_chunk, check_config, check_shape, Account, ChunkError, RollupState};
