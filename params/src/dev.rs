//! Fast, deterministic, INSECURE development SRS.

use ff::{BatchInvert, Field, PrimeField};
use group::prime::PrimeCurveAffine;
use group::Curve;
use halo2curves::bn256::{Fr, G1Affine, G2Affine, G1};
use indicatif::{ProgressBar, ProgressStyle};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::fixed_base::FixedBaseTable;
use crate::{assemble, ParamsError, Srs, MAX_K};

/// The seed of the development SRS that [`crate::ensure_dev`] generates and
/// [`crate::verify_file`] recognises.
pub const DEV_SEED_DEFAULT: u64 = 0;

/// Domain-separation prefix hashed with the seed to derive the development secret.
pub const DEV_SECRET_DOMAIN: &[u8] = b"prover-node insecure development SRS v1";

/// Points generated per parallel task (and per progress-bar tick).
const CHUNK: usize = 1 << 11;

/// The toxic-waste secret `s` of the development SRS for `seed`.
///
/// **This value is public.** It is `Fr::random` drawn from a ChaCha20 RNG
/// seeded with `sha256(DEV_SECRET_DOMAIN || seed.to_le_bytes())`, so anyone
/// can recompute it and forge proofs against a development SRS. Never use a
/// development SRS for anything that needs soundness.
pub fn dev_secret(seed: u64) -> Fr {
    let mut h = Sha256::new();
    h.update(DEV_SECRET_DOMAIN);
    h.update(seed.to_le_bytes());
    let rng = ChaCha20Rng::from_seed(h.finalize().into());
    Fr::random(rng)
}

/// Generates the **insecure** development SRS of size `2^k` for `seed`.
///
/// The secret is [`dev_secret`]`(seed)` and does not depend on `k`, so the `g`
/// of a smaller `k` is a prefix of the `g` of a larger one: development SRSs of
/// different sizes with the same seed are mutually consistent (as proof
/// aggregation requires), and [`crate::downsize`] of one equals another.
///
/// The result equals what `ParamsKZG::<Bn256>::setup(k, _)` would give for the
/// same secret, but is computed with a fixed-base windowed multiplication of the
/// generator (a table of `d·2^(c·w)·G`, then about 22 batched affine additions
/// per point and no doublings) instead of one variable-base double-and-add per
/// point, which makes it 25–40× faster; the Lagrange scalars
/// `L_i(s) = (s^n − 1)/n · ω^i/(s − ω^i)` use one batch inversion per chunk.
/// With `progress`, a progress bar over the `2·2^k` points is drawn on stderr.
pub fn dev_setup(k: u32, seed: u64, progress: bool) -> Result<Srs, ParamsError> {
    if k > MAX_K {
        return Err(ParamsError::UnsupportedK { k, max: MAX_K });
    }
    let n = 1usize << k;
    let s = dev_secret(seed);

    // ω: the primitive 2^k-th root of unity halo2 uses for this domain.
    let mut omega = Fr::ROOT_OF_UNITY;
    for _ in k..Fr::S {
        omega = omega.square();
    }
    let s_n = s.pow_vartime([n as u64]);
    if s_n == Fr::ONE {
        // s is some ω^i: s − ω^i has no inverse.
        return Err(ParamsError::DegenerateSecret { seed, k });
    }
    let n_inv = Option::<Fr>::from(Fr::from(n as u64).invert())
        .ok_or(ParamsError::UnsupportedK { k, max: MAX_K })?;
    let multiplier = (s_n - Fr::ONE) * n_inv;

    let bar = progress_bar(2 * n as u64, progress);
    let c = FixedBaseTable::choose_window(2 * n as u64);
    bar.set_message(format!("table (c = {c})"));
    let table = FixedBaseTable::new(G1::generator(), c);

    bar.set_message("g (powers)");
    let mut g = vec![G1Affine::identity(); n];
    generate(&table, &mut g, &bar, |start, out| {
        let mut x = s.pow_vartime([start as u64]);
        for v in out {
            *v = x;
            x *= s;
        }
    });

    bar.set_message("g_lagrange");
    let mut g_lagrange = vec![G1Affine::identity(); n];
    generate(&table, &mut g_lagrange, &bar, |start, out| {
        let mut w = omega.pow_vartime([start as u64]);
        let mut den = Vec::with_capacity(out.len());
        for v in out.iter_mut() {
            *v = w;
            den.push(s - w);
            w *= omega;
        }
        den.iter_mut().batch_invert();
        for (v, d) in out.iter_mut().zip(&den) {
            *v = multiplier * *v * d;
        }
    });
    bar.finish_and_clear();
    drop(table);

    let g2 = G2Affine::generator();
    let s_g2 = (g2 * s).to_affine();
    Ok(assemble(k, g, g_lagrange, g2, s_g2))
}

/// Fills `out` with `scalar_i·G` in parallel chunks; `scalars(start, buf)`
/// writes the scalars of indices `start..start + buf.len()` into `buf`.
fn generate(
    table: &FixedBaseTable,
    out: &mut [G1Affine],
    bar: &ProgressBar,
    scalars: impl Fn(usize, &mut [Fr]) + Sync,
) {
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(i, dst)| {
        let mut buf = vec![Fr::ZERO; dst.len()];
        scalars(i * CHUNK, &mut buf);
        table.mul_batch(&buf, dst);
        bar.inc(dst.len() as u64);
    });
}

fn progress_bar(len: u64, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "dev SRS {msg} [{elapsed_precise}] {wide_bar} {pos}/{len} points (eta {eta})",
    ) {
        bar.set_style(style);
    }
    bar
}
