//! The numerator of the quotient h over the extended coset `g·⟨ω_ext⟩`: every gate polynomial and
//! every permutation constraint, folded with powers of y in halo2's order (gates in order, each
//! gate's polynomials in order, then the permutation terms). Every coset NTT goes through the
//! backend; the arithmetic is rayon code over whole columns, structured so it can move to the
//! device later.

use ff::{Field, PrimeField};
use halo2_proofs::plonk::{Any, Expression, ProvingKey};
use halo2curves::bn256::{Fr, G1Affine};
use rayon::prelude::*;

use super::commit::coeff_to_extended;
use super::keycache::KeyCache;
use super::lookup;
use super::permutation::{chunk_len, Committed};
use super::program::{Columns, Program};
use super::{Ctx, NativeError};

/// Rows per parallel task.
const CHUNK: usize = 1 << 12;

fn to_ext_all(ctx: &Ctx<'_>, polys: &[&[Fr]]) -> Result<Vec<Vec<Fr>>, NativeError> {
    polys.iter().map(|p| coeff_to_extended(ctx, p)).collect()
}

fn slices(v: &[Vec<Fr>]) -> Vec<&[Fr]> {
    v.iter().map(|c| c.as_slice()).collect()
}

/// A lookup argument's compiled compressions and its committed columns on the extended coset.
struct LookupExt {
    input: Program,
    table: Program,
    z: Vec<Fr>,
    a: Vec<Fr>,
    s: Vec<Fr>,
}

/// Returns the numerator of h on the extended coset (before the division by `X^n - 1`).
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    ctx: &Ctx<'_>,
    pk: &ProvingKey<G1Affine>,
    advice_coeffs: &[Vec<Fr>],
    instance_coeffs: &[Vec<Fr>],
    challenges: &[Fr],
    cache: &KeyCache,
    perm: &Committed,
    lookups: &[lookup::Committed],
    theta: Fr,
    beta: Fr,
    gamma: Fr,
    y: Fr,
) -> Result<Vec<Fr>, NativeError> {
    let mut last = std::time::Instant::now();
    let mut part = |name: &'static str| {
        let now = std::time::Instant::now();
        tracing::debug!(
            part = name,
            ms = (now - last).as_millis() as u64,
            "quotient"
        );
        last = now;
    };
    let cs = pk.get_vk().cs();
    let size = ctx.ext.size();
    let ratio = size / ctx.n;
    let counts = [
        cs.num_fixed_columns(),
        cs.num_advice_columns(),
        cs.num_instance_columns(),
    ];

    // Compile before any transform, so a malformed key fails fast.
    let gate_exprs: Vec<&Expression<Fr>> = cs
        .gates()
        .iter()
        .flat_map(|g| g.polynomials().iter())
        .collect();
    let gates = Program::compile(&gate_exprs, challenges, counts)?;
    let mut lookup_programs = Vec::with_capacity(cs.lookups().len());
    for argument in cs.lookups() {
        let input: Vec<&Expression<Fr>> = argument.input_expressions().iter().collect();
        let table: Vec<&Expression<Fr>> = argument.table_expressions().iter().collect();
        lookup_programs.push((
            Program::compile(&input, challenges, counts)?,
            Program::compile(&table, challenges, counts)?,
        ));
    }

    part("compile");
    let advice = to_ext_all(ctx, &slices(advice_coeffs))?;
    let instance = to_ext_all(ctx, &slices(instance_coeffs))?;
    let cols = Columns {
        fixed: slices(&cache.fixed),
        advice: slices(&advice),
        instance: slices(&instance),
        size,
        ratio,
    };
    cols.check()?;
    part("column coset NTTs");

    let mut value = vec![Fr::ZERO; size];
    // Gates, in order, each gate's polynomials in order: value = value·y + p.
    value.par_chunks_mut(CHUNK).enumerate().for_each_init(
        || gates.scratch(),
        |scratch, (ci, out)| gates.horner(&cols, scratch, ci * CHUNK, out, y),
    );

    part("gates");
    if perm.products.is_empty() && lookups.is_empty() {
        return Ok(value);
    }
    let (l0, l_last, l_active) = (&cache.l0, &cache.l_last, &cache.l_active);
    if !perm.products.is_empty() {
        permutation_terms(
            ctx,
            pk,
            &mut value,
            &cols,
            l0,
            l_last,
            l_active,
            &cache.sigmas,
            perm,
            beta,
            gamma,
            y,
        )?;
    }
    part("permutation");
    let mut lookup_ext = Vec::with_capacity(lookups.len());
    for ((input, table), committed) in lookup_programs.into_iter().zip(lookups) {
        lookup_ext.push(LookupExt {
            input,
            table,
            z: coeff_to_extended(ctx, &committed.product)?,
            a: coeff_to_extended(ctx, &committed.permuted_input)?,
            s: coeff_to_extended(ctx, &committed.permuted_table)?,
        });
    }
    for l in &lookup_ext {
        value.par_chunks_mut(CHUNK).enumerate().for_each_init(
            || (l.input.scratch(), l.table.scratch()),
            |(si, st), (ci, out)| {
                let start = ci * CHUNK;
                let mut input = vec![Fr::ZERO; out.len()];
                let mut table = vec![Fr::ZERO; out.len()];
                l.input.horner(&cols, si, start, &mut input, theta);
                l.table.horner(&cols, st, start, &mut table, theta);
                for (k, v) in out.iter_mut().enumerate() {
                    let i = start + k;
                    let i_next = (i + ratio) % size;
                    let i_prev = (i + size - ratio) % size;
                    let (z, a, s) = (&l.z, &l.a, &l.s);
                    let a_minus_s = a[i] - s[i];
                    let mut acc = *v;
                    acc = acc * y + (Fr::ONE - z[i]) * l0[i];
                    acc = acc * y + (z[i].square() - z[i]) * l_last[i];
                    acc = acc * y
                        + (z[i_next] * (a[i] + beta) * (s[i] + gamma)
                            - z[i] * (input[k] + beta) * (table[k] + gamma))
                            * l_active[i];
                    acc = acc * y + a_minus_s * l0[i];
                    acc = acc * y + a_minus_s * (a[i] - a[i_prev]) * l_active[i];
                    *v = acc;
                }
            },
        );
    }
    part("lookups");
    Ok(value)
}

/// The permutation argument's terms, folded into `value`.
#[allow(clippy::too_many_arguments)]
fn permutation_terms(
    ctx: &Ctx<'_>,
    pk: &ProvingKey<G1Affine>,
    value: &mut [Fr],
    cols: &Columns<'_>,
    l0: &[Fr],
    l_last: &[Fr],
    l_active: &[Fr],
    sigmas: &[Vec<Fr>],
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
    let columns = cs.permutation().get_columns();
    let column_ext: Vec<&[Fr]> = columns
        .iter()
        .map(|c| {
            let set = match c.column_type() {
                Any::Advice(_) => &cols.advice,
                Any::Fixed => &cols.fixed,
                Any::Instance => &cols.instance,
            };
            set.get(c.index())
                .copied()
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

/// Refuses a witness that violates a gate, before anything expensive: every gate polynomial is
/// evaluated on every row of the domain (Lagrange values; the blinding rows included, where the
/// selectors are zero) and folded with the random `factor`, so the fold is non-zero wherever a
/// gate fails (except with negligible probability). `cols` are the columns on the circuit's
/// domain (ratio 1) and must have passed [`Columns::check`]. The first failing row is reported with the
/// gate and constraint names.
pub fn check_gates(
    pk: &ProvingKey<G1Affine>,
    cols: &Columns<'_>,
    challenges: &[Fr],
    factor: Fr,
) -> Result<(), NativeError> {
    let cs = pk.get_vk().cs();
    let n = cols.size;
    let counts = [
        cs.num_fixed_columns(),
        cs.num_advice_columns(),
        cs.num_instance_columns(),
    ];
    let exprs: Vec<&Expression<Fr>> = cs
        .gates()
        .iter()
        .flat_map(|g| g.polynomials().iter())
        .collect();
    let program = Program::compile(&exprs, challenges, counts)?;
    let mut folded = vec![Fr::ZERO; n];
    folded.par_chunks_mut(CHUNK).enumerate().for_each_init(
        || program.scratch(),
        |scratch, (ci, out)| program.horner(cols, scratch, ci * CHUNK, out, factor),
    );
    let Some(row) = folded.iter().position(|v| !bool::from(v.is_zero())) else {
        return Ok(());
    };
    // Name the failing constraint: evaluate each one at that row.
    let at = |set: &[&[Fr]], index: usize, rot: i32| {
        set[index][(row as i64 + i64::from(rot)).rem_euclid(n as i64) as usize]
    };
    for gate in cs.gates() {
        for (i, poly) in gate.polynomials().iter().enumerate() {
            let v = poly.evaluate(
                &|c| c,
                &|_| Fr::ZERO,
                &|q| at(&cols.fixed, q.column_index(), q.rotation().0),
                &|q| at(&cols.advice, q.column_index(), q.rotation().0),
                &|q| at(&cols.instance, q.column_index(), q.rotation().0),
                &|c| challenges.get(c.index()).copied().unwrap_or(Fr::ZERO),
                &|a| -a,
                &|a, b| a + b,
                &|a, b| a * b,
                &|a, s| a * s,
            );
            if !bool::from(v.is_zero()) {
                return Err(NativeError::Unsatisfied(format!(
                    "gate {:?} (constraint {i} {:?}) fails at row {row}",
                    gate.name(),
                    gate.constraint_name(i)
                )));
            }
        }
    }
    Err(NativeError::Unsatisfied(format!(
        "a gate fails at row {row}"
    )))
}
