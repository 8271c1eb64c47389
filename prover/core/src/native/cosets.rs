//! Where the quotient's numerator is evaluated: `r` cosets `s_p·⟨ω⟩` of the circuit's domain, as
//! few as h needs.
//!
//! h has `pieces = degree − 1` pieces of n coefficients (halo2's quotient degree), so `pieces·n`
//! points determine it. halo2 evaluates on the coset of the extended domain, `2^ext ≥ pieces` parts
//! of n points: for a degree-4 circuit (every halo2-base circuit) 4 parts where 3 suffice. h's
//! coefficients are unique, so any `r ≥ pieces` cosets give the same h and the same proof bytes.
//!
//! The parts are `s_p = g·ν^p` for `p < r`, with `ν` a primitive `(r·n)`-th root of unity, so
//! `s_p^n = g^n·μ^p` with `μ = ν^n` of order exactly r: the inverse transform of each part's
//! quotient values is then a size-r DFT over h's pieces ([`super::quotient`]). `r` is the smallest
//! of `2^a` and `3·2^a` that is at least `pieces` (BN254's scalar group has order divisible by
//! 2^28·3, so such a root exists while `r·n ≤ 3·2^28`). `g` is the field's multiplicative generator,
//! whose n-th power lies in no group of order r: `s_p^n ≠ 1`, so `X^n − 1` is invertible on
//! every part.

use ff::{Field, PrimeField, WithSmallOrderMulGroup};
use halo2curves::bn256::Fr;
use sha2::{Digest, Sha256};

use super::NativeError;

/// The quotient's cosets for one circuit shape (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cosets {
    /// The part shifts `s_p = g·ν^p`.
    shifts: Vec<Fr>,
    /// `g^n`.
    gn: Fr,
    /// `μ = ν^n`, of order r.
    mu: Fr,
}

impl Cosets {
    /// The cosets for a domain of `2^k` rows and a quotient of `pieces` pieces.
    pub fn new(k: u32, pieces: usize) -> Result<Self, NativeError> {
        let bad = |why: String| NativeError::Internal(format!("quotient cosets: {why}"));
        if pieces == 0 {
            return Err(bad("a quotient of no pieces".into()));
        }
        let (r, a, three) = parts_for(pieces);
        let log = k + a;
        if log > Fr::S {
            return Err(bad(format!(
                "{r} parts of 2^{k} points need a root of unity of order 2^{log}, the field has 2^{}",
                Fr::S
            )));
        }
        // ν: a primitive 2^(k+a)-th root times (when 3 | r) one of order 3; orders coprime, so ν
        // has order r·n.
        let mut nu = Fr::ROOT_OF_UNITY;
        for _ in log..Fr::S {
            nu = nu.square();
        }
        if three {
            nu *= <Fr as WithSmallOrderMulGroup<3>>::ZETA;
        }
        let n = 1u64 << k;
        let mu = nu.pow_vartime([n]);
        // μ has order exactly r.
        let mut m = mu;
        for j in 1..r {
            if m == Fr::ONE {
                return Err(bad(format!("ν^n has order {j}, not {r}")));
            }
            m *= mu;
        }
        if m != Fr::ONE {
            return Err(bad(format!("ν^n does not have order {r}")));
        }
        let g = Fr::MULTIPLICATIVE_GENERATOR;
        let gn = g.pow_vartime([n]);
        let mut shifts = Vec::with_capacity(r);
        let mut s = g;
        for p in 0..r {
            if gn * mu.pow_vartime([p as u64]) == Fr::ONE {
                return Err(bad(format!("part {p} meets the domain (s_p^n = 1)")));
            }
            shifts.push(s);
            s *= nu;
        }
        Ok(Self { shifts, gn, mu })
    }

    /// The number of parts r.
    pub fn parts(&self) -> usize {
        self.shifts.len()
    }

    /// The shift of part `p`.
    pub fn shift(&self, p: usize) -> Result<Fr, NativeError> {
        self.shifts
            .get(p)
            .copied()
            .ok_or_else(|| NativeError::Internal(format!("part {p} of {}", self.shifts.len())))
    }

    /// `g^n`: every part's `s_p^n` is `g^n·μ^p`.
    pub fn gn(&self) -> Fr {
        self.gn
    }

    /// `μ`, of order r.
    pub fn mu(&self) -> Fr {
        self.mu
    }

    /// SHA-256 over the shifts: a file of columns on these parts names them by it.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for s in &self.shifts {
            h.update(s.to_repr());
        }
        h.finalize().into()
    }
}

/// The smallest `r ≥ pieces` of the form `2^a` or `3·2^a`: `(r, a, 3 | r)`.
fn parts_for(pieces: usize) -> (usize, u32, bool) {
    // In increasing order: 2^a, then 3·2^a (between 2^(a+1) and 2^(a+2)), then 2^(a+2)...
    if pieces <= 1 {
        return (1, 0, false);
    }
    let mut a = 0u32;
    loop {
        if 2usize << a >= pieces {
            return (2 << a, a + 1, false);
        }
        if 3usize << a >= pieces {
            return (3 << a, a, true);
        }
        a += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fewest_parts_that_hold_the_pieces() {
        let got: Vec<usize> = (1..=13).map(|p| parts_for(p).0).collect();
        assert_eq!(got, [1, 2, 3, 4, 6, 6, 8, 8, 12, 12, 12, 12, 16]);
    }

    #[test]
    fn parts_are_disjoint_cosets_off_the_domain() {
        for (k, pieces) in [
            (1u32, 1usize),
            (3, 2),
            (4, 3),
            (5, 4),
            (3, 5),
            (6, 7),
            (2, 9),
        ] {
            let c = Cosets::new(k, pieces).expect("cosets");
            let n = 1u64 << k;
            let r = c.parts();
            assert!(r >= pieces);
            // Every point of every part, distinct, none a root of X^n - 1.
            let omega = {
                let mut w = Fr::ROOT_OF_UNITY;
                for _ in k..Fr::S {
                    w = w.square();
                }
                w
            };
            let mut seen = std::collections::HashSet::new();
            for p in 0..r {
                let s = c.shift(p).expect("shift");
                assert_eq!(s.pow_vartime([n]), c.gn() * c.mu().pow_vartime([p as u64]));
                assert_ne!(s.pow_vartime([n]), Fr::ONE, "k {k} part {p} on the domain");
                let mut x = s;
                for _ in 0..n {
                    assert!(
                        seen.insert(x.to_repr()),
                        "k {k} pieces {pieces}: a point twice"
                    );
                    x *= omega;
                }
            }
            assert_eq!(seen.len() as u64, n * r as u64);
            assert!(c.shift(r).is_err());
        }
        assert!(Cosets::new(4, 0).is_err());
        // r·n beyond the field's 2-adic roots.
        assert!(Cosets::new(Fr::S, 2).is_err());
        assert!(Cosets::new(Fr::S, 3).is_ok());
    }
}
