//! The device memory the native engine needs per circuit (`native::memory::device_need`): the
//! production shapes by default (chunk k=18, depth 20, 4 transfers; batch k=20 of 2 such
//! chunks), keys generated or loaded from KEYS_DIR, dev parameters made in PARAMS_DIR if missing.
//!
//! `cargo run --release --example device_need -- PARAMS_DIR KEYS_DIR [chunk_k batch_k]`

use prover_core::wire::{BatchConfig, ChunkConfig};
use prover_core::{native, CoreConfig, ProvingCore};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(params_dir), Some(keys_dir)) = (args.first(), args.get(1)) else {
        return Err("usage: device_need PARAMS_DIR KEYS_DIR [chunk_k batch_k]".into());
    };
    let chunk_k: u32 = args.get(2).map(|v| v.parse()).transpose()?.unwrap_or(18);
    let batch_k: u32 = args.get(3).map(|v| v.parse()).transpose()?.unwrap_or(20);
    for k in [chunk_k, batch_k] {
        params::ensure_dev(std::path::Path::new(params_dir), k, false)?;
    }
    let core = ProvingCore::new(CoreConfig::new(params_dir, keys_dir));
    let chunk = ChunkConfig {
        k: chunk_k,
        ..ChunkConfig::default()
    };
    let batch = BatchConfig {
        k: batch_k,
        num_chunks: 2,
        chunk,
    };
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    for (name, keys) in [
        (format!("chunk k={chunk_k}"), core.chunk_keys(chunk)?),
        (format!("batch k={batch_k}"), core.batch_keys(batch)?),
    ] {
        let cs = keys.pk.get_vk().cs();
        let need = native::memory::device_need(&keys.pk)?;
        println!(
            "{name}: {} advice, {} fixed, {} instance columns, {} lookups, {} permutation \
             columns, degree {}, extended k {}: key cache {:.2} GiB, SRS and NTT tables {:.2} GiB, \
             one proof {:.2} GiB; one worker {:.2} GiB, two {:.2} GiB",
            cs.num_advice_columns(),
            cs.num_fixed_columns(),
            cs.num_instance_columns(),
            cs.lookups().len(),
            keys.pk.permutation().permutations().len(),
            cs.degree(),
            keys.pk.get_vk().get_domain().extended_k(),
            gib(need.key_cache),
            gib(need.shared),
            gib(need.per_proof),
            gib(need.total(1)),
            gib(need.total(2)),
        );
    }
    Ok(())
}
