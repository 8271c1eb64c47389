//! What the native engine can compute once per proving key instead of once per proof: the fixed
//! columns, the permutation's σ polynomials and the Lagrange selectors l0, l_last and l_active,
//! all on the extended coset. halo2-axiom 0.5.3 recomputes them (coset NTTs) in every proof; for a
//! halo2-base circuit they are more than half of the quotient step's transforms.
//!
//! Build one per proving key with [`KeyCache::new`] and keep it next to the key; the values do
//! not depend on the backend that computed them, so a cache works with any backend.

use gpu::{ComputeBackend, Direction, Domain};
use halo2_proofs::plonk::ProvingKey;
use halo2curves::bn256::{Fr, G1Affine};

use super::NativeError;

/// Per-key extended-coset values (see the module documentation).
pub struct KeyCache {
    /// The verifying key's transcript representation: identifies the key the cache was built for.
    key_repr: Fr,
    pub(crate) fixed: Vec<Vec<Fr>>,
    pub(crate) sigmas: Vec<Vec<Fr>>,
    pub(crate) l0: Vec<Fr>,
    pub(crate) l_last: Vec<Fr>,
    pub(crate) l_active: Vec<Fr>,
}

/// `coeffs` (zero padded) on the extended coset of `ext`.
pub(crate) fn to_extended(
    backend: &dyn ComputeBackend,
    ext: &Domain,
    coeffs: &[Fr],
) -> Result<Vec<Fr>, NativeError> {
    let size = ext.size();
    if coeffs.len() > size {
        return Err(NativeError::Internal(format!(
            "polynomial of {} coefficients does not fit the extended domain of {size}",
            coeffs.len()
        )));
    }
    let mut values = vec![Fr::default(); size];
    values[..coeffs.len()].copy_from_slice(coeffs);
    backend.coset_ntt(&mut values, ext, Direction::Forward)?;
    Ok(values)
}

impl KeyCache {
    /// Computes the cache for `pk` with `backend`'s coset NTTs.
    pub fn new(
        backend: &dyn ComputeBackend,
        pk: &ProvingKey<G1Affine>,
    ) -> Result<Self, NativeError> {
        let vk = pk.get_vk();
        let ext = Domain::new(vk.get_domain().extended_k())?;
        let all = |polys: &[halo2_proofs::poly::Polynomial<Fr, halo2_proofs::poly::Coeff>]| {
            polys
                .iter()
                .map(|p| to_extended(backend, &ext, &p[..]))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            key_repr: vk.transcript_repr(),
            fixed: all(pk.fixed_polys())?,
            sigmas: all(pk.permutation().polys())?,
            l0: to_extended(backend, &ext, &pk.l0()[..])?,
            l_last: to_extended(backend, &ext, &pk.l_last()[..])?,
            l_active: to_extended(backend, &ext, &pk.l_active_row()[..])?,
        })
    }

    /// Bytes held.
    pub fn size_bytes(&self) -> usize {
        let columns = self.fixed.len() + self.sigmas.len() + 3;
        columns * self.l0.len() * std::mem::size_of::<Fr>()
    }

    /// Refuses a cache built for another key.
    pub fn check(&self, pk: &ProvingKey<G1Affine>) -> Result<(), NativeError> {
        if self.key_repr != pk.get_vk().transcript_repr() {
            return Err(NativeError::Internal(
                "the key cache was built for another proving key".into(),
            ));
        }
        Ok(())
    }
}
