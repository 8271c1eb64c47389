//! The quotient h: its numerator (every gate polynomial, every permutation constraint and every
//! lookup constraint, folded with powers of y in halo2's order: gates in order, each gate's
//! polynomials in order, then the permutation terms, then each lookup's five terms) over `r·n`
//! points off the domain, divided by `X^n - 1` and interpolated into h's pieces.
//!
//! **Part by part.** The points are `r` cosets of the circuit's domain ([`super::cosets`]), part
//! `p` being `s_p·⟨ω⟩`; a rotation by ω stays inside a part. So each part is evaluated on its own
//! with n-sized vectors: every column goes to the part by a shifted NTT of its n coefficients, the
//! constraint programs run over the part's rows, and `X^n - 1` is the constant `s_p^n - 1` there.
//! An inverse shifted NTT of the part's quotient values gives `F_p[a] = Σ_b h_{a+nb}·s_p^{nb}`,
//! a DFT of size r over the pieces: with `s_p^n = g^n·μ^p` (`μ` of order r), piece b is
//! `g^{-nb}/r · Σ_p μ^{-pb}·F_p`, accumulated as the parts come. Only one part is in memory at a
//! time, for the key's columns as for this proof's. `r` is the number of pieces where the field
//! allows (3 for a degree-4 circuit, where halo2 evaluates 4 parts of its extended coset).
//!
//! It runs on resident vectors ([`gpu::Poly`]): this proof's columns are in the backend as
//! coefficients, the key's come from the [`KeyCache`], and the constraints are compiled into
//! [`gpu::Program`]s that the backend evaluates row by row (on CUDA, one thread per row). Nothing
//! of the parts crosses to the host.

use std::ops::Range;

use ff::{Field, PrimeField};
use gpu::program::{InstrKind, Value};
use gpu::{Direction, Poly, Program, ProgramBuilder};
use halo2_proofs::plonk::{Any, Expression, ProvingKey};
use halo2curves::bn256::{Fr, G1Affine};
use rayon::prelude::*;

use super::keycache::{to_part, Held, KeyCache};
use super::lookup;
use super::permutation::{chunk_len, Committed};
use super::program::{Columns, Program as HostProgram};
use super::{Ctx, NativeError};

/// Rows per parallel task (the domain gate check).
const CHUNK: usize = 1 << 12;

/// Where each column is in the input list of the quotient programs.
pub struct Layout {
    fixed: usize,
    advice: usize,
    instance: usize,
    sigma: usize,
    l0: usize,
    l_last: usize,
    l_active: usize,
    x: usize,
    products: usize,
    /// Per lookup, its product z; a and s follow it.
    lookups: usize,
    counts: [usize; 3],
}

impl Layout {
    /// The circuit's fixed, advice and instance columns only, in that order (programs on the
    /// circuit's own domain, such as the lookups' compression).
    pub fn columns(counts: [usize; 3]) -> Self {
        let none = usize::MAX;
        Self {
            fixed: 0,
            advice: counts[0],
            instance: counts[0] + counts[1],
            sigma: none,
            l0: none,
            l_last: none,
            l_active: none,
            x: none,
            products: none,
            lookups: none,
            counts,
        }
    }

    fn column(&self, kind: Any, index: usize) -> Result<usize, NativeError> {
        let (base, count) = match kind {
            Any::Fixed => (self.fixed, self.counts[0]),
            Any::Advice(_) => (self.advice, self.counts[1]),
            Any::Instance => (self.instance, self.counts[2]),
        };
        if index >= count {
            return Err(NativeError::Internal(format!(
                "expression reads {kind:?} column {index}, the circuit has {count}"
            )));
        }
        Ok(base + index)
    }
}

/// `e` in `b`, reading the circuit's columns through `layout`.
pub(crate) fn expr(
    b: &mut ProgramBuilder,
    e: &Expression<Fr>,
    layout: &Layout,
    challenges: &[Fr],
) -> Result<Value, NativeError> {
    let q = |b: &mut ProgramBuilder, kind: Any, index: usize, rot: i32| {
        Ok::<_, NativeError>(b.query(layout.column(kind, index)?, rot)?)
    };
    Ok(match e {
        Expression::Constant(c) => b.constant(*c),
        Expression::Selector(s) => {
            return Err(NativeError::Internal(format!(
                "selector {s:?} left in the proving key's expressions"
            )))
        }
        Expression::Fixed(f) => q(b, Any::Fixed, f.column_index(), f.rotation().0)?,
        Expression::Advice(a) => q(
            b,
            Any::Advice(Default::default()),
            a.column_index(),
            a.rotation().0,
        )?,
        Expression::Instance(i) => q(b, Any::Instance, i.column_index(), i.rotation().0)?,
        Expression::Challenge(c) => {
            let v = *challenges
                .get(c.index())
                .ok_or_else(|| NativeError::Internal(format!("challenge {} missing", c.index())))?;
            b.constant(v)
        }
        Expression::Negated(a) => {
            let a = expr(b, a, layout, challenges)?;
            b.neg(a)
        }
        Expression::Sum(x, y) => {
            let x = expr(b, x, layout, challenges)?;
            match &**y {
                Expression::Negated(y) => {
                    let y = expr(b, y, layout, challenges)?;
                    b.sub(x, y)
                }
                y => {
                    let y = expr(b, y, layout, challenges)?;
                    b.add(x, y)
                }
            }
        }
        Expression::Product(x, y) => {
            let x = expr(b, x, layout, challenges)?;
            let y = expr(b, y, layout, challenges)?;
            b.mul(x, y)
        }
        Expression::Scaled(x, c) => {
            let x = expr(b, x, layout, challenges)?;
            let c = b.constant(*c);
            b.mul(x, c)
        }
    })
}

/// Compiles `count` outputs (added to a builder by `add`, in order) into as few programs as the
/// device's slot limit allows: all in one if they fit, else the range split in halves. Folding
/// the programs one after another into the same accumulator gives the same values.
pub(crate) fn compile(
    inputs: usize,
    count: usize,
    add: &dyn Fn(&mut ProgramBuilder, usize) -> Result<Value, NativeError>,
) -> Result<Vec<Program>, NativeError> {
    fn range(
        inputs: usize,
        r: Range<usize>,
        add: &dyn Fn(&mut ProgramBuilder, usize) -> Result<Value, NativeError>,
        out: &mut Vec<Program>,
    ) -> Result<(), NativeError> {
        let mut b = ProgramBuilder::new(inputs);
        for i in r.clone() {
            let v = add(&mut b, i)?;
            b.output(v);
        }
        match b.build() {
            Ok(p) => {
                out.push(p);
                Ok(())
            }
            Err(e) if r.len() <= 1 => Err(e.into()),
            Err(_) => {
                let mid = r.start + r.len() / 2;
                range(inputs, r.start..mid, add, out)?;
                range(inputs, mid..r.end, add, out)
            }
        }
    }
    let mut out = Vec::new();
    if count > 0 {
        range(inputs, 0..count, add, &mut out)?;
    }
    Ok(out)
}

/// h's pieces, resident in the backend, and what checks its degree.
pub struct HPieces {
    /// `h = Σ X^{n·i}·h_i`: n coefficients each.
    pub pieces: Vec<Poly>,
    /// The coefficients of h beyond its pieces, folded at `point`
    /// (`Σ_{b ≥ pieces} point^{n(b - pieces)}·h_b`); when the witness satisfies the circuit they
    /// are all zero, so this polynomial vanishes at `point`. `None` when the parts hold
    /// exactly the pieces.
    pub tail: Option<(Poly, Fr)>,
}

/// Returns h's `pieces` pieces (see the module documentation), resident in the backend.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    ctx: &Ctx<'_>,
    pk: &ProvingKey<G1Affine>,
    advice_coeffs: &[Poly],
    instance_coeffs: &[Poly],
    challenges: &[Fr],
    cache: &KeyCache,
    perm: &Committed,
    lookups: &[lookup::Committed],
    theta: Fr,
    beta: Fr,
    gamma: Fr,
    y: Fr,
    pieces: usize,
) -> Result<HPieces, NativeError> {
    let mut last = std::time::Instant::now();
    let mut part = |name: &'static str| {
        let now = std::time::Instant::now();
        tracing::debug!(
            part = name,
            ms = (now - last).as_millis() as u64,
            "quotient"
        );
        last = now;
    };
    let backend = ctx.backend;
    let cs = pk.get_vk().cs();
    let cosets = cache.cosets();
    let ratio = cosets.parts();
    let counts = [
        cs.num_fixed_columns(),
        cs.num_advice_columns(),
        cs.num_instance_columns(),
    ];
    if advice_coeffs.len() != counts[1] || instance_coeffs.len() != counts[2] {
        return Err(NativeError::Internal(format!(
            "{} advice and {} instance columns given, the circuit has {} and {}",
            advice_coeffs.len(),
            instance_coeffs.len(),
            counts[1],
            counts[2]
        )));
    }
    let (layout, n_inputs) = layout_of(pk, perm.products.len());
    // Compile first, so a malformed key fails before any transform.
    let programs = build_programs(
        pk,
        &layout,
        n_inputs,
        ctx.blinding_factors,
        perm.products.len(),
        challenges,
        [theta, beta, gamma],
    )?;
    if tracing::enabled!(tracing::Level::DEBUG) {
        let count = |k: InstrKind| {
            programs
                .iter()
                .flat_map(|p| p.code())
                .filter(|i| i.kind == k)
                .count()
        };
        tracing::debug!(
            programs = programs.len(),
            instructions = programs.iter().map(|p| p.code().len()).sum::<usize>(),
            multiplications = count(InstrKind::Mul),
            folds = count(InstrKind::Fold),
            queries = programs.iter().map(|p| p.queries().len()).sum::<usize>(),
            largest = programs.iter().map(|p| p.code().len()).max().unwrap_or(0),
            slots = programs.iter().map(|p| p.slots()).max().unwrap_or(0),
            "quotient programs"
        );
    }

    let n = ctx.n;
    if pieces == 0 || pieces > ratio {
        return Err(NativeError::Internal(format!(
            "{pieces} pieces over {ratio} parts"
        )));
    }
    let gn_inv = invert(cosets.gn(), "g^n")?;
    let mu_inv = invert(cosets.mu(), "μ")?;
    let ratio_inv = invert(Fr::from(ratio as u64), "the ratio")?;
    // The tail's point comes from the OS, not the proof's rng, whose draws are fixed by halo2's
    // order: a non-zero tail of degree < n vanishes there with probability below n/|Fr|.
    let tail_point = if pieces < ratio {
        let mut os = <rand_chacha::ChaCha20Rng as rand::SeedableRng>::from_rng(rand::rngs::OsRng)
            .map_err(|e| NativeError::Internal(format!("OS randomness: {e}")))?;
        Some(Fr::random(&mut os))
    } else {
        None
    };
    let rho = tail_point.map(|t| t.pow_vartime([n as u64]));
    let mut acc = (0..pieces)
        .map(|_| backend.zeros(n))
        .collect::<Result<Vec<_>, _>>()?;
    let mut tail = match tail_point {
        Some(_) => Some(backend.zeros(n)?),
        None => None,
    };
    part("compile");

    // A part loads a column when a program first needs it and drops it after its last reader
    // (see `schedule`).
    let (queried, last_use) = schedule(&programs, n_inputs);
    // What an input no program of the moment reads is bound to (never read).
    let standin = backend.zeros(n)?;
    let key_columns = cache.part_columns(pk);

    for p in 0..ratio {
        let shift = cosets.shift(p)?;
        let to = |c: &Poly| -> Result<Held<'_, Poly>, NativeError> {
            Ok(Held::Fresh(to_part(backend, &ctx.domain, c, shift)?))
        };
        let load = |i: usize| -> Result<Held<'_, Poly>, NativeError> {
            let l = &layout;
            let fixed_end = l.fixed + l.counts[0];
            let key = |c: usize| cache.part_column(backend, pk, p, c);
            if i < fixed_end {
                key(i - l.fixed)
            } else if i < l.instance {
                to(&advice_coeffs[i - l.advice])
            } else if i < l.sigma {
                to(&instance_coeffs[i - l.instance])
            } else if i < l.products {
                // σ, then l0, l_last, l_active and X: the key's columns after its fixed ones.
                let c = l.counts[0] + (i - l.sigma);
                if c >= key_columns {
                    return Err(NativeError::Internal(format!("key column {c} missing")));
                }
                key(c)
            } else if i < l.lookups {
                to(&perm.products[i - l.products])
            } else {
                let j = (i - l.lookups) / 3;
                let lookup = lookups
                    .get(j)
                    .ok_or_else(|| NativeError::Internal(format!("lookup {j} missing")))?;
                to(match (i - l.lookups) % 3 {
                    0 => &lookup.product,
                    1 => &lookup.permuted_input,
                    _ => &lookup.permuted_table,
                })
            }
        };
        let mut loaded: Vec<Option<Held<'_, Poly>>> = (0..n_inputs).map(|_| None).collect();
        let mut values = backend.zeros(n)?;
        for (k, program) in programs.iter().enumerate() {
            for &i in &queried[k] {
                if loaded[i].is_none() {
                    loaded[i] = Some(load(i)?);
                }
            }
            let inputs: Vec<&Poly> = loaded
                .iter()
                .map(|c| c.as_deref().unwrap_or(&standin))
                .collect();
            backend.eval_program(program, &inputs, &mut values, 1, y)?;
            drop(inputs);
            for &i in &queried[k] {
                if last_use[i] == Some(k) {
                    loaded[i] = None;
                }
            }
        }
        // F_p, then its share of each piece: c_{p,b} = g^{-nb}·μ^{-pb} / (r·(s_p^n - 1)).
        backend.ntt_shifted(&mut values, &ctx.domain, Direction::Inverse, shift)?;
        let d = ratio_inv * invert(shift.pow_vartime([n as u64]) - Fr::ONE, "s_p^n - 1")?;
        let step = gn_inv * mu_inv.pow_vartime([p as u64]);
        let mut c = d;
        let mut tail_c = Fr::ZERO;
        let mut rho_b = Fr::ONE;
        for b in 0..ratio {
            if let Some(piece) = acc.get_mut(b) {
                // b < pieces (acc holds one accumulator per piece)
                add_scaled(backend, piece, &values, c)?;
            } else if let Some(rho) = rho {
                tail_c += rho_b * c;
                rho_b *= rho;
            }
            c *= step;
        }
        if let Some(t) = tail.as_mut() {
            add_scaled(backend, t, &values, tail_c)?;
        }
    }
    part("parts: coset NTTs, gates, permutation and lookups, interpolation");
    Ok(HPieces {
        pieces: acc,
        tail: tail.zip(tail_point),
    })
}

/// Where each column is in the quotient programs' inputs, and how many inputs there are, for a
/// key whose permutation has `n_products` grand products.
fn layout_of(pk: &ProvingKey<G1Affine>, n_products: usize) -> (Layout, usize) {
    let cs = pk.get_vk().cs();
    let counts = [
        cs.num_fixed_columns(),
        cs.num_advice_columns(),
        cs.num_instance_columns(),
    ];
    let fixed = 0;
    let advice = fixed + counts[0];
    let instance = advice + counts[1];
    let sigma = instance + counts[2];
    let l0 = sigma + pk.permutation().polys().len();
    let products = l0 + 4;
    let layout = Layout {
        fixed,
        advice,
        instance,
        sigma,
        l0,
        l_last: l0 + 1,
        l_active: l0 + 2,
        x: l0 + 3,
        products,
        lookups: products + n_products,
        counts,
    };
    let n_inputs = layout.lookups + 3 * cs.lookups().len();
    (layout, n_inputs)
}

/// The quotient's programs, in halo2's order: the gates, the permutation, the lookups.
fn build_programs(
    pk: &ProvingKey<G1Affine>,
    layout: &Layout,
    n_inputs: usize,
    blinding_factors: usize,
    n_products: usize,
    challenges: &[Fr],
    [theta, beta, gamma]: [Fr; 3],
) -> Result<Vec<Program>, NativeError> {
    let cs = pk.get_vk().cs();
    let gate_exprs: Vec<&Expression<Fr>> = cs
        .gates()
        .iter()
        .flat_map(|g| g.polynomials().iter())
        .collect();
    let mut programs = compile(n_inputs, gate_exprs.len(), &|b, i| {
        expr(b, gate_exprs[i], layout, challenges)
    })?;
    if n_products > 0 {
        programs.extend(permutation_programs(
            pk,
            blinding_factors,
            layout,
            n_inputs,
            n_products,
            beta,
            gamma,
        )?);
    }
    for (j, argument) in cs.lookups().iter().enumerate() {
        programs.extend(lookup_programs(
            argument.input_expressions(),
            argument.table_expressions(),
            layout,
            n_inputs,
            layout.lookups + 3 * j,
            challenges,
            theta,
            beta,
            gamma,
        )?);
    }
    Ok(programs)
}

/// Which inputs each program reads, and the last program reading each input: a part holds a
/// column from the first program that reads it to the last, so it holds the columns of a few
/// programs at a time rather than all of them.
fn schedule(programs: &[Program], n_inputs: usize) -> (Vec<Vec<usize>>, Vec<Option<usize>>) {
    let queried: Vec<Vec<usize>> = programs
        .iter()
        .map(|program| {
            let mut q: Vec<usize> = program.queries().iter().map(|(i, _)| *i as usize).collect();
            q.sort_unstable();
            q.dedup();
            q
        })
        .collect();
    let mut last_use = vec![None; n_inputs];
    for (k, q) in queried.iter().enumerate() {
        for &i in q {
            if i < n_inputs {
                last_use[i] = Some(k);
            }
        }
    }
    (queried, last_use)
}

/// The most columns one part of the quotient holds at once for `pk` (see [`schedule`]): what
/// the device-memory estimate counts for this step.
pub fn peak_part_columns(pk: &ProvingKey<G1Affine>) -> Result<usize, NativeError> {
    let cs = pk.get_vk().cs();
    let sigmas = pk.permutation().polys().len();
    let n_products = if sigmas == 0 {
        0
    } else {
        sigmas.div_ceil(chunk_len(pk)?)
    };
    let (layout, n_inputs) = layout_of(pk, n_products);
    // The challenges' values do not change which columns a program reads.
    let challenges = vec![Fr::ONE; cs.num_challenges()];
    let programs = build_programs(
        pk,
        &layout,
        n_inputs,
        cs.blinding_factors(),
        n_products,
        &challenges,
        [Fr::ONE; 3],
    )?;
    let (queried, last_use) = schedule(&programs, n_inputs);
    let mut live = vec![false; n_inputs];
    let mut peak = 0;
    for (k, q) in queried.iter().enumerate() {
        for &i in q {
            live[i] = true;
        }
        peak = peak.max(live.iter().filter(|l| **l).count());
        for &i in q {
            if last_use[i] == Some(k) {
                live[i] = false;
            }
        }
    }
    Ok(peak)
}

fn invert(v: Fr, what: &str) -> Result<Fr, NativeError> {
    Option::<Fr>::from(v.invert())
        .ok_or_else(|| NativeError::Internal(format!("{what} is zero on a part")))
}

/// `acc += c·v` in the backend.
fn add_scaled(
    backend: &dyn gpu::ComputeBackend,
    acc: &mut Poly,
    v: &Poly,
    c: Fr,
) -> Result<(), NativeError> {
    let mut b = ProgramBuilder::new(1);
    let q = b.query(0, 0)?;
    let k = b.constant(c);
    let out = b.mul(q, k);
    b.output(out);
    let program = b.build()?;
    backend.eval_program(&program, &[v], acc, 1, Fr::ONE)?;
    Ok(())
}

/// The permutation argument's terms, in halo2's order.
fn permutation_programs(
    pk: &ProvingKey<G1Affine>,
    blinding_factors: usize,
    layout: &Layout,
    n_inputs: usize,
    n_products: usize,
    beta: Fr,
    gamma: Fr,
) -> Result<Vec<Program>, NativeError> {
    let cs = pk.get_vk().cs();
    let columns = cs.permutation().get_columns();
    let chunk = chunk_len(pk)?;
    if columns.len().div_ceil(chunk) != n_products {
        return Err(NativeError::Internal(format!(
            "{} permutation columns in chunks of {chunk} but {n_products} products",
            columns.len()
        )));
    }
    let last_rot = -((blinding_factors + 1) as i32);
    let column_inputs: Vec<usize> = columns
        .iter()
        .map(|c| layout.column(*c.column_type(), c.index()))
        .collect::<Result<_, _>>()?;
    // Output order: first product starts at 1, last product is 0 or 1, the products chain, then
    // one term per chunk.
    let head = 2 + (n_products - 1);
    let term = |b: &mut ProgramBuilder, i: usize| -> Result<Value, NativeError> {
        let one = b.constant(Fr::ONE);
        let l0 = b.query(layout.l0, 0)?;
        let l_last = b.query(layout.l_last, 0)?;
        let l_active = b.query(layout.l_active, 0)?;
        let product =
            |b: &mut ProgramBuilder, j: usize, rot: i32| b.query(layout.products + j, rot);
        if i == 0 {
            let z = product(b, 0, 0)?;
            let d = b.sub(one, z);
            return Ok(b.mul(d, l0));
        }
        if i == 1 {
            let z = product(b, n_products - 1, 0)?;
            let sq = b.mul(z, z);
            let d = b.sub(sq, z);
            return Ok(b.mul(d, l_last));
        }
        if i < 2 + (n_products - 1) {
            let s = i - 1;
            let z = product(b, s, 0)?;
            let prev = product(b, s - 1, last_rot)?;
            let d = b.sub(z, prev);
            return Ok(b.mul(d, l0));
        }
        let j = i - 1 - n_products;
        let cols = &column_inputs[j * chunk..((j + 1) * chunk).min(column_inputs.len())];
        let beta_c = b.constant(beta);
        let gamma_c = b.constant(gamma);
        let x = b.query(layout.x, 0)?;
        let mut left = product(b, j, 1)?;
        let mut right = product(b, j, 0)?;
        for (k, &col) in cols.iter().enumerate() {
            let v = b.query(col, 0)?;
            let sigma = b.query(layout.sigma + j * chunk + k, 0)?;
            let bs = b.mul(beta_c, sigma);
            let t = b.add(v, bs);
            let t = b.add(t, gamma_c);
            left = b.mul(left, t);
            // δ^c·β·X for the c-th permutation column overall.
            let delta = b.constant(beta * Fr::DELTA.pow_vartime([(j * chunk + k) as u64]));
            let dx = b.mul(delta, x);
            let t = b.add(v, dx);
            let t = b.add(t, gamma_c);
            right = b.mul(right, t);
        }
        let d = b.sub(left, right);
        Ok(b.mul(d, l_active))
    };
    // The first, last and chaining terms together, then one program per chunk, so that a part
    // needs only one chunk's columns at a time (see `evaluate`).
    let mut programs = compile(n_inputs, head, &|b, i| term(b, i))?;
    for j in 0..n_products {
        programs.extend(compile(n_inputs, 1, &|b, _| term(b, head + j))?);
    }
    Ok(programs)
}

/// One lookup argument's five terms, in halo2's order; `base` is its z column (a, s follow).
#[allow(clippy::too_many_arguments)]
fn lookup_programs(
    input_exprs: &[Expression<Fr>],
    table_exprs: &[Expression<Fr>],
    layout: &Layout,
    n_inputs: usize,
    base: usize,
    challenges: &[Fr],
    theta: Fr,
    beta: Fr,
    gamma: Fr,
) -> Result<Vec<Program>, NativeError> {
    let compress = |b: &mut ProgramBuilder, exprs: &[Expression<Fr>]| {
        // Horner from the first expression (an empty list compresses to 0).
        let theta = b.constant(theta);
        let mut acc: Option<Value> = None;
        for e in exprs {
            let v = expr(b, e, layout, challenges)?;
            acc = Some(match acc {
                None => v,
                Some(a) => {
                    let scaled = b.mul(a, theta);
                    b.add(scaled, v)
                }
            });
        }
        Ok::<_, NativeError>(acc.unwrap_or_else(|| b.constant(Fr::ZERO)))
    };
    compile(n_inputs, 5, &|b, i| {
        let one = b.constant(Fr::ONE);
        let l0 = b.query(layout.l0, 0)?;
        let l_last = b.query(layout.l_last, 0)?;
        let l_active = b.query(layout.l_active, 0)?;
        let z = b.query(base, 0)?;
        let a = b.query(base + 1, 0)?;
        let s = b.query(base + 2, 0)?;
        Ok(match i {
            0 => {
                let d = b.sub(one, z);
                b.mul(d, l0)
            }
            1 => {
                let sq = b.mul(z, z);
                let d = b.sub(sq, z);
                b.mul(d, l_last)
            }
            2 => {
                let beta = b.constant(beta);
                let gamma = b.constant(gamma);
                let z_next = b.query(base, 1)?;
                let ab = b.add(a, beta);
                let sg = b.add(s, gamma);
                let left = b.mul(z_next, ab);
                let left = b.mul(left, sg);
                let input = compress(b, input_exprs)?;
                let table = compress(b, table_exprs)?;
                let ib = b.add(input, beta);
                let tg = b.add(table, gamma);
                let right = b.mul(z, ib);
                let right = b.mul(right, tg);
                let d = b.sub(left, right);
                b.mul(d, l_active)
            }
            3 => {
                let d = b.sub(a, s);
                b.mul(d, l0)
            }
            _ => {
                let d = b.sub(a, s);
                let a_prev = b.query(base + 1, -1)?;
                let e = b.sub(a, a_prev);
                let m = b.mul(d, e);
                b.mul(m, l_active)
            }
        })
    })
}

/// Refuses a witness that violates a gate, before anything expensive: every gate polynomial is
/// evaluated on every row of the domain (Lagrange values; the blinding rows included, where the
/// selectors are zero) and folded with the random `factor`, so the fold is non-zero wherever a
/// gate fails (except with negligible probability). `cols` are the columns on the circuit's
/// domain (ratio 1) and must have passed [`Columns::check`]. The first failing row is reported with the
/// gate and constraint names.
pub fn check_gates(
    pk: &ProvingKey<G1Affine>,
    cols: &Columns<'_>,
    challenges: &[Fr],
    factor: Fr,
) -> Result<(), NativeError> {
    let cs = pk.get_vk().cs();
    let n = cols.size;
    let counts = [
        cs.num_fixed_columns(),
        cs.num_advice_columns(),
        cs.num_instance_columns(),
    ];
    let exprs: Vec<&Expression<Fr>> = cs
        .gates()
        .iter()
        .flat_map(|g| g.polynomials().iter())
        .collect();
    let program = HostProgram::compile(&exprs, challenges, counts)?;
    let mut folded = gpu::host_zeros(n);
    folded.par_chunks_mut(CHUNK).enumerate().for_each_init(
        || program.scratch(),
        |scratch, (ci, out)| program.horner(cols, scratch, ci * CHUNK, out, factor),
    );
    let Some(row) = folded.iter().position(|v| !bool::from(v.is_zero())) else {
        return Ok(());
    };
    // Name the failing constraint: evaluate each one at that row.
    let at = |set: &[&[Fr]], index: usize, rot: i32| {
        set[index][(row as i64 + i64::from(rot)).rem_euclid(n as i64) as usize]
    };
    for gate in cs.gates() {
        for (i, poly) in gate.polynomials().iter().enumerate() {
            let v = poly.evaluate(
                &|c| c,
                &|_| Fr::ZERO,
                &|q| at(&cols.fixed, q.column_index(), q.rotation().0),
                &|q| at(&cols.advice, q.column_index(), q.rotation().0),
                &|q| at(&cols.instance, q.column_index(), q.rotation().0),
                &|c| challenges.get(c.index()).copied().unwrap_or(Fr::ZERO),
                &|a| -a,
                &|a, b| a + b,
                &|a, b| a * b,
                &|a, s| a * s,
            );
            if !bool::from(v.is_zero()) {
                return Err(NativeError::Unsatisfied(format!(
                    "gate {:?} (constraint {i} {:?}) fails at row {row}",
                    gate.name(),
                    gate.constraint_name(i)
                )));
            }
        }
    }
    Err(NativeError::Unsatisfied(format!(
        "a gate fails at row {row}"
    )))
}
