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
    match probe {
        DriverProbe::NotFound { searched } => {
            // No driver: Auto is the CPU with a reason, an explicit Cuda is an error naming it.
            assert_eq!(auto.backend.name(), BackendName::Cpu);
            let reason = auto.fallback_reason.clone().expect("fallback reason");
            let err = select(BackendChoice::Cuda).unwrap_err();
            assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
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
            // With a driver, Auto is CUDA, or the CPU with the reason CUDA could not be opened,
            // and an explicit Cuda agrees with it.
            let cuda = select(BackendChoice::Cuda);
            match auto.backend.name() {
                BackendName::Cuda { .. } => {
                    assert!(auto.fallback_reason.is_none());
                    assert!(cuda.is_ok(), "{:?}", cuda.err());
                }
                BackendName::Cpu => {
                    let reason = auto.fallback_reason.clone().expect("fallback reason");
                    let err = cuda.expect_err("auto fell back, so cuda must fail");
                    assert_eq!(err.to_string(), reason);
                }
            }
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
