//! read_file rejects damaged files with specific errors, never a panic.

use std::fs;
use std::path::{Path, PathBuf};

use params::{ParamsError, Section};

const K: u32 = 4;
const N: usize = 1 << K;

/// A valid k = 4 SRS file in `dir`, and its bytes.
fn good_file(dir: &Path) -> (PathBuf, Vec<u8>) {
    let path = params::path_for(dir, K);
    params::write_file(&params::dev_setup(K, 0, false).unwrap(), &path).unwrap();
    let bytes = fs::read(&path).unwrap();
    (path, bytes)
}

fn with_bytes(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn good_file_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = good_file(dir.path());
    assert_eq!(bytes.len(), 4 + 2 * N * 64 + 256);
    assert!(params::read_file(&path).is_ok());
}

#[test]
fn truncated_files() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = good_file(dir.path());
    let expected = bytes.len() as u64;

    // Cut in the middle of the points.
    let path = with_bytes(dir.path(), "mid.srs", &bytes[..1000]);
    let err = params::read_file(&path).unwrap_err();
    assert!(
        matches!(err, ParamsError::Truncated { k: K, actual: 1000, expected: e, .. } if e == expected),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("mid.srs") && msg.contains("truncated"),
        "{msg}"
    );

    // Cut inside the trailing G2 points.
    let path = with_bytes(dir.path(), "g2.srs", &bytes[..bytes.len() - 1]);
    let err = params::read_file(&path).unwrap_err();
    assert!(matches!(err, ParamsError::Truncated { .. }), "{err}");

    // Cut inside the header.
    let path = with_bytes(dir.path(), "two.srs", &bytes[..2]);
    let err = params::read_file(&path).unwrap_err();
    assert!(
        matches!(err, ParamsError::MissingHeader { actual: 2, .. }),
        "{err}"
    );

    let path = with_bytes(dir.path(), "empty.srs", &[]);
    let err = params::read_file(&path).unwrap_err();
    assert!(
        matches!(err, ParamsError::MissingHeader { actual: 0, .. }),
        "{err}"
    );
}

#[test]
fn trailing_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut bytes) = good_file(dir.path());
    let expected = bytes.len() as u64;
    bytes.extend_from_slice(b"garbage");
    let path = with_bytes(dir.path(), "long.srs", &bytes);
    let err = params::read_file(&path).unwrap_err();
    assert!(
        matches!(err, ParamsError::TrailingBytes { k: K, expected: e, actual: a, .. } if e == expected && a == expected + 7),
        "{err}"
    );
    assert!(err.to_string().contains("7 trailing bytes"), "{err}");
}

#[test]
fn absurd_k_header() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut bytes) = good_file(dir.path());
    bytes[..4].copy_from_slice(&40u32.to_le_bytes());
    let path = with_bytes(dir.path(), "k40.srs", &bytes);
    let err = params::read_file(&path).unwrap_err();
    assert!(
        matches!(err, ParamsError::HeaderKTooLarge { k: 40, max: 28, .. }),
        "{err}"
    );

    // A plausible k whose length does not match is a length error, not an allocation.
    bytes[..4].copy_from_slice(&28u32.to_le_bytes());
    let path = with_bytes(dir.path(), "k28.srs", &bytes);
    let err = params::read_file(&path).unwrap_err();
    assert!(matches!(err, ParamsError::Truncated { k: 28, .. }), "{err}");
}

#[test]
fn corrupted_points() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = good_file(dir.path());

    // A flipped byte in the middle of the g section: point 8's x coordinate.
    let mut b = bytes.clone();
    b[4 + 8 * 64 + 10] ^= 0x01;
    let path = with_bytes(dir.path(), "flip_g.srs", &b);
    let err = params::read_file(&path).unwrap_err();
    assert!(
        matches!(
            err,
            ParamsError::InvalidPoint {
                section: Section::G,
                index: 8,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("index 8"), "{err}");

    // A coordinate above the field modulus in the Lagrange section.
    let mut b = bytes.clone();
    let at = 4 + N * 64 + 3 * 64;
    b[at..at + 32].fill(0xff);
    let path = with_bytes(dir.path(), "big_l.srs", &b);
    let err = params::read_file(&path).unwrap_err();
    assert!(
        matches!(
            err,
            ParamsError::InvalidPoint {
                section: Section::GLagrange,
                index: 3,
                ..
            }
        ),
        "{err}"
    );

    // A flipped byte in s_g2.
    let mut b = bytes.clone();
    let len = b.len();
    b[len - 50] ^= 0x80;
    let path = with_bytes(dir.path(), "flip_sg2.srs", &b);
    let err = params::read_file(&path).unwrap_err();
    assert!(
        matches!(
            err,
            ParamsError::InvalidPoint {
                section: Section::SG2,
                ..
            }
        ),
        "{err}"
    );

    // verify_file reports the same.
    let err = params::verify_file(&path).unwrap_err();
    assert!(
        matches!(
            err,
            ParamsError::InvalidPoint {
                section: Section::SG2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn nonexistent_path_is_an_io_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope").join("kzg_bn254_9.srs");
    let err = params::read_file(&path).unwrap_err();
    match &err {
        ParamsError::Io {
            path: p, source, ..
        } => {
            assert_eq!(p, &path);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Io, got {other:?}"),
    }
    assert!(err.to_string().contains("kzg_bn254_9.srs"), "{err}");
}
