//! Lagrange basis from a monomial basis (inverse FFT over G1).

use group::prime::PrimeCurveAffine;
use halo2_proofs::arithmetic::g_to_lagrange;
use halo2curves::bn256::{G1Affine, G1};

/// `g_lagrange[i] = L_i(s)·G` from `g[j] = s^j·G`, for the size-`2^k` domain
/// (`g.len()` must be `2^k`).
pub(crate) fn lagrange_from_monomial(g: &[G1Affine], k: u32) -> Vec<G1Affine> {
    debug_assert_eq!(g.len(), 1usize << k);
    if k == 0 {
        // L_0 = 1 on a one-point domain.
        return g.to_vec();
    }
    let projective: Vec<G1> = g.iter().map(PrimeCurveAffine::to_curve).collect();
    g_to_lagrange(projective, k)
}
