//! What L1 needs from a circuit: its Solidity verifier and the calldata that verifier reads.
//!
//! The verifier is snark-verifier's: its EVM loader runs the same PLONK/SHPLONK verifier logic the
//! batch circuit runs in-circuit, recording each operation as EVM assembly, for proofs made with
//! the Keccak transcript ([`crate::engine::Transcript::Keccak`]). For an aggregation circuit the
//! generated code also decides the KZG accumulator carried in its public inputs, so one pairing
//! check on L1 covers every proof aggregated below it.
//!
//! The contract (`Halo2Verifier`, `pragma solidity 0.8.19`) has no ABI functions: its fallback
//! reads the calldata as the public inputs (32 bytes each, big-endian) followed by the proof
//! bytes, returns nothing on success and reverts otherwise.

use std::rc::Rc;

use halo2_proofs::plonk::VerifyingKey;
use halo2_proofs::poly::commitment::ParamsProver;
use halo2curves::bn256::{Bn256, Fq, Fr, G1Affine};
use snark_verifier_sdk::snark_verifier::loader::evm::EvmLoader;
use snark_verifier_sdk::snark_verifier::pcs::kzg::KzgDecidingKey;
use snark_verifier_sdk::snark_verifier::system::halo2::transcript::evm::EvmTranscript;
use snark_verifier_sdk::snark_verifier::system::halo2::{compile, Config};
use snark_verifier_sdk::snark_verifier::verifier::SnarkVerifier;
use snark_verifier_sdk::{PlonkVerifier, SHPLONK};

/// The Solidity compiler version the generated verifier pins.
pub const SOLC_VERSION: &str = "0.8.19";
/// The contract name in the generated source.
pub const VERIFIER_CONTRACT: &str = "Halo2Verifier";

/// The generator failed (snark-verifier asserts instead of returning errors on some inputs).
#[derive(Debug, thiserror::Error)]
#[error("Solidity verifier generation failed: {0}")]
pub struct GenerateError(String);

/// Solidity source of the verifier for proofs of `vk` with `num_instances` public inputs (one
/// instance column) made with the Keccak transcript. `accumulator_indices`: for an aggregation
/// circuit, the public inputs (column 0, row i) that carry its KZG accumulator limbs.
pub fn verifier_solidity(
    params: &params::Srs,
    vk: &VerifyingKey<G1Affine>,
    num_instances: usize,
    accumulator_indices: Option<Vec<(usize, usize)>>,
) -> Result<String, GenerateError> {
    let run = || -> Result<String, GenerateError> {
        let protocol = compile(
            params,
            vk,
            Config::kzg()
                .with_num_instance(vec![num_instances])
                .with_accumulator_indices(accumulator_indices),
        );
        let dk: KzgDecidingKey<Bn256> = (params.get_g()[0], params.g2(), params.s_g2()).into();
        let loader = EvmLoader::new::<Fq, Fr>();
        let protocol = protocol.loaded(&loader);
        let mut transcript = EvmTranscript::<G1Affine, Rc<EvmLoader>, _, _>::new(&loader);
        let instances = transcript.load_instances(vec![num_instances]);
        let proof =
            PlonkVerifier::<SHPLONK>::read_proof(&dk, &protocol, &instances, &mut transcript)
                .map_err(|e| GenerateError(format!("{e:?}")))?;
        PlonkVerifier::<SHPLONK>::verify(&dk, &protocol, &instances, &proof)
            .map_err(|e| GenerateError(format!("{e:?}")))?;
        Ok(loader.solidity_code())
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
        .unwrap_or_else(|_| Err(GenerateError("snark-verifier panicked".into())))
}

/// A field element as the EVM reads it: 32 bytes, big-endian.
pub fn fr_be(x: &Fr) -> [u8; 32] {
    let mut b = x.to_bytes();
    b.reverse();
    b
}

/// The verifier's calldata: the public inputs (32 bytes each, big-endian), then the proof.
pub fn calldata(instances: &[Fr], proof: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(instances.len() * 32 + proof.len());
    for x in instances {
        out.extend_from_slice(&fr_be(x));
    }
    out.extend_from_slice(proof);
    out
}
