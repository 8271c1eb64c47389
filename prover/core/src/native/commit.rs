//! Commitments and evaluation: committed polynomials as resident coefficients ([`Coeffs`]),
//! commitments, and evaluation of host coefficients at a point.

use ff::Field;
use gpu::{Direction, Poly};
use group::Curve;
use halo2curves::bn256::{Fr, G1Affine};
use rayon::prelude::*;

use super::{Ctx, NativeError};

/// KZG commitment to a polynomial in coefficient form: `Σ c_i · g_i` (one backend MSM).
pub fn commit_coeff(ctx: &Ctx<'_>, coeffs: &[Fr]) -> Result<G1Affine, NativeError> {
    Ok(ctx.backend.msm(ctx.bases, coeffs)?.to_affine())
}

/// A committed polynomial in coefficient form, resident in the backend (for the quotient, which
/// runs there), with a host view for the steps that still run on the host (evaluations,
/// SHPLONK): on the CPU backend the resident vector *is* host memory and is borrowed; on a device
/// the coefficients are downloaded once. Dereferences to the coefficients.
pub struct Coeffs {
    poly: Poly,
    host: Option<Vec<Fr>>,
}

impl Coeffs {
    /// Wraps a resident coefficient vector, downloading it if it is not in host memory.
    pub fn new(ctx: &Ctx<'_>, poly: Poly) -> Result<Self, NativeError> {
        let host = match poly.host_slice() {
            Some(_) => None,
            None => Some(ctx.backend.download(&poly)?),
        };
        Ok(Self { poly, host })
    }

    /// The resident vector.
    pub fn poly(&self) -> &Poly {
        &self.poly
    }
}

impl std::ops::Deref for Coeffs {
    type Target = [Fr];
    fn deref(&self) -> &[Fr] {
        match (&self.host, self.poly.host_slice()) {
            (Some(h), _) => h,
            (None, Some(h)) => h,
            // `new` downloads whenever the vector is not in host memory.
            (None, None) => &[],
        }
    }
}

/// Commits to Lagrange values in the backend: upload, inverse NTT and MSM there (the same group
/// element as halo2's `commit_lagrange`). Returns the coefficients (resident) and the commitment.
pub fn commit_lagrange(ctx: &Ctx<'_>, values: Vec<Fr>) -> Result<(Coeffs, G1Affine), NativeError> {
    let mut poly = ctx.backend.upload_owned(values)?;
    ctx.backend
        .ntt_poly(&mut poly, &ctx.domain, Direction::Inverse, false)?;
    let c = ctx
        .backend
        .msm_polys(ctx.bases, &[&poly])?
        .pop()
        .ok_or_else(|| NativeError::Internal("msm_polys returned no sum".into()))?;
    Ok((Coeffs::new(ctx, poly)?, c.to_affine()))
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
