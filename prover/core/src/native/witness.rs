//! Witness collection: our own `Assignment` that records advice values only, and the per-phase
//! commit / challenge-squeeze sequence of halo2-axiom's prover.
//!
//! Per phase, in halo2's order: (phase 0 only) absorb the instance values; for the phase's
//! advice columns in index order fill the blinding rows from the rng, column by column; draw one
//! commitment blind per column (KZG ignores it, but it is drawn to keep halo2's rng order);
//! commit and write the commitments; squeeze the phase's challenges.
//!
//! `assign_advice` must return a reference to the stored cell with an arbitrary lifetime, which
//! cannot be expressed in safe Rust; it returns `Value::unknown()` instead. Circuits that read
//! values back from the cells they assign (halo2-base does not: it keeps its own witness)
//! would see unknown values; a cell assigned an unknown value is reported as an error.

use std::collections::HashMap;

use ff::{BatchInvert, Field};
use halo2_proofs::circuit::Value;
use halo2_proofs::plonk::{
    Advice, Any, Assigned, Assignment, Challenge, Circuit, Column, ConstraintSystem, Error, Fixed,
    FloorPlanner, Instance, ProvingKey, Selector,
};
use halo2_proofs::transcript::{EncodedChallenge, TranscriptWrite};
use halo2curves::bn256::{Fr, G1Affine};
use rand_core::RngCore;

use gpu::Poly;

use super::commit::{coeffs_of, commit_values, Values};
use super::{Ctx, NativeError};

/// The committed witness.
pub struct Witness {
    /// Advice columns as values on the domain (blinding rows included), on the host and in the
    /// backend.
    pub advice_values: Vec<Values>,
    /// The same columns in coefficient form (resident in the backend).
    pub advice_coeffs: Vec<Poly>,
    /// Challenges by index.
    pub challenges: Vec<Fr>,
}

struct Collector<'c, 'a, E, T>
where
    E: EncodedChallenge<G1Affine>,
    T: TranscriptWrite<G1Affine, E>,
{
    ctx: &'c Ctx<'a>,
    instances: &'c [&'c [Fr]],
    /// Advice values by column as assigned; a rational cell holds its numerator here and its
    /// denominator in `denominators` until its phase is committed. A committed column is empty.
    advice: Vec<Vec<Fr>>,
    /// Denominators of the rational cells, by (column, row): inverted in one batch per phase.
    denominators: HashMap<(usize, usize), Fr>,
    /// Per column, one bit per row, set where `denominators` holds the cell: a plain assignment
    /// (nearly every cell) learns from one bit that it overwrites no rational cell, where a
    /// lookup in `denominators` would hash (0.2 s of the batch circuit's 0.5 s of synthesis).
    /// Empty until the column's first rational cell.
    rational_rows: Vec<Vec<u64>>,
    /// Rational cells divided out so far (for the debug event).
    rational_cells: usize,
    advice_values: Vec<Option<Values>>,
    advice_coeffs: Vec<Option<Poly>>,
    column_phase: Vec<u8>,
    challenge_phase: Vec<u8>,
    challenges: HashMap<usize, Fr>,
    current_phase: u8,
    rng: &'c mut dyn RngCore,
    transcript: &'c mut T,
    /// The first error met inside a callback that cannot return one.
    error: Option<NativeError>,
    /// Time spent in the backend (uploads, commitments, coefficients), apart from synthesis.
    backend_time: std::time::Duration,
    _e: std::marker::PhantomData<E>,
}

impl<E, T> Collector<'_, '_, E, T>
where
    E: EncodedChallenge<G1Affine>,
    T: TranscriptWrite<G1Affine, E>,
{
    fn fail(&mut self, e: NativeError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    fn commit_phase(&mut self) -> Result<(), NativeError> {
        let phase = self.current_phase;
        if phase == 0 {
            for col in self.instances {
                for v in col.iter() {
                    self.transcript.common_scalar(*v)?;
                }
            }
        }
        let columns: Vec<usize> = (0..self.column_phase.len())
            .filter(|&i| self.column_phase[i] == phase)
            .collect();
        let unusable = self.ctx.unusable_start();
        let n = self.ctx.n;
        // The columns' values as assigned (moved, not copied: later synthesis passes no longer
        // write them), with the rational cells divided out: n · d⁻¹, and 0 where d = 0, as
        // `Assigned::evaluate`.
        let mut values: Vec<Vec<Fr>> = columns
            .iter()
            .map(|&i| std::mem::take(&mut self.advice[i]))
            .collect();
        let mut rational: Vec<(usize, usize, Fr)> = self
            .denominators
            .iter()
            .filter(|((col, _), _)| self.column_phase[*col] == phase)
            .map(|(&(col, row), &d)| (col, row, d))
            .collect();
        for &i in &columns {
            self.rational_rows[i] = Vec::new();
        }
        self.rational_cells += rational.len();
        if !rational.is_empty() {
            rational.iter_mut().map(|(_, _, d)| d).batch_invert();
            for (col, row, inv) in rational {
                self.denominators.remove(&(col, row));
                if let Some(k) = columns.iter().position(|&c| c == col) {
                    values[k][row] *= inv;
                }
            }
        }
        for col in values.iter_mut() {
            for cell in &mut col[unusable..n] {
                *cell = Fr::random(&mut *self.rng);
            }
        }
        for _ in &columns {
            let _blind = Fr::random(&mut *self.rng);
        }
        let started = std::time::Instant::now();
        for (&i, vals) in columns.iter().zip(values) {
            // The values go to the backend once; the coefficients are made there.
            let vals = Values::new(self.ctx, vals)?;
            let c = commit_values(self.ctx, vals.poly())?;
            let coeffs = coeffs_of(self.ctx, vals.poly())?;
            self.transcript.write_point(c)?;
            self.advice_values[i] = Some(vals);
            self.advice_coeffs[i] = Some(coeffs);
        }
        self.backend_time += started.elapsed();
        for (index, &p) in self.challenge_phase.iter().enumerate() {
            if p == phase {
                let c = *self.transcript.squeeze_challenge_scalar::<()>();
                self.challenges.insert(index, c);
            }
        }
        self.current_phase += 1;
        Ok(())
    }
}

impl<E, T> Assignment<Fr> for Collector<'_, '_, E, T>
where
    E: EncodedChallenge<G1Affine>,
    T: TranscriptWrite<G1Affine, E>,
{
    fn enter_region<NR, N>(&mut self, _: N)
    where
        NR: Into<String>,
        N: FnOnce() -> NR,
    {
    }

    fn exit_region(&mut self) {}

    fn enable_selector<A, AR>(&mut self, _: A, _: &Selector, _: usize) -> Result<(), Error>
    where
        A: FnOnce() -> AR,
        AR: Into<String>,
    {
        Ok(())
    }

    fn annotate_column<A, AR>(&mut self, _: A, _: Column<Any>)
    where
        A: FnOnce() -> AR,
        AR: Into<String>,
    {
    }

    fn query_instance(&self, column: Column<Instance>, row: usize) -> Result<Value<Fr>, Error> {
        if row >= self.ctx.unusable_start() {
            return Err(Error::NotEnoughRowsAvailable {
                current_k: self.ctx.domain.log_n(),
            });
        }
        self.instances
            .get(column.index())
            .and_then(|c| c.get(row))
            .map(|v| Value::known(*v))
            .ok_or(Error::BoundsFailure)
    }

    fn assign_advice<'v>(
        &mut self,
        column: Column<Advice>,
        row: usize,
        to: Value<Assigned<Fr>>,
    ) -> Value<&'v Assigned<Fr>> {
        if row >= self.ctx.unusable_start() {
            self.fail(NativeError::Synthesis(format!(
                "advice column {} row {row} is outside the usable rows",
                column.index()
            )));
            return Value::unknown();
        }
        let mut got = None;
        let _ = to.map(|v| got = Some(v));
        let index = column.index();
        match (got, self.advice.get_mut(index)) {
            // A column of a phase already committed: synthesis runs again for every phase.
            (Some(_), Some(col)) if col.is_empty() => {}
            (Some(v), Some(col)) => {
                let (value, denominator) = match v {
                    Assigned::Zero => (Fr::ZERO, None),
                    Assigned::Trivial(x) => (x, None),
                    Assigned::Rational(x, d) => (x, Some(d)),
                };
                col[row] = value;
                let bit = 1u64 << (row % 64);
                let rows = &mut self.rational_rows[index];
                match denominator {
                    Some(d) => {
                        if rows.is_empty() {
                            *rows = vec![0; self.ctx.n.div_ceil(64)];
                        }
                        rows[row / 64] |= bit;
                        self.denominators.insert((index, row), d);
                    }
                    None => {
                        if let Some(word) = rows.get_mut(row / 64).filter(|w| **w & bit != 0) {
                            *word &= !bit;
                            self.denominators.remove(&(index, row));
                        }
                    }
                }
            }
            (None, _) => self.fail(NativeError::Synthesis(format!(
                "advice column {} row {row} assigned an unknown value",
                column.index()
            ))),
            (_, None) => self.fail(NativeError::Synthesis(format!(
                "advice column {} does not exist",
                column.index()
            ))),
        }
        Value::unknown()
    }

    fn assign_fixed(&mut self, _: Column<Fixed>, _: usize, _: Assigned<Fr>) {}

    fn copy(&mut self, _: Column<Any>, _: usize, _: Column<Any>, _: usize) {}

    fn fill_from_row(
        &mut self,
        _: Column<Fixed>,
        _: usize,
        _: Value<Assigned<Fr>>,
    ) -> Result<(), Error> {
        Ok(())
    }

    fn get_challenge(&self, challenge: Challenge) -> Value<Fr> {
        self.challenges
            .get(&challenge.index())
            .copied()
            .map(Value::known)
            .unwrap_or_else(Value::unknown)
    }

    fn push_namespace<NR, N>(&mut self, _: N)
    where
        NR: Into<String>,
        N: FnOnce() -> NR,
    {
    }

    fn pop_namespace(&mut self, _: Option<String>) {}

    fn next_phase(&mut self) {
        if self.error.is_some() {
            self.current_phase += 1;
            return;
        }
        if let Err(e) = self.commit_phase() {
            self.fail(e);
            self.current_phase += 1;
        }
    }
}

/// Runs the circuit's synthesis phase by phase, committing each phase's advice columns and
/// squeezing its challenges into `transcript`.
pub fn synthesize<C, E, T>(
    ctx: &Ctx<'_>,
    pk: &ProvingKey<G1Affine>,
    circuit: &C,
    instances: &[&[Fr]],
    rng: &mut dyn RngCore,
    transcript: &mut T,
) -> Result<Witness, NativeError>
where
    C: Circuit<Fr>,
    E: EncodedChallenge<G1Affine>,
    T: TranscriptWrite<G1Affine, E>,
{
    let cs = pk.get_vk().cs();
    let mut meta = ConstraintSystem::default();
    let config = C::configure_with_params(&mut meta, circuit.params());
    let column_phase = cs.advice_column_phase();
    let challenge_phase = cs.challenge_phase();
    let num_phases = column_phase.iter().copied().max().unwrap_or(0) + 1;
    let num_advice = cs.num_advice_columns();
    let n = ctx.n;
    let zeroed = std::time::Instant::now();
    // Written on every core ([`gpu::host_zeros`]): `vec![Fr::ZERO; n]` took 187–247 ms of one
    // thread for the batch circuit's 9 columns of 2^20 on the 2-core VM, these 118–134 ms on
    // its 2 cores.
    let advice = (0..num_advice).map(|_| gpu::host_zeros(n)).collect();
    let zeros_ms = zeroed.elapsed().as_millis() as u64;
    let mut w: Collector<'_, '_, E, T> = Collector {
        ctx,
        instances,
        advice,
        denominators: HashMap::new(),
        rational_rows: vec![Vec::new(); num_advice],
        rational_cells: 0,
        advice_values: (0..num_advice).map(|_| None).collect(),
        advice_coeffs: (0..num_advice).map(|_| None).collect(),
        column_phase,
        challenge_phase,
        challenges: HashMap::new(),
        current_phase: 0,
        rng,
        transcript,
        error: None,
        backend_time: std::time::Duration::ZERO,
        _e: std::marker::PhantomData,
    };
    let started = std::time::Instant::now();
    while w.current_phase < num_phases {
        C::FloorPlanner::synthesize(&mut w, circuit, config.clone(), cs.constants().clone())
            .map_err(|e| NativeError::Synthesis(format!("{e:?}")))?;
        if let Some(e) = w.error.take() {
            return Err(e);
        }
        if w.current_phase < num_phases {
            w.next_phase();
            if let Some(e) = w.error.take() {
                return Err(e);
            }
        }
    }
    // What a GPU cannot shorten (the circuit's assignment and the cells' evaluation, on the
    // host) apart from what it can.
    let total = started.elapsed();
    tracing::debug!(
        zeros_ms,
        synthesis_ms = total.saturating_sub(w.backend_time).as_millis() as u64,
        commit_ms = w.backend_time.as_millis() as u64,
        rational_cells = w.rational_cells,
        "native prover witness"
    );
    let challenges = (0..cs.num_challenges())
        .map(|i| {
            w.challenges
                .get(&i)
                .copied()
                .ok_or_else(|| NativeError::Internal(format!("challenge {i} was never squeezed")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let advice_coeffs = w
        .advice_coeffs
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            c.ok_or_else(|| NativeError::Internal(format!("advice column {i} was never committed")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let advice_values = w
        .advice_values
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            c.ok_or_else(|| NativeError::Internal(format!("advice column {i} was never committed")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Witness {
        advice_values,
        advice_coeffs,
        challenges,
    })
}
