//! Helpers shared by the integration tests.
#![allow(dead_code)]

use halo2_proofs::poly::commitment::{Params, ParamsProver};
use halo2curves::bn256::G1Affine;
use halo2curves::serde::SerdeObject;
use params::Srs;

/// The SRS serialised by halo2's own writer (the file format).
pub fn to_bytes(srs: &Srs) -> Vec<u8> {
    let mut out = Vec::new();
    srs.write(&mut out).expect("writing to memory");
    out
}

/// The Lagrange basis, which `ParamsKZG` has no getter for.
pub fn lagrange(srs: &Srs) -> Vec<G1Affine> {
    let bytes = to_bytes(srs);
    let n = srs.get_g().len();
    let start = 4 + 64 * n;
    bytes[start..start + 64 * n]
        .chunks_exact(64)
        .map(|raw| G1Affine::from_raw_bytes(raw).expect("valid point"))
        .collect()
}
