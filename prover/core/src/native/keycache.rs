//! What the native engine can compute once per proving key instead of once per proof: the fixed
//! columns, the permutation's σ polynomials and the Lagrange selectors l0, l_last and l_active on
//! the quotient's cosets, part by part (see [`super::cosets`]), plus the part's points `X`; and on
//! the circuit's own domain, the fixed and σ columns' values (grand products, lookup compression)
//! and coefficients (evaluations, openings) and the points `ω^i`. halo2-axiom 0.5.3 recomputes the
//! extended columns (coset NTTs) in every proof; for a halo2-base circuit they are more than half
//! of the quotient step's transforms.
//!
//! Where the extended columns live depends on the backend ([`Parts`]): on a device they are
//! computed per part and column from the key's coefficients, kept resident there (its NTTs cost
//! little next to the memory they would hold); on the CPU they are all kept in memory, or, with a
//! file next to the key ([`KeyCache::with_file`]), read from it a column of a part at a time, as
//! the quotient's programs need them, so that the process holds a few of them. Build one cache
//! per proving key and backend and keep it next to the key; another backend refuses it.

use std::sync::atomic::{AtomicBool, Ordering};

use ff::Field;
use gpu::{ComputeBackend, Direction, Domain, Poly};
use halo2_proofs::plonk::ProvingKey;
use halo2curves::bn256::{Fr, G1Affine};

use super::coset_file::{self, Shape};
use super::cosets::Cosets;
use super::NativeError;

/// Per-key columns (see the module documentation).
pub struct KeyCache {
    /// The verifying key's transcript representation: identifies the key the cache was built for.
    key_repr: Fr,
    /// The backend holding the columns.
    backend: String,
    /// The circuit's domain and the quotient's parts.
    domain_n: Domain,
    cosets: Cosets,
    /// The key's columns on the quotient's parts.
    parts: Parts,
    /// On a device: the key's columns on the circuit's domain, kept (see [`Held`]).
    domain: Option<(DomainValues, DomainCoeffs)>,
    /// On a device: the coefficients of l0, l_last, l_active and X, for the parts.
    lagrange: Vec<Poly>,
}

/// Where the key's columns on the quotient's parts come from.
enum Parts {
    /// Every part in the backend (the CPU without a file): the fastest, and the most memory.
    /// Each part's columns in the order of [`KeyCache::part_columns`].
    Resident(Vec<Vec<Poly>>),
    /// Read from the coset file a column of a part at a time (the CPU with a file). A column that
    /// fails its hash later is computed instead, and so are all later ones (`failed`).
    File {
        reader: coset_file::Reader,
        failed: AtomicBool,
    },
    /// Computed per part from the key's coefficients (a device; the CPU when the file cannot be
    /// written).
    Computed,
}

/// The coefficients of X.
const X_COEFFS: [Fr; 2] = [Fr::zero(), Fr::one()];

/// The key's columns on the circuit's domain (n rows) as values: read by the grand products and
/// the lookups' compression.
pub struct DomainValues {
    pub(crate) fixed: Vec<Poly>,
    /// The permutation's `σ(i)`.
    pub(crate) sigmas: Vec<Poly>,
    /// `ω^i`: the identity permutation's points.
    pub(crate) omega: Poly,
}

/// The key's columns on the circuit's domain as coefficients: evaluated and opened.
pub struct DomainCoeffs {
    pub(crate) fixed: Vec<Poly>,
    pub(crate) sigmas: Vec<Poly>,
}

/// Columns a device keeps in the cache, or the CPU backend makes for one step of one proof: its
/// resident vectors are host memory, so keeping them would hold a second copy of what the proving
/// key already holds for as long as the key is cached (43 columns of 2^20 values, 1.4 GB, for
/// the batch circuit at k=20), while a copy made per step is freed before the quotient's peak.
pub enum Held<'a, T> {
    Cached(&'a T),
    Fresh(T),
}

impl<T> std::ops::Deref for Held<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            Held::Cached(t) => t,
            Held::Fresh(t) => t,
        }
    }
}

fn upload_all<B>(
    backend: &dyn ComputeBackend,
    polys: &[halo2_proofs::poly::Polynomial<Fr, B>],
) -> Result<Vec<Poly>, NativeError> {
    polys.iter().map(|p| Ok(backend.upload(&p[..])?)).collect()
}

fn omega_powers(
    backend: &dyn ComputeBackend,
    pk: &ProvingKey<G1Affine>,
) -> Result<Poly, NativeError> {
    let vk = pk.get_vk();
    let n = vk.get_domain().n as usize;
    let w = vk.get_domain().get_omega();
    let mut p = Fr::ONE;
    let powers = (0..n)
        .map(|_| {
            let v = p;
            p *= w;
            v
        })
        .collect();
    Ok(backend.upload_owned(powers)?)
}

fn domain_values(
    backend: &dyn ComputeBackend,
    pk: &ProvingKey<G1Affine>,
) -> Result<DomainValues, NativeError> {
    Ok(DomainValues {
        fixed: upload_all(backend, pk.fixed_values())?,
        sigmas: upload_all(backend, pk.permutation().permutations())?,
        omega: omega_powers(backend, pk)?,
    })
}

/// The key's columns on the circuit's domain as values, one at a time (see
/// [`KeyCache::domain_values`]): on the CPU each column asked for is a copy of the key's, freed
/// with its handle, so the step holds only the columns it works on.
pub struct KeyValues<'a> {
    cached: Option<&'a DomainValues>,
    backend: &'a dyn ComputeBackend,
    pk: &'a ProvingKey<G1Affine>,
    omega: Option<Poly>,
}

impl KeyValues<'_> {
    /// Fixed column `i`.
    pub fn fixed(&self, i: usize) -> Result<Held<'_, Poly>, NativeError> {
        let missing = || NativeError::Internal(format!("fixed column {i} missing"));
        match self.cached {
            Some(v) => v.fixed.get(i).map(Held::Cached).ok_or_else(missing),
            None => {
                let column = self.pk.fixed_values().get(i).ok_or_else(missing)?;
                Ok(Held::Fresh(self.backend.upload(&column[..])?))
            }
        }
    }

    /// The permutation's `σ(i)` for permutation column `i`.
    pub fn sigma(&self, i: usize) -> Result<Held<'_, Poly>, NativeError> {
        let missing = || NativeError::Internal(format!("σ column {i} missing"));
        match self.cached {
            Some(v) => v.sigmas.get(i).map(Held::Cached).ok_or_else(missing),
            None => {
                let column = self
                    .pk
                    .permutation()
                    .permutations()
                    .get(i)
                    .ok_or_else(missing)?;
                Ok(Held::Fresh(self.backend.upload(&column[..])?))
            }
        }
    }

    /// The number of σ columns.
    pub fn sigma_count(&self) -> usize {
        self.pk.permutation().permutations().len()
    }

    /// `ω^i`.
    pub fn omega(&self) -> Result<&Poly, NativeError> {
        match (self.cached, &self.omega) {
            (Some(v), _) => Ok(&v.omega),
            (None, Some(o)) => Ok(o),
            (None, None) => Err(NativeError::Internal("ω^i missing".into())),
        }
    }

    /// Every fixed column, resident: on a device only (`None` on the CPU, whose steps read the
    /// key's own host columns instead).
    pub fn all_fixed(&self) -> Option<Vec<&Poly>> {
        self.cached.map(|v| v.fixed.iter().collect())
    }
}

fn domain_coeffs(
    backend: &dyn ComputeBackend,
    pk: &ProvingKey<G1Affine>,
) -> Result<DomainCoeffs, NativeError> {
    Ok(DomainCoeffs {
        fixed: upload_all(backend, pk.fixed_polys())?,
        sigmas: upload_all(backend, pk.permutation().polys())?,
    })
}

/// Resident coefficients (at most n) → a new resident vector of their values on the coset
/// `shift·⟨ω⟩` of `domain` (a copy and a shifted NTT, in the backend).
pub(crate) fn to_part(
    backend: &dyn ComputeBackend,
    domain: &Domain,
    coeffs: &Poly,
    shift: Fr,
) -> Result<Poly, NativeError> {
    if coeffs.len() > domain.size() {
        return Err(NativeError::Internal(format!(
            "polynomial of {} coefficients does not fit the domain of {}",
            coeffs.len(),
            domain.size()
        )));
    }
    let mut values = backend.resized(coeffs, domain.size())?;
    backend.ntt_shifted(&mut values, domain, Direction::Forward, shift)?;
    Ok(values)
}

/// Where [`KeyCache::with_file`] keeps the extended columns: the coset file next to a proving key.
#[derive(Clone, Copy, Debug)]
pub struct CosetFile<'a> {
    pub path: &'a std::path::Path,
    /// The SHA-256 of the proving key the file belongs to.
    pub pk_sha256: &'a str,
    /// Bytes the file must leave free on its filesystem, else it is not written
    /// ([`crate::disk`]).
    pub disk_reserve: u64,
}

impl KeyCache {
    /// Builds the cache for `pk` in `backend`: every part's columns on the CPU, the coefficients
    /// behind them on a device.
    pub fn new(
        backend: &dyn ComputeBackend,
        pk: &ProvingKey<G1Affine>,
    ) -> Result<Self, NativeError> {
        let mut cache = Self::empty(backend, pk)?;
        if cache.domain.is_none() {
            let parts = (0..cache.cosets.parts())
                .map(|p| cache.compute_part(backend, pk, p))
                .collect::<Result<Vec<_>, _>>()?;
            cache.parts = Parts::Resident(parts);
        }
        Ok(cache)
    }

    /// As [`Self::new`], with the extended columns kept on disk in `file` (next to the proving
    /// key; see [`super::coset_file`]) on the CPU backend and read from there a column at a time:
    /// from the file when it is valid, else computed and written there (computed per proof if it
    /// cannot be written, or would leave less than its reserve free). A device computes them
    /// instead.
    pub fn with_file(
        backend: &dyn ComputeBackend,
        pk: &ProvingKey<G1Affine>,
        file: CosetFile<'_>,
    ) -> Result<Self, NativeError> {
        let CosetFile {
            path,
            pk_sha256,
            disk_reserve,
        } = file;
        let mut cache = Self::empty(backend, pk)?;
        if cache.domain.is_some() {
            return Ok(cache);
        }
        let shape = Shape {
            n: cache.domain_n.size(),
            parts: cache.cosets.parts(),
            columns: cache.part_columns(pk),
            cosets: cache.cosets.digest(),
        };
        match coset_file::Reader::open(path, pk_sha256, shape) {
            Ok(Some(reader)) => {
                tracing::info!(file = %path.display(), "native engine: coset cache read from disk");
                cache.parts = Parts::File {
                    reader,
                    failed: AtomicBool::new(false),
                };
                return Ok(cache);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "native engine: coset cache file unusable; computing it again")
            }
        }
        if let Err(e) = crate::disk::check_room(path, shape.file_len(), disk_reserve) {
            tracing::warn!(error = %e, "native engine: coset cache not written; its columns are computed in every proof");
            return Ok(cache);
        }
        match cache.write_file(backend, pk, path, pk_sha256, shape) {
            Ok(reader) => {
                tracing::info!(file = %path.display(), "native engine: coset cache written next to the key");
                cache.parts = Parts::File {
                    reader,
                    failed: AtomicBool::new(false),
                };
            }
            Err(e) => {
                tracing::warn!(error = %e, "native engine: coset cache not written; its columns are computed in every proof");
            }
        }
        Ok(cache)
    }

    /// The cache with its domain columns (on a device) and no extended parts yet (`Computed`).
    fn empty(backend: &dyn ComputeBackend, pk: &ProvingKey<G1Affine>) -> Result<Self, NativeError> {
        let vk = pk.get_vk();
        let hdomain = vk.get_domain();
        let domain_n = Domain::new(hdomain.k())?;
        let cosets = Cosets::new(hdomain.k(), hdomain.get_quotient_poly_degree())?;
        let device = backend.name() != gpu::BackendName::Cpu;
        Ok(Self {
            key_repr: vk.transcript_repr(),
            backend: backend.name().to_string(),
            cosets,
            domain_n,
            parts: Parts::Computed,
            domain: if device {
                Some((domain_values(backend, pk)?, domain_coeffs(backend, pk)?))
            } else {
                None
            },
            lagrange: if device {
                [
                    &pk.l0()[..],
                    &pk.l_last()[..],
                    &pk.l_active_row()[..],
                    &X_COEFFS[..],
                ]
                .iter()
                .map(|p| Ok(backend.upload(p)?))
                .collect::<Result<_, NativeError>>()?
            } else {
                Vec::new()
            },
        })
    }

    /// Computes part `p` and writes each part to a new coset file; returns its reader.
    fn write_file(
        &self,
        backend: &dyn ComputeBackend,
        pk: &ProvingKey<G1Affine>,
        path: &std::path::Path,
        pk_sha256: &str,
        shape: Shape,
    ) -> Result<coset_file::Reader, NativeError> {
        let mut writer = coset_file::Writer::create(path, pk_sha256, shape)?;
        for p in 0..self.cosets.parts() {
            let part = self.compute_part(backend, pk, p)?;
            let hosts: Option<Vec<&[Fr]>> = part.iter().map(|c| c.host_slice()).collect();
            let hosts = hosts.ok_or_else(|| {
                NativeError::Internal("coset cache: columns not in host memory".into())
            })?;
            writer.write_part(&hosts)?;
        }
        Ok(writer.finish()?)
    }

    /// Part `p`'s columns computed from the key's coefficients (resident ones on a device).
    fn compute_part(
        &self,
        backend: &dyn ComputeBackend,
        pk: &ProvingKey<G1Affine>,
        p: usize,
    ) -> Result<Vec<Poly>, NativeError> {
        (0..self.part_columns(pk))
            .map(|c| self.compute_column(backend, pk, p, c))
            .collect()
    }

    /// Column `c` of part `p` computed from the key's coefficients (resident ones on a device).
    fn compute_column(
        &self,
        backend: &dyn ComputeBackend,
        pk: &ProvingKey<G1Affine>,
        p: usize,
        c: usize,
    ) -> Result<Poly, NativeError> {
        let shift = self.cosets.shift(p)?;
        let missing = || NativeError::Internal(format!("key column {c} missing"));
        let fixed = pk.fixed_polys().len();
        let sigmas = pk.permutation().polys().len();
        if let Some((_, coeffs)) = &self.domain {
            let column = if c < fixed {
                coeffs.fixed.get(c)
            } else if c < fixed + sigmas {
                coeffs.sigmas.get(c - fixed)
            } else {
                self.lagrange.get(c - fixed - sigmas)
            };
            return to_part(backend, &self.domain_n, column.ok_or_else(missing)?, shift);
        }
        let source: &[Fr] = if c < fixed {
            &pk.fixed_polys().get(c).ok_or_else(missing)?[..]
        } else if c < fixed + sigmas {
            &pk.permutation()
                .polys()
                .get(c - fixed)
                .ok_or_else(missing)?[..]
        } else {
            match c - fixed - sigmas {
                0 => &pk.l0()[..],
                1 => &pk.l_last()[..],
                2 => &pk.l_active_row()[..],
                3 => &X_COEFFS[..],
                _ => return Err(missing()),
            }
        };
        // One copy of the key's coefficients, transformed in place (X's two are padded first).
        let mut values = backend.upload(source)?;
        if values.len() != self.domain_n.size() {
            values = backend.resized(&values, self.domain_n.size())?;
        }
        backend.ntt_shifted(&mut values, &self.domain_n, Direction::Forward, shift)?;
        Ok(values)
    }

    /// The quotient's parts, whose columns this cache gives.
    pub fn cosets(&self) -> &Cosets {
        &self.cosets
    }

    /// The number of the key's columns on each part: fixed, σ, l0, l_last, l_active and X, in
    /// that order.
    pub fn part_columns(&self, pk: &ProvingKey<G1Affine>) -> usize {
        pk.fixed_polys().len() + pk.permutation().polys().len() + 4
    }

    /// The key's column `c` (in the order of [`Self::part_columns`]) on part `p` of the quotient's
    /// cosets: kept, read from the file, or computed.
    pub fn part_column(
        &self,
        backend: &dyn ComputeBackend,
        pk: &ProvingKey<G1Affine>,
        p: usize,
        c: usize,
    ) -> Result<Held<'_, Poly>, NativeError> {
        match &self.parts {
            Parts::Resident(parts) => parts
                .get(p)
                .and_then(|part| part.get(c))
                .map(Held::Cached)
                .ok_or_else(|| NativeError::Internal(format!("part {p}, column {c} missing"))),
            Parts::File { reader, failed } if !failed.load(Ordering::Relaxed) => {
                match reader.read_column(p, c) {
                    Ok(values) => Ok(Held::Fresh(backend.upload_owned(values)?)),
                    Err(e) => {
                        tracing::warn!(error = %e, "native engine: coset cache file damaged since it was opened; computing its columns in every proof (the next process rewrites it)");
                        failed.store(true, Ordering::Relaxed);
                        Ok(Held::Fresh(self.compute_column(backend, pk, p, c)?))
                    }
                }
            }
            Parts::File { .. } | Parts::Computed => {
                Ok(Held::Fresh(self.compute_column(backend, pk, p, c)?))
            }
        }
    }

    /// The key's columns on the domain as values, column by column: kept on a device, copied
    /// from the key when asked on the CPU.
    pub fn domain_values<'a>(
        &'a self,
        backend: &'a dyn ComputeBackend,
        pk: &'a ProvingKey<G1Affine>,
    ) -> Result<KeyValues<'a>, NativeError> {
        Ok(match &self.domain {
            Some((v, _)) => KeyValues {
                cached: Some(v),
                backend,
                pk,
                omega: None,
            },
            None => KeyValues {
                cached: None,
                backend,
                pk,
                omega: Some(omega_powers(backend, pk)?),
            },
        })
    }

    /// The key's columns on the domain as coefficients: kept on a device, made now on the CPU.
    pub fn domain_coeffs(
        &self,
        backend: &dyn ComputeBackend,
        pk: &ProvingKey<G1Affine>,
    ) -> Result<Held<'_, DomainCoeffs>, NativeError> {
        Ok(match &self.domain {
            Some((_, c)) => Held::Cached(c),
            None => Held::Fresh(domain_coeffs(backend, pk)?),
        })
    }

    /// Bytes held in the backend.
    pub fn size_bytes(&self) -> usize {
        let n = self.domain_n.size();
        let parts = match &self.parts {
            Parts::Resident(parts) => parts.iter().map(Vec::len).sum(),
            Parts::File { .. } | Parts::Computed => 0,
        };
        let own = match &self.domain {
            Some((v, _)) => 2 * (v.fixed.len() + v.sigmas.len()) + 1 + self.lagrange.len(),
            None => 0,
        };
        (parts + own) * n * std::mem::size_of::<Fr>()
    }

    /// Where the extended columns come from: `resident`, `file` or `computed`.
    pub fn source(&self) -> &'static str {
        match &self.parts {
            Parts::Resident(_) => "resident",
            Parts::File { failed, .. } if !failed.load(Ordering::Relaxed) => "file",
            Parts::File { .. } | Parts::Computed => "computed",
        }
    }

    /// Refuses a cache built for another key or held by another backend.
    pub fn check(
        &self,
        pk: &ProvingKey<G1Affine>,
        backend: &dyn ComputeBackend,
    ) -> Result<(), NativeError> {
        if self.key_repr != pk.get_vk().transcript_repr() {
            return Err(NativeError::Internal(
                "the key cache was built for another proving key".into(),
            ));
        }
        let name = backend.name().to_string();
        if self.backend != name {
            return Err(NativeError::Internal(format!(
                "the key cache is held by the {} backend, not {name}",
                self.backend
            )));
        }
        Ok(())
    }
}
