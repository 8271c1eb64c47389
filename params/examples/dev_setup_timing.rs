//! Times `dev_setup` (and optionally halo2's `ParamsKZG::setup`) for one `k`.
//!
//! `cargo run --release -p params --example dev_setup_timing -- 20 [--halo2] [--verify]`

use std::time::Instant;

use halo2_proofs::poly::commitment::ParamsProver;
use rand_core::OsRng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let k: u32 = args.first().map(|a| a.parse()).transpose()?.unwrap_or(16);
    let t = Instant::now();
    let srs = params::dev_setup(k, params::DEV_SEED_DEFAULT, true)?;
    let ours = t.elapsed();
    println!("dev_setup(k = {k}): {ours:.2?}");
    if args.iter().any(|a| a == "--verify") {
        let t = Instant::now();
        params::verify(&srs, OsRng)?;
        println!("verify(k = {k}): {:.2?}", t.elapsed());
    }
    if args.iter().any(|a| a == "--halo2") {
        let t = Instant::now();
        let theirs = params::Srs::setup(k, OsRng);
        let theirs_t = t.elapsed();
        println!(
            "ParamsKZG::setup(k = {k}): {theirs_t:.2?} ({} points); ratio {:.1}x",
            theirs.get_g().len(),
            theirs_t.as_secs_f64() / ours.as_secs_f64()
        );
    }
    Ok(())
}
