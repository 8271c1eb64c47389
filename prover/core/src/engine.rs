//! Proving and verification with halo2-axiom's own prover (the "reference engine"): KZG over BN254,
//! SHPLONK multi-open, Poseidon transcript (the one snark-verifier reads, so proofs aggregate).

use std::io::Cursor;

use halo2_proofs::plonk::{create_proof, verify_proof, Circuit, ProvingKey, VerifyingKey};
use halo2_proofs::poly::commitment::ParamsProver;
use halo2_proofs::poly::kzg::commitment::KZGCommitmentScheme;
use halo2_proofs::poly::kzg::multiopen::{ProverSHPLONK, VerifierSHPLONK};
use halo2_proofs::poly::kzg::strategy::SingleStrategy;
use halo2_proofs::transcript::{
    EncodedChallenge, TranscriptRead, TranscriptReadBuffer, TranscriptWriterBuffer,
};
use halo2curves::bn256::{Bn256, Fr, G1Affine};
use rand_core::RngCore;
use snark_verifier_sdk::halo2::{PoseidonTranscript, POSEIDON_SPEC};
use snark_verifier_sdk::snark_verifier::system::halo2::transcript::evm::EvmTranscript;
use snark_verifier_sdk::NativeLoader;

/// Which prover implementation proves (and which produced a proof). In configuration files:
/// `"reference"` or `"native"`; the default is `native`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// halo2-axiom's `create_proof` (CPU only): the oracle for cross-checks.
    Reference,
    /// Our own prover ([`crate::native`]): every MSM and NTT on a `gpu::ComputeBackend`.
    #[default]
    Native,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Reference => "reference",
            EngineKind::Native => "native",
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An engine name that is neither `reference` nor `native`.
#[derive(Debug, thiserror::Error)]
#[error("unknown proving engine {0:?} (expected reference or native)")]
pub struct UnknownEngine(pub String);

impl std::str::FromStr for EngineKind {
    type Err = UnknownEngine;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "reference" => Ok(Self::Reference),
            "native" => Ok(Self::Native),
            _ => Err(UnknownEngine(s.to_string())),
        }
    }
}

/// Errors of the proving engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("halo2 proving failed (a constraint the witness violates, such as a range check, or a malformed circuit): {0}")]
    Prove(halo2_proofs::plonk::Error),
    #[error("proof rejected: {0}")]
    Rejected(String),
    #[error("native engine: {0}")]
    Native(#[from] crate::native::NativeError),
}

/// The Fiat–Shamir transcript of a proof. Proofs that are aggregated (chunks into a batch) use
/// Poseidon, which snark-verifier reads cheaply in-circuit; a proof checked by a Solidity verifier
/// on L1 uses Keccak (the EVM's native hash, as snark-verifier's generated verifier reads it).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Transcript {
    #[default]
    Poseidon,
    Keccak,
}

type EvmWriter = EvmTranscript<G1Affine, NativeLoader, Vec<u8>, Vec<u8>>;

/// Creates a proof of `circuit` with public inputs `instances` (one instance column), with the
/// Poseidon transcript.
pub fn prove<C: Circuit<Fr>>(
    params: &params::Srs,
    pk: &ProvingKey<G1Affine>,
    circuit: C,
    instances: &[Fr],
    rng: impl RngCore,
) -> Result<Vec<u8>, EngineError> {
    prove_with(params, pk, circuit, instances, rng, Transcript::Poseidon)
}

/// [`prove`] with the given transcript.
pub fn prove_with<C: Circuit<Fr>>(
    params: &params::Srs,
    pk: &ProvingKey<G1Affine>,
    circuit: C,
    instances: &[Fr],
    rng: impl RngCore,
    transcript: Transcript,
) -> Result<Vec<u8>, EngineError> {
    fn run<
        C: Circuit<Fr>,
        E: EncodedChallenge<G1Affine>,
        T: TranscriptWriterBuffer<Vec<u8>, G1Affine, E>,
    >(
        params: &params::Srs,
        pk: &ProvingKey<G1Affine>,
        circuit: C,
        instances: &[Fr],
        rng: impl RngCore,
    ) -> Result<Vec<u8>, EngineError> {
        let mut transcript = T::init(Vec::new());
        create_proof::<KZGCommitmentScheme<Bn256>, ProverSHPLONK<'_, Bn256>, _, _, _, _>(
            params,
            pk,
            &[circuit],
            &[&[instances]],
            rng,
            &mut transcript,
        )
        .map_err(EngineError::Prove)?;
        Ok(transcript.finalize())
    }
    match transcript {
        Transcript::Poseidon => run::<_, _, PoseidonTranscript<NativeLoader, Vec<u8>>>(
            params, pk, circuit, instances, rng,
        ),
        Transcript::Keccak => run::<_, _, EvmWriter>(params, pk, circuit, instances, rng),
    }
}

/// Creates the same kind of proof as [`prove`] (SHPLONK, Poseidon transcript) with the native
/// engine on `backend`. `bases` must be [`crate::native::srs_bases`] of `params` (build it once
/// per SRS so a device backend can keep the points resident); `cache`, when given, must be
/// [`crate::native::KeyCache::new`] of `pk` (build it once per key and keep it).
#[allow(clippy::too_many_arguments)]
pub fn prove_native<C: Circuit<Fr>>(
    backend: &dyn gpu::ComputeBackend,
    params: &params::Srs,
    bases: &crate::native::SrsBases,
    pk: &ProvingKey<G1Affine>,
    cache: Option<&crate::native::KeyCache>,
    circuit: &C,
    instances: &[Fr],
    rng: impl RngCore,
) -> Result<Vec<u8>, EngineError> {
    prove_native_with(
        backend,
        params,
        bases,
        pk,
        cache,
        circuit,
        instances,
        rng,
        Transcript::Poseidon,
    )
}

/// [`prove_native`] with the given transcript.
#[allow(clippy::too_many_arguments)]
pub fn prove_native_with<C: Circuit<Fr>>(
    backend: &dyn gpu::ComputeBackend,
    params: &params::Srs,
    bases: &crate::native::SrsBases,
    pk: &ProvingKey<G1Affine>,
    cache: Option<&crate::native::KeyCache>,
    circuit: &C,
    instances: &[Fr],
    mut rng: impl RngCore,
    transcript: Transcript,
) -> Result<Vec<u8>, EngineError> {
    let proof = match transcript {
        Transcript::Poseidon => {
            let mut t = PoseidonTranscript::<NativeLoader, Vec<u8>>::init(Vec::new());
            crate::native::create_proof(
                backend,
                params,
                bases,
                pk,
                cache,
                circuit,
                &[instances],
                &mut rng,
                &mut t,
            )?;
            t.finalize()
        }
        Transcript::Keccak => {
            let mut t = <EvmWriter as TranscriptWriterBuffer<_, G1Affine, _>>::init(Vec::new());
            crate::native::create_proof(
                backend,
                params,
                bases,
                pk,
                cache,
                circuit,
                &[instances],
                &mut rng,
                &mut t,
            )?;
            TranscriptWriterBuffer::<_, G1Affine, _>::finalize(t)
        }
    };
    // The proof is checked before it leaves: a wrong value from any step (a device that computed
    // wrongly, a bug) fails here, at the cost of one verification (6-7 ms for a k=13 chunk on
    // the 2-core VM), instead of at the coordinator.
    let started = std::time::Instant::now();
    verify_with(params, pk.get_vk(), instances, &proof, transcript)
        .map_err(|e| crate::native::NativeError::NotVerified(crate::report::error_line(&e)))?;
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "native proof verified before it is returned"
    );
    Ok(proof)
}

/// Verifies `proof` (Poseidon transcript) against `vk` and `instances`, including the final
/// pairing check. The proof must be read to its last byte: trailing bytes would make one proof
/// have many encodings.
pub fn verify(
    params: &params::Srs,
    vk: &VerifyingKey<G1Affine>,
    instances: &[Fr],
    proof: &[u8],
) -> Result<(), EngineError> {
    verify_with(params, vk, instances, proof, Transcript::Poseidon)
}

/// [`verify`] for a proof made with the given transcript.
pub fn verify_with(
    params: &params::Srs,
    vk: &VerifyingKey<G1Affine>,
    instances: &[Fr],
    proof: &[u8],
    transcript: Transcript,
) -> Result<(), EngineError> {
    fn run<E: EncodedChallenge<G1Affine>, T: TranscriptRead<G1Affine, E>>(
        params: &params::Srs,
        vk: &VerifyingKey<G1Affine>,
        instances: &[Fr],
        mut transcript: T,
    ) -> Result<(), EngineError> {
        let strategy = SingleStrategy::new(params.verifier_params());
        verify_proof::<KZGCommitmentScheme<Bn256>, VerifierSHPLONK<'_, Bn256>, _, _, _>(
            params.verifier_params(),
            vk,
            strategy,
            &[&[instances]],
            &mut transcript,
        )
        .map_err(|e| EngineError::Rejected(format!("{e:?}")))
    }
    let mut reader = Cursor::new(proof);
    match transcript {
        Transcript::Poseidon => run(
            params,
            vk,
            instances,
            PoseidonTranscript::<NativeLoader, &mut Cursor<&[u8]>>::from_spec(
                &mut reader,
                POSEIDON_SPEC.clone(),
            ),
        )?,
        Transcript::Keccak => run(
            params,
            vk,
            instances,
            <EvmTranscript<G1Affine, NativeLoader, &mut Cursor<&[u8]>, Vec<u8>> as TranscriptReadBuffer<
                _,
                G1Affine,
                _,
            >>::init(&mut reader),
        )?,
    }
    let read = reader.position();
    if read != proof.len() as u64 {
        return Err(EngineError::Rejected(format!(
            "{} trailing bytes after the proof",
            proof.len() as u64 - read
        )));
    }
    Ok(())
}

/// Verifies a proof (SHPLONK, Poseidon transcript) with snark-verifier's native PLONK verifier:
/// the same verifier logic the batch circuit runs in-circuit, here on native field elements,
/// including the final pairing. For an aggregation proof, `accumulator_indices` names the public
/// inputs that carry its deferred KZG accumulator, and that accumulator is decided too.
///
/// An independent second verifier next to [`verify`] (halo2-axiom's), for cross-checks.
pub fn verify_with_snark_verifier(
    params: &params::Srs,
    vk: &VerifyingKey<G1Affine>,
    instances: &[Fr],
    proof: &[u8],
    accumulator_indices: Option<Vec<(usize, usize)>>,
) -> Result<(), EngineError> {
    use snark_verifier_sdk::snark_verifier::pcs::kzg::KzgDecidingKey;
    use snark_verifier_sdk::snark_verifier::system::halo2::{compile, Config};
    use snark_verifier_sdk::snark_verifier::verifier::SnarkVerifier;
    use snark_verifier_sdk::{PlonkVerifier, SHPLONK};

    let run = || -> Result<(), String> {
        let protocol = compile(
            params,
            vk,
            Config::kzg()
                .with_num_instance(vec![instances.len()])
                .with_accumulator_indices(accumulator_indices),
        );
        let dk: KzgDecidingKey<Bn256> = (params.get_g()[0], params.g2(), params.s_g2()).into();
        let instances = vec![instances.to_vec()];
        let mut transcript =
            PoseidonTranscript::<NativeLoader, &[u8]>::from_spec(proof, POSEIDON_SPEC.clone());
        let parsed =
            PlonkVerifier::<SHPLONK>::read_proof(&dk, &protocol, &instances, &mut transcript)
                .map_err(|e| format!("unreadable proof: {e:?}"))?;
        PlonkVerifier::<SHPLONK>::verify(&dk, &protocol, &instances, &parsed)
            .map_err(|e| format!("{e:?}"))
    };
    // snark-verifier asserts on some malformed inputs instead of returning an error.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(EngineError::Rejected(format!("snark-verifier: {e}"))),
        Err(_) => Err(EngineError::Rejected(
            "snark-verifier: the verifier panicked on this proof".into(),
        )),
    }
}
