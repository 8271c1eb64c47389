//! The permutation (copy-constraint) argument: one grand product z per chunk of
//! `degree - 2` columns, chained across chunks, with random blinding rows.

use ff::{Field, PrimeField};
use gpu::{Poly, ProgramBuilder};
use halo2_proofs::plonk::{Any, ProvingKey};
use halo2_proofs::poly::Rotation;
use halo2_proofs::transcript::{EncodedChallenge, TranscriptWrite};
use halo2curves::bn256::{Fr, G1Affine};
use rand_core::RngCore;

use super::commit::commit_lagrange;
use super::keycache::{Held, KeyValues};
use super::{Ctx, NativeError};

/// The committed grand products, in coefficient form (resident), one per chunk of columns.
pub struct Committed {
    pub products: Vec<Poly>,
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

/// The resident values (Lagrange basis, n rows) of a column of any type.
pub fn column_values<'v>(
    column: &halo2_proofs::plonk::Column<Any>,
    advice: &[&'v Poly],
    key: &'v KeyValues<'_>,
    instance: &[&'v Poly],
) -> Result<Held<'v, Poly>, NativeError> {
    let i = column.index();
    let found = match column.column_type() {
        Any::Advice(_) => advice.get(i).copied().map(Held::Cached),
        Any::Fixed => return key.fixed(i),
        Any::Instance => instance.get(i).copied().map(Held::Cached),
    };
    found.ok_or_else(|| NativeError::Internal(format!("column {column:?} missing")))
}

/// Computes, commits and writes the grand products, in the backend: per chunk of columns the
/// row ratio `Π (v + β δ^c ω^i + γ) / Π (v + β σ(i) + γ)` (two programs and a batch inversion),
/// its running product from the previous chunk's last value, and the blinding rows; only the
/// blinding values go to the backend and one value per chunk comes back.
#[allow(clippy::too_many_arguments)]
pub fn commit<E, T>(
    ctx: &Ctx<'_>,
    pk: &ProvingKey<G1Affine>,
    key: &KeyValues<'_>,
    advice: &[&Poly],
    instance: &[&Poly],
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
    let backend = ctx.backend;
    let columns = pk.get_vk().cs().permutation().get_columns();
    let chunk = chunk_len(pk)?;
    let bf = ctx.blinding_factors;
    if key.sigma_count() != columns.len() {
        return Err(NativeError::Internal(format!(
            "{} permutation columns but {} σ columns in the key",
            columns.len(),
            key.sigma_count()
        )));
    }

    // δ^c for the running column index c.
    let mut delta_power = Fr::ONE;
    let mut last_z = Fr::ONE;
    let mut products = Vec::new();
    for (j, cols) in columns.chunks(chunk).enumerate() {
        let k = cols.len();
        let held = cols
            .iter()
            .map(|c| column_values(c, advice, key, instance))
            .collect::<Result<Vec<_>, _>>()?;
        let values: Vec<&Poly> = held.iter().map(|h| &**h).collect();
        let sigmas = (j * chunk..j * chunk + k)
            .map(|i| key.sigma(i))
            .collect::<Result<Vec<_>, _>>()?;
        // Denominators Π (v + β σ(i) + γ), inverted.
        let den_program = {
            let mut b = ProgramBuilder::new(2 * k);
            let beta = b.constant(beta);
            let gamma = b.constant(gamma);
            let mut acc = b.constant(Fr::ONE);
            for j in 0..k {
                let v = b.query(j, 0)?;
                let s = b.query(k + j, 0)?;
                let bs = b.mul(beta, s);
                let t = b.add(v, bs);
                let t = b.add(t, gamma);
                acc = b.mul(acc, t);
            }
            b.output(acc);
            b.build()?
        };
        let mut inputs: Vec<&Poly> = values.clone();
        inputs.extend(sigmas.iter().map(|h| &**h));
        let mut den = backend.zeros(n)?;
        backend.eval_program(&den_program, &inputs, &mut den, 1, Fr::ZERO)?;
        backend.batch_invert(&mut den)?;
        // Ratios: Π (v + β δ^c ω^i + γ) times the inverted denominators.
        let ratio_program = {
            let mut b = ProgramBuilder::new(k + 2);
            let gamma = b.constant(gamma);
            let w = b.query(k, 0)?;
            let mut acc = b.query(k + 1, 0)?;
            for j in 0..k {
                let v = b.query(j, 0)?;
                let d = b.constant(beta * delta_power);
                let dw = b.mul(d, w);
                let t = b.add(v, dw);
                let t = b.add(t, gamma);
                acc = b.mul(acc, t);
                delta_power *= Fr::DELTA;
            }
            b.output(acc);
            b.build()?
        };
        drop(sigmas);
        let mut inputs: Vec<&Poly> = values;
        inputs.push(key.omega()?);
        inputs.push(&den);
        let mut z = backend.zeros(n)?;
        backend.eval_program(&ratio_program, &inputs, &mut z, 1, Fr::ZERO)?;
        drop(den);
        backend.prefix_product(&mut z, last_z)?;
        let blinding: Vec<Fr> = (0..bf).map(|_| Fr::random(&mut *rng)).collect();
        backend.write_range(&mut z, n - bf, &blinding)?;
        last_z = backend
            .read_range(&z, n - (bf + 1), 1)?
            .first()
            .copied()
            .ok_or_else(|| NativeError::Internal("empty range read".into()))?;
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

/// The evaluations the proof carries, in its order: z(x), z(ωx) for every product, and
/// z(ω^last x) for all but the last one.
pub fn evaluations<'c>(ctx: &Ctx<'_>, committed: &'c Committed, x: Fr) -> Vec<(&'c Poly, Vec<Fr>)> {
    let x_next = ctx.rotate(x, Rotation::next());
    let x_last = ctx.rotate(x, Rotation(-((ctx.blinding_factors + 1) as i32)));
    let count = committed.products.len();
    committed
        .products
        .iter()
        .enumerate()
        .map(|(i, z)| {
            let points = if i + 1 < count {
                vec![x, x_next, x_last]
            } else {
                vec![x, x_next]
            };
            (z, points)
        })
        .collect()
}
