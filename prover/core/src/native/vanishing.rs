//! The vanishing argument: the random polynomial that blinds h(x), the h pieces, and their
//! combination at x.

use ff::Field;
use halo2_proofs::transcript::{EncodedChallenge, TranscriptWrite};
use halo2curves::bn256::{Fr, G1Affine};
use rand_core::RngCore;

use gpu::{Poly, ProgramBuilder};
use group::Curve;

use super::commit::{commit_poly, eval_at};
use super::quotient::HPieces;
use super::{Ctx, NativeError};

/// Draws the random polynomial (n coefficients, then its blind) from `rng`, commits to it and
/// writes the commitment. Returns its coefficients, resident in the backend.
pub fn commit_random<E, T>(
    ctx: &Ctx<'_>,
    rng: &mut dyn RngCore,
    transcript: &mut T,
) -> Result<Poly, NativeError>
where
    E: EncodedChallenge<G1Affine>,
    T: TranscriptWrite<G1Affine, E>,
{
    let random: Vec<Fr> = (0..ctx.n).map(|_| Fr::random(&mut *rng)).collect();
    let _blind = Fr::random(&mut *rng);
    let random = ctx.backend.upload_owned(random)?;
    let c = commit_poly(ctx, &random)?;
    transcript.write_point(c)?;
    Ok(random)
}

/// Checks h's degree (its coefficients beyond the pieces are zero, as they are when the witness
/// satisfies the circuit), commits to each piece and writes the commitments. The pieces stay in
/// the backend; nothing of h comes back to the host.
pub fn construct<E, T>(
    ctx: &Ctx<'_>,
    h: HPieces,
    rng: &mut dyn RngCore,
    transcript: &mut T,
) -> Result<Vec<Poly>, NativeError>
where
    E: EncodedChallenge<G1Affine>,
    T: TranscriptWrite<G1Affine, E>,
{
    if let Some((tail, point)) = &h.tail {
        let at = eval_at(ctx, tail, &[*point])?;
        if at.iter().any(|v| !bool::from(v.is_zero())) {
            return Err(NativeError::Unsatisfied(
                "the quotient has a higher degree than allowed (a gate or copy constraint fails)"
                    .into(),
            ));
        }
    }
    for _ in 0..h.pieces.len() {
        let _blind = Fr::random(&mut *rng);
    }
    let refs: Vec<&Poly> = h.pieces.iter().collect();
    for c in ctx.backend.msm_polys(ctx.bases, &refs)? {
        transcript.write_point(c.to_affine())?;
    }
    Ok(h.pieces)
}

/// `h(X) = Σ x^{n·i} h_i(X)`, the polynomial opened at x, resident (one program folding the
/// pieces from the last with Horner's rule in `xn`).
pub fn combine(ctx: &Ctx<'_>, pieces: &[Poly], xn: Fr) -> Result<Poly, NativeError> {
    let program = {
        let mut b = ProgramBuilder::new(pieces.len());
        for i in (0..pieces.len()).rev() {
            let q = b.query(i, 0)?;
            b.output(q);
        }
        b.build()?
    };
    let inputs: Vec<&Poly> = pieces.iter().collect();
    let mut acc = ctx.backend.zeros(ctx.n)?;
    ctx.backend
        .eval_program(&program, &inputs, &mut acc, 1, xn)?;
    Ok(acc)
}
