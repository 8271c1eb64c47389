//! The settlement rules: what to do next with the item being settled, given what the L1 node
//! shows. Plain functions over a [`Settlement`] record and an [`Observed`] snapshot, apart from
//! the I/O (the loop in [`super`]) and the storage (the coordinator's store).
//!
//! One item is settled at a time, in order: item i+1 is sent only once item i is final
//! (`confirmations` blocks deep). An item goes
//!
//! ```text
//! Queued ──preflight ok──▶ Sent ──receipt ok──▶ Mined ──deep enough──▶ Finalized
//!   │  ▲                    │ ▲                  │
//!   │  └──reverted, nonce───┘ └──receipt gone────┘   (a reorg dropped it: re-sent)
//!   │      taken by another
//!   └──the contract refuses the proof──▶ Refused ──new proof──▶ Queued
//! ```
//!
//! and is also Finalized, without a transaction of ours, when the contract's root already is its
//! new root or the old root of a later item (another sender finalised it) — in the block
//! `confirmations` deep, so that another sender's finalisation is as final as ours would have to
//! be; while only the newer blocks show it, the item waits.

use alloy::primitives::{Bytes, B256};
use serde::{Deserialize, Serialize};

use crate::l1::chain::Fees;

/// Where an item stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettleState {
    /// Waiting to be sent (or to be sent again after a revert).
    Queued,
    /// Signed and sent; no receipt yet.
    Sent,
    /// In a block, not yet `confirmations` deep.
    Mined,
    /// Final: the contract's root moved past it.
    Finalized,
    /// The contract refuses its proof: it needs a new proof (the item waits, and the ones after
    /// it, since each starts at its new root).
    Refused,
}

impl SettleState {
    pub fn name(self) -> &'static str {
        match self {
            SettleState::Queued => "queued",
            SettleState::Sent => "sent",
            SettleState::Mined => "mined",
            SettleState::Finalized => "finalized",
            SettleState::Refused => "refused",
        }
    }
}

/// One signed transaction of an item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentTx {
    pub hash: B256,
    /// Its raw bytes, to send again (after a crash, a drop from the pool, or a reorg).
    pub raw: Bytes,
    pub nonce: u64,
    pub gas_limit: u64,
    pub fees: Fees,
    pub signed_ms: u64,
}

/// Where an item's transaction was mined.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinedAt {
    pub hash: B256,
    pub block: u64,
    pub block_hash: B256,
}

/// One item to finalise on L1: `Rollup.finalize(old_root, new_root, instances, proof)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    pub index: u64,
    /// What it settles (the bundle's task id).
    pub label: String,
    pub old_root: B256,
    pub new_root: B256,
    pub instances: Vec<B256>,
    pub proof: Bytes,
    pub state: SettleState,
    /// Bumped by every change: a change commits only over the version it was decided on.
    pub version: u64,
    /// Every transaction signed for it, oldest first (all share one nonce unless a revert sent
    /// it back to the queue).
    pub txs: Vec<SentTx>,
    pub mined: Option<MinedAt>,
    /// Re-sends with a higher fee, and mined transactions a reorg dropped.
    pub resends: u32,
    pub reorgs: u32,
    /// Why it was refused or sent back, last first.
    pub note: Option<String>,
    /// The transaction that finalised it, `None` when another sender did.
    pub finalized_by: Option<B256>,
    pub created_ms: u64,
    pub updated_ms: u64,
}

impl Settlement {
    pub fn new(
        index: u64,
        label: String,
        old_root: B256,
        new_root: B256,
        instances: Vec<B256>,
        proof: Bytes,
        now_ms: u64,
    ) -> Self {
        Self {
            index,
            label,
            old_root,
            new_root,
            instances,
            proof,
            state: SettleState::Queued,
            version: 0,
            txs: Vec::new(),
            mined: None,
            resends: 0,
            reorgs: 0,
            note: None,
            finalized_by: None,
            created_ms: now_ms,
            updated_ms: now_ms,
        }
    }

    /// The transaction to watch and send again: the last one signed.
    pub fn last_tx(&self) -> Option<&SentTx> {
        self.txs.last()
    }
}

/// A receipt the node has for one of the item's transactions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub hash: B256,
    pub block: u64,
    pub block_hash: B256,
    pub success: bool,
}

/// What the node shows, read just before deciding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub now_ms: u64,
    pub head: u64,
    /// The rollup contract's root at the head.
    pub root: B256,
    /// Its root in the block `confirmations` deep (`head + 1 − confirmations`; the head's root when
    /// `confirmations` ≤ 1); `None` when the contract did not exist yet in that block.
    pub deep_root: Option<B256>,
    /// The signing account's nonce counting mined transactions.
    pub mined_nonce: u64,
    /// A receipt for one of the item's transactions, if the node has one.
    pub receipt: Option<Receipt>,
    /// The canonical hash of the block the item was recorded as mined in (when it is Mined).
    pub canonical_hash: Option<B256>,
    /// Old roots of the items queued after this one.
    pub later_old_roots: Vec<B256>,
}

/// The settlement policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Blocks that must contain or follow the including block (1: final once mined).
    pub confirmations: u64,
    /// A transaction not mined after this long is re-signed with a higher fee.
    pub resend_after_ms: u64,
    /// Highest `max_fee_per_gas` ever signed, in wei.
    pub max_fee_per_gas: u128,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing changes; send the last transaction again if there is one waiting (idempotent: the
    /// node ignores one it has).
    Wait,
    /// Ask the node whether `finalize` would succeed now (then [`after_preflight`]).
    Preflight,
    /// Sign a transaction with this nonce; `bump_from`: the fees of the one it replaces.
    Sign { nonce: u64, bump_from: Option<Fees> },
    /// Record where it was mined.
    Mined(MinedAt),
    /// The mined transaction is no longer in the canonical chain: back to Sent, send it again.
    Unmined(String),
    /// Final; `by`: our transaction, or `None` when another sender finalised it.
    Finalized { by: Option<B256> },
    /// Back to the queue (its transaction reverted or its nonce was taken).
    Requeue(String),
    /// The root is neither this item's nor a later one's: wait for it (an earlier item's
    /// finalisation may still be on its way back after a reorg).
    Stale(B256),
}

/// The contract's root is past the item: it is the item's new root, or the old root of an item
/// after it.
fn past(item: &Settlement, obs: &Observed, root: Option<B256>) -> bool {
    root.is_some_and(|root| root == item.new_root || obs.later_old_roots.contains(&root))
}

/// What the contract's roots say of an item someone finalised, whoever sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OnChain {
    /// Past it in the block `confirmations` deep: final.
    Deep,
    /// Past it at the head only: wait for the blocks over it.
    Shallow,
    /// Not past it.
    No,
}

fn on_chain(item: &Settlement, obs: &Observed) -> OnChain {
    if past(item, obs, obs.deep_root) {
        OnChain::Deep
    } else if past(item, obs, Some(obs.root)) {
        OnChain::Shallow
    } else {
        OnChain::No
    }
}

/// The step when another sender may have finalised the item: final once that is deep enough,
/// wait while it is not, `otherwise` when no root says so.
fn by_another(item: &Settlement, obs: &Observed, otherwise: impl FnOnce() -> Step) -> Step {
    match on_chain(item, obs) {
        OnChain::Deep => Step::Finalized { by: None },
        OnChain::Shallow => Step::Wait,
        OnChain::No => otherwise(),
    }
}

/// The next step for `item`.
pub fn decide(item: &Settlement, obs: &Observed, policy: &Policy) -> Step {
    match item.state {
        SettleState::Finalized | SettleState::Refused => Step::Wait,
        SettleState::Queued => by_another(item, obs, || {
            if obs.root != item.old_root {
                Step::Stale(obs.root)
            } else {
                Step::Preflight
            }
        }),
        SettleState::Sent => match &obs.receipt {
            Some(r) if r.success => Step::Mined(MinedAt {
                hash: r.hash,
                block: r.block,
                block_hash: r.block_hash,
            }),
            Some(r) => by_another(item, obs, || {
                Step::Requeue(format!("transaction {} reverted", r.hash))
            }),
            None => {
                let Some(last) = item.last_tx() else {
                    return Step::Requeue("no transaction recorded".into());
                };
                let waited = obs.now_ms.saturating_sub(last.signed_ms) >= policy.resend_after_ms;
                if obs.mined_nonce > last.nonce {
                    // Our nonce is used but none of our transactions has a receipt. Usually the
                    // node has mined ours and not yet indexed its receipt (anvil, under load):
                    // wait for it, so that it is tracked to its confirmations. Still none after
                    // the resend timeout: another transaction of this account took the nonce,
                    // and the root says what happened.
                    if !waited {
                        Step::Wait
                    } else {
                        by_another(item, obs, || {
                            Step::Requeue(format!(
                                "nonce {} was used by another transaction",
                                last.nonce
                            ))
                        })
                    }
                } else if waited {
                    Step::Sign {
                        nonce: last.nonce,
                        bump_from: Some(last.fees),
                    }
                } else {
                    Step::Wait
                }
            }
        },
        SettleState::Mined => {
            let Some(mined) = &item.mined else {
                return Step::Unmined("no block recorded".into());
            };
            match &obs.receipt {
                None => Step::Unmined(format!(
                    "transaction {} left the chain (block {} reorganised)",
                    mined.hash, mined.block
                )),
                Some(r) if !r.success => {
                    Step::Requeue(format!("transaction {} reverted after a reorg", r.hash))
                }
                Some(r) if r.block_hash != mined.block_hash || r.hash != mined.hash => {
                    Step::Mined(MinedAt {
                        hash: r.hash,
                        block: r.block,
                        block_hash: r.block_hash,
                    })
                }
                Some(_) => {
                    let deep = obs.head + 1 >= mined.block + policy.confirmations.max(1);
                    let canonical = obs.canonical_hash == Some(mined.block_hash);
                    if deep && canonical {
                        Step::Finalized {
                            by: Some(mined.hash),
                        }
                    } else if !canonical && obs.canonical_hash.is_some() {
                        Step::Unmined(format!(
                            "block {} of transaction {} is no longer canonical",
                            mined.block, mined.hash
                        ))
                    } else {
                        Step::Wait
                    }
                }
            }
        }
    }
}

/// What the preflight (`eth_estimateGas` of `finalize`) said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Preflight {
    /// The contract refuses the proof or its public inputs: a new proof is needed.
    Refused(String),
    /// The root moved between the observation and the preflight: decide again.
    Stale(String),
}

/// Classifies a revert reason from the rollup contract.
pub fn classify_revert(reason: &str) -> Preflight {
    if reason.contains("StaleRoot") {
        Preflight::Stale(reason.to_string())
    } else {
        Preflight::Refused(reason.to_string())
    }
}

/// Fees for a transaction: the node's estimate, or when replacing one, at least 12.5 % more
/// than it on both fields (nodes require 10 %), never above the cap. `None` when the cap leaves
/// no room for a valid replacement.
pub fn fees(estimate: Fees, bump_from: Option<Fees>, cap: u128) -> Option<Fees> {
    let bump = |old: u128| old + old / 8 + 1;
    let (mut max_fee, mut tip) = (estimate.max_fee_per_gas, estimate.max_priority_fee_per_gas);
    if let Some(old) = bump_from {
        max_fee = max_fee.max(bump(old.max_fee_per_gas));
        tip = tip.max(bump(old.max_priority_fee_per_gas));
    }
    max_fee = max_fee.max(tip).min(cap);
    tip = tip.min(max_fee);
    if let Some(old) = bump_from {
        let enough = |new: u128, old: u128| new > old + old / 10;
        if !enough(max_fee, old.max_fee_per_gas) || !enough(tip, old.max_priority_fee_per_gas) {
            return None;
        }
    }
    Some(Fees {
        max_fee_per_gas: max_fee,
        max_priority_fee_per_gas: tip,
    })
}

/// `item` after `step` (the steps that change it; `signed` for [`Step::Sign`]).
pub fn apply(item: &Settlement, step: &Step, signed: Option<SentTx>, now_ms: u64) -> Settlement {
    let mut next = item.clone();
    next.version += 1;
    next.updated_ms = now_ms;
    match step {
        Step::Wait | Step::Preflight | Step::Stale(_) => {}
        Step::Sign { bump_from, .. } => {
            if let Some(tx) = signed {
                if bump_from.is_some() {
                    next.resends += 1;
                }
                next.txs.push(tx);
                next.state = SettleState::Sent;
            }
        }
        Step::Mined(at) => {
            next.mined = Some(at.clone());
            next.state = SettleState::Mined;
        }
        Step::Unmined(why) => {
            next.mined = None;
            next.reorgs += 1;
            next.note = Some(why.clone());
            next.state = SettleState::Sent;
        }
        Step::Finalized { by } => {
            next.finalized_by = *by;
            next.state = SettleState::Finalized;
        }
        Step::Requeue(why) => {
            next.mined = None;
            next.note = Some(why.clone());
            next.state = SettleState::Queued;
        }
    }
    next
}

/// `item` refused by the contract (from the preflight).
pub fn refuse(item: &Settlement, why: &str, now_ms: u64) -> Settlement {
    let mut next = item.clone();
    next.version += 1;
    next.updated_ms = now_ms;
    next.state = SettleState::Refused;
    next.note = Some(why.to_string());
    next
}
