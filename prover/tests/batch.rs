//! The one aggregation test of the suite: a batch of 2 chained chunk proofs proves (native engine, the
//! default) and verifies with halo2-axiom's and snark-verifier's verifiers;
//! a batch whose chunks do not chain is refused, and if proved anyway its proof is rejected.

mod common;

use common::{env, genesis, rng, transfer};
use halo2curves::bn256::Fr;
use prover::circuits::batch;
use prover::rollup::{hash::poseidon, RollupState};
use prover::wire::{
    BatchConfig, BatchTaskData, ChunkConfig, FrHex, TaskPayload, TASK_DATA_VERSION,
};
use prover::CoreError;

/// Tall and narrow: few columns means few commitments for the in-circuit verifier to process.
const CHUNK: ChunkConfig = ChunkConfig {
    k: 16,
    tree_depth: 4,
    max_txs: 2,
};
const BATCH_K: u32 = 20;

#[test]
fn batch_of_two_chunks_verifies_and_a_broken_chain_is_rejected() {
    let env = env(&[CHUNK.k, BATCH_K]);
    let core = &env.core;
    let mut state = genesis(CHUNK);
    let d0 = state
        .apply_chunk(CHUNK, &[transfer(0, 1, 10, 0), transfer(1, 2, 20, 0)])
        .unwrap();
    let d1 = state.apply_chunk(CHUNK, &[transfer(2, 3, 5, 0)]).unwrap();
    let p0 = core.prove_chunk("c0", &d0, rng()).unwrap();
    let p1 = core.prove_chunk("c1", &d1, rng()).unwrap();
    let config = BatchConfig {
        k: BATCH_K,
        num_chunks: 2,
        chunk: CHUNK,
    };
    let data = BatchTaskData {
        version: TASK_DATA_VERSION,
        config,
        chunk_proofs: vec![p0.clone(), p1.clone()],
    };

    let proof = core.prove_batch("b", &data, rng()).expect("batch proves");
    let verified = core.verify(&proof).expect("batch proof verifies");
    let c0 = prover::circuits::chunk::public_inputs(&d0)[2];
    let c1 = prover::circuits::chunk::public_inputs(&d1)[2];
    assert_eq!(
        verified.statement,
        vec![d0.old_root, d1.new_root, FrHex(poseidon(&[c0, c1]))]
    );
    assert_eq!(
        verified.statement,
        prover::core::expected_statement(&TaskPayload::Batch(data.clone())).unwrap()
    );
    assert_eq!(proof.instances.len(), batch::NUM_INSTANCES);
    // The default engine proved everything: the chunk proofs the circuit verified in-circuit
    // and the aggregation proof itself.
    assert_eq!(proof.meta.engine, "native");
    assert_eq!(p0.meta.engine, "native");

    // snark-verifier's native verifier agrees, deciding both the proof's own KZG accumulator and
    // the one it carries in its first 12 public inputs (the chunk proofs' deferred pairing).
    let keys = core.batch_keys(config).unwrap();
    let srs = core.srs(BATCH_K).unwrap();
    let instances: Vec<Fr> = proof.instances.iter().map(|x| x.0).collect();
    let accumulator = Some(
        (0..batch::ACCUMULATOR_LIMBS)
            .map(|i| (0, i))
            .collect::<Vec<_>>(),
    );
    prover::engine::verify_with_snark_verifier(
        &srs,
        keys.vk(),
        &instances,
        &proof.proof.0,
        accumulator.clone(),
    )
    .expect("snark-verifier rejected the batch proof");
    // A changed accumulator limb is rejected.
    let mut wrong = instances.clone();
    wrong[0] += Fr::from(1);
    assert!(prover::engine::verify_with_snark_verifier(
        &srs,
        keys.vk(),
        &wrong,
        &proof.proof.0,
        accumulator
    )
    .is_err());

    // Tampering: a flipped proof byte, a changed public input.
    let mut bad = proof.clone();
    let mid = bad.proof.0.len() / 2;
    bad.proof.0[mid] ^= 0x20;
    assert!(core.verify(&bad).is_err());
    let mut bad = proof.clone();
    bad.instances[batch::ACCUMULATOR_LIMBS] = FrHex(Fr::from(1u64));
    assert!(core.verify(&bad).is_err());

    // A chunk from another history: its old root is not d0's new root.
    let mut other_state = RollupState::genesis(CHUNK.tree_depth, 4, 5000).unwrap();
    let other = other_state
        .apply_chunk(CHUNK, &[transfer(3, 0, 1, 0)])
        .unwrap();
    let p_other = core.prove_chunk("x", &other, rng()).unwrap();
    let broken = BatchTaskData {
        chunk_proofs: vec![p0, p_other],
        ..data
    };
    let err = core.prove_batch("broken", &broken, rng()).unwrap_err();
    assert!(
        matches!(&err, CoreError::Batch(m) if m.contains("do not chain")),
        "{err}"
    );
    // Forced through the circuit anyway, the proof must not verify.
    match core.prove_batch_unchecked("broken", &broken, rng()) {
        Err(CoreError::Engine(_)) => {}
        Err(other) => panic!("unexpected error {other}"),
        Ok(p) => assert!(
            core.verify(&p).is_err(),
            "a batch of unchained chunks verified"
        ),
    }
}
