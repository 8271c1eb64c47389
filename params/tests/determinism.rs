//! dev_setup is a function of (k, seed), and of the seed's secret only.

mod common;

use halo2_proofs::poly::commitment::ParamsProver;

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = common::to_bytes(&params::dev_setup(8, 0, false).unwrap());
    let b = common::to_bytes(&params::dev_setup(8, 0, false).unwrap());
    assert!(a == b, "dev_setup(8, 0) is not deterministic");
    let c = common::to_bytes(&params::dev_setup(8, 1, false).unwrap());
    assert_eq!(c.len(), a.len());
    assert!(a != c, "seeds 0 and 1 gave the same SRS");
    // Only the header and g[0] (the generator) and g2 agree.
    assert_eq!(a[..4 + 64], c[..4 + 64]);
    assert_ne!(a[4 + 64..4 + 128], c[4 + 64..4 + 128]);
}

#[test]
fn secret_is_fixed_and_seed_dependent() {
    assert_eq!(params::dev_secret(0), params::dev_secret(0));
    assert_ne!(params::dev_secret(0), params::dev_secret(1));
    assert_ne!(params::dev_secret(1), params::dev_secret(1 << 32));
}

#[test]
fn sizes_share_powers() {
    // Same seed, different k: the same secret, so the powers are prefixes.
    let small = params::dev_setup(5, 9, false).unwrap();
    let big = params::dev_setup(8, 9, false).unwrap();
    assert_eq!(small.get_g(), &big.get_g()[..32]);
    assert_eq!(small.s_g2(), big.s_g2());
}

#[test]
fn k_above_28_is_rejected() {
    let err = params::dev_setup(29, 0, false).unwrap_err();
    assert!(
        matches!(err, params::ParamsError::UnsupportedK { k: 29, max: 28 }),
        "{err}"
    );
}
