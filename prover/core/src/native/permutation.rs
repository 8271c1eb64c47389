//! The permutation (copy-constraint) argument: one grand product z per chunk of
//! `degree - 2` columns, chained across chunks, with random blinding rows.

use ff::{BatchInvert, Field, PrimeField};
use halo2_proofs::plonk::{Any, ProvingKey};
use halo2_proofs::poly::Rotation;
use halo2_proofs::transcript::{EncodedChallenge, TranscriptWrite};
use halo2curves::bn256::{Fr, G1Affine};
use rand_core::RngCore;
use rayon::prelude::*;

use super::commit::{commit_lagrange, eval_poly, Coeffs};
use super::{Ctx, NativeError};

/// The committed grand products, in coefficient form, one per chunk of columns.
pub struct Committed {
    pub products: Vec<Coeffs>,
}

/// Number of columns per grand product: `degree - 2`.
pub fn chunk_len(pk: &ProvingKey<G1Affine>) -> Result<usize, NativeError> {
    let degree = pk.get_vk().cs().degree();
    if degree < 3 {
        return Err(NativeError::Internal(format!(
            "constraint system degree {degree} < 3"
        )));
    }
    Ok(degree - 2)
}

/// Values of a column (Lagrange basis) of any type.
pub fn column_values<'v>(
    column: &halo2_proofs::plonk::Column<Any>,
    advice: &'v [Vec<Fr>],
    fixed: &'v [halo2_proofs::poly::Polynomial<Fr, halo2_proofs::poly::LagrangeCoeff>],
    instance: &'v [Vec<Fr>],
) -> Result<&'v [Fr], NativeError> {
    let i = column.index();
    let found = match column.column_type() {
        Any::Advice(_) => advice.get(i).map(|v| v.as_slice()),
        Any::Fixed => fixed.get(i).map(|v| &v[..]),
        Any::Instance => instance.get(i).map(|v| v.as_slice()),
    };
    found.ok_or_else(|| NativeError::Internal(format!("column {column:?} missing")))
}

/// Computes, commits and writes the grand products.
#[allow(clippy::too_many_arguments)]
pub fn commit<E, T>(
    ctx: &Ctx<'_>,
    pk: &ProvingKey<G1Affine>,
    advice: &[Vec<Fr>],
    instance: &[Vec<Fr>],
    beta: Fr,
    gamma: Fr,
    rng: &mut dyn RngCore,
    transcript: &mut T,
) -> Result<Committed, NativeError>
where
    E: EncodedChallenge<G1Affine>,
    T: TranscriptWrite<G1Affine, E>,
{
    let n = ctx.n;
    let columns = pk.get_vk().cs().permutation().get_columns();
    let sigmas = pk.permutation().permutations();
    let fixed = pk.fixed_values();
    let chunk = chunk_len(pk)?;
    let bf = ctx.blinding_factors;
    let omega = ctx.omega;

    // δ^c for the running column index c.
    let mut delta_power = Fr::ONE;
    let mut last_z = Fr::ONE;
    let mut products = Vec::new();
    for (cols, sigma_chunk) in columns.chunks(chunk).zip(sigmas.chunks(chunk)) {
        // Denominators: Π (v + β σ(i) + γ).
        let mut ratio = vec![Fr::ONE; n];
        for (col, sigma) in cols.iter().zip(sigma_chunk) {
            let values = column_values(col, advice, fixed, instance)?;
            ratio
                .par_iter_mut()
                .zip(values.par_iter())
                .zip(sigma.par_iter())
                .for_each(|((r, v), s)| *r *= beta * s + gamma + v);
        }
        ratio.par_chunks_mut(1 << 12).for_each(|c| {
            c.batch_invert();
        });
        // Numerators: Π (v + β δ^c ω^i + γ).
        for col in cols {
            let values = column_values(col, advice, fixed, instance)?;
            let start = delta_power;
            ratio
                .par_chunks_mut(1 << 12)
                .zip(values.par_chunks(1 << 12))
                .enumerate()
                .for_each(|(ci, (r, v))| {
                    let mut point = start * omega.pow_vartime([(ci << 12) as u64]);
                    for (r, v) in r.iter_mut().zip(v) {
                        *r *= point * beta + gamma + v;
                        point *= omega;
                    }
                });
            delta_power *= Fr::DELTA;
        }
        let mut z = Vec::with_capacity(n);
        z.push(last_z);
        for row in 1..n {
            let prev = z[row - 1];
            z.push(prev * ratio[row - 1]);
        }
        for cell in &mut z[n - bf..] {
            *cell = Fr::random(&mut *rng);
        }
        last_z = z[n - (bf + 1)];
        let _blind = Fr::random(&mut *rng);
        let (coeffs, c) = commit_lagrange(ctx, z)?;
        transcript.write_point(c)?;
        products.push(coeffs);
    }
    // The product over all usable rows must come back to 1 (the verifier checks
    // l_last·(z² - z) = 0); anything else means a copy constraint fails, and the proof would be
    // rejected. Refuse it here with a clear error instead.
    if !products.is_empty() && last_z != Fr::ONE {
        return Err(NativeError::Unsatisfied(
            "a copy constraint (permutation argument) does not hold".into(),
        ));
    }
    Ok(Committed { products })
}

/// Writes z(x), z(ωx) for every product, and z(ω^last x) for all but the last one.
pub fn evaluate<E, T>(
    ctx: &Ctx<'_>,
    committed: &Committed,
    x: Fr,
    transcript: &mut T,
) -> Result<(), NativeError>
where
    E: EncodedChallenge<G1Affine>,
    T: TranscriptWrite<G1Affine, E>,
{
    let x_next = ctx.rotate(x, Rotation::next());
    let x_last = ctx.rotate(x, Rotation(-((ctx.blinding_factors + 1) as i32)));
    let count = committed.products.len();
    for (i, z) in committed.products.iter().enumerate() {
        transcript.write_scalar(eval_poly(z, x))?;
        transcript.write_scalar(eval_poly(z, x_next))?;
        if i + 1 < count {
            transcript.write_scalar(eval_poly(z, x_last))?;
        }
    }
    Ok(())
}
