//! Expressions compiled once into a flat program, then evaluated over rows in small blocks.
//!
//! Evaluating an `Expression` tree column by column allocates a full column per node and reads
//! every column once per query; the quotient step spent most of its time there. A [`Program`]
//! instead numbers every distinct column query, constant (challenges included) and operation
//! once (identical subexpressions are shared), and evaluates them for [`BLOCK`] rows at a time
//! into a scratch buffer that stays in cache. The operations compute the same field values as
//! the tree's (field arithmetic is exact), so the values are identical to a tree evaluation.

use std::collections::HashMap;

use ff::{Field, PrimeField};
use halo2_proofs::plonk::Expression;
use halo2curves::bn256::Fr;

use super::NativeError;

/// Rows evaluated together.
pub const BLOCK: usize = 32;

/// Which set of columns a query reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Fixed,
    Advice,
    Instance,
}

/// The column values a program reads: per column, the values on a domain of `size` points with
/// `ratio` points per circuit row (1 on the circuit's own domain, 2^(extended_k - k) on the
/// extended coset).
pub struct Columns<'a> {
    pub fixed: Vec<&'a [Fr]>,
    pub advice: Vec<&'a [Fr]>,
    pub instance: Vec<&'a [Fr]>,
    pub size: usize,
    pub ratio: usize,
}

impl<'a> Columns<'a> {
    fn set(&self, kind: Kind) -> &[&'a [Fr]] {
        match kind {
            Kind::Fixed => &self.fixed,
            Kind::Advice => &self.advice,
            Kind::Instance => &self.instance,
        }
    }

    /// Checks that every column has `size` values.
    pub fn check(&self) -> Result<(), NativeError> {
        for kind in [Kind::Fixed, Kind::Advice, Kind::Instance] {
            for (i, c) in self.set(kind).iter().enumerate() {
                if c.len() != self.size {
                    return Err(NativeError::Internal(format!(
                        "{kind:?} column {i} has {} values, the domain {}",
                        c.len(),
                        self.size
                    )));
                }
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Query {
    kind: Kind,
    index: usize,
    rotation: i32,
}

/// An operand before slot numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Ref {
    Query(u32),
    Const(u32),
    Op(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op<R> {
    Add(R, R),
    Sub(R, R),
    Mul(R, R),
    Neg(R),
}

/// A compiled list of expressions (the outputs), evaluated together.
///
/// Scratch layout: one slot of [`BLOCK`] values per query, then per constant, then per operation.
pub struct Program {
    queries: Vec<Query>,
    constants: Vec<Fr>,
    ops: Vec<Op<usize>>,
    outputs: Vec<usize>,
}

struct Builder<'c> {
    challenges: &'c [Fr],
    counts: [usize; 3],
    queries: Vec<Query>,
    query_ids: HashMap<Query, u32>,
    constants: Vec<Fr>,
    const_ids: HashMap<[u8; 32], u32>,
    ops: Vec<Op<Ref>>,
    op_ids: HashMap<Op<Ref>, u32>,
}

impl Builder<'_> {
    fn query(&mut self, kind: Kind, index: usize, rotation: i32) -> Result<Ref, NativeError> {
        let count = self.counts[kind as usize];
        if index >= count {
            return Err(NativeError::Internal(format!(
                "expression reads {kind:?} column {index}, the circuit has {count}"
            )));
        }
        let q = Query {
            kind,
            index,
            rotation,
        };
        let next = self.queries.len() as u32;
        let id = *self.query_ids.entry(q).or_insert(next);
        if id == next {
            self.queries.push(q);
        }
        Ok(Ref::Query(id))
    }

    fn constant(&mut self, c: Fr) -> Ref {
        let next = self.constants.len() as u32;
        let id = *self.const_ids.entry(c.to_repr()).or_insert(next);
        if id == next {
            self.constants.push(c);
        }
        Ref::Const(id)
    }

    fn op(&mut self, op: Op<Ref>) -> Ref {
        let next = self.ops.len() as u32;
        let id = *self.op_ids.entry(op).or_insert(next);
        if id == next {
            self.ops.push(op);
        }
        Ref::Op(id)
    }

    fn expr(&mut self, e: &Expression<Fr>) -> Result<Ref, NativeError> {
        Ok(match e {
            Expression::Constant(c) => self.constant(*c),
            Expression::Selector(s) => {
                return Err(NativeError::Internal(format!(
                    "selector {s:?} left in the proving key's expressions"
                )))
            }
            Expression::Fixed(q) => self.query(Kind::Fixed, q.column_index(), q.rotation().0)?,
            Expression::Advice(q) => self.query(Kind::Advice, q.column_index(), q.rotation().0)?,
            Expression::Instance(q) => {
                self.query(Kind::Instance, q.column_index(), q.rotation().0)?
            }
            Expression::Challenge(c) => {
                let v = *self.challenges.get(c.index()).ok_or_else(|| {
                    NativeError::Internal(format!("challenge {} missing", c.index()))
                })?;
                self.constant(v)
            }
            Expression::Negated(a) => {
                let a = self.expr(a)?;
                self.op(Op::Neg(a))
            }
            Expression::Sum(a, b) => {
                let a = self.expr(a)?;
                match &**b {
                    // a + (-b) is a - b: the same value, one operation fewer.
                    Expression::Negated(b) => {
                        let b = self.expr(b)?;
                        self.op(Op::Sub(a, b))
                    }
                    b => {
                        let b = self.expr(b)?;
                        self.op(Op::Add(a, b))
                    }
                }
            }
            Expression::Product(a, b) => {
                let a = self.expr(a)?;
                let b = self.expr(b)?;
                self.op(Op::Mul(a, b))
            }
            Expression::Scaled(a, s) => {
                let a = self.expr(a)?;
                let s = self.constant(*s);
                self.op(Op::Mul(a, s))
            }
        })
    }
}

impl Program {
    /// Compiles `outputs`. `challenges` are the challenge values (they become constants);
    /// `counts` the numbers of fixed, advice and instance columns, so a query of a missing
    /// column is an error here rather than during evaluation.
    pub fn compile(
        outputs: &[&Expression<Fr>],
        challenges: &[Fr],
        counts: [usize; 3],
    ) -> Result<Self, NativeError> {
        let mut b = Builder {
            challenges,
            counts,
            queries: Vec::new(),
            query_ids: HashMap::new(),
            constants: Vec::new(),
            const_ids: HashMap::new(),
            ops: Vec::new(),
            op_ids: HashMap::new(),
        };
        let refs = outputs
            .iter()
            .map(|e| b.expr(e))
            .collect::<Result<Vec<_>, _>>()?;
        let nq = b.queries.len();
        let nc = b.constants.len();
        let slot = |r: Ref| match r {
            Ref::Query(i) => i as usize,
            Ref::Const(i) => nq + i as usize,
            Ref::Op(i) => nq + nc + i as usize,
        };
        let ops = b
            .ops
            .iter()
            .map(|op| match *op {
                Op::Add(x, y) => Op::Add(slot(x), slot(y)),
                Op::Sub(x, y) => Op::Sub(slot(x), slot(y)),
                Op::Mul(x, y) => Op::Mul(slot(x), slot(y)),
                Op::Neg(x) => Op::Neg(slot(x)),
            })
            .collect();
        Ok(Self {
            queries: b.queries,
            constants: b.constants,
            ops,
            outputs: refs.into_iter().map(slot).collect(),
        })
    }

    /// Number of outputs.
    pub fn len(&self) -> usize {
        self.outputs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }

    /// A scratch buffer for [`Program::horner`], constants filled in. One per thread.
    pub fn scratch(&self) -> Vec<Fr> {
        let slots = self.queries.len() + self.constants.len() + self.ops.len();
        let mut s = vec![Fr::ZERO; slots * BLOCK];
        let base = self.queries.len();
        for (i, c) in self.constants.iter().enumerate() {
            s[(base + i) * BLOCK..(base + i + 1) * BLOCK].fill(*c);
        }
        s
    }

    /// For the rows `start .. start + dst.len()` (positions on the columns' domain), folds the
    /// outputs into `dst` in order: `dst = (…(dst·f + out₀)·f + out₁…)·f + out_last`.
    /// `scratch` comes from [`Program::scratch`]; `cols` must have passed [`Columns::check`].
    pub fn horner(
        &self,
        cols: &Columns<'_>,
        scratch: &mut [Fr],
        start: usize,
        dst: &mut [Fr],
        factor: Fr,
    ) {
        let size = cols.size;
        let first_op = self.queries.len() + self.constants.len();
        for (bi, out) in dst.chunks_mut(BLOCK).enumerate() {
            let len = out.len();
            let row0 = start + bi * BLOCK;
            for (qi, q) in self.queries.iter().enumerate() {
                let column = cols.set(q.kind)[q.index];
                let shift = (i64::from(q.rotation) * cols.ratio as i64).rem_euclid(size as i64);
                let from = (row0 + shift as usize) % size;
                let slot = &mut scratch[qi * BLOCK..qi * BLOCK + len];
                if from + len <= size {
                    slot.copy_from_slice(&column[from..from + len]);
                } else {
                    for (r, v) in slot.iter_mut().enumerate() {
                        *v = column[(from + r) % size];
                    }
                }
            }
            for (oi, op) in self.ops.iter().enumerate() {
                let (lo, hi) = scratch.split_at_mut((first_op + oi) * BLOCK);
                let o = &mut hi[..len];
                let s = |i: usize| &lo[i * BLOCK..i * BLOCK + len];
                match *op {
                    Op::Add(a, b) => {
                        for ((o, a), b) in o.iter_mut().zip(s(a)).zip(s(b)) {
                            *o = *a + b;
                        }
                    }
                    Op::Sub(a, b) => {
                        for ((o, a), b) in o.iter_mut().zip(s(a)).zip(s(b)) {
                            *o = *a - b;
                        }
                    }
                    Op::Mul(a, b) => {
                        for ((o, a), b) in o.iter_mut().zip(s(a)).zip(s(b)) {
                            *o = *a * b;
                        }
                    }
                    Op::Neg(a) => {
                        for (o, a) in o.iter_mut().zip(s(a)) {
                            *o = -*a;
                        }
                    }
                }
            }
            for &slot in &self.outputs {
                let v = &scratch[slot * BLOCK..slot * BLOCK + len];
                for (d, v) in out.iter_mut().zip(v) {
                    *d = *d * factor + v;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use halo2_proofs::plonk::{Challenge, ConstraintSystem, FirstPhase};
    use halo2_proofs::poly::Rotation;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    /// Gates with shared subexpressions, negations, scalings, constants, a challenge and
    /// rotations that wrap around both ends of the domain.
    fn gates() -> Vec<Expression<Fr>> {
        let mut cs = ConstraintSystem::<Fr>::default();
        let a = cs.advice_column();
        let b = cs.advice_column();
        let f = cs.fixed_column();
        let i = cs.instance_column();
        let ch: Challenge = cs.challenge_usable_after(FirstPhase);
        cs.create_gate("g", |m| {
            let a0 = m.query_advice(a, Rotation::cur());
            let a1 = m.query_advice(a, Rotation::next());
            let am = m.query_advice(a, Rotation(-3));
            let b0 = m.query_advice(b, Rotation(2));
            let f0 = m.query_fixed(f, Rotation::cur());
            let fp = m.query_fixed(f, Rotation::prev());
            let i0 = m.query_instance(i, Rotation::cur());
            let c = m.query_challenge(ch);
            let shared = a0.clone() * b0.clone();
            vec![
                f0.clone() * (a0.clone() + shared.clone() - a1.clone()),
                -(shared.clone() * Fr::from(7)) + Expression::Constant(Fr::from(3)) - am,
                (fp + c.clone()) * (i0 - b0 * shared) + c * f0,
            ]
        });
        cs.gates()
            .iter()
            .flat_map(|g| g.polynomials().iter().cloned())
            .collect()
    }

    #[test]
    fn program_matches_tree_evaluation_on_awkward_sizes() {
        let exprs = gates();
        let refs: Vec<&Expression<Fr>> = exprs.iter().collect();
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        for (size, ratio) in [(8usize, 1usize), (64, 4), (100, 1), (1000, 8)] {
            let col = |rng: &mut ChaCha20Rng| -> Vec<Fr> {
                (0..size).map(|_| Fr::random(&mut *rng)).collect()
            };
            let fixed = vec![col(&mut rng)];
            let advice = vec![col(&mut rng), col(&mut rng)];
            let instance = vec![col(&mut rng)];
            let challenges = vec![Fr::random(&mut rng)];
            let y = Fr::random(&mut rng);
            let program = Program::compile(&refs, &challenges, [1, 2, 1]).expect("compile");
            let cols = Columns {
                fixed: fixed.iter().map(Vec::as_slice).collect(),
                advice: advice.iter().map(Vec::as_slice).collect(),
                instance: instance.iter().map(Vec::as_slice).collect(),
                size,
                ratio,
            };
            cols.check().expect("columns");
            // Two uneven pieces, as parallel chunks would call it, on a non-zero start value.
            let init: Vec<Fr> = (0..size).map(|_| Fr::random(&mut rng)).collect();
            let mut got = init.clone();
            let cut = size / 3 + 1;
            let mut scratch = program.scratch();
            let (lo, hi) = got.split_at_mut(cut);
            program.horner(&cols, &mut scratch, 0, lo, y);
            program.horner(&cols, &mut scratch, cut, hi, y);

            for row in 0..size {
                let at = |set: &[Vec<Fr>], index: usize, rot: Rotation| {
                    let pos = (row as i64 + i64::from(rot.0) * ratio as i64).rem_euclid(size as i64)
                        as usize;
                    set[index][pos]
                };
                let mut want = init[row];
                for e in &exprs {
                    let v = e.evaluate(
                        &|c| c,
                        &|_| panic!("no selectors"),
                        &|q| at(&fixed, q.column_index(), q.rotation()),
                        &|q| at(&advice, q.column_index(), q.rotation()),
                        &|q| at(&instance, q.column_index(), q.rotation()),
                        &|c| challenges[c.index()],
                        &|a| -a,
                        &|a, b| a + b,
                        &|a, b| a * b,
                        &|a, s| a * s,
                    );
                    want = want * y + v;
                }
                assert_eq!(got[row], want, "size {size} ratio {ratio} row {row}");
            }
        }
    }

    #[test]
    fn program_refuses_missing_columns_and_challenges() {
        let exprs = gates();
        let refs: Vec<&Expression<Fr>> = exprs.iter().collect();
        let err = Program::compile(&refs, &[Fr::ONE], [1, 1, 1])
            .err()
            .expect("advice column 1 does not exist");
        assert!(err.to_string().contains("Advice column 1"), "{err}");
        let err = Program::compile(&refs, &[], [1, 2, 1])
            .err()
            .expect("challenge 0 missing");
        assert!(err.to_string().contains("challenge 0"), "{err}");
    }

    #[test]
    fn shared_subexpressions_are_computed_once() {
        let exprs = gates();
        let refs: Vec<&Expression<Fr>> = exprs.iter().collect();
        let p = Program::compile(&refs, &[Fr::ONE], [1, 2, 1]).expect("compile");
        let muls = p.ops.iter().filter(|op| matches!(op, Op::Mul(..))).count();
        // a0·b0 is written three times in the gates but computed once.
        let tree_muls: usize = exprs
            .iter()
            .map(|e| {
                e.evaluate(
                    &|_| 0,
                    &|_| 0,
                    &|_| 0,
                    &|_| 0,
                    &|_| 0,
                    &|_| 0,
                    &|a| a,
                    &|a, b| a + b,
                    &|a, b| a + b + 1,
                    &|a, _| a + 1,
                )
            })
            .sum();
        assert!(
            muls < tree_muls,
            "{muls} multiplications, the tree has {tree_muls}"
        );
        assert_eq!(p.len(), 3);
    }
}
