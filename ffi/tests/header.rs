//! The committed `include/prover.h` must be exactly what cbindgen generates from `src/lib.rs`.
//! Regenerate it with `PROVER_FFI_BLESS=1 cargo test --release -p ffi --test header`.

use std::path::Path;

#[test]
fn committed_header_is_up_to_date() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("reading ffi/cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).expect("header is UTF-8");

    let path = crate_dir.join("include/prover.h");
    if std::env::var_os("PROVER_FFI_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("writing include/prover.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "ffi/include/prover.h is out of date with ffi/src/lib.rs; regenerate it with\n  \
         PROVER_FFI_BLESS=1 cargo test --release -p ffi --test header\n\
         --- generated ---\n{generated}"
    );
}
