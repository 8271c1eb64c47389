//! What this build needs of the host CPU.
//!
//! On x86-64 the BN254 field arithmetic is halo2curves' assembly (its `asm` feature, turned on
//! by this crate and `params` for that target), which uses `mulx` (BMI2) and `adcx`/`adox`
//! (ADX): every Intel CPU since Broadwell (2014) and every AMD CPU since Zen (2017) has them. On
//! a CPU without them the first field multiplication would stop the process with an illegal
//! instruction; the binaries and the C ABI call [`check_host_cpu`] first and refuse to start
//! with a message instead. Other architectures use the portable arithmetic and need nothing.
//!
//! `PROVER_SKIP_CPU_CHECK=1` skips the check, for tools that hide the instruction sets from
//! the program they run but run the instructions: valgrind 3.19's CPU reports no ADX, yet it
//! runs `adcx`/`adox` (a development SRS made under it is byte for byte the one made without
//! it); `ffi/tests/c_host.rs` runs the C host under memcheck that way. On a CPU that really
//! lacks them, a skipped check leaves the illegal instruction at the first multiplication.

/// The instruction sets the build needs, by the names `is_x86_feature_detected!` takes.
#[cfg(target_arch = "x86_64")]
const NEEDED: [&str; 2] = ["bmi2", "adx"];
#[cfg(not(target_arch = "x86_64"))]
const NEEDED: [&str; 0] = [];

/// The host CPU lacks instructions this build's field arithmetic uses.
#[derive(Debug, thiserror::Error)]
#[error(
    "this build's BN254 field arithmetic uses the x86-64 instruction sets {} (Intel since \
     Broadwell, AMD since Zen), and this CPU lacks {}",
    NEEDED.join(" and "),
    .missing.join(" and ")
)]
pub struct HostCpuError {
    /// The instruction sets the CPU does not report.
    pub missing: Vec<&'static str>,
}

/// Whether the running CPU reports `feature` (one of [`NEEDED`]).
fn detected(feature: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match feature {
            "bmi2" => std::arch::is_x86_feature_detected!("bmi2"),
            "adx" => std::arch::is_x86_feature_detected!("adx"),
            _ => false,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = feature;
        false
    }
}

/// [`check_host_cpu`] with the detection given (`has(feature)`).
fn check_with(has: impl Fn(&str) -> bool) -> Result<(), HostCpuError> {
    let missing: Vec<&'static str> = NEEDED.iter().copied().filter(|f| !has(f)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(HostCpuError { missing })
    }
}

/// The variable that skips [`check_host_cpu`] when set to `1` (see the module documentation).
pub const SKIP_CPU_CHECK_VAR: &str = "PROVER_SKIP_CPU_CHECK";

/// Refuses a CPU that cannot run this build's field arithmetic (see the module documentation).
/// Call it before any field operation.
pub fn check_host_cpu() -> Result<(), HostCpuError> {
    if std::env::var_os(SKIP_CPU_CHECK_VAR).is_some_and(|v| v == "1") {
        return Ok(());
    }
    check_with(detected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_cpu_runs_the_build() {
        // This binary's other tests run the field arithmetic on this CPU; the check must agree
        // that it can.
        check_host_cpu().expect("the test machine runs this build");
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn a_cpu_without_an_instruction_set_is_refused_by_name() {
        let e = check_with(|f| f != "adx").expect_err("ADX missing");
        assert_eq!(e.missing, vec!["adx"]);
        let text = e.to_string();
        assert!(text.contains("bmi2 and adx"), "{text}");
        assert!(text.ends_with("this CPU lacks adx"), "{text}");
        let e = check_with(|_| false).expect_err("both missing");
        assert_eq!(e.missing, vec!["bmi2", "adx"]);
        assert!(e.to_string().ends_with("lacks bmi2 and adx"), "{e}");
        assert!(check_with(|_| true).is_ok());
    }
}
