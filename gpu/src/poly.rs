//! [`Poly`]: a vector of `Fr` owned by a backend — host memory on the CPU backend, device memory
//! on CUDA — so that the engine can keep polynomials where they are computed and move only what
//! the proof needs (commitments, evaluations) back to the host.

use ff::Field;
use halo2curves::bn256::Fr;
use rayon::prelude::*;

use crate::backend::BackendError;
use crate::cuda::DeviceValues;

/// A vector of `Fr` resident in one backend. Made by a backend's `upload` or `zeros`, used only
/// with that backend (another backend refuses it with an error), freed when dropped.
pub struct Poly {
    pub(crate) len: usize,
    pub(crate) repr: Repr,
}

pub(crate) enum Repr {
    /// The CPU backend's.
    Host(Vec<Fr>),
    /// A CUDA backend's (`backend` is that backend's id).
    Cuda { backend: u64, values: DeviceValues },
    /// A `CheckedBackend`'s: the primary's and the reference's.
    Pair(Box<Poly>, Box<Poly>),
}

impl Poly {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The values, when the vector is held in host memory (the CPU backend's): no copy needed.
    pub fn host_slice(&self) -> Option<&[Fr]> {
        match &self.repr {
            Repr::Host(v) => Some(v),
            _ => None,
        }
    }

    pub(crate) fn host(values: Vec<Fr>) -> Self {
        Self {
            len: values.len(),
            repr: Repr::Host(values),
        }
    }

    pub(crate) fn host_ref(&self) -> Result<&Vec<Fr>, BackendError> {
        match &self.repr {
            Repr::Host(v) => Ok(v),
            _ => Err(foreign("cpu")),
        }
    }

    pub(crate) fn host_mut(&mut self) -> Result<&mut Vec<Fr>, BackendError> {
        match &mut self.repr {
            Repr::Host(v) => Ok(v),
            _ => Err(foreign("cpu")),
        }
    }

    pub(crate) fn pair(&self) -> Result<(&Poly, &Poly), BackendError> {
        match &self.repr {
            Repr::Pair(a, b) => Ok((a, b)),
            _ => Err(foreign("checked")),
        }
    }

    pub(crate) fn pair_mut(&mut self) -> Result<(&mut Poly, &mut Poly), BackendError> {
        match &mut self.repr {
            Repr::Pair(a, b) => Ok((a, b)),
            _ => Err(foreign("checked")),
        }
    }
}

impl std::fmt::Debug for Poly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.repr {
            Repr::Host(_) => "host",
            Repr::Cuda { .. } => "cuda",
            Repr::Pair(..) => "checked",
        };
        f.debug_struct("Poly")
            .field("len", &self.len)
            .field("on", &kind)
            .finish()
    }
}

/// The error for a `Poly` handed to a backend that did not make it.
pub(crate) fn foreign(backend: &str) -> BackendError {
    BackendError::Device(format!(
        "a vector made by another backend was passed to the {backend} backend"
    ))
}

/// `len` zeros in host memory, written by every core when `len` is large. `vec![Fr::ZERO; len]`
/// writes every element on one thread (the standard library does not know `Fr::ZERO` is all zero
/// bytes, so it does not ask for zeroed pages), and each first write to a fresh page faults: about
/// 22 ms of one thread per 2^20 elements on the 2-core dev VM, which a host with many cores and a
/// GPU would otherwise spend on one of them.
pub fn host_zeros(len: usize) -> Vec<Fr> {
    const SERIAL: usize = 1 << 14;
    if len <= SERIAL {
        return vec![Fr::ZERO; len];
    }
    let mut out = Vec::with_capacity(len);
    (0..len)
        .into_par_iter()
        .with_min_len(SERIAL)
        .map(|_| Fr::ZERO)
        .collect_into_vec(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_zeros_has_the_length_and_only_zeros() {
        for len in [0, 1, 1 << 14, (1 << 14) + 1, 3 << 15] {
            let v = host_zeros(len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|x| bool::from(x.is_zero())), "len {len}");
        }
    }
}
