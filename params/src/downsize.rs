//! Smaller SRSs from larger ones, and the params-directory conventions.

use std::fs;
use std::path::{Path, PathBuf};

use halo2_proofs::poly::commitment::{Params, ParamsProver};

use crate::format::{g2_offset, SrsFile};
use crate::lagrange::lagrange_from_monomial;
use crate::{
    assemble, dev_setup, file_name, parse_file_name, path_for, read_file, write_file, ParamsError,
    Section, Srs, DEV_SEED_DEFAULT,
};

/// The SRS of size `2^k` contained in `srs`: the first `2^k` powers, the same
/// `g2` and `s_g2`, and the Lagrange basis of the smaller domain recomputed
/// from the powers (an inverse FFT over G1). Errors if `k > srs.k()`.
pub fn downsize(srs: &Srs, k: u32) -> Result<Srs, ParamsError> {
    let from = srs.k();
    if k > from {
        return Err(ParamsError::DownsizeTooLarge { from, to: k });
    }
    if k == from {
        return Ok(srs.clone());
    }
    let g = srs.get_g()[..1usize << k].to_vec();
    let g_lagrange = lagrange_from_monomial(&g, k);
    Ok(assemble(k, g, g_lagrange, srs.g2(), srs.s_g2()))
}

/// Reads the SRS of size `2^k` out of the file `from` without reading all of
/// it: the header (whose length is validated as in [`read_file`]), the first
/// `2^k` powers (each point checked), then a seek to `g2` and `s_g2`.
fn read_downsized(from: &Path, k: u32) -> Result<Srs, ParamsError> {
    let mut file = SrsFile::open(from, false)?;
    let source_k = file.k();
    if k > source_k {
        return Err(ParamsError::DownsizeTooLarge {
            from: source_k,
            to: k,
        });
    }
    if k == source_k {
        // The stored Lagrange basis is cheaper to read than to recompute.
        return file.read_all();
    }
    let g = file.read_g1(Section::G, 1usize << k)?;
    file.seek_to(g2_offset(source_k))?;
    let g2 = file.read_g2(Section::G2)?;
    let s_g2 = file.read_g2(Section::SG2)?;
    let g_lagrange = lagrange_from_monomial(&g, k);
    Ok(assemble(k, g, g_lagrange, g2, s_g2))
}

/// Writes the SRS of size `2^k` derived from the file `from` to `out`
/// (atomically, see [`write_file`]). Only the first `2^k` powers and the G2
/// points of the source are read, so a huge source is fine.
pub fn downsize_file(from: &Path, k: u32, out: &Path) -> Result<(), ParamsError> {
    let srs = read_downsized(from, k)?;
    write_file(&srs, out)
}

/// Loads the SRS for `k` from the params directory `dir`: `kzg_bn254_{k}.srs`
/// if present, else the smallest `kzg_bn254_{k'}.srs` with `k' > k`, downsized
/// in memory (reading only the part it needs). [`ParamsError::NotFound`] lists
/// what the directory holds if neither exists.
pub fn load(dir: &Path, k: u32) -> Result<Srs, ParamsError> {
    let exact = path_for(dir, k);
    if exact.is_file() {
        check_header_k(&exact, k)?;
        return read_file(&exact);
    }
    let available = list_srs_files(dir)?;
    match available.iter().find(|&&have| have > k) {
        Some(&bigger) => {
            let path = path_for(dir, bigger);
            check_header_k(&path, bigger)?;
            read_downsized(&path, k)
        }
        None => Err(ParamsError::NotFound {
            dir: dir.to_path_buf(),
            k,
            wanted: file_name(k),
            available,
        }),
    }
}

/// Makes sure `dir` holds an SRS file for `k`: if `kzg_bn254_{k}.srs` is
/// missing, generates the **insecure** development SRS
/// (`dev_setup(k, DEV_SEED_DEFAULT)`) and writes it there. An existing file
/// is not regenerated; its header and length are checked (cheaply, without
/// reading the points). Returns the file's path.
pub fn ensure_dev(dir: &Path, k: u32, progress: bool) -> Result<PathBuf, ParamsError> {
    let path = path_for(dir, k);
    if path.exists() {
        check_header_k(&path, k)?;
        return Ok(path);
    }
    let srs = dev_setup(k, DEV_SEED_DEFAULT, progress)?;
    write_file(&srs, &path)?;
    Ok(path)
}

/// A file is trusted by its header, not its name: `kzg_bn254_{k}.srs` must say `k` in its header
/// (checked cheaply, without reading the points).
fn check_header_k(path: &Path, k: u32) -> Result<(), ParamsError> {
    let file = SrsFile::open(path, false)?;
    if file.k() != k {
        return Err(ParamsError::HeaderKMismatch {
            path: path.to_path_buf(),
            expected: k,
            found: file.k(),
        });
    }
    Ok(())
}

/// The `k` of every `kzg_bn254_{k}.srs` regular file in `dir`, ascending.
fn list_srs_files(dir: &Path) -> Result<Vec<u32>, ParamsError> {
    let entries = fs::read_dir(dir).map_err(|e| ParamsError::io("list directory", dir, e))?;
    let mut ks = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ParamsError::io("list directory", dir, e))?;
        let Some(k) = entry.file_name().to_str().and_then(parse_file_name) else {
            continue;
        };
        if entry.path().is_file() {
            ks.push(k);
        }
    }
    ks.sort_unstable();
    Ok(ks)
}
