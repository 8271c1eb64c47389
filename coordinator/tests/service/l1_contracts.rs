//! The settlement contracts on a real L1 node (anvil): snark-verifier's Solidity verifier,
//! generated from the small chunk circuit's verifying key and compiled with solc, and our rollup
//! contract. A Keccak-transcript chunk proof finalises the root; a wrong proof, a stale root and
//! roots that are not the proof's are refused, and a refusal does not block the next valid one.

use crate::common;

use alloy::primitives::B256;
use common::anvil::{self, Anvil};
use coordinator::l1::chain::{finalize_calldata, L1};
use coordinator::l1::contracts::{self, RootLayout};
use coordinator::l1::L1Error;
use halo2curves::bn256::Fr;
use prover_core::evm::fr_be;
use prover_core::rollup::RollupState;
use prover_core::wire::{CircuitSpec, Transfer};
use rand::SeedableRng;

fn b256(x: &Fr) -> B256 {
    B256::from(fr_be(x))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollup_contract_finalises_verified_proofs_only() {
    let env = common::env();
    let spec = CircuitSpec::Chunk {
        config: common::SMALL,
    };

    // Two chained chunks, each proved with the Keccak transcript.
    let mut state = RollupState::genesis(common::SMALL.tree_depth, 4, 1000).expect("genesis");
    let genesis = state.root();
    let mut proofs = Vec::new();
    for nonce in 0..2 {
        let data = state
            .apply_chunk(
                common::SMALL,
                &[Transfer {
                    from: 0,
                    to: 1,
                    amount: 5,
                    nonce,
                }],
            )
            .expect("chunk");
        let rng = rand_chacha::ChaCha20Rng::seed_from_u64(nonce);
        proofs.push(
            env.core
                .prove_chunk_evm(&data, rng)
                .expect("EVM chunk proof"),
        );
    }

    let started = std::time::Instant::now();
    let source = env.core.evm_verifier(&spec).expect("verifier source");
    let built = contracts::build(&anvil::solc(), source, None).expect("compile");
    println!(
        "verifier: {} bytes of Solidity, {} bytes of runtime code; generated and compiled in {:.1} s",
        built.verifier_source.len(),
        built.verifier.deployed_size,
        started.elapsed().as_secs_f64()
    );
    let out = tempfile::tempdir().expect("tempdir");
    contracts::write(out.path(), &built).expect("write contracts");
    for f in contracts::FILES {
        assert!(out.path().join(f).is_file(), "{f} written");
    }
    assert_eq!(
        contracts::read_bytecode(out.path(), "Rollup").expect("read"),
        built.rollup.bytecode
    );

    let node = Anvil::start(&[]);
    let l1 = L1::connect(&node.url, anvil::CHAIN_ID, anvil::signer(anvil::DEV_KEY))
        .await
        .expect("connect");
    assert!(
        matches!(
            L1::connect(&node.url, 1, anvil::signer(anvil::DEV_KEY)).await,
            Err(L1Error::Config(_))
        ),
        "a wrong chain id is refused"
    );
    let (verifier, verifier_gas) = l1
        .deploy(&built.verifier.bytecode)
        .await
        .expect("deploy verifier");
    let layout = RootLayout {
        num_instances: 3,
        old_root_index: 0,
        new_root_index: 1,
    };
    // A rollup contract whose verifier has no code would accept anything: refused at deployment.
    let no_code = alloy::primitives::Address::repeat_byte(0x42);
    let err = l1
        .deploy(&contracts::rollup_deploy_code(
            &built.rollup,
            no_code,
            layout,
            b256(&genesis),
        ))
        .await
        .expect_err("a verifier without code");
    assert!(err.to_string().contains("NotAContract"), "{err}");
    let (rollup, _) = l1
        .deploy(&contracts::rollup_deploy_code(
            &built.rollup,
            verifier,
            layout,
            b256(&genesis),
        ))
        .await
        .expect("deploy rollup");
    assert_eq!(l1.rollup_root(rollup).await.expect("root"), b256(&genesis));

    let call = |i: usize, proof: &[u8]| {
        let (instances, _) = &proofs[i];
        let words: Vec<B256> = instances.iter().map(b256).collect();
        finalize_calldata(words[0], words[1], &words, proof)
    };

    // The second chunk first: its old root is not the current root.
    let err = l1
        .estimate_gas(Some(rollup), &call(1, &proofs[1].1))
        .await
        .expect_err("stale root");
    assert!(err.to_string().contains("StaleRoot"), "{err}");
    // A proof with one byte changed.
    let mut bad = proofs[0].1.clone();
    let at = bad.len() / 2;
    bad[at] ^= 1;
    let err = l1
        .estimate_gas(Some(rollup), &call(0, &bad))
        .await
        .expect_err("bad proof");
    assert!(err.to_string().contains("ProofRejected"), "{err}");
    // The right proof, but claiming a new root that is not its public input.
    let (inst0, proof0) = &proofs[0];
    let words: Vec<B256> = inst0.iter().map(b256).collect();
    let forged = finalize_calldata(words[0], B256::repeat_byte(7), &words, proof0);
    let err = l1
        .estimate_gas(Some(rollup), &forged)
        .await
        .expect_err("forged root");
    assert!(err.to_string().contains("RootsNotInInstances"), "{err}");
    // A refused transaction that is mined anyway (sent with a fixed gas limit) changes nothing.
    let nonce = l1.mined_nonce().await.expect("nonce");
    let fees = l1.fees().await.expect("fees");
    let signed = l1
        .sign(Some(rollup), &call(0, &bad), nonce, 1_000_000, fees)
        .await
        .expect("sign");
    l1.send_raw(&signed).await.expect("send");
    let receipt = l1.wait_receipt(signed.hash).await.expect("receipt");
    assert!(!receipt.status(), "the bad proof's transaction reverts");
    assert_eq!(l1.rollup_root(rollup).await.expect("root"), b256(&genesis));

    // Then both valid proofs, in order.
    for (i, proof) in proofs.iter().enumerate().take(2) {
        let input = call(i, &proof.1);
        let gas = l1
            .estimate_gas(Some(rollup), &input)
            .await
            .expect("estimate");
        let nonce = l1.mined_nonce().await.expect("nonce");
        let signed = l1
            .sign(Some(rollup), &input, nonce, gas + gas / 5, fees)
            .await
            .expect("sign");
        l1.send_raw(&signed).await.expect("send");
        let receipt = l1.wait_receipt(signed.hash).await.expect("receipt");
        assert!(receipt.status(), "finalisation {i} succeeds");
        println!(
            "finalize {i}: {} gas ({} calldata bytes, proof {} bytes); verifier deployment {} gas",
            receipt.gas_used,
            input.len(),
            proofs[i].1.len(),
            verifier_gas
        );
        assert_eq!(
            l1.rollup_root(rollup).await.expect("root"),
            b256(&proofs[i].0[1]),
            "the root is the proof's new root"
        );
    }
    assert_eq!(l1.rollup_finalized(rollup).await.expect("finalized"), 2);
    assert_eq!(b256(&proofs[1].0[1]), b256(&state.root()));
}

/// `coordinator l1-contracts` then `coordinator l1-deploy`: the contracts of the configured chunk
/// circuit, refused over EIP-170's size unless allowed, deployed on anvil at the configured
/// genesis root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_writes_and_deploys_the_contracts_of_a_configured_circuit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = tokio::task::block_in_place(|| common::config(dir.path()));
    let cfg_path = dir.path().join("coordinator.json");
    std::fs::write(&cfg_path, serde_json::to_string_pretty(&cfg).expect("json")).expect("write");
    let out = dir.path().join("contracts");
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_coordinator"))
                .args(&args)
                .output()
                .expect("run coordinator")
        })
    };
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "l1-contracts",
            "--config",
            cfg_path.to_str().expect("utf8"),
            "--circuit",
            "chunk",
            "--out",
            out.to_str().expect("utf8"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let refused = run(args(&[])).await.expect("join");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("EIP-170"), "{stderr}");
    let made = run(args(&["--allow-oversize"])).await.expect("join");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    for f in contracts::FILES {
        assert!(out.join(f).is_file(), "{f}");
    }

    let node = Anvil::start(&[]);
    let key_file = dir.path().join("deployer.key");
    std::fs::write(&key_file, anvil::DEV_KEY_2).expect("key");
    let deploy: Vec<String> = [
        "l1-deploy",
        "--config",
        cfg_path.to_str().expect("utf8"),
        "--circuit",
        "chunk",
        "--contracts",
        out.to_str().expect("utf8"),
        "--rpc-url",
        &node.url,
        "--chain-id",
        "31337",
        "--key-file",
        key_file.to_str().expect("utf8"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let deployed = run(deploy).await.expect("join");
    let stdout = String::from_utf8_lossy(&deployed.stdout).to_string();
    assert!(
        deployed.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&deployed.stderr)
    );
    let rollup: alloy::primitives::Address = stdout
        .lines()
        .find_map(|l| l.strip_prefix("rollup "))
        .and_then(|l| l.split_whitespace().next())
        .expect("the rollup address is printed")
        .parse()
        .expect("an address");
    let l1 = L1::connect(&node.url, anvil::CHAIN_ID, anvil::signer(anvil::DEV_KEY))
        .await
        .expect("connect");
    assert_eq!(
        l1.rollup_root(rollup).await.expect("root"),
        coordinator::genesis_root(&cfg).expect("genesis root")
    );
}
