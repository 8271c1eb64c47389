//! Commitments, transforms and evaluation: the only place the engine calls the backend.

use ff::Field;
use gpu::Direction;
use group::Curve;
use halo2curves::bn256::{Fr, G1Affine};
use rayon::prelude::*;

use super::{Ctx, NativeError};

/// KZG commitment to a polynomial in coefficient form: `Σ c_i · g_i` (one backend MSM).
pub fn commit_coeff(ctx: &Ctx<'_>, coeffs: &[Fr]) -> Result<G1Affine, NativeError> {
    Ok(ctx.backend.msm(ctx.bases, coeffs)?.to_affine())
}

/// Values on the n-th roots of unity → coefficients (backend inverse NTT).
pub fn lagrange_to_coeff(ctx: &Ctx<'_>, mut values: Vec<Fr>) -> Result<Vec<Fr>, NativeError> {
    ctx.backend
        .ntt(&mut values, &ctx.domain, Direction::Inverse)?;
    Ok(values)
}

/// Commits to Lagrange values: inverse NTT, then an MSM over the monomial SRS (the same group
/// element as halo2's `commit_lagrange`). Returns the coefficients and the commitment.
pub fn commit_lagrange(ctx: &Ctx<'_>, values: Vec<Fr>) -> Result<(Vec<Fr>, G1Affine), NativeError> {
    let coeffs = lagrange_to_coeff(ctx, values)?;
    let c = commit_coeff(ctx, &coeffs)?;
    Ok((coeffs, c))
}

/// Coefficients (at most the extended size) → values on the extended coset `g·⟨ω_ext⟩`
/// (backend coset NTT).
pub fn coeff_to_extended(ctx: &Ctx<'_>, coeffs: &[Fr]) -> Result<Vec<Fr>, NativeError> {
    super::keycache::to_extended(ctx.backend, &ctx.ext, coeffs)
}

/// Values on the extended coset → coefficients (backend inverse coset NTT).
pub fn extended_to_coeff(ctx: &Ctx<'_>, mut values: Vec<Fr>) -> Result<Vec<Fr>, NativeError> {
    ctx.backend
        .coset_ntt(&mut values, &ctx.ext, Direction::Inverse)?;
    Ok(values)
}

/// `p(x)` for `p` in coefficient form (Horner, split across threads for long polynomials).
pub fn eval_poly(coeffs: &[Fr], x: Fr) -> Fr {
    const CHUNK: usize = 1 << 12;
    if coeffs.len() <= CHUNK {
        return coeffs.iter().rev().fold(Fr::ZERO, |acc, c| acc * x + c);
    }
    let x_chunk = x.pow_vartime([CHUNK as u64]);
    let parts: Vec<Fr> = coeffs
        .par_chunks(CHUNK)
        .map(|chunk| chunk.iter().rev().fold(Fr::ZERO, |acc, c| acc * x + c))
        .collect();
    parts
        .iter()
        .rev()
        .fold(Fr::ZERO, |acc, p| acc * x_chunk + p)
}
