//! Errors of the coordinator library.

/// Why the coordinator could not start or an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("store {what}: {reason}")]
    Store { what: &'static str, reason: String },
    /// The store file is not a readable redb database (truncated, overwritten, not redb).
    #[error(
        "store {path} is damaged ({reason}); restore it from a backup, or move it aside (e.g. \
         `mv {path} {path}.damaged`) to start with an empty store"
    )]
    Damaged {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("proving core: {0}")]
    Core(#[from] prover_core::CoreError),
    #[error("invalid transfers: {0}")]
    InvalidTransfers(String),
    #[error("background task failed: {0}")]
    Join(String),
}

impl CoordinatorError {
    pub fn store(what: &'static str, e: impl std::fmt::Display) -> Self {
        CoordinatorError::Store {
            what,
            reason: e.to_string(),
        }
    }
}
