//! A backend that runs every operation on two backends and compares the results (after risc0's
//! `DualHal`): equivalence checking as a backend, for GPU validation runs. The primary's result is
//! returned when both agree; a disagreement is a [`BackendError::Mismatch`].

use std::sync::Arc;

use group::Curve;
use halo2curves::bn256::{Fr, G1};

use crate::backend::{BackendError, BackendName, Bases, ComputeBackend, Direction, Domain};

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
}
