//! KZG parameters (structured reference strings, "SRS") for BN254, in halo2's
//! `ParamsKZG` file format.
//!
//! * [`read_file`] / [`write_file`]: strict, streaming reader and atomic writer
//!   for halo2's raw-bytes format (readable by `ParamsKZG::<Bn256>::read`).
//! * [`dev_setup`]: fast, deterministic, **insecure** development SRS
//!   (fixed-base windowed scalar multiplication instead of halo2's one
//!   variable-base multiplication per point).
//! * [`verify`] / [`verify_file`]: pairing and Lagrange-basis consistency checks.
//! * [`downsize`] / [`downsize_file`] / [`load`]: derive a smaller SRS from a
//!   larger one without reading the whole source.
//!
//! # File format
//!
//! `k: u32` little-endian, then `2^k` G1 points `g[i] = s^i·G`, then `2^k` G1
//! points `g_lagrange[i] = L_i(s)·G`, then the G2 points `g2` and `s·g2`. Every
//! point is its affine coordinates as raw Montgomery limbs
//! (`SerdeObject::to_raw_bytes`): 64 bytes per G1 point, 128 per G2 point.
//! The file name convention is `kzg_bn254_{k}.srs` ([`file_name`]).

use std::path::{Path, PathBuf};

mod dev;
mod downsize;
mod error;
mod fixed_base;
mod format;
mod lagrange;
mod verify;

pub use dev::{dev_secret, dev_setup, DEV_SECRET_DOMAIN, DEV_SEED_DEFAULT};
pub use downsize::{downsize, downsize_file, ensure_dev, load};
pub use error::{ParamsError, Section};
pub use format::{expected_file_len, read_file, write_file, MAX_K};
pub use verify::{lagrange_points, verify, verify_file, VerifyReport};

/// Re-exported so callers can name the scalar field without another dependency.
pub use halo2curves::bn256::Fr;

/// A BN254 KZG structured reference string, as halo2 uses it.
pub type Srs = halo2_proofs::poly::kzg::commitment::ParamsKZG<halo2curves::bn256::Bn256>;

/// The file name of the SRS for `k` in a params directory: `kzg_bn254_{k}.srs`.
pub fn file_name(k: u32) -> String {
    format!("kzg_bn254_{k}.srs")
}

/// The path of the SRS for `k` in the params directory `dir`.
pub fn path_for(dir: &Path, k: u32) -> PathBuf {
    dir.join(file_name(k))
}

/// Parses a params-directory file name back into its `k`; only the exact
/// spelling [`file_name`] produces is accepted (no leading zeros, no suffixes).
pub(crate) fn parse_file_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("kzg_bn254_")?.strip_suffix(".srs")?;
    let k: u32 = digits.parse().ok()?;
    (file_name(k) == name).then_some(k)
}

/// Builds a `ParamsKZG` from its parts.
///
/// `ParamsKZG`'s fields are private and its only constructor from parts,
/// `from_parts`, is a method (it ignores `self`). A `k = 0` setup costs two
/// scalar multiplications, so it is used as the throwaway receiver. The seeded
/// RNG keeps this free of OS entropy; the throwaway's secret is never used.
pub(crate) fn assemble(
    k: u32,
    g: Vec<halo2curves::bn256::G1Affine>,
    g_lagrange: Vec<halo2curves::bn256::G1Affine>,
    g2: halo2curves::bn256::G2Affine,
    s_g2: halo2curves::bn256::G2Affine,
) -> Srs {
    use rand_core::SeedableRng;
    let throwaway = Srs::setup(0, rand_chacha::ChaCha20Rng::seed_from_u64(0));
    throwaway.from_parts(k, g, Some(g_lagrange), g2, s_g2)
}
