//! Room on disk for the caches in the keys directory (proving keys, coset files). A cache only
//! saves time, so it must never take the last free space of its filesystem, which the node's task
//! database and logs may share: a cache file that would leave less than a reserve free is not
//! written, and the process goes on with what it holds in memory.

use std::path::Path;

/// The free space the caches leave by default, in MiB (`keys_disk_reserve_mib`).
pub const DEFAULT_RESERVE_MIB: u64 = 2048;

/// A cache file that was not written because it would not leave the reserve free.
#[derive(Debug, thiserror::Error)]
#[error(
    "{file}: writing {} would leave {} free on its filesystem, under the {} reserve \
     (keys_disk_reserve_mib)",
    size(*.bytes),
    size(.free.saturating_sub(*.bytes)),
    size(*.reserve)
)]
pub struct NoRoom {
    pub file: String,
    pub bytes: u64,
    pub free: u64,
    pub reserve: u64,
}

/// Whether `bytes` more in `file` (whose directory exists) leave `reserve` bytes free on its
/// filesystem. When the free space cannot be read, the write goes ahead: its own errors tell.
pub fn check_room(file: &Path, bytes: u64, reserve: u64) -> Result<(), NoRoom> {
    let Some(free) = file.parent().and_then(free_bytes) else {
        return Ok(());
    };
    if free >= bytes.saturating_add(reserve) {
        return Ok(());
    }
    Err(NoRoom {
        file: file.display().to_string(),
        bytes,
        free,
        reserve,
    })
}

/// The bytes an unprivileged process may still write on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        let st = rustix::fs::statvfs(dir).ok()?;
        Some(st.f_bavail.saturating_mul(st.f_frsize))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

/// As [`free_bytes`], for a directory that may not exist yet: the filesystem of its nearest
/// existing ancestor (a relative path's last one is the working directory).
pub fn free_bytes_for(path: &Path) -> Option<u64> {
    path.ancestors()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .find_map(free_bytes)
}

/// `bytes` for people: "1.50 GiB", "34.0 MiB", "512 B".
pub fn size(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    if bytes >= GIB {
        format!("{:.2} GiB", bytes as f64 / GIB as f64)
    } else if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_refused_only_under_the_reserve() {
        let dir = std::env::temp_dir();
        let file = dir.join("room-check");
        let free = free_bytes(&dir).expect("statvfs of the temporary directory");
        assert!(free > 0);
        assert!(check_room(&file, 1, 0).is_ok());
        let reserve = u64::MAX / 2;
        let refused = check_room(&file, 1 << 20, reserve).expect_err("over the free space");
        assert_eq!(refused.bytes, 1 << 20);
        assert_eq!(refused.reserve, reserve);
        let text = refused.to_string();
        assert!(text.contains("writing 1.0 MiB would leave"), "{text}");
        assert!(text.contains("keys_disk_reserve_mib"), "{text}");
        // A directory that is not there: the write itself will say why it fails.
        assert!(check_room(Path::new("/no/such/dir/file"), u64::MAX, u64::MAX).is_ok());
        // Its filesystem is its nearest existing ancestor's.
        assert!(free_bytes(Path::new("/no/such/dir")).is_none());
        assert!(free_bytes_for(Path::new("/no/such/dir")).is_some_and(|f| f > 0));
        assert!(free_bytes_for(Path::new("no-such-relative-dir/keys")).is_some_and(|f| f > 0));
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(34 << 20), "34.0 MiB");
        assert_eq!(size(3 << 29), "1.50 GiB");
    }
}
