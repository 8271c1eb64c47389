//! dev_setup against halo2's setup: speed, and the file round trip through
//! both our reader and halo2's.

mod common;

use std::time::Instant;

use ff::Field;
use halo2_proofs::poly::commitment::{Blind, Params, ParamsProver};
use halo2_proofs::poly::kzg::commitment::ParamsKZG;
use halo2_proofs::poly::EvaluationDomain;
use halo2curves::bn256::{Bn256, Fr};
use rand_core::OsRng;
use sha2::{Digest, Sha256};

const K: u32 = 16;

#[test]
fn dev_setup_is_10x_faster_than_halo2_and_round_trips() {
    let t = Instant::now();
    let ours = params::dev_setup(K, params::DEV_SEED_DEFAULT, false).unwrap();
    let ours_time = t.elapsed();

    let t = Instant::now();
    let theirs = ParamsKZG::<Bn256>::setup(K, OsRng);
    let theirs_time = t.elapsed();
    let ratio = theirs_time.as_secs_f64() / ours_time.as_secs_f64();
    println!(
        "k = {K}: dev_setup {ours_time:.2?}, ParamsKZG::setup {theirs_time:.2?}, ratio {ratio:.1}x"
    );
    assert_eq!(theirs.get_g().len(), ours.get_g().len());
    assert!(
        ratio >= 10.0,
        "dev_setup only {ratio:.1}x faster than ParamsKZG::setup"
    );
    drop(theirs);

    let dir = tempfile::tempdir().unwrap();
    let path = params::path_for(dir.path(), K);
    assert!(path.ends_with("kzg_bn254_16.srs"));
    params::write_file(&ours, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len() as u64, 4 + 2 * (1u64 << K) * 64 + 256);
    assert_eq!(bytes.len() as u64, params::expected_file_len(K));
    assert!(!dir.path().join("kzg_bn254_16.srs.tmp").exists());

    let ours_read = params::read_file(&path).unwrap();
    let halo2_read: ParamsKZG<Bn256> = Params::read(&mut std::io::BufReader::new(
        std::fs::File::open(&path).unwrap(),
    ))
    .unwrap();
    for srs in [&ours_read, &halo2_read] {
        assert_eq!(srs.k(), K);
        assert_eq!(srs.get_g(), ours.get_g());
        assert_eq!(srs.g2(), ours.g2());
        assert_eq!(srs.s_g2(), ours.s_g2());
        assert_eq!(common::lagrange(srs), common::lagrange(&ours));
        assert_eq!(common::to_bytes(srs), bytes);
    }

    // The Lagrange basis commits like the monomial one.
    let domain = EvaluationDomain::<Fr>::new(1, K);
    let a = domain.lagrange_from_vec((0..1 << K).map(|_| Fr::random(OsRng)).collect());
    let coeffs = domain.lagrange_to_coeff(a.clone());
    let blind = Blind(Fr::ZERO);
    for srs in [&ours_read, &halo2_read] {
        assert_eq!(srs.commit_lagrange(&a, blind), srs.commit(&coeffs, blind));
    }

    let report = params::verify_file(&path).unwrap();
    assert_eq!(report.k, K);
    assert_eq!(report.insecure_dev_seed, Some(params::DEV_SEED_DEFAULT));
    assert_eq!(report.sha256_hex, hex::encode(Sha256::digest(&bytes)));
}
