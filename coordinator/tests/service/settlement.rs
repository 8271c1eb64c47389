//! Settlement (the TxManager) against a real L1 node (anvil): items finalised in order after
//! their confirmations; a transaction dropped from the pool re-sent with a higher fee; a reorg
//! after one confirmation answered by sending again, the root ending right; a refused proof that
//! waits for a new one without blocking the items after it; an item another sender finalised
//! skipped once that finalisation is as deep as the confirmations ask; the coordinator killed
//! between send and confirmation resuming without a second finalisation; the node stopped for
//! 30 s and settlement continuing.
//!
//! The items are Keccak-transcript proofs of the small chunk circuit (cheap enough for CI) with
//! its generated Solidity verifier; the store is redb, or PostgreSQL when
//! `COORDINATOR_TEST_POSTGRES` is set.

use crate::common;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256};
use common::anvil::{self, Anvil};
use coordinator::l1::chain::{finalize_calldata, L1};
use coordinator::l1::contracts::{self, Contracts, RootLayout};
use coordinator::settle::{self, LoopStats, Policy, SettleState, Settlement, Settler};
use coordinator::store::Store;
use halo2curves::bn256::Fr;
use prover_core::evm::fr_be;
use prover_core::rollup::RollupState;
use prover_core::wire::{CircuitSpec, Transfer};
use rand::SeedableRng;
use serde_json::{json, Value};

fn b256(x: &Fr) -> B256 {
    B256::from(fr_be(x))
}

/// A proof ready to settle.
#[derive(Clone)]
struct Item {
    old_root: B256,
    new_root: B256,
    instances: Vec<B256>,
    proof: Vec<u8>,
}

struct Fixture {
    genesis: B256,
    items: Vec<Item>,
    contracts: Contracts,
}

const ITEMS: u64 = 3;

/// Three chained chunk proofs (Keccak transcript) and the compiled contracts, once per binary.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let env = common::env();
        let mut state = RollupState::genesis(common::SMALL.tree_depth, 4, 1000).expect("genesis");
        let genesis = b256(&state.root());
        let items = (0..ITEMS)
            .map(|nonce| {
                let data = state
                    .apply_chunk(
                        common::SMALL,
                        &[Transfer {
                            from: 1,
                            to: 2,
                            amount: 3,
                            nonce,
                        }],
                    )
                    .expect("chunk");
                let rng = rand_chacha::ChaCha20Rng::seed_from_u64(100 + nonce);
                let (instances, proof) = env.core.prove_chunk_evm(&data, rng).expect("proof");
                Item {
                    old_root: b256(&instances[0]),
                    new_root: b256(&instances[1]),
                    instances: instances.iter().map(b256).collect(),
                    proof,
                }
            })
            .collect();
        let spec = CircuitSpec::Chunk {
            config: common::SMALL,
        };
        let source = env.core.evm_verifier(&spec).expect("verifier");
        let contracts = contracts::build(&anvil::solc(), source, None).expect("compile");
        Fixture {
            genesis,
            items,
            contracts,
        }
    })
}

/// A node with the contracts deployed, a store, and a settler over both.
struct World {
    node: Anvil,
    l1: L1,
    rollup: Address,
    store: Arc<Store>,
    stats: Arc<LoopStats>,
    _dir: tempfile::TempDir,
}

const LAYOUT: RootLayout = RootLayout {
    num_instances: 3,
    old_root_index: 0,
    new_root_index: 1,
};

async fn world(anvil_args: &[&str]) -> World {
    let f = fixture();
    let node = Anvil::start(anvil_args);
    let l1 = L1::connect_with_timeout(
        &node.url,
        anvil::CHAIN_ID,
        anvil::signer(anvil::DEV_KEY),
        Duration::from_secs(2),
    )
    .await
    .expect("connect");
    let automine = anvil_args.is_empty();
    if !automine {
        rpc(&l1, "evm_setAutomine", json!([true])).await;
    }
    let (verifier, _) = l1
        .deploy(&f.contracts.verifier.bytecode)
        .await
        .expect("verifier");
    let code = contracts::rollup_deploy_code(&f.contracts.rollup, verifier, LAYOUT, f.genesis);
    let (rollup, _) = l1.deploy(&code).await.expect("rollup");
    if !automine {
        rpc(&l1, "evm_setAutomine", json!([false])).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.redb");
    let store = Arc::new(sync(|| match common::fresh_database() {
        Some(url) => Store::open_postgres(&url).expect("pg store"),
        None => Store::open(&path).expect("redb store"),
    }));
    World {
        node,
        l1,
        rollup,
        store,
        stats: Arc::default(),
        _dir: dir,
    }
}

impl World {
    fn settler(&self, policy: Policy) -> Settler {
        Settler::new(
            self.store.clone(),
            self.l1.clone(),
            self.rollup,
            policy,
            self.stats.clone(),
        )
    }

    fn enqueue(&self, i: usize) -> u64 {
        let it = &fixture().items[i];
        sync(|| {
            settle::enqueue(
                &self.store,
                &format!("bundle-{i}"),
                it.old_root,
                it.new_root,
                it.instances.clone(),
                it.proof.clone(),
            )
        })
        .expect("enqueue")
    }

    fn item(&self, index: u64) -> Settlement {
        sync(|| settle::item(&self.store, index))
            .expect("read")
            .expect("item")
    }

    async fn mine(&self, blocks: u64) {
        for _ in 0..blocks {
            rpc(&self.l1, "evm_mine", json!([])).await;
        }
    }

    /// Ticks until `index` is in `state` (at most `ticks` polls); mines one block per tick when
    /// `mine` (so that confirmations come).
    async fn until(&self, s: &Settler, index: u64, state: SettleState, mine: bool, ticks: usize) {
        for _ in 0..ticks {
            s.tick().await.expect("tick");
            if self.item(index).state == state {
                return;
            }
            if mine {
                self.mine(1).await;
            }
        }
        panic!(
            "item {index} did not reach {state:?} in {ticks} polls: {:?}",
            self.item(index)
        );
    }

    /// Ticks until `index` is sent, waits for the node to mine it (anvil automines, but not
    /// before its answer to the send), then ticks until the item is recorded as mined.
    async fn until_mined(&self, s: &Settler, index: u64) {
        self.until(s, index, SettleState::Sent, false, 3).await;
        let hash = self.item(index).last_tx().expect("a transaction").hash;
        self.l1.wait_receipt(hash).await.expect("mined");
        self.until(s, index, SettleState::Mined, false, 2).await;
    }

    async fn root(&self) -> B256 {
        self.l1.rollup_root(self.rollup).await.expect("root")
    }

    async fn finalized(&self) -> u64 {
        self.l1
            .rollup_finalized(self.rollup)
            .await
            .expect("finalized")
    }
}

/// A blocking store call from the test's async code (the PostgreSQL backend runs its own
/// runtime, which may not be entered from a runtime thread).
fn sync<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

async fn rpc(l1: &L1, method: &'static str, params: Value) -> Value {
    use alloy::providers::Provider;
    l1.provider()
        .raw_request::<_, Value>(method.into(), params)
        .await
        .unwrap_or_else(|e| panic!("{method}: {e}"))
}

fn policy(confirmations: u64, resend_after_ms: u64) -> Policy {
    Policy {
        confirmations,
        resend_after_ms,
        max_fee_per_gas: 500_000_000_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_are_finalised_in_order_after_their_confirmations() {
    let w = world(&[]).await;
    let f = fixture();
    for i in 0..ITEMS as usize {
        assert_eq!(w.enqueue(i), i as u64);
    }
    let s = w.settler(policy(3, 60_000));
    for i in 0..ITEMS {
        w.until_mined(&s, i).await;
        // Mined but not yet 3 deep: nothing more happens without blocks.
        s.tick().await.expect("tick");
        assert_eq!(w.item(i).state, SettleState::Mined);
        if i + 1 < ITEMS {
            assert_eq!(
                w.item(i + 1).state,
                SettleState::Queued,
                "one item at a time"
            );
        }
        w.until(&s, i, SettleState::Finalized, true, 5).await;
        let item = w.item(i);
        assert_eq!(item.txs.len(), 1);
        assert_eq!(item.finalized_by, Some(item.txs[0].hash));
        assert_eq!(w.root().await, f.items[i as usize].new_root);
    }
    assert_eq!(w.finalized().await, ITEMS);
    let summary = sync(|| settle::summary(&w.store)).expect("summary");
    assert_eq!((summary.enqueued, summary.finalized), (ITEMS, ITEMS));
    assert_eq!(
        summary.last_root,
        Some(f.items[ITEMS as usize - 1].new_root)
    );
    // Nothing left: polls do nothing.
    s.tick().await.expect("idle tick");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_dropped_from_the_pool_is_resent_with_a_higher_fee() {
    let w = world(&["--no-mining"]).await;
    w.enqueue(0);
    // Re-send as soon as a poll finds it unmined.
    let s = w.settler(policy(1, 0));
    w.until(&s, 0, SettleState::Sent, false, 2).await;
    let first = w.item(0).txs[0].clone();
    rpc(&w.l1, "anvil_dropTransaction", json!([first.hash])).await;
    s.tick().await.expect("tick");
    let item = w.item(0);
    assert_eq!(item.txs.len(), 2, "re-signed: {item:?}");
    assert_eq!(item.resends, 1);
    let second = &item.txs[1];
    assert_eq!(second.nonce, first.nonce, "same nonce");
    assert!(second.fees.max_fee_per_gas > first.fees.max_fee_per_gas);
    assert!(second.fees.max_priority_fee_per_gas > first.fees.max_priority_fee_per_gas);
    w.mine(1).await;
    w.until(&s, 0, SettleState::Finalized, false, 2).await;
    assert_eq!(w.item(0).finalized_by, Some(second.hash));
    assert_eq!(w.root().await, fixture().items[0].new_root);
    assert_eq!(w.finalized().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmined_transaction_waits_for_the_resend_timeout() {
    let w = world(&["--no-mining"]).await;
    w.enqueue(0);
    let s = w.settler(policy(1, 3_600_000));
    w.until(&s, 0, SettleState::Sent, false, 2).await;
    for _ in 0..3 {
        s.tick().await.expect("tick");
    }
    let item = w.item(0);
    assert_eq!(
        (item.txs.len(), item.resends),
        (1, 0),
        "no re-send before the timeout"
    );
    // Dropped from the pool, the same transaction is sent again byte for byte at the next poll.
    rpc(&w.l1, "anvil_dropTransaction", json!([item.txs[0].hash])).await;
    s.tick().await.expect("tick");
    w.mine(1).await;
    w.until(&s, 0, SettleState::Finalized, false, 2).await;
    assert_eq!(w.item(0).finalized_by, Some(item.txs[0].hash));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_after_one_confirmation_sends_again_and_the_root_ends_right() {
    let w = world(&[]).await;
    w.enqueue(0);
    w.enqueue(1);
    let s = w.settler(policy(3, 60_000));
    let snapshot = rpc(&w.l1, "evm_snapshot", json!([])).await;
    w.until_mined(&s, 0).await;
    let mined = w.item(0).mined.expect("mined");
    w.mine(1).await; // one block on top: 2 of the 3 confirmations
    s.tick().await.expect("tick");
    assert_eq!(w.item(0).state, SettleState::Mined);
    assert_eq!(w.root().await, fixture().items[0].new_root);
    // The chain goes back to before the finalisation (anvil drops the blocks and their
    // transactions).
    assert_eq!(
        rpc(&w.l1, "evm_revert", json!([snapshot])).await,
        json!(true)
    );
    assert_eq!(w.root().await, fixture().genesis);
    s.tick().await.expect("tick");
    let item = w.item(0);
    assert_eq!(item.state, SettleState::Sent, "{item:?}");
    assert_eq!(item.reorgs, 1);
    w.until(&s, 0, SettleState::Finalized, true, 8).await;
    let item = w.item(0);
    assert_eq!(item.txs.len(), 1, "the same transaction, sent again");
    assert_eq!(item.finalized_by, Some(mined.hash));
    w.until(&s, 1, SettleState::Finalized, true, 8).await;
    assert_eq!(w.root().await, fixture().items[1].new_root);
    assert_eq!(w.finalized().await, 2, "each item finalised once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_proof_waits_for_a_new_one_and_the_items_after_it_follow() {
    let w = world(&[]).await;
    let f = fixture();
    let it = &f.items[0];
    let mut bad = it.proof.clone();
    bad[100] ^= 1;
    sync(|| {
        settle::enqueue(
            &w.store,
            "bundle-0",
            it.old_root,
            it.new_root,
            it.instances.clone(),
            bad,
        )
    })
    .expect("enqueue");
    w.enqueue(1);
    let s = w.settler(policy(1, 60_000));
    w.until(&s, 0, SettleState::Refused, false, 2).await;
    let item = w.item(0);
    assert!(item.txs.is_empty(), "refused before anything was sent");
    assert!(
        item.note.as_deref().unwrap_or("").contains("ProofRejected"),
        "{item:?}"
    );
    assert_eq!(w.stats.refusals.get(), 1);
    // Polls leave it (and the one after it) alone.
    for _ in 0..2 {
        s.tick().await.expect("tick");
    }
    assert_eq!(w.item(1).state, SettleState::Queued);
    // A proof for other roots is not taken.
    let other = &f.items[1];
    let wrong = sync(|| {
        settle::replace_proof(
            &w.store,
            0,
            other.old_root,
            other.new_root,
            other.instances.clone(),
            other.proof.clone(),
        )
    })
    .expect("store");
    assert!(matches!(wrong, Err(settle::ReplaceError::Roots { .. })));
    // The new proof: item 0 settles, then item 1.
    sync(|| {
        settle::replace_proof(
            &w.store,
            0,
            it.old_root,
            it.new_root,
            it.instances.clone(),
            it.proof.clone(),
        )
    })
    .expect("store")
    .expect("replaced");
    w.until(&s, 0, SettleState::Finalized, true, 4).await;
    w.until(&s, 1, SettleState::Finalized, true, 4).await;
    assert_eq!(w.root().await, f.items[1].new_root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_another_sender_finalised_is_skipped() {
    let w = world(&[]).await;
    let f = fixture();
    w.enqueue(0);
    w.enqueue(1);
    // Another account finalises item 0 before our loop runs.
    let other = L1::connect(
        &w.node.url,
        anvil::CHAIN_ID,
        anvil::signer(anvil::DEV_KEY_2),
    )
    .await
    .expect("connect");
    let it = &f.items[0];
    let input = finalize_calldata(it.old_root, it.new_root, &it.instances, &it.proof);
    let gas = other
        .estimate_gas(Some(w.rollup), &input)
        .await
        .expect("estimate");
    let signed = other
        .sign(
            Some(w.rollup),
            &input,
            other.mined_nonce().await.expect("nonce"),
            gas * 2,
            other.fees().await.expect("fees"),
        )
        .await
        .expect("sign");
    other.send_raw(&signed).await.expect("send");
    assert!(other
        .wait_receipt(signed.hash)
        .await
        .expect("receipt")
        .status());
    let nonce_before = w.l1.mined_nonce().await.expect("nonce");

    // Three confirmations: the other transaction's block is the head, so item 0 waits (nothing
    // sent) until two more blocks cover it.
    let s = w.settler(policy(3, 60_000));
    for _ in 0..3 {
        s.tick().await.expect("tick");
    }
    assert_eq!(w.item(0).state, SettleState::Queued, "final only when deep");
    assert!(w.item(0).txs.is_empty());
    w.mine(1).await;
    s.tick().await.expect("tick");
    assert_eq!(
        w.item(0).state,
        SettleState::Queued,
        "one block over it: not yet"
    );
    w.mine(1).await;
    w.until(&s, 0, SettleState::Finalized, false, 2).await;
    let item = w.item(0);
    assert_eq!(item.finalized_by, None, "finalised by another sender");
    assert!(item.txs.is_empty(), "nothing sent for it");
    w.until(&s, 1, SettleState::Finalized, true, 6).await;
    assert_eq!(w.root().await, f.items[1].new_root);
    assert_eq!(
        w.l1.mined_nonce().await.expect("nonce"),
        nonce_before + 1,
        "one transaction of ours: item 1's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_waits_while_the_node_is_stopped_for_30_s_and_continues() {
    let w = world(&[]).await;
    w.enqueue(0);
    w.enqueue(1);
    let s = w.settler(policy(2, 60_000));
    w.until_mined(&s, 0).await;
    // The node stops answering (SIGSTOP: its state is kept; connections are accepted by the
    // kernel and never answered).
    w.node.pause();
    let stopped = Instant::now();
    let before = w.item(0);
    let mut failures = 0;
    while stopped.elapsed() < Duration::from_secs(30) {
        match s.tick().await {
            Err(settle::StepError::L1(_)) => failures += 1,
            other => panic!("a poll while the node is stopped: {other:?}"),
        }
    }
    assert!(failures > 0);
    assert_eq!(w.item(0), before, "nothing changes while the node is away");
    w.node.resume();
    w.until(&s, 0, SettleState::Finalized, true, 4).await;
    w.until(&s, 1, SettleState::Finalized, true, 6).await;
    assert_eq!(w.root().await, fixture().items[1].new_root);
    assert_eq!(w.finalized().await, 2);
}

/// `GET /admin/v1/status` of a running coordinator.
async fn status(url: &str, token: &str) -> coordinator::StatusReport {
    let v: Value = reqwest::Client::new()
        .get(format!("{url}/admin/v1/status"))
        .bearer_auth(token)
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    serde_json::from_value(v["data"].clone()).expect("status report")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_killed_between_send_and_confirmation_resumes_without_a_second_finalisation(
) {
    let w = world(&["--no-mining"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = sync(|| common::config(dir.path()));
    let key_file = dir.path().join("l1.key");
    std::fs::write(&key_file, anvil::DEV_KEY).expect("key file");
    cfg.settlement = Some(settle::SettlementConfig {
        rpc_url: w.node.url.clone(),
        chain_id: anvil::CHAIN_ID,
        key_file,
        contract: w.rollup,
        confirmations: 3,
        resend_after_s: 3600,
        max_fee_gwei: 500,
        poll_ms: 100,
    });
    sync(|| {
        let store = Store::from_config(&cfg).expect("store");
        for (i, it) in fixture().items.iter().take(2).enumerate() {
            settle::enqueue(
                &store,
                &format!("bundle-{i}"),
                it.old_root,
                it.new_root,
                it.instances.clone(),
                it.proof.clone(),
            )
            .expect("enqueue");
        }
    });
    let nonce_before = w.l1.mined_nonce().await.expect("nonce");

    // First run: the finalisation of item 0 is sent, then the process is killed before any
    // block includes it.
    let (mut child, url, _lines) = common::spawn_serve(dir.path(), "c.json", &cfg);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let l1 = status(&url, &cfg.admin_token).await.l1.expect("l1 view");
        if l1.current_state.as_deref() == Some("sent") {
            assert!(l1.pending_tx.is_some());
            break;
        }
        assert!(Instant::now() < deadline, "never sent: {l1:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");

    // The transaction is mined while the coordinator is down.
    w.mine(1).await;
    assert_eq!(w.root().await, fixture().items[0].new_root);

    // Second run: it finds its transaction mined, waits for the confirmations, and goes on.
    let (mut child, url, _lines) = common::spawn_serve(dir.path(), "c.json", &cfg);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let l1 = status(&url, &cfg.admin_token).await.l1.expect("l1 view");
        if l1.finalized == 2 {
            assert_eq!(l1.last_root, Some(fixture().items[1].new_root));
            break;
        }
        assert!(Instant::now() < deadline, "not settled: {l1:?}");
        w.mine(1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    assert_eq!(w.finalized().await, 2);
    assert_eq!(
        w.l1.mined_nonce().await.expect("nonce"),
        nonce_before + 2,
        "exactly two finalisation transactions"
    );
    let item = sync(|| {
        let store = Store::from_config(&cfg).expect("store");
        settle::item(&store, 0).expect("read").expect("item 0")
    });
    assert_eq!(
        item.txs.len(),
        1,
        "item 0 was not signed a second time: {item:?}"
    );
    assert_eq!(item.finalized_by, Some(item.txs[0].hash));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_malformed_settlement_key_stops_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = sync(|| common::config(dir.path()));
    let mut settlement = settle::SettlementConfig {
        rpc_url: "http://127.0.0.1:1".into(),
        chain_id: anvil::CHAIN_ID,
        key_file: dir.path().join("missing.key"),
        contract: Address::ZERO,
        confirmations: 3,
        resend_after_s: 60,
        max_fee_gwei: 500,
        poll_ms: 100,
    };
    cfg.settlement = Some(settlement.clone());
    let core = common::env().core.clone();
    let err = match coordinator::Coordinator::start(cfg.clone(), core.clone()).await {
        Ok(_) => panic!("started without its settlement key"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("settlement key") && err.contains("missing.key"),
        "{err}"
    );
    std::fs::write(dir.path().join("bad.key"), "not a key").expect("write");
    settlement.key_file = dir.path().join("bad.key");
    cfg.settlement = Some(settlement);
    let err = match coordinator::Coordinator::start(cfg, core).await {
        Ok(_) => panic!("started with a malformed settlement key"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("not a hex private key"), "{err}");
}
