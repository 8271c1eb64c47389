//! The vanishing argument: the random polynomial that blinds h(x), the h pieces, and their
//! combination at x.

use ff::Field;
use halo2_proofs::transcript::{EncodedChallenge, TranscriptWrite};
use halo2curves::bn256::{Fr, G1Affine};
use rand_core::RngCore;
use rayon::prelude::*;

use super::commit::{commit_coeff, extended_to_coeff};
use super::{Ctx, NativeError};

/// Draws the random polynomial (n coefficients, then its blind) from `rng`, commits to it and
/// writes the commitment. Returns its coefficients.
pub fn commit_random<E, T>(
    ctx: &Ctx<'_>,
    rng: &mut dyn RngCore,
    transcript: &mut T,
) -> Result<Vec<Fr>, NativeError>
where
    E: EncodedChallenge<G1Affine>,
    T: TranscriptWrite<G1Affine, E>,
{
    let random: Vec<Fr> = (0..ctx.n).map(|_| Fr::random(&mut *rng)).collect();
    let _blind = Fr::random(&mut *rng);
    let c = commit_coeff(ctx, &random)?;
    transcript.write_point(c)?;
    Ok(random)
}

/// Divides the numerator (values on the extended coset) by `X^n - 1`, interpolates h, cuts it
/// into `pieces` polynomials of n coefficients, commits to each and writes the commitments.
pub fn construct<E, T>(
    ctx: &Ctx<'_>,
    pieces: usize,
    mut numerator: Vec<Fr>,
    rng: &mut dyn RngCore,
    transcript: &mut T,
) -> Result<Vec<Vec<Fr>>, NativeError>
where
    E: EncodedChallenge<G1Affine>,
    T: TranscriptWrite<G1Affine, E>,
{
    let n = ctx.n;
    let size = ctx.ext.size();
    let ratio = size / n;
    // (g ω_ext^i)^n - 1 takes `ratio` distinct values, repeating with period `ratio`.
    let gn = ctx.ext.coset_gen().pow_vartime([n as u64]);
    let wn = ctx.ext.omega().pow_vartime([n as u64]);
    let mut inv: Vec<Fr> = Vec::with_capacity(ratio);
    let mut p = gn;
    for _ in 0..ratio {
        inv.push(p - Fr::ONE);
        p *= wn;
    }
    for v in &inv {
        if bool::from(v.is_zero()) {
            return Err(NativeError::Internal(
                "X^n - 1 vanishes on the coset".into(),
            ));
        }
    }
    ff::BatchInvert::batch_invert(&mut inv[..]);
    numerator
        .par_iter_mut()
        .enumerate()
        .for_each(|(i, v)| *v *= inv[i % ratio]);
    let h = extended_to_coeff(ctx, numerator)?;
    if pieces * n > h.len() {
        return Err(NativeError::Internal(format!(
            "{pieces} pieces of {n} do not fit the extended domain of {}",
            h.len()
        )));
    }
    // Coefficients beyond the quotient degree must be zero when the witness satisfies the
    // circuit.
    if h[pieces * n..].iter().any(|c| !bool::from(c.is_zero())) {
        return Err(NativeError::Unsatisfied(
            "the quotient has a higher degree than allowed (a gate or copy constraint fails)"
                .into(),
        ));
    }
    let pieces: Vec<Vec<Fr>> = h[..pieces * n].chunks(n).map(|c| c.to_vec()).collect();
    for _ in &pieces {
        let _blind = Fr::random(&mut *rng);
    }
    for piece in &pieces {
        let c = commit_coeff(ctx, piece)?;
        transcript.write_point(c)?;
    }
    Ok(pieces)
}

/// `h(X) = Σ x^{n·i} h_i(X)`, the polynomial opened at x.
pub fn combine(pieces: &[Vec<Fr>], xn: Fr, n: usize) -> Vec<Fr> {
    let mut acc = vec![Fr::ZERO; n];
    for piece in pieces.iter().rev() {
        acc.par_iter_mut()
            .zip(piece.par_iter())
            .for_each(|(a, p)| *a = *a * xn + p);
    }
    acc
}
