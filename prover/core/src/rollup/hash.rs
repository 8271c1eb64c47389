//! Native Poseidon over BN254 with width 4 (rate 3, R_F=8, R_P=56, the 128-bit parameters for t=4),
//! the out-of-circuit twin of halo2-base's `PoseidonHasher::hash_fix_len_array` used by the circuits.
//! Width 4 lets a 2-input hash (every tree node, every leaf) absorb and pad in ONE permutation.

use std::sync::OnceLock;

use ff::PrimeField;
use halo2_base::poseidon::hasher::spec::OptimizedPoseidonSpec;
use halo2curves::bn256::Fr;
use snark_verifier_sdk::snark_verifier::{loader::native::NativeLoader, util::hash::Poseidon};

/// Poseidon state width.
pub const T: usize = 4;
/// Poseidon rate.
pub const RATE: usize = 3;
/// Full rounds.
pub const R_F: usize = 8;
/// Partial rounds.
pub const R_P: usize = 56;

/// Hashes a fixed-length list of field elements.
pub fn poseidon(inputs: &[Fr]) -> Fr {
    // Deriving the spec (round constants, sparse MDS matrices) costs milliseconds, far more than
    // the permutation: derive it once per process.
    static SPEC: OnceLock<OptimizedPoseidonSpec<Fr, T, RATE>> = OnceLock::new();
    let spec = SPEC.get_or_init(OptimizedPoseidonSpec::new::<R_F, R_P, 0>);
    let mut sponge = Poseidon::<Fr, Fr, T, RATE>::from_spec(&NativeLoader, spec.clone());
    sponge.update(inputs);
    sponge.squeeze()
}

/// `balance + nonce·2^64`: both are 64-bit values, so the packing is injective.
pub fn pack_balance_nonce(balance: u64, nonce: u64) -> Fr {
    Fr::from_u128(((nonce as u128) << 64) | balance as u128)
}

/// Leaf commitment of an account: H(owner, balance + nonce·2^64).
pub fn leaf_hash(owner: Fr, balance: u64, nonce: u64) -> Fr {
    poseidon(&[owner, pack_balance_nonce(balance, nonce)])
}

/// Interior node: H(left, right).
pub fn node_hash(left: Fr, right: Fr) -> Fr {
    poseidon(&[left, right])
}
