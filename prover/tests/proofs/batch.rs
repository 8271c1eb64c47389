//! The one aggregation test of the suite: a batch of 2 chained chunk proofs proves (native engine, the
//! default) and verifies with halo2-axiom's and snark-verifier's verifiers;
//! a batch whose chunks do not chain is refused, and if proved anyway its proof is rejected. Then
//! the batch proof is aggregated once more into a bundle (Keccak transcript), whose Solidity
//! verifier, compiled with solc and deployed on a local anvil, lets the rollup contract finalise the
//! bundle's root.

use crate::common;

use common::{env, genesis, rng, transfer};
use halo2curves::bn256::Fr;
use prover::circuits::batch;
use prover::rollup::{hash::poseidon, RollupState};
use prover::wire::{
    BatchConfig, BatchTaskData, BundleConfig, BundleTaskData, ChunkConfig, CircuitSpec, FrHex,
    ProofPayload, TaskPayload, TASK_DATA_VERSION,
};
use prover::{CoreError, ProvingCore};

/// Tall and narrow: few columns means few commitments for the in-circuit verifier to process.
const CHUNK: ChunkConfig = ChunkConfig {
    k: 16,
    tree_depth: 4,
    max_txs: 2,
};
const BATCH_K: u32 = 20;
/// One batch proof aggregated: the same size as the batch circuit suffices.
const BUNDLE_K: u32 = 20;

#[test]
fn batch_of_two_chunks_verifies_a_broken_chain_is_rejected_and_its_bundle_settles_on_l1() {
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

    // The k=20 entries (a key and a coset file each: 4.0 GB for the batch circuit, 3.4 GB for
    // the bundle) are this test's alone. The core keeps the keys it needs in memory, so each
    // entry leaves the disk once its last proof is made: the tests after this one, and the
    // bundle here, do not need room for both at once.
    let keys_dir = env.dir.path().join("keys");
    remove_entries(&keys_dir, &format!("batch-k{BATCH_K}-"));
    bundle_of_the_batch_settles_on_l1(core, config, &proof, &verified.statement);
    remove_entries(&keys_dir, &format!("bundle-k{BUNDLE_K}-"));
}

/// Removes the files of the key-cache entries whose names start with `prefix`.
fn remove_entries(keys_dir: &std::path::Path, prefix: &str) {
    let entries = std::fs::read_dir(keys_dir).expect("keys directory");
    let mut removed = 0;
    for entry in entries {
        let entry = entry.expect("keys directory entry");
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            std::fs::remove_file(entry.path()).expect("remove a cache file");
            removed += 1;
        }
    }
    assert!(removed > 0, "no cache entry {prefix}* to remove");
}

/// The batch proof aggregated into a bundle with the Keccak transcript: it verifies natively (its
/// accumulator folds the batch's), a batch proof with a wrong accumulator is refused before any
/// proving, and on a local anvil the bundle's generated Solidity verifier lets the rollup contract
/// move the root from the batch's old root to its new one — once.
fn bundle_of_the_batch_settles_on_l1(
    core: &ProvingCore,
    batch: BatchConfig,
    batch_proof: &ProofPayload,
    batch_statement: &[FrHex],
) {
    let config = BundleConfig {
        k: BUNDLE_K,
        num_batches: 1,
        batch,
    };
    let data = BundleTaskData {
        version: TASK_DATA_VERSION,
        config,
        batch_proofs: vec![batch_proof.clone()],
    };
    let started = std::time::Instant::now();
    let bundle = core
        .prove_bundle("bundle", &data, rng())
        .expect("bundle proves");
    println!(
        "bundle proof (k={BUNDLE_K}, 1 batch; keys generated in the call): {:.1} s, {} bytes",
        started.elapsed().as_secs_f64(),
        bundle.proof.0.len()
    );
    let verified = core.verify(&bundle).expect("bundle proof verifies");
    assert_eq!(
        verified.statement,
        vec![
            batch_statement[0],
            batch_statement[1],
            FrHex(poseidon(&[batch_statement[2].0]))
        ]
    );
    assert_eq!(
        verified.statement,
        prover::core::expected_statement(&TaskPayload::Bundle(data.clone())).unwrap()
    );
    assert_ne!(
        bundle.instances[..batch::ACCUMULATOR_LIMBS],
        batch_proof.instances[..batch::ACCUMULATOR_LIMBS],
        "the bundle's accumulator is a new one"
    );
    // Its proof is Keccak's: read with the batches' Poseidon transcript it does not verify.
    let keys = core.bundle_keys(config).unwrap();
    let srs = core.srs(BUNDLE_K).unwrap();
    let instances: Vec<Fr> = bundle.instances.iter().map(|x| x.0).collect();
    assert!(prover::engine::verify(&srs, keys.vk(), &instances, &bundle.proof.0).is_err());
    // A batch proof whose accumulator was changed is refused, before any proving.
    let mut wrong = batch_proof.clone();
    wrong.instances[0] = FrHex(wrong.instances[0].0 + Fr::from(1));
    let err = core
        .prove_bundle(
            "wrong",
            &BundleTaskData {
                batch_proofs: vec![wrong],
                ..data.clone()
            },
            rng(),
        )
        .unwrap_err();
    assert!(
        matches!(&err, CoreError::Bundle(m) if m.contains("does not verify")),
        "{err}"
    );

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(settle(core, config, &bundle));
}

async fn settle(core: &ProvingCore, config: BundleConfig, bundle: &ProofPayload) {
    use alloy::primitives::B256;
    use coordinator::l1::anvil::{self, Anvil};
    use coordinator::l1::chain::{finalize_calldata, L1};
    use coordinator::l1::contracts::{self, RootLayout};
    use coordinator::l1::solc::Solc;

    let spec = CircuitSpec::Bundle { config };
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let started = std::time::Instant::now();
    let source = core.evm_verifier(&spec).expect("verifier source");
    let solc = Solc::locate(&repo).unwrap_or_else(|e| panic!("{e}"));
    let built = contracts::build(&solc, source, None).expect("compile");
    println!(
        "bundle verifier: {} bytes of Solidity, {} bytes of runtime code (EIP-170: {}); \
         generated and compiled in {:.1} s",
        built.verifier_source.len(),
        built.verifier.deployed_size,
        contracts::MAX_CODE_SIZE,
        started.elapsed().as_secs_f64()
    );
    let path = Anvil::locate(&repo).unwrap_or_else(|e| panic!("{e}"));
    let node = Anvil::start(&path, 0, &[]).unwrap_or_else(|e| panic!("{e}"));
    let signer: alloy::signers::local::PrivateKeySigner = anvil::DEV_KEY.parse().unwrap();
    let l1 = L1::connect(node.url(), anvil::DEV_CHAIN_ID, signer)
        .await
        .expect("connect");
    let (verifier, verifier_gas) = l1
        .deploy(&built.verifier.bytecode)
        .await
        .expect("deploy verifier");
    let word = |x: &FrHex| B256::from(prover::evm::fr_be(&x.0));
    let (old, new) = (word(&bundle.instances[12]), word(&bundle.instances[13]));
    let (rollup, _) = l1
        .deploy(&contracts::rollup_deploy_code(
            &built.rollup,
            verifier,
            RootLayout::for_circuit(&spec),
            old,
        ))
        .await
        .expect("deploy rollup");
    let words: Vec<B256> = bundle.instances.iter().map(word).collect();
    let input = finalize_calldata(old, new, &words, &bundle.proof.0);
    let gas = l1
        .estimate_gas(Some(rollup), &input)
        .await
        .expect("the bundle proof finalises");
    let fees = l1.fees().await.expect("fees");
    let nonce = l1.mined_nonce().await.expect("nonce");
    let signed = l1
        .sign(Some(rollup), &input, nonce, gas + gas / 5, fees)
        .await
        .expect("sign");
    l1.send_raw(&signed).await.expect("send");
    let receipt = l1.wait_receipt(signed.hash).await.expect("receipt");
    assert!(receipt.status(), "the finalisation succeeds");
    println!(
        "bundle finalize: {} gas ({} calldata bytes, proof {} bytes); verifier deployment {} gas; \
         tx {}",
        receipt.gas_used,
        input.len(),
        bundle.proof.0.len(),
        verifier_gas,
        signed.hash
    );
    assert_eq!(l1.rollup_root(rollup).await.expect("root"), new);
    assert_eq!(l1.rollup_finalized(rollup).await.expect("finalized"), 1);
    // The same bundle again: its old root is no longer the current one.
    let err = l1
        .estimate_gas(Some(rollup), &input)
        .await
        .expect_err("a second finalisation");
    assert!(err.to_string().contains("StaleRoot"), "{err}");
}
