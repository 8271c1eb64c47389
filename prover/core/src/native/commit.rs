//! Commitments and evaluations of resident polynomials ([`gpu::Poly`]), and [`Values`]: Lagrange
//! values the host and the backend both read.

use gpu::{BackendName, Direction, Poly};
use group::Curve;
use halo2curves::bn256::{Fr, G1Affine};

use super::{Ctx, NativeError};

/// KZG commitment to resident coefficients: `Σ c_i · g_i` (one backend MSM).
pub fn commit_poly(ctx: &Ctx<'_>, coeffs: &Poly) -> Result<G1Affine, NativeError> {
    msm(ctx, ctx.bases, coeffs)
}

/// KZG commitment to resident values on the domain: `Σ v_i · L_i(s)G` (one backend MSM over
/// the Lagrange bases, as halo2's `commit_lagrange`; the same group element as committing the
/// coefficients, and cheaper for a witness's mostly small values).
pub fn commit_values(ctx: &Ctx<'_>, values: &Poly) -> Result<G1Affine, NativeError> {
    msm(ctx, ctx.lagrange, values)
}

fn msm(ctx: &Ctx<'_>, bases: &gpu::Bases, scalars: &Poly) -> Result<G1Affine, NativeError> {
    Ok(ctx
        .backend
        .msm_polys(bases, &[scalars])?
        .pop()
        .ok_or_else(|| NativeError::Internal("msm_polys returned no sum".into()))?
        .to_affine())
}

/// Commits to resident Lagrange values ([`commit_values`]), then turns them into coefficients
/// in place (an inverse NTT in the backend). Returns the coefficients and the commitment.
pub fn commit_lagrange(ctx: &Ctx<'_>, mut values: Poly) -> Result<(Poly, G1Affine), NativeError> {
    let c = commit_values(ctx, &values)?;
    ctx.backend
        .ntt_poly(&mut values, &ctx.domain, Direction::Inverse, false)?;
    Ok((values, c))
}

/// Coefficients of resident Lagrange values, as a new resident vector (the values are kept).
pub fn coeffs_of(ctx: &Ctx<'_>, values: &Poly) -> Result<Poly, NativeError> {
    let mut coeffs = ctx.backend.resized(values, values.len())?;
    ctx.backend
        .ntt_poly(&mut coeffs, &ctx.domain, Direction::Inverse, false)?;
    Ok(coeffs)
}

/// `p(point)` for each point, for resident coefficients (evaluated in the backend: only the
/// values come back).
pub fn eval_at(ctx: &Ctx<'_>, coeffs: &Poly, points: &[Fr]) -> Result<Vec<Fr>, NativeError> {
    let v = ctx.backend.evaluate(coeffs, points)?;
    if v.len() != points.len() {
        return Err(NativeError::Internal(format!(
            "{} evaluations for {} points",
            v.len(),
            points.len()
        )));
    }
    Ok(v)
}

/// [`eval_at`] for every request `(coefficients, points)` in one backend call (on a device,
/// one pass and one read back for all of them); the values in request order, flattened.
pub fn eval_many(ctx: &Ctx<'_>, requests: &[(&Poly, Vec<Fr>)]) -> Result<Vec<Fr>, NativeError> {
    let asked: Vec<(&Poly, &[Fr])> = requests.iter().map(|(p, x)| (*p, x.as_slice())).collect();
    let got = ctx.backend.evaluate_many(&asked)?;
    if got.len() != requests.len() || got.iter().zip(&asked).any(|(v, (_, x))| v.len() != x.len()) {
        return Err(NativeError::Internal(format!(
            "evaluate_many gave {} results for {} requests, or a wrong count of values",
            got.len(),
            requests.len()
        )));
    }
    Ok(got.into_iter().flatten().collect())
}

/// Lagrange values read on the host (the gate check, the lookup arrangement) and in the backend
/// (grand products, lookup compression). On the CPU backend, whose resident vectors are host
/// memory, there is one copy; on a device, the host keeps its own and the device one uploaded
/// copy.
pub struct Values {
    poly: Poly,
    host: Option<Vec<Fr>>,
}

impl Values {
    /// Makes `values` resident in the backend, keeping a host copy only where needed.
    pub fn new(ctx: &Ctx<'_>, values: Vec<Fr>) -> Result<Self, NativeError> {
        if ctx.backend.name() == BackendName::Cpu {
            let poly = ctx.backend.upload_owned(values)?;
            if poly.host_slice().is_some() {
                return Ok(Self { poly, host: None });
            }
            let host = ctx.backend.download(&poly)?;
            return Ok(Self {
                poly,
                host: Some(host),
            });
        }
        Ok(Self {
            poly: ctx.backend.upload(&values)?,
            host: Some(values),
        })
    }

    /// The resident vector.
    pub fn poly(&self) -> &Poly {
        &self.poly
    }

    /// The values on the host.
    pub fn host(&self) -> &[Fr] {
        match (&self.host, self.poly.host_slice()) {
            (Some(h), _) => h,
            (None, Some(h)) => h,
            // `new` keeps a host copy whenever the resident vector is not host memory.
            (None, None) => &[],
        }
    }
}
