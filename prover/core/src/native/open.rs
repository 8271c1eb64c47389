//! SHPLONK multi-open (the KZG multi-open of halo2-axiom's `ProverSHPLONK`), run in the backend
//! over resident coefficients: evaluations, the linear combinations (programs), the divisions by
//! `X - z` and both commitments happen there; the host sees only evaluations and handles the
//! low-degree interpolations (a few coefficients per rotation set).
//!
//! Queries are grouped exactly like halo2: polynomials in order of first query, each with its
//! set of points; polynomials with equal point sets form a rotation set, rotation sets in order
//! of first appearance. Then: squeeze y, squeeze v; write `[h]` with
//! `h = Σ_i v^i Σ_j y^j (p_ij - r_ij) / Z_Si`; squeeze u; write `[h']` with
//! `h' = (Σ_i v^i Z_{T∖Si}(u) Σ_j y^j (p_ij - r_ij(u)) - Z_T(u)·h) / ((X - u)·Z_{T∖S0}(u))`.

use ff::Field;
use gpu::{Poly, ProgramBuilder};
use halo2_proofs::transcript::{EncodedChallenge, TranscriptWrite};
use halo2curves::bn256::{Fr, G1Affine};

use super::commit::{commit_poly, eval_many};
use super::quotient::compile;
use super::{Ctx, NativeError};

/// One opening: polynomial `poly` (an index into the polynomial table) at `point`.
#[derive(Clone, Copy, Debug)]
pub struct Query {
    pub poly: usize,
    pub point: Fr,
}

struct RotationSet {
    points: Vec<Fr>,
    /// (polynomial index, its evaluations at `points`).
    polys: Vec<(usize, Vec<Fr>)>,
}

fn same_set(a: &[Fr], b: &[Fr]) -> bool {
    a.len() == b.len() && a.iter().all(|p| b.contains(p))
}

/// Coefficients of the polynomial of degree < points.len() through (points[k], evals[k]).
fn interpolate(points: &[Fr], evals: &[Fr]) -> Result<Vec<Fr>, NativeError> {
    let m = points.len();
    let mut out = vec![Fr::ZERO; m];
    for j in 0..m {
        // basis_j = Π_{k≠j} (X - p_k) / (p_j - p_k)
        let mut basis = vec![Fr::ONE];
        let mut denom = Fr::ONE;
        for k in 0..m {
            if k == j {
                continue;
            }
            let mut next = vec![Fr::ZERO; basis.len() + 1];
            for (d, c) in basis.iter().enumerate() {
                next[d + 1] += c;
                next[d] -= *c * points[k];
            }
            basis = next;
            denom *= points[j] - points[k];
        }
        let inv = Option::<Fr>::from(denom.invert())
            .ok_or_else(|| NativeError::Internal("repeated opening point".into()))?;
        let scale = evals[j] * inv;
        for (o, b) in out.iter_mut().zip(basis) {
            *o += b * scale;
        }
    }
    Ok(out)
}

fn vanishing_at(points: &[Fr], z: Fr) -> Fr {
    points.iter().fold(Fr::ONE, |acc, p| acc * (z - p))
}

/// `Σ weights[k] · polys[k]` as a new resident vector of `ctx.n` elements (programs of one
/// scaled query per output, folded with y = 1).
fn combination(ctx: &Ctx<'_>, polys: &[&Poly], weights: &[Fr]) -> Result<Poly, NativeError> {
    let programs = compile(polys.len(), polys.len(), &|b: &mut ProgramBuilder, k| {
        let q = b.query(k, 0)?;
        let w = b.constant(weights[k]);
        Ok(b.mul(q, w))
    })?;
    let mut acc = ctx.backend.zeros(ctx.n)?;
    for program in &programs {
        ctx.backend
            .eval_program(program, polys, &mut acc, 1, Fr::ONE)?;
    }
    Ok(acc)
}

/// Adds `low` (a few coefficients) to the lowest coefficients of a resident vector.
fn add_low(ctx: &Ctx<'_>, poly: &mut Poly, low: &[Fr]) -> Result<(), NativeError> {
    let len = low.len().min(poly.len());
    let mut head = ctx.backend.read_range(poly, 0, len)?;
    for (h, l) in head.iter_mut().zip(low) {
        *h += l;
    }
    ctx.backend.write_range(poly, 0, &head)?;
    Ok(())
}

/// Runs SHPLONK over `polys` (resident coefficients, each `ctx.n` long) and `queries`.
/// `evaluated` holds values already known, `(polynomial, point, value)` (the proof's
/// evaluations, the same resident polynomials): only the others are evaluated here.
pub fn shplonk<E, T>(
    ctx: &Ctx<'_>,
    polys: &[&Poly],
    queries: &[Query],
    evaluated: &[(&Poly, Fr, Fr)],
    transcript: &mut T,
) -> Result<(), NativeError>
where
    E: EncodedChallenge<G1Affine>,
    T: TranscriptWrite<G1Affine, E>,
{
    let n = ctx.n;
    // Polynomial → its points, in order of first query.
    let mut poly_points: Vec<(usize, Vec<Fr>)> = Vec::new();
    let mut super_set: Vec<Fr> = Vec::new();
    for q in queries {
        if q.poly >= polys.len() {
            return Err(NativeError::Internal(format!(
                "query of polynomial {}",
                q.poly
            )));
        }
        if !super_set.contains(&q.point) {
            super_set.push(q.point);
        }
        match poly_points.iter_mut().find(|(p, _)| *p == q.poly) {
            Some((_, pts)) => {
                if !pts.contains(&q.point) {
                    pts.push(q.point);
                }
            }
            None => poly_points.push((q.poly, vec![q.point])),
        }
    }
    for (poly, _) in &poly_points {
        if polys[*poly].len() != n {
            return Err(NativeError::Internal(format!(
                "polynomial {poly} to open has {} coefficients, not {n}",
                polys[*poly].len()
            )));
        }
    }
    // Every polynomial at its points: the values already known, the others in one backend call.
    let known = |poly: &Poly, x: &Fr| {
        evaluated
            .iter()
            .find(|(p, at, _)| std::ptr::eq(*p, poly) && at == x)
            .map(|(_, _, v)| *v)
    };
    let requests: Vec<(&Poly, Vec<Fr>)> = poly_points
        .iter()
        .map(|(poly, points)| {
            let p = polys[*poly];
            (
                p,
                points
                    .iter()
                    .filter(|x| known(p, x).is_none())
                    .copied()
                    .collect(),
            )
        })
        .filter(|(_, missing): &(&Poly, Vec<Fr>)| !missing.is_empty())
        .collect();
    let mut fresh = eval_many(ctx, &requests)?.into_iter();
    drop(requests);
    let mut sets: Vec<RotationSet> = Vec::new();
    for (poly, points) in poly_points {
        let p = polys[poly];
        let evals = points
            .iter()
            .map(|x| {
                known(p, x)
                    .or_else(|| fresh.next())
                    .ok_or_else(|| NativeError::Internal("an evaluation is missing".into()))
            })
            .collect::<Result<Vec<Fr>, _>>()?;
        match sets.iter_mut().find(|s| same_set(&s.points, &points)) {
            Some(set) => {
                // Keep the evaluations in the set's point order.
                let evals = set
                    .points
                    .iter()
                    .map(|sp| {
                        points
                            .iter()
                            .position(|p| p == sp)
                            .map(|k| evals[k])
                            .ok_or_else(|| NativeError::Internal("point set mismatch".into()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                set.polys.push((poly, evals));
            }
            None => sets.push(RotationSet {
                points,
                polys: vec![(poly, evals)],
            }),
        }
    }
    if sets.is_empty() {
        return Err(NativeError::Internal("nothing to open".into()));
    }
    // Low-degree equivalents r_ij.
    let low: Vec<Vec<Vec<Fr>>> = sets
        .iter()
        .map(|s| {
            s.polys
                .iter()
                .map(|(_, evals)| interpolate(&s.points, evals))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<_, _>>()?;

    let y = *transcript.squeeze_challenge_scalar::<()>();
    let v = *transcript.squeeze_challenge_scalar::<()>();

    // q_i = (Σ_j y^j (p_ij - r_ij)) / Z_Si, then h = Σ_i v^i q_i.
    let mut quotients = Vec::with_capacity(sets.len());
    for (set, lows) in sets.iter().zip(&low) {
        let mut y_pow = Fr::ONE;
        let mut weights = Vec::with_capacity(set.polys.len());
        let mut r_sum = vec![Fr::ZERO; set.points.len()];
        for r in lows {
            weights.push(y_pow);
            for (a, c) in r_sum.iter_mut().zip(r) {
                *a -= *c * y_pow;
            }
            y_pow *= y;
        }
        let members: Vec<&Poly> = set.polys.iter().map(|(p, _)| polys[*p]).collect();
        let mut q = combination(ctx, &members, &weights)?;
        add_low(ctx, &mut q, &r_sum)?;
        for pt in &set.points {
            ctx.backend.divide_linear(&mut q, *pt)?;
        }
        quotients.push(q);
    }
    let h = {
        let refs: Vec<&Poly> = quotients.iter().collect();
        let mut weights = Vec::with_capacity(refs.len());
        let mut v_pow = Fr::ONE;
        for _ in &refs {
            weights.push(v_pow);
            v_pow *= v;
        }
        combination(ctx, &refs, &weights)?
    };
    drop(quotients);
    transcript.write_point(commit_poly(ctx, &h)?)?;
    let u = *transcript.squeeze_challenge_scalar::<()>();

    // l = Σ_i v^i Z_{T∖Si}(u) Σ_j y^j (p_ij - r_ij(u)) - Z_T(u) h, and h' = l / ((X - u) Z_{T∖S0}(u)):
    // the weights carry the factor 1/Z_{T∖S0}(u) already, so one combination and one division
    // give h'.
    let mut scales = Vec::with_capacity(sets.len());
    let mut v_pow = Fr::ONE;
    for set in &sets {
        let diffs: Vec<Fr> = super_set
            .iter()
            .copied()
            .filter(|p| !set.points.contains(p))
            .collect();
        scales.push(v_pow * vanishing_at(&diffs, u));
        v_pow *= v;
    }
    let z0 = *scales
        .first()
        .ok_or_else(|| NativeError::Internal("no rotation set".into()))?;
    // scales[0] = Z_{T∖S0}(u) (v^0 = 1).
    let z0_inv = Option::<Fr>::from(z0.invert())
        .ok_or_else(|| NativeError::Internal("Z_{T∖S0}(u) is zero".into()))?;
    let mut members: Vec<&Poly> = Vec::new();
    let mut weights: Vec<Fr> = Vec::new();
    let mut constant = Fr::ZERO;
    for ((set, lows), scale_set) in sets.iter().zip(&low).zip(&scales) {
        let mut y_pow = Fr::ONE;
        for ((poly, _), r) in set.polys.iter().zip(lows) {
            let s = *scale_set * y_pow * z0_inv;
            members.push(polys[*poly]);
            weights.push(s);
            constant -= eval_poly_host(r, u) * s;
            y_pow *= y;
        }
    }
    let zt = vanishing_at(&super_set, u);
    members.push(&h);
    weights.push(-zt * z0_inv);
    let mut l = combination(ctx, &members, &weights)?;
    add_low(ctx, &mut l, &[constant])?;
    ctx.backend.divide_linear(&mut l, u)?;
    transcript.write_point(commit_poly(ctx, &l)?)?;
    Ok(())
}

/// `p(x)` for a few host coefficients (the low-degree interpolations).
fn eval_poly_host(coeffs: &[Fr], x: Fr) -> Fr {
    coeffs.iter().rev().fold(Fr::ZERO, |acc, c| acc * x + c)
}
