//! The emulated device's translation of inline PTX (`gpu/emu/tools/gen_kernels.py`) refuses, at
//! build time, what it cannot translate faithfully: an instruction outside its subset, a carry
//! read before an instruction of the same statement set it, an output read before it is written
//! or never written, a write to an input. (That what it does translate computes what the PTX ISA
//! says is shown by every emulated test, whose field arithmetic runs through it, and by the plant
//! `ptx_carry_dropped` in `emu_planted.rs`.) Needs `python3`, as the emulator's build does; no
//! CUDA driver.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static CASE: AtomicUsize = AtomicUsize::new(0);

/// Runs the generator over a unit whose kernel holds `asm` and returns its exit status's success
/// and its stderr.
fn generate(asm: &str) -> (bool, String, String) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("emu-ptx")
        .join(CASE.fetch_add(1, Ordering::Relaxed).to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("case directory");
    let unit = dir.join("t.cu");
    let text = format!(
        "typedef unsigned int u32;\n\
         extern \"C\" __global__ void k(u32* p) {{\n\
         \x20   u32 a = p[0], b = p[1], r0, r1;\n\
         \x20   {asm};\n\
         \x20   p[2] = r0; p[3] = r1;\n\
         }}\n"
    );
    std::fs::write(&unit, text).expect("write the unit");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("emu/tools/gen_kernels.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(dir.join("gen"))
        .arg(&unit)
        .output()
        .expect("run python3 gen_kernels.py");
    let generated = std::fs::read_to_string(dir.join("gen/t.emu.cpp")).unwrap_or_default();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        generated,
    )
}

#[test]
fn a_carry_chain_is_translated_with_its_flag() {
    let (ok, err, code) = generate(
        r#"asm("add.cc.u32 %0, %2, %3;\n\taddc.u32 %1, 0, 0;" : "=r"(r0), "=r"(r1) : "r"(a), "r"(b))"#,
    );
    assert!(ok, "{err}");
    assert!(
        !code.contains("asm("),
        "the statement is still there:\n{code}"
    );
    // The carry out of the first addition is bit 32 of the wide sum, and the second reads it.
    assert!(
        code.contains("_w = (unsigned long long)_p2 + _p3; _p0 = (unsigned int)_w; _cf = (unsigned int)(_w >> 32);")
            && code.contains("+ _cf; _p1 = (unsigned int)_w;")
            && code.contains("(r0) = _p0; (r1) = _p1;"),
        "{code}"
    );
    // One line for the statement, its line count kept: the kernel's next line is still line 5.
    let after = code
        .lines()
        .position(|l| l.contains("p[2] = r0"))
        .expect("next line");
    let first = code
        .lines()
        .position(|l| l.contains("#line 1"))
        .expect("#line");
    assert_eq!(after - first, 5, "{code}");
}

#[test]
fn what_it_cannot_translate_faithfully_is_refused_with_the_line() {
    let cases = [
        (
            r#"asm("addc.u32 %0, %2, %3;\n\tadd.u32 %1, 0, 0;" : "=r"(r0), "=r"(r1) : "r"(a), "r"(b))"#,
            "reads the carry flag before an instruction of this statement sets it",
        ),
        (
            r#"asm("add.u32 %0, %0, %2;\n\tmov.u32 %1, %3;" : "=r"(r0), "=r"(r1) : "r"(a), "r"(b))"#,
            "reads output %0 before writing it",
        ),
        (
            r#"asm("add.u32 %0, %2, %3;" : "=r"(r0), "=r"(r1) : "r"(a), "r"(b))"#,
            "output %1 is never written",
        ),
        (
            r#"asm("add.u32 %2, %2, %3;\n\tmov.u32 %0, 0;\n\tmov.u32 %1, 0;" : "=r"(r0), "=r"(r1) : "r"(a), "r"(b))"#,
            "the destination %2 is not an output operand",
        ),
        (
            r#"asm("mul.wide.u32 %0, %2, %3;\n\tmov.u32 %1, 0;" : "=r"(r0), "=r"(r1) : "r"(a), "r"(b))"#,
            "not in the translated subset",
        ),
        (
            r#"asm("add.cc.u64 %0, %2, %3;\n\tmov.u32 %1, 0;" : "=r"(r0), "=r"(r1) : "r"(a), "r"(b))"#,
            "only .u32 instructions are translated",
        ),
        (
            r#"asm("add.u32 %0, %2, %4;\n\tmov.u32 %1, 0;" : "=r"(r0), "=r"(r1) : "r"(a), "r"(b))"#,
            "operand %4 does not exist",
        ),
        (
            r#"asm("mov.u32 %0, %2;\n\tmov.u32 %1, %3;" : "=l"(r0), "=r"(r1) : "r"(a), "r"(b))"#,
            "output constraint \"=l\"",
        ),
    ];
    for (asm, want) in cases {
        let (ok, err, _) = generate(asm);
        assert!(!ok, "accepted: {asm}");
        assert!(
            err.contains("t.cu:4: inline PTX the emulator cannot run") && err.contains(want),
            "{asm}\nwanted {want:?} in:\n{err}"
        );
    }
}
