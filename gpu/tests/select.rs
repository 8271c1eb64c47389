//! Backend selection on a machine without a GPU driver (as in CI): `Auto` falls back to the CPU and
//! says why; an explicit `Cuda` is an error naming the driver. On a machine with a driver the
//! assertions that depend on its absence are skipped (and say so).

use gpu::{cuda_driver_probe, select, BackendChoice, BackendError, BackendName, DriverProbe};

#[test]
fn cpu_is_always_available() {
    let s = select(BackendChoice::Cpu).unwrap();
    assert_eq!(s.backend.name(), BackendName::Cpu);
    assert!(s.fallback_reason.is_none());
}

#[test]
fn auto_and_cuda_without_driver() {
    let probe = cuda_driver_probe();
    let auto = select(BackendChoice::Auto).unwrap();
    // No CUDA backend is built yet, so Auto is always the CPU, with a reason.
    assert_eq!(auto.backend.name(), BackendName::Cpu);
    let reason = auto.fallback_reason.clone().expect("fallback reason");
    let err = select(BackendChoice::Cuda).unwrap_err();
    assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
    match probe {
        DriverProbe::NotFound { searched } => {
            assert!(searched.iter().any(|s| s.contains("ldconfig")));
            assert!(reason.contains("libcuda.so.1"), "{reason}");
            assert!(reason.contains("not found"), "{reason}");
            let msg = err.to_string();
            assert!(
                msg.contains("CUDA driver library libcuda.so.1 not found"),
                "{msg}"
            );
        }
        DriverProbe::Found(path) => {
            eprintln!(
                "driver present at {} — skipping the no-driver assertions",
                path.display()
            );
            assert!(reason.contains("no CUDA backend"), "{reason}");
        }
    }
}

#[test]
fn parse_choice() {
    assert_eq!(
        "auto".parse::<BackendChoice>().unwrap(),
        BackendChoice::Auto
    );
    assert_eq!("CPU".parse::<BackendChoice>().unwrap(), BackendChoice::Cpu);
    assert_eq!(
        "cuda".parse::<BackendChoice>().unwrap(),
        BackendChoice::Cuda
    );
    assert!("tpu".parse::<BackendChoice>().is_err());
}
