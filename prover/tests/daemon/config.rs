//! `config.json` at the repository root is a valid, complete configuration; unknown keys are errors.

use prover::config::{ConfigError, NodeConfig};

#[test]
fn repository_config_parses() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.json");
    let config = NodeConfig::read(&path).expect("config.json parses");
    assert_eq!(
        config.prover.params_dir,
        std::path::PathBuf::from("data/params")
    );
}

#[test]
fn unknown_keys_and_missing_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.json");
    std::fs::write(
        &path,
        r#"{"prover": {"params_dir": "p", "keys_dir": "k", "paramsdir": "typo"}}"#,
    )
    .unwrap();
    let err = NodeConfig::read(&path).unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }));
    assert!(
        err.to_string().contains("unknown field `paramsdir`"),
        "{err}"
    );
    let err = NodeConfig::read(&dir.path().join("none.json")).unwrap_err();
    assert!(err.to_string().contains("none.json"), "{err}");
}
