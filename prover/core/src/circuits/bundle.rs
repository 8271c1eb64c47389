//! The bundle circuit: aggregates `num_batches` batch proofs (themselves aggregations, proved with
//! the Poseidon transcript) into the proof that is settled on L1. Same chaining as the batch
//! circuit, one level up: batch i's new root is batch i+1's old root. The batches' own KZG
//! accumulators (their first 12 public inputs) are folded into the bundle's, so the one pairing
//! that the L1 verifier decides covers every proof below it.
//!
//! Public inputs (one instance column): the 12 limbs of the KZG accumulator, then
//! `first_old_root`, `last_new_root`, and `Poseidon(commitment_0, …, commitment_{n−1})` over the
//! batches' commitments. The bundle's own proof is made with the Keccak transcript.

use halo2_base::gates::circuit::CircuitBuilderStage;
use halo2curves::bn256::Fr;
use snark_verifier_sdk::halo2::aggregation::{AggregationCircuit, AggregationConfigParams};
use snark_verifier_sdk::Snark;

use super::batch;

/// Limbs of the KZG accumulator at the front of the bundle instances.
pub const ACCUMULATOR_LIMBS: usize = batch::ACCUMULATOR_LIMBS;
/// Number of public inputs of the bundle circuit.
pub const NUM_INSTANCES: usize = ACCUMULATOR_LIMBS + 3;

/// The bundle's own public inputs (after the accumulator) for the given batch statements (each
/// `[old_root, new_root, commitment]`, the batch instances after their accumulator).
pub fn public_inputs(batch_statements: &[[Fr; 3]]) -> Option<[Fr; 3]> {
    // The same chaining as the batch over its chunks' `[old_root, new_root, commitment]`.
    batch::public_inputs(batch_statements)
}

/// Builds the aggregation circuit over `snarks` (each a batch proof with its 15 instances, whose
/// protocol names its first 12 as an accumulator). As for [`batch::build`], the snarks must have
/// been verified natively first.
pub fn build(
    stage: CircuitBuilderStage,
    config: AggregationConfigParams,
    params: &params::Srs,
    snarks: Vec<Snark>,
) -> AggregationCircuit {
    batch::build_chained(stage, config, params, snarks, ACCUMULATOR_LIMBS)
}
