//! halo2's raw-bytes `ParamsKZG` file format: strict streaming reader and
//! atomic writer.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ff::PrimeField;
use group::prime::PrimeCurveAffine;
use halo2_proofs::poly::commitment::Params;
use halo2curves::bn256::{Fr, G1Affine, G2Affine};
use halo2curves::serde::SerdeObject;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::{assemble, ParamsError, Section, Srs};

/// The largest supported `k`: BN254's scalar field has 2^28-th roots of unity,
/// so no larger evaluation domain (and no larger halo2 SRS) exists.
pub const MAX_K: u32 = Fr::S;

pub(crate) const HEADER_BYTES: u64 = 4;
pub(crate) const G1_BYTES: usize = 64;
pub(crate) const G2_BYTES: usize = 128;

/// Points decoded per block when streaming (2 MiB of file per block).
const BLOCK_POINTS: usize = 1 << 15;

/// The exact length in bytes of an SRS file for `k`:
/// `4 + 2·2^k·64 + 2·128`.
pub fn expected_file_len(k: u32) -> u64 {
    HEADER_BYTES + 2 * (1u64 << k) * G1_BYTES as u64 + 2 * G2_BYTES as u64
}

/// Offset of the G2 section (`g2`, then `s_g2`) in a file for `k`.
pub(crate) fn g2_offset(k: u32) -> u64 {
    HEADER_BYTES + 2 * (1u64 << k) * G1_BYTES as u64
}

/// An open SRS file whose header and length have been validated.
pub(crate) struct SrsFile {
    path: PathBuf,
    file: File,
    k: u32,
    hasher: Option<Sha256>,
}

impl SrsFile {
    /// Opens `path`, reads the `k` header and checks that the file length is
    /// exactly what `k` requires (before anything large is allocated).
    /// With `hash`, every byte subsequently read (header included) is fed to
    /// a SHA-256 hasher, see [`SrsFile::finish_hash`].
    pub(crate) fn open(path: &Path, hash: bool) -> Result<Self, ParamsError> {
        let mut file = File::open(path).map_err(|e| ParamsError::io("open", path, e))?;
        let actual = file
            .metadata()
            .map_err(|e| ParamsError::io("stat", path, e))?
            .len();
        if actual < HEADER_BYTES {
            return Err(ParamsError::MissingHeader {
                path: path.to_path_buf(),
                actual,
            });
        }
        let mut header = [0u8; 4];
        file.read_exact(&mut header)
            .map_err(|e| ParamsError::io("read header of", path, e))?;
        let k = u32::from_le_bytes(header);
        if k > MAX_K {
            return Err(ParamsError::HeaderKTooLarge {
                path: path.to_path_buf(),
                k,
                max: MAX_K,
            });
        }
        let expected = expected_file_len(k);
        if actual < expected {
            return Err(ParamsError::Truncated {
                path: path.to_path_buf(),
                k,
                expected,
                actual,
            });
        }
        if actual > expected {
            return Err(ParamsError::TrailingBytes {
                path: path.to_path_buf(),
                k,
                expected,
                actual,
            });
        }
        let hasher = hash.then(|| {
            let mut h = Sha256::new();
            h.update(header);
            h
        });
        Ok(SrsFile {
            path: path.to_path_buf(),
            file,
            k,
            hasher,
        })
    }

    /// The `k` from the header.
    pub(crate) fn k(&self) -> u32 {
        self.k
    }

    fn read_bytes(&mut self, buf: &mut [u8]) -> Result<(), ParamsError> {
        self.file
            .read_exact(buf)
            .map_err(|e| ParamsError::io("read", &self.path, e))?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&*buf);
        }
        Ok(())
    }

    /// Seeks to an absolute offset. Not to be mixed with hashing.
    pub(crate) fn seek_to(&mut self, offset: u64) -> Result<(), ParamsError> {
        debug_assert!(self.hasher.is_none(), "seeking breaks the running hash");
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(|e| ParamsError::io("seek in", &self.path, e))?;
        Ok(())
    }

    /// Reads the next `count` G1 points of `section`, checking each (coordinates
    /// below the modulus, on the curve). Decoding is parallel per block.
    pub(crate) fn read_g1(
        &mut self,
        section: Section,
        count: usize,
    ) -> Result<Vec<G1Affine>, ParamsError> {
        let mut out = vec![G1Affine::identity(); count];
        let mut buf = vec![0u8; BLOCK_POINTS.min(count) * G1_BYTES];
        for (block, dst) in out.chunks_mut(BLOCK_POINTS).enumerate() {
            let bytes = &mut buf[..dst.len() * G1_BYTES];
            self.read_bytes(bytes)?;
            let ok = dst
                .par_iter_mut()
                .zip(bytes.par_chunks_exact(G1_BYTES))
                .try_for_each(|(p, raw)| -> Result<(), ()> {
                    *p = G1Affine::from_raw_bytes(raw).ok_or(())?;
                    Ok(())
                });
            if ok.is_err() {
                // Rare path: report the first bad point of the block.
                let first = bytes
                    .chunks_exact(G1_BYTES)
                    .position(|raw| G1Affine::from_raw_bytes(raw).is_none())
                    .unwrap_or(0);
                return Err(ParamsError::InvalidPoint {
                    path: self.path.clone(),
                    section,
                    index: (block * BLOCK_POINTS + first) as u64,
                });
            }
        }
        Ok(out)
    }

    /// Reads the next G2 point (checked like [`SrsFile::read_g1`]).
    pub(crate) fn read_g2(&mut self, section: Section) -> Result<G2Affine, ParamsError> {
        let mut raw = [0u8; G2_BYTES];
        self.read_bytes(&mut raw)?;
        G2Affine::from_raw_bytes(&raw).ok_or_else(|| ParamsError::InvalidPoint {
            path: self.path.clone(),
            section,
            index: 0,
        })
    }

    /// Reads the whole SRS (the file must be positioned just after the header).
    pub(crate) fn read_all(&mut self) -> Result<Srs, ParamsError> {
        let n = 1usize << self.k;
        let g = self.read_g1(Section::G, n)?;
        let g_lagrange = self.read_g1(Section::GLagrange, n)?;
        let g2 = self.read_g2(Section::G2)?;
        let s_g2 = self.read_g2(Section::SG2)?;
        Ok(assemble(self.k, g, g_lagrange, g2, s_g2))
    }

    /// The SHA-256 of everything read so far, if opened with hashing.
    pub(crate) fn finish_hash(self) -> Option<[u8; 32]> {
        self.hasher.map(|h| h.finalize().into())
    }
}

/// Reads an SRS file strictly.
///
/// The file length is checked against the header's `k` before any large
/// allocation (truncated files, trailing bytes and absurd `k` are reported as
/// such), and every point is checked to have coordinates below the field
/// modulus and to lie on its curve; a bad point is reported with its section
/// and index. Points are decoded in parallel.
pub fn read_file(path: &Path) -> Result<Srs, ParamsError> {
    SrsFile::open(path, false)?.read_all()
}

/// Reads an SRS file like [`read_file`] and also returns the SHA-256 of its bytes.
pub(crate) fn read_file_hashed(path: &Path) -> Result<(Srs, [u8; 32]), ParamsError> {
    let mut file = SrsFile::open(path, true)?;
    let srs = file.read_all()?;
    let digest = file.finish_hash().unwrap_or_default();
    Ok((srs, digest))
}

/// Writes `srs` to `path` in halo2's format (exactly what
/// `ParamsKZG::write` produces), atomically: the bytes go to `path.tmp{pid}`, which
/// is fsynced and then renamed over `path`. Parent directories are created.
pub fn write_file(srs: &Srs, path: &Path) -> Result<(), ParamsError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| ParamsError::io("create directory", parent, e))?;
    }
    let tmp = tmp_path(path);
    let written = write_synced(srs, &tmp);
    if written.is_err() {
        // Best effort: do not leave a partial file behind.
        let _ = fs::remove_file(&tmp);
        return written;
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(ParamsError::io("rename into", path, e));
    }
    // Make the rename itself durable. Best effort: not every platform or
    // file system lets a directory be opened and synced, and the data is
    // already safely on disk under one name or the other.
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(dir) = File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

fn write_synced(srs: &Srs, tmp: &Path) -> Result<(), ParamsError> {
    let file = File::create(tmp).map_err(|e| ParamsError::io("create", tmp, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    // halo2's own writer, so the format matches `ParamsKZG::read` by construction.
    srs.write(&mut w)
        .map_err(|e| ParamsError::io("write", tmp, e))?;
    w.flush().map_err(|e| ParamsError::io("write", tmp, e))?;
    let file = w
        .into_inner()
        .map_err(|e| ParamsError::io("write", tmp, e.into_error()))?;
    file.sync_all()
        .map_err(|e| ParamsError::io("fsync", tmp, e))?;
    Ok(())
}

/// `path` with `.tmp` appended to its file name.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    // Per-process name: two processes creating the same file never write into each other's temp.
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}
