//! The CPU backend: rayon, over halo2curves' field and curve arithmetic.
//!
//! - MSM: our own ([`msm`]: signed-digit Pippenger, windows as many as the largest scalar needs,
//!   (window, points) tasks, each bucket summed as a tree of affine additions with one inversion
//!   per 1024). `tests/cpu.rs` compares it with plain sums and with halo2curves'
//!   `msm_parallel`; the bench times it against `msm_best` (what halo2-axiom's `best_multiexp`
//!   calls).
//! - NTT: our own ([`ntt`]: radix 4, twiddles from a per-size table, the last stages in
//!   cache-sized blocks, the coset shift, the inverse's index reversal and its 1/n fused into its
//!   first and last passes). It gives halo2's results element for element (`tests/cpu.rs`
//!   compares them at every size up to 2^18).
//!
//! Measured against halo2 on the same machine by `benches/cpu.rs` (`msm/halo2/*`,
//! `ntt/halo2/forward/*`).

use ff::Field;
use group::Group;
use halo2curves::bn256::{Fr, G1};
use rayon::prelude::*;

use crate::backend::{
    check_msm_args, check_range, BackendError, BackendName, Bases, ComputeBackend, Direction,
    Domain,
};
use crate::poly::Poly;
use crate::program::Program;

mod msm;
mod ntt;

/// Elements per rayon task for batch inversion, prefix products and evaluation.
const CHUNK: usize = 1 << 12;

/// The rayon CPU backend (stateless; uses the global rayon pool).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend;

impl CpuBackend {
    /// A CPU backend.
    pub fn new() -> Self {
        Self
    }
}

/// In place: every element by its inverse, zeros kept (Montgomery's trick per chunk).
pub fn batch_invert(values: &mut [Fr]) {
    values.par_chunks_mut(CHUNK).for_each(|c| {
        ff::BatchInvert::batch_invert(c);
    });
}

/// In place: `out[0] = first`, `out[i] = out[i-1]·in[i-1]`. Chunks are multiplied out in
/// parallel, their products chained on one thread, then each chunk is scaled by its carry.
pub fn prefix_product(values: &mut [Fr], first: Fr) {
    // Local exclusive products per chunk; each chunk's total.
    let totals: Vec<Fr> = values
        .par_chunks_mut(CHUNK)
        .map(|c| {
            let mut acc = Fr::ONE;
            for v in c.iter_mut() {
                let t = *v;
                *v = acc;
                acc *= t;
            }
            acc
        })
        .collect();
    let mut carries = Vec::with_capacity(totals.len());
    let mut acc = first;
    for t in totals {
        carries.push(acc);
        acc *= t;
    }
    values
        .par_chunks_mut(CHUNK)
        .zip(carries.par_iter())
        .for_each(|(c, carry)| {
            for v in c.iter_mut() {
                *v *= carry;
            }
        });
}

/// In place: the quotient of the coefficients by `X - b`, remainder dropped, top element 0.
pub fn divide_linear(values: &mut [Fr], b: Fr) {
    let len = values.len();
    if len == 0 {
        return;
    }
    // c_i = in[i] + b·c_{i+1} (c_len = 0), stored at i; the quotient is c_1..c_{len-1}.
    let mut carry = Fr::ZERO;
    for i in (1..len).rev() {
        carry = values[i] + carry * b;
        values[i] = carry;
    }
    values.copy_within(1.., 0);
    values[len - 1] = Fr::ZERO;
}

/// `p(x)` for coefficients `coeffs` (Horner per chunk, chunks combined with `x^CHUNK`).
pub fn evaluate(coeffs: &[Fr], x: Fr) -> Fr {
    if coeffs.len() <= CHUNK {
        return coeffs.iter().rev().fold(Fr::ZERO, |acc, c| acc * x + c);
    }
    let x_chunk = x.pow_vartime([CHUNK as u64]);
    let parts: Vec<Fr> = coeffs
        .par_chunks(CHUNK)
        .map(|chunk| chunk.iter().rev().fold(Fr::ZERO, |acc, c| acc * x + c))
        .collect();
    parts
        .iter()
        .rev()
        .fold(Fr::ZERO, |acc, p| acc * x_chunk + p)
}

impl ComputeBackend for CpuBackend {
    fn name(&self) -> BackendName {
        BackendName::Cpu
    }

    fn msm(&self, bases: &Bases, scalars: &[Fr]) -> Result<G1, BackendError> {
        check_msm_args(bases, scalars)?;
        if scalars.is_empty() {
            return Ok(G1::identity());
        }
        Ok(msm::msm(bases.points(), scalars))
    }

    fn ntt(
        &self,
        values: &mut [Fr],
        domain: &Domain,
        direction: Direction,
    ) -> Result<(), BackendError> {
        domain.check_len(values.len())?;
        let (log_n, omega) = (domain.log_n(), domain.omega());
        match direction {
            Direction::Forward => ntt::forward(values, log_n, omega, None),
            Direction::Inverse => ntt::inverse(values, log_n, omega, domain.n_inv(), Fr::ONE),
        }
        Ok(())
    }

    fn coset_ntt(
        &self,
        values: &mut [Fr],
        domain: &Domain,
        direction: Direction,
    ) -> Result<(), BackendError> {
        domain.check_len(values.len())?;
        let (log_n, omega) = (domain.log_n(), domain.omega());
        match direction {
            Direction::Forward => ntt::forward(values, log_n, omega, Some(domain.coset_gen())),
            Direction::Inverse => {
                ntt::inverse(values, log_n, omega, domain.n_inv(), domain.coset_gen_inv())
            }
        }
        Ok(())
    }

    fn upload(&self, values: &[Fr]) -> Result<Poly, BackendError> {
        Ok(Poly::host(values.to_vec()))
    }

    fn upload_owned(&self, values: Vec<Fr>) -> Result<Poly, BackendError> {
        Ok(Poly::host(values))
    }

    fn zeros(&self, len: usize) -> Result<Poly, BackendError> {
        Ok(Poly::host(crate::host_zeros(len)))
    }

    fn download(&self, poly: &Poly) -> Result<Vec<Fr>, BackendError> {
        Ok(poly.host_ref()?.clone())
    }

    fn copy_range(&self, poly: &Poly, start: usize, len: usize) -> Result<Poly, BackendError> {
        let v = poly.host_ref()?;
        let mut out = vec![Fr::ZERO; len];
        let from = start.min(v.len());
        let k = len.min(v.len() - from);
        out[..k].copy_from_slice(&v[from..from + k]);
        Ok(Poly::host(out))
    }

    fn ntt_poly(
        &self,
        poly: &mut Poly,
        domain: &Domain,
        direction: Direction,
        coset: bool,
    ) -> Result<(), BackendError> {
        let v = poly.host_mut()?;
        if coset {
            self.coset_ntt(v, domain, direction)
        } else {
            self.ntt(v, domain, direction)
        }
    }

    fn ntt_shifted(
        &self,
        poly: &mut Poly,
        domain: &Domain,
        direction: Direction,
        shift: Fr,
    ) -> Result<(), BackendError> {
        let values = poly.host_mut()?;
        domain.check_len(values.len())?;
        match direction {
            Direction::Forward => {
                if bool::from(shift.is_zero()) {
                    return Err(BackendError::ZeroShift);
                }
                ntt::forward(values, domain.log_n(), domain.omega(), Some(shift));
            }
            Direction::Inverse => {
                let inv = Option::<Fr>::from(shift.invert()).ok_or(BackendError::ZeroShift)?;
                ntt::inverse(values, domain.log_n(), domain.omega(), domain.n_inv(), inv);
            }
        }
        Ok(())
    }

    fn msm_polys(&self, bases: &Bases, polys: &[&Poly]) -> Result<Vec<G1>, BackendError> {
        polys
            .iter()
            .map(|p| self.msm(bases, p.host_ref()?))
            .collect()
    }

    fn batch_invert(&self, poly: &mut Poly) -> Result<(), BackendError> {
        batch_invert(poly.host_mut()?);
        Ok(())
    }

    fn prefix_product(&self, poly: &mut Poly, first: Fr) -> Result<(), BackendError> {
        prefix_product(poly.host_mut()?, first);
        Ok(())
    }

    fn divide_linear(&self, poly: &mut Poly, b: Fr) -> Result<(), BackendError> {
        divide_linear(poly.host_mut()?, b);
        Ok(())
    }

    fn evaluate(&self, poly: &Poly, points: &[Fr]) -> Result<Vec<Fr>, BackendError> {
        let v = poly.host_ref()?;
        Ok(points.iter().map(|&x| evaluate(v, x)).collect())
    }

    fn read_range(&self, poly: &Poly, start: usize, len: usize) -> Result<Vec<Fr>, BackendError> {
        let v = poly.host_ref()?;
        check_range("read_range", start, len, v.len())?;
        Ok(v[start..start + len].to_vec())
    }

    fn write_range(
        &self,
        poly: &mut Poly,
        start: usize,
        values: &[Fr],
    ) -> Result<(), BackendError> {
        let v = poly.host_mut()?;
        check_range("write_range", start, values.len(), v.len())?;
        v[start..start + values.len()].copy_from_slice(values);
        Ok(())
    }

    fn eval_program(
        &self,
        program: &Program,
        inputs: &[&Poly],
        acc: &mut Poly,
        ratio: usize,
        y: Fr,
    ) -> Result<(), BackendError> {
        let cols = inputs
            .iter()
            .map(|p| p.host_ref().map(Vec::as_slice))
            .collect::<Result<Vec<_>, _>>()?;
        program.eval_host(&cols, acc.host_mut()?, ratio, y)
    }
}
