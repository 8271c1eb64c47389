//! Backend selection, done once at start.
//!
//! The CUDA driver is probed **without loading it**: [`cuda_driver_probe`] looks for `libcuda.so.1`
//! in `$LD_LIBRARY_PATH`, the usual driver directories, and `ldconfig -p`'s cache. Nothing is
//! dlopened here, so a machine without a driver never reaches code (e.g. cudarc's dynamic loader)
//! that would panic on a missing library.
//!
//! - `Auto`: CUDA when the driver is found and [`CudaBackend::new`] succeeds, otherwise the CPU
//!   with a `tracing::warn!` and the reason in [`Selection::fallback_reason`].
//! - `Cpu`: the CPU.
//! - `Cuda`: the CUDA backend on device 0 or an error saying why not (no driver, no device, context
//!   creation or kernel compilation failed).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use crate::backend::{BackendError, ComputeBackend};
use crate::cpu::CpuBackend;
use crate::cuda::CudaBackend;

/// The file name of the CUDA driver library.
pub const CUDA_DRIVER_LIB: &str = "libcuda.so.1";

/// Directories where distributions and the NVIDIA installers put the driver library.
const DRIVER_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
    "/usr/local/nvidia/lib64",
    "/usr/local/nvidia/lib",
    "/usr/lib/wsl/lib",
    "/usr/local/cuda/lib64/stubs",
];

/// What the user asked for. In configuration files: `"auto"`, `"cpu"` or `"cuda"`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// CUDA if usable, else the CPU (with a warning).
    #[default]
    Auto,
    /// The CPU backend.
    Cpu,
    /// The CUDA backend; an error if it cannot be used.
    Cuda,
}

impl BackendChoice {
    /// The name used in configuration files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        }
    }
}

impl std::fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for BackendChoice {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda),
            other => Err(BackendError::Unavailable(format!(
                "unknown backend {other:?} (expected auto, cpu or cuda)"
            ))),
        }
    }
}

/// The chosen backend and, when `Auto` fell back to the CPU, why.
#[derive(Clone)]
pub struct Selection {
    /// The backend to use.
    pub backend: Arc<dyn ComputeBackend>,
    /// Set when `Auto` could not use CUDA.
    pub fallback_reason: Option<String>,
}

impl std::fmt::Debug for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selection")
            .field("backend", &self.backend.name())
            .field("fallback_reason", &self.fallback_reason)
            .finish()
    }
}

/// Result of looking for the CUDA driver library.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DriverProbe {
    /// Found at this path (or by this name in the `ldconfig` cache).
    Found(PathBuf),
    /// Not found; the places searched, for the error message.
    NotFound {
        /// Directories and caches searched.
        searched: Vec<String>,
    },
}

fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(paths) = std::env::var_os("LD_LIBRARY_PATH") {
        dirs.extend(std::env::split_paths(&paths).filter(|p| !p.as_os_str().is_empty()));
    }
    dirs.extend(DRIVER_DIRS.iter().map(PathBuf::from));
    dirs
}

fn ldconfig_lookup() -> Option<PathBuf> {
    for ldconfig in ["ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"] {
        let Ok(out) = Command::new(ldconfig).arg("-p").output() else {
            continue;
        };
        if !out.status.success() {
            continue;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines() {
            // "\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1"
            let line = line.trim();
            if line.starts_with(CUDA_DRIVER_LIB) {
                if let Some((_, path)) = line.split_once("=>") {
                    return Some(PathBuf::from(path.trim()));
                }
            }
        }
        return None;
    }
    None
}

/// Looks for the CUDA driver library without loading it.
pub fn cuda_driver_probe() -> DriverProbe {
    let dirs = search_dirs();
    for dir in &dirs {
        let candidate = dir.join(CUDA_DRIVER_LIB);
        // The stub library in the toolkit has no driver behind it.
        if candidate.is_file() && !is_stub(&candidate) {
            return DriverProbe::Found(candidate);
        }
    }
    if let Some(path) = ldconfig_lookup() {
        if !is_stub(&path) {
            return DriverProbe::Found(path);
        }
    }
    let mut searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    searched.push("ldconfig -p".to_string());
    DriverProbe::NotFound { searched }
}

fn is_stub(path: &Path) -> bool {
    path.components().any(|c| c.as_os_str() == "stubs")
}

/// Opens the CUDA backend on device 0, or says why it cannot be used.
fn open_cuda() -> Result<CudaBackend, BackendError> {
    match cuda_driver_probe() {
        DriverProbe::NotFound { searched } => Err(BackendError::Unavailable(format!(
            "CUDA driver library {CUDA_DRIVER_LIB} not found (searched {}); \
             install the NVIDIA driver or use the cpu backend",
            searched.join(", ")
        ))),
        DriverProbe::Found(path) => {
            tracing::debug!(driver = %path.display(), "CUDA driver found");
            CudaBackend::new(0)
        }
    }
}

/// One backend per device: for `cuda`, the devices `devices` names (all the driver sees when
/// `None`), each opened now; for `cpu`, the CPU backend; for `auto`, the CUDA devices when they
/// can be opened, else the CPU backend with the reason. An ordinal the driver does not have, or
/// an empty list, is an error.
pub fn select_devices(
    choice: BackendChoice,
    devices: Option<&[usize]>,
) -> Result<Vec<Selection>, BackendError> {
    let open_all = || -> Result<Vec<Selection>, BackendError> {
        let count = CudaBackend::device_count()?;
        let ordinals: Vec<usize> = match devices {
            Some(d) => d.to_vec(),
            None => (0..count).collect(),
        };
        if ordinals.is_empty() {
            return Err(BackendError::Unavailable(if count == 0 {
                "the CUDA driver sees no device".into()
            } else {
                "no CUDA device configured".into()
            }));
        }
        if let Some(bad) = ordinals.iter().find(|&&o| o >= count) {
            return Err(BackendError::Unavailable(format!(
                "CUDA device {bad} configured, but the driver sees {count} device(s) (0..{count})"
            )));
        }
        ordinals
            .iter()
            .map(|&o| {
                Ok(Selection {
                    backend: Arc::new(CudaBackend::new(o)?) as Arc<dyn ComputeBackend>,
                    fallback_reason: None,
                })
            })
            .collect()
    };
    match choice {
        BackendChoice::Cpu => Ok(vec![select(BackendChoice::Cpu)?]),
        BackendChoice::Cuda => open_all(),
        BackendChoice::Auto => match open_all() {
            Ok(all) => Ok(all),
            Err(e) => {
                let reason = e.to_string();
                tracing::warn!(reason = %reason, "compute backend: falling back to the CPU");
                Ok(vec![Selection {
                    backend: Arc::new(CpuBackend::new()),
                    fallback_reason: Some(reason),
                }])
            }
        },
    }
}

/// Chooses the backend. See the module documentation.
pub fn select(choice: BackendChoice) -> Result<Selection, BackendError> {
    match choice {
        BackendChoice::Cpu => Ok(Selection {
            backend: Arc::new(CpuBackend::new()),
            fallback_reason: None,
        }),
        BackendChoice::Cuda => Ok(Selection {
            backend: Arc::new(open_cuda()?),
            fallback_reason: None,
        }),
        BackendChoice::Auto => match open_cuda() {
            Ok(b) => Ok(Selection {
                backend: Arc::new(b),
                fallback_reason: None,
            }),
            Err(e) => {
                let reason = e.to_string();
                tracing::warn!(reason = %reason, "compute backend: falling back to the CPU");
                Ok(Selection {
                    backend: Arc::new(CpuBackend::new()),
                    fallback_reason: Some(reason),
                })
            }
        },
    }
}
