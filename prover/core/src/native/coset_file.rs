//! The key's columns on the quotient's cosets on disk, next to the proving key (`{entry}.coset`), part
//! by part, so that the CPU backend neither recomputes their coset NTTs in every process (45.7 s
//! for the batch circuit at k=20 on the 2-core VM) nor holds them in memory: the quotient reads a
//! column of a part when its programs need it ([`super::quotient`]).
//!
//! Layout: the magic `PNCOSET3`, the proving key's SHA-256 (64 hex digits), the domain size n (u64
//! LE), the number of parts and of columns (u32 LE each), the SHA-256 of the parts' shifts
//! ([`super::cosets::Cosets::digest`]: a file for other parts is refused); then for each part, each column's n
//! values as raw field elements (32 bytes each, halo2curves' raw Montgomery form); then the BLAKE3
//! hash of each (part, column) block in that order; then the BLAKE3 hash of the header and that
//! table. (BLAKE3 rather than SHA-256: each proof hashes every block it reads again, 2.5 GB for the
//! batch circuit at k=20, and BLAKE3 does that several times faster.)
//!
//! [`Reader::open`] refuses a file for another key or shape, of the wrong length or whose table
//! fails its hash, and checks every block once; [`Reader::read_column`] checks the block it reads
//! again, so a file damaged later is noticed too. Written to a temporary file, synced and renamed,
//! so readers see all or nothing.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use halo2curves::bn256::Fr;
use halo2curves::serde::SerdeObject;
use rayon::prelude::*;

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

const MAGIC: &[u8; 8] = b"PNCOSET3";
const ELEMENT: usize = 32;
const DIGEST: usize = 32;
const HEADER: usize = 8 + 64 + 8 + 4 + 4 + 32;
/// Bytes [`Reader::read_column`] reads, hashes and converts at a time (a multiple of
/// [`ELEMENT`]).
const READ_PIECE: usize = 1 << 20;

fn io(path: &Path) -> impl Fn(std::io::Error) -> CosetFileError + '_ {
    move |source| CosetFileError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The shape of a coset file: n values per column, `columns` columns per part, `parts` parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub n: usize,
    pub parts: usize,
    pub columns: usize,
    /// The digest of the parts' shifts.
    pub cosets: [u8; 32],
}

impl Shape {
    fn block_bytes(&self) -> usize {
        self.n * ELEMENT
    }

    fn part_bytes(&self) -> usize {
        self.columns * self.block_bytes()
    }

    fn blocks(&self) -> usize {
        self.parts * self.columns
    }

    /// The file's length in bytes.
    pub fn file_len(&self) -> u64 {
        (HEADER + self.parts * self.part_bytes() + self.blocks() * DIGEST + DIGEST) as u64
    }

    fn header(&self, pk_sha256: &str) -> Vec<u8> {
        let mut h = Vec::with_capacity(HEADER);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(pk_sha256.as_bytes());
        h.extend_from_slice(&(self.n as u64).to_le_bytes());
        h.extend_from_slice(&(self.parts as u32).to_le_bytes());
        h.extend_from_slice(&(self.columns as u32).to_le_bytes());
        h.extend_from_slice(&self.cosets);
        h
    }
}

fn table_digest(header: &[u8], digests: &[[u8; DIGEST]]) -> [u8; DIGEST] {
    let mut h = blake3::Hasher::new();
    h.update(header);
    for d in digests {
        h.update(d);
    }
    *h.finalize().as_bytes()
}

/// Writes a coset file part by part ([`Self::write_part`] in order, then [`Self::finish`]).
pub struct Writer {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
    shape: Shape,
    header: Vec<u8>,
    digests: Vec<[u8; DIGEST]>,
}

impl Writer {
    /// Starts the file for the key whose SHA-256 is `pk_sha256`.
    pub fn create(path: &Path, pk_sha256: &str, shape: Shape) -> Result<Self, CosetFileError> {
        let tmp = crate::disk::temporary_path(path);
        let file = File::create(&tmp).map_err(io(&tmp))?;
        let mut w = Self {
            path: path.to_path_buf(),
            tmp,
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            shape,
            header: shape.header(pk_sha256),
            digests: Vec::with_capacity(shape.blocks()),
        };
        let head = w.header.clone();
        w.write(&head)?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), CosetFileError> {
        let out = self.out.as_mut().ok_or_else(|| CosetFileError::Invalid {
            path: self.tmp.display().to_string(),
            reason: "written after it was finished".into(),
        })?;
        out.write_all(bytes).map_err(io(&self.tmp))
    }

    /// Appends the next part's columns (each n values).
    pub fn write_part(&mut self, columns: &[&[Fr]]) -> Result<(), CosetFileError> {
        let invalid = |reason: String| CosetFileError::Invalid {
            path: self.tmp.display().to_string(),
            reason,
        };
        if columns.len() != self.shape.columns {
            return Err(invalid(format!(
                "a part of {} columns, the file holds {}",
                columns.len(),
                self.shape.columns
            )));
        }
        if self.digests.len() + columns.len() > self.shape.blocks() {
            return Err(invalid("more parts than the file holds".into()));
        }
        if let Some(c) = columns.iter().find(|c| c.len() != self.shape.n) {
            return Err(invalid(format!(
                "a column of {} values, the domain has {}",
                c.len(),
                self.shape.n
            )));
        }
        let blocks: Vec<Vec<u8>> = columns
            .par_iter()
            .map(|column| {
                let mut buf = Vec::with_capacity(column.len() * ELEMENT);
                for v in column.iter() {
                    v.write_raw(&mut buf)?;
                }
                Ok(buf)
            })
            .collect::<Result<_, std::io::Error>>()
            .map_err(io(&self.tmp))?;
        let digests: Vec<[u8; DIGEST]> = blocks
            .par_iter()
            .map(|b| *blake3::hash(b).as_bytes())
            .collect();
        for b in &blocks {
            self.write(b)?;
        }
        self.digests.extend(digests);
        Ok(())
    }

    /// Writes the table, syncs and renames the file into place; returns its reader.
    pub fn finish(mut self) -> Result<Reader, CosetFileError> {
        if self.digests.len() != self.shape.blocks() {
            return Err(CosetFileError::Invalid {
                path: self.tmp.display().to_string(),
                reason: format!(
                    "finished after {} of {} blocks",
                    self.digests.len(),
                    self.shape.blocks()
                ),
            });
        }
        let mut table = Vec::with_capacity((self.digests.len() + 1) * DIGEST);
        for d in &self.digests {
            table.extend_from_slice(d);
        }
        table.extend_from_slice(&table_digest(&self.header, &self.digests));
        self.write(&table)?;
        let out = self.out.take().ok_or_else(|| CosetFileError::Invalid {
            path: self.tmp.display().to_string(),
            reason: "finished twice".into(),
        })?;
        let placed = (|| {
            let file = out.into_inner().map_err(|e| CosetFileError::Io {
                path: self.tmp.display().to_string(),
                source: e.into_error(),
            })?;
            file.sync_all().map_err(io(&self.tmp))?;
            std::fs::rename(&self.tmp, &self.path).map_err(io(&self.path))
        })();
        if placed.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        placed?;
        Ok(Reader {
            path: self.path.clone(),
            shape: self.shape,
            digests: std::mem::take(&mut self.digests),
        })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Unfinished: the temporary file is of no use to anyone.
        if self.out.is_some() {
            drop(self.out.take());
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A checked coset file, read one column of one part at a time.
#[derive(Debug)]
pub struct Reader {
    path: PathBuf,
    shape: Shape,
    digests: Vec<[u8; DIGEST]>,
}

impl Reader {
    /// Opens the file for the key whose SHA-256 is `pk_sha256` and checks all of it; `None` when
    /// there is no file.
    pub fn open(
        path: &Path,
        pk_sha256: &str,
        shape: Shape,
    ) -> Result<Option<Self>, CosetFileError> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(path)(e)),
        };
        let invalid = |reason: String| CosetFileError::Invalid {
            path: path.display().to_string(),
            reason,
        };
        let len = file.metadata().map_err(io(path))?.len();
        if len != shape.file_len() {
            return Err(invalid(format!(
                "{len} bytes, {} expected for {} parts of {} columns of {} values",
                shape.file_len(),
                shape.parts,
                shape.columns,
                shape.n
            )));
        }
        let want = shape.header(pk_sha256);
        let mut head = vec![0u8; HEADER];
        file.read_exact(&mut head).map_err(io(path))?;
        if head != want {
            return Err(invalid("made for another proving key or shape".into()));
        }
        file.seek(SeekFrom::Start(
            (HEADER + shape.parts * shape.part_bytes()) as u64,
        ))
        .map_err(io(path))?;
        let mut table = vec![0u8; (shape.blocks() + 1) * DIGEST];
        file.read_exact(&mut table).map_err(io(path))?;
        let digests: Vec<[u8; DIGEST]> = table
            .chunks_exact(DIGEST)
            .take(shape.blocks())
            .map(|c| {
                let mut d = [0u8; DIGEST];
                d.copy_from_slice(c);
                d
            })
            .collect();
        if table[shape.blocks() * DIGEST..] != table_digest(&head, &digests) {
            return Err(invalid("its table of hashes does not match".into()));
        }
        let reader = Self {
            path: path.to_path_buf(),
            shape,
            digests,
        };
        for part in 0..shape.parts {
            reader.check_part(&mut file, part)?;
        }
        Ok(Some(reader))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks part `part`'s blocks against their hashes, as many blocks at a time as rayon has
    /// threads, so the bytes held at once stay a few columns' worth.
    fn check_part(&self, file: &mut File, part: usize) -> Result<(), CosetFileError> {
        let shape = self.shape;
        let invalid = |reason: String| CosetFileError::Invalid {
            path: self.path.display().to_string(),
            reason,
        };
        if part >= shape.parts {
            return Err(invalid(format!("part {part} of {}", shape.parts)));
        }
        file.seek(SeekFrom::Start((HEADER + part * shape.part_bytes()) as u64))
            .map_err(io(&self.path))?;
        let group = rayon::current_num_threads().max(1);
        let mut bytes = Vec::new();
        let mut first = 0;
        while first < shape.columns {
            let count = group.min(shape.columns - first);
            bytes.resize(count * shape.block_bytes(), 0);
            file.read_exact(&mut bytes).map_err(io(&self.path))?;
            let bad = bytes
                .par_chunks(shape.block_bytes())
                .enumerate()
                .find_any(|(i, block)| {
                    let d: [u8; DIGEST] = *blake3::hash(block).as_bytes();
                    d != self.digests[part * shape.columns + first + i]
                });
            if let Some((i, _)) = bad {
                return Err(invalid(format!(
                    "part {part}, column {}: its hash does not match",
                    first + i
                )));
            }
            first += count;
        }
        Ok(())
    }

    /// Reads column `column` of part `part`, checked against its hash.
    pub fn read_column(&self, part: usize, column: usize) -> Result<Vec<Fr>, CosetFileError> {
        let shape = self.shape;
        let invalid = |reason: String| CosetFileError::Invalid {
            path: self.path.display().to_string(),
            reason,
        };
        if part >= shape.parts || column >= shape.columns {
            return Err(invalid(format!(
                "part {part}, column {column} of {} parts of {} columns",
                shape.parts, shape.columns
            )));
        }
        let mut file = File::open(&self.path).map_err(io(&self.path))?;
        file.seek(SeekFrom::Start(
            (HEADER + part * shape.part_bytes() + column * shape.block_bytes()) as u64,
        ))
        .map_err(io(&self.path))?;
        // A piece at a time: hashed and converted while it is in cache (the whole block read
        // at once went through 32 MiB of fresh pages, then was read again twice).
        let mut values: Vec<Fr> = Vec::with_capacity(shape.n);
        let mut hasher = blake3::Hasher::new();
        let mut piece = vec![0u8; READ_PIECE.min(shape.block_bytes())];
        let mut left = shape.block_bytes();
        let mut elements_ok = true;
        while left > 0 {
            let len = left.min(piece.len());
            let bytes = &mut piece[..len];
            file.read_exact(bytes).map_err(io(&self.path))?;
            hasher.update(bytes);
            let start = values.len();
            values.resize(start + len / ELEMENT, Fr::zero());
            elements_ok &= values[start..]
                .par_iter_mut()
                .zip(bytes.par_chunks_exact(ELEMENT))
                .try_for_each(|(v, b)| {
                    *v = Fr::from_raw_bytes(b)?;
                    Some(())
                })
                .is_some();
            left -= len;
        }
        // The hash first: a damaged block is reported as such, whatever its bytes became.
        if *hasher.finalize().as_bytes() != self.digests[part * shape.columns + column] {
            return Err(invalid(format!(
                "part {part}, column {column}: its hash does not match"
            )));
        }
        if !elements_ok {
            return Err(invalid(format!(
                "part {part}, column {column}: a value is not a field element"
            )));
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ff::Field;
    use rand::SeedableRng;

    /// Columns of several read pieces and a partial last one come back as written; a byte
    /// damaged in a later piece fails that column's hash and no other column's.
    #[test]
    fn columns_of_several_pieces_read_back_and_damage_past_the_first_piece_is_found() {
        let dir = std::env::temp_dir().join(format!("coset-file-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join("key.coset");
        let n = 3 * READ_PIECE / ELEMENT + 5;
        let shape = Shape {
            n,
            parts: 2,
            columns: 2,
            cosets: [7; 32],
        };
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        let parts: Vec<Vec<Vec<Fr>>> = (0..2)
            .map(|_| {
                (0..2)
                    .map(|_| (0..n).map(|_| Fr::random(&mut rng)).collect())
                    .collect()
            })
            .collect();
        let mut writer = Writer::create(&path, &"cd".repeat(32), shape).expect("create");
        for part in &parts {
            let columns: Vec<&[Fr]> = part.iter().map(Vec::as_slice).collect();
            writer.write_part(&columns).expect("write part");
        }
        let reader = writer.finish().expect("finish");
        for (p, part) in parts.iter().enumerate() {
            for (c, column) in part.iter().enumerate() {
                assert!(
                    reader.read_column(p, c).expect("read") == *column,
                    "{p}, {c}"
                );
            }
        }
        // Part 1, column 0: its third piece.
        let mut bytes = std::fs::read(&path).expect("read file");
        let at = HEADER + shape.part_bytes() + 2 * READ_PIECE + 100;
        bytes[at] ^= 1;
        std::fs::write(&path, &bytes).expect("damage");
        let err = reader.read_column(1, 0).expect_err("damaged column read");
        assert!(err.to_string().contains("hash does not match"), "{err}");
        assert!(reader.read_column(1, 1).expect("read") == parts[1][1]);
        assert!(reader.read_column(0, 0).expect("read") == parts[0][0]);
        std::fs::remove_dir_all(&dir).expect("remove tmp dir");
    }
}
