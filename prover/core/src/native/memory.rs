//! How much device memory the native engine needs for a proving key: what a node checks against
//! the free memory of each device at start, instead of failing mid-proof.
//!
//! The estimate follows the engine's data path (see the module documentation of
//! [`super::quotient`] and [`super::KeyCache`]); `prover/core/tests/engine/native_cuda.rs` checks it
//! against the peak the emulated device measures for a whole proof.

use gpu::cuda::plan;
use halo2_proofs::plonk::ProvingKey;
use halo2curves::bn256::G1Affine;

use super::permutation::chunk_len;
use super::NativeError;

/// Bytes of one field element on the device.
const FR: u64 = 32;
/// Bytes of one SRS point on the device (affine, x and y).
const POINT: u64 = 64;

/// Device memory one proving key needs, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceNeed {
    /// Kept per key and device for every later proof: the [`super::KeyCache`] columns.
    pub key_cache: u64,
    /// Kept per device for every proof of this size: the SRS points (both bases) and the NTT
    /// tables.
    pub shared: u64,
    /// Held while one proof runs (the peak of its steps): this proof's columns, one part of the
    /// parts' columns in the quotient step, the backend's scratch.
    pub per_proof: u64,
}

impl DeviceNeed {
    /// The whole need of `workers` proofs at once on one device with this key.
    pub fn total(&self, workers: u64) -> u64 {
        self.key_cache + self.shared + workers.max(1) * self.per_proof
    }
}

/// The device memory the native engine needs to prove with `pk`.
pub fn device_need(pk: &ProvingKey<G1Affine>) -> Result<DeviceNeed, NativeError> {
    let vk = pk.get_vk();
    let cs = vk.cs();
    let domain = vk.get_domain();
    let k = domain.k();
    let n = 1u64 << k;
    let fixed = cs.num_fixed_columns() as u64;
    let advice = cs.num_advice_columns() as u64;
    let instance = cs.num_instance_columns() as u64;
    let sigmas = pk.permutation().permutations().len() as u64;
    let lookups = cs.lookups().len() as u64;
    let products = if sigmas == 0 {
        0
    } else {
        sigmas.div_ceil(chunk_len(pk)? as u64)
    };
    let pieces = domain.get_quotient_poly_degree() as u64;

    // KeyCache on a device: fixed and σ values and coefficients, ω^i, and the coefficients of
    // l0, l_last and l_active, all on the domain (the quotient's parts are computed from
    // them in each proof).
    let key_cache = FR * ((2 * (fixed + sigmas) + 1 + 3) * n);
    // The SRS points in both bases (`g` and `g_lagrange`) and the NTT tables of the domain,
    // both directions.
    let shared = 2 * POINT * n + 2 * plan::ntt_table_bytes(k) as u64;

    // Held from the witness to the lookup products: advice and instance values and
    // coefficients, each lookup's product and permuted columns' coefficients, the permutation
    // products, the random polynomial. The values are dropped after the lookup products.
    let coeffs = (advice + instance) + 3 * lookups + products + 1;
    let held = coeffs + advice + instance;
    // While a lookup's product is made: its compressed and permuted values (4), the inverted
    // denominators and the product (2).
    let lookup_step = held + 6;
    // The quotient, one part at a time: the most columns of the part its
    // programs hold at once (key's and this proof's, see `quotient::peak_part_columns`), a
    // stand-in for the others, the part's values, h's pieces and the tail accumulating, and the
    // NTT's scratch.
    let part_columns = super::quotient::peak_part_columns(pk)? as u64;
    let quotient = coeffs + part_columns + 1 + 1 + (pieces + 1) + 1;
    // SHPLONK: h's pieces and h, one quotient per rotation set (at most 8), h and h'.
    let opening = coeffs + pieces + 1 + 8 + 2;
    let elements = n * quotient.max(opening).max(lookup_step);
    let per_proof = FR * elements + plan::msm_scratch_bytes(n as usize) as u64;
    Ok(DeviceNeed {
        key_cache,
        shared,
        per_proof,
    })
}
