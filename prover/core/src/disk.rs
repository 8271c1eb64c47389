//! Room on disk for the caches in the keys directory (proving keys, coset files). A cache only
//! saves time, so it must never take the last free space of its filesystem, which the node's task
//! database and logs may share: a cache file that would leave less than a reserve free is not
//! written, and the process goes on with what it holds in memory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

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

/// A name for a temporary file that becomes `path` once complete:
/// `{file name}.tmp-{process id}-{run}-{n}`, where `run` is random per process (a process that
/// restarts with the same id, as in a container, is a new run) and `n` counts this process's
/// temporary files. [`remove_stale_temporaries`] recognises these names.
pub fn temporary_path(path: &Path) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        "{name}.tmp-{}-{}-{n}",
        std::process::id(),
        run_id()
    ))
}

/// This process's run: 16 random hex digits.
fn run_id() -> &'static str {
    static RUN: OnceLock<String> = OnceLock::new();
    RUN.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        format!("{:016x}", h.finish())
    })
}

/// Who wrote a temporary file, from its name.
#[derive(Debug, PartialEq, Eq)]
struct Writer {
    pid: u32,
    /// `None` for the names of builds before [`temporary_path`] (`{stem}.tmp{pid}-{n}` and
    /// `{stem}.coset.tmp{pid}`), which had no run.
    run: Option<String>,
}

fn writer_of(name: &str) -> Option<Writer> {
    let (_, rest) = name.rsplit_once(".tmp")?;
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = rest.strip_prefix('-') {
        let mut parts = rest.split('-');
        let (pid, run, n) = (parts.next()?, parts.next()?, parts.next()?);
        let hex = !run.is_empty() && run.bytes().all(|b| b.is_ascii_hexdigit());
        if parts.next().is_some() || !numeric(pid) || !hex || !numeric(n) {
            return None;
        }
        return Some(Writer {
            pid: pid.parse().ok()?,
            run: Some(run.to_string()),
        });
    }
    let (pid, n) = rest.split_once('-').unwrap_or((rest, "0"));
    if !numeric(pid) || !numeric(n) {
        return None;
    }
    Some(Writer {
        pid: pid.parse().ok()?,
        run: None,
    })
}

/// Whether process `pid` is running: `None` where this cannot be told (no `/proc`).
fn running(pid: u32) -> Option<bool> {
    if !Path::new("/proc/self").exists() {
        return None;
    }
    Some(Path::new(&format!("/proc/{pid}")).exists())
}

/// Removes the temporary files in `dir` that no running writer owns: those of a process that
/// is gone (a crash or a kill during a key or coset-file write leaves one, up to gigabytes), and
/// those of an earlier process that had this process's id. A file of another running process is
/// kept; where processes cannot be listed (no `/proc`), only the second kind is removed. Returns
/// each removed file and its size; a file that cannot be removed is skipped.
pub fn remove_stale_temporaries(dir: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let me = std::process::id();
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(writer) = name.to_str().and_then(writer_of) else {
            continue;
        };
        let stale = if writer.pid == me {
            writer.run.as_deref() != Some(run_id())
        } else {
            running(writer.pid) == Some(false)
        };
        if !stale {
            continue;
        }
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if meta.is_file() && std::fs::remove_file(entry.path()).is_ok() {
            removed.push((entry.path(), meta.len()));
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_of_gone_writers_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let gone = 999_999_999u32; // above any pid_max
        let mine = temporary_path(&dir.path().join("c.pk"));
        let mine = mine.file_name().unwrap().to_str().unwrap().to_string();
        assert!(mine.starts_with(&format!("c.pk.tmp-{me}-")), "{mine}");
        let names = [
            (format!("a.pk.tmp-{gone}-00ff-0"), true),
            (
                format!("b.pk.tmp-{me}-0123456789abcdef-1"),
                run_id() != "0123456789abcdef",
            ),
            (mine, false),
            ("d.pk.tmp-1-00ff-0".to_string(), false), // pid 1 runs
            (format!("e.tmp{gone}-3"), true),         // an older build's key
            (format!("f.coset.tmp{me}"), true),       // an older build's coset file
            (format!("g.coset.tmp{gone}"), true),
            ("h.pk".to_string(), false),
            ("notes.tmp.txt".to_string(), false),
            (format!("i.pk.tmp-{gone}-zz-0"), false), // not one of our names
            (format!("j.pk.tmp-{gone}-00ff-0-1"), false),
        ];
        for (name, _) in &names {
            std::fs::write(dir.path().join(name), b"12345").unwrap();
        }
        let removed = remove_stale_temporaries(dir.path());
        assert!(removed.iter().all(|(_, len)| *len == 5));
        for (name, stale) in &names {
            assert_eq!(
                !dir.path().join(name).exists(),
                *stale,
                "{name}: removed {removed:?}"
            );
        }
        assert_eq!(removed.len(), names.iter().filter(|(_, s)| *s).count());
        // A directory that does not exist: nothing to do.
        assert!(remove_stale_temporaries(&dir.path().join("none")).is_empty());
    }

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
