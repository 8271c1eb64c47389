//! The vanishing argument: the random polynomial that blinds h(x), the h pieces, and their
//! combination at x.

use ff::Field;
use halo2_proofs::transcript::{EncodedChallenge, TranscriptWrite};
use halo2curves::bn256::{Fr, G1Affine};
use rand_core::RngCore;
use rayon::prelude::*;

use gpu::{Direction, Poly, ProgramBuilder};
use group::Curve;

use super::commit::commit_coeff;
use super::keycache::KeyCache;
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

/// Divides the numerator (values on the extended coset, resident in the backend) by `X^n - 1`,
/// interpolates h (both in the backend), cuts it into `pieces` polynomials of n coefficients,
/// commits to each and writes the commitments. Only h's coefficients come back to the host.
pub fn construct<E, T>(
    ctx: &Ctx<'_>,
    pieces: usize,
    numerator: Poly,
    cache: &KeyCache,
    rng: &mut dyn RngCore,
    transcript: &mut T,
) -> Result<Vec<Vec<Fr>>, NativeError>
where
    E: EncodedChallenge<G1Affine>,
    T: TranscriptWrite<G1Affine, E>,
{
    let n = ctx.n;
    let size = ctx.ext.size();
    let backend = ctx.backend;
    // h = numerator · 1/(X^n - 1), pointwise on the coset.
    let divide = {
        let mut b = ProgramBuilder::new(2);
        let num = b.query(0, 0)?;
        let inv = b.query(1, 0)?;
        let q = b.mul(num, inv);
        b.output(q);
        b.build()?
    };
    let mut h_ext = backend.zeros(size)?;
    backend.eval_program(
        &divide,
        &[&numerator, &cache.t_inv],
        &mut h_ext,
        1,
        Fr::ZERO,
    )?;
    drop(numerator);
    backend.ntt_poly(&mut h_ext, &ctx.ext, Direction::Inverse, true)?;
    if pieces * n > size {
        return Err(NativeError::Internal(format!(
            "{pieces} pieces of {n} do not fit the extended domain of {size}"
        )));
    }
    // The pieces are committed from the resident coefficients; the host reads h for the zero
    // check below and the evaluation at x.
    let resident_pieces = (0..pieces)
        .map(|i| backend.copy_range(&h_ext, i * n, n))
        .collect::<Result<Vec<_>, _>>()?;
    let h = backend.download(&h_ext)?;
    drop(h_ext);
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
    let refs: Vec<&Poly> = resident_pieces.iter().collect();
    for c in backend.msm_polys(ctx.bases, &refs)? {
        transcript.write_point(c.to_affine())?;
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
