//! The NTT's host side: the twiddle and coset-shift tables (built on the host, cached on the
//! device per size and direction) and the launch of `ntt_pass` over the passes of
//! [`plan::pass_schedule`]. The kernel is described in `kernels/ntt.cu`.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, LaunchConfig, PushKernelArg};
use halo2curves::bn256::Fr;

use super::{drv, plan, Inner};
use crate::backend::{BackendError, Domain};

/// Output scaling modes of the NTT kernels (`NTT_SCALE_*` in ntt.cu).
const NTT_SCALE_NONE: u32 = 0;
const NTT_SCALE_CONST: u32 = 1;
const NTT_SCALE_POWERS: u32 = 2;

/// Per (log_n, direction) NTT tables on the device.
pub(super) struct NttTables {
    /// `w^e`, e < n/2 (w = ω or ω^-1), as split powers: `w^e = lo[e & (2^bits - 1)] ·
    /// hi[e >> bits]` ([`plan::twiddle_tables`]: by default `lo` holds all n/2 powers; with
    /// [`split_twiddles`] about sqrt(n/2) each); the kernel builds each block's twiddles from them.
    tw_lo: CudaSlice<u32>,
    tw_hi: CudaSlice<u32>,
    tw_bits: u32,
    /// `n^-1` (inverse) or 1 (forward), 8 limbs.
    scale: CudaSlice<u32>,
}

/// Split power tables of a coset shift s: `s^i` (forward) or `n^-1·s^-i` (inverse).
pub(super) struct ShiftTables {
    lo: CudaSlice<u32>,
    hi: CudaSlice<u32>,
    lo_bits: u32,
}

/// Shift tables kept at most (the extended coset's parts of a few domain sizes); beyond that the
/// cache starts again.
const MAX_SHIFT_TABLES: usize = 64;

/// `GPU_NTT_SPLIT_TWIDDLES=1` gives the NTT two twiddle tables of about sqrt(n/2) elements
/// instead of one of n/2 (192 KiB instead of 256 MiB a direction at 2^24), at one more field
/// product per twiddle a block builds (about 2/s more a butterfly in a pass of s stages after
/// the first): for a device short of memory, and for A/B timing on a GPU. Read when a size's
/// tables are built (they are cached per mode).
fn split_twiddles() -> bool {
    std::env::var("GPU_NTT_SPLIT_TWIDDLES").is_ok_and(|v| v == "1")
}

fn upload_fr(
    stream: &Arc<CudaStream>,
    v: &[Fr],
    what: &str,
) -> Result<CudaSlice<u32>, BackendError> {
    let limbs = plan::fr_to_limbs(v)?;
    stream.clone_htod(&limbs).map_err(drv(what))
}

pub(super) fn ntt_tables(
    inner: &mut Inner,
    domain: &Domain,
    forward: bool,
) -> Result<Arc<NttTables>, BackendError> {
    let split = split_twiddles();
    let key = (domain.log_n(), forward, split);
    if let Some(t) = inner.ntt_tables.get(&key) {
        return Ok(t.clone());
    }
    let log_n = domain.log_n();
    let w = if forward {
        domain.omega()
    } else {
        domain.omega_inv()
    };
    let tw = plan::twiddle_tables(w, log_n, split);
    let scale = if forward {
        ff::Field::ONE
    } else {
        domain.n_inv()
    };
    let tables = Arc::new(NttTables {
        tw_lo: upload_fr(&inner.stream, &tw.lo, "uploading twiddles")?,
        tw_hi: upload_fr(&inner.stream, &tw.hi, "uploading twiddles")?,
        tw_bits: tw.lo_bits,
        scale: upload_fr(&inner.stream, &[scale], "uploading n^-1")?,
    });
    inner.ntt_tables.insert(key, tables.clone());
    Ok(tables)
}

pub(super) fn shift_tables(
    inner: &mut Inner,
    domain: &Domain,
    forward: bool,
    shift: Fr,
) -> Result<Arc<ShiftTables>, BackendError> {
    let key = (domain.log_n(), forward, ff::PrimeField::to_repr(&shift));
    if let Some(t) = inner.shift_tables.get(&key) {
        return Ok(t.clone());
    }
    let split = plan::shift_tables(domain, forward, shift)?;
    let tables = Arc::new(ShiftTables {
        lo: upload_fr(&inner.stream, &split.lo, "uploading coset tables")?,
        hi: upload_fr(&inner.stream, &split.hi, "uploading coset tables")?,
        lo_bits: split.lo_bits,
    });
    if inner.shift_tables.len() >= MAX_SHIFT_TABLES {
        inner.shift_tables.clear();
    }
    inner.shift_tables.insert(key, tables.clone());
    Ok(tables)
}

/// Runs the transform of `data` into `scratch` (the result is in `scratch`).
pub(super) fn ntt_launch(
    inner: &Inner,
    t: &NttTables,
    powers: Option<&ShiftTables>,
    data: &CudaSlice<u32>,
    scratch: &mut CudaSlice<u32>,
    log_n: u32,
    forward: bool,
) -> Result<(), BackendError> {
    let k = &inner.kernels;
    let s = &inner.stream;
    let coset = powers.is_some();
    let pre = if forward && coset {
        NTT_SCALE_POWERS
    } else {
        NTT_SCALE_NONE
    };
    let post = match (forward, coset) {
        (true, _) => NTT_SCALE_NONE,
        (false, false) => NTT_SCALE_CONST,
        (false, true) => NTT_SCALE_POWERS,
    };
    // Without a shift the kernels never read the power tables; the twiddles stand in for them.
    let (lo, hi, lo_bits) = match powers {
        Some(p) => (&p.lo, &p.hi, p.lo_bits),
        None => (&t.tw_lo, &t.tw_lo, 0u32),
    };
    let schedule = plan::pass_schedule(log_n);
    let mut m = 0u32;
    for (p, &stages) in schedule.iter().enumerate() {
        // The first pass gathers `data` into `scratch` in bit-reversed order, with the input
        // scaling `pre` (read only when gathering); the later ones work on `scratch` in place.
        let gather = u32::from(p == 0);
        let post_mode = if p + 1 == schedule.len() {
            post
        } else {
            NTT_SCALE_NONE
        };
        let cfg = LaunchConfig {
            grid_dim: (1u32 << (log_n - stages), 1, 1),
            block_dim: (1u32 << (stages - 1), 1, 1),
            shared_mem_bytes: 48u32 << stages,
        };
        // SAFETY: ntt_pass(const u32* src, u32* data, u32 log_n, u32 m, u32 s,
        // const u32* tw_lo, const u32* tw_hi, u32 tw_bits, u32 gather, u32 pre, u32 post,
        // const u32* scale, const u32* lo, const u32* hi, u32 lo_bits): stages m..m+s-1 of a
        // transform of size 2^log_n into `scratch` (n·8 limbs; `data`, a different buffer of the
        // same length, is read only by the first pass, element bitrev(i) for element i, a
        // bijection); 2^(log_n - s) blocks of 2^(s-1) threads each own a disjoint group of 2^s
        // elements of `scratch`; 2^s·48 bytes of shared memory (≤ 48 KiB, the default limit,
        // since s ≤ 10); the split twiddle tables cover every exponent below n/2 and were built
        // for this log_n and direction.
        unsafe {
            s.launch_builder(&k.ntt_pass)
                .arg(data)
                .arg(&mut *scratch)
                .arg(&log_n)
                .arg(&m)
                .arg(&stages)
                .arg(&t.tw_lo)
                .arg(&t.tw_hi)
                .arg(&t.tw_bits)
                .arg(&gather)
                .arg(&pre)
                .arg(&post_mode)
                .arg(&t.scale)
                .arg(lo)
                .arg(hi)
                .arg(&lo_bits)
                .launch(cfg)
        }
        .map_err(drv("launching ntt_pass"))?;
        m += stages;
    }
    Ok(())
}
