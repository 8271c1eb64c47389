//! The batch circuit: aggregates `num_chunks` chunk proofs (snark-verifier, SHPLONK, inner proofs
//! with the Poseidon transcript) and constrains that they chain: chunk i's new root is chunk i+1's
//! old root.
//!
//! Public inputs (one instance column): the 12 limbs of the KZG accumulator (the deferred pairing
//! check, as snark-verifier lays it out), then `first_old_root`, `last_new_root`, and
//! `Poseidon(commitment_0, …, commitment_{n−1})` over the chunks' transfer commitments.

use halo2_base::gates::circuit::CircuitBuilderStage;
use halo2_base::gates::RangeInstructions;
use halo2_base::poseidon::hasher::{spec::OptimizedPoseidonSpec, PoseidonHasher};
use halo2curves::bn256::Fr;
use snark_verifier_sdk::halo2::aggregation::{
    AggregationCircuit, AggregationConfigParams, VerifierUniversality,
};
use snark_verifier_sdk::{Snark, SHPLONK};

use crate::rollup::hash::{poseidon, RATE, R_F, R_P, T};

use super::chunk;

/// Limbs of the KZG accumulator at the front of the batch instances.
pub const ACCUMULATOR_LIMBS: usize = 12;
/// Number of public inputs of the batch circuit.
pub const NUM_INSTANCES: usize = ACCUMULATOR_LIMBS + 3;

/// The batch's own public inputs (after the accumulator) for the given chunk instances.
pub fn public_inputs(chunk_instances: &[[Fr; chunk::NUM_INSTANCES]]) -> Option<[Fr; 3]> {
    let first = chunk_instances.first()?;
    let last = chunk_instances.last()?;
    let commitments: Vec<Fr> = chunk_instances.iter().map(|c| c[2]).collect();
    Some([first[0], last[1], poseidon(&commitments)])
}

/// Builds the aggregation circuit over `snarks` (each a chunk proof with its 3 instances).
///
/// `config` is `{degree, lookup_bits}` alone at keygen (the column counts are then computed), the
/// full cached configuration when proving. The snarks must have been verified natively first:
/// snark-verifier panics on proof bytes it cannot parse.
pub fn build(
    stage: CircuitBuilderStage,
    config: AggregationConfigParams,
    params: &params::Srs,
    snarks: Vec<Snark>,
) -> AggregationCircuit {
    build_chained(stage, config, params, snarks, 0)
}

/// The aggregation circuit of a batch or a bundle: verifies `snarks` in-circuit (folding the KZG
/// accumulators they carry, if their protocol says so), constrains that they chain (proof i's new
/// root, at instance `offset + 1`, is proof i+1's old root, at `offset`), and exposes the first old
/// root, the last new root and the Poseidon hash of their commitments (at `offset + 2`) after its
/// own accumulator.
pub(crate) fn build_chained(
    stage: CircuitBuilderStage,
    config: AggregationConfigParams,
    params: &params::Srs,
    snarks: Vec<Snark>,
    offset: usize,
) -> AggregationCircuit {
    let mut circuit = AggregationCircuit::new::<SHPLONK>(
        stage,
        config,
        params,
        snarks,
        VerifierUniversality::None,
    );
    let prev = circuit.previous_instances().clone();
    let range = circuit.builder.range_chip();
    let mut hasher =
        PoseidonHasher::<Fr, T, RATE>::new(OptimizedPoseidonSpec::new::<R_F, R_P, 0>());
    let ctx = circuit.builder.main(0);
    hasher.initialize_consts(ctx, range.gate());
    for pair in prev.windows(2) {
        ctx.constrain_equal(&pair[0][offset + 1], &pair[1][offset]);
    }
    let commitments: Vec<_> = prev.iter().map(|inst| inst[offset + 2]).collect();
    let commitment = hasher.hash_fix_len_array(ctx, range.gate(), &commitments);
    let (first_old, last_new) = (prev[0][offset], prev[prev.len() - 1][offset + 1]);
    circuit.builder.assigned_instances[0].extend([first_old, last_new, commitment]);
    circuit
}
