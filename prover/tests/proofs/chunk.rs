//! The chunk circuit with real proofs: honest chunks verify; a wrong new root, an overdrawn balance,
//! a wrong nonce, a tampered Merkle path, a receiver overflow and a flipped proof byte are rejected.

use crate::common;

use common::{chunk_task, env, genesis, rng, transfer, SMALL};
use ff::Field;
use halo2_base::gates::circuit::builder::BaseCircuitBuilder;
use halo2_base::gates::RangeInstructions;
use halo2_base::poseidon::hasher::{spec::OptimizedPoseidonSpec, PoseidonHasher};
use halo2curves::bn256::Fr;
use prover::rollup::hash::{poseidon, RATE, R_F, R_P, T};
use prover::rollup::{check_chunk, ChunkError};
use prover::wire::{FrHex, ProofPayload};
use prover::{CoreConfig, CoreError, ProvingCore};

const KS: &[u32] = &[13];

fn honest_data() -> prover::wire::ChunkTaskData {
    let mut state = genesis(SMALL);
    // Two transfers, the second from the first one's receiver: exercises the running root.
    state
        .apply_chunk(SMALL, &[transfer(0, 1, 300, 0), transfer(1, 2, 1200, 0)])
        .expect("valid chunk")
}

#[test]
fn native_poseidon_matches_the_circuit_for_every_length() {
    let mut builder = BaseCircuitBuilder::<Fr>::new(false)
        .use_k(10)
        .use_lookup_bits(9);
    let range = builder.range_chip();
    let mut hasher =
        PoseidonHasher::<Fr, T, RATE>::new(OptimizedPoseidonSpec::new::<R_F, R_P, 0>());
    let ctx = builder.main(0);
    hasher.initialize_consts(ctx, range.gate());
    let mut r = rng();
    for len in 1..=8 {
        let values: Vec<Fr> = (0..len).map(|_| Fr::random(&mut r)).collect();
        let cells: Vec<_> = values.iter().map(|v| ctx.load_witness(*v)).collect();
        let in_circuit = hasher.hash_fix_len_array(ctx, range.gate(), &cells);
        assert_eq!(*in_circuit.value(), poseidon(&values), "length {len}");
    }
}

#[test]
fn honest_chunk_proves_and_verifies_with_its_statement() {
    let env = env(KS);
    let data = honest_data();
    let proof = env.core.prove_chunk("c0", &data, rng()).expect("prove");
    let verified = env.core.verify(&proof).expect("honest proof verifies");
    let expected =
        prover::core::expected_statement(&prover::wire::TaskPayload::Chunk(data.clone())).unwrap();
    assert_eq!(verified.statement, expected);
    assert_eq!(verified.statement[0], data.old_root);
    assert_eq!(verified.statement[1], data.new_root);
    assert_ne!(data.old_root, data.new_root);
}

#[test]
fn padding_only_chunk_leaves_the_root_unchanged() {
    let env = env(KS);
    let mut state = genesis(SMALL);
    let data = state.apply_chunk(SMALL, &[]).unwrap();
    assert_eq!(data.old_root, data.new_root);
    let proof = env.core.prove_chunk("empty", &data, rng()).expect("prove");
    let verified = env.core.verify(&proof).expect("verifies");
    assert_eq!(verified.statement[0], verified.statement[1]);
}

#[test]
fn a_wrong_new_root_is_rejected() {
    let env = env(KS);
    let data = honest_data();
    // The prover refuses a task whose claimed new root is not what the transfers produce.
    let mut lying = data.clone();
    lying.new_root = FrHex(Fr::from(12345u64));
    let err = env.core.prove_chunk("c1", &lying, rng()).unwrap_err();
    assert!(
        matches!(err, CoreError::Chunk(ChunkError::WrongNewRoot { .. })),
        "{err}"
    );
    // And a valid proof re-labelled with a wrong new root does not verify.
    let mut proof = env.core.prove_chunk("c1", &data, rng()).unwrap();
    proof.instances[1] = FrHex(Fr::from(12345u64));
    let err = env.core.verify(&proof).unwrap_err();
    assert!(matches!(err, CoreError::Engine(_)), "{err}");
}

/// Proves a tampered chunk without the native pre-check: proving must fail or the proof be rejected.
fn assert_unprovable(data: &prover::wire::ChunkTaskData, what: &str) {
    let env = env(KS);
    match env.core.prove_chunk_unchecked(what, data, rng()) {
        Err(CoreError::Engine(_)) => {}
        Err(other) => panic!("{what}: unexpected error {other}"),
        Ok(proof) => {
            assert!(
                env.core.verify(&proof).is_err(),
                "{what}: a dishonest proof verified"
            );
        }
    }
}

#[test]
fn an_overdrawn_balance_is_rejected() {
    let env = env(KS);
    let mut state = genesis(SMALL);
    let err = state
        .apply_chunk(SMALL, &[transfer(0, 1, 1001, 0)])
        .unwrap_err();
    assert_eq!(
        err,
        ChunkError::Overdrawn {
            tx: 0,
            balance: 1000,
            amount: 1001
        }
    );
    // Forge the witness: take a valid chunk and raise the amount above the balance.
    let mut data = state
        .apply_chunk(SMALL, &[transfer(0, 1, 1000, 0)])
        .unwrap();
    data.transfers[0].amount = 1001;
    assert!(matches!(
        check_chunk(&data),
        Err(ChunkError::Overdrawn { .. })
    ));
    assert!(env.core.prove_chunk("od", &data, rng()).is_err());
    assert_unprovable(&data, "overdrawn");
}

#[test]
fn a_wrong_nonce_is_rejected() {
    let mut state = genesis(SMALL);
    assert_eq!(
        state
            .apply_chunk(SMALL, &[transfer(0, 1, 5, 1)])
            .unwrap_err(),
        ChunkError::WrongNonce {
            tx: 0,
            expected: 0,
            got: 1
        }
    );
    let mut data = state.apply_chunk(SMALL, &[transfer(0, 1, 5, 0)]).unwrap();
    data.transfers[0].nonce = 7;
    assert!(matches!(
        check_chunk(&data),
        Err(ChunkError::WrongNonce { .. })
    ));
    assert_unprovable(&data, "nonce");
}

#[test]
fn a_tampered_merkle_path_is_rejected() {
    let mut data = honest_data();
    data.witness[0].sender.siblings[2] = FrHex(Fr::from(99u64));
    assert!(matches!(
        check_chunk(&data),
        Err(ChunkError::BadPath {
            tx: 0,
            who: "sender"
        })
    ));
    assert_unprovable(&data, "sender path");

    let mut data = honest_data();
    data.witness[1].receiver.siblings[0] = FrHex(Fr::from(7u64));
    assert!(matches!(
        check_chunk(&data),
        Err(ChunkError::BadPath {
            tx: 1,
            who: "receiver"
        })
    ));
    assert_unprovable(&data, "receiver path");
}

#[test]
fn a_receiver_overflow_is_rejected() {
    let mut state = genesis(SMALL);
    state
        .insert(
            3,
            prover::rollup::Account {
                owner: FrHex(Fr::from(3u64)),
                balance: u64::MAX - 10,
                nonce: 0,
            },
        )
        .unwrap();
    let err = state
        .apply_chunk(SMALL, &[transfer(0, 3, 11, 0)])
        .unwrap_err();
    assert_eq!(
        err,
        ChunkError::Overflow {
            tx: 0,
            balance: u64::MAX - 10,
            amount: 11
        }
    );
    let mut data = state.apply_chunk(SMALL, &[transfer(0, 3, 10, 0)]).unwrap();
    data.transfers[0].amount = 11;
    assert_unprovable(&data, "overflow");
}

#[test]
fn errors_leave_the_state_unchanged_and_name_the_transaction() {
    let mut state = genesis(SMALL);
    let before = state.root();
    let err = state
        .apply_chunk(SMALL, &[transfer(0, 1, 5, 0), transfer(9, 1, 5, 0)])
        .unwrap_err();
    assert_eq!(err, ChunkError::NoSuchAccount { tx: 1, index: 9 });
    assert_eq!(state.root(), before);
    let err = state
        .apply_chunk(SMALL, &[transfer(0, 16, 5, 0)])
        .unwrap_err();
    assert_eq!(
        err,
        ChunkError::IndexOutOfRange {
            tx: 0,
            index: 16,
            depth: 4
        }
    );
    let three = [
        transfer(0, 1, 1, 0),
        transfer(0, 1, 1, 1),
        transfer(0, 1, 1, 2),
    ];
    assert_eq!(
        state.apply_chunk(SMALL, &three).unwrap_err(),
        ChunkError::TooManyTransfers { count: 3, max: 2 }
    );
    assert_eq!(state.root(), before);
}

#[test]
fn a_flipped_byte_anywhere_in_the_proof_is_rejected() {
    let env = env(KS);
    let proof = env.core.prove_chunk("flip", &honest_data(), rng()).unwrap();
    let len = proof.proof.0.len();
    // Every byte position would take minutes; every 7th plus both ends covers all transcript items
    // (32-byte scalars and points) several times.
    let positions: Vec<usize> = (0..len).step_by(7).chain([1, len - 2, len - 1]).collect();
    for pos in positions {
        let mut bad: ProofPayload = proof.clone();
        bad.proof.0[pos] ^= 0x01;
        assert!(
            env.core.verify(&bad).is_err(),
            "flipped byte {pos} of {len} was accepted"
        );
    }
    let mut truncated = proof.clone();
    truncated.proof.0.truncate(len - 1);
    assert!(env.core.verify(&truncated).is_err());
    let mut extended = proof.clone();
    extended.proof.0.push(0);
    assert!(
        env.core.verify(&extended).is_err(),
        "trailing bytes were accepted"
    );
}

#[test]
fn bad_tasks_get_clear_errors() {
    let env = env(KS);
    let data = honest_data();
    let good = chunk_task("t", &data);

    let mut unknown = good.clone();
    unknown.task_type = 9;
    let err = env
        .core
        .prove_task(&unknown, rng())
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown task type 9"), "{err}");

    let mut malformed = good.clone();
    malformed.task_data = "{\"version\": 1, \"config\": ".into();
    let err = env
        .core
        .prove_task(&malformed, rng())
        .unwrap_err()
        .to_string();
    assert!(err.contains("malformed chunk task_data JSON"), "{err}");

    let mut fork = good.clone();
    fork.hard_fork_name = "curie".into();
    let err = env.core.prove_task(&fork, rng()).unwrap_err().to_string();
    assert!(err.contains("unsupported hard_fork_name"), "{err}");

    let mut version = data.clone();
    version.version = 2;
    let err = env
        .core
        .prove_task(&chunk_task("v", &version), rng())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unsupported chunk task_data version 2"),
        "{err}"
    );

    let mut short = data.clone();
    short.witness[0].sender.siblings.pop();
    let err = env
        .core
        .prove_task(&chunk_task("s", &short), rng())
        .unwrap_err()
        .to_string();
    assert!(err.contains("siblings"), "{err}");

    // A circuit larger than the parameters on disk: a clear error naming what is there. A core
    // of its own, with only the k=13 parameters: the shared one may hold larger parameters made
    // for the other tests of this binary (the aggregation test's k=20 ones prove a k=15 chunk).
    let dir = tempfile::tempdir().expect("temporary directory");
    params::ensure_dev(&dir.path().join("params"), SMALL.k, false).expect("dev params");
    let small = ProvingCore::new(CoreConfig::new(
        dir.path().join("params"),
        dir.path().join("keys"),
    ));
    let mut big = data.clone();
    big.config.k = 15;
    let err = small
        .prove_task(&chunk_task("big", &big), rng())
        .unwrap_err()
        .to_string();
    assert!(err.contains("15"), "{err}");
}

#[test]
fn aggregation_tasks_with_the_wrong_proofs_are_refused_before_any_aggregation_key() {
    use prover::wire::{BatchConfig, BatchTaskData, BundleConfig, BundleTaskData, CircuitSpec};
    use prover::wire::{ChunkConfig, TASK_DATA_VERSION};

    let env = env(KS);
    let proof = env
        .core
        .prove_chunk("c0", &honest_data(), rng())
        .expect("prove");
    let config = BatchConfig {
        k: 16,
        num_chunks: 2,
        chunk: SMALL,
    };
    let batch = |chunk_proofs: Vec<ProofPayload>| {
        let data = BatchTaskData {
            version: TASK_DATA_VERSION,
            config,
            chunk_proofs,
        };
        match env.core.prove_batch("b", &data, rng()) {
            Err(CoreError::Batch(m)) => m,
            other => panic!("expected a batch refusal, got {other:?}"),
        }
    };
    // Each refusal comes from the checks, before the batch's keys (and its k=16 parameters, which
    // this environment does not have) are needed.
    let m = batch(vec![proof.clone()]);
    assert_eq!(m, "1 chunk proofs for a batch of 2 chunks");
    let mut other_circuit = proof.clone();
    other_circuit.spec = CircuitSpec::Chunk {
        config: ChunkConfig {
            max_txs: SMALL.max_txs + 1,
            ..SMALL
        },
    };
    let m = batch(vec![proof.clone(), other_circuit]);
    assert!(
        m.starts_with("chunk proof 1 is not for the batch's chunk circuit"),
        "{m}"
    );
    let mut forged = proof.clone();
    forged.instances[1] = FrHex(forged.instances[1].0 + Fr::ONE);
    let m = batch(vec![proof.clone(), forged]);
    assert!(m.starts_with("chunk proof 1 does not verify"), "{m}");
    // The same chunk twice: its new root is not its own old root.
    let m = batch(vec![proof.clone(), proof.clone()]);
    assert!(
        m.starts_with("chunks do not chain: chunk 0 ends at root"),
        "{m}"
    );

    let bundle = BundleConfig {
        k: 16,
        num_batches: 1,
        batch: config,
    };
    let data = BundleTaskData {
        version: TASK_DATA_VERSION,
        config: bundle,
        batch_proofs: Vec::new(),
    };
    match env.core.prove_bundle("u", &data, rng()) {
        Err(CoreError::Bundle(m)) => assert_eq!(m, "0 batch proofs for a bundle of 1 batches"),
        other => panic!("expected a bundle refusal, got {other:?}"),
    }
    let data = BundleTaskData {
        config: BundleConfig {
            num_batches: 17,
            ..bundle
        },
        ..data
    };
    match env.core.prove_bundle("u", &data, rng()) {
        Err(CoreError::Bundle(m)) => assert!(m.contains("num_batches 17 is outside"), "{m}"),
        other => panic!("expected a bundle refusal, got {other:?}"),
    }
}
