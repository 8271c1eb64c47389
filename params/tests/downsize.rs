//! Downsizing, loading from a params directory, ensure_dev.

mod common;

use std::fs;

use halo2_proofs::poly::commitment::{Params, ParamsProver};
use params::ParamsError;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

#[test]
fn downsize_file_equals_smaller_dev_setup() {
    let dir = tempfile::tempdir().unwrap();
    let src = params::path_for(dir.path(), 12);
    params::write_file(&params::dev_setup(12, 0, false).unwrap(), &src).unwrap();

    let out = dir.path().join("out").join("kzg_bn254_10.srs");
    params::downsize_file(&src, 10, &out).unwrap();
    let reference = dir.path().join("ref.srs");
    params::write_file(&params::dev_setup(10, 0, false).unwrap(), &reference).unwrap();
    assert!(
        fs::read(&out).unwrap() == fs::read(&reference).unwrap(),
        "downsized file differs"
    );

    let report = params::verify_file(&out).unwrap();
    assert_eq!(report.k, 10);
    assert_eq!(report.insecure_dev_seed, Some(0));

    // Same size: a copy.
    let same = dir.path().join("same.srs");
    params::downsize_file(&src, 12, &same).unwrap();
    assert!(fs::read(&same).unwrap() == fs::read(&src).unwrap());

    // Larger than the source.
    let err = params::downsize_file(&src, 13, &dir.path().join("x.srs")).unwrap_err();
    assert!(
        matches!(err, ParamsError::DownsizeTooLarge { from: 12, to: 13 }),
        "{err}"
    );
    assert!(!dir.path().join("x.srs").exists());
}

#[test]
fn downsize_in_memory() {
    let big = params::dev_setup(9, 2, false).unwrap();
    let small = params::downsize(&big, 6).unwrap();
    assert_eq!(
        common::to_bytes(&small),
        common::to_bytes(&params::dev_setup(6, 2, false).unwrap())
    );
    params::verify(&small, ChaCha20Rng::seed_from_u64(1)).unwrap();
    let err = params::downsize(&big, 10).unwrap_err();
    assert!(
        matches!(err, ParamsError::DownsizeTooLarge { from: 9, to: 10 }),
        "{err}"
    );
    assert_eq!(
        common::to_bytes(&params::downsize(&big, 9).unwrap()),
        common::to_bytes(&big)
    );
    // k = 0 is a single point, which is its own Lagrange basis.
    let tiny = params::downsize(&big, 0).unwrap();
    assert_eq!(
        common::to_bytes(&tiny),
        common::to_bytes(&params::dev_setup(0, 2, false).unwrap())
    );
}

#[test]
fn downsize_file_does_not_need_the_lagrange_section() {
    // Only the first 2^k powers and the G2 points are read: corrupt the rest.
    let dir = tempfile::tempdir().unwrap();
    let src = params::path_for(dir.path(), 8);
    params::write_file(&params::dev_setup(8, 0, false).unwrap(), &src).unwrap();
    let mut bytes = fs::read(&src).unwrap();
    let lagrange_start = 4 + 256 * 64;
    bytes[4 + 64 * 64..lagrange_start + 256 * 64].fill(0xff);
    fs::write(&src, &bytes).unwrap();
    assert!(params::read_file(&src).is_err());

    let out = dir.path().join("kzg_bn254_6.srs");
    params::downsize_file(&src, 6, &out).unwrap();
    assert_eq!(
        common::to_bytes(&params::read_file(&out).unwrap()),
        common::to_bytes(&params::dev_setup(6, 0, false).unwrap())
    );
    // ... but the powers it needs are checked.
    let err = params::downsize_file(&src, 7, &out).unwrap_err();
    assert!(
        matches!(
            err,
            ParamsError::InvalidPoint {
                section: params::Section::G,
                index: 64,
                ..
            }
        ),
        "{err}"
    );
    // ... and so is the source's length.
    bytes.push(0);
    fs::write(&src, &bytes).unwrap();
    let err = params::downsize_file(&src, 6, &out).unwrap_err();
    assert!(
        matches!(err, ParamsError::TrailingBytes { k: 8, .. }),
        "{err}"
    );
}

#[test]
fn load_from_params_dir() {
    let dir = tempfile::tempdir().unwrap();
    params::write_file(
        &params::dev_setup(12, 0, false).unwrap(),
        &params::path_for(dir.path(), 12),
    )
    .unwrap();
    // Files that do not follow the naming convention are ignored.
    fs::write(dir.path().join("kzg_bn254_012.srs"), b"junk").unwrap();
    fs::write(dir.path().join("kzg_bn254_14.srs.tmp"), b"junk").unwrap();
    fs::create_dir(dir.path().join("kzg_bn254_15.srs")).unwrap();

    let nine = params::load(dir.path(), 9).unwrap();
    assert_eq!(nine.k(), 9);
    assert_eq!(
        common::to_bytes(&nine),
        common::to_bytes(&params::dev_setup(9, 0, false).unwrap())
    );

    let twelve = params::load(dir.path(), 12).unwrap();
    assert_eq!(twelve.get_g().len(), 1 << 12);

    let err = params::load(dir.path(), 13).unwrap_err();
    match &err {
        ParamsError::NotFound {
            k: 13, available, ..
        } => assert_eq!(available, &vec![12]),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(err.to_string().contains("kzg_bn254_12.srs"), "{err}");
}

#[test]
fn load_from_empty_dir_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let err = params::load(dir.path(), 5).unwrap_err();
    assert!(
        matches!(&err, ParamsError::NotFound { k: 5, available, .. } if available.is_empty()),
        "{err}"
    );
    println!("{err}");
    let err = params::load(&dir.path().join("missing"), 5).unwrap_err();
    assert!(matches!(err, ParamsError::Io { .. }), "{err}");
}

#[test]
fn ensure_dev_creates_once() {
    let dir = tempfile::tempdir().unwrap();
    let params_dir = dir.path().join("params");
    let path = params::ensure_dev(&params_dir, 7, false).unwrap();
    assert_eq!(path, params::path_for(&params_dir, 7));
    let report = params::verify_file(&path).unwrap();
    assert_eq!((report.k, report.insecure_dev_seed), (7, Some(0)));

    let modified = fs::metadata(&path).unwrap().modified().unwrap();
    assert_eq!(params::ensure_dev(&params_dir, 7, false).unwrap(), path);
    assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), modified);

    // A damaged existing file is reported rather than silently used.
    fs::write(&path, b"abc").unwrap();
    assert!(params::ensure_dev(&params_dir, 7, false).is_err());
}

#[test]
fn file_names() {
    assert_eq!(params::file_name(22), "kzg_bn254_22.srs");
    assert_eq!(
        params::path_for(std::path::Path::new("/p"), 3),
        std::path::PathBuf::from("/p/kzg_bn254_3.srs")
    );
}

/// A file is trusted by its header, not its name: a `kzg_bn254_13.srs` that holds k = 9 or k = 14
/// is refused (before, one was read as a wrong-sized SRS, the other panicked later).
#[test]
fn load_refuses_a_file_whose_header_disagrees_with_its_name() {
    for (name_k, real_k) in [(11u32, 9u32), (11, 12)] {
        let dir = tempfile::tempdir().unwrap();
        let path = params::path_for(dir.path(), name_k);
        params::write_file(&params::dev_setup(real_k, 0, false).unwrap(), &path).unwrap();
        let err = params::load(dir.path(), name_k).unwrap_err();
        assert!(
            matches!(err, ParamsError::HeaderKMismatch { expected, found, .. } if expected == name_k && found == real_k),
            "{err}"
        );
        assert!(
            err.to_string().contains("the file name says k = 11"),
            "{err}"
        );
        // The same file, found as the larger source for a smaller k, is refused too.
        let err = params::load(dir.path(), 8).unwrap_err();
        assert!(matches!(err, ParamsError::HeaderKMismatch { .. }), "{err}");
    }
}
