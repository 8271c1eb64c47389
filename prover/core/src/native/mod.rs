//! The native halo2 prover: our own `create_proof` over halo2-axiom 0.5.3 proving keys (KZG over
//! BN254, SHPLONK multi-open), with every MSM and NTT going through a [`gpu::ComputeBackend`].
//!
//! It writes the transcript in exactly halo2-axiom's order, so halo2-axiom's `verify_proof`
//! accepts its proofs, and it draws *all* randomness (blinding rows, commitment blinds, the
//! vanishing argument's random polynomial) from the rng passed in, in a fixed order, so a fixed
//! seed gives a byte-identical proof.
//!
//! Steps, one module each:
//! - [`witness`]: runs the circuit's floor planner against our own `Assignment`, commits the
//!   advice columns phase by phase and squeezes the challenges;
//! - [`permutation`]: the permutation (copy-constraint) grand products;
//! - [`vanishing`]: the random polynomial, the h pieces and their evaluation;
//! - [`quotient`]: the numerator of h, part by part over [`cosets`] (gates, permutation, lookups);
//! - [`open`]: SHPLONK multi-open;
//! - [`commit`]: the backend helpers (commitments, NTTs, polynomial evaluation).
//!
//! - [`lookup`]: lookup arguments (permuted columns and grand products).
//!
//! Not supported: shuffle arguments; instance queries (the SHPLONK prover never opens
//! instances, exactly as halo2-axiom's `ProverSHPLONK`); several circuits in one proof.

pub mod commit;
pub mod coset_file;
pub mod cosets;
pub mod keycache;
pub mod lookup;
pub mod memory;
pub mod open;
pub mod permutation;
pub mod program;
pub mod quotient;
pub mod vanishing;
pub mod witness;

use ff::Field;
use gpu::{BackendError, Bases, ComputeBackend, Domain};
use halo2_proofs::plonk::{Circuit, ProvingKey};
use halo2_proofs::poly::commitment::{Params, ParamsProver};
use halo2_proofs::poly::Rotation;
use halo2_proofs::transcript::{EncodedChallenge, TranscriptWrite};
use halo2curves::bn256::{Fr, G1Affine};
use rand_core::RngCore;

use self::commit::{eval_many, Values};
pub use self::keycache::{CosetFile, KeyCache};
use self::open::Query;

/// Errors of the native engine.
#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    #[error("compute backend: {0}")]
    Backend(#[from] BackendError),
    /// A backend operation failed during a proof; `after` is the last step that finished.
    #[error("compute backend, in the step after {after:?}: {source}")]
    Device {
        after: &'static str,
        #[source]
        source: BackendError,
    },
    #[error("transcript: {0}")]
    Transcript(#[from] std::io::Error),
    #[error("circuit synthesis failed: {0}")]
    Synthesis(String),
    #[error("invalid instances: {0}")]
    InvalidInstances(String),
    #[error("not supported by the native engine yet: {0}")]
    Unsupported(String),
    #[error("the SRS bases hold {bases} points but the circuit needs {needed}")]
    BasesTooShort { bases: usize, needed: usize },
    #[error("the SRS's Lagrange bases hold {bases} points, the circuit's domain {n}")]
    LagrangeBases { bases: usize, n: usize },
    #[error("SRS: {0}")]
    Params(#[from] params::ParamsError),
    #[error("the witness does not satisfy the circuit: {0}")]
    Unsatisfied(String),
    /// The finished proof fails verification against the key it was made with.
    #[error("the proof does not verify against its own key ({0}): the witness breaks a copy or lookup constraint, or the compute backend computed a wrong value")]
    NotVerified(String),
    #[error("coset cache file: {0}")]
    CosetFile(#[from] coset_file::CosetFileError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Everything the steps share: the backend, the SRS bases, the two domains.
pub struct Ctx<'a> {
    pub backend: &'a dyn ComputeBackend,
    /// The SRS points `g` (monomial basis), at least `n` of them.
    pub bases: &'a Bases,
    /// The SRS points `g_lagrange` (Lagrange basis of the domain), `n` of them.
    pub lagrange: &'a Bases,
    /// The domain of size n.
    pub domain: Domain,
    /// n.
    pub n: usize,
    /// Number of blinding rows (rows n - blinding_factors .. n are random).
    pub blinding_factors: usize,
    /// halo2's ω.
    pub omega: Fr,
    pub omega_inv: Fr,
}

impl Ctx<'_> {
    /// `x · ω^rot`.
    pub fn rotate(&self, x: Fr, rot: Rotation) -> Fr {
        if rot.0 >= 0 {
            x * self.omega.pow_vartime([rot.0 as u64])
        } else {
            x * self
                .omega_inv
                .pow_vartime([u64::from(rot.0.unsigned_abs())])
        }
    }

    /// First row that is not usable (rows from here on hold the last-row marker and blinding).
    pub fn unusable_start(&self) -> usize {
        self.n - (self.blinding_factors + 1)
    }
}

/// This process's resident memory in MiB (Linux; 0 elsewhere), for the step log.
fn resident_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb >> 10)
}

/// The SRS as backend [`Bases`], in both forms the engine commits with.
pub struct SrsBases {
    /// `g`: commitments to coefficients (the quotient's pieces, the openings, random
    /// polynomials).
    pub g: Bases,
    /// `g_lagrange`: commitments to values on the domain (advice columns, the lookups' permuted
    /// columns, the grand products), as halo2 commits them. The same group elements as
    /// committing their coefficients to `g`, but cheaper for a witness: its values are mostly
    /// small, and the MSM skips a scalar's zero windows, which a column's coefficients (full
    /// width after the inverse NTT) do not have.
    pub lagrange: Bases,
}

/// The SRS points as backend [`SrsBases`]. Build them once per SRS and reuse them: the ids let
/// a device backend upload the points once.
pub fn srs_bases(params: &params::Srs) -> Result<SrsBases, NativeError> {
    Ok(SrsBases {
        g: Bases::new(params.get_g().to_vec()),
        lagrange: Bases::new(params::lagrange_points(params)?),
    })
}

impl NativeError {
    /// Whether the compute backend failed (a device fault, out of memory, a launch failure, or a
    /// finished proof that does not verify, which is what a device computing a wrong value gives),
    /// as opposed to the witness, the key or the transcript: the same proof may succeed on
    /// another backend.
    pub fn is_backend_failure(&self) -> bool {
        matches!(
            self,
            NativeError::Backend(_) | NativeError::Device { .. } | NativeError::NotVerified(_)
        )
    }
}

/// Creates a proof of `circuit` with public inputs `instances` (one slice per instance column)
/// and writes it to `transcript`, in exactly the order of halo2-axiom 0.5.3's `create_proof` with
/// `ProverSHPLONK`. `bases` must be [`srs_bases`] of the `params` the key was made with;
/// `cache`, when given, must be [`KeyCache::new`] of `pk` (without one, its values are computed
/// in this proof). A backend failure is returned as [`NativeError::Device`], naming the last
/// step that finished.
#[allow(clippy::too_many_arguments)]
pub fn create_proof<C, E, T>(
    backend: &dyn ComputeBackend,
    params: &params::Srs,
    bases: &SrsBases,
    pk: &ProvingKey<G1Affine>,
    cache: Option<&KeyCache>,
    circuit: &C,
    instances: &[&[Fr]],
    rng: &mut dyn RngCore,
    transcript: &mut T,
) -> Result<(), NativeError>
where
    C: Circuit<Fr>,
    E: EncodedChallenge<G1Affine>,
    T: TranscriptWrite<G1Affine, E>,
{
    let done = std::cell::Cell::new("start");
    create_proof_steps(
        backend, params, bases, pk, cache, circuit, instances, rng, transcript, &done,
    )
    .map_err(|e| match e {
        NativeError::Backend(source) => NativeError::Device {
            after: done.get(),
            source,
        },
        other => other,
    })
}

#[allow(clippy::too_many_arguments)]
fn create_proof_steps<C, E, T>(
    backend: &dyn ComputeBackend,
    params: &params::Srs,
    bases: &SrsBases,
    pk: &ProvingKey<G1Affine>,
    cache: Option<&KeyCache>,
    circuit: &C,
    instances: &[&[Fr]],
    rng: &mut dyn RngCore,
    transcript: &mut T,
    done: &std::cell::Cell<&'static str>,
) -> Result<(), NativeError>
where
    C: Circuit<Fr>,
    E: EncodedChallenge<G1Affine>,
    T: TranscriptWrite<G1Affine, E>,
{
    let vk = pk.get_vk();
    let cs = vk.cs();
    let hdomain = vk.get_domain();
    let n = hdomain.n as usize;
    if params.n() as usize != n {
        return Err(NativeError::Internal(format!(
            "params are for n = {} but the key for n = {n}",
            params.n()
        )));
    }
    if bases.g.len() < n {
        return Err(NativeError::BasesTooShort {
            bases: bases.g.len(),
            needed: n,
        });
    }
    if bases.lagrange.len() != n {
        return Err(NativeError::LagrangeBases {
            bases: bases.lagrange.len(),
            n,
        });
    }
    if instances.len() != cs.num_instance_columns() {
        return Err(NativeError::InvalidInstances(format!(
            "{} instance columns given, the circuit has {}",
            instances.len(),
            cs.num_instance_columns()
        )));
    }
    let ctx = Ctx {
        backend,
        bases: &bases.g,
        lagrange: &bases.lagrange,
        domain: Domain::new(hdomain.k)?,
        n,
        blinding_factors: cs.blinding_factors(),
        omega: hdomain.get_omega(),
        omega_inv: hdomain.get_omega_inv(),
    };
    for (i, col) in instances.iter().enumerate() {
        if col.len() > ctx.unusable_start() {
            return Err(NativeError::InvalidInstances(format!(
                "instance column {i} has {} values, at most {} fit",
                col.len(),
                ctx.unusable_start()
            )));
        }
    }

    let started = std::time::Instant::now();
    let mut last = started;
    let mut step = |name: &'static str| {
        done.set(name);
        let now = std::time::Instant::now();
        tracing::debug!(
            step = name,
            ms = (now - last).as_millis() as u64,
            rss_mib = resident_mib(),
            "native prover step"
        );
        last = now;
    };

    // The verifying key goes first.
    vk.hash_into(transcript)?;

    // The key's columns, resident in the backend (built here when the caller keeps no cache).
    let built;
    let cache = match cache {
        Some(c) => {
            c.check(pk, backend)?;
            c
        }
        None => {
            built = KeyCache::new(backend, pk)?;
            &built
        }
    };

    // Instance columns: Lagrange values (zero padded; in the backend for the grand products)
    // and coefficients (resident, read by the quotient only: instances are never opened).
    let mut instance_coeffs = Vec::with_capacity(instances.len());
    let mut instance_values = Vec::with_capacity(instances.len());
    for col in instances {
        let mut values = gpu::host_zeros(n);
        values[..col.len()].copy_from_slice(col);
        let values = Values::new(&ctx, values)?;
        instance_coeffs.push(commit::coeffs_of(&ctx, values.poly())?);
        instance_values.push(values);
    }
    step("key cache and instances");

    // Phases: synthesis, advice commitments, challenges.
    let mut witness = witness::synthesize(&ctx, pk, circuit, instances, rng, transcript)?;
    step("witness and advice commitments");

    // theta is squeezed even without lookups (the verifier does the same).
    let theta = *transcript.squeeze_challenge_scalar::<()>();
    // The circuit's columns on its own domain (no copies): read by the gate check and lookups.
    let domain_cols = program::Columns {
        fixed: pk.fixed_values().iter().map(|p| &p[..]).collect(),
        advice: witness.advice_values.iter().map(Values::host).collect(),
        instance: instance_values.iter().map(Values::host).collect(),
        size: n,
        ratio: 1,
    };
    domain_cols.check()?;
    quotient::check_gates(pk, &domain_cols, &witness.challenges, theta)?;
    step("gate check");
    // The same columns resident in the backend, in the layout of the quotient's programs.
    let advice_resident: Vec<&gpu::Poly> = witness.advice_values.iter().map(Values::poly).collect();
    let instance_resident: Vec<&gpu::Poly> = instance_values.iter().map(Values::poly).collect();
    let column_layout = quotient::Layout::columns([
        cs.num_fixed_columns(),
        cs.num_advice_columns(),
        cs.num_instance_columns(),
    ]);
    // The key's columns on the domain (made now on the CPU backend, freed before the quotient).
    let key_values = cache.domain_values(backend, pk)?;
    // The lookups' compression reads them in the backend on a device; on the CPU it reads the
    // host columns (`domain_cols`) and needs no resident copies.
    let column_inputs: Vec<&gpu::Poly> = match key_values.all_fixed() {
        Some(mut fixed) => {
            fixed.extend(advice_resident.iter().copied());
            fixed.extend(instance_resident.iter().copied());
            fixed
        }
        None => Vec::new(),
    };
    let mut permuted = Vec::with_capacity(cs.lookups().len());
    for argument in cs.lookups() {
        permuted.push(lookup::commit_permuted(
            &ctx,
            argument.input_expressions(),
            argument.table_expressions(),
            theta,
            &domain_cols,
            &column_layout,
            &column_inputs,
            &witness.challenges,
            rng,
            transcript,
        )?);
    }
    step("lookup permuted columns");
    let beta = *transcript.squeeze_challenge_scalar::<()>();
    let gamma = *transcript.squeeze_challenge_scalar::<()>();

    let perm = permutation::commit(
        &ctx,
        pk,
        &key_values,
        &advice_resident,
        &instance_resident,
        beta,
        gamma,
        rng,
        transcript,
    )?;

    step("permutation products");
    let lookups = permuted
        .into_iter()
        .map(|p| lookup::commit_product(&ctx, p, beta, gamma, rng, transcript))
        .collect::<Result<Vec<_>, _>>()?;

    step("lookup products");
    // The columns' values are done with (the quotient and the openings use coefficients).
    drop(column_inputs);
    drop(key_values);
    drop(advice_resident);
    drop(instance_resident);
    drop(instance_values);
    witness.advice_values = Vec::new();
    let random = vanishing::commit_random(&ctx, rng, transcript)?;
    let y = *transcript.squeeze_challenge_scalar::<()>();
    step("random polynomial");

    let h = quotient::evaluate(
        &ctx,
        pk,
        &witness.advice_coeffs,
        &instance_coeffs,
        &witness.challenges,
        cache,
        &perm,
        &lookups,
        theta,
        beta,
        gamma,
        y,
        hdomain.quotient_poly_degree as usize,
    )?;
    step("quotient, part by part");
    let pieces = vanishing::construct(&ctx, h, rng, transcript)?;

    step("h pieces");
    let x = *transcript.squeeze_challenge_scalar::<()>();
    let key_coeffs = cache.domain_coeffs(backend, pk)?;
    let xn = x.pow_vartime([n as u64]);

    // Evaluations, in halo2's order: advice, fixed, random, σ, permutation products, lookups;
    // all in one backend call (on a device one pass and one read back: only the values come
    // back).
    let h_poly = vanishing::combine(&ctx, &pieces, xn)?;
    drop(pieces);
    let mut requests: Vec<(&gpu::Poly, Vec<Fr>)> = Vec::new();
    for (column, rot) in cs.advice_queries() {
        requests.push((
            &witness.advice_coeffs[column.index()],
            vec![ctx.rotate(x, *rot)],
        ));
    }
    for (column, rot) in cs.fixed_queries() {
        requests.push((&key_coeffs.fixed[column.index()], vec![ctx.rotate(x, *rot)]));
    }
    requests.push((&random, vec![x]));
    for sigma in &key_coeffs.sigmas {
        requests.push((sigma, vec![x]));
    }
    requests.extend(permutation::evaluations(&ctx, &perm, x));
    for l in &lookups {
        requests.extend(lookup::evaluations(&ctx, l, x));
    }
    let values = eval_many(&ctx, &requests)?;
    for value in &values {
        transcript.write_scalar(*value)?;
    }
    // SHPLONK opens the same polynomials at the same points: it takes these values instead of
    // evaluating them again.
    let evaluated: Vec<(&gpu::Poly, Fr, Fr)> = requests
        .iter()
        .flat_map(|(poly, points)| points.iter().map(move |x| (*poly, *x)))
        .zip(values)
        .map(|((poly, x), v)| (poly, x, v))
        .collect();
    drop(requests);

    // Queries, in halo2's order (their order decides SHPLONK's grouping and challenge powers).
    let mut polys: Vec<&gpu::Poly> = Vec::new();
    let mut queries: Vec<Query> = Vec::new();
    let advice_base = polys.len();
    polys.extend(witness.advice_coeffs.iter());
    for (column, rot) in cs.advice_queries() {
        queries.push(Query {
            poly: advice_base + column.index(),
            point: ctx.rotate(x, *rot),
        });
    }
    let perm_base = polys.len();
    polys.extend(perm.products.iter());
    let x_next = ctx.rotate(x, Rotation::next());
    let x_last = ctx.rotate(x, Rotation(-((ctx.blinding_factors + 1) as i32)));
    for i in 0..perm.products.len() {
        queries.push(Query {
            poly: perm_base + i,
            point: x,
        });
        queries.push(Query {
            poly: perm_base + i,
            point: x_next,
        });
    }
    for i in (0..perm.products.len()).rev().skip(1) {
        queries.push(Query {
            poly: perm_base + i,
            point: x_last,
        });
    }
    let x_prev = ctx.rotate(x, Rotation::prev());
    for l in &lookups {
        let base = polys.len();
        polys.push(&l.product);
        polys.push(&l.permuted_input);
        polys.push(&l.permuted_table);
        queries.push(Query {
            poly: base,
            point: x,
        });
        queries.push(Query {
            poly: base + 1,
            point: x,
        });
        queries.push(Query {
            poly: base + 2,
            point: x,
        });
        queries.push(Query {
            poly: base + 1,
            point: x_prev,
        });
        queries.push(Query {
            poly: base,
            point: x_next,
        });
    }
    let fixed_base = polys.len();
    polys.extend(key_coeffs.fixed.iter());
    for (column, rot) in cs.fixed_queries() {
        queries.push(Query {
            poly: fixed_base + column.index(),
            point: ctx.rotate(x, *rot),
        });
    }
    let sigma_base = polys.len();
    polys.extend(key_coeffs.sigmas.iter());
    for i in 0..key_coeffs.sigmas.len() {
        queries.push(Query {
            poly: sigma_base + i,
            point: x,
        });
    }
    let h_index = polys.len();
    polys.push(&h_poly);
    queries.push(Query {
        poly: h_index,
        point: x,
    });
    polys.push(&random);
    queries.push(Query {
        poly: h_index + 1,
        point: x,
    });

    step("evaluations");
    open::shplonk(&ctx, &polys, &queries, &evaluated, transcript)?;
    step("SHPLONK");
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "native proof done"
    );
    Ok(())
}
