//! The kernel headers (`gpu/kernels/field.cuh`, `curve.cuh`), compiled with the host C++ compiler
//! (see `build.rs`), against halo2curves: Montgomery add/sub/mul/square/inverse/neg for Fq and Fr,
//! and G1 XYZZ add, mixed add and doubling, on random and edge inputs; and the device-independent
//! MSM helpers of `msm.cuh` (signed-digit recoding, running-sum bucket reduction).
#![cfg(gpu_host_shim)]
#![allow(unsafe_code)]

use ff::{Field, PrimeField};
use group::prime::PrimeCurveAffine;
use group::{Curve, Group};
use halo2curves::bn256::{Fq, Fr, G1Affine, G1};
use halo2curves::serde::SerdeObject;
use halo2curves::CurveAffine;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

#[link(name = "gpu_host_shim", kind = "static")]
extern "C" {
    fn gpu_host_fq_op(op: i32, a: *const u32, b: *const u32, out: *mut u32);
    fn gpu_host_fr_op(op: i32, a: *const u32, b: *const u32, out: *mut u32);
    fn gpu_host_g1_add(a: *const u32, b: *const u32, out: *mut u32);
    fn gpu_host_g1_add_affine(a: *const u32, b: *const u32, out: *mut u32);
    fn gpu_host_g1_dbl(a: *const u32, out: *mut u32);
    fn gpu_host_g1_dbl_affine(a: *const u32, out: *mut u32);
    fn gpu_host_g1_to_affine(a: *const u32, out: *mut u32);
    fn gpu_host_g1_is_on_curve(a: *const u32) -> i32;
    fn gpu_host_msm_recode(scalar: *const u32, c: u32, digits: *mut i32) -> u32;
    fn gpu_host_msm_weighted_sum(
        buckets: *const u32,
        nb: u32,
        lo: u32,
        hi: u32,
        out: *mut u32,
    ) -> i32;
}

const ADD: i32 = 0;
const SUB: i32 = 1;
const MUL: i32 = 2;
const SQR: i32 = 3;
const INV: i32 = 4;
const NEG: i32 = 5;
const TO_MONT: i32 = 6;
const FROM_MONT: i32 = 7;

/// Raw Montgomery limbs of a field element (halo2curves' `to_raw_bytes` is the Montgomery form,
/// little-endian), as 8 × u32.
fn limbs<F: SerdeObject>(f: &F) -> [u32; 8] {
    let bytes = f.to_raw_bytes();
    let mut out = [0u32; 8];
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    out
}

fn from_limbs<F: SerdeObject>(l: &[u32]) -> F {
    let bytes: Vec<u8> = l.iter().flat_map(|x| x.to_le_bytes()).collect();
    F::from_raw_bytes(&bytes).expect("shim returned a non-canonical value")
}

trait Shim: Field + SerdeObject {
    fn op(op: i32, a: &Self, b: &Self) -> Self;
    fn op_limbs(op: i32, a: &[u32; 8], b: &[u32; 8]) -> [u32; 8];
}

macro_rules! shim_field {
    ($t:ty, $f:ident) => {
        impl Shim for $t {
            fn op(op: i32, a: &Self, b: &Self) -> Self {
                from_limbs(&Self::op_limbs(op, &limbs(a), &limbs(b)))
            }
            fn op_limbs(op: i32, a: &[u32; 8], b: &[u32; 8]) -> [u32; 8] {
                let mut out = [0u32; 8];
                // SAFETY: the shim reads 8 limbs from `a` and `b` and writes 8 to `out`; all three
                // are valid arrays of 8 u32 that live across the call.
                unsafe { $f(op, a.as_ptr(), b.as_ptr(), out.as_mut_ptr()) };
                out
            }
        }
    };
}
shim_field!(Fq, gpu_host_fq_op);
shim_field!(Fr, gpu_host_fr_op);

fn edge_values<F: PrimeField>() -> Vec<F> {
    let mut v = vec![
        F::ZERO,
        F::ONE,
        -F::ONE,
        F::ONE.double(),
        -F::ONE.double(),
        F::TWO_INV,
    ];
    v.push(F::from(u64::MAX));
    v.push(-F::from(u64::MAX));
    v.push(F::ROOT_OF_UNITY);
    v.push(F::MULTIPLICATIVE_GENERATOR);
    // 2^k for k around limb boundaries.
    for k in [31u64, 32, 63, 64, 127, 128, 191, 192, 253] {
        v.push(F::from(2).pow_vartime([k]));
    }
    v
}

fn check_field<F: Shim + PrimeField>(name: &str, seed: u64) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut vals = edge_values::<F>();
    vals.extend((0..64).map(|_| F::random(&mut rng)));
    for a in &vals {
        for b in &vals {
            assert_eq!(F::op(ADD, a, b), *a + b, "{name} add {a:?} {b:?}");
            assert_eq!(F::op(SUB, a, b), *a - b, "{name} sub {a:?} {b:?}");
            assert_eq!(F::op(MUL, a, b), *a * b, "{name} mul {a:?} {b:?}");
        }
        assert_eq!(F::op(SQR, a, a), a.square(), "{name} sqr {a:?}");
        assert_eq!(F::op(NEG, a, a), -*a, "{name} neg {a:?}");
        let inv = Option::<F>::from(a.invert()).unwrap_or(F::ZERO);
        assert_eq!(F::op(INV, a, a), inv, "{name} inverse {a:?}");
    }
    // Montgomery conversion: raw limbs of the canonical integer ↔ Montgomery limbs.
    for a in &vals {
        let canonical = a.to_repr();
        let mut raw = [0u32; 8];
        for (o, c) in raw.iter_mut().zip(canonical.as_ref().chunks_exact(4)) {
            *o = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        assert_eq!(
            F::op_limbs(TO_MONT, &raw, &raw),
            limbs(a),
            "{name} to_montgomery"
        );
        assert_eq!(
            F::op_limbs(FROM_MONT, &limbs(a), &limbs(a)),
            raw,
            "{name} from_montgomery"
        );
    }
}

#[test]
fn fq_matches_halo2curves() {
    check_field::<Fq>("Fq", 1);
}

#[test]
fn fr_matches_halo2curves() {
    check_field::<Fr>("Fr", 2);
}

// ---- G1 ----------------------------------------------------------------------------------------

fn affine_limbs(p: &G1Affine) -> [u32; 16] {
    let mut out = [0u32; 16];
    // halo2curves' affine identity is (0, 0), the same as the kernels'.
    out[..8].copy_from_slice(&limbs(&p.x));
    out[8..].copy_from_slice(&limbs(&p.y));
    out
}

fn affine_from(l: &[u32; 16]) -> G1Affine {
    let x: Fq = from_limbs(&l[..8]);
    let y: Fq = from_limbs(&l[8..]);
    if x.is_zero_vartime() && y.is_zero_vartime() {
        return G1Affine::identity();
    }
    let p = G1Affine { x, y };
    assert!(
        bool::from(p.is_on_curve()),
        "shim returned a point off the curve"
    );
    p
}

/// XYZZ limbs of `p` scaled by `lambda` (X = x·λ², Y = y·λ³, ZZ = λ², ZZZ = λ³), so the kernels
/// see non-trivial Z; the identity is ZZ = ZZZ = 0.
fn xyzz_limbs(p: &G1Affine, lambda: Fq) -> [u32; 32] {
    let mut out = [0u32; 32];
    if bool::from(p.is_identity()) {
        out[..8].copy_from_slice(&limbs(&Fq::ONE));
        out[8..16].copy_from_slice(&limbs(&Fq::ONE));
        return out;
    }
    let l2 = lambda.square();
    let l3 = l2 * lambda;
    out[..8].copy_from_slice(&limbs(&(p.x * l2)));
    out[8..16].copy_from_slice(&limbs(&(p.y * l3)));
    out[16..24].copy_from_slice(&limbs(&l2));
    out[24..].copy_from_slice(&limbs(&l3));
    out
}

fn shim_add(a: &G1Affine, la: Fq, b: &G1Affine, lb: Fq) -> G1Affine {
    let (x, y) = (xyzz_limbs(a, la), xyzz_limbs(b, lb));
    let mut out = [0u32; 16];
    // SAFETY: 32-limb inputs and a 16-limb output, all valid for the call.
    unsafe { gpu_host_g1_add(x.as_ptr(), y.as_ptr(), out.as_mut_ptr()) };
    affine_from(&out)
}

fn shim_add_affine(a: &G1Affine, la: Fq, b: &G1Affine) -> G1Affine {
    let (x, y) = (xyzz_limbs(a, la), affine_limbs(b));
    let mut out = [0u32; 16];
    // SAFETY: 32-limb and 16-limb inputs and a 16-limb output, all valid for the call.
    unsafe { gpu_host_g1_add_affine(x.as_ptr(), y.as_ptr(), out.as_mut_ptr()) };
    affine_from(&out)
}

fn shim_dbl(a: &G1Affine, la: Fq) -> G1Affine {
    let x = xyzz_limbs(a, la);
    let mut out = [0u32; 16];
    // SAFETY: a 32-limb input and a 16-limb output, valid for the call.
    unsafe { gpu_host_g1_dbl(x.as_ptr(), out.as_mut_ptr()) };
    affine_from(&out)
}

fn shim_dbl_affine(a: &G1Affine) -> G1Affine {
    let x = affine_limbs(a);
    let mut out = [0u32; 16];
    // SAFETY: a 16-limb input and a 16-limb output, valid for the call.
    unsafe { gpu_host_g1_dbl_affine(x.as_ptr(), out.as_mut_ptr()) };
    affine_from(&out)
}

fn shim_round_trip(a: &G1Affine, la: Fq) -> G1Affine {
    let x = xyzz_limbs(a, la);
    let mut out = [0u32; 16];
    // SAFETY: a 32-limb input and a 16-limb output, valid for the call.
    unsafe { gpu_host_g1_to_affine(x.as_ptr(), out.as_mut_ptr()) };
    affine_from(&out)
}

fn shim_on_curve(a: &[u32; 16]) -> bool {
    // SAFETY: a 16-limb input, valid for the call.
    unsafe { gpu_host_g1_is_on_curve(a.as_ptr()) == 1 }
}

#[test]
fn g1_matches_halo2curves() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut pts: Vec<G1Affine> = (0..24).map(|_| G1::random(&mut rng).to_affine()).collect();
    let g = G1Affine::generator();
    pts.push(g);
    pts.push(-g);
    pts.push((G1::from(g) * Fr::from(2)).to_affine());
    pts.push(G1Affine::identity());
    let lambdas = [Fq::ONE, Fq::random(&mut rng), -Fq::ONE];
    for (i, a) in pts.iter().enumerate() {
        let la = lambdas[i % 3];
        assert!(shim_on_curve(&affine_limbs(a)));
        assert_eq!(shim_round_trip(a, la), *a, "to_affine");
        let a_proj = G1::from(*a);
        let twice = (a_proj + a_proj).to_affine();
        assert_eq!(shim_dbl(a, la), twice, "dbl");
        assert_eq!(shim_dbl_affine(a), twice, "dbl_affine");
        // Edge cases: P + P, P + (−P), P + O, O + P.
        let neg = -*a;
        let o = G1Affine::identity();
        assert_eq!(shim_add(a, la, a, lambdas[(i + 1) % 3]), twice, "P + P");
        assert_eq!(shim_add_affine(a, la, a), twice, "P + P mixed");
        assert_eq!(shim_add(a, la, &neg, lambdas[(i + 2) % 3]), o, "P + (-P)");
        assert_eq!(shim_add_affine(a, la, &neg), o, "P + (-P) mixed");
        assert_eq!(shim_add(a, la, &o, Fq::ONE), *a, "P + O");
        assert_eq!(shim_add(&o, Fq::ONE, a, la), *a, "O + P");
        assert_eq!(shim_add_affine(a, la, &o), *a, "P + O mixed");
        assert_eq!(shim_add_affine(&o, Fq::ONE, a), *a, "O + P mixed");
        for (j, b) in pts.iter().enumerate() {
            let sum = (a_proj + b).to_affine();
            let lb = lambdas[(i + j) % 3];
            assert_eq!(shim_add(a, la, b, lb), sum, "add {i} {j}");
            assert_eq!(shim_add_affine(a, la, b), sum, "add_affine {i} {j}");
        }
    }
    // A point off the curve is reported as such.
    let mut bad = affine_limbs(&g);
    bad[8] ^= 1;
    assert!(!shim_on_curve(&bad));
}

#[test]
fn g1_accumulation_chain() {
    // A running XYZZ accumulator over many mixed additions, as an MSM bucket would do.
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let pts: Vec<G1Affine> = (0..200)
        .map(|i| {
            if i % 17 == 0 {
                G1Affine::identity()
            } else {
                G1::random(&mut rng).to_affine()
            }
        })
        .collect();
    let mut acc = G1Affine::identity();
    let mut expect = G1::identity();
    for p in &pts {
        acc = shim_add_affine(&acc, Fq::random(&mut rng), p);
        expect += p;
        assert_eq!(acc, expect.to_affine());
    }
}

// ---- msm.cuh -------------------------------------------------------------------------------------

fn edge_scalars(rng: &mut ChaCha20Rng) -> Vec<Fr> {
    let mut v = edge_values::<Fr>();
    v.push(-Fr::ONE - Fr::ONE); // r - 2
    v.push(Fr::from(0x8000_0000u64));
    v.push(Fr::from(u64::MAX) * Fr::from(u64::MAX));
    v.extend((0..200).map(|_| Fr::random(&mut *rng)));
    v.extend((0..50).map(|_| Fr::from(rand::Rng::gen::<u64>(rng))));
    v
}

#[test]
fn msm_recoding_matches_rust_and_recomposes() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let scalars = edge_scalars(&mut rng);
    for c in gpu::cuda::plan::MIN_WINDOW_BITS..=gpu::cuda::plan::MAX_WINDOW_BITS {
        let half = 1i32 << (c - 1);
        let radix = Fr::from(1u64 << c);
        for s in &scalars {
            let l = gpu::cuda::plan::scalar_limbs(s);
            let mut digits = [0i32; 64];
            // SAFETY: an 8-limb scalar and room for ceil(255 / c) ≤ 26 digits.
            let w = unsafe { gpu_host_msm_recode(l.as_ptr(), c, digits.as_mut_ptr()) };
            let want = gpu::cuda::plan::signed_digits(&l, c);
            assert_eq!(w as usize, want.len(), "c = {c}");
            assert_eq!(&digits[..want.len()], &want[..], "c = {c}, scalar {s:?}");
            // Σ d_w · 2^(c·w) recomposes the scalar; digits stay in range.
            let mut acc = Fr::ZERO;
            for d in want.iter().rev() {
                assert!(
                    *d > -half && *d <= half,
                    "digit {d} out of range for c = {c}"
                );
                acc = acc * radix
                    + if *d < 0 {
                        -Fr::from((-*d) as u64)
                    } else {
                        Fr::from(*d as u64)
                    };
            }
            assert_eq!(acc, *s, "c = {c}");
        }
    }
}

#[test]
fn msm_weighted_sum_matches_halo2curves() {
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let nb = 40usize;
    let buckets: Vec<G1Affine> = (0..nb)
        .map(|i| match i % 7 {
            0 => G1Affine::identity(),
            3 => G1Affine::generator(),
            _ => G1::random(&mut rng).to_affine(),
        })
        .collect();
    let limbs: Vec<u32> = buckets.iter().flat_map(affine_limbs).collect();
    for (lo, hi) in [
        (0usize, 40usize),
        (0, 1),
        (5, 6),
        (7, 33),
        (20, 40),
        (39, 40),
        (3, 3),
    ] {
        let want: G1 = (lo..hi)
            .map(|b| G1::from(buckets[b]) * Fr::from(b as u64 + 1))
            .fold(G1::identity(), |a, p| a + p);
        let mut out = [0u32; 16];
        // SAFETY: `limbs` holds nb ≤ 64 affine points of 16 limbs; lo ≤ hi ≤ nb; 16-limb output.
        let ok = unsafe {
            gpu_host_msm_weighted_sum(
                limbs.as_ptr(),
                nb as u32,
                lo as u32,
                hi as u32,
                out.as_mut_ptr(),
            )
        };
        assert_eq!(ok, 1);
        assert_eq!(affine_from(&out), want.to_affine(), "buckets {lo}..{hi}");
    }
}
