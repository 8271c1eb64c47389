//! What the native engine can compute once per proving key instead of once per proof: the fixed
//! columns, the permutation's σ polynomials and the Lagrange selectors l0, l_last and l_active,
//! all on the extended coset, plus two key-independent columns of the same domain (the coset
//! points `X` and `1/(X^n - 1)`); and on the circuit's own domain, the fixed and σ columns'
//! values (grand products, lookup compression) and coefficients (evaluations, openings) and the
//! points `ω^i`. halo2-axiom 0.5.3 recomputes them (coset NTTs) in every proof;
//! for a halo2-base circuit they are more than half of the quotient step's transforms.
//!
//! The columns are resident in the backend that built the cache (device memory on CUDA), so a
//! proof uploads none of them: build one per proving key and backend with [`KeyCache::new`] and
//! keep it next to the key. Another backend refuses it.

use ff::Field;
use gpu::{ComputeBackend, Direction, Domain, Poly};
use halo2_proofs::plonk::ProvingKey;
use halo2curves::bn256::{Fr, G1Affine};

use super::NativeError;

/// Per-key extended-coset values (see the module documentation).
pub struct KeyCache {
    /// The verifying key's transcript representation: identifies the key the cache was built for.
    key_repr: Fr,
    /// The backend holding the columns.
    backend: String,
    pub(crate) fixed: Vec<Poly>,
    pub(crate) sigmas: Vec<Poly>,
    pub(crate) l0: Poly,
    pub(crate) l_last: Poly,
    pub(crate) l_active: Poly,
    /// `g·ω_ext^i`: the coset points themselves.
    pub(crate) x: Poly,
    /// `1 / ((g·ω_ext^i)^n - 1)`: the division by the vanishing polynomial.
    pub(crate) t_inv: Poly,
    /// On a device: the key's columns on the circuit's domain, kept (see [`Held`]).
    domain: Option<(DomainValues, DomainCoeffs)>,
}

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

fn domain_values(
    backend: &dyn ComputeBackend,
    pk: &ProvingKey<G1Affine>,
) -> Result<DomainValues, NativeError> {
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
    Ok(DomainValues {
        fixed: upload_all(backend, pk.fixed_values())?,
        sigmas: upload_all(backend, pk.permutation().permutations())?,
        omega: backend.upload_owned(powers)?,
    })
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

/// `coeffs` (at most `ext.size()` of them, zero padded) on the extended coset of `ext`, resident
/// in `backend`: only the coefficients cross to the device.
pub(crate) fn to_extended(
    backend: &dyn ComputeBackend,
    ext: &Domain,
    coeffs: &[Fr],
) -> Result<Poly, NativeError> {
    let size = ext.size();
    if coeffs.len() > size {
        return Err(NativeError::Internal(format!(
            "polynomial of {} coefficients does not fit the extended domain of {size}",
            coeffs.len()
        )));
    }
    extend(backend, ext, &backend.upload(coeffs)?)
}

/// Resident coefficients (at most `ext.size()`) → a new resident vector of their values on the
/// extended coset of `ext` (zero padding and a coset NTT, in the backend).
pub(crate) fn extend(
    backend: &dyn ComputeBackend,
    ext: &Domain,
    coeffs: &Poly,
) -> Result<Poly, NativeError> {
    let mut values = backend.resized(coeffs, ext.size())?;
    backend.ntt_poly(&mut values, ext, Direction::Forward, true)?;
    Ok(values)
}

/// `1/((g·ω_ext^i)^n - 1)` for `i < ext.size()`: it takes `ratio` distinct values, repeating with
/// period `ratio`.
fn vanishing_inverse(n: usize, ext: &Domain) -> Result<Vec<Fr>, NativeError> {
    let size = ext.size();
    let ratio = size / n;
    let gn = ext.coset_gen().pow_vartime([n as u64]);
    let wn = ext.omega().pow_vartime([n as u64]);
    let mut inv: Vec<Fr> = Vec::with_capacity(ratio);
    let mut p = gn;
    for _ in 0..ratio {
        inv.push(p - Fr::ONE);
        p *= wn;
    }
    if inv.iter().any(|v| bool::from(v.is_zero())) {
        return Err(NativeError::Internal(
            "X^n - 1 vanishes on the coset".into(),
        ));
    }
    ff::BatchInvert::batch_invert(&mut inv[..]);
    Ok((0..size).map(|i| inv[i % ratio]).collect())
}

impl KeyCache {
    /// Computes the cache for `pk` with `backend`'s coset NTTs; the columns stay in `backend`.
    pub fn new(
        backend: &dyn ComputeBackend,
        pk: &ProvingKey<G1Affine>,
    ) -> Result<Self, NativeError> {
        Self::build(backend, pk, None)
    }

    /// As [`Self::new`], with the extended-coset columns kept on disk at `path` (next to the
    /// proving key whose SHA-256 is `pk_sha256`; see [`super::coset_file`]) on the CPU backend:
    /// read from there when the file is valid, else computed and written there. A device
    /// computes them instead (its coset NTTs take less time than reading and hashing the file
    /// would, and the file's values would have to cross PCIe at the extended size).
    pub fn with_file(
        backend: &dyn ComputeBackend,
        pk: &ProvingKey<G1Affine>,
        path: &std::path::Path,
        pk_sha256: &str,
    ) -> Result<Self, NativeError> {
        if backend.name() != gpu::BackendName::Cpu {
            return Self::new(backend, pk);
        }
        Self::build(backend, pk, Some((path, pk_sha256)))
    }

    fn build(
        backend: &dyn ComputeBackend,
        pk: &ProvingKey<G1Affine>,
        file: Option<(&std::path::Path, &str)>,
    ) -> Result<Self, NativeError> {
        let vk = pk.get_vk();
        let hdomain = vk.get_domain();
        let ext = Domain::new(hdomain.extended_k())?;
        let n = hdomain.n as usize;
        // The coefficients behind the extended columns: fixed, σ, l0, l_last, l_active.
        let mut sources: Vec<&[Fr]> = pk.fixed_polys().iter().map(|p| &p[..]).collect();
        sources.extend(pk.permutation().polys().iter().map(|p| &p[..]));
        sources.extend([&pk.l0()[..], &pk.l_last()[..], &pk.l_active_row()[..]]);
        let loaded = match file {
            Some((path, sha)) => {
                match super::coset_file::read(path, sha, ext.size(), sources.len()) {
                    Ok(Some(columns)) => {
                        tracing::info!(file = %path.display(), "native engine: coset cache read from disk");
                        Some(columns)
                    }
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "native engine: coset cache file unusable; computing it again");
                        None
                    }
                }
            }
            None => None,
        };
        let read_from_file = loaded.is_some();
        let mut columns = match loaded {
            Some(columns) => columns
                .into_iter()
                .map(|c| Ok(backend.upload_owned(c)?))
                .collect::<Result<Vec<_>, NativeError>>()?,
            None => sources
                .iter()
                .map(|c| to_extended(backend, &ext, c))
                .collect::<Result<Vec<_>, _>>()?,
        };
        if let (Some((path, sha)), false) = (file, read_from_file) {
            let hosts: Option<Vec<&[Fr]>> = columns.iter().map(|p| p.host_slice()).collect();
            match hosts {
                Some(hosts) => match super::coset_file::write(path, sha, ext.size(), &hosts) {
                    Ok(()) => {
                        tracing::info!(file = %path.display(), "native engine: coset cache written next to the key")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "native engine: coset cache not written (the next process computes it again)")
                    }
                },
                None => {
                    tracing::warn!("native engine: coset cache not in host memory; not written")
                }
            }
        }
        let fixed_count = pk.fixed_polys().len();
        let sigma_count = pk.permutation().polys().len();
        let l_active = columns
            .pop()
            .ok_or_else(|| NativeError::Internal("coset cache: l_active missing".into()))?;
        let l_last = columns
            .pop()
            .ok_or_else(|| NativeError::Internal("coset cache: l_last missing".into()))?;
        let l0 = columns
            .pop()
            .ok_or_else(|| NativeError::Internal("coset cache: l0 missing".into()))?;
        if columns.len() != fixed_count + sigma_count {
            return Err(NativeError::Internal(format!(
                "coset cache: {} columns for {fixed_count} fixed and {sigma_count} σ",
                columns.len()
            )));
        }
        let sigmas = columns.split_off(fixed_count);
        Ok(Self {
            key_repr: vk.transcript_repr(),
            backend: backend.name().to_string(),
            fixed: columns,
            sigmas,
            l0,
            l_last,
            l_active,
            x: to_extended(backend, &ext, &[Fr::ZERO, Fr::ONE])?,
            t_inv: backend.upload(&vanishing_inverse(n, &ext)?)?,
            domain: if backend.name() == gpu::BackendName::Cpu {
                None
            } else {
                Some((domain_values(backend, pk)?, domain_coeffs(backend, pk)?))
            },
        })
    }

    /// The key's columns on the domain as values: kept on a device, made now on the CPU.
    pub fn domain_values(
        &self,
        backend: &dyn ComputeBackend,
        pk: &ProvingKey<G1Affine>,
    ) -> Result<Held<'_, DomainValues>, NativeError> {
        Ok(match &self.domain {
            Some((v, _)) => Held::Cached(v),
            None => Held::Fresh(domain_values(backend, pk)?),
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

    /// Bytes held.
    pub fn size_bytes(&self) -> usize {
        let extended = self.fixed.len() + self.sigmas.len() + 5;
        let own = match &self.domain {
            Some((v, _)) => (2 * (v.fixed.len() + v.sigmas.len()) + 1) * v.omega.len(),
            None => 0,
        };
        (extended * self.l0.len() + own) * std::mem::size_of::<Fr>()
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
