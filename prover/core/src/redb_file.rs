//! Opening the redb files of the node (task stack) and the coordinator (store): a damaged file is
//! an error that says so, never a panic.

use std::path::Path;

/// Why a redb file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum RedbOpenError {
    /// The file is not a readable redb database (truncated, overwritten, not redb at all).
    #[error("{0}")]
    Damaged(String),
    /// Anything else (permissions, already open by another process, ...).
    #[error(transparent)]
    Other(#[from] redb::DatabaseError),
}

/// Opens (or creates) a redb file. redb can panic on some corrupt files, so the open runs under
/// `catch_unwind` with the panic message kept out of stderr: the caller prints one line.
pub fn open(path: &Path) -> Result<redb::Database, RedbOpenError> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(|| redb::Database::create(path));
    std::panic::set_hook(hook);
    match r {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(m)))) => {
            Err(RedbOpenError::Damaged(m))
        }
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))))
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
            ) =>
        {
            Err(RedbOpenError::Damaged(e.to_string()))
        }
        Ok(Err(e)) => Err(RedbOpenError::Other(e)),
        Err(panic) => Err(RedbOpenError::Damaged(format!(
            "the database library failed reading it: {}",
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("no message")
        ))),
    }
}
