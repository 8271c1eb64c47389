//! The native engine against halo2-axiom's verifier: a halo2-base circuit built with GateChip only
//! (gates, copy constraints, one instance column; no lookups), proved on the CPU backend.

use std::io::Cursor;

use gpu::CpuBackend;
use halo2_base::gates::circuit::builder::BaseCircuitBuilder;
use halo2_base::gates::circuit::{BaseCircuitParams, CircuitBuilderStage};
use halo2_base::gates::flex_gate::MultiPhaseThreadBreakPoints;
use halo2_base::gates::{GateChip, GateInstructions};
use halo2_base::QuantumCell::Constant;
use halo2_proofs::plonk::{keygen_pk, keygen_vk, verify_proof, ProvingKey};
use halo2_proofs::poly::commitment::ParamsProver;
use halo2_proofs::poly::kzg::commitment::{KZGCommitmentScheme, ParamsKZG};
use halo2_proofs::poly::kzg::multiopen::VerifierSHPLONK;
use halo2_proofs::poly::kzg::strategy::SingleStrategy;
use halo2_proofs::transcript::{
    Blake2bRead, Blake2bWrite, Challenge255, TranscriptReadBuffer, TranscriptWriterBuffer,
};
use halo2curves::bn256::{Bn256, Fr, G1Affine};
use prover_core::native;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const K: usize = 9;

/// The CUDA backend when one can be opened (the emulated device in CI); `None` otherwise, unless
/// `PROVER_REQUIRE_GPU=1`, which makes a missing device a failure.
fn cuda() -> Option<std::sync::Arc<dyn gpu::ComputeBackend>> {
    let required = std::env::var("PROVER_REQUIRE_GPU").is_ok_and(|v| v == "1");
    match gpu::select(gpu::BackendChoice::Cuda) {
        Ok(selection) => Some(selection.backend),
        Err(e) => {
            assert!(
                !required,
                "PROVER_REQUIRE_GPU=1 but CUDA is not usable: {e}"
            );
            eprintln!("no usable CUDA device ({e}); the CUDA half of this test is SKIPPED");
            None
        }
    }
}

/// out = Σ_i (x_i · x_{i+1} + i), plus a few more gate calls; instance = [x_0, out].
fn build(stage: CircuitBuilderStage, xs: &[u64]) -> BaseCircuitBuilder<Fr> {
    let mut builder = BaseCircuitBuilder::from_stage(stage)
        .use_k(K)
        .use_instance_columns(1);
    fill(&mut builder, xs);
    builder
}

fn fill(builder: &mut BaseCircuitBuilder<Fr>, xs: &[u64]) {
    let gate = GateChip::<Fr>::default();
    let ctx = builder.main(0);
    let cells: Vec<_> = xs.iter().map(|x| ctx.load_witness(Fr::from(*x))).collect();
    let mut acc = ctx.load_zero();
    for (i, w) in cells.windows(2).enumerate() {
        let p = gate.mul(ctx, w[0], w[1]);
        let p = gate.add(ctx, p, Constant(Fr::from(i as u64)));
        acc = gate.add(ctx, acc, p);
    }
    let s = gate.sum(ctx, cells.clone());
    let acc = gate.mul_add(ctx, acc, Constant(Fr::from(3)), s);
    let first = cells[0];
    builder.assigned_instances[0].push(first);
    builder.assigned_instances[0].push(acc);
}

struct Setup {
    params: ParamsKZG<Bn256>,
    pk: ProvingKey<G1Affine>,
    config: BaseCircuitParams,
    break_points: MultiPhaseThreadBreakPoints,
}

fn setup() -> Setup {
    let params = ParamsKZG::<Bn256>::setup(K as u32, ChaCha20Rng::seed_from_u64(7));
    let mut builder = build(CircuitBuilderStage::Keygen, &[1, 2, 3, 4, 5, 6, 7, 8]);
    let config = builder.calculate_params(Some(9));
    let vk = keygen_vk(&params, &builder).expect("keygen_vk");
    let pk = keygen_pk(&params, vk, &builder).expect("keygen_pk");
    let break_points = builder.break_points();
    Setup {
        params,
        pk,
        config,
        break_points,
    }
}

fn prover_circuit(s: &Setup, xs: &[u64]) -> (BaseCircuitBuilder<Fr>, Vec<Fr>) {
    let mut builder = BaseCircuitBuilder::prover(s.config.clone(), s.break_points.clone());
    fill(&mut builder, xs);
    let instances: Vec<Fr> = builder.assigned_instances[0]
        .iter()
        .map(|c| *c.value())
        .collect();
    (builder, instances)
}

fn prove_native(s: &Setup, bases: &native::SrsBases, xs: &[u64], seed: u64) -> (Vec<u8>, Vec<Fr>) {
    prove_native_with(s, bases, xs, seed, None)
}

fn prove_native_with(
    s: &Setup,
    bases: &native::SrsBases,
    xs: &[u64],
    seed: u64,
    cache: Option<&native::KeyCache>,
) -> (Vec<u8>, Vec<Fr>) {
    let (circuit, instances) = prover_circuit(s, xs);
    let mut transcript = Blake2bWrite::<_, G1Affine, Challenge255<_>>::init(vec![]);
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    native::create_proof(
        &CpuBackend::new(),
        &s.params,
        bases,
        &s.pk,
        cache,
        &circuit,
        &[&instances],
        &mut rng,
        &mut transcript,
    )
    .expect("native create_proof");
    (transcript.finalize(), instances)
}

fn verify(s: &Setup, instances: &[Fr], proof: &[u8]) -> bool {
    let mut transcript = Blake2bRead::<_, G1Affine, Challenge255<_>>::init(Cursor::new(proof));
    let strategy = SingleStrategy::new(s.params.verifier_params());
    verify_proof::<KZGCommitmentScheme<Bn256>, VerifierSHPLONK<'_, Bn256>, _, _, _>(
        s.params.verifier_params(),
        s.pk.get_vk(),
        strategy,
        &[&[instances]],
        &mut transcript,
    )
    .is_ok()
}

/// A native proof of a plain halo2 circuit (no halo2-base builder) on `backend`, with the Blake2b
/// transcript and the rng seeded with `seed`.
fn prove_plain<C: halo2_proofs::plonk::Circuit<Fr>>(
    backend: &dyn gpu::ComputeBackend,
    params: &ParamsKZG<Bn256>,
    bases: &native::SrsBases,
    pk: &ProvingKey<G1Affine>,
    circuit: &C,
    instances: &[Fr],
    seed: u64,
) -> Result<Vec<u8>, native::NativeError> {
    let mut transcript = Blake2bWrite::<_, G1Affine, Challenge255<_>>::init(vec![]);
    native::create_proof(
        backend,
        params,
        bases,
        pk,
        None,
        circuit,
        &[instances],
        &mut ChaCha20Rng::seed_from_u64(seed),
        &mut transcript,
    )
    .map(|()| transcript.finalize())
}

/// What [`verify`] needs of a plain halo2 circuit's keys.
fn plain_setup(params: &ParamsKZG<Bn256>, pk: &ProvingKey<G1Affine>) -> Setup {
    Setup {
        params: params.clone(),
        pk: pk.clone(),
        config: BaseCircuitParams::default(),
        break_points: Default::default(),
    }
}

#[test]
fn native_gate_circuit_verifies_rejects_tampering_and_is_deterministic() {
    let s = setup();
    let bases = native::srs_bases(&s.params).unwrap();
    let xs = [3, 1, 4, 1, 5, 9, 2, 6];

    let (proof, instances) = prove_native(&s, &bases, &xs, 42);
    assert!(verify(&s, &instances, &proof), "native proof rejected");

    // Wrong public input → rejected.
    let mut wrong = instances.clone();
    wrong[1] += Fr::from(1);
    assert!(
        !verify(&s, &wrong, &proof),
        "proof accepted for a wrong instance"
    );

    // One flipped byte anywhere → rejected (a few positions: commitments, evaluations, openings).
    for pos in [
        0,
        proof.len() / 3,
        proof.len() / 2,
        proof.len() - 40,
        proof.len() - 1,
    ] {
        let mut bad = proof.clone();
        bad[pos] ^= 1;
        assert!(!verify(&s, &instances, &bad), "flipped byte {pos} accepted");
    }

    // Same seed → byte-identical; another seed → a different (still valid) proof.
    let (again, _) = prove_native(&s, &bases, &xs, 42);
    assert_eq!(proof, again, "same seed gave different proofs");
    let (other, _) = prove_native(&s, &bases, &xs, 43);
    assert_ne!(proof, other);
    assert!(verify(&s, &instances, &other));
}

/// Counts the backend calls, delegating to the CPU backend; with `corrupt`, it adds one to a
/// value of the first quotient part before its inverse transform (the only inverse shifted NTT
/// of a proof).
#[derive(Default)]
struct Counting {
    inner: CpuBackend,
    msm: std::sync::atomic::AtomicUsize,
    ntt: std::sync::atomic::AtomicUsize,
    coset: std::sync::atomic::AtomicUsize,
    corrupt: std::sync::atomic::AtomicBool,
}

impl gpu::ComputeBackend for Counting {
    fn name(&self) -> gpu::BackendName {
        self.inner.name()
    }
    fn msm(
        &self,
        bases: &gpu::Bases,
        scalars: &[Fr],
    ) -> Result<halo2curves::bn256::G1, gpu::BackendError> {
        self.msm.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.msm(bases, scalars)
    }
    fn ntt(
        &self,
        v: &mut [Fr],
        d: &gpu::Domain,
        dir: gpu::Direction,
    ) -> Result<(), gpu::BackendError> {
        self.ntt.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.ntt(v, d, dir)
    }
    fn coset_ntt(
        &self,
        v: &mut [Fr],
        d: &gpu::Domain,
        dir: gpu::Direction,
    ) -> Result<(), gpu::BackendError> {
        self.coset
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.coset_ntt(v, d, dir)
    }
    fn upload(&self, values: &[Fr]) -> Result<gpu::Poly, gpu::BackendError> {
        self.inner.upload(values)
    }
    fn zeros(&self, len: usize) -> Result<gpu::Poly, gpu::BackendError> {
        self.inner.zeros(len)
    }
    fn download(&self, poly: &gpu::Poly) -> Result<Vec<Fr>, gpu::BackendError> {
        self.inner.download(poly)
    }
    fn copy_range(
        &self,
        poly: &gpu::Poly,
        start: usize,
        len: usize,
    ) -> Result<gpu::Poly, gpu::BackendError> {
        self.inner.copy_range(poly, start, len)
    }
    fn ntt_poly(
        &self,
        poly: &mut gpu::Poly,
        d: &gpu::Domain,
        dir: gpu::Direction,
        coset: bool,
    ) -> Result<(), gpu::BackendError> {
        let counter = if coset { &self.coset } else { &self.ntt };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.ntt_poly(poly, d, dir, coset)
    }
    fn ntt_shifted(
        &self,
        poly: &mut gpu::Poly,
        d: &gpu::Domain,
        dir: gpu::Direction,
        shift: gpu::Fr,
    ) -> Result<(), gpu::BackendError> {
        self.coset
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if dir == gpu::Direction::Inverse
            && self
                .corrupt
                .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            let v = self.inner.read_range(poly, 5, 1)?[0];
            self.inner.write_range(poly, 5, &[v + Fr::from(1)])?;
        }
        self.inner.ntt_shifted(poly, d, dir, shift)
    }
    fn msm_polys(
        &self,
        bases: &gpu::Bases,
        polys: &[&gpu::Poly],
    ) -> Result<Vec<halo2curves::bn256::G1>, gpu::BackendError> {
        self.msm
            .fetch_add(polys.len(), std::sync::atomic::Ordering::Relaxed);
        self.inner.msm_polys(bases, polys)
    }
    fn batch_invert(&self, poly: &mut gpu::Poly) -> Result<(), gpu::BackendError> {
        self.inner.batch_invert(poly)
    }
    fn prefix_product(&self, poly: &mut gpu::Poly, first: Fr) -> Result<(), gpu::BackendError> {
        self.inner.prefix_product(poly, first)
    }
    fn divide_linear(&self, poly: &mut gpu::Poly, b: Fr) -> Result<(), gpu::BackendError> {
        self.inner.divide_linear(poly, b)
    }
    fn evaluate(&self, poly: &gpu::Poly, points: &[Fr]) -> Result<Vec<Fr>, gpu::BackendError> {
        self.inner.evaluate(poly, points)
    }
    fn read_range(
        &self,
        poly: &gpu::Poly,
        start: usize,
        len: usize,
    ) -> Result<Vec<Fr>, gpu::BackendError> {
        self.inner.read_range(poly, start, len)
    }
    fn write_range(
        &self,
        poly: &mut gpu::Poly,
        start: usize,
        values: &[Fr],
    ) -> Result<(), gpu::BackendError> {
        self.inner.write_range(poly, start, values)
    }
    fn eval_program(
        &self,
        program: &gpu::Program,
        inputs: &[&gpu::Poly],
        acc: &mut gpu::Poly,
        ratio: usize,
        y: Fr,
    ) -> Result<(), gpu::BackendError> {
        self.inner.eval_program(program, inputs, acc, ratio, y)
    }
}

#[test]
fn native_runs_every_msm_and_ntt_on_the_backend_and_poseidon_transcript_verifies() {
    use snark_verifier_sdk::halo2::{PoseidonTranscript, POSEIDON_SPEC};
    use snark_verifier_sdk::NativeLoader;
    let s = setup();
    let bases = native::srs_bases(&s.params).unwrap();
    let (circuit, instances) = prover_circuit(&s, &[2, 7, 1, 8, 2, 8, 1, 8]);
    let backend = Counting::default();
    let mut transcript = PoseidonTranscript::<NativeLoader, Vec<u8>>::init(Vec::new());
    native::create_proof(
        &backend,
        &s.params,
        &bases,
        &s.pk,
        None,
        &circuit,
        &[&instances],
        &mut ChaCha20Rng::seed_from_u64(1),
        &mut transcript,
    )
    .expect("native create_proof (Poseidon)");
    let proof = transcript.finalize();
    let load = |c: &std::sync::atomic::AtomicUsize| c.load(std::sync::atomic::Ordering::Relaxed);
    assert!(load(&backend.msm) > 0 && load(&backend.ntt) > 0 && load(&backend.coset) > 0);
    eprintln!(
        "backend calls: msm {}, ntt {}, coset_ntt {}",
        load(&backend.msm),
        load(&backend.ntt),
        load(&backend.coset)
    );

    let mut reader = Cursor::new(proof.as_slice());
    let mut t = PoseidonTranscript::<NativeLoader, &mut Cursor<&[u8]>>::from_spec(
        &mut reader,
        POSEIDON_SPEC.clone(),
    );
    let strategy = SingleStrategy::new(s.params.verifier_params());
    verify_proof::<KZGCommitmentScheme<Bn256>, VerifierSHPLONK<'_, Bn256>, _, _, _>(
        s.params.verifier_params(),
        s.pk.get_vk(),
        strategy,
        &[&[&instances]],
        &mut t,
    )
    .expect("Poseidon-transcript native proof rejected");
}

#[test]
fn the_coset_file_serves_the_parts_and_a_file_damaged_later_is_not_trusted() {
    let s = setup();
    let bases = native::srs_bases(&s.params).unwrap();
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("coset-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let path = dir.join("key.coset");
    let sha = "ab".repeat(32);
    let cpu = CpuBackend::new();
    let xs = [2, 7, 1, 8, 2, 8, 1, 8];
    let (want, _) = prove_native(&s, &bases, &xs, 4);
    let file = |path, disk_reserve| native::CosetFile {
        path,
        pk_sha256: &sha,
        disk_reserve,
    };

    // Written part by part, then read part by part: nothing of it stays in memory.
    let cache = native::KeyCache::with_file(&cpu, &s.pk, file(&path, 0)).expect("cache");
    assert_eq!(cache.source(), "file");
    assert_eq!(cache.size_bytes(), 0);
    let written = std::fs::read(&path).expect("the coset file");
    assert_eq!(prove_native_with(&s, &bases, &xs, 4, Some(&cache)).0, want);
    let reopened = native::KeyCache::with_file(&cpu, &s.pk, file(&path, 0)).expect("cache");
    assert_eq!(reopened.source(), "file");
    assert_eq!(
        prove_native_with(&s, &bases, &xs, 4, Some(&reopened)).0,
        want
    );

    // Damaged while a cache has it open: the part fails its hash, the columns are computed
    // instead (in this proof and the later ones), the proof is the same.
    let mut damaged = written.clone();
    damaged[200] ^= 0x10;
    std::fs::write(&path, &damaged).expect("damage");
    assert_eq!(prove_native_with(&s, &bases, &xs, 4, Some(&cache)).0, want);
    assert_eq!(cache.source(), "computed");
    // A new cache refuses it and writes it again.
    let rebuilt = native::KeyCache::with_file(&cpu, &s.pk, file(&path, 0)).expect("cache");
    assert_eq!(rebuilt.source(), "file");
    assert!(std::fs::read(&path).expect("rewritten") == written);

    // Where it cannot be written: computed in each proof.
    let nowhere = dir.join("no such directory").join("key.coset");
    let computed = native::KeyCache::with_file(&cpu, &s.pk, file(&nowhere, 0)).expect("cache");
    assert_eq!(computed.source(), "computed");
    assert_eq!(
        prove_native_with(&s, &bases, &xs, 4, Some(&computed)).0,
        want
    );
    // Where it would leave less than its reserve free: not written (no file, no temporary
    // one), computed in each proof.
    let reserved = dir.join("reserved.coset");
    let cache = native::KeyCache::with_file(&cpu, &s.pk, file(&reserved, u64::MAX / 2));
    let computed = cache.expect("cache");
    assert_eq!(computed.source(), "computed");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("tmp dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["key.coset"]);
    assert_eq!(
        prove_native_with(&s, &bases, &xs, 4, Some(&computed)).0,
        want
    );
    // In memory, every part is kept.
    let resident = native::KeyCache::new(&cpu, &s.pk).expect("cache");
    assert_eq!(resident.source(), "resident");
    assert!(resident.size_bytes() > 0);
    std::fs::remove_dir_all(&dir).expect("remove the tmp dir");
}

#[test]
fn native_refuses_a_witness_that_violates_a_copy_constraint() {
    let s = setup();
    let bases = native::srs_bases(&s.params).unwrap();
    let (circuit, mut instances) = prover_circuit(&s, &[1, 1, 2, 3, 5, 8, 13, 21]);
    instances[1] += Fr::from(1);
    let mut transcript = Blake2bWrite::<_, G1Affine, Challenge255<_>>::init(vec![]);
    let err = native::create_proof(
        &CpuBackend::new(),
        &s.params,
        &bases,
        &s.pk,
        None,
        &circuit,
        &[&instances],
        &mut ChaCha20Rng::seed_from_u64(5),
        &mut transcript,
    )
    .expect_err("an unsatisfied witness must not be proved");
    assert!(matches!(err, native::NativeError::Unsatisfied(_)), "{err}");
}

/// For each input: its `is_zero` and whether it equals the next input, both pushed as instances.
/// halo2-base assigns the inverse inside `is_zero` and `is_equal` as a fraction
/// (`Assigned::Rational(1, x)`), which the witness collector keeps apart and inverts in a batch.
fn is_zero_fill(builder: &mut BaseCircuitBuilder<Fr>, xs: &[Fr]) {
    let gate = GateChip::<Fr>::default();
    let ctx = builder.main(0);
    let cells: Vec<_> = xs.iter().map(|x| ctx.load_witness(*x)).collect();
    let mut out = Vec::new();
    for (i, c) in cells.iter().enumerate() {
        out.push(gate.is_zero(ctx, *c));
        out.push(gate.is_equal(ctx, *c, cells[(i + 1) % cells.len()]));
    }
    builder.assigned_instances[0].extend(out);
}

#[test]
fn fractions_assigned_by_is_zero_are_inverted_and_the_proof_verifies() {
    use ff::Field;
    let params = ParamsKZG::<Bn256>::setup(K as u32, ChaCha20Rng::seed_from_u64(7));
    let shape = [Fr::ONE; 6];
    let mut builder = BaseCircuitBuilder::<Fr>::from_stage(CircuitBuilderStage::Keygen)
        .use_k(K)
        .use_instance_columns(1);
    is_zero_fill(&mut builder, &shape);
    let config = builder.calculate_params(Some(9));
    let vk = keygen_vk(&params, &builder).expect("keygen_vk");
    let pk = keygen_pk(&params, vk, &builder).expect("keygen_pk");
    let s = Setup {
        params,
        pk,
        config,
        break_points: builder.break_points(),
    };
    let bases = native::srs_bases(&s.params).unwrap();
    let prove_on = |backend: &dyn gpu::ComputeBackend, xs: &[Fr], seed: u64| {
        let mut circuit = BaseCircuitBuilder::prover(s.config.clone(), s.break_points.clone());
        is_zero_fill(&mut circuit, xs);
        let instances: Vec<Fr> = circuit.assigned_instances[0]
            .iter()
            .map(|c| *c.value())
            .collect();
        let mut transcript = Blake2bWrite::<_, G1Affine, Challenge255<_>>::init(vec![]);
        native::create_proof(
            backend,
            &s.params,
            &bases,
            &s.pk,
            None,
            &circuit,
            &[&instances],
            &mut ChaCha20Rng::seed_from_u64(seed),
            &mut transcript,
        )
        .map(|()| (transcript.finalize(), instances))
    };
    // Zeros and non-zeros side by side (fractions and plain cells in one column), equal
    // neighbours, the largest field element (-1), and a fresh random value.
    let random = Fr::random(rand::thread_rng());
    let xs = [
        Fr::ZERO,
        Fr::from(5),
        Fr::from(5),
        -Fr::ONE,
        Fr::ZERO,
        random,
    ];
    let (proof, instances) = prove_on(&CpuBackend::new(), &xs, 3).expect("proof with fractions");
    let expect: Vec<Fr> = xs
        .iter()
        .enumerate()
        .flat_map(|(i, x)| {
            let next = xs[(i + 1) % xs.len()];
            [
                Fr::from(bool::from(x.is_zero()) as u64),
                Fr::from((*x == next) as u64),
            ]
        })
        .collect();
    assert_eq!(instances, expect, "is_zero / is_equal outputs");
    assert!(
        verify(&s, &instances, &proof),
        "proof with fractions rejected"
    );
    let mut wrong = instances.clone();
    wrong[2] = Fr::ONE; // is_zero(5) claimed to be 1
    assert!(
        !verify(&s, &wrong, &proof),
        "a wrong is_zero output accepted"
    );
    // No zero at all (every inverse a fraction), and every input zero (no fraction).
    for xs in [[Fr::from(9); 6], [Fr::ZERO; 6]] {
        let (proof, instances) = prove_on(&CpuBackend::new(), &xs, 4).expect("proof");
        assert!(verify(&s, &instances, &proof), "proof for {xs:?} rejected");
    }
    if let Some(cuda) = cuda() {
        let (on_cuda, _) = prove_on(&*cuda, &xs, 3).expect("proof with fractions on CUDA");
        assert_eq!(on_cuda, proof, "CPU and CUDA proofs with fractions differ");
    }
}

fn range_fill(builder: &mut BaseCircuitBuilder<Fr>, xs: &[u64]) {
    use halo2_base::gates::RangeInstructions;
    let range = builder.range_chip();
    let gate = GateChip::<Fr>::default();
    let ctx = builder.main(0);
    let cells: Vec<_> = xs.iter().map(|x| ctx.load_witness(Fr::from(*x))).collect();
    for c in &cells {
        range.range_check(ctx, *c, 16);
    }
    let s = gate.sum(ctx, cells.clone());
    range.check_less_than_safe(ctx, s, 1 << 20);
    builder.assigned_instances[0].push(s);
}

#[test]
fn native_circuit_with_lookups_verifies_and_is_deterministic() {
    let params = ParamsKZG::<Bn256>::setup(K as u32, ChaCha20Rng::seed_from_u64(7));
    let mut builder = BaseCircuitBuilder::<Fr>::from_stage(CircuitBuilderStage::Keygen)
        .use_k(K)
        .use_lookup_bits(K - 1)
        .use_instance_columns(1);
    range_fill(&mut builder, &[1, 2, 3, 4]);
    let config = builder.calculate_params(Some(9));
    let vk = keygen_vk(&params, &builder).expect("keygen_vk");
    let pk = keygen_pk(&params, vk, &builder).expect("keygen_pk");
    assert!(!pk.get_vk().cs().lookups().is_empty());
    let break_points = builder.break_points();
    let s = Setup {
        params,
        pk,
        config,
        break_points,
    };
    let bases = native::srs_bases(&s.params).unwrap();
    let prove_on = |backend: &dyn gpu::ComputeBackend,
                    xs: &[u64],
                    seed: u64,
                    cache: Option<&native::KeyCache>| {
        let mut circuit = BaseCircuitBuilder::prover(s.config.clone(), s.break_points.clone());
        range_fill(&mut circuit, xs);
        let instances: Vec<Fr> = circuit.assigned_instances[0]
            .iter()
            .map(|c| *c.value())
            .collect();
        let mut transcript = Blake2bWrite::<_, G1Affine, Challenge255<_>>::init(vec![]);
        native::create_proof(
            backend,
            &s.params,
            &bases,
            &s.pk,
            cache,
            &circuit,
            &[&instances],
            &mut ChaCha20Rng::seed_from_u64(seed),
            &mut transcript,
        )
        .map(|()| (transcript.finalize(), instances))
    };
    let prove_with = |xs: &[u64], seed: u64, cache: Option<&native::KeyCache>| {
        prove_on(&CpuBackend::new(), xs, seed, cache)
    };
    let prove = |xs: &[u64], seed: u64| prove_with(xs, seed, None);
    let (proof, instances) = prove(&[1000, 2000, 65535, 7], 9).expect("native proof with lookups");
    assert!(
        verify(&s, &instances, &proof),
        "native proof with lookups rejected"
    );
    let mut bad = proof.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    assert!(!verify(&s, &instances, &bad));
    let (again, _) = prove(&[1000, 2000, 65535, 7], 9).expect("second proof");
    assert_eq!(proof, again);
    // A value outside the range: the lookup cannot be satisfied.
    let err = prove(&[1000, 2000, 65536, 7], 9).expect_err("out-of-range value proved");
    assert!(matches!(err, native::NativeError::Unsatisfied(_)), "{err}");

    // The per-key cache of extended-coset columns changes nothing in the proof, and a cache
    // built for another key is refused.
    let cache = native::KeyCache::new(&CpuBackend::new(), &s.pk).expect("key cache");
    assert!(cache.size_bytes() > 0);
    let (cached, _) =
        prove_with(&[1000, 2000, 65535, 7], 9, Some(&cache)).expect("proof with the key cache");
    assert_eq!(proof, cached, "the key cache changed the proof");
    let other = setup();
    let wrong = native::KeyCache::new(&CpuBackend::new(), &other.pk).expect("other key cache");
    let err = prove_with(&[1000, 2000, 65535, 7], 9, Some(&wrong))
        .expect_err("a cache of another key was used");
    assert!(err.to_string().contains("another proving key"), "{err}");

    // A cache is resident in the backend that built it: another backend refuses it.
    if let Some(cuda) = cuda() {
        let mut circuit = BaseCircuitBuilder::prover(s.config.clone(), s.break_points.clone());
        range_fill(&mut circuit, &[1000, 2000, 65535, 7]);
        let mut transcript = Blake2bWrite::<_, G1Affine, Challenge255<_>>::init(vec![]);
        let on_cuda = native::create_proof(
            &*cuda,
            &s.params,
            &bases,
            &s.pk,
            None,
            &circuit,
            &[&instances],
            &mut ChaCha20Rng::seed_from_u64(9),
            &mut transcript,
        )
        .map(|()| transcript.finalize())
        .expect("native proof with lookups on CUDA");
        assert_eq!(on_cuda, proof, "CPU and CUDA proofs with lookups differ");
        let mut transcript = Blake2bWrite::<_, G1Affine, Challenge255<_>>::init(vec![]);
        let err = native::create_proof(
            &*cuda,
            &s.params,
            &bases,
            &s.pk,
            Some(&cache),
            &circuit,
            &[&instances],
            &mut ChaCha20Rng::seed_from_u64(9),
            &mut transcript,
        )
        .expect_err("a CPU-resident cache was used on CUDA");
        assert!(err.to_string().contains("held by the cpu backend"), "{err}");
    }
}

/// The project's chunk circuit (k = 13, the test configuration): a native proof with the
/// Poseidon transcript passes the production verifier (`engine::verify`: SHPLONK, Poseidon,
/// no trailing bytes), and the same seed gives the same bytes.
#[test]
fn native_chunk_proof_passes_the_production_verifier() {
    use prover_core::circuits::chunk;
    use prover_core::rollup::RollupState;
    use prover_core::wire::{ChunkConfig, Transfer};
    use prover_core::{engine, CoreConfig, ProvingCore};
    use snark_verifier_sdk::halo2::PoseidonTranscript;
    use snark_verifier_sdk::NativeLoader;

    // The build's tmp directory; the system's where the binary runs elsewhere (the lent GPU).
    let dir = Some(std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
        .filter(|p| p.exists())
        .unwrap_or_else(std::env::temp_dir)
        .join("native-chunk");
    let params_dir = dir.join("params");
    std::fs::create_dir_all(&params_dir).expect("params dir");
    let config = ChunkConfig {
        k: 13,
        tree_depth: 4,
        max_txs: 2,
    };
    params::ensure_dev(&params_dir, config.k, false).expect("dev params");
    let core = ProvingCore::new(CoreConfig::new(params_dir, dir.join("keys")));
    let keys = core.chunk_keys(config).expect("chunk keys");
    let srs = core.srs(config.k).expect("srs");
    let mut state = RollupState::genesis(config.tree_depth, 4, 1000).expect("genesis");
    let transfer = |from, to, amount, nonce| Transfer {
        from,
        to,
        amount,
        nonce,
    };
    let data = state
        .apply_chunk(config, &[transfer(0, 1, 5, 0), transfer(1, 2, 3, 0)])
        .expect("chunk");
    let bases = native::srs_bases(&srs).unwrap();
    let prove = |seed: u64| {
        let mut builder = BaseCircuitBuilder::prover(
            keys.meta.circuit_params.clone(),
            keys.meta.break_points.clone(),
        );
        chunk::synthesize(&mut builder, &data);
        let instances: Vec<Fr> = builder.assigned_instances[0]
            .iter()
            .map(|c| *c.value())
            .collect();
        let mut transcript = PoseidonTranscript::<NativeLoader, Vec<u8>>::init(Vec::new());
        let started = std::time::Instant::now();
        native::create_proof(
            &CpuBackend::new(),
            &srs,
            &bases,
            &keys.pk,
            None,
            &builder,
            &[&instances],
            &mut ChaCha20Rng::seed_from_u64(seed),
            &mut transcript,
        )
        .expect("native chunk proof");
        eprintln!("native chunk proof (k=13): {:?}", started.elapsed());
        (transcript.finalize(), instances)
    };
    let (proof, instances) = prove(11);
    engine::verify(&srs, keys.vk(), &instances, &proof).expect("native chunk proof rejected");
    let mut bad = proof.clone();
    let pos = bad.len() / 3;
    bad[pos] ^= 1;
    assert!(engine::verify(&srs, keys.vk(), &instances, &bad).is_err());
    // snark-verifier's native PLONK verifier (the logic the batch circuit runs in-circuit)
    // agrees: the proof is accepted, the tampered one and a wrong public input are not.
    engine::verify_with_snark_verifier(&srs, keys.vk(), &instances, &proof, None)
        .expect("snark-verifier rejected the native chunk proof");
    assert!(engine::verify_with_snark_verifier(&srs, keys.vk(), &instances, &bad, None).is_err());
    let mut wrong = instances.clone();
    wrong[0] += Fr::from(1);
    assert!(engine::verify_with_snark_verifier(&srs, keys.vk(), &wrong, &proof, None).is_err());
    let (again, _) = prove(11);
    assert_eq!(proof, again);

    // The engine-level entry point, with the per-key cache, gives the same bytes.
    let cache = native::KeyCache::new(&CpuBackend::new(), &keys.pk).expect("key cache");
    let mut builder = BaseCircuitBuilder::prover(
        keys.meta.circuit_params.clone(),
        keys.meta.break_points.clone(),
    );
    chunk::synthesize(&mut builder, &data);
    let via_engine = engine::prove_native(
        &CpuBackend::new(),
        &srs,
        &bases,
        &keys.pk,
        Some(&cache),
        &builder,
        &instances,
        ChaCha20Rng::seed_from_u64(11),
    )
    .expect("engine::prove_native");
    assert_eq!(via_engine, proof);

    // One quotient value off by one (before the first part's interpolation): h is wrong, and the
    // proof made with it fails the verification the engine runs before returning a proof.
    let corrupting = Counting::default();
    corrupting
        .corrupt
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let mut builder = BaseCircuitBuilder::prover(
        keys.meta.circuit_params.clone(),
        keys.meta.break_points.clone(),
    );
    chunk::synthesize(&mut builder, &data);
    let err = engine::prove_native(
        &corrupting,
        &srs,
        &bases,
        &keys.pk,
        None,
        &builder,
        &instances,
        ChaCha20Rng::seed_from_u64(11),
    )
    .expect_err("a wrong quotient was committed to");
    assert!(!corrupting
        .corrupt
        .load(std::sync::atomic::Ordering::Relaxed));
    assert!(
        err.to_string()
            .contains("does not verify against its own key"),
        "{err}"
    );
    match err {
        engine::EngineError::Native(e) => assert!(e.is_backend_failure(), "{e}"),
        other => panic!("not a native error: {other}"),
    }

    // The reference engine on the same machine, for a rough ratio.
    let mut builder = BaseCircuitBuilder::prover(
        keys.meta.circuit_params.clone(),
        keys.meta.break_points.clone(),
    );
    chunk::synthesize(&mut builder, &data);
    let started = std::time::Instant::now();
    let reference = engine::prove(
        &srs,
        &keys.pk,
        builder,
        &instances,
        ChaCha20Rng::seed_from_u64(3),
    )
    .expect("reference proof");
    eprintln!("reference chunk proof (k=13): {:?}", started.elapsed());
    assert_eq!(reference.len(), proof.len(), "proof sizes differ");
}

/// A hand-written two-phase circuit with a challenge: phase 0 holds a_i, phase 1 holds the
/// running random linear combination b_i = b_{i-1}·c + a_i under the challenge c squeezed after
/// phase 0. (halo2-base 0.5.5's BaseCircuitBuilder assigns phase 0 only, hence a custom circuit.)
mod rlc {
    use halo2_proofs::circuit::{Layouter, SimpleFloorPlanner, Value};
    use halo2_proofs::plonk::{
        Advice, Challenge, Circuit, Column, ConstraintSystem, Error, FirstPhase, Instance,
        SecondPhase, Selector,
    };
    use halo2_proofs::poly::Rotation;
    use halo2curves::bn256::Fr;

    #[derive(Clone, Debug)]
    pub struct Config {
        a: Column<Advice>,
        b: Column<Advice>,
        q: Selector,
        c: Challenge,
        inst: Column<Instance>,
    }

    /// `EXTRA` more factors of `a` on the gate raise the circuit's degree to `2 + EXTRA` (for
    /// more quotient pieces than a halo2-base circuit has).
    #[derive(Clone, Default)]
    pub struct RlcCircuit<const EXTRA: usize = 0> {
        pub xs: Vec<Fr>,
        /// Adds one to the accumulator cell of this row: a witness that violates the gate.
        pub tamper: Option<usize>,
    }

    impl<const EXTRA: usize> Circuit<Fr> for RlcCircuit<EXTRA> {
        type Config = Config;
        type FloorPlanner = SimpleFloorPlanner;
        type Params = ();

        fn without_witnesses(&self) -> Self {
            self.clone()
        }

        fn configure(cs: &mut ConstraintSystem<Fr>) -> Config {
            let a = cs.advice_column();
            let b = cs.advice_column_in(SecondPhase);
            let q = cs.selector();
            let c = cs.challenge_usable_after(FirstPhase);
            let inst = cs.instance_column();
            cs.enable_equality(a);
            cs.enable_equality(inst);
            cs.create_gate("b = b_prev * c + a", |meta| {
                let q = meta.query_selector(q);
                let a = meta.query_advice(a, Rotation::cur());
                let b_cur = meta.query_advice(b, Rotation::cur());
                let b_prev = meta.query_advice(b, Rotation::prev());
                let c = meta.query_challenge(c);
                let mut gate = q * (b_cur - (b_prev * c + a.clone()));
                for _ in 0..EXTRA {
                    gate = gate * a.clone();
                }
                vec![gate]
            });
            Config { a, b, q, c, inst }
        }

        fn synthesize(&self, config: Config, mut layouter: impl Layouter<Fr>) -> Result<(), Error> {
            let first = layouter.assign_region(
                || "phase 0",
                |mut region| {
                    let mut first = None;
                    for (i, x) in self.xs.iter().enumerate() {
                        let cell = region.assign_advice(config.a, i, Value::known(*x));
                        if i == 0 {
                            first = Some(cell.cell());
                        }
                    }
                    first.ok_or(Error::Synthesis)
                },
            )?;
            layouter.constrain_instance(first, config.inst, 0);
            layouter.next_phase();
            let c = layouter.get_challenge(config.c);
            layouter.assign_region(
                || "phase 1",
                |mut region| {
                    let mut acc = Value::known(Fr::zero());
                    for (i, x) in self.xs.iter().enumerate() {
                        if i > 0 {
                            config.q.enable(&mut region, i)?;
                        }
                        acc = acc * c + Value::known(*x);
                        if i == 0 {
                            acc = Value::known(*x);
                        }
                        let cell = if self.tamper == Some(i) {
                            acc + Value::known(Fr::one())
                        } else {
                            acc
                        };
                        region.assign_advice(config.b, i, cell);
                    }
                    Ok(())
                },
            )
        }
    }
}

/// Advice in two phases with a challenge: each phase is committed in turn and the challenge
/// squeezed in between (halo2's multi-phase order).
#[test]
fn native_two_phase_circuit_with_a_challenge_verifies() {
    let params = ParamsKZG::<Bn256>::setup(K as u32, ChaCha20Rng::seed_from_u64(7));
    let xs: Vec<Fr> = (1..20u64).map(Fr::from).collect();
    let keygen_circuit = rlc::RlcCircuit::<0> {
        xs: xs.clone(),
        tamper: None,
    };
    let vk = keygen_vk(&params, &keygen_circuit).expect("keygen_vk");
    let pk = keygen_pk(&params, vk, &keygen_circuit).expect("keygen_pk");
    assert_eq!(pk.get_vk().cs().num_challenges(), 1);
    let bases = native::srs_bases(&params).unwrap();
    let circuit = rlc::RlcCircuit::<0> {
        xs: (5..24u64).map(Fr::from).collect(),
        tamper: None,
    };
    let instances = vec![Fr::from(5)];
    let attempt = |circuit: &rlc::RlcCircuit, seed: u64| {
        prove_plain(
            &CpuBackend::new(),
            &params,
            &bases,
            &pk,
            circuit,
            &instances,
            seed,
        )
    };
    let prove = |seed: u64| attempt(&circuit, seed).expect("native two-phase proof");
    let proof = prove(21);
    let s = plain_setup(&params, &pk);
    assert!(
        verify(&s, &instances, &proof),
        "two-phase native proof rejected"
    );
    assert!(!verify(&s, &[Fr::from(6)], &proof));
    assert_eq!(proof, prove(21));
    // The same proof on CUDA (the challenge becomes a constant of the device programs).
    if let Some(cuda) = cuda() {
        assert_eq!(
            prove_plain(&*cuda, &params, &bases, &pk, &circuit, &instances, 21)
                .expect("native two-phase proof on CUDA"),
            proof,
            "CPU and CUDA two-phase proofs differ"
        );
    }

    // A second-phase cell that breaks the gate: refused before proving, naming gate and row.
    let bad = rlc::RlcCircuit {
        xs: (5..24u64).map(Fr::from).collect(),
        tamper: Some(7),
    };
    let err = attempt(&bad, 21).expect_err("a witness violating a gate was proved");
    assert!(matches!(err, native::NativeError::Unsatisfied(_)), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("b = b_prev * c + a"), "{msg}");
    // Row 7 breaks its own gate (the first failing row).
    assert!(msg.contains("row 7"), "{msg}");
}

mod overwrite {
    use halo2_proofs::circuit::{Layouter, SimpleFloorPlanner, Value};
    use halo2_proofs::plonk::{
        Advice, Assigned, Circuit, Column, ConstraintSystem, Error, Instance, Selector,
    };
    use halo2_proofs::poly::Rotation;
    use halo2curves::bn256::Fr;

    #[derive(Clone, Debug)]
    pub struct Config {
        a: Column<Advice>,
        b: Column<Advice>,
        q: Selector,
        inst: Column<Instance>,
    }

    /// Cells assigned more than once, plain and as fractions in every order, in two columns:
    /// the last assignment of each cell must be the value proved. On every row in `rows` the
    /// gate wants `a = 2` and `b = 3`.
    #[derive(Clone, Default)]
    pub struct OverwriteCircuit {
        pub rows: Vec<usize>,
    }

    fn f(n: u64) -> Fr {
        Fr::from(n)
    }

    impl Circuit<Fr> for OverwriteCircuit {
        type Config = Config;
        type FloorPlanner = SimpleFloorPlanner;
        type Params = ();

        fn without_witnesses(&self) -> Self {
            self.clone()
        }

        fn configure(cs: &mut ConstraintSystem<Fr>) -> Config {
            let a = cs.advice_column();
            let b = cs.advice_column();
            let q = cs.selector();
            let inst = cs.instance_column();
            cs.enable_equality(b);
            cs.enable_equality(inst);
            cs.create_gate("a = 2 and b = 3", |meta| {
                let q = meta.query_selector(q);
                let a = meta.query_advice(a, Rotation::cur());
                let b = meta.query_advice(b, Rotation::cur());
                let two = halo2_proofs::plonk::Expression::Constant(f(2));
                let three = halo2_proofs::plonk::Expression::Constant(f(3));
                vec![q.clone() * (a - two), q * (b - three)]
            });
            Config { a, b, q, inst }
        }

        fn synthesize(&self, config: Config, mut layouter: impl Layouter<Fr>) -> Result<(), Error> {
            let first_b = layouter.assign_region(
                || "cells assigned more than once",
                |mut region| {
                    let mut first_b = None;
                    for &r in &self.rows {
                        config.q.enable(&mut region, r)?;
                        let mut a = |v: Assigned<Fr>| {
                            region.assign_advice(config.a, r, Value::known(v));
                        };
                        // Each pattern ends on a = 2; a wrong overwrite leaves another value.
                        let a_ends_plain = r % 4 == 0;
                        match r % 4 {
                            0 => {
                                a(Assigned::Rational(f(4), f(3)));
                                a(Assigned::Trivial(f(2)));
                            }
                            1 => {
                                a(Assigned::Trivial(f(5)));
                                a(Assigned::Rational(f(6), f(3)));
                            }
                            2 => {
                                a(Assigned::Rational(f(10), f(7)));
                                a(Assigned::Rational(f(8), f(4)));
                            }
                            _ => {
                                a(Assigned::Rational(f(2), f(5)));
                                a(Assigned::Trivial(f(9)));
                                a(Assigned::Rational(f(14), f(7)));
                            }
                        }
                        // b on the same row: plain where a ends a fraction (a fraction of one
                        // column must not be dropped by a plain cell of another), a fraction
                        // where a ends plain.
                        let b = if a_ends_plain {
                            Assigned::Rational(f(3 * (r as u64 + 1)), f(r as u64 + 1))
                        } else {
                            Assigned::Trivial(f(3))
                        };
                        let cell = region.assign_advice(config.b, r, Value::known(b));
                        first_b.get_or_insert(cell.cell());
                    }
                    first_b.ok_or(Error::Synthesis)
                },
            )?;
            layouter.constrain_instance(first_b, config.inst, 0);
            Ok(())
        }
    }
}

/// The witness collector keeps the last assignment of a cell assigned more than once: a
/// fraction overwritten by a plain value, a plain value by a fraction, a fraction by another, in
/// two columns and across the 64-row words of its bookkeeping. A wrong value would fail the gate
/// (refused before proving); the proof verifies with halo2's verifier, and CUDA gives the same
/// bytes.
#[test]
fn cells_assigned_more_than_once_keep_their_last_value() {
    let params = ParamsKZG::<Bn256>::setup(K as u32, ChaCha20Rng::seed_from_u64(7));
    let rows: Vec<usize> = [0, 1, 2, 3, 62, 63, 64, 65, 66, 67, 127, 128, 129, 255, 256]
        .into_iter()
        .chain(300..340)
        .collect();
    let circuit = overwrite::OverwriteCircuit { rows };
    let vk = keygen_vk(&params, &circuit).expect("keygen_vk");
    let pk = keygen_pk(&params, vk, &circuit).expect("keygen_pk");
    let bases = native::srs_bases(&params).unwrap();
    let instances = vec![Fr::from(3)];
    let prove = |backend: &dyn gpu::ComputeBackend| {
        prove_plain(backend, &params, &bases, &pk, &circuit, &instances, 5)
    };
    let proof = prove(&CpuBackend::new()).expect("proof of cells assigned more than once");
    let s = plain_setup(&params, &pk);
    assert!(verify(&s, &instances, &proof), "proof rejected");
    assert!(!verify(&s, &[Fr::from(4)], &proof));
    if let Some(cuda) = cuda() {
        let on_cuda = prove(&*cuda).expect("proof of cells assigned more than once on CUDA");
        assert_eq!(on_cuda, proof, "CPU and CUDA proofs differ");
    }
}

/// A degree-6 circuit: h has 5 pieces, evaluated on 6 cosets (3·2, not the 8 of halo2's extended
/// domain), so the sixth holds h's coefficients beyond its pieces, which the engine checks are
/// zero before committing. CPU and CUDA give the same verifying proof; a wrong quotient value is
/// refused by that degree check.
#[test]
fn a_degree_6_circuit_is_proved_on_6_cosets_with_its_degree_checked() {
    // halo2-axiom caps a circuit's degree at $MAX_DEGREE (5 when unset; halo2-base circuits have
    // 4), read at key generation. The test runs again in a child process with it set to 6, so no
    // other test sees it.
    const NAME: &str = "a_degree_6_circuit_is_proved_on_6_cosets_with_its_degree_checked";
    if std::env::var("MAX_DEGREE").as_deref() != Ok("6") {
        let exe = std::env::current_exe().expect("the test binary's path");
        // The harness names a test by its path below the crate: `native::NAME`.
        let module = module_path!().split_once("::").map_or("", |(_, m)| m);
        let status = std::process::Command::new(exe)
            .args(["--exact", &format!("{module}::{NAME}"), "--test-threads=1"])
            .env("MAX_DEGREE", "6")
            .status()
            .expect("run the test binary again");
        assert!(status.success(), "{NAME} failed in its child process");
        return;
    }
    let params = ParamsKZG::<Bn256>::setup(K as u32, ChaCha20Rng::seed_from_u64(8));
    let circuit = rlc::RlcCircuit::<4> {
        xs: (3..40u64).map(Fr::from).collect(),
        tamper: None,
    };
    let vk = keygen_vk(&params, &circuit).expect("keygen_vk");
    let pk = keygen_pk(&params, vk, &circuit).expect("keygen_pk");
    let domain = pk.get_vk().get_domain();
    assert_eq!(pk.get_vk().cs().degree(), 6);
    assert_eq!(domain.get_quotient_poly_degree(), 5);
    assert_eq!(
        domain.extended_k() - domain.k(),
        3,
        "halo2 evaluates 8 parts"
    );
    let cosets = native::cosets::Cosets::new(domain.k(), 5).expect("cosets");
    assert_eq!(cosets.parts(), 6);
    let bases = native::srs_bases(&params).unwrap();
    let instances = vec![Fr::from(3)];
    let prove = |backend: &dyn gpu::ComputeBackend| {
        prove_plain(backend, &params, &bases, &pk, &circuit, &instances, 31)
    };
    let proof = prove(&CpuBackend::new()).expect("degree-6 native proof");
    let s = plain_setup(&params, &pk);
    assert!(verify(&s, &instances, &proof), "degree-6 proof rejected");
    assert!(!verify(&s, &[Fr::from(4)], &proof));
    if let Some(cuda) = cuda() {
        assert_eq!(
            prove(&*cuda).expect("degree-6 proof on CUDA"),
            proof,
            "CPU and CUDA degree-6 proofs differ"
        );
    }
    let corrupting = Counting::default();
    corrupting
        .corrupt
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let err = prove(&corrupting).expect_err("a wrong quotient was committed to");
    assert!(!corrupting
        .corrupt
        .load(std::sync::atomic::Ordering::Relaxed));
    assert!(err.to_string().contains("higher degree"), "{err}");
}

/// The Keccak (EVM) transcript: the transcript a Solidity verifier generated by snark-verifier
/// replays. halo2-axiom's verifier and snark-verifier's native verifier, both reading the proof
/// with snark-verifier's `EvmTranscript`, accept the native proof.
#[test]
fn native_keccak_transcript_proof_verifies_with_halo2_and_snark_verifier() {
    use snark_verifier_sdk::snark_verifier::pcs::kzg::KzgDecidingKey;
    use snark_verifier_sdk::snark_verifier::system::halo2::transcript::evm::{
        ChallengeEvm, EvmTranscript,
    };
    use snark_verifier_sdk::snark_verifier::system::halo2::{compile, Config};
    use snark_verifier_sdk::snark_verifier::verifier::SnarkVerifier;
    use snark_verifier_sdk::{NativeLoader, PlonkVerifier, SHPLONK};

    let s = setup();
    let bases = native::srs_bases(&s.params).unwrap();
    let xs = [2, 7, 1, 8, 2, 8, 1, 8];
    let prove = |seed: u64| {
        let (circuit, instances) = prover_circuit(&s, &xs);
        let mut transcript =
            EvmTranscript::<G1Affine, NativeLoader, Vec<u8>, Vec<u8>>::init(Vec::new());
        native::create_proof::<_, ChallengeEvm<G1Affine>, _>(
            &CpuBackend::new(),
            &s.params,
            &bases,
            &s.pk,
            None,
            &circuit,
            &[&instances],
            &mut ChaCha20Rng::seed_from_u64(seed),
            &mut transcript,
        )
        .expect("native proof with the Keccak transcript");
        (transcript.finalize(), instances)
    };
    let halo2_accepts = |instances: &[Fr], proof: &[u8]| {
        let mut transcript = EvmTranscript::<G1Affine, NativeLoader, &[u8], Vec<u8>>::init(proof);
        let strategy = SingleStrategy::new(s.params.verifier_params());
        verify_proof::<KZGCommitmentScheme<Bn256>, VerifierSHPLONK<'_, Bn256>, _, _, _>(
            s.params.verifier_params(),
            s.pk.get_vk(),
            strategy,
            &[&[instances]],
            &mut transcript,
        )
        .is_ok()
    };
    let (proof, instances) = prove(5);
    assert!(
        halo2_accepts(&instances, &proof),
        "halo2 rejected the Keccak-transcript proof"
    );
    let mut bad = proof.clone();
    bad[proof.len() / 2] ^= 1;
    assert!(
        !halo2_accepts(&instances, &bad),
        "a flipped byte was accepted"
    );
    // The Keccak and Blake2b transcripts give different proofs of the same statement.
    let (blake, _) = prove_native(&s, &bases, &xs, 5);
    assert_ne!(proof, blake);
    assert_eq!(
        proof,
        prove(5).0,
        "same seed, different Keccak-transcript proofs"
    );

    let protocol = compile(
        &s.params,
        s.pk.get_vk(),
        Config::kzg().with_num_instance(vec![instances.len()]),
    );
    let dk: KzgDecidingKey<Bn256> = (s.params.get_g()[0], s.params.g2(), s.params.s_g2()).into();
    let snark_verifier_accepts = |instances: &[Fr], proof: &[u8]| {
        let instances = vec![instances.to_vec()];
        let mut transcript = EvmTranscript::<G1Affine, NativeLoader, _, _>::new(proof);
        PlonkVerifier::<SHPLONK>::read_proof(&dk, &protocol, &instances, &mut transcript)
            .and_then(|p| PlonkVerifier::<SHPLONK>::verify(&dk, &protocol, &instances, &p))
            .is_ok()
    };
    assert!(snark_verifier_accepts(&instances, &proof));
    let mut wrong = instances.clone();
    wrong[1] += Fr::from(1);
    assert!(!snark_verifier_accepts(&wrong, &proof));
}
