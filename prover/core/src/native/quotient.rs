//! The numerator of the quotient h over the extended coset `g·⟨ω_ext⟩`: every gate polynomial and
//! every permutation constraint, folded with powers of y in halo2's order (gates in order, each
//! gate's polynomials in order, then the permutation terms). Every coset NTT goes through the
//! backend; the arithmetic is rayon code over whole columns, structured so it can move to the
//! device later.

use std::cell::Cell;

use ff::{Field, PrimeField};
use halo2_proofs::plonk::{Any, Expression, ProvingKey};
use halo2_proofs::poly::Rotation;
use halo2curves::bn256::{Fr, G1Affine};
use rayon::prelude::*;

use super::commit::coeff_to_extended;
use super::lookup;
use super::permutation::{chunk_len, Committed};
use super::{Ctx, NativeError};

const CHUNK: usize = 1 << 12;

/// A column on the extended coset, read with a rotation.
struct Ext<'a> {
    values: &'a [Fr],
    /// Extended-domain positions per row of the domain.
    ratio: usize,
}

impl Ext<'_> {
    fn rotated(&self, rot: Rotation) -> Vec<Fr> {
        let size = self.values.len() as i64;
        let shift = (i64::from(rot.0) * self.ratio as i64).rem_euclid(size) as usize;
        let mut out = Vec::with_capacity(self.values.len());
        out.extend_from_slice(&self.values[shift..]);
        out.extend_from_slice(&self.values[..shift]);
        out
    }
}

fn to_ext_all(ctx: &Ctx<'_>, polys: &[&[Fr]]) -> Result<Vec<Vec<Fr>>, NativeError> {
    polys.iter().map(|p| coeff_to_extended(ctx, p)).collect()
}

/// Evaluates an expression on a whole domain of `size` points (`ratio` positions per row):
/// the extended coset for gates, the domain itself (`ratio = 1`) for lookup compression.
pub fn evaluate_expression(
    expr: &Expression<Fr>,
    size: usize,
    ratio: usize,
    fixed: &[Vec<Fr>],
    advice: &[Vec<Fr>],
    instance: &[Vec<Fr>],
    challenges: &[Fr],
) -> Result<Vec<Fr>, NativeError> {
    let bad: Cell<Option<String>> = Cell::new(None);
    let column = |set: &[Vec<Fr>], kind: &str, index: usize, rot: Rotation| -> Vec<Fr> {
        match set.get(index) {
            Some(values) => Ext { values, ratio }.rotated(rot),
            None => {
                bad.set(Some(format!("{kind} column {index} missing")));
                vec![Fr::ZERO; size]
            }
        }
    };
    let out = expr.evaluate(
        &|c| vec![c; size],
        &|s| {
            bad.set(Some(format!(
                "selector {s:?} left in the proving key's gates"
            )));
            vec![Fr::ZERO; size]
        },
        &|q| column(fixed, "fixed", q.column_index(), q.rotation()),
        &|q| column(advice, "advice", q.column_index(), q.rotation()),
        &|q| column(instance, "instance", q.column_index(), q.rotation()),
        &|c| match challenges.get(c.index()) {
            Some(v) => vec![*v; size],
            None => {
                bad.set(Some(format!("challenge {} missing", c.index())));
                vec![Fr::ZERO; size]
            }
        },
        &|mut a| {
            a.par_iter_mut().for_each(|v| *v = -*v);
            a
        },
        &|mut a, b| {
            a.par_iter_mut()
                .zip(b.par_iter())
                .for_each(|(x, y)| *x += y);
            a
        },
        &|mut a, b| {
            a.par_iter_mut()
                .zip(b.par_iter())
                .for_each(|(x, y)| *x *= y);
            a
        },
        &|mut a, s| {
            a.par_iter_mut().for_each(|v| *v *= s);
            a
        },
    );
    match bad.into_inner() {
        Some(e) => Err(NativeError::Internal(e)),
        None => Ok(out),
    }
}

/// Returns the numerator of h on the extended coset (before the division by `X^n - 1`).
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    ctx: &Ctx<'_>,
    pk: &ProvingKey<G1Affine>,
    advice_coeffs: &[Vec<Fr>],
    instance_coeffs: &[Vec<Fr>],
    challenges: &[Fr],
    perm: &Committed,
    lookups: &[lookup::Committed],
    theta: Fr,
    beta: Fr,
    gamma: Fr,
    y: Fr,
) -> Result<Vec<Fr>, NativeError> {
    let cs = pk.get_vk().cs();
    let size = ctx.ext.size();
    let ratio = size / ctx.n;

    let fixed_refs: Vec<&[Fr]> = pk.fixed_polys().iter().map(|p| &p[..]).collect();
    let fixed = to_ext_all(ctx, &fixed_refs)?;
    let advice_refs: Vec<&[Fr]> = advice_coeffs.iter().map(|p| p.as_slice()).collect();
    let advice = to_ext_all(ctx, &advice_refs)?;
    let instance_refs: Vec<&[Fr]> = instance_coeffs.iter().map(|p| p.as_slice()).collect();
    let instance = to_ext_all(ctx, &instance_refs)?;

    // Gates.
    let mut value = vec![Fr::ZERO; size];
    for gate in cs.gates() {
        for poly in gate.polynomials() {
            let v = evaluate_expression(poly, size, ratio, &fixed, &advice, &instance, challenges)?;
            value
                .par_iter_mut()
                .zip(v.par_iter())
                .for_each(|(acc, p)| *acc = *acc * y + p);
        }
    }

    if perm.products.is_empty() && lookups.is_empty() {
        return Ok(value);
    }
    let l0 = coeff_to_extended(ctx, &pk.l0()[..])?;
    let l_last = coeff_to_extended(ctx, &pk.l_last()[..])?;
    let l_active = coeff_to_extended(ctx, &pk.l_active_row()[..])?;
    if !perm.products.is_empty() {
        permutation_terms(
            ctx, pk, &mut value, &fixed, &advice, &instance, &l0, &l_last, &l_active, perm, beta,
            gamma, y,
        )?;
    }
    for (argument, committed) in cs.lookups().iter().zip(lookups) {
        let cols = lookup::Columns {
            fixed: &fixed,
            advice: &advice,
            instance: &instance,
            challenges,
        };
        let input = lookup::compress(argument.input_expressions(), theta, size, ratio, &cols)?;
        let table = lookup::compress(argument.table_expressions(), theta, size, ratio, &cols)?;
        let z = coeff_to_extended(ctx, &committed.product)?;
        let a = coeff_to_extended(ctx, &committed.permuted_input)?;
        let s = coeff_to_extended(ctx, &committed.permuted_table)?;
        let isize = size as i64;
        value.par_iter_mut().enumerate().for_each(|(i, v)| {
            let i_next = (i as i64 + ratio as i64).rem_euclid(isize) as usize;
            let i_prev = (i as i64 - ratio as i64).rem_euclid(isize) as usize;
            let a_minus_s = a[i] - s[i];
            let mut acc = *v;
            acc = acc * y + (Fr::ONE - z[i]) * l0[i];
            acc = acc * y + (z[i].square() - z[i]) * l_last[i];
            acc = acc * y
                + (z[i_next] * (a[i] + beta) * (s[i] + gamma)
                    - z[i] * (input[i] + beta) * (table[i] + gamma))
                    * l_active[i];
            acc = acc * y + a_minus_s * l0[i];
            acc = acc * y + a_minus_s * (a[i] - a[i_prev]) * l_active[i];
            *v = acc;
        });
    }
    Ok(value)
}

/// The permutation argument's terms, folded into `value`.
#[allow(clippy::too_many_arguments)]
fn permutation_terms(
    ctx: &Ctx<'_>,
    pk: &ProvingKey<G1Affine>,
    value: &mut [Fr],
    fixed: &[Vec<Fr>],
    advice: &[Vec<Fr>],
    instance: &[Vec<Fr>],
    l0: &[Fr],
    l_last: &[Fr],
    l_active: &[Fr],
    perm: &Committed,
    beta: Fr,
    gamma: Fr,
    y: Fr,
) -> Result<(), NativeError> {
    let cs = pk.get_vk().cs();
    let size = ctx.ext.size();
    let ratio = size / ctx.n;
    let product_refs: Vec<&[Fr]> = perm.products.iter().map(|p| p.as_slice()).collect();
    let products = to_ext_all(ctx, &product_refs)?;
    let sigma_refs: Vec<&[Fr]> = pk.permutation().polys().iter().map(|p| &p[..]).collect();
    let sigmas = to_ext_all(ctx, &sigma_refs)?;
    let columns = cs.permutation().get_columns();
    let column_ext: Vec<&[Fr]> = columns
        .iter()
        .map(|c| {
            let set = match c.column_type() {
                Any::Advice(_) => advice,
                Any::Fixed => fixed,
                Any::Instance => instance,
            };
            set.get(c.index())
                .map(|v| v.as_slice())
                .ok_or_else(|| NativeError::Internal(format!("column {c:?} missing")))
        })
        .collect::<Result<_, _>>()?;
    let chunk = chunk_len(pk)?;
    let last_rot = -((ctx.blinding_factors + 1) as i64);
    let isize = size as i64;
    let next_shift = ratio as i64;
    let last_shift = last_rot * ratio as i64;
    let g = ctx.ext.coset_gen();
    let w = ctx.ext.omega();
    let first = &products[0];
    let last = &products[products.len() - 1];

    value
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(ci, out)| {
            let start = ci * CHUNK;
            let mut point = g * w.pow_vartime([start as u64]);
            for (k, v) in out.iter_mut().enumerate() {
                let i = start + k;
                let i_next = (i as i64 + next_shift).rem_euclid(isize) as usize;
                let i_last = (i as i64 + last_shift).rem_euclid(isize) as usize;
                let mut acc = *v;
                acc = acc * y + (Fr::ONE - first[i]) * l0[i];
                acc = acc * y + (last[i].square() - last[i]) * l_last[i];
                for s in 1..products.len() {
                    acc = acc * y + (products[s][i] - products[s - 1][i_last]) * l0[i];
                }
                let mut delta = beta * point;
                for ((cols, z), sig) in column_ext
                    .chunks(chunk)
                    .zip(products.iter())
                    .zip(sigmas.chunks(chunk))
                {
                    let mut left = z[i_next];
                    for (col, s) in cols.iter().zip(sig) {
                        left *= col[i] + beta * s[i] + gamma;
                    }
                    let mut right = z[i];
                    for col in cols {
                        right *= col[i] + delta + gamma;
                        delta *= Fr::DELTA;
                    }
                    acc = acc * y + (left - right) * l_active[i];
                }
                *v = acc;
                point *= w;
            }
        });
    Ok(())
}
