//! The settlement rules on their own (no node, no store): every state's decisions, the fee bump
//! and the records they leave.

use alloy::primitives::{Bytes, B256};
use coordinator::l1::chain::Fees;
use coordinator::settle::rules::{
    apply, classify_revert, decide, fees, refuse, MinedAt, Observed, Policy, Preflight, Receipt,
    SentTx, SettleState, Settlement, Step,
};

const OLD: B256 = B256::repeat_byte(1);
const NEW: B256 = B256::repeat_byte(2);
const LATER_NEW: B256 = B256::repeat_byte(3);
const OTHER: B256 = B256::repeat_byte(9);
const TX: B256 = B256::repeat_byte(0xaa);
const BLOCK_HASH: B256 = B256::repeat_byte(0xbb);

const POLICY: Policy = Policy {
    confirmations: 3,
    resend_after_ms: 60_000,
    max_fee_per_gas: 100_000_000_000,
};

const FEES: Fees = Fees {
    max_fee_per_gas: 2_000_000_000,
    max_priority_fee_per_gas: 1_000_000_000,
};

fn item() -> Settlement {
    Settlement::new(
        0,
        "bundle-0".into(),
        OLD,
        NEW,
        vec![OLD, NEW],
        Bytes::from(vec![1, 2]),
        0,
    )
}

fn sent(nonce: u64, signed_ms: u64) -> Settlement {
    let tx = SentTx {
        hash: TX,
        raw: Bytes::from(vec![0xde, 0xad]),
        nonce,
        gas_limit: 500_000,
        fees: FEES,
        signed_ms,
    };
    apply(
        &item(),
        &Step::Sign {
            nonce,
            bump_from: None,
        },
        Some(tx),
        signed_ms,
    )
}

fn mined(block: u64) -> Settlement {
    apply(
        &sent(5, 0),
        &Step::Mined(MinedAt {
            hash: TX,
            block,
            block_hash: BLOCK_HASH,
        }),
        None,
        1,
    )
}

fn obs(root: B256) -> Observed {
    Observed {
        now_ms: 1_000,
        head: 100,
        root,
        deep_root: Some(root),
        mined_nonce: 5,
        receipt: None,
        canonical_hash: None,
        later_old_roots: vec![NEW],
    }
}

fn receipt(success: bool, block: u64, block_hash: B256) -> Option<Receipt> {
    Some(Receipt {
        hash: TX,
        block,
        block_hash,
        success,
    })
}

#[test]
fn a_queued_item_is_checked_when_the_root_is_its_old_root() {
    assert_eq!(decide(&item(), &obs(OLD), &POLICY), Step::Preflight);
    assert_eq!(decide(&item(), &obs(OTHER), &POLICY), Step::Stale(OTHER));
}

#[test]
fn a_queued_item_whose_new_root_is_on_chain_is_final() {
    assert_eq!(
        decide(&item(), &obs(NEW), &POLICY),
        Step::Finalized { by: None }
    );
    // The root is a later item's old root: this one is behind it.
    let mut o = obs(LATER_NEW);
    o.later_old_roots = vec![NEW, LATER_NEW];
    assert_eq!(decide(&item(), &o, &POLICY), Step::Finalized { by: None });
}

#[test]
fn a_sent_item_waits_then_is_re_signed_with_its_nonce() {
    let it = sent(5, 0);
    assert_eq!(it.state, SettleState::Sent);
    let mut o = obs(OLD);
    o.now_ms = 59_999;
    assert_eq!(decide(&it, &o, &POLICY), Step::Wait);
    o.now_ms = 60_000;
    assert_eq!(
        decide(&it, &o, &POLICY),
        Step::Sign {
            nonce: 5,
            bump_from: Some(FEES)
        }
    );
}

#[test]
fn a_sent_item_whose_nonce_was_taken_is_final_or_requeued_by_the_root() {
    let it = sent(5, 0);
    let mut o = obs(NEW);
    o.mined_nonce = 6;
    // Within the resend timeout: the node may not have indexed our receipt yet.
    assert_eq!(decide(&it, &o, &POLICY), Step::Wait);
    o.now_ms = POLICY.resend_after_ms;
    assert_eq!(decide(&it, &o, &POLICY), Step::Finalized { by: None });
    (o.root, o.deep_root) = (OLD, Some(OLD));
    assert!(matches!(decide(&it, &o, &POLICY), Step::Requeue(_)));
}

#[test]
fn a_receipt_moves_a_sent_item_on() {
    let it = sent(5, 0);
    let mut o = obs(NEW);
    o.receipt = receipt(true, 90, BLOCK_HASH);
    assert_eq!(
        decide(&it, &o, &POLICY),
        Step::Mined(MinedAt {
            hash: TX,
            block: 90,
            block_hash: BLOCK_HASH
        })
    );
    // Reverted while the root is still the old one: back to the queue.
    o.receipt = receipt(false, 90, BLOCK_HASH);
    (o.root, o.deep_root) = (OLD, Some(OLD));
    let step = decide(&it, &o, &POLICY);
    assert!(matches!(step, Step::Requeue(_)), "{step:?}");
    let back = apply(&it, &step, None, 2);
    assert_eq!(back.state, SettleState::Queued);
    assert_eq!(back.version, it.version + 1);
    // Reverted because another sender finalised it first.
    (o.root, o.deep_root) = (NEW, Some(NEW));
    assert_eq!(decide(&it, &o, &POLICY), Step::Finalized { by: None });
}

#[test]
fn another_senders_finalisation_counts_only_once_it_is_confirmations_deep() {
    // The head's root is past the item, the root `confirmations` deep is still its old root:
    // a reorg could still drop that other transaction, so every state waits.
    let shallow = |mut o: Observed| {
        o.root = NEW;
        o.deep_root = Some(OLD);
        o
    };
    assert_eq!(decide(&item(), &shallow(obs(OLD)), &POLICY), Step::Wait);
    let it = sent(5, 0);
    let mut reverted = shallow(obs(OLD));
    reverted.receipt = receipt(false, 90, BLOCK_HASH);
    assert_eq!(decide(&it, &reverted, &POLICY), Step::Wait);
    let mut taken = shallow(obs(OLD));
    taken.mined_nonce = 6;
    taken.now_ms = POLICY.resend_after_ms;
    assert_eq!(decide(&it, &taken, &POLICY), Step::Wait);
    // The contract is younger than the confirmations (no root that deep): the same, and an item
    // at the contract's root is sent as usual.
    let mut young = shallow(obs(OLD));
    young.deep_root = None;
    assert_eq!(decide(&item(), &young, &POLICY), Step::Wait);
    young.root = OLD;
    assert_eq!(decide(&item(), &young, &POLICY), Step::Preflight);
    // Deep enough: final, in each of them.
    let queued = item();
    for (state, mut o) in [(&queued, shallow(obs(OLD))), (&it, reverted), (&it, taken)] {
        o.deep_root = Some(NEW);
        assert_eq!(decide(state, &o, &POLICY), Step::Finalized { by: None });
    }
    // The other transaction left the chain: both roots are the old one again, and the item goes
    // on as if nobody had finalised it.
    assert_eq!(decide(&queued, &obs(OLD), &POLICY), Step::Preflight);
    let mut o = obs(OLD);
    o.receipt = receipt(false, 90, BLOCK_HASH);
    assert!(matches!(decide(&it, &o, &POLICY), Step::Requeue(_)));
}

#[test]
fn a_mined_item_is_final_only_deep_enough_and_canonical() {
    let it = mined(98);
    let mut o = obs(NEW);
    o.receipt = receipt(true, 98, BLOCK_HASH);
    o.canonical_hash = Some(BLOCK_HASH);
    o.head = 99; // blocks 98 and 99: 2 of 3
    assert_eq!(decide(&it, &o, &POLICY), Step::Wait);
    o.head = 100;
    assert_eq!(decide(&it, &o, &POLICY), Step::Finalized { by: Some(TX) });
    let fin = apply(&it, &Step::Finalized { by: Some(TX) }, None, 3);
    assert_eq!(
        (fin.state, fin.finalized_by),
        (SettleState::Finalized, Some(TX))
    );
    assert_eq!(
        decide(&fin, &o, &POLICY),
        Step::Wait,
        "a final item stays final"
    );
}

#[test]
fn a_reorg_sends_a_mined_item_back() {
    let it = mined(98);
    // The receipt is gone.
    let mut o = obs(OLD);
    o.canonical_hash = Some(OTHER);
    let step = decide(&it, &o, &POLICY);
    assert!(matches!(step, Step::Unmined(_)), "{step:?}");
    let back = apply(&it, &step, None, 4);
    assert_eq!(
        (back.state, back.reorgs, back.mined.clone()),
        (SettleState::Sent, 1, None)
    );
    assert_eq!(back.txs, it.txs, "the same transaction, to be sent again");
    // Still a receipt, but its block is not the canonical one any more.
    o.receipt = receipt(true, 98, BLOCK_HASH);
    assert!(matches!(decide(&it, &o, &POLICY), Step::Unmined(_)));
    // Mined again in another block: recorded there, confirmations counted anew.
    o.receipt = receipt(true, 99, OTHER);
    assert_eq!(
        decide(&it, &o, &POLICY),
        Step::Mined(MinedAt {
            hash: TX,
            block: 99,
            block_hash: OTHER
        })
    );
}

#[test]
fn fees_bump_by_an_eighth_and_respect_the_cap() {
    let est = Fees {
        max_fee_per_gas: 1_000,
        max_priority_fee_per_gas: 100,
    };
    assert_eq!(fees(est, None, 10_000), Some(est));
    assert_eq!(
        fees(est, None, 500),
        Some(Fees {
            max_fee_per_gas: 500,
            max_priority_fee_per_gas: 100
        }),
        "capped"
    );
    let bumped = fees(est, Some(est), 10_000).expect("room to bump");
    assert!(bumped.max_fee_per_gas >= 1_125 && bumped.max_priority_fee_per_gas >= 112);
    // A higher estimate wins over the bump.
    let high = Fees {
        max_fee_per_gas: 5_000,
        max_priority_fee_per_gas: 1_000,
    };
    assert_eq!(fees(high, Some(est), 10_000), Some(high));
    // No room under the cap for a 10 % higher replacement.
    assert_eq!(fees(est, Some(est), 1_050), None);
}

#[test]
fn reverts_are_classified() {
    assert!(matches!(
        classify_revert("StaleRoot(StaleRoot { current: 0x.., given: 0x.. })"),
        Preflight::Stale(_)
    ));
    assert!(matches!(
        classify_revert("ProofRejected(ProofRejected)"),
        Preflight::Refused(_)
    ));
    let r = refuse(&item(), "ProofRejected", 5);
    assert_eq!(r.state, SettleState::Refused);
    assert_eq!(decide(&r, &obs(OLD), &POLICY), Step::Wait);
}
