//! Lookup arguments (halo2's permuted-column lookups): the compressed input and table columns,
//! the permuted pair (a deterministic arrangement: sorted input, each first occurrence paired
//! with the same table value, repeated rows with the leftover table values in order), and the
//! grand product. The order of rng draws and transcript writes follows halo2-axiom's prover.

use ff::{Field, PrimeField};
use gpu::{BackendName, Poly, ProgramBuilder};
use halo2_proofs::plonk::Expression;
use halo2_proofs::poly::Rotation;
use halo2_proofs::transcript::{EncodedChallenge, TranscriptWrite};
use halo2curves::bn256::{Fr, G1Affine};
use rand_core::RngCore;
use rayon::prelude::*;

use super::commit::{coeffs_of, commit_lagrange, commit_values};
use super::program::{Columns, Program};
use super::quotient::{compile, expr, Layout};
use super::{Ctx, NativeError};

const CHUNK: usize = 1 << 12;
/// Rows per task of the lookup arrangement's scans.
const ARRANGE: usize = 1 << 14;

/// After the permuted columns are committed: the compressed and permuted columns as resident
/// values, the permuted ones also as resident coefficients.
pub struct Permuted {
    compressed_input: Poly,
    compressed_table: Poly,
    permuted_input: Poly,
    permuted_table: Poly,
    permuted_input_coeffs: Poly,
    permuted_table_coeffs: Poly,
}

/// After the grand product is committed: everything in coefficient form (resident).
pub struct Committed {
    pub permuted_input: Poly,
    pub permuted_table: Poly,
    pub product: Poly,
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
    let mut acc = gpu::host_zeros(cols.size);
    acc.par_chunks_mut(CHUNK).enumerate().for_each_init(
        || program.scratch(),
        |scratch, (ci, out)| program.horner(cols, scratch, ci * CHUNK, out, theta),
    );
    Ok(acc)
}

/// The same compression in the backend, over the circuit's resident columns (`inputs` laid out
/// by `layout`): the expressions are compiled into programs whose outputs are folded with θ.
fn compress_resident(
    ctx: &Ctx<'_>,
    expressions: &[Expression<Fr>],
    theta: Fr,
    layout: &Layout,
    inputs: &[&Poly],
    challenges: &[Fr],
) -> Result<Poly, NativeError> {
    let programs = compile(inputs.len(), expressions.len(), &|b, i| {
        expr(b, &expressions[i], layout, challenges)
    })?;
    let mut acc = ctx.backend.zeros(ctx.n)?;
    for program in &programs {
        ctx.backend
            .eval_program(program, inputs, &mut acc, 1, theta)?;
    }
    Ok(acc)
}

/// Arranges (input, table) so that every input value equals the table value in its row or the
/// input value in the row above. Only the usable rows are arranged. The arrangement is halo2's:
/// the input in ascending order (`Fr`'s `Ord`, the canonical value), each run's first row paired
/// with one copy of its value from the table, the table's other entries, ascending, in the rows
/// left.
///
/// The outputs are `len` long (`len` ≥ the input's length; the rows beyond are zero, for the
/// caller's blinding). Every step after the sorts runs on all cores in chunks of [`ARRANGE`]
/// rows. As one walk of the sorted columns it took a median 83 ms for 2^20 rows on the 2-core
/// VM with one thread and 69 ms with two (plus the caller's reallocation to `len`); in chunks,
/// 94 ms with one thread and 64 ms with two, and less with more cores.
fn permute_pair(input: &[Fr], table: &[Fr], len: usize) -> Result<(Vec<Fr>, Vec<Fr>), NativeError> {
    if len < input.len() {
        return Err(NativeError::Internal(format!(
            "lookup columns of {len} rows cannot hold {} input rows",
            input.len()
        )));
    }
    let sorted = ascending(input);
    let table = ascending(table);
    let rows = sorted.len();
    let chunks = rows.div_ceil(ARRANGE);
    let span = |c: usize, total: usize| c * ARRANGE..((c + 1) * ARRANGE).min(total);
    // A run's first row is paired with the table's first entry of its value.
    let first = |row: usize| row == 0 || sorted[row].0 != sorted[row - 1].0;
    // One scan of the input per chunk: its rows that repeat the row above, and whether the
    // table lacks one of its values (the smallest missing is named).
    let scans: Vec<(usize, Option<usize>)> = (0..chunks)
        .into_par_iter()
        .map(|c| {
            let rows_c = span(c, rows);
            let mut pos = table.partition_point(|t| t.0 < sorted[rows_c.start].0);
            let (mut repeats, mut missing) = (0, None);
            for row in rows_c {
                if !first(row) {
                    repeats += 1;
                    continue;
                }
                while pos < table.len() && table[pos].0 < sorted[row].0 {
                    pos += 1;
                }
                if missing.is_none() && (pos == table.len() || table[pos].0 != sorted[row].0) {
                    missing = Some(row);
                }
            }
            (repeats, missing)
        })
        .collect();
    if let Some(row) = scans.iter().find_map(|s| s.1) {
        return Err(NativeError::Unsatisfied(format!(
            "lookup input value {:?} (row {row} of the sorted input) is not in the table",
            sorted[row].1
        )));
    }
    // The table's entries taken by the pairing: the first of each value the input holds.
    let mut taken = vec![false; table.len()];
    taken
        .par_chunks_mut(ARRANGE)
        .enumerate()
        .for_each(|(c, flags)| {
            let start = c * ARRANGE;
            let mut pos = sorted.partition_point(|s| s.0 < table[start].0);
            for (j, flag) in (start..).zip(flags.iter_mut()) {
                if j > 0 && table[j - 1].0 == table[j].0 {
                    continue;
                }
                while pos < rows && sorted[pos].0 < table[j].0 {
                    pos += 1;
                }
                *flag = pos < rows && sorted[pos].0 == table[j].0;
            }
        });
    // The others, ascending, fill the rows that repeat the row above, in order.
    let leftover: Vec<Fr> = table
        .par_iter()
        .zip(taken.par_iter())
        .filter(|(_, &t)| !t)
        .map(|(e, _)| e.1)
        .collect();
    let mut offsets = Vec::with_capacity(chunks);
    let mut used = 0usize;
    for &(repeats, _) in &scans {
        offsets.push(used);
        used += repeats;
    }
    if used > leftover.len() {
        return Err(NativeError::Internal("lookup table ran short".into()));
    }
    let mut permuted_input = Vec::with_capacity(len);
    permuted_input.par_extend(sorted.par_iter().map(|s| s.1));
    permuted_input.resize(len, Fr::ZERO);
    let mut permuted_table = gpu::host_zeros(len);
    permuted_table[..rows]
        .par_chunks_mut(ARRANGE)
        .zip(offsets.par_iter())
        .enumerate()
        .for_each(|(c, (out, &offset))| {
            let mut next = offset;
            for (row, o) in (c * ARRANGE..).zip(out.iter_mut()) {
                *o = if first(row) {
                    sorted[row].1
                } else {
                    next += 1;
                    leftover[next - 1]
                };
            }
        });
    Ok((permuted_input, permuted_table))
}

/// `values` in ascending order of `Fr`'s `Ord` (the canonical value's bytes, most significant
/// first), each with its sort key: the canonical form is computed once per value, where sorting
/// by `Ord` converts both operands out of Montgomery form on every comparison.
fn ascending(values: &[Fr]) -> Vec<([u64; 4], Fr)> {
    let mut keyed: Vec<([u64; 4], Fr)> = values
        .par_iter()
        .map(|v| {
            let repr = v.to_repr();
            let limb = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&repr.as_ref()[8 * i..8 * i + 8]);
                u64::from_le_bytes(b)
            };
            ([limb(3), limb(2), limb(1), limb(0)], *v)
        })
        .collect();
    keyed.par_sort_unstable_by_key(|(k, _)| *k);
    keyed
}

/// Compresses, permutes, commits and writes the permuted input and table columns. The
/// arrangement is made on the host (from `cols`); the compressed columns are made again in the
/// backend from its resident columns (`layout`, `inputs`) for the grand product, so only the
/// permuted columns cross to it. On the CPU backend the host's compressed columns are kept and
/// `inputs` is not read (it may be empty).
#[allow(clippy::too_many_arguments)]
pub fn commit_permuted<E, T>(
    ctx: &Ctx<'_>,
    input_expressions: &[Expression<Fr>],
    table_expressions: &[Expression<Fr>],
    theta: Fr,
    cols: &Columns<'_>,
    layout: &Layout,
    inputs: &[&Poly],
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
        permute_pair(&compressed_input[..usable], &compressed_table[..usable], n)?;
    // On the CPU backend resident vectors are host memory: keep the host's compressed columns
    // instead of computing them twice. On a device, compute them there instead of uploading.
    let (compressed_input, compressed_table) = if ctx.backend.name() == BackendName::Cpu {
        (
            ctx.backend.upload_owned(compressed_input)?,
            ctx.backend.upload_owned(compressed_table)?,
        )
    } else {
        (
            compress_resident(ctx, input_expressions, theta, layout, inputs, challenges)?,
            compress_resident(ctx, table_expressions, theta, layout, inputs, challenges)?,
        )
    };
    // The blinding rows, the input's then the table's (halo2's order of draws).
    for v in permuted_input[usable..].iter_mut() {
        *v = Fr::random(&mut *rng);
    }
    for v in permuted_table[usable..].iter_mut() {
        *v = Fr::random(&mut *rng);
    }
    let _input_blind = Fr::random(&mut *rng);
    let permuted_input = ctx.backend.upload_owned(permuted_input)?;
    let ci = commit_values(ctx, &permuted_input)?;
    let permuted_input_coeffs = coeffs_of(ctx, &permuted_input)?;
    let _table_blind = Fr::random(&mut *rng);
    let permuted_table = ctx.backend.upload_owned(permuted_table)?;
    let ct = commit_values(ctx, &permuted_table)?;
    let permuted_table_coeffs = coeffs_of(ctx, &permuted_table)?;
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
/// `z(ωX)(a'(X)+β)(s'(X)+γ) = z(X)(A(X)+β)(S(X)+γ)`, in the backend: the row ratios (two
/// programs and a batch inversion), their running product and the blinding rows.
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
    let backend = ctx.backend;
    // (x + β)(y + γ) over inputs [x, y], times input 2 when `scaled`.
    let pair = |scaled: bool| {
        let mut b = ProgramBuilder::new(if scaled { 3 } else { 2 });
        let beta = b.constant(beta);
        let gamma = b.constant(gamma);
        let x = b.query(0, 0)?;
        let y = b.query(1, 0)?;
        let xb = b.add(x, beta);
        let yg = b.add(y, gamma);
        let mut v = b.mul(xb, yg);
        if scaled {
            let s = b.query(2, 0)?;
            v = b.mul(v, s);
        }
        b.output(v);
        Ok::<_, NativeError>(b.build()?)
    };
    let mut den = backend.zeros(n)?;
    backend.eval_program(
        &pair(false)?,
        &[&p.permuted_input, &p.permuted_table],
        &mut den,
        1,
        Fr::ZERO,
    )?;
    backend.batch_invert(&mut den)?;
    let mut z = backend.zeros(n)?;
    backend.eval_program(
        &pair(true)?,
        &[&p.compressed_input, &p.compressed_table, &den],
        &mut z,
        1,
        Fr::ZERO,
    )?;
    drop(den);
    backend.prefix_product(&mut z, Fr::ONE)?;
    let closing = backend.read_range(&z, ctx.unusable_start(), 1)?;
    if closing.first() != Some(&Fr::ONE) {
        return Err(NativeError::Unsatisfied(
            "a lookup's grand product does not close (an input is not in its table)".into(),
        ));
    }
    let blinding: Vec<Fr> = (0..bf).map(|_| Fr::random(&mut *rng)).collect();
    backend.write_range(&mut z, n - bf, &blinding)?;
    let _blind = Fr::random(&mut *rng);
    let (product, c) = commit_lagrange(ctx, z)?;
    transcript.write_point(c)?;
    Ok(Committed {
        permuted_input: p.permuted_input_coeffs,
        permuted_table: p.permuted_table_coeffs,
        product,
    })
}

/// The evaluations the proof carries, in its order: z(x), z(ωx), a'(x), a'(ω⁻¹x), s'(x).
pub fn evaluations<'c>(ctx: &Ctx<'_>, c: &'c Committed, x: Fr) -> Vec<(&'c Poly, Vec<Fr>)> {
    let x_next = ctx.rotate(x, Rotation::next());
    let x_prev = ctx.rotate(x, Rotation::prev());
    vec![
        (&c.product, vec![x, x_next]),
        (&c.permuted_input, vec![x, x_prev]),
        (&c.permuted_table, vec![x]),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ff::Field;
    use halo2curves::bn256::Fr;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    use super::permute_pair;

    /// halo2's arrangement as halo2 writes it: sort by `Ord`, pair each run's first row through
    /// a map of the table's counts, fill the other rows from the map's leftovers in order.
    fn halo2_arrangement(input: &[Fr], table: &[Fr]) -> Option<(Vec<Fr>, Vec<Fr>)> {
        let mut sorted = input.to_vec();
        sorted.sort();
        let mut counts: BTreeMap<Fr, usize> = BTreeMap::new();
        for t in table {
            *counts.entry(*t).or_insert(0) += 1;
        }
        let mut slots = vec![None; sorted.len()];
        for row in 0..sorted.len() {
            if row == 0 || sorted[row] != sorted[row - 1] {
                let c = counts.get_mut(&sorted[row]).filter(|c| **c > 0)?;
                *c -= 1;
                slots[row] = Some(sorted[row]);
            }
        }
        let mut left = counts.into_iter().flat_map(|(v, c)| (0..c).map(move |_| v));
        let table_out = slots
            .into_iter()
            .map(|s| s.or_else(|| left.next()))
            .collect::<Option<Vec<_>>>()?;
        Some((sorted, table_out))
    }

    #[test]
    fn the_arrangement_is_halo2s() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        for (n, distinct) in [
            (1usize, 1usize),
            (2, 1),
            (17, 5),
            (1000, 7),
            (4099, 300),
            (4096, 4096),
            // Several chunks of the parallel scans: runs and table duplicates across their
            // edges, few values and all distinct.
            (3 * super::ARRANGE + 17, 3),
            (3 * super::ARRANGE + 17, 5000),
            (2 * super::ARRANGE, 2 * super::ARRANGE),
        ] {
            // Table values: small numbers, values near the modulus (large canonical values whose
            // Montgomery forms are not ordered like them) and random ones.
            let values: Vec<Fr> = (0..distinct)
                .map(|i| match i % 3 {
                    0 => Fr::from(i as u64),
                    1 => -Fr::from(i as u64),
                    _ => Fr::random(&mut rng),
                })
                .collect();
            let table: Vec<Fr> = (0..n).map(|i| values[(i * 7 + 3) % distinct]).collect();
            let input: Vec<Fr> = (0..n).map(|_| table[rng.gen_range(0..n)]).collect();
            let got = permute_pair(&input, &table, n).expect("every input is in the table");
            assert_eq!(Some(got), halo2_arrangement(&input, &table), "n = {n}");
            // Longer outputs: the same rows, then zeros for the blinding.
            let (a, b) = permute_pair(&input, &table, n + 5).expect("longer outputs");
            let (ea, eb) = halo2_arrangement(&input, &table).expect("reference");
            assert_eq!((&a[..n], &b[..n]), (&ea[..], &eb[..]), "n = {n}, longer");
            assert!(a[n..]
                .iter()
                .chain(&b[n..])
                .all(|v| bool::from(v.is_zero())));
            // An input value missing from the table is refused, naming the smallest missing.
            let mut bad = input.clone();
            bad[n / 2] = Fr::from(u64::MAX) + Fr::ONE;
            bad[n / 3] = Fr::from(u64::MAX);
            let err = permute_pair(&bad, &table, n).unwrap_err().to_string();
            assert!(err.contains("is not in the table"), "{err}");
            assert!(err.contains(&format!("{:?}", Fr::from(u64::MAX))), "{err}");
        }
    }
}
