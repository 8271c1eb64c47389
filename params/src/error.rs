//! The crate's error type.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A section of the SRS, used to say where a bad point sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// The monomial basis `g[i] = s^i·G` (G1).
    G,
    /// The Lagrange basis `g_lagrange[i] = L_i(s)·G` (G1).
    GLagrange,
    /// The G2 generator `g2`.
    G2,
    /// `s·g2` (G2).
    SG2,
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Section::G => "g (monomial basis)",
            Section::GLagrange => "g_lagrange (Lagrange basis)",
            Section::G2 => "g2",
            Section::SG2 => "s_g2",
        })
    }
}

/// Everything that can go wrong reading, writing, generating or checking an SRS.
#[derive(Debug, thiserror::Error)]
pub enum ParamsError {
    /// An operating-system I/O operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("open", "read", "write", "rename", ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The file is shorter than the 4-byte `k` header.
    #[error("{path}: file has {actual} bytes, too short for the 4-byte k header")]
    MissingHeader {
        /// The file.
        path: PathBuf,
        /// Its length in bytes.
        actual: u64,
    },

    /// The `k` in the file header is larger than BN254's two-adicity allows.
    #[error("{path}: header says k = {k}, but the largest supported k is {max} (truncated or not an SRS file?)")]
    HeaderKTooLarge {
        /// The file.
        path: PathBuf,
        /// The `k` read from the header.
        k: u32,
        /// The largest supported `k`.
        max: u32,
    },

    /// A file in a params directory holds a different `k` than its name says.
    #[error("{path}: the file name says k = {expected} but its header says k = {found}")]
    HeaderKMismatch {
        /// The file.
        path: PathBuf,
        /// The `k` from the file name.
        expected: u32,
        /// The `k` from the header.
        found: u32,
    },

    /// The file is shorter than its header's `k` requires.
    #[error("{path}: truncated: k = {k} requires {expected} bytes but the file has {actual} ({} missing)", expected - actual)]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The `k` read from the header.
        k: u32,
        /// The length that `k` implies.
        expected: u64,
        /// The file's actual length.
        actual: u64,
    },

    /// The file is longer than its header's `k` requires.
    #[error("{path}: {} trailing bytes: k = {k} requires {expected} bytes but the file has {actual}", actual - expected)]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// The `k` read from the header.
        k: u32,
        /// The length that `k` implies.
        expected: u64,
        /// The file's actual length.
        actual: u64,
    },

    /// A point in a file does not decode: a coordinate is not below the field
    /// modulus or the point is not on the curve.
    #[error("{path}: invalid {section} point at index {index}: coordinate not below the field modulus or point not on the curve")]
    InvalidPoint {
        /// The file.
        path: PathBuf,
        /// The section that holds the point.
        section: Section,
        /// The point's index within its section (0 for `g2` and `s_g2`).
        index: u64,
    },

    /// A requested `k` is outside what BN254 supports.
    #[error("k = {k} is not supported: the largest supported k is {max}")]
    UnsupportedK {
        /// The requested `k`.
        k: u32,
        /// The largest supported `k`.
        max: u32,
    },

    /// The secret is an n-th root of unity, so the Lagrange basis is undefined.
    /// (Happens with probability about 2^-226; never for the default seeds.)
    #[error("the development secret for seed {seed} is a root of unity of the size-2^{k} domain; pick another seed")]
    DegenerateSecret {
        /// The seed.
        seed: u64,
        /// The domain size exponent.
        k: u32,
    },

    /// A downsize target larger than the source was requested.
    #[error("cannot downsize an SRS with k = {from} to the larger k = {to}")]
    DownsizeTooLarge {
        /// The source's `k`.
        from: u32,
        /// The requested `k`.
        to: u32,
    },

    /// No usable SRS file is in the directory.
    #[error("no SRS for k = {k} in {dir}: need {wanted} or a kzg_bn254_{{k'}}.srs with k' > {k}; the directory holds {}", describe_ks(available))]
    NotFound {
        /// The directory searched.
        dir: PathBuf,
        /// The `k` asked for.
        k: u32,
        /// The file name that would have matched exactly.
        wanted: String,
        /// The `k` of every SRS file present, ascending.
        available: Vec<u32>,
    },

    /// A vector in an in-memory SRS has the wrong length for its `k`.
    #[error("{section} has {actual} points but k = {k} requires {expected}")]
    LengthMismatch {
        /// The vector.
        section: Section,
        /// The SRS's `k`.
        k: u32,
        /// `2^k`.
        expected: u64,
        /// The actual length.
        actual: u64,
    },

    /// `g[0]` is not the standard G1 generator.
    #[error("g[0] is not the standard BN254 G1 generator")]
    WrongG1Generator,

    /// `g2` is not the standard G2 generator.
    #[error("g2 is not the standard BN254 G2 generator")]
    WrongG2Generator,

    /// A point that must not be the identity is.
    #[error("{section} point at index {index} is the identity (point at infinity)")]
    IdentityPoint {
        /// The section that holds the point.
        section: Section,
        /// The point's index within its section.
        index: u64,
    },

    /// An in-memory point is not on the curve.
    #[error("{section} point at index {index} is not on the curve")]
    PointNotOnCurve {
        /// The section that holds the point.
        section: Section,
        /// The point's index within its section.
        index: u64,
    },

    /// `s_g2` is not in the prime-order subgroup of G2.
    #[error("s_g2 is not in the prime-order subgroup of G2")]
    G2NotInSubgroup,

    /// The powers `g[i]` are not consecutive powers of the secret in `s_g2`:
    /// `e(Σ r_i·g[i+1], g2) != e(Σ r_i·g[i], s_g2)`.
    #[error("powers check failed: g[i+1] != s·g[i] for some i, or s_g2 != s·g2 (pairing check on a random combination of {pairs} pairs)")]
    PowersInconsistent {
        /// How many consecutive pairs were combined.
        pairs: u64,
    },

    /// The Lagrange basis does not match the monomial basis:
    /// `Σ a_i·g_lagrange[i] != Σ IFFT(a)_j·g[j]` for a random `a`.
    #[error("Lagrange basis check failed: g_lagrange is not the size-2^{k} Lagrange basis of g (random-combination check)")]
    LagrangeInconsistent {
        /// The SRS's `k`.
        k: u32,
    },
}

fn describe_ks(ks: &[u32]) -> String {
    if ks.is_empty() {
        "no kzg_bn254_*.srs files".to_string()
    } else {
        let names: Vec<String> = ks.iter().map(|k| crate::file_name(*k)).collect();
        names.join(", ")
    }
}

impl ParamsError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ParamsError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
