//! The vanishing argument: the random polynomial that blinds h(x), the h pieces, and their
//! combination at x.

use ff::Field;
use halo2_proofs::transcript::{EncodedChallenge, TranscriptWrite};
use halo2curves::bn256::{Fr, G1Affine};
use rand_core::RngCore;

use gpu::{Direction, Poly, ProgramBuilder};
use group::Curve;

use super::commit::{commit_poly, eval_at};
use super::keycache::KeyCache;
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

/// Divides the numerator (values on the extended coset, resident in the backend) by `X^n - 1`,
/// interpolates h (both in the backend), cuts it into `pieces` polynomials of n coefficients,
/// commits to each and writes the commitments. The pieces stay in the backend; nothing of h
/// comes back to the host.
pub fn construct<E, T>(
    ctx: &Ctx<'_>,
    pieces: usize,
    numerator: Poly,
    cache: &KeyCache,
    rng: &mut dyn RngCore,
    transcript: &mut T,
) -> Result<Vec<Poly>, NativeError>
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
    // Coefficients beyond the quotient degree must be zero when the witness satisfies the
    // circuit. They are checked in the backend by evaluating them at a random point (a non-zero
    // polynomial of degree < size vanishes there with probability below size/|Fr|); the point
    // comes from the OS, not the proof's rng, whose draws are fixed by halo2's order.
    let tail_len = size - pieces * n;
    if tail_len > 0 {
        let tail = backend.copy_range(&h_ext, pieces * n, tail_len)?;
        let mut os = <rand_chacha::ChaCha20Rng as rand::SeedableRng>::from_rng(rand::rngs::OsRng)
            .map_err(|e| NativeError::Internal(format!("OS randomness: {e}")))?;
        let point = Fr::random(&mut os);
        let at = eval_at(ctx, &tail, &[point])?;
        if at.iter().any(|v| !bool::from(v.is_zero())) {
            return Err(NativeError::Unsatisfied(
                "the quotient has a higher degree than allowed (a gate or copy constraint fails)"
                    .into(),
            ));
        }
    }
    let resident_pieces = (0..pieces)
        .map(|i| backend.copy_range(&h_ext, i * n, n))
        .collect::<Result<Vec<_>, _>>()?;
    drop(h_ext);
    for _ in 0..pieces {
        let _blind = Fr::random(&mut *rng);
    }
    let refs: Vec<&Poly> = resident_pieces.iter().collect();
    for c in backend.msm_polys(ctx.bases, &refs)? {
        transcript.write_point(c.to_affine())?;
    }
    Ok(resident_pieces)
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
