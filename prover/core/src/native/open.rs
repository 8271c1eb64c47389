//! SHPLONK multi-open (the KZG multi-open of halo2-axiom's `ProverSHPLONK`), with both of its
//! commitments computed by backend MSMs.
//!
//! Queries are grouped exactly like halo2: polynomials in order of first query, each with its
//! set of points; polynomials with equal point sets form a rotation set, rotation sets in order
//! of first appearance. Then: squeeze y, squeeze v; write `[h]` with
//! `h = Σ_i v^i Σ_j y^j (p_ij - r_ij) / Z_Si`; squeeze u; write `[h']` with
//! `h' = (Σ_i v^i Z_{T∖Si}(u) Σ_j y^j (p_ij - r_ij(u)) - Z_T(u)·h) / ((X - u)·Z_{T∖S0}(u))`.

use ff::Field;
use halo2_proofs::transcript::{EncodedChallenge, TranscriptWrite};
use halo2curves::bn256::{Fr, G1Affine};
use rayon::prelude::*;

use super::commit::{commit_coeff, eval_poly};
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

/// `a / (X - b)`, dropping the remainder.
fn divide_linear(a: &[Fr], b: Fr) -> Vec<Fr> {
    if a.is_empty() {
        return Vec::new();
    }
    let mut q = vec![Fr::ZERO; a.len() - 1];
    let mut carry = Fr::ZERO;
    for i in (1..a.len()).rev() {
        carry = a[i] + carry * b;
        q[i - 1] = carry;
    }
    q
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

/// Runs SHPLONK over `polys` (coefficient form, each at most n long) and `queries`.
pub fn shplonk<E, T>(
    ctx: &Ctx<'_>,
    polys: &[&[Fr]],
    queries: &[Query],
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
    let mut sets: Vec<RotationSet> = Vec::new();
    for (poly, points) in poly_points {
        let evals: Vec<Fr> = points.iter().map(|&p| eval_poly(polys[poly], p)).collect();
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

    // h = Σ_i v^i (Σ_j y^j (p_ij - r_ij)) / Z_Si
    let mut h = vec![Fr::ZERO; n];
    let mut v_pow = Fr::ONE;
    for (set, lows) in sets.iter().zip(&low) {
        let mut num = vec![Fr::ZERO; n];
        let mut y_pow = Fr::ONE;
        for ((poly, _), r) in set.polys.iter().zip(lows) {
            let p = polys[*poly];
            num.par_iter_mut()
                .zip(p.par_iter())
                .for_each(|(a, c)| *a += *c * y_pow);
            for (a, c) in num.iter_mut().zip(r) {
                *a -= *c * y_pow;
            }
            y_pow *= y;
        }
        let mut q = num;
        for pt in &set.points {
            q = divide_linear(&q, *pt);
        }
        h.par_iter_mut()
            .zip(q.par_iter())
            .for_each(|(a, c)| *a += *c * v_pow);
        v_pow *= v;
    }
    transcript.write_point(commit_coeff(ctx, &h)?)?;
    let u = *transcript.squeeze_challenge_scalar::<()>();

    // l = Σ_i v^i Z_{T∖Si}(u) Σ_j y^j (p_ij - r_ij(u)) - Z_T(u) h
    let mut l = vec![Fr::ZERO; n];
    let mut v_pow = Fr::ONE;
    let mut z0 = None;
    for (set, lows) in sets.iter().zip(&low) {
        let diffs: Vec<Fr> = super_set
            .iter()
            .copied()
            .filter(|p| !set.points.contains(p))
            .collect();
        let z_i = vanishing_at(&diffs, u);
        if z0.is_none() {
            z0 = Some(z_i);
        }
        let mut y_pow = Fr::ONE;
        let scale_set = v_pow * z_i;
        for ((poly, _), r) in set.polys.iter().zip(lows) {
            let s = scale_set * y_pow;
            let p = polys[*poly];
            l.par_iter_mut()
                .zip(p.par_iter())
                .for_each(|(a, c)| *a += *c * s);
            l[0] -= eval_poly(r, u) * s;
            y_pow *= y;
        }
        v_pow *= v;
    }
    let zt = vanishing_at(&super_set, u);
    l.par_iter_mut()
        .zip(h.par_iter())
        .for_each(|(a, c)| *a -= *c * zt);
    let z0 = z0.ok_or_else(|| NativeError::Internal("no rotation set".into()))?;
    let z0_inv = Option::<Fr>::from(z0.invert())
        .ok_or_else(|| NativeError::Internal("Z_{T∖S0}(u) is zero".into()))?;
    let mut h2 = divide_linear(&l, u);
    h2.par_iter_mut().for_each(|c| *c *= z0_inv);
    transcript.write_point(commit_coeff(ctx, &h2)?)?;
    Ok(())
}
