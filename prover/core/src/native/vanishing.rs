//! The vanishing argument: the random polynomial that blinds h(x), the h pieces, and their
//! combination at x.

use ff::Field;
use halo2_proofs::transcript::{EncodedChallenge, TranscriptWrite};
use halo2curves::bn256::{Fr, G1Affine};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use rayon::prelude::*;

use gpu::{Poly, ProgramBuilder};
use group::Curve;

use super::commit::{commit_poly, eval_at};
use super::quotient::HPieces;
use super::{Ctx, NativeError};

/// Values of the random polynomial drawn by one ChaCha20 stream.
const RANDOM_CHUNK: usize = 1 << 14;

/// Draws the random polynomial (a 32-byte seed for its n coefficients, then its blind) from
/// `rng`, commits to it and writes the commitment. Returns its coefficients, resident in the
/// backend.
pub fn commit_random<E, T>(
    ctx: &Ctx<'_>,
    rng: &mut dyn RngCore,
    transcript: &mut T,
) -> Result<Poly, NativeError>
where
    E: EncodedChallenge<G1Affine>,
    T: TranscriptWrite<G1Affine, E>,
{
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let random = random_values(seed, ctx.n);
    let _blind = Fr::random(&mut *rng);
    let random = ctx.backend.upload_owned(random)?;
    let c = commit_poly(ctx, &random)?;
    transcript.write_point(c)?;
    Ok(random)
}

/// `n` uniform field elements from `seed`, drawn in parallel: chunk `i` (of [`RANDOM_CHUNK`]
/// values) comes from ChaCha20 keyed by `seed` on stream `i`, so the values depend only on the
/// seed, not on the number of threads.
fn random_values(seed: [u8; 32], n: usize) -> Vec<Fr> {
    let mut values = gpu::host_zeros(n);
    values
        .par_chunks_mut(RANDOM_CHUNK)
        .enumerate()
        .for_each(|(i, chunk)| {
            let mut stream = ChaCha20Rng::from_seed(seed);
            stream.set_stream(i as u64);
            for v in chunk {
                *v = Fr::random(&mut stream);
            }
        });
    values
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

#[cfg(test)]
mod tests {
    use super::*;

    fn drawn_with_threads(threads: usize, seed: [u8; 32], n: usize) -> Vec<Fr> {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool")
            .install(|| random_values(seed, n))
    }

    #[test]
    fn the_random_values_depend_on_the_seed_only() {
        let seed = rand::random::<[u8; 32]>();
        for n in [0, 1, RANDOM_CHUNK - 1, RANDOM_CHUNK, 3 * RANDOM_CHUNK + 17] {
            let one = drawn_with_threads(1, seed, n);
            assert_eq!(one.len(), n);
            assert_eq!(one, drawn_with_threads(3, seed, n), "n = {n}");
            // Stream i continues where the previous size stopped: a longer draw extends a shorter.
            let longer = drawn_with_threads(2, seed, n + RANDOM_CHUNK / 2);
            assert_eq!(one[..], longer[..n], "n = {n}");
        }
        let mut other = seed;
        other[0] ^= 1;
        assert_ne!(random_values(seed, 8), random_values(other, 8));
    }

    #[test]
    fn each_chunk_of_random_values_has_its_own_stream() {
        let seed = rand::random::<[u8; 32]>();
        let values = random_values(seed, 3 * RANDOM_CHUNK);
        let chunks: Vec<&[Fr]> = values.chunks(RANDOM_CHUNK).collect();
        assert_ne!(chunks[0], chunks[1]);
        assert_ne!(chunks[1], chunks[2]);
        assert!(values.iter().all(|v| !bool::from(v.is_zero())));
        let mut first = ChaCha20Rng::from_seed(seed);
        first.set_stream(1);
        assert_eq!(chunks[1][0], Fr::random(&mut first));
    }
}
