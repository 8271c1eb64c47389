//! The key cache's extended-coset columns on disk, next to the proving key (`{entry}.coset`), so
//! that a one-shot proof (`prover prove`, the C ABI) on the CPU backend does not redo their
//! coset NTTs: 45.7 s for the batch circuit at k=20 on the 2-core VM, against reading and hashing
//! the file.
//!
//! Layout: the magic `PNCOSET1`, the proving key's SHA-256 (64 hex digits), the coset size (u64
//! LE) and the number of columns (u32 LE), then each column's values as raw field elements (32
//! bytes each, halo2curves' raw Montgomery form), then the SHA-256 of everything before it. A
//! file for another key, of another size, cut short, or failing its hash is refused, and the
//! caller builds the columns again and rewrites it. Written to a temporary file, synced and
//! renamed, so readers see all or nothing.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use halo2curves::bn256::Fr;
use halo2curves::serde::SerdeObject;
use sha2::{Digest, Sha256};

/// Why a coset file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CosetFileError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

const MAGIC: &[u8; 8] = b"PNCOSET1";
const ELEMENT: usize = 32;

fn io(path: &Path) -> impl Fn(std::io::Error) -> CosetFileError + '_ {
    move |source| CosetFileError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn header(pk_sha256: &str, size: usize, count: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(8 + 64 + 12);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(pk_sha256.as_bytes());
    h.extend_from_slice(&(size as u64).to_le_bytes());
    h.extend_from_slice(&(count as u32).to_le_bytes());
    h
}

/// Writes `columns` (each `size` long) for the key whose SHA-256 is `pk_sha256`.
pub fn write(
    path: &Path,
    pk_sha256: &str,
    size: usize,
    columns: &[&[Fr]],
) -> Result<(), CosetFileError> {
    if let Some(c) = columns.iter().find(|c| c.len() != size) {
        return Err(CosetFileError::Invalid {
            path: path.display().to_string(),
            reason: format!("a column of {} values, the coset has {size}", c.len()),
        });
    }
    let tmp = path.with_extension(format!("coset.tmp{}", std::process::id()));
    let result = (|| {
        let file = File::create(&tmp).map_err(io(&tmp))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut hash = Sha256::new();
        let head = header(pk_sha256, size, columns.len());
        hash.update(&head);
        out.write_all(&head).map_err(io(&tmp))?;
        let mut buf = Vec::with_capacity(ELEMENT * 4096);
        for column in columns {
            for chunk in column.chunks(4096) {
                buf.clear();
                for v in chunk {
                    v.write_raw(&mut buf).map_err(io(&tmp))?;
                }
                hash.update(&buf);
                out.write_all(&buf).map_err(io(&tmp))?;
            }
        }
        out.write_all(&hash.finalize()).map_err(io(&tmp))?;
        let file = out.into_inner().map_err(|e| CosetFileError::Io {
            path: tmp.display().to_string(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads `count` columns of `size` values for the key whose SHA-256 is `pk_sha256`; `None` when
/// there is no file.
pub fn read(
    path: &Path,
    pk_sha256: &str,
    size: usize,
    count: usize,
) -> Result<Option<Vec<Vec<Fr>>>, CosetFileError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let invalid = |reason: String| CosetFileError::Invalid {
        path: path.display().to_string(),
        reason,
    };
    let expected_len = (8 + 64 + 12 + count * size * ELEMENT + 32) as u64;
    let len = file.metadata().map_err(io(path))?.len();
    if len != expected_len {
        return Err(invalid(format!(
            "{len} bytes, {expected_len} expected for {count} columns of {size} values"
        )));
    }
    let mut input = BufReader::with_capacity(1 << 20, file);
    let mut hash = Sha256::new();
    let want = header(pk_sha256, size, count);
    let mut head = vec![0u8; want.len()];
    input.read_exact(&mut head).map_err(io(path))?;
    if head != want {
        return Err(invalid("made for another proving key or coset size".into()));
    }
    hash.update(&head);
    let mut columns = Vec::with_capacity(count);
    let mut buf = vec![0u8; ELEMENT * 4096];
    for _ in 0..count {
        let mut column = Vec::with_capacity(size);
        let mut left = size;
        while left > 0 {
            let take = left.min(4096);
            let bytes = &mut buf[..take * ELEMENT];
            input.read_exact(bytes).map_err(io(path))?;
            hash.update(&bytes[..]);
            for raw in bytes.chunks_exact(ELEMENT) {
                column.push(
                    Fr::from_raw_bytes(raw)
                        .ok_or_else(|| invalid("a value is not a field element".into()))?,
                );
            }
            left -= take;
        }
        columns.push(column);
    }
    let mut digest = [0u8; 32];
    input.read_exact(&mut digest).map_err(io(path))?;
    if digest[..] != hash.finalize()[..] {
        return Err(invalid("its SHA-256 does not match its contents".into()));
    }
    Ok(Some(columns))
}
