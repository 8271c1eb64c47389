//! Worker key files: created once with mode 0600, re-read afterwards, refused when readable by
//! others or malformed.

use std::os::unix::fs::PermissionsExt;

use prover::daemon::identity::{key_path, load_or_create, IdentityError};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn created_with_mode_0600_and_reread_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let ids = dir.path().join("identity");
    let a = load_or_create(&ids, 0).unwrap();
    assert_eq!(a.path, key_path(&ids, 0));
    assert_eq!(mode(&a.path), 0o600);
    assert_eq!(a.public_key.len(), 66);
    assert!(a.public_key.starts_with("02") || a.public_key.starts_with("03"));
    // Same key on the next start.
    let again = load_or_create(&ids, 0).unwrap();
    assert_eq!(again.public_key, a.public_key);
    assert_eq!(again.key.to_bytes(), a.key.to_bytes());
    // One key per worker.
    let b = load_or_create(&ids, 1).unwrap();
    assert_ne!(b.public_key, a.public_key);
    // The file holds the secret as hex that the login tooling reads.
    let text = std::fs::read_to_string(&a.path).unwrap();
    let key = prover::login::key_from_hex(text.trim()).unwrap();
    assert_eq!(prover::login::public_key_hex(&key), a.public_key);
}

#[test]
fn a_key_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = load_or_create(dir.path(), 0).unwrap();
    for bad in [0o644, 0o640, 0o604, 0o660] {
        std::fs::set_permissions(&a.path, std::fs::Permissions::from_mode(bad)).unwrap();
        let err = load_or_create(dir.path(), 0).unwrap_err();
        assert!(
            matches!(err, IdentityError::Permissions { mode, .. } if mode & 0o777 == bad),
            "{bad:o}: {err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
    std::fs::set_permissions(&a.path, std::fs::Permissions::from_mode(0o400)).unwrap();
    assert_eq!(
        load_or_create(dir.path(), 0).unwrap().public_key,
        a.public_key
    );
}

#[test]
fn a_malformed_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = key_path(dir.path(), 0);
    for content in ["", "zz", &"0".repeat(64), &"f".repeat(64), &"ab".repeat(33)] {
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = load_or_create(dir.path(), 0).unwrap_err();
        assert!(
            matches!(err, IdentityError::Malformed { .. }),
            "{content:?}: {err}"
        );
        // Never overwritten.
        assert_eq!(std::fs::read_to_string(&path).unwrap(), content);
    }
}

#[test]
fn a_temporary_key_left_by_a_killed_start_does_not_block_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    // What a kill between creating and linking the key leaves behind: an empty temporary file.
    std::fs::write(dir.path().join("worker-0.key.tmp"), b"").unwrap();
    let id = prover::daemon::identity::load_or_create(dir.path(), 0).expect("key created");
    assert!(!dir.path().join("worker-0.key.tmp").exists());
    let again = prover::daemon::identity::load_or_create(dir.path(), 0).expect("key re-read");
    assert_eq!(id.public_key, again.public_key);
}
