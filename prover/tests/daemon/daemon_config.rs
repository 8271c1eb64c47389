//! `prover run` configuration: the repository's config.json, environment overrides, unknown keys,
//! validation.

use std::path::{Path, PathBuf};

use prover::config::{BackendChoice, ConfigError, EngineChoice, NodeConfig};

fn repo_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.json")
}

fn load_with(env: &[(&str, &str)]) -> Result<NodeConfig, ConfigError> {
    NodeConfig::load(
        &repo_config(),
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

fn vars() -> Vec<(String, String)> {
    vec![]
}

#[test]
fn repository_config_is_complete_and_valid() {
    let text = std::fs::read_to_string(repo_config()).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    // Every key the daemon knows is spelt out in the file (a complete, documented default).
    for (var, section, key) in prover::config::env_keys() {
        assert!(
            value[section].get(&key).is_some(),
            "config.json lacks {section}.{key} ({var})"
        );
    }
    let c = load_with(&[]).expect("config.json loads and validates");
    assert_eq!(c.node.n_workers, 1);
    assert_eq!(c.node.task_types, vec![1, 2]);
    assert_eq!(c.node.max_attempts, 3);
    assert_eq!(c.node.backend, BackendChoice::Auto);
    assert_eq!(c.node.engine, EngineChoice::Native);
    assert_eq!(c.node.seed, None);
    assert_eq!(c.circuits.chunk(), prover::wire::ChunkConfig::default());
    assert_eq!(c.circuits.batch().k, 20);
    assert_eq!(c.circuits.batch().num_chunks, 2);
    assert_eq!(c.prover_version(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn environment_overrides_every_kind_of_key() {
    let c = load_with(&[
        ("PROVER_NODE_N_WORKERS", "3"),
        ("PROVER_NODE_TASK_TYPES", "2"),
        ("PROVER_NODE_BACKEND", "cpu"),
        ("PROVER_COORDINATOR_BASE_URL", "http://10.0.0.1:9000"),
        ("PROVER_COORDINATOR_PROVER_VERSION", "v4.4.1"),
        ("PROVER_METRICS_LISTEN", "0.0.0.0:0"),
        ("PROVER_PROVER_PARAMS_DIR", "/srv/params"),
        ("PROVER_CIRCUITS_CHUNK_K", "13"),
        ("PATH", "/usr/bin"),
    ])
    .unwrap();
    assert_eq!(c.node.n_workers, 3);
    assert_eq!(c.node.task_types, vec![2]);
    assert_eq!(c.node.backend, BackendChoice::Cpu);
    assert_eq!(c.coordinator.base_url, "http://10.0.0.1:9000");
    assert_eq!(c.prover_version(), "v4.4.1");
    assert_eq!(c.metrics.listen, "0.0.0.0:0");
    assert_eq!(c.prover.params_dir, PathBuf::from("/srv/params"));
    assert_eq!(c.circuits.chunk_k, 13);
    // A list may be written as JSON too.
    let c = load_with(&[("PROVER_NODE_TASK_TYPES", "[1, 2]")]).unwrap();
    assert_eq!(c.node.task_types, vec![1, 2]);
}

#[test]
fn cli_aliases_apply_and_canonical_variables_win() {
    let c = load_with(&[("PROVER_KEYS_DIR", "/a")]).unwrap();
    assert_eq!(c.prover.keys_dir, PathBuf::from("/a"));
    let c = load_with(&[
        ("PROVER_PROVER_KEYS_DIR", "/canonical"),
        ("PROVER_KEYS_DIR", "/alias"),
    ])
    .unwrap();
    assert_eq!(c.prover.keys_dir, PathBuf::from("/canonical"));

    // The cache's disk reserve: 2 GiB by default, the CLI's variable an alias, and on to the
    // proving core.
    let c = load_with(&[]).unwrap();
    assert_eq!(c.prover.keys_disk_reserve_mib, 2048);
    let c = load_with(&[("PROVER_KEYS_DISK_RESERVE_MIB", "512")]).unwrap();
    assert_eq!(c.core_config().keys_disk_reserve_mib, 512);
    let c = load_with(&[
        ("PROVER_PROVER_KEYS_DISK_RESERVE_MIB", "0"),
        ("PROVER_KEYS_DISK_RESERVE_MIB", "512"),
    ])
    .unwrap();
    assert_eq!(c.core_config().keys_disk_reserve_mib, 0);
}

#[test]
fn bad_environment_values_and_unknown_variables_are_errors() {
    let err = load_with(&[("PROVER_NODE_N_WORKERS", "many")]).unwrap_err();
    assert!(matches!(err, ConfigError::Env { .. }), "{err}");
    assert!(err.to_string().contains("PROVER_NODE_N_WORKERS"), "{err}");
    assert!(err.to_string().contains("unsigned integer"), "{err}");

    let err = load_with(&[("PROVER_NODE_NWORKERS", "2")]).unwrap_err();
    assert!(err.to_string().contains("PROVER_NODE_NWORKERS"), "{err}");
    assert!(
        err.to_string().contains("names no configuration key"),
        "{err}"
    );

    let err = load_with(&[("PROVER_NODE_BACKEND", "opencl")]).unwrap_err();
    assert!(err.to_string().contains("opencl"), "{err}");

    let err = load_with(&[("PROVER_NODE_TASK_TYPES", "1,x")]).unwrap_err();
    assert!(err.to_string().contains("PROVER_NODE_TASK_TYPES"), "{err}");
}

#[test]
fn unknown_keys_in_any_section_are_errors() {
    let text = std::fs::read_to_string(repo_config()).unwrap();
    for (section, typo) in [
        ("node", "n_worker"),
        ("coordinator", "base"),
        ("metrics", "port"),
        ("circuits", "k"),
        ("prover", "engine"),
    ] {
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v[section][typo] = serde_json::json!(1);
        let err =
            NodeConfig::from_json_str(&v.to_string(), Path::new("c.json"), vars()).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
        assert!(
            err.to_string().contains(&format!("unknown field `{typo}`")),
            "{section}: {err}"
        );
    }
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["daemon"] = serde_json::json!({});
    let err = NodeConfig::from_json_str(&v.to_string(), Path::new("c.json"), vars()).unwrap_err();
    assert!(err.to_string().contains("unknown field `daemon`"), "{err}");
}

#[test]
fn invalid_configurations_are_rejected_with_the_key() {
    for (var, value, key) in [
        ("PROVER_NODE_N_WORKERS", "0", "node.n_workers"),
        ("PROVER_NODE_MAX_ATTEMPTS", "0", "node.max_attempts"),
        ("PROVER_NODE_TASK_TYPES", "4", "node.task_types"),
        ("PROVER_NODE_TASK_TYPES", "1,1", "node.task_types"),
        ("PROVER_NODE_TASK_TYPES", "", "node.task_types"),
        ("PROVER_NODE_NAME", " ", "node.name"),
        ("PROVER_NODE_PROVIDER_TYPE", "3", "node.provider_type"),
        (
            "PROVER_COORDINATOR_POLL_INTERVAL_MS",
            "0",
            "coordinator.poll_interval_ms",
        ),
        (
            "PROVER_COORDINATOR_REQUEST_TIMEOUT_SEC",
            "0",
            "coordinator.request_timeout_sec",
        ),
        (
            "PROVER_COORDINATOR_RETRY_MAX_MS",
            "1",
            "coordinator.retry_max_ms",
        ),
        (
            "PROVER_COORDINATOR_BASE_URL",
            "localhost:8390",
            "coordinator.base_url",
        ),
        (
            "PROVER_COORDINATOR_BASE_URL",
            "ftp://x",
            "coordinator.base_url",
        ),
        ("PROVER_METRICS_LISTEN", "localhost", "metrics.listen"),
        (
            "PROVER_CIRCUITS_BATCH_NUM_CHUNKS",
            "0",
            "circuits.batch_num_chunks",
        ),
        ("PROVER_CIRCUITS_CHUNK_TREE_DEPTH", "0", "circuits.chunk_*"),
        (
            "PROVER_CIRCUITS_BUNDLE_NUM_BATCHES",
            "0",
            "circuits.bundle_num_batches",
        ),
    ] {
        let err = load_with(&[(var, value)]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { key: k, .. } if *k == key),
            "{var}={value:?}: {err}"
        );
    }
}

#[test]
fn old_prover_only_files_still_parse_with_defaults() {
    let c = NodeConfig::from_json_str(
        r#"{"prover": {"params_dir": "p", "keys_dir": "k"}}"#,
        Path::new("c.json"),
        vars(),
    )
    .unwrap();
    assert_eq!(c.node.n_workers, 1);
    assert_eq!(c.coordinator.poll_interval_ms, 2000);
}

#[test]
fn every_key_is_documented_in_the_readme() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    for (var, section, key) in prover::config::env_keys() {
        assert!(readme.contains(&format!("`{var}`")), "README lacks {var}");
        assert!(
            readme.contains(&format!("`{section}.{key}`")),
            "README lacks {section}.{key}"
        );
    }
}

fn from_text(text: &str, env: &[(&str, &str)]) -> Result<NodeConfig, ConfigError> {
    NodeConfig::from_json_str(
        text,
        Path::new("c.json"),
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

const MINIMAL: &str = r#"{"prover": {"params_dir": "p", "keys_dir": "k"}}"#;

#[test]
fn engine_backend_and_seed_default_to_native_auto_and_no_seed() {
    let c = from_text(MINIMAL, &[]).unwrap();
    assert_eq!(c.node.engine, EngineChoice::Native);
    assert_eq!(c.node.backend, BackendChoice::Auto);
    assert_eq!(c.node.seed, None);
    let core = c.core_config();
    assert_eq!(core.engine, EngineChoice::Native);
    assert_eq!(core.backend, BackendChoice::Auto);
}

#[test]
fn engine_backend_and_seed_parse_from_the_file_and_reach_the_core_config() {
    let c = from_text(
        r#"{"prover": {"params_dir": "p", "keys_dir": "k"},
            "node": {"engine": "reference", "backend": "cpu", "seed": 7}}"#,
        &[],
    )
    .unwrap();
    assert_eq!(c.node.engine, EngineChoice::Reference);
    assert_eq!(c.node.backend, BackendChoice::Cpu);
    assert_eq!(c.node.seed, Some(7));
    let core = c.core_config();
    assert_eq!(core.engine, EngineChoice::Reference);
    assert_eq!(core.backend, BackendChoice::Cpu);

    let c = from_text(
        r#"{"prover": {"params_dir": "p", "keys_dir": "k"},
            "node": {"engine": "native", "backend": "cuda", "seed": null}}"#,
        &[],
    )
    .unwrap();
    assert_eq!(c.node.engine, EngineChoice::Native);
    assert_eq!(c.node.backend, BackendChoice::Cuda);
    assert_eq!(c.node.seed, None);
}

#[test]
fn engine_backend_and_seed_environment_overrides() {
    let c = load_with(&[
        ("PROVER_NODE_ENGINE", "reference"),
        ("PROVER_NODE_BACKEND", "cpu"),
        ("PROVER_NODE_SEED", "42"),
    ])
    .unwrap();
    assert_eq!(c.node.engine, EngineChoice::Reference);
    assert_eq!(c.node.backend, BackendChoice::Cpu);
    assert_eq!(c.node.seed, Some(42));

    let c = load_with(&[
        ("PROVER_NODE_ENGINE", "native"),
        ("PROVER_NODE_BACKEND", "cuda"),
    ])
    .unwrap();
    assert_eq!(c.node.engine, EngineChoice::Native);
    assert_eq!(c.node.backend, BackendChoice::Cuda);

    // `null` clears a seed set in the file.
    let seeded = r#"{"prover": {"params_dir": "p", "keys_dir": "k"}, "node": {"seed": 9}}"#;
    assert_eq!(from_text(seeded, &[]).unwrap().node.seed, Some(9));
    let c = from_text(seeded, &[("PROVER_NODE_SEED", "null")]).unwrap();
    assert_eq!(c.node.seed, None);
    let c = from_text(seeded, &[("PROVER_NODE_SEED", " 11 ")]).unwrap();
    assert_eq!(c.node.seed, Some(11));
}

#[test]
fn bad_engine_backend_and_seed_values_are_rejected_clearly() {
    // Environment: the error names the variable, the value and what was expected.
    for (var, value, expected) in [
        ("PROVER_NODE_ENGINE", "bogus", "`reference`"),
        ("PROVER_NODE_ENGINE", "cuda", "`native`"),
        ("PROVER_NODE_BACKEND", "opencl", "`cuda`"),
        ("PROVER_NODE_SEED", "seven", "unsigned integer or null"),
        ("PROVER_NODE_SEED", "-1", "unsigned integer or null"),
    ] {
        let err = load_with(&[(var, value)]).unwrap_err();
        assert!(matches!(err, ConfigError::Env { .. }), "{var}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(var), "{msg}");
        assert!(msg.contains(value), "{msg}");
        assert!(msg.contains(expected), "{msg}");
    }
    // File: a parse error naming the bad value.
    for (node, bad) in [
        (r#"{"engine": "fast"}"#, "fast"),
        (r#"{"backend": "gpu0"}"#, "gpu0"),
        (r#"{"seed": "7"}"#, "invalid type"),
        (r#"{"seed": -3}"#, "-3"),
    ] {
        let text =
            format!(r#"{{"prover": {{"params_dir": "p", "keys_dir": "k"}}, "node": {node}}}"#);
        let err = from_text(&text, &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{node}: {err}");
        assert!(err.to_string().contains(bad), "{node}: {err}");
    }
    // The reference engine proves on the CPU only.
    let err = load_with(&[
        ("PROVER_NODE_ENGINE", "reference"),
        ("PROVER_NODE_BACKEND", "cuda"),
    ])
    .unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { key, .. } if *key == "node.backend"),
        "{err}"
    );
    assert!(err.to_string().contains("engine native"), "{err}");
}

#[test]
fn devices_default_to_all_take_a_list_and_are_checked() {
    let c = load_with(&[]).unwrap();
    assert_eq!(c.node.devices, None, "null: every device");
    let c = load_with(&[("PROVER_NODE_DEVICES", "0,2")]).unwrap();
    assert_eq!(c.node.devices, Some(vec![0, 2]));
    let c = load_with(&[
        ("PROVER_NODE_DEVICES", "[1]"),
        ("PROVER_NODE_BACKEND", "cuda"),
    ])
    .unwrap();
    assert_eq!(c.node.devices, Some(vec![1]));
    let c = load_with(&[("PROVER_NODE_DEVICES", "null")]).unwrap();
    assert_eq!(c.node.devices, None);
    let err = load_with(&[("PROVER_NODE_DEVICES", "zero")]).unwrap_err();
    assert!(err.to_string().contains("PROVER_NODE_DEVICES"), "{err}");
    for (env, reason) in [
        (vec![("PROVER_NODE_DEVICES", "[]")], "at least one device"),
        (vec![("PROVER_NODE_DEVICES", "1,1")], "listed twice"),
        (
            vec![("PROVER_NODE_DEVICES", "0"), ("PROVER_NODE_BACKEND", "cpu")],
            "proves on the CPU",
        ),
        (
            vec![
                ("PROVER_NODE_DEVICES", "0"),
                ("PROVER_NODE_ENGINE", "reference"),
            ],
            "proves on the CPU",
        ),
    ] {
        let err = load_with(&env).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { key, .. } if *key == "node.devices"),
            "{env:?}: {err}"
        );
        assert!(err.to_string().contains(reason), "{env:?}: {err}");
    }
}
