//! Worker identities: one secp256k1 key per worker in `identity_dir/worker-{i}.key` (32 bytes hex),
//! created on first start with mode 0600 (set at creation, never chmod-ed afterwards), re-read on
//! every later start. A key file readable or writable by group or others, or one that does not hold
//! a valid key, is refused.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k256::ecdsa::SigningKey;
use rand::rngs::OsRng;
use rand::RngCore;

/// Errors loading or creating a worker key.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("identity {path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error(
        "identity {path} has mode {mode:o}: it must be readable by its owner only (chmod 600)"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("identity {path} does not hold a secp256k1 secret key as 64 hex digits: {reason}")]
    Malformed { path: PathBuf, reason: String },
}

/// One worker's key.
#[derive(Clone)]
pub struct Identity {
    pub index: usize,
    pub key: SigningKey,
    /// Compressed public key, lowercase hex (what the coordinator knows this worker by).
    pub public_key: String,
    pub path: PathBuf,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("index", &self.index)
            .field("public_key", &self.public_key)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The key file of worker `index`.
pub fn key_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("worker-{index}.key"))
}

/// Reads worker `index`'s key, creating it (mode 0600) if it does not exist yet.
pub fn load_or_create(dir: &Path, index: usize) -> Result<Identity, IdentityError> {
    let path = key_path(dir, index);
    let io = |action: &'static str| {
        let path = path.clone();
        move |source| IdentityError::Io {
            path,
            action,
            source,
        }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| IdentityError::Io {
            path: dir.into(),
            action: "creating the directory",
            source,
        })?;
    let key = if path.exists() {
        read_key(&path)?
    } else {
        // Created atomically: written and synced under a temporary name, then linked to the final
        // name (never overwriting), so a kill during creation leaves no empty or partial key.
        let tmp = path.with_extension("key.tmp");
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("removing a stale temporary key")(e)),
        }
        let key = random_key();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("creating"))?;
        file.write_all(format!("{}\n", hex::encode(key.to_bytes())).as_bytes())
            .map_err(io("writing"))?;
        file.sync_all().map_err(io("syncing"))?;
        drop(file);
        let linked = std::fs::hard_link(&tmp, &path);
        std::fs::remove_file(&tmp).map_err(io("removing the temporary key"))?;
        match linked {
            Ok(()) => {
                sync_dir(dir).map_err(io("syncing the directory"))?;
                tracing::info!(path = %path.display(), "created a new worker key");
                key
            }
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_key(&path)?,
            Err(e) => return Err(io("linking")(e)),
        }
    };
    let public_key = prover_core::login::public_key_hex(&key);
    Ok(Identity {
        index,
        key,
        public_key,
        path,
    })
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn read_key(path: &Path) -> Result<SigningKey, IdentityError> {
    let io = |action: &'static str| {
        let path = path.to_path_buf();
        move |source| IdentityError::Io {
            path,
            action,
            source,
        }
    };
    let mode = std::fs::metadata(path)
        .map_err(io("reading metadata"))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(IdentityError::Permissions {
            path: path.into(),
            mode: mode & 0o7777,
        });
    }
    let text = std::fs::read_to_string(path).map_err(io("reading"))?;
    let digits = text.trim();
    if digits.len() != 64 {
        return Err(IdentityError::Malformed {
            path: path.into(),
            reason: format!("{} characters", digits.len()),
        });
    }
    prover_core::login::key_from_hex(digits).map_err(|e| IdentityError::Malformed {
        path: path.into(),
        reason: e.to_string(),
    })
}

fn random_key() -> SigningKey {
    loop {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        // Zero or ≥ the group order is refused; the chance is ~2^-128, draw again.
        if let Ok(key) = SigningKey::from_slice(&bytes) {
            return key;
        }
    }
}
