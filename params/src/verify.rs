//! Consistency checks of an SRS.

use std::io;
use std::path::Path;

use ff::PrimeField;
use group::prime::PrimeCurveAffine;
use group::Curve;
use halo2_proofs::arithmetic::best_multiexp;
use halo2_proofs::poly::commitment::{Params, ParamsProver};
use halo2_proofs::poly::EvaluationDomain;
use halo2curves::bn256::{multi_miller_loop, Fr, G1Affine, G2Affine, G2Prepared, Gt, G1};
use halo2curves::pairing::MillerLoopResult;
use halo2curves::serde::SerdeObject;
use halo2curves::CurveAffine;
use rand_core::RngCore;
use rayon::prelude::*;

use crate::format::{read_file_hashed, G1_BYTES, G2_BYTES, HEADER_BYTES};
use crate::{dev_secret, ParamsError, Section, Srs, DEV_SEED_DEFAULT, MAX_K};

/// What [`verify_file`] found out about a file that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The SRS's `k` (it holds `2^k` points per basis).
    pub k: u32,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub sha256_hex: String,
    /// `Some(seed)` if this is the public-secret development SRS of `seed`
    /// (currently only [`DEV_SEED_DEFAULT`] is recognised). Such an SRS is
    /// consistent but offers no soundness.
    pub insecure_dev_seed: Option<u64>,
}

/// Checks that `srs` is a well-formed KZG SRS.
///
/// In order: `k ≤ 28` and both bases hold `2^k` points; `g[0]` is the G1
/// generator and `g2` the G2 generator; no point is the identity and `s_g2` is
/// in the prime-order subgroup; the powers are consistent,
/// `e(Σ r_i·g[i+1], g2) == e(Σ r_i·g[i], s_g2)` for random 128-bit `r_i`; and
/// the Lagrange basis matches the monomial one,
/// `Σ a_i·g_lagrange[i] == Σ IFFT(a)_j·g[j]` for a random vector `a`.
/// The random checks are sound except with probability about `n/2^128`.
/// Costs four multi-scalar multiplications of size `2^k` and one pairing product.
pub fn verify(srs: &Srs, mut rng: impl RngCore) -> Result<(), ParamsError> {
    let k = srs.k();
    if k > MAX_K {
        return Err(ParamsError::UnsupportedK { k, max: MAX_K });
    }
    let n = 1usize << k;
    let g = srs.get_g();
    check_len(Section::G, k, g.len())?;
    let g_lagrange = lagrange_points(srs)?;
    check_len(Section::GLagrange, k, g_lagrange.len())?;

    if g[0] != G1Affine::generator() {
        return Err(ParamsError::WrongG1Generator);
    }
    let (g2, s_g2) = (srs.g2(), srs.s_g2());
    if g2 != G2Affine::generator() {
        return Err(ParamsError::WrongG2Generator);
    }
    first_identity(Section::G, g)?;
    first_identity(Section::GLagrange, &g_lagrange)?;
    if bool::from(s_g2.is_identity()) {
        return Err(ParamsError::IdentityPoint {
            section: Section::SG2,
            index: 0,
        });
    }
    if !bool::from(s_g2.is_on_curve()) {
        return Err(ParamsError::PointNotOnCurve {
            section: Section::SG2,
            index: 0,
        });
    }
    if !bool::from(group::cofactor::CofactorGroup::is_torsion_free(
        &s_g2.to_curve(),
    )) {
        return Err(ParamsError::G2NotInSubgroup);
    }

    // Powers: with r random, Σ r_i·g[i+1] = s·Σ r_i·g[i] iff (w.h.p.) every
    // g[i+1] = s·g[i], where s is the discrete log of s_g2.
    if n > 1 {
        let r: Vec<Fr> = (0..n - 1).map(|_| random_u128(&mut rng)).collect();
        let lhs = best_multiexp(&r, &g[1..]).to_affine();
        let rhs = best_multiexp(&r, &g[..n - 1]).to_affine();
        let product = multi_miller_loop(&[
            (&lhs, &G2Prepared::from_affine(g2)),
            (&(-rhs), &G2Prepared::from_affine(s_g2)),
        ])
        .final_exponentiation();
        if product != Gt::identity() {
            return Err(ParamsError::PowersInconsistent {
                pairs: n as u64 - 1,
            });
        }
    }

    // Lagrange basis: Σ a_i·L_i(s) = p(s) where p = IFFT(a) is the polynomial
    // with p(ω^i) = a_i.
    let a: Vec<Fr> = (0..n).map(|_| random_u128(&mut rng)).collect();
    let coeffs: Vec<Fr> = if k == 0 {
        a.clone()
    } else {
        let domain = EvaluationDomain::<Fr>::new(1, k);
        domain
            .lagrange_to_coeff(domain.lagrange_from_vec(a.clone()))
            .to_vec()
    };
    let lhs: G1 = best_multiexp(&a, &g_lagrange);
    let rhs: G1 = best_multiexp(&coeffs, g);
    if lhs != rhs {
        return Err(ParamsError::LagrangeInconsistent { k });
    }
    Ok(())
}

/// Reads (strictly, see [`crate::read_file`]) and [`verify`]s an SRS file, hashing
/// its bytes on the way, and recognises the default development SRS.
pub fn verify_file(path: &Path) -> Result<VerifyReport, ParamsError> {
    let (srs, digest) = read_file_hashed(path)?;
    verify(&srs, rand::rngs::OsRng)?;
    let s = dev_secret(DEV_SEED_DEFAULT);
    let is_dev = match srs.get_g().get(1) {
        Some(g1) => *g1 == (G1Affine::generator() * s).to_affine(),
        // k = 0 has no g[1]; s_g2 carries the same secret.
        None => srs.s_g2() == (G2Affine::generator() * s).to_affine(),
    };
    Ok(VerifyReport {
        k: srs.k(),
        sha256_hex: hex::encode(digest),
        insecure_dev_seed: is_dev.then_some(DEV_SEED_DEFAULT),
    })
}

fn random_u128(rng: &mut impl RngCore) -> Fr {
    let lo = rng.next_u64() as u128;
    let hi = rng.next_u64() as u128;
    Fr::from_u128(lo | (hi << 64))
}

fn check_len(section: Section, k: u32, actual: usize) -> Result<(), ParamsError> {
    let expected = 1u64 << k;
    if actual as u64 != expected {
        return Err(ParamsError::LengthMismatch {
            section,
            k,
            expected,
            actual: actual as u64,
        });
    }
    Ok(())
}

fn first_identity(section: Section, points: &[G1Affine]) -> Result<(), ParamsError> {
    match points
        .par_iter()
        .position_first(|p| bool::from(p.is_identity()))
    {
        Some(index) => Err(ParamsError::IdentityPoint {
            section,
            index: index as u64,
        }),
        None => Ok(()),
    }
}

/// The SRS's `g_lagrange` points (`L_i(s)·G` for the domain of size `2^k`), with every
/// point checked to lie on the curve.
///
/// `ParamsKZG` has no getter for `g_lagrange`, so serialise the SRS through
/// halo2's own writer into a sink that keeps only the Lagrange section.
pub fn lagrange_points(srs: &Srs) -> Result<Vec<G1Affine>, ParamsError> {
    let skip = HEADER_BYTES + (srs.get_g().len() * G1_BYTES) as u64;
    let mut sink = SectionSink {
        pos: 0,
        skip,
        kept: Vec::with_capacity(srs.get_g().len() * G1_BYTES + 2 * G2_BYTES),
    };
    // Writing into memory cannot fail.
    srs.write(&mut sink)
        .map_err(|e| ParamsError::io("serialise", "<in-memory SRS>", e))?;
    let mut bytes = sink.kept;
    // Drop the trailing g2 and s_g2.
    bytes.truncate(bytes.len().saturating_sub(2 * G2_BYTES));
    let mut out = vec![G1Affine::identity(); bytes.len() / G1_BYTES];
    let bad = out
        .par_iter_mut()
        .zip(bytes.par_chunks_exact(G1_BYTES))
        .enumerate()
        .filter_map(|(i, (p, raw))| match G1Affine::from_raw_bytes(raw) {
            Some(q) => {
                *p = q;
                None
            }
            None => Some(i),
        })
        .min();
    if let Some(index) = bad {
        return Err(ParamsError::PointNotOnCurve {
            section: Section::GLagrange,
            index: index as u64,
        });
    }
    Ok(out)
}

/// An `io::Write` that keeps the bytes written from offset `skip` on.
struct SectionSink {
    pos: u64,
    skip: u64,
    kept: Vec<u8>,
}

impl io::Write for SectionSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let end = self.pos + buf.len() as u64;
        if end > self.skip {
            let from = self.skip.saturating_sub(self.pos) as usize;
            self.kept.extend_from_slice(&buf[from..]);
        }
        self.pos = end;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
