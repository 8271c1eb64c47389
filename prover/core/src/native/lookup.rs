//! Lookup arguments (halo2's permuted-column lookups): the compressed input and table columns,
//! the permuted pair (a deterministic arrangement: sorted input, each first occurrence paired
//! with the same table value, repeated rows with the leftover table values in order), and the
//! grand product. The order of rng draws and transcript writes follows halo2-axiom's prover.

use std::collections::BTreeMap;

use ff::{BatchInvert, Field};
use halo2_proofs::plonk::Expression;
use halo2_proofs::poly::Rotation;
use halo2_proofs::transcript::{EncodedChallenge, TranscriptWrite};
use halo2curves::bn256::{Fr, G1Affine};
use rand_core::RngCore;
use rayon::prelude::*;

use super::commit::{commit_lagrange, eval_poly, Coeffs};
use super::program::{Columns, Program};
use super::{Ctx, NativeError};

const CHUNK: usize = 1 << 12;

/// After the permuted columns are committed.
pub struct Permuted {
    compressed_input: Vec<Fr>,
    compressed_table: Vec<Fr>,
    permuted_input: Vec<Fr>,
    permuted_table: Vec<Fr>,
    permuted_input_coeffs: Coeffs,
    permuted_table_coeffs: Coeffs,
}

/// After the grand product is committed: everything in coefficient form.
pub struct Committed {
    pub permuted_input: Coeffs,
    pub permuted_table: Coeffs,
    pub product: Coeffs,
}

/// `Σ θ^(m-1-j) e_j` over the expressions, on the circuit's domain (`cols` with ratio 1).
pub fn compress(
    expressions: &[Expression<Fr>],
    theta: Fr,
    cols: &Columns<'_>,
    challenges: &[Fr],
) -> Result<Vec<Fr>, NativeError> {
    let counts = [cols.fixed.len(), cols.advice.len(), cols.instance.len()];
    let exprs: Vec<&Expression<Fr>> = expressions.iter().collect();
    let program = Program::compile(&exprs, challenges, counts)?;
    let mut acc = vec![Fr::ZERO; cols.size];
    acc.par_chunks_mut(CHUNK).enumerate().for_each_init(
        || program.scratch(),
        |scratch, (ci, out)| program.horner(cols, scratch, ci * CHUNK, out, theta),
    );
    Ok(acc)
}

/// Arranges (input, table) so that every input value equals the table value in its row or the
/// input value in the row above. Only the usable rows are arranged.
fn permute_pair(input: &[Fr], table: &[Fr]) -> Result<(Vec<Fr>, Vec<Fr>), NativeError> {
    let mut sorted = input.to_vec();
    sorted.par_sort();
    let mut counts: BTreeMap<Fr, usize> = BTreeMap::new();
    for t in table {
        *counts.entry(*t).or_insert(0) += 1;
    }
    let mut permuted_table: Vec<Option<Fr>> = vec![None; sorted.len()];
    for row in 0..sorted.len() {
        if row == 0 || sorted[row] != sorted[row - 1] {
            match counts.get_mut(&sorted[row]) {
                Some(c) if *c > 0 => {
                    *c -= 1;
                    permuted_table[row] = Some(sorted[row]);
                }
                _ => {
                    return Err(NativeError::Unsatisfied(format!(
                    "lookup input value {:?} (row {row} of the sorted input) is not in the table",
                    sorted[row]
                )))
                }
            }
        }
    }
    let mut leftover = counts.into_iter().flat_map(|(v, c)| (0..c).map(move |_| v));
    let mut table_out = Vec::with_capacity(sorted.len());
    for slot in permuted_table {
        match slot {
            Some(v) => table_out.push(v),
            None => table_out.push(
                leftover
                    .next()
                    .ok_or_else(|| NativeError::Internal("lookup table ran short".into()))?,
            ),
        }
    }
    Ok((sorted, table_out))
}

/// Compresses, permutes, commits and writes the permuted input and table columns.
#[allow(clippy::too_many_arguments)]
pub fn commit_permuted<E, T>(
    ctx: &Ctx<'_>,
    input_expressions: &[Expression<Fr>],
    table_expressions: &[Expression<Fr>],
    theta: Fr,
    cols: &Columns<'_>,
    challenges: &[Fr],
    rng: &mut dyn RngCore,
    transcript: &mut T,
) -> Result<Permuted, NativeError>
where
    E: EncodedChallenge<G1Affine>,
    T: TranscriptWrite<G1Affine, E>,
{
    let n = ctx.n;
    let usable = ctx.unusable_start();
    let compressed_input = compress(input_expressions, theta, cols, challenges)?;
    let compressed_table = compress(table_expressions, theta, cols, challenges)?;
    let (mut permuted_input, mut permuted_table) =
        permute_pair(&compressed_input[..usable], &compressed_table[..usable])?;
    permuted_input.resize_with(n, || Fr::random(&mut *rng));
    permuted_table.resize_with(n, || Fr::random(&mut *rng));
    let _input_blind = Fr::random(&mut *rng);
    let (permuted_input_coeffs, ci) = commit_lagrange(ctx, permuted_input.clone())?;
    let _table_blind = Fr::random(&mut *rng);
    let (permuted_table_coeffs, ct) = commit_lagrange(ctx, permuted_table.clone())?;
    transcript.write_point(ci)?;
    transcript.write_point(ct)?;
    Ok(Permuted {
        compressed_input,
        compressed_table,
        permuted_input,
        permuted_table,
        permuted_input_coeffs,
        permuted_table_coeffs,
    })
}

/// Computes, commits and writes the grand product
/// `z(ωX)(a'(X)+β)(s'(X)+γ) = z(X)(A(X)+β)(S(X)+γ)`.
pub fn commit_product<E, T>(
    ctx: &Ctx<'_>,
    p: Permuted,
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
    let bf = ctx.blinding_factors;
    let mut ratio: Vec<Fr> = p
        .permuted_input
        .par_iter()
        .zip(p.permuted_table.par_iter())
        .map(|(a, s)| (beta + a) * (gamma + s))
        .collect();
    ratio.par_chunks_mut(1 << 12).for_each(|c| {
        c.batch_invert();
    });
    ratio
        .par_iter_mut()
        .zip(p.compressed_input.par_iter())
        .zip(p.compressed_table.par_iter())
        .for_each(|((r, a), s)| *r *= (*a + beta) * (*s + gamma));
    let mut z = Vec::with_capacity(n);
    z.push(Fr::ONE);
    for row in 1..(n - bf) {
        let prev = z[row - 1];
        z.push(prev * ratio[row - 1]);
    }
    if z[ctx.unusable_start()] != Fr::ONE {
        return Err(NativeError::Unsatisfied(
            "a lookup's grand product does not close (an input is not in its table)".into(),
        ));
    }
    for _ in 0..bf {
        z.push(Fr::random(&mut *rng));
    }
    let _blind = Fr::random(&mut *rng);
    let (product, c) = commit_lagrange(ctx, z)?;
    transcript.write_point(c)?;
    Ok(Committed {
        permuted_input: p.permuted_input_coeffs,
        permuted_table: p.permuted_table_coeffs,
        product,
    })
}

/// Writes z(x), z(ωx), a'(x), a'(ω⁻¹x), s'(x).
pub fn evaluate<E, T>(
    ctx: &Ctx<'_>,
    c: &Committed,
    x: Fr,
    transcript: &mut T,
) -> Result<(), NativeError>
where
    E: EncodedChallenge<G1Affine>,
    T: TranscriptWrite<G1Affine, E>,
{
    let x_next = ctx.rotate(x, Rotation::next());
    let x_prev = ctx.rotate(x, Rotation::prev());
    for v in [
        eval_poly(&c.product, x),
        eval_poly(&c.product, x_next),
        eval_poly(&c.permuted_input, x),
        eval_poly(&c.permuted_input, x_prev),
        eval_poly(&c.permuted_table, x),
    ] {
        transcript.write_scalar(v)?;
    }
    Ok(())
}
