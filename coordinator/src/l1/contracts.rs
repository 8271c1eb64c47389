//! The two contracts of settlement: snark-verifier's generated verifier for the circuit whose
//! proofs are settled, and our rollup contract (`coordinator/contracts/Rollup.sol`), compiled
//! with solc and written out as source, creation bytecode (hex) and ABI.

use std::path::Path;

use alloy::primitives::{Address, B256, U256};
use alloy::sol_types::SolValue;

use super::solc::{Compiled, Solc};
use super::L1Error;

/// Source of the rollup contract.
pub const ROLLUP_SOURCE: &str = include_str!("../../contracts/Rollup.sol");
/// EIP-170: the largest runtime bytecode a contract may have on mainnet.
pub const MAX_CODE_SIZE: usize = 24_576;

/// Where the state roots are among a circuit's public inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RootLayout {
    pub num_instances: usize,
    pub old_root_index: usize,
    pub new_root_index: usize,
}

impl RootLayout {
    /// Where `spec`'s circuit puts the roots: a chunk's public inputs are `[old, new, commitment]`;
    /// a batch's or a bundle's, the accumulator limbs then `[old, new, commitment]`.
    pub fn for_circuit(spec: &prover_core::wire::CircuitSpec) -> Self {
        use prover_core::circuits::{batch, chunk};
        use prover_core::wire::CircuitSpec;
        match spec {
            CircuitSpec::Chunk { .. } => Self {
                num_instances: chunk::NUM_INSTANCES,
                old_root_index: 0,
                new_root_index: 1,
            },
            CircuitSpec::Batch { .. } | CircuitSpec::Bundle { .. } => Self {
                num_instances: batch::NUM_INSTANCES,
                old_root_index: batch::ACCUMULATOR_LIMBS,
                new_root_index: batch::ACCUMULATOR_LIMBS + 1,
            },
        }
    }
}

/// Both contracts, compiled.
#[derive(Clone, Debug)]
pub struct Contracts {
    pub verifier_source: String,
    pub verifier: Compiled,
    pub rollup: Compiled,
}

/// Compiles the verifier source (from [`prover_core::evm::verifier_solidity`]) and the rollup
/// contract. The verifier is one assembly block, compiled without the optimizer (as
/// snark-verifier's own tooling does; with it, solc 0.8.19 runs out of stack slots); the rollup
/// contract with it. A verifier whose runtime code is over `max_code_size` (mainnet:
/// [`MAX_CODE_SIZE`]) is refused; `None` for a chain without the limit (a dev chain).
pub fn build(
    solc: &Solc,
    verifier_source: String,
    max_code_size: Option<usize>,
) -> Result<Contracts, L1Error> {
    let mut v = solc.compile(&[("Halo2Verifier.sol", &verifier_source)], None)?;
    let verifier = v
        .remove(prover_core::evm::VERIFIER_CONTRACT)
        .ok_or_else(|| L1Error::Compile("solc returned no Halo2Verifier contract".into()))?;
    if let Some(max) = max_code_size.filter(|max| verifier.deployed_size > *max) {
        return Err(L1Error::Compile(format!(
            "the verifier's runtime code is {} bytes, over the limit of {max} (EIP-170 on \
             mainnet: {MAX_CODE_SIZE}); a circuit with fewer columns has a smaller verifier",
            verifier.deployed_size
        )));
    }
    let mut r = solc.compile(&[("Rollup.sol", ROLLUP_SOURCE)], Some(200))?;
    let rollup = r
        .remove("Rollup")
        .ok_or_else(|| L1Error::Compile("solc returned no Rollup contract".into()))?;
    Ok(Contracts {
        verifier_source,
        verifier,
        rollup,
    })
}

/// The rollup contract's creation code with its constructor arguments.
pub fn rollup_deploy_code(
    rollup: &Compiled,
    verifier: Address,
    layout: RootLayout,
    genesis_root: B256,
) -> Vec<u8> {
    let args = (
        verifier,
        U256::from(layout.num_instances),
        U256::from(layout.old_root_index),
        U256::from(layout.new_root_index),
        genesis_root,
    )
        .abi_encode_params();
    let mut code = rollup.bytecode.clone();
    code.extend_from_slice(&args);
    code
}

/// File names in an output directory.
pub const FILES: [&str; 6] = [
    "Halo2Verifier.sol",
    "Halo2Verifier.bin",
    "Halo2Verifier.abi.json",
    "Rollup.sol",
    "Rollup.bin",
    "Rollup.abi.json",
];

/// Writes both contracts to `dir` (created if needed): `.sol` sources, `.bin` creation code in
/// hex, `.abi.json` ABIs.
pub fn write(dir: &Path, c: &Contracts) -> Result<(), L1Error> {
    let io = |what: &Path, e: std::io::Error| L1Error::Io(format!("{}: {e}", what.display()));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let abi = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let files = [
        (FILES[0], c.verifier_source.clone()),
        (FILES[1], hex::encode(&c.verifier.bytecode)),
        (FILES[2], abi(&c.verifier.abi)),
        (FILES[3], ROLLUP_SOURCE.to_string()),
        (FILES[4], hex::encode(&c.rollup.bytecode)),
        (FILES[5], abi(&c.rollup.abi)),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| io(&path, e))?;
    }
    Ok(())
}

/// Reads the creation code `<dir>/<name>.bin` (hex) written by [`write`].
pub fn read_bytecode(dir: &Path, name: &str) -> Result<Vec<u8>, L1Error> {
    let path = dir.join(format!("{name}.bin"));
    let text = std::fs::read_to_string(&path)
        .map_err(|e| L1Error::Io(format!("{}: {e}", path.display())))?;
    hex::decode(text.trim().trim_start_matches("0x"))
        .map_err(|e| L1Error::Io(format!("{}: not hex bytecode: {e}", path.display())))
}
