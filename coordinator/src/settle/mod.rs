//! Settlement on L1 (the TxManager): each item (a verified bundle proof) is finalised on the
//! rollup contract in order, with the coordinator's own L1 key.
//!
//! The rules are in [`rules`]; this module is the loop that reads the node, asks the rules,
//! commits the change in the coordinator's store and only then acts on the node. Every change is
//! one store transaction that commits only over the version of the record it was decided on, so
//! a crash or restart at any point, or a second replica running the same loop, neither sends a
//! second finalisation for an item nor skips one: a transaction is recorded (hash and raw bytes)
//! before it is sent, and sent again, byte for byte, until it has a receipt.
//!
//! The settlement key must be used by nothing else: its nonces are this loop's.

pub mod rules;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, Bytes, B256};
use alloy::signers::local::PrivateKeySigner;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::l1::chain::{finalize_calldata, L1};
use crate::l1::L1Error;
use crate::store::{Store, Txn};
use crate::{now_ms, CoordinatorError};
pub use rules::{Observed, Policy, Preflight, Receipt, SentTx, SettleState, Settlement, Step};

type R<T> = Result<T, CoordinatorError>;

/// Counter: index of the item being settled (every item before it is final).
const NEXT: &str = "settle_next";
/// Counter: items enqueued (the next item's index).
const ENQUEUED: &str = "settle_enqueued";
/// How many items after the current one are read for their old roots.
const LOOKAHEAD: u64 = 16;

/// `settlement` in the coordinator's configuration.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SettlementConfig {
    /// JSON-RPC URL of the L1 node.
    pub rpc_url: String,
    /// The chain id the node must report (checked at start; transactions are signed for it).
    pub chain_id: u64,
    /// File holding the settlement account's private key (hex, `0x` optional).
    pub key_file: PathBuf,
    /// The rollup contract.
    pub contract: Address,
    /// Blocks that must contain or follow a finalisation before it is final (default 3).
    #[serde(default = "default_confirmations")]
    pub confirmations: u64,
    /// A finalisation not mined after this many seconds is re-sent with a higher fee (default 60).
    #[serde(default = "default_resend_after_s")]
    pub resend_after_s: u64,
    /// Highest max fee per gas ever signed, in gwei (default 500).
    #[serde(default = "default_max_fee_gwei")]
    pub max_fee_gwei: u64,
    /// How often the node is polled, in milliseconds (default 2000).
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
}

fn default_confirmations() -> u64 {
    3
}
fn default_resend_after_s() -> u64 {
    60
}
fn default_max_fee_gwei() -> u64 {
    500
}
fn default_poll_ms() -> u64 {
    2000
}

impl SettlementConfig {
    pub fn policy(&self) -> Policy {
        Policy {
            confirmations: self.confirmations.max(1),
            resend_after_ms: self.resend_after_s.saturating_mul(1000),
            max_fee_per_gas: u128::from(self.max_fee_gwei) * 1_000_000_000,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.rpc_url.trim().is_empty() {
            return Err("settlement.rpc_url is empty".into());
        }
        if self.poll_ms == 0 || self.resend_after_s == 0 || self.max_fee_gwei == 0 {
            return Err(
                "settlement.poll_ms, resend_after_s and max_fee_gwei must be positive".into(),
            );
        }
        Ok(())
    }

    /// Reads the private key from `key_file`.
    pub fn signer(&self) -> Result<PrivateKeySigner, CoordinatorError> {
        let text =
            std::fs::read_to_string(&self.key_file).map_err(|source| CoordinatorError::Io {
                what: format!("reading the settlement key {}", self.key_file.display()),
                source,
            })?;
        text.trim().parse().map_err(|e| {
            CoordinatorError::Config(format!(
                "the settlement key in {} is not a hex private key: {e}",
                self.key_file.display()
            ))
        })
    }
}

/// The L1 view of `status` and `/metrics`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct L1Summary {
    /// Items enqueued, and how many of them are final.
    pub enqueued: u64,
    pub finalized: u64,
    /// The last final item: its label and new root.
    pub last_finalized: Option<String>,
    pub last_root: Option<B256>,
    /// The item being settled, its state, its last transaction and its confirmations.
    pub current: Option<String>,
    pub current_state: Option<String>,
    pub pending_tx: Option<B256>,
    /// The block its finalisation was mined in.
    pub mined_block: Option<u64>,
    /// Of the current item: re-sends with a higher fee, reorgs that dropped its transaction, and
    /// why it was refused or sent back.
    pub resends: u32,
    pub reorgs: u32,
    pub note: Option<String>,
}

fn read(tx: &mut dyn Txn, index: u64) -> R<Option<Settlement>> {
    tx.settlement(index)?
        .map(|t| crate::store::from_json(&t))
        .transpose()
}

fn write(tx: &mut dyn Txn, item: &Settlement) -> R<()> {
    tx.put_settlement(item.index, &crate::store::to_json(item)?)
}

/// Adds an item to settle after every item enqueued before it; returns its index.
pub fn enqueue(
    store: &Store,
    label: &str,
    old_root: B256,
    new_root: B256,
    instances: Vec<B256>,
    proof: Vec<u8>,
) -> R<u64> {
    let proof = Bytes::from(proof);
    store.transaction(|tx| {
        enqueue_in(
            tx,
            label,
            old_root,
            new_root,
            instances.clone(),
            proof.clone(),
            now_ms(),
        )
    })
}

/// As [`enqueue`], inside the caller's transaction.
pub fn enqueue_in(
    tx: &mut dyn Txn,
    label: &str,
    old_root: B256,
    new_root: B256,
    instances: Vec<B256>,
    proof: Bytes,
    now_ms: u64,
) -> R<u64> {
    let index = tx.counter(ENQUEUED)?;
    let item = Settlement::new(
        index,
        label.to_string(),
        old_root,
        new_root,
        instances,
        proof,
        now_ms,
    );
    write(tx, &item)?;
    tx.set_counter(ENQUEUED, index + 1)?;
    Ok(index)
}

/// Enqueues a verified proof (the scheduler's verified bundles), its roots read where its circuit
/// puts them, inside the caller's transaction.
pub fn enqueue_proof(
    tx: &mut dyn Txn,
    label: &str,
    proof: &prover_core::wire::ProofPayload,
    now_ms: u64,
) -> R<u64> {
    let layout = crate::l1::contracts::RootLayout::for_circuit(&proof.spec);
    if proof.instances.len() != layout.num_instances {
        return Err(CoordinatorError::store(
            "enqueue for settlement",
            format!(
                "{label} has {} public inputs, its circuit {}",
                proof.instances.len(),
                layout.num_instances
            ),
        ));
    }
    let words: Vec<B256> = proof
        .instances
        .iter()
        .map(|x| B256::from(prover_core::evm::fr_be(&x.0)))
        .collect();
    enqueue_in(
        tx,
        label,
        words[layout.old_root_index],
        words[layout.new_root_index],
        words,
        Bytes::from(proof.proof.0.clone()),
        now_ms,
    )
}

/// Item `index`.
pub fn item(store: &Store, index: u64) -> R<Option<Settlement>> {
    store.transaction(|tx| read(tx, index))
}

/// The item being settled (`None` when every item is final) and the old roots of up to
/// [`LOOKAHEAD`] items after it.
pub fn current(store: &Store) -> R<Option<(Settlement, Vec<B256>)>> {
    store.transaction(|tx| {
        let next = tx.counter(NEXT)?;
        let Some(item) = read(tx, next)? else {
            return Ok(None);
        };
        let mut later = Vec::new();
        for i in next + 1..next + 1 + LOOKAHEAD {
            match read(tx, i)? {
                Some(it) => later.push(it.old_root),
                None => break,
            }
        }
        Ok(Some((item, later)))
    })
}

/// Commits `next` over the stored record of version `next.version - 1`; a final item moves the
/// cursor on. `false` when the record changed meanwhile (another replica's loop, or a new proof):
/// nothing is written and the caller decides again.
pub fn commit(store: &Store, next: &Settlement) -> R<bool> {
    store.transaction(|tx| {
        let Some(stored) = read(tx, next.index)? else {
            return Ok(false);
        };
        if stored.version + 1 != next.version {
            return Ok(false);
        }
        write(tx, next)?;
        if next.state == SettleState::Finalized && tx.counter(NEXT)? == next.index {
            tx.set_counter(NEXT, next.index + 1)?;
        }
        Ok(true)
    })
}

/// Why a new proof cannot replace an item's.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplaceError {
    #[error("no settlement item {0}")]
    Unknown(u64),
    #[error("settlement item {index} is {state}, not refused")]
    NotRefused { index: u64, state: &'static str },
    #[error("the new proof is for roots {old} → {new}, the item's are {want_old} → {want_new}")]
    Roots {
        old: B256,
        new: B256,
        want_old: B256,
        want_new: B256,
    },
}

/// Gives a refused item a new proof (of the same roots) and queues it again.
pub fn replace_proof(
    store: &Store,
    index: u64,
    old_root: B256,
    new_root: B256,
    instances: Vec<B256>,
    proof: Vec<u8>,
) -> R<Result<(), ReplaceError>> {
    let proof = Bytes::from(proof);
    store.transaction(|tx| {
        let Some(mut item) = read(tx, index)? else {
            return Ok(Err(ReplaceError::Unknown(index)));
        };
        if item.state != SettleState::Refused {
            return Ok(Err(ReplaceError::NotRefused {
                index,
                state: item.state.name(),
            }));
        }
        if (item.old_root, item.new_root) != (old_root, new_root) {
            return Ok(Err(ReplaceError::Roots {
                old: old_root,
                new: new_root,
                want_old: item.old_root,
                want_new: item.new_root,
            }));
        }
        item.instances = instances.clone();
        item.proof = proof.clone();
        item.state = SettleState::Queued;
        item.version += 1;
        item.updated_ms = now_ms();
        write(tx, &item)?;
        Ok(Ok(()))
    })
}

/// The L1 view for `status` and `/metrics`.
pub fn summary(store: &Store) -> R<L1Summary> {
    store.transaction(|tx| {
        let next = tx.counter(NEXT)?;
        let enqueued = tx.counter(ENQUEUED)?;
        let mut s = L1Summary {
            enqueued,
            finalized: next,
            ..Default::default()
        };
        if next > 0 {
            if let Some(last) = read(tx, next - 1)? {
                s.last_finalized = Some(last.label);
                s.last_root = Some(last.new_root);
            }
        }
        if let Some(cur) = read(tx, next)? {
            s.current = Some(cur.label.clone());
            s.current_state = Some(cur.state.name().into());
            s.pending_tx = cur.last_tx().map(|t| t.hash);
            s.resends = cur.resends;
            s.reorgs = cur.reorgs;
            s.note = cur.note.clone();
            s.mined_block = cur.mined.as_ref().map(|m| m.block);
        }
        Ok(s)
    })
}

/// Counters of the loop (registered in `/metrics` by [`crate::metrics::Metrics`]).
#[derive(Debug, Default)]
pub struct LoopStats {
    pub resends: Counter,
    pub reorgs: Counter,
    pub rpc_errors: Counter,
    pub refusals: Counter,
    pub finalized: Counter,
    /// The node's head block at the last successful poll.
    pub head: Gauge,
}

/// The settlement loop's state.
pub struct Settler {
    store: Arc<Store>,
    l1: L1,
    rollup: Address,
    policy: Policy,
    stats: Arc<LoopStats>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> R<T> + Send + 'static) -> R<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CoordinatorError::Join(format!("settlement: {e}")))?
}

/// An error of one step: the node (retried at the next poll) or the store.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    L1(#[from] L1Error),
    #[error(transparent)]
    Store(#[from] CoordinatorError),
}

impl Settler {
    pub fn new(
        store: Arc<Store>,
        l1: L1,
        rollup: Address,
        policy: Policy,
        stats: Arc<LoopStats>,
    ) -> Self {
        Self {
            store,
            l1,
            rollup,
            policy,
            stats,
        }
    }

    /// Connects (retrying every `poll` until the node answers) and runs until `cancel`.
    pub async fn run(
        store: Arc<Store>,
        config: SettlementConfig,
        stats: Arc<LoopStats>,
        cancel: CancellationToken,
    ) -> Result<(), CoordinatorError> {
        let signer = config.signer()?;
        let poll = Duration::from_millis(config.poll_ms);
        let l1 = loop {
            match L1::connect(&config.rpc_url, config.chain_id, signer.clone()).await {
                Ok(l1) => break l1,
                Err(L1Error::Config(e)) => return Err(CoordinatorError::Config(e)),
                Err(e) => {
                    stats.rpc_errors.inc();
                    tracing::warn!(error = %e, "settlement: the L1 node is not reachable; retrying");
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(poll) => {}
            }
        };
        tracing::info!(
            account = %l1.address(),
            contract = %config.contract,
            chain_id = config.chain_id,
            "settlement: connected to L1"
        );
        let settler = Settler::new(store, l1, config.contract, config.policy(), stats);
        let mut failing = false;
        loop {
            match settler.tick().await {
                Ok(()) => {
                    if failing {
                        tracing::info!("settlement: the L1 node answers again");
                    }
                    failing = false;
                }
                Err(StepError::L1(e)) => {
                    settler.stats.rpc_errors.inc();
                    // Once per outage, then quietly until it answers again.
                    if !failing {
                        tracing::warn!(error = %e, "settlement: waiting for the L1 node");
                    }
                    failing = true;
                }
                Err(StepError::Store(e)) => tracing::error!(error = %e, "settlement: store"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Reads the node for `item`.
    async fn observe(&self, item: &Settlement, later: Vec<B256>) -> Result<Observed, L1Error> {
        let head = self.l1.block_number().await?;
        self.stats.head.set(i64::try_from(head).unwrap_or(i64::MAX));
        let root = self.l1.rollup_root(self.rollup).await?;
        // The root `confirmations` deep: another sender's finalisation counts once it is there.
        let deep = (head + 1).saturating_sub(self.policy.confirmations.max(1));
        let deep_root = if deep >= head {
            Some(root)
        } else {
            self.l1.rollup_root_at(self.rollup, deep).await?
        };
        let mined_nonce = self.l1.mined_nonce().await?;
        // Only the transactions of the current nonce: an earlier one that reverted sent the
        // item back to the queue already, and must not send it back again.
        let nonce = item.last_tx().map(|t| t.nonce);
        let mut receipt = None;
        for tx in item.txs.iter().rev().filter(|t| Some(t.nonce) == nonce) {
            if let Some(r) = self.l1.receipt(tx.hash).await? {
                if let (Some(block), Some(block_hash)) = (r.block_number, r.block_hash) {
                    receipt = Some(Receipt {
                        hash: tx.hash,
                        block,
                        block_hash,
                        success: r.status(),
                    });
                    break;
                }
            }
        }
        let canonical_hash = match &item.mined {
            Some(m) => self.l1.block_hash(m.block).await?,
            None => None,
        };
        Ok(Observed {
            now_ms: now_ms(),
            head,
            root,
            deep_root,
            mined_nonce,
            receipt,
            canonical_hash,
            later_old_roots: later,
        })
    }

    /// One poll: decide the current item's next step and take it.
    pub async fn tick(&self) -> Result<(), StepError> {
        let store = self.store.clone();
        let Some((item, later)) = blocking(move || current(&store)).await? else {
            return Ok(());
        };
        if item.state == SettleState::Refused {
            return Ok(());
        }
        let obs = self.observe(&item, later).await?;
        let step = rules::decide(&item, &obs, &self.policy);
        match &step {
            Step::Wait => {
                if item.state == SettleState::Sent {
                    if let Some(tx) = item.last_tx() {
                        self.send(tx).await?;
                    }
                }
                Ok(())
            }
            Step::Stale(root) => {
                tracing::debug!(index = item.index, %root, "settlement: waiting for the contract's root");
                Ok(())
            }
            Step::Preflight => self.preflight(&item, &obs).await,
            Step::Sign { nonce, bump_from } => {
                let gas = match item.last_tx() {
                    Some(last) if bump_from.is_some() => last.gas_limit,
                    _ => return self.preflight(&item, &obs).await,
                };
                self.sign_and_send(&item, &step, *nonce, *bump_from, gas)
                    .await
            }
            _ => {
                let next = rules::apply(&item, &step, None, obs.now_ms);
                if !self.commit(next.clone()).await? {
                    return Ok(());
                }
                match &step {
                    Step::Unmined(why) => {
                        self.stats.reorgs.inc();
                        tracing::warn!(index = item.index, reason = %why, "settlement: sending the finalisation again");
                        if let Some(tx) = next.last_tx() {
                            self.send(tx).await?;
                        }
                    }
                    Step::Finalized { by } => {
                        self.stats.finalized.inc();
                        tracing::info!(
                            index = item.index,
                            label = %item.label,
                            root = %item.new_root,
                            tx = ?by,
                            "settlement: finalised on L1"
                        );
                    }
                    Step::Mined(at) => tracing::info!(
                        index = item.index,
                        tx = %at.hash,
                        block = at.block,
                        "settlement: finalisation mined"
                    ),
                    Step::Requeue(why) => tracing::warn!(
                        index = item.index,
                        reason = %why,
                        "settlement: finalisation sent back to the queue"
                    ),
                    _ => {}
                }
                Ok(())
            }
        }
    }

    /// Simulates `finalize` for `item`; signs and sends it when it would succeed, marks the
    /// item refused when the contract refuses its proof.
    async fn preflight(&self, item: &Settlement, obs: &Observed) -> Result<(), StepError> {
        let input = self.calldata(item);
        let gas = match self.l1.estimate_gas(Some(self.rollup), &input).await {
            Ok(gas) => gas,
            Err(L1Error::Revert(reason)) => {
                if let Preflight::Refused(why) = rules::classify_revert(&reason) {
                    let next = rules::refuse(item, &why, obs.now_ms);
                    if self.commit(next).await? {
                        self.stats.refusals.inc();
                        tracing::error!(
                            index = item.index,
                            label = %item.label,
                            reason = %why,
                            "settlement: the rollup contract refuses this proof; it needs a new proof"
                        );
                    }
                }
                // Stale: the root moved since it was read; decide again at the next poll.
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let step = Step::Sign {
            nonce: obs.mined_nonce,
            bump_from: None,
        };
        self.sign_and_send(item, &step, obs.mined_nonce, None, gas + gas / 4)
            .await
    }

    async fn sign_and_send(
        &self,
        item: &Settlement,
        step: &Step,
        nonce: u64,
        bump_from: Option<crate::l1::chain::Fees>,
        gas_limit: u64,
    ) -> Result<(), StepError> {
        let estimate = self.l1.fees().await?;
        let Some(fees) = rules::fees(estimate, bump_from, self.policy.max_fee_per_gas) else {
            tracing::warn!(
                index = item.index,
                cap_wei = %self.policy.max_fee_per_gas,
                "settlement: the fee cap leaves no room to re-send with a higher fee; waiting"
            );
            if let Some(tx) = item.last_tx() {
                self.send(tx).await?;
            }
            return Ok(());
        };
        let input = self.calldata(item);
        let signed = self
            .l1
            .sign(Some(self.rollup), &input, nonce, gas_limit, fees)
            .await?;
        let tx = SentTx {
            hash: signed.hash,
            raw: Bytes::from(signed.raw),
            nonce,
            gas_limit,
            fees,
            signed_ms: now_ms(),
        };
        let next = rules::apply(item, step, Some(tx.clone()), now_ms());
        // Recorded before it is sent: after a crash the loop sends this one again rather than
        // signing another.
        if !self.commit(next).await? {
            return Ok(());
        }
        if bump_from.is_some() {
            self.stats.resends.inc();
        }
        tracing::info!(
            index = item.index,
            label = %item.label,
            tx = %tx.hash,
            nonce,
            max_fee_per_gas = %fees.max_fee_per_gas,
            resend = bump_from.is_some(),
            "settlement: finalisation sent"
        );
        self.send(&tx).await
    }

    async fn send(&self, tx: &SentTx) -> Result<(), StepError> {
        let signed = crate::l1::chain::Signed {
            hash: tx.hash,
            raw: tx.raw.to_vec(),
        };
        match self.l1.send_raw(&signed).await {
            Ok(()) => Ok(()),
            // The node refusing it (nonce too low: it is mined or replaced; underpriced) is not
            // an outage: the receipts and the nonce say what happened at the next poll.
            Err(L1Error::Rpc(e)) if !is_transport(&e) => {
                tracing::debug!(tx = %tx.hash, error = %e, "settlement: the node did not take the transaction");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn calldata(&self, item: &Settlement) -> Vec<u8> {
        finalize_calldata(item.old_root, item.new_root, &item.instances, &item.proof)
    }

    async fn commit(&self, next: Settlement) -> R<bool> {
        let store = self.store.clone();
        blocking(move || commit(&store, &next)).await
    }
}

fn is_transport(e: &str) -> bool {
    let e = e.to_ascii_lowercase();
    e.contains("connect")
        || e.contains("timed out")
        || e.contains("timeout")
        || e.contains("transport")
}
