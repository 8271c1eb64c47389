//! Row-wise programs over backend-resident vectors: the device-side form of the quotient
//! numerator's expressions (and of any other element-wise arithmetic the engine needs).
//!
//! A [`Program`] reads a fixed list of input vectors at rotated rows, computes with constants,
//! additions, subtractions, multiplications and negations, and folds its outputs into an
//! accumulator vector with Horner's rule: for every row `i`,
//! `acc[i] = (…((acc[i]·y + out_0(i))·y + out_1(i))…)·y + out_{m-1}(i)`.
//! A rotation `r` reads input row `(i + r·ratio) mod size` (`ratio` rows per circuit row: 1 on the
//! circuit's domain, `2^(extended_k - k)` on the extended coset).
//!
//! [`ProgramBuilder`] shares identical subexpressions; [`ProgramBuilder::build`] orders the work
//! output by output and assigns each intermediate a *slot* that is reused once its last reader
//! has run, so evaluating a row needs only [`Program::slots`] live values — what lets one device
//! thread evaluate a whole row in registers and local memory. Field arithmetic is exact, so any
//! evaluation order gives the same values on every backend.

use std::collections::HashMap;

use ff::{Field, PrimeField};
use halo2curves::bn256::Fr;

use crate::backend::BackendError;

/// Most intermediate values a program may keep live at once (the device interpreter's per-thread
/// slot array).
pub const MAX_SLOTS: usize = 64;

/// Rows the CPU evaluator processes together (instruction-major within a block).
const BLOCK: usize = 64;

/// A value in a program under construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    /// A query (input, rotation), numbered in order of first use.
    Query(u32),
    /// A constant, numbered in order of first use.
    Const(u32),
    /// The result of an operation.
    Op(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum OpKind {
    Add,
    Sub,
    Mul,
    Neg,
}

/// Builds a [`Program`].
#[derive(Debug)]
pub struct ProgramBuilder {
    inputs: usize,
    queries: Vec<(u32, i32)>,
    query_ids: HashMap<(u32, i32), u32>,
    constants: Vec<Fr>,
    const_ids: HashMap<[u8; 32], u32>,
    ops: Vec<(OpKind, Value, Value)>,
    op_ids: HashMap<(OpKind, Value, Value), u32>,
    outputs: Vec<Value>,
}

impl ProgramBuilder {
    /// A program over `inputs` input vectors.
    pub fn new(inputs: usize) -> Self {
        Self {
            inputs,
            queries: Vec::new(),
            query_ids: HashMap::new(),
            constants: Vec::new(),
            const_ids: HashMap::new(),
            ops: Vec::new(),
            op_ids: HashMap::new(),
            outputs: Vec::new(),
        }
    }

    /// Input `input` at rotation `rotation` (circuit rows).
    pub fn query(&mut self, input: usize, rotation: i32) -> Result<Value, BackendError> {
        if input >= self.inputs {
            return Err(BackendError::Device(format!(
                "program: query of input {input}, the program has {}",
                self.inputs
            )));
        }
        let key = (input as u32, rotation);
        let next = self.queries.len() as u32;
        let id = *self.query_ids.entry(key).or_insert_with(|| next);
        if id == next {
            self.queries.push(key);
        }
        Ok(Value::Query(id))
    }

    /// The constant `c`.
    pub fn constant(&mut self, c: Fr) -> Value {
        let key = c.to_repr();
        let next = self.constants.len() as u32;
        let id = *self.const_ids.entry(key).or_insert_with(|| next);
        if id == next {
            self.constants.push(c);
        }
        Value::Const(id)
    }

    fn op(&mut self, kind: OpKind, a: Value, b: Value) -> Value {
        // Constant operands are folded here, so a program never computes on constants alone.
        if let (Value::Const(x), Value::Const(y)) = (a, b) {
            let (x, y) = (self.constants[x as usize], self.constants[y as usize]);
            let v = match kind {
                OpKind::Add => x + y,
                OpKind::Sub => x - y,
                OpKind::Mul => x * y,
                OpKind::Neg => -x,
            };
            return self.constant(v);
        }
        // Commutative operations are stored in one order so that a·b and b·a are shared.
        let (a, b) = match kind {
            OpKind::Add | OpKind::Mul if b < a => (b, a),
            _ => (a, b),
        };
        let key = (kind, a, b);
        let next = self.ops.len() as u32;
        let id = *self.op_ids.entry(key).or_insert_with(|| next);
        if id == next {
            self.ops.push(key);
        }
        Value::Op(id)
    }

    /// `a + b`.
    pub fn add(&mut self, a: Value, b: Value) -> Value {
        self.op(OpKind::Add, a, b)
    }

    /// `a - b`.
    pub fn sub(&mut self, a: Value, b: Value) -> Value {
        self.op(OpKind::Sub, a, b)
    }

    /// `a · b`.
    pub fn mul(&mut self, a: Value, b: Value) -> Value {
        self.op(OpKind::Mul, a, b)
    }

    /// `-a`.
    pub fn neg(&mut self, a: Value) -> Value {
        self.op(OpKind::Neg, a, a)
    }

    /// Appends `v` to the outputs (folded in the order they are added).
    pub fn output(&mut self, v: Value) {
        self.outputs.push(v);
    }

    /// Orders the work output by output and assigns slots. Fails if more than [`MAX_SLOTS`]
    /// values would be live at once.
    pub fn build(self) -> Result<Program, BackendError> {
        let n_ops = self.ops.len();
        // Emission order: for each output, the not yet emitted operations of its cone
        // (operands before users), then its fold.
        let mut emitted = vec![false; n_ops];
        let mut order: Vec<Step> = Vec::new();
        for &out in &self.outputs {
            if let Value::Op(root) = out {
                let mut stack = vec![(root, false)];
                while let Some((op, expanded)) = stack.pop() {
                    if emitted[op as usize] {
                        continue;
                    }
                    if expanded {
                        emitted[op as usize] = true;
                        order.push(Step::Op(op));
                        continue;
                    }
                    stack.push((op, true));
                    let (_, a, b) = self.ops[op as usize];
                    for v in [b, a] {
                        if let Value::Op(d) = v {
                            if !emitted[d as usize] {
                                stack.push((d, false));
                            }
                        }
                    }
                }
            }
            order.push(Step::Fold(out));
        }
        // Last use of every op result, in emission positions.
        let mut last_use = vec![0usize; n_ops];
        for (pos, step) in order.iter().enumerate() {
            let reads: [Option<Value>; 2] = match *step {
                Step::Op(op) => {
                    let (_, a, b) = self.ops[op as usize];
                    [Some(a), Some(b)]
                }
                Step::Fold(v) => [Some(v), None],
            };
            for v in reads.into_iter().flatten() {
                if let Value::Op(d) = v {
                    last_use[d as usize] = pos;
                }
            }
        }
        // Slots: an op's result takes a free slot; slots free after their value's last use.
        let mut slot_of = vec![u32::MAX; n_ops];
        let mut free: Vec<u32> = Vec::new();
        let mut slots = 0usize;
        let mut code = Vec::with_capacity(order.len());
        let operand = |v: Value, slot_of: &[u32]| -> Operand {
            match v {
                Value::Query(q) => Operand::Query(q),
                Value::Const(c) => Operand::Const(c),
                Value::Op(o) => Operand::Slot(slot_of[o as usize]),
            }
        };
        for (pos, step) in order.iter().enumerate() {
            match *step {
                Step::Op(op) => {
                    let (kind, a, b) = self.ops[op as usize];
                    let (oa, ob) = (operand(a, &slot_of), operand(b, &slot_of));
                    // Operands whose last use is here free their slots before the result takes
                    // one (the result may reuse an operand's slot: it is read first).
                    for v in [a, b] {
                        if let Value::Op(d) = v {
                            if last_use[d as usize] == pos && slot_of[d as usize] != u32::MAX {
                                let s = slot_of[d as usize];
                                if !free.contains(&s) {
                                    free.push(s);
                                }
                            }
                        }
                    }
                    let dst = match free.pop() {
                        Some(s) => s,
                        None => {
                            slots += 1;
                            (slots - 1) as u32
                        }
                    };
                    slot_of[op as usize] = dst;
                    code.push(Instr {
                        kind: match kind {
                            OpKind::Add => InstrKind::Add,
                            OpKind::Sub => InstrKind::Sub,
                            OpKind::Mul => InstrKind::Mul,
                            OpKind::Neg => InstrKind::Neg,
                        },
                        dst,
                        a: oa,
                        b: ob,
                    });
                }
                Step::Fold(v) => {
                    let o = operand(v, &slot_of);
                    if let Value::Op(d) = v {
                        if last_use[d as usize] == pos {
                            let s = slot_of[d as usize];
                            if !free.contains(&s) {
                                free.push(s);
                            }
                        }
                    }
                    code.push(Instr {
                        kind: InstrKind::Fold,
                        dst: 0,
                        a: o,
                        b: o,
                    });
                }
            }
        }
        if slots > MAX_SLOTS {
            return Err(BackendError::Device(format!(
                "program needs {slots} live values at once, at most {MAX_SLOTS} are supported"
            )));
        }
        Ok(Program {
            inputs: self.inputs,
            queries: self.queries,
            constants: self.constants,
            code,
            slots,
            outputs: self.outputs.len(),
        })
    }
}

#[derive(Clone, Copy, Debug)]
enum Step {
    Op(u32),
    Fold(Value),
}

/// An operand of an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    /// A slot (an intermediate value).
    Slot(u32),
    /// A query (input and rotation).
    Query(u32),
    /// A constant.
    Const(u32),
}

impl Operand {
    /// The device encoding: tag in the top two bits (0 slot, 1 query, 2 constant), index below.
    pub fn encode(self) -> u32 {
        match self {
            Operand::Slot(i) => i,
            Operand::Query(i) => (1 << 30) | i,
            Operand::Const(i) => (2 << 30) | i,
        }
    }
}

/// What an instruction does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstrKind {
    /// `slot[dst] = a + b`.
    Add = 0,
    /// `slot[dst] = a - b`.
    Sub = 1,
    /// `slot[dst] = a · b`.
    Mul = 2,
    /// `slot[dst] = -a`.
    Neg = 3,
    /// `acc = acc · y + a`.
    Fold = 4,
}

/// One instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instr {
    pub kind: InstrKind,
    pub dst: u32,
    pub a: Operand,
    pub b: Operand,
}

/// A compiled row-wise program (see the module documentation).
#[derive(Clone, Debug)]
pub struct Program {
    inputs: usize,
    queries: Vec<(u32, i32)>,
    constants: Vec<Fr>,
    code: Vec<Instr>,
    slots: usize,
    outputs: usize,
}

impl Program {
    /// Number of input vectors.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// The queries: (input, rotation in circuit rows).
    pub fn queries(&self) -> &[(u32, i32)] {
        &self.queries
    }

    /// The constants.
    pub fn constants(&self) -> &[Fr] {
        &self.constants
    }

    /// The instructions, in evaluation order.
    pub fn code(&self) -> &[Instr] {
        &self.code
    }

    /// Live intermediate values needed at once.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Number of outputs folded into the accumulator.
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// The device encoding of the code: four words per instruction (kind, dst, a, b).
    pub fn encode(&self) -> Vec<u32> {
        self.code
            .iter()
            .flat_map(|i| [i.kind as u32, i.dst, i.a.encode(), i.b.encode()])
            .collect()
    }

    /// Checks the arguments of an evaluation: input count and lengths, `ratio` and the size.
    pub fn check_args(
        &self,
        input_lens: &[usize],
        acc_len: usize,
        ratio: usize,
    ) -> Result<(), BackendError> {
        if input_lens.len() != self.inputs {
            return Err(BackendError::Device(format!(
                "program over {} inputs given {}",
                self.inputs,
                input_lens.len()
            )));
        }
        if !acc_len.is_power_of_two() {
            return Err(BackendError::Device(format!(
                "program: the accumulator's length {acc_len} is not a power of two"
            )));
        }
        if ratio == 0 || !acc_len.is_multiple_of(ratio) {
            return Err(BackendError::Device(format!(
                "program: ratio {ratio} does not divide the size {acc_len}"
            )));
        }
        if let Some((i, len)) = input_lens.iter().enumerate().find(|(_, &l)| l != acc_len) {
            return Err(BackendError::Device(format!(
                "program: input {i} has {len} values, the accumulator {acc_len}"
            )));
        }
        Ok(())
    }

    /// Row offsets of the queries for `ratio` and `size` (a rotation as a non-negative shift
    /// modulo `size`).
    pub fn query_shifts(&self, ratio: usize, size: usize) -> Vec<u32> {
        self.queries
            .iter()
            .map(|&(_, rot)| (i64::from(rot) * ratio as i64).rem_euclid(size as i64) as u32)
            .collect()
    }

    /// The CPU evaluation (the oracle of every other backend): `acc` is updated in place.
    ///
    /// Blocks of [`BLOCK`] rows are evaluated instruction by instruction: each instruction's
    /// operands are resolved once per block (a query to its input's rows, a slot to its row
    /// values, a constant to its value) and the row loop is specialised to their kinds, so that
    /// the loop body is the field operation and its loads.
    pub fn eval_host(
        &self,
        inputs: &[&[Fr]],
        acc: &mut [Fr],
        ratio: usize,
        y: Fr,
    ) -> Result<(), BackendError> {
        use rayon::prelude::*;
        let lens: Vec<usize> = inputs.iter().map(|c| c.len()).collect();
        self.check_args(&lens, acc.len(), ratio)?;
        let shifts = self.query_shifts(ratio, acc.len());
        acc.par_chunks_mut(BLOCK).enumerate().for_each_init(
            || Block::new(self.slots),
            |block, (bi, out)| block.run(self, inputs, &shifts, bi * BLOCK, out, y),
        );
        Ok(())
    }
}

/// One thread's buffers for [`Program::eval_host`]: the slots' row values and the rows of two
/// queries whose block wraps around the end of their input.
struct Block {
    slots: Vec<Vec<Fr>>,
    wrapped: [Vec<Fr>; 2],
}

/// An operand resolved for one block of rows.
#[derive(Clone, Copy)]
enum Src<'a> {
    /// Its value in every row of the block.
    Rows(&'a [Fr]),
    /// The instruction's own destination (an operation whose operand's slot it reuses).
    Dst,
    /// One value for every row.
    Const(Fr),
}

/// Reads an operand of kind known at compile time in row `r`.
trait Read: Copy {
    fn at(self, r: usize, dst: &[Fr]) -> Fr;
}

#[derive(Clone, Copy)]
struct FromRows<'a>(&'a [Fr]);
#[derive(Clone, Copy)]
struct FromDst;
#[derive(Clone, Copy)]
struct FromConst(Fr);

impl Read for FromRows<'_> {
    #[inline(always)]
    fn at(self, r: usize, _: &[Fr]) -> Fr {
        self.0[r]
    }
}

impl Read for FromDst {
    #[inline(always)]
    fn at(self, r: usize, dst: &[Fr]) -> Fr {
        dst[r]
    }
}

impl Read for FromConst {
    #[inline(always)]
    fn at(self, _: usize, _: &[Fr]) -> Fr {
        self.0
    }
}

/// `dst[r] = f(a[r], b[r])` for every row, the operands' kinds fixed for the loop.
#[inline(always)]
fn rows<A: Read, B: Read>(dst: &mut [Fr], a: A, b: B, f: impl Fn(Fr, Fr) -> Fr) {
    for r in 0..dst.len() {
        let v = f(a.at(r, dst), b.at(r, dst));
        dst[r] = v;
    }
}

/// [`rows`] with each operand's kind dispatched once.
#[inline(always)]
fn apply(dst: &mut [Fr], a: Src<'_>, b: Src<'_>, f: impl Fn(Fr, Fr) -> Fr) {
    match (a, b) {
        (Src::Rows(a), Src::Rows(b)) => rows(dst, FromRows(a), FromRows(b), f),
        (Src::Rows(a), Src::Dst) => rows(dst, FromRows(a), FromDst, f),
        (Src::Rows(a), Src::Const(b)) => rows(dst, FromRows(a), FromConst(b), f),
        (Src::Dst, Src::Rows(b)) => rows(dst, FromDst, FromRows(b), f),
        (Src::Dst, Src::Dst) => rows(dst, FromDst, FromDst, f),
        (Src::Dst, Src::Const(b)) => rows(dst, FromDst, FromConst(b), f),
        (Src::Const(a), Src::Rows(b)) => rows(dst, FromConst(a), FromRows(b), f),
        (Src::Const(a), Src::Dst) => rows(dst, FromConst(a), FromDst, f),
        // Programs never compute on constants alone (the builder folds them); kept for
        // completeness.
        (Src::Const(a), Src::Const(b)) => dst.fill(f(a, b)),
    }
}

impl Block {
    fn new(slots: usize) -> Self {
        Self {
            slots: (0..slots).map(|_| vec![Fr::ZERO; BLOCK]).collect(),
            wrapped: [Vec::with_capacity(BLOCK), Vec::with_capacity(BLOCK)],
        }
    }

    /// Evaluates rows `start..start + out.len()` of `program`, folding into `out`.
    fn run(
        &mut self,
        program: &Program,
        inputs: &[&[Fr]],
        shifts: &[u32],
        start: usize,
        out: &mut [Fr],
        y: Fr,
    ) {
        let rows_n = out.len();
        for ins in &program.code {
            // Fill the wrapped rows of queries whose block crosses the end of their input.
            let mut wrapped_used = 0;
            let mut wrap = |o: Operand, wrapped: &mut [Vec<Fr>; 2]| -> Option<usize> {
                let Operand::Query(q) = o else { return None };
                let (input, _) = program.queries[q as usize];
                let col = inputs[input as usize];
                let size = col.len();
                let first = (start + shifts[q as usize] as usize) & (size - 1);
                if first + rows_n <= size {
                    return None;
                }
                let w = &mut wrapped[wrapped_used];
                wrapped_used += 1;
                w.clear();
                w.extend((0..rows_n).map(|r| col[(first + r) & (size - 1)]));
                Some(wrapped_used - 1)
            };
            let wa = wrap(ins.a, &mut self.wrapped);
            let wb = if ins.kind == InstrKind::Fold || ins.kind == InstrKind::Neg {
                None
            } else {
                wrap(ins.b, &mut self.wrapped)
            };
            // The destination's row values are taken out of the slot table while the
            // instruction runs, so the other slots can be read beside it.
            let dst_slot = (ins.kind != InstrKind::Fold).then_some(ins.dst as usize);
            let mut dst = dst_slot.map(|d| std::mem::take(&mut self.slots[d]));
            let src = |o: Operand, w: Option<usize>| -> Src<'_> {
                if let Some(i) = w {
                    return Src::Rows(&self.wrapped[i]);
                }
                match o {
                    Operand::Slot(s) if Some(s as usize) == dst_slot => Src::Dst,
                    Operand::Slot(s) => Src::Rows(&self.slots[s as usize][..rows_n]),
                    Operand::Query(q) => {
                        let (input, _) = program.queries[q as usize];
                        let col = inputs[input as usize];
                        let first = (start + shifts[q as usize] as usize) & (col.len() - 1);
                        Src::Rows(&col[first..first + rows_n])
                    }
                    Operand::Const(c) => Src::Const(program.constants[c as usize]),
                }
            };
            let a = src(ins.a, wa);
            match (ins.kind, dst.as_mut()) {
                (InstrKind::Fold, _) => {
                    // acc = acc·y + a (the accumulator is never a slot).
                    apply(out, Src::Dst, a, |v, a| v * y + a);
                }
                (InstrKind::Add, Some(d)) => {
                    apply(&mut d[..rows_n], a, src(ins.b, wb), |a, b| a + b)
                }
                (InstrKind::Sub, Some(d)) => {
                    apply(&mut d[..rows_n], a, src(ins.b, wb), |a, b| a - b)
                }
                (InstrKind::Mul, Some(d)) => {
                    apply(&mut d[..rows_n], a, src(ins.b, wb), |a, b| a * b)
                }
                (InstrKind::Neg, Some(d)) => apply(&mut d[..rows_n], a, a, |a, _| -a),
                (_, None) => {}
            }
            if let (Some(d), Some(v)) = (dst_slot, dst) {
                self.slots[d] = v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    /// Reads input `.0` at rotation `.1` of the current row.
    type Q<'a> = &'a dyn Fn(usize, i32) -> Fr;

    /// The straightforward evaluation of the same expressions, for comparison.
    fn naive(
        inputs: &[Vec<Fr>],
        acc: &mut [Fr],
        ratio: usize,
        y: Fr,
        f: &dyn Fn(Q<'_>) -> Vec<Fr>,
    ) {
        let size = acc.len();
        for (i, a) in acc.iter_mut().enumerate() {
            let q = |input: usize, rot: i32| {
                inputs[input]
                    [(i as i64 + i64::from(rot) * ratio as i64).rem_euclid(size as i64) as usize]
            };
            for out in f(&q) {
                *a = *a * y + out;
            }
        }
    }

    #[test]
    fn matches_a_naive_evaluation_and_reuses_slots() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        for (log_size, ratio) in [(0u32, 1usize), (3, 1), (6, 4), (7, 1), (10, 4), (12, 8)] {
            let size = 1usize << log_size;
            let inputs: Vec<Vec<Fr>> = (0..3)
                .map(|_| (0..size).map(|_| Fr::random(&mut rng)).collect())
                .collect();
            let c = Fr::random(&mut rng);
            let y = Fr::random(&mut rng);
            let mut b = ProgramBuilder::new(3);
            let a0 = b.query(0, 0).unwrap();
            let a1 = b.query(1, 1).unwrap();
            let a2 = b.query(2, -3).unwrap();
            let k = b.constant(c);
            // out0 = a0·a1 + c; out1 = -(a2 - a0·a1); out2 = (a0·a1)·(a0·a1) - a2
            let p = b.mul(a0, a1);
            let p2 = b.mul(a1, a0);
            assert_eq!(p, p2, "commutative ops are shared");
            let o0 = b.add(p, k);
            let d = b.sub(a2, p);
            let o1 = b.neg(d);
            let sq = b.mul(p, p);
            let o2 = b.sub(sq, a2);
            // A constant on the left, a negation reusing its operand's slot.
            let o3 = b.sub(k, a0);
            let o3 = b.neg(o3);
            b.output(o0);
            b.output(o1);
            b.output(o2);
            b.output(k);
            b.output(o3);
            let prog = b.build().unwrap();
            assert!(prog.slots() <= 3, "{} slots", prog.slots());
            let init: Vec<Fr> = (0..size).map(|_| Fr::random(&mut rng)).collect();
            let mut got = init.clone();
            let refs: Vec<&[Fr]> = inputs.iter().map(Vec::as_slice).collect();
            prog.eval_host(&refs, &mut got, ratio, y).unwrap();
            let mut want = init;
            naive(&inputs, &mut want, ratio, y, &|q| {
                let p = q(0, 0) * q(1, 1);
                vec![p + c, -(q(2, -3) - p), p * p - q(2, -3), c, -(c - q(0, 0))]
            });
            assert_eq!(got, want, "size {size}, ratio {ratio}");
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        let mut b = ProgramBuilder::new(1);
        assert!(b.query(1, 0).is_err());
        let q = b.query(0, 0).unwrap();
        b.output(q);
        let p = b.build().unwrap();
        let col = vec![Fr::ONE; 8];
        let mut acc = vec![Fr::ZERO; 8];
        assert!(p.eval_host(&[], &mut acc, 1, Fr::ONE).is_err());
        assert!(p.eval_host(&[&col[..4]], &mut acc, 1, Fr::ONE).is_err());
        assert!(p.eval_host(&[&col], &mut acc, 3, Fr::ONE).is_err());
        let mut odd = vec![Fr::ZERO; 6];
        assert!(p.eval_host(&[&col[..6]], &mut odd, 1, Fr::ONE).is_err());
    }

    #[test]
    fn too_many_live_values_are_refused() {
        // 70 distinct products all live until the last output reads them.
        let mut b = ProgramBuilder::new(1);
        let ps: Vec<Value> = (0..70)
            .map(|r| {
                let q = b.query(0, r).unwrap();
                b.mul(q, q)
            })
            .collect();
        let mut acc = ps[0];
        for p in &ps[1..] {
            acc = b.add(acc, *p);
        }
        // Reading every product again after the sum keeps them all live.
        b.output(acc);
        for p in ps {
            b.output(p);
        }
        assert!(b.build().is_err());
    }
}
