//! The chunk circuit: a batch of rollup transfers over a Poseidon sparse Merkle tree of accounts.
//!
//! Per transaction slot (`max_txs` of them; real transfers first, then padding):
//! - `is_real` is a bit and real slots precede padding slots; a padding slot's fields are all zero
//!   and it leaves the root unchanged;
//! - `from`/`to` are decomposed into `tree_depth` bits (so they index the tree);
//! - the sender leaf H(owner, balance + nonce·2^64) with its siblings must hash to the running root, the
//!   transfer's nonce must equal the sender's, the sender's new balance `balance − amount` and all
//!   balances, nonces and the amount are range-checked to 64 bits (so no underflow: balance ≥ amount);
//! - the sender leaf is updated (balance − amount, nonce + 1) along the same path, the receiver leaf
//!   must hash to that intermediate root, and its update (balance + amount, range-checked: no
//!   overflow) gives the next running root.
//!
//! Public inputs (one instance column): `[old_root, new_root, transfers_commitment]` where the
//! commitment is Poseidon(n_real, from_0, to_0, amount_0, nonce_0, …) over all `max_txs` slots.

use ff::PrimeField;
use halo2_base::gates::circuit::builder::BaseCircuitBuilder;
use halo2_base::gates::{GateChip, GateInstructions, RangeChip, RangeInstructions};
use halo2_base::poseidon::hasher::{spec::OptimizedPoseidonSpec, PoseidonHasher};
use halo2_base::{AssignedValue, Context, QuantumCell::Constant};
use halo2curves::bn256::Fr;

use crate::rollup::hash::{poseidon, RATE, R_F, R_P, T};
use crate::wire::{AccountWitness, ChunkConfig, ChunkTaskData, FrHex, Transfer, TxWitness};

/// Bits of every balance, nonce and amount.
pub const VALUE_BITS: usize = 64;
/// Number of public inputs of the chunk circuit.
pub const NUM_INSTANCES: usize = 3;

/// The public inputs a chunk proof carries: `[old_root, new_root, transfers_commitment]`.
pub fn public_inputs(data: &ChunkTaskData) -> [Fr; NUM_INSTANCES] {
    [
        data.old_root.0,
        data.new_root.0,
        transfers_commitment(&data.config, &data.transfers),
    ]
}

/// Poseidon(n_real, then from, to, amount, nonce of every slot, padding slots zero).
pub fn transfers_commitment(config: &ChunkConfig, transfers: &[Transfer]) -> Fr {
    let mut inputs = vec![Fr::from(transfers.len() as u64)];
    for i in 0..config.max_txs {
        let t = transfers.get(i).copied().unwrap_or(Transfer {
            from: 0,
            to: 0,
            amount: 0,
            nonce: 0,
        });
        inputs.extend([
            Fr::from(t.from),
            Fr::from(t.to),
            Fr::from(t.amount),
            Fr::from(t.nonce),
        ]);
    }
    poseidon(&inputs)
}

/// A payload with no transfers for `config`: the witness used to generate keys (the circuit's
/// shape does not depend on witness values).
pub fn keygen_payload(config: ChunkConfig) -> ChunkTaskData {
    ChunkTaskData {
        version: crate::wire::TASK_DATA_VERSION,
        config,
        old_root: FrHex::default(),
        new_root: FrHex::default(),
        transfers: vec![],
        witness: vec![],
    }
}

struct Chips<'a> {
    range: &'a RangeChip<Fr>,
    hasher: &'a PoseidonHasher<Fr, T, RATE>,
}

impl Chips<'_> {
    fn gate(&self) -> &GateChip<Fr> {
        self.range.gate()
    }

    fn hash(&self, ctx: &mut Context<Fr>, inputs: &[AssignedValue<Fr>]) -> AssignedValue<Fr> {
        self.hasher.hash_fix_len_array(ctx, self.gate(), inputs)
    }

    /// H(owner, balance + nonce·2^64); balance and nonce must be range-checked to 64 bits.
    fn leaf(
        &self,
        ctx: &mut Context<Fr>,
        owner: AssignedValue<Fr>,
        balance: AssignedValue<Fr>,
        nonce: AssignedValue<Fr>,
    ) -> AssignedValue<Fr> {
        let packed = self
            .gate()
            .mul_add(ctx, nonce, Constant(Fr::from_u128(1u128 << 64)), balance);
        self.hash(ctx, &[owner, packed])
    }

    /// Root from a leaf, the index bits (leaf level first) and siblings.
    fn root(
        &self,
        ctx: &mut Context<Fr>,
        leaf: AssignedValue<Fr>,
        bits: &[AssignedValue<Fr>],
        siblings: &[AssignedValue<Fr>],
    ) -> AssignedValue<Fr> {
        let mut cur = leaf;
        for (bit, sib) in bits.iter().zip(siblings) {
            let left = self.gate().select(ctx, *sib, cur, *bit);
            let right = self.gate().select(ctx, cur, *sib, *bit);
            cur = self.hash(ctx, &[left, right]);
        }
        cur
    }

    /// Constrains `a == b` when `enabled` is 1.
    fn gated_eq(
        &self,
        ctx: &mut Context<Fr>,
        a: AssignedValue<Fr>,
        b: AssignedValue<Fr>,
        enabled: AssignedValue<Fr>,
    ) {
        let diff = self.gate().sub(ctx, a, b);
        let gated = self.gate().mul(ctx, diff, enabled);
        self.gate().assert_is_const(ctx, &gated, &Fr::zero());
    }
}

struct LoadedAccount {
    owner: AssignedValue<Fr>,
    balance: AssignedValue<Fr>,
    nonce: AssignedValue<Fr>,
    siblings: Vec<AssignedValue<Fr>>,
}

fn load_account(ctx: &mut Context<Fr>, chips: &Chips, w: &AccountWitness) -> LoadedAccount {
    let owner = ctx.load_witness(w.owner.0);
    let balance = ctx.load_witness(Fr::from(w.balance));
    let nonce = ctx.load_witness(Fr::from(w.nonce));
    chips.range.range_check(ctx, balance, VALUE_BITS);
    chips.range.range_check(ctx, nonce, VALUE_BITS);
    let siblings = w.siblings.iter().map(|s| ctx.load_witness(s.0)).collect();
    LoadedAccount {
        owner,
        balance,
        nonce,
        siblings,
    }
}

/// Lays out the chunk circuit in `builder` (whose k and lookup bits are already set) and exposes its
/// public inputs. The payload's shape must have been checked with [`check_shape`]; its values are
/// NOT checked here: a dishonest witness yields a proof that fails (the soundness tests rely on it).
pub fn synthesize(builder: &mut BaseCircuitBuilder<Fr>, data: &ChunkTaskData) {
    let c = data.config;
    let range = builder.range_chip();
    let mut hasher =
        PoseidonHasher::<Fr, T, RATE>::new(OptimizedPoseidonSpec::new::<R_F, R_P, 0>());
    let ctx = builder.main(0);
    hasher.initialize_consts(ctx, range.gate());
    let chips = Chips {
        range: &range,
        hasher: &hasher,
    };
    let gate = chips.gate();

    let zero_account = AccountWitness {
        owner: FrHex::default(),
        balance: 0,
        nonce: 0,
        siblings: vec![FrHex::default(); c.tree_depth],
    };
    let padding = TxWitness {
        sender: zero_account.clone(),
        receiver: zero_account,
    };

    let old_root = ctx.load_witness(data.old_root.0);
    let mut root = old_root;
    let mut prev_real: Option<AssignedValue<Fr>> = None;
    let mut n_real = ctx.load_zero();
    let mut commit_inputs = vec![];
    for slot in 0..c.max_txs {
        let (t, w) = match (data.transfers.get(slot), data.witness.get(slot)) {
            (Some(t), Some(w)) => (*t, w),
            _ => (
                Transfer {
                    from: 0,
                    to: 0,
                    amount: 0,
                    nonce: 0,
                },
                &padding,
            ),
        };
        let is_real = ctx.load_witness(Fr::from(slot < data.transfers.len()));
        gate.assert_bit(ctx, is_real);
        if let Some(prev) = prev_real {
            // is_real ≤ prev: a real slot never follows a padding slot.
            let bad = gate.mul_not(ctx, prev, is_real);
            gate.assert_is_const(ctx, &bad, &Fr::zero());
        }
        prev_real = Some(is_real);
        n_real = gate.add(ctx, n_real, is_real);

        let from = ctx.load_witness(Fr::from(t.from));
        let to = ctx.load_witness(Fr::from(t.to));
        let amount = ctx.load_witness(Fr::from(t.amount));
        let nonce = ctx.load_witness(Fr::from(t.nonce));
        for field in [from, to, amount, nonce] {
            // Padding slots carry zeros, so the commitment has one encoding per transfer list.
            let stray = gate.mul_not(ctx, is_real, field);
            gate.assert_is_const(ctx, &stray, &Fr::zero());
        }
        commit_inputs.extend([from, to, amount, nonce]);
        chips.range.range_check(ctx, amount, VALUE_BITS);
        chips.range.range_check(ctx, nonce, VALUE_BITS);
        let from_bits = gate.num_to_bits(ctx, from, c.tree_depth);
        let to_bits = gate.num_to_bits(ctx, to, c.tree_depth);

        // Sender: membership against the running root, nonce, debit.
        let s = load_account(ctx, &chips, &w.sender);
        let leaf = chips.leaf(ctx, s.owner, s.balance, s.nonce);
        let computed = chips.root(ctx, leaf, &from_bits, &s.siblings);
        chips.gated_eq(ctx, computed, root, is_real);
        chips.gated_eq(ctx, nonce, s.nonce, is_real);
        let debited = gate.sub(ctx, s.balance, amount);
        chips.range.range_check(ctx, debited, VALUE_BITS);
        let next_nonce = gate.add(ctx, s.nonce, Constant(Fr::one()));
        chips.range.range_check(ctx, next_nonce, VALUE_BITS);
        let leaf = chips.leaf(ctx, s.owner, debited, next_nonce);
        let mid = chips.root(ctx, leaf, &from_bits, &s.siblings);

        // Receiver: membership against the intermediate root, credit.
        let r = load_account(ctx, &chips, &w.receiver);
        let leaf = chips.leaf(ctx, r.owner, r.balance, r.nonce);
        let computed = chips.root(ctx, leaf, &to_bits, &r.siblings);
        chips.gated_eq(ctx, computed, mid, is_real);
        let credited = gate.add(ctx, r.balance, amount);
        chips.range.range_check(ctx, credited, VALUE_BITS);
        let leaf = chips.leaf(ctx, r.owner, credited, r.nonce);
        let next = chips.root(ctx, leaf, &to_bits, &r.siblings);

        root = gate.select(ctx, next, root, is_real);
    }
    let mut inputs = vec![n_real];
    inputs.extend(commit_inputs);
    let commitment = chips.hash(ctx, &inputs);
    builder.assigned_instances[0] = vec![old_root, root, commitment];
}
