//! The Lagrange basis of dev_setup is right, and verify catches tampering.

mod common;

use ff::{Field, PrimeField};
use group::prime::PrimeCurveAffine;
use group::Curve;
use halo2_proofs::poly::commitment::{Blind, Params, ParamsProver};
use halo2_proofs::poly::EvaluationDomain;
use halo2curves::bn256::{Fr, G1Affine, G2Affine};
use params::{ParamsError, Section, Srs};
use rand_chacha::ChaCha20Rng;
use rand_core::{OsRng, SeedableRng};

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(7)
}

/// `L_i(s)` computed the textbook way: `Π_{j≠i} (s − ω^j)/(ω^i − ω^j)`.
fn lagrange_scalar(s: Fr, k: u32, i: usize) -> Fr {
    let mut omega = Fr::ROOT_OF_UNITY;
    for _ in k..Fr::S {
        omega = omega.square();
    }
    let wi = omega.pow_vartime([i as u64]);
    let (mut num, mut den) = (Fr::ONE, Fr::ONE);
    for j in 0..1usize << k {
        if j != i {
            let wj = omega.pow_vartime([j as u64]);
            num *= s - wj;
            den *= wi - wj;
        }
    }
    num * den.invert().unwrap()
}

#[test]
fn dev_setup_equals_textbook_srs_for_its_secret() {
    let s = params::dev_secret(params::DEV_SEED_DEFAULT);
    let g1 = G1Affine::generator();
    for k in [0u32, 1, 4] {
        let srs = params::dev_setup(k, params::DEV_SEED_DEFAULT, false).unwrap();
        let lagrange = common::lagrange(&srs);
        assert_eq!(lagrange.len(), 1 << k);
        for (i, (g, l)) in srs.get_g().iter().zip(&lagrange).enumerate() {
            let power = s.pow_vartime([i as u64]);
            assert_eq!(*g, (g1 * power).to_affine(), "k={k} g[{i}]");
            assert_eq!(
                *l,
                (g1 * lagrange_scalar(s, k, i)).to_affine(),
                "k={k} g_lagrange[{i}]"
            );
        }
        assert_eq!(srs.g2(), G2Affine::generator());
        assert_eq!(srs.s_g2(), (G2Affine::generator() * s).to_affine());
    }
    // Spot checks at k = 10, including the last index.
    let k = 10;
    let srs = params::dev_setup(k, params::DEV_SEED_DEFAULT, false).unwrap();
    let lagrange = common::lagrange(&srs);
    for i in [0usize, 1, 333, 1023] {
        assert_eq!(srs.get_g()[i], (g1 * s.pow_vartime([i as u64])).to_affine());
        assert_eq!(lagrange[i], (g1 * lagrange_scalar(s, k, i)).to_affine());
    }
}

#[test]
fn commit_lagrange_matches_commit_and_verify_passes() {
    for k in [4u32, 10] {
        let srs = params::dev_setup(k, 3, false).unwrap();
        let domain = EvaluationDomain::<Fr>::new(1, k);
        for _ in 0..3 {
            let a = domain.lagrange_from_vec((0..1 << k).map(|_| Fr::random(OsRng)).collect());
            let coeffs = domain.lagrange_to_coeff(a.clone());
            assert_eq!(
                srs.commit_lagrange(&a, Blind(Fr::ZERO)),
                srs.commit(&coeffs, Blind(Fr::ZERO)),
                "k = {k}"
            );
        }
        params::verify(&srs, rng()).unwrap();
    }
}

/// Rebuilds `srs` with some parts replaced.
fn rebuild(
    srs: &Srs,
    k: u32,
    g: Vec<G1Affine>,
    lagrange: Vec<G1Affine>,
    g2: G2Affine,
    s_g2: G2Affine,
) -> Srs {
    srs.from_parts(k, g, Some(lagrange), g2, s_g2)
}

#[test]
fn verify_rejects_tampered_srs() {
    let k = 8;
    let srs = params::dev_setup(k, 5, false).unwrap();
    let g = srs.get_g().to_vec();
    let lagrange = common::lagrange(&srs);
    let (g2, s_g2) = (srs.g2(), srs.s_g2());
    params::verify(
        &rebuild(&srs, k, g.clone(), lagrange.clone(), g2, s_g2),
        rng(),
    )
    .unwrap();

    // One power replaced by another valid curve point.
    let mut bad_g = g.clone();
    bad_g[77] = (bad_g[77] + G1Affine::generator()).to_affine();
    let err =
        params::verify(&rebuild(&srs, k, bad_g, lagrange.clone(), g2, s_g2), rng()).unwrap_err();
    assert!(
        matches!(err, ParamsError::PowersInconsistent { pairs: 255 }),
        "{err}"
    );

    // The last power replaced (it only appears on one side of the check).
    let mut bad_g = g.clone();
    bad_g[255] = bad_g[254];
    let err =
        params::verify(&rebuild(&srs, k, bad_g, lagrange.clone(), g2, s_g2), rng()).unwrap_err();
    assert!(
        matches!(err, ParamsError::PowersInconsistent { .. }),
        "{err}"
    );

    // One Lagrange point replaced.
    let mut bad_l = lagrange.clone();
    bad_l[200] = bad_l[201];
    let err = params::verify(&rebuild(&srs, k, g.clone(), bad_l, g2, s_g2), rng()).unwrap_err();
    assert!(
        matches!(err, ParamsError::LagrangeInconsistent { k: 8 }),
        "{err}"
    );

    // s_g2 replaced by 2·s_g2.
    let double = (s_g2 + s_g2).to_affine();
    let err = params::verify(
        &rebuild(&srs, k, g.clone(), lagrange.clone(), g2, double),
        rng(),
    )
    .unwrap_err();
    assert!(
        matches!(err, ParamsError::PowersInconsistent { .. }),
        "{err}"
    );
    println!("{err}");

    // g[0] not the generator.
    let mut bad_g = g.clone();
    bad_g[0] = bad_g[1];
    let err =
        params::verify(&rebuild(&srs, k, bad_g, lagrange.clone(), g2, s_g2), rng()).unwrap_err();
    assert!(matches!(err, ParamsError::WrongG1Generator), "{err}");

    // g2 not the generator.
    let err = params::verify(
        &rebuild(&srs, k, g.clone(), lagrange.clone(), s_g2, s_g2),
        rng(),
    )
    .unwrap_err();
    assert!(matches!(err, ParamsError::WrongG2Generator), "{err}");

    // An identity point, reported with its index.
    let mut bad_l = lagrange.clone();
    bad_l[9] = G1Affine::identity();
    let err = params::verify(&rebuild(&srs, k, g.clone(), bad_l, g2, s_g2), rng()).unwrap_err();
    assert!(
        matches!(
            err,
            ParamsError::IdentityPoint {
                section: Section::GLagrange,
                index: 9
            }
        ),
        "{err}"
    );

    // Vector lengths that do not match k.
    let err = params::verify(
        &rebuild(&srs, k, g[..128].to_vec(), lagrange.clone(), g2, s_g2),
        rng(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ParamsError::LengthMismatch {
                section: Section::G,
                expected: 256,
                actual: 128,
                ..
            }
        ),
        "{err}"
    );
    let err = params::verify(
        &rebuild(&srs, k, g.clone(), lagrange[..255].to_vec(), g2, s_g2),
        rng(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ParamsError::LengthMismatch {
                section: Section::GLagrange,
                actual: 255,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn verify_rejects_halo2_srs_with_wrong_lagrange_size() {
    // A k = 3 SRS claiming k = 2's prefix but keeping k = 3's Lagrange basis prefix.
    let srs = params::dev_setup(3, 0, false).unwrap();
    let lagrange = common::lagrange(&srs);
    let err = params::verify(
        &srs.from_parts(
            2,
            srs.get_g()[..4].to_vec(),
            Some(lagrange[..4].to_vec()),
            srs.g2(),
            srs.s_g2(),
        ),
        rng(),
    )
    .unwrap_err();
    assert!(
        matches!(err, ParamsError::LagrangeInconsistent { k: 2 }),
        "{err}"
    );
    // ... while halo2's own downsize gives a consistent one.
    let mut small = srs.clone();
    small.downsize(2);
    params::verify(&small, rng()).unwrap();
}
