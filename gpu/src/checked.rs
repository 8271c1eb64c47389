//! A backend that runs every operation on two backends and compares the results (after risc0's
//! `DualHal`): equivalence checking as a backend, for GPU validation runs. The primary's result is
//! returned when both agree; a disagreement is a [`BackendError::Mismatch`].

use std::sync::Arc;

use group::Curve;
use halo2curves::bn256::{Fr, G1};

use crate::backend::{BackendError, BackendName, Bases, ComputeBackend, Direction, Domain};
use crate::poly::{Poly, Repr};
use crate::program::Program;

/// Runs `primary` and `reference` on every call and compares.
#[derive(Clone)]
pub struct CheckedBackend {
    primary: Arc<dyn ComputeBackend>,
    reference: Arc<dyn ComputeBackend>,
}

impl CheckedBackend {
    /// `primary` is under test; `reference` is the oracle (normally the CPU backend).
    pub fn new(primary: Arc<dyn ComputeBackend>, reference: Arc<dyn ComputeBackend>) -> Self {
        Self { primary, reference }
    }

    fn mismatch(&self, op: &str, detail: String) -> BackendError {
        BackendError::Mismatch {
            op: op.to_string(),
            primary: self.primary.name().to_string(),
            reference: self.reference.name().to_string(),
            detail,
        }
    }

    fn compare_vectors(&self, op: &str, got: &[Fr], want: &[Fr]) -> Result<(), BackendError> {
        let bad: Vec<usize> = got
            .iter()
            .zip(want)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, _)| i)
            .collect();
        if bad.is_empty() {
            return Ok(());
        }
        let shown: Vec<String> = bad.iter().take(8).map(|i| i.to_string()).collect();
        Err(self.mismatch(
            op,
            format!(
                "{} of {} elements differ (first at indices {})",
                bad.len(),
                got.len(),
                shown.join(", ")
            ),
        ))
    }

    fn checked_transform(
        &self,
        op: &str,
        values: &mut [Fr],
        run: impl Fn(&dyn ComputeBackend, &mut [Fr]) -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        let mut expected = values.to_vec();
        run(self.reference.as_ref(), &mut expected)?;
        run(self.primary.as_ref(), values)?;
        self.compare_vectors(op, values, &expected)
    }
}

impl CheckedBackend {
    fn pair(primary: Poly, reference: Poly) -> Poly {
        Poly {
            len: primary.len(),
            repr: Repr::Pair(Box::new(primary), Box::new(reference)),
        }
    }

    /// Compares the two halves of a resident vector after `op`.
    fn compare_poly(&self, op: &str, poly: &Poly) -> Result<(), BackendError> {
        let (p, r) = poly.pair()?;
        let got = self.primary.download(p)?;
        let want = self.reference.download(r)?;
        self.compare_vectors(op, &got, &want)
    }
}

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Forward => "forward",
        Direction::Inverse => "inverse",
    }
}

impl ComputeBackend for CheckedBackend {
    fn name(&self) -> BackendName {
        self.primary.name()
    }

    fn msm(&self, bases: &Bases, scalars: &[Fr]) -> Result<G1, BackendError> {
        let want = self.reference.msm(bases, scalars)?;
        let got = self.primary.msm(bases, scalars)?;
        if got.to_affine() != want.to_affine() {
            return Err(self.mismatch(
                "msm",
                format!("{} scalars: got {got:?}, want {want:?}", scalars.len()),
            ));
        }
        Ok(got)
    }

    fn ntt(
        &self,
        values: &mut [Fr],
        domain: &Domain,
        direction: Direction,
    ) -> Result<(), BackendError> {
        let op = format!("ntt {} 2^{}", direction_name(direction), domain.log_n());
        self.checked_transform(&op, values, |b, v| b.ntt(v, domain, direction))
    }

    fn coset_ntt(
        &self,
        values: &mut [Fr],
        domain: &Domain,
        direction: Direction,
    ) -> Result<(), BackendError> {
        let op = format!(
            "coset_ntt {} 2^{}",
            direction_name(direction),
            domain.log_n()
        );
        self.checked_transform(&op, values, |b, v| b.coset_ntt(v, domain, direction))
    }

    fn upload(&self, values: &[Fr]) -> Result<Poly, BackendError> {
        Ok(Self::pair(
            self.primary.upload(values)?,
            self.reference.upload(values)?,
        ))
    }

    fn zeros(&self, len: usize) -> Result<Poly, BackendError> {
        Ok(Self::pair(
            self.primary.zeros(len)?,
            self.reference.zeros(len)?,
        ))
    }

    fn download(&self, poly: &Poly) -> Result<Vec<Fr>, BackendError> {
        let (p, r) = poly.pair()?;
        let got = self.primary.download(p)?;
        let want = self.reference.download(r)?;
        self.compare_vectors("download", &got, &want)?;
        Ok(got)
    }

    fn copy_range(&self, poly: &Poly, start: usize, len: usize) -> Result<Poly, BackendError> {
        let (p, r) = poly.pair()?;
        let out = Self::pair(
            self.primary.copy_range(p, start, len)?,
            self.reference.copy_range(r, start, len)?,
        );
        self.compare_poly("copy_range", &out)?;
        Ok(out)
    }

    fn ntt_poly(
        &self,
        poly: &mut Poly,
        domain: &Domain,
        direction: Direction,
        coset: bool,
    ) -> Result<(), BackendError> {
        {
            let (p, r) = poly.pair_mut()?;
            self.reference.ntt_poly(r, domain, direction, coset)?;
            self.primary.ntt_poly(p, domain, direction, coset)?;
        }
        let op = format!(
            "{}ntt {} on a resident vector",
            if coset { "coset " } else { "" },
            direction_name(direction)
        );
        self.compare_poly(&op, poly)
    }

    fn ntt_shifted(
        &self,
        poly: &mut Poly,
        domain: &Domain,
        direction: Direction,
        shift: Fr,
    ) -> Result<(), BackendError> {
        {
            let (p, r) = poly.pair_mut()?;
            self.reference.ntt_shifted(r, domain, direction, shift)?;
            self.primary.ntt_shifted(p, domain, direction, shift)?;
        }
        let op = format!(
            "shifted ntt {} on a resident vector",
            direction_name(direction)
        );
        self.compare_poly(&op, poly)
    }

    fn msm_polys(&self, bases: &Bases, polys: &[&Poly]) -> Result<Vec<G1>, BackendError> {
        let (ps, rs): (Vec<&Poly>, Vec<&Poly>) = polys
            .iter()
            .map(|p| p.pair())
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .unzip();
        let want = self.reference.msm_polys(bases, &rs)?;
        let got = self.primary.msm_polys(bases, &ps)?;
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            if g.to_affine() != w.to_affine() {
                return Err(self.mismatch(
                    "msm of resident vectors",
                    format!("vector {i} of {}: the sums differ", polys.len()),
                ));
            }
        }
        Ok(got)
    }

    fn device_memory(&self) -> Result<Option<(usize, usize)>, BackendError> {
        self.primary.device_memory()
    }

    fn device_memory_pending(&self) -> Result<u64, BackendError> {
        self.primary.device_memory_pending()
    }

    fn batch_invert(&self, poly: &mut Poly) -> Result<(), BackendError> {
        {
            let (p, r) = poly.pair_mut()?;
            self.reference.batch_invert(r)?;
            self.primary.batch_invert(p)?;
        }
        self.compare_poly("batch_invert", poly)
    }

    fn prefix_product(&self, poly: &mut Poly, first: Fr) -> Result<(), BackendError> {
        {
            let (p, r) = poly.pair_mut()?;
            self.reference.prefix_product(r, first)?;
            self.primary.prefix_product(p, first)?;
        }
        self.compare_poly("prefix_product", poly)
    }

    fn divide_linear(&self, poly: &mut Poly, b: Fr) -> Result<(), BackendError> {
        {
            let (p, r) = poly.pair_mut()?;
            self.reference.divide_linear(r, b)?;
            self.primary.divide_linear(p, b)?;
        }
        self.compare_poly("divide_linear", poly)
    }

    fn evaluate(&self, poly: &Poly, points: &[Fr]) -> Result<Vec<Fr>, BackendError> {
        let (p, r) = poly.pair()?;
        let want = self.reference.evaluate(r, points)?;
        let got = self.primary.evaluate(p, points)?;
        self.compare_vectors("evaluate", &got, &want)?;
        Ok(got)
    }

    fn evaluate_many(&self, requests: &[(&Poly, &[Fr])]) -> Result<Vec<Vec<Fr>>, BackendError> {
        let mut primary = Vec::with_capacity(requests.len());
        let mut reference = Vec::with_capacity(requests.len());
        for (poly, points) in requests {
            let (p, r) = poly.pair()?;
            primary.push((p, *points));
            reference.push((r, *points));
        }
        let want = self.reference.evaluate_many(&reference)?;
        let got = self.primary.evaluate_many(&primary)?;
        if got.len() != want.len() {
            return Err(self.mismatch(
                "evaluate_many",
                format!("{} results, the reference {}", got.len(), want.len()),
            ));
        }
        for (g, w) in got.iter().zip(&want) {
            self.compare_vectors("evaluate_many", g, w)?;
        }
        Ok(got)
    }

    fn read_range(&self, poly: &Poly, start: usize, len: usize) -> Result<Vec<Fr>, BackendError> {
        let (p, r) = poly.pair()?;
        let want = self.reference.read_range(r, start, len)?;
        let got = self.primary.read_range(p, start, len)?;
        self.compare_vectors("read_range", &got, &want)?;
        Ok(got)
    }

    fn write_range(
        &self,
        poly: &mut Poly,
        start: usize,
        values: &[Fr],
    ) -> Result<(), BackendError> {
        {
            let (p, r) = poly.pair_mut()?;
            self.reference.write_range(r, start, values)?;
            self.primary.write_range(p, start, values)?;
        }
        self.compare_poly("write_range", poly)
    }

    fn eval_program(
        &self,
        program: &Program,
        inputs: &[&Poly],
        acc: &mut Poly,
        ratio: usize,
        y: Fr,
    ) -> Result<(), BackendError> {
        let (ps, rs): (Vec<&Poly>, Vec<&Poly>) = inputs
            .iter()
            .map(|p| p.pair())
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .unzip();
        {
            let (pa, ra) = acc.pair_mut()?;
            self.reference.eval_program(program, &rs, ra, ratio, y)?;
            self.primary.eval_program(program, &ps, pa, ratio, y)?;
        }
        self.compare_poly("program", acc)
    }
}
