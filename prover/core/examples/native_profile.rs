//! Per-step profile of one chunk proof with each engine on the CPU backend, for finding hot spots
//! (the criterion bench `prove/chunk/{engine}/{backend}/k{k}` in benches/ is the measurement of
//! record). Prints the native engine's step events and both engines' wall times.
//!
//! `cargo run --release -p prover-core --example native_profile -- [k] [rounds]`
//! (k = 13 and 2 rounds by default; dev parameters and keys under $TMPDIR/native-profile).
//!
//! `... --example native_profile -- TASK.json PARAMS_DIR KEYS_DIR [rounds]` proves a task file
//! (e.g. a batch task from `prover task batch`) through the proving core: `rounds` native proofs
//! in one process (the first one builds the key cache), then one reference proof. With
//! `PROFILE_BACKEND=cuda` the native proofs run on CUDA (and print the emulator's counters when
//! the device is the emulated one); `PROFILE_NO_REFERENCE=1` skips the reference proof; `PROFILE_OUT=DIR` writes each native proof
//! there (`proof-{round}.json`).
//!
//! On the emulated device each native proof also gets a per-step table of the device's work by
//! count (launches, reads back, bytes up, field multiplications, the chain of each launch's
//! longest thread, field elements loaded and stored), the host's share of each step on this
//! machine (the step's wall time less the emulator's device time: kernels, copies, memsets,
//! new allocations filled), and a floor for each step on
//! an H100/H200 worked out from those counts (see [`Floor`]): an estimate from counts, not a
//! measurement of a GPU. After it, a table of each kernel's launch shapes on that device (warps
//! per SM at the launches' configurations, waves and how full they are).
//!
//! It allocates with jemalloc, as the `prover` binary does, so that its times, page faults and
//! resident set are the node's (glibc's malloc hands each freed 32 MiB vector back to the kernel
//! and faults in fresh zeroed pages for the next one).

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use halo2_base::gates::circuit::builder::BaseCircuitBuilder;
use halo2_proofs::transcript::TranscriptWriterBuffer;
use halo2curves::bn256::Fr;
use prover_core::circuits::chunk;
use prover_core::rollup::RollupState;
use prover_core::wire::{ChunkConfig, Transfer};
use prover_core::{engine, native, CoreConfig, ProvingCore};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use snark_verifier_sdk::halo2::PoseidonTranscript;
use snark_verifier_sdk::NativeLoader;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(tracing_subscriber::EnvFilter::new("prover_core=debug")),
        )
        .with(StepLayer)
        .init();
    let all: Vec<String> = std::env::args().skip(1).collect();
    if all.first().is_some_and(|a| a.ends_with(".json")) {
        return profile_task(&all);
    }
    let mut args = all.into_iter();
    let k: u32 = args.next().map(|v| v.parse()).transpose()?.unwrap_or(13);
    let rounds: usize = args.next().map(|v| v.parse()).transpose()?.unwrap_or(2);
    let dir = std::env::temp_dir().join("native-profile");
    let params_dir = dir.join("params");
    std::fs::create_dir_all(&params_dir)?;
    params::ensure_dev(&params_dir, k, false)?;
    let core = ProvingCore::new(CoreConfig::new(params_dir, dir.join("keys")));
    let config = ChunkConfig {
        k,
        tree_depth: 4,
        max_txs: 2,
    };
    let keys = core.chunk_keys(config)?;
    let srs = core.srs(k)?;
    let mut state = RollupState::genesis(config.tree_depth, 4, 1000)?;
    let t = |from, to, amount| Transfer {
        from,
        to,
        amount,
        nonce: 0,
    };
    let data = state.apply_chunk(config, &[t(0, 1, 5), t(1, 2, 3)])?;
    let build = || {
        let mut b = BaseCircuitBuilder::prover(
            keys.meta.circuit_params.clone(),
            keys.meta.break_points.clone(),
        );
        chunk::synthesize(&mut b, &data);
        let instances: Vec<Fr> = b.assigned_instances[0].iter().map(|c| *c.value()).collect();
        (b, instances)
    };
    let vk = keys.pk.get_vk();
    let cs = vk.cs();
    eprintln!(
        "chunk k={k}: {} advice, {} fixed, {} instance columns, {} permutation columns, {} lookups, degree {}, extended k {}",
        cs.num_advice_columns(),
        cs.num_fixed_columns(),
        cs.num_instance_columns(),
        cs.permutation().get_columns().len(),
        cs.lookups().len(),
        cs.degree(),
        vk.get_domain().extended_k()
    );
    let cpu = gpu::CpuBackend::new();
    let bases = native::srs_bases(&srs)?;
    let started = std::time::Instant::now();
    let cache = native::KeyCache::new(&cpu, &keys.pk)?;
    eprintln!(
        "key cache: {:?}, {} MiB",
        started.elapsed(),
        cache.size_bytes() >> 20
    );
    for round in 0..rounds {
        let (circuit, instances) = build();
        let started = std::time::Instant::now();
        let mut transcript = PoseidonTranscript::<NativeLoader, Vec<u8>>::init(Vec::new());
        native::create_proof(
            &cpu,
            &srs,
            &bases,
            &keys.pk,
            Some(&cache),
            &circuit,
            &[&instances],
            &mut ChaCha20Rng::seed_from_u64(1),
            &mut transcript,
        )?;
        let native_time = started.elapsed();
        engine::verify(&srs, vk, &instances, &transcript.finalize())?;
        let (circuit, instances) = build();
        let started = std::time::Instant::now();
        engine::prove(
            &srs,
            &keys.pk,
            circuit,
            &instances,
            ChaCha20Rng::seed_from_u64(1),
        )?;
        let reference_time = started.elapsed();
        eprintln!(
            "round {round}: native {native_time:?}, reference {reference_time:?}, ratio {:.3}",
            native_time.as_secs_f64() / reference_time.as_secs_f64()
        );
    }
    Ok(())
}

fn profile_task(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let [task, params_dir, keys_dir, rest @ ..] = args else {
        return Err("usage: native_profile TASK.json PARAMS_DIR KEYS_DIR [rounds]".into());
    };
    let rounds: usize = rest.first().map(|v| v.parse()).transpose()?.unwrap_or(2);
    let task: prover_core::wire::Task = serde_json::from_str(&std::fs::read_to_string(task)?)?;
    let mut config = CoreConfig::new(params_dir, keys_dir);
    config.backend = match std::env::var("PROFILE_BACKEND").as_deref() {
        Ok("cuda") => gpu::BackendChoice::Cuda,
        _ => gpu::BackendChoice::Cpu,
    };
    let native_core = ProvingCore::new(config.clone());
    let emulator = gpu::Emulator::open();
    for round in 0..rounds {
        if let Some(e) = &emulator {
            steps::begin(e)?;
        }
        let started = std::time::Instant::now();
        let proof = native_core.prove_task(&task, ChaCha20Rng::seed_from_u64(round as u64))?;
        if let Some(e) = &emulator {
            steps::report(&Floor::from_env()?)?;
            print_shapes(e)?;
        }
        native_core.verify(&proof)?;
        use sha2::Digest;
        eprintln!(
            "native round {round} on {}: {:?} (core prove_ms {}), proof SHA-256 {}",
            proof.meta.backend,
            started.elapsed(),
            proof.meta.prove_ms,
            hex::encode(sha2::Sha256::digest(&proof.proof.0))
        );
        if let Ok(dir) = std::env::var("PROFILE_OUT") {
            let file = std::path::Path::new(&dir).join(format!("proof-{round}.json"));
            std::fs::write(&file, serde_json::to_string(&proof)?)?;
        }
        if let Some(e) = &emulator {
            let c = e.counters()?;
            eprintln!(
                "emulated device since start: {} bytes host→device, {} bytes device→host, \
                 {} launches, peak device memory {} bytes",
                c.htod_bytes, c.dtoh_bytes, c.launches, c.peak_bytes
            );
            e.reset()?;
        }
    }
    if std::env::var("PROFILE_NO_REFERENCE").is_ok() {
        return Ok(());
    }
    config.engine = engine::EngineKind::Reference;
    let reference_core = ProvingCore::new(config);
    let started = std::time::Instant::now();
    let proof = reference_core.prove_task(&task, ChaCha20Rng::seed_from_u64(0))?;
    eprintln!(
        "reference: {:?} (core prove_ms {})",
        started.elapsed(),
        proof.meta.prove_ms
    );
    Ok(())
}

/// Prints each kernel's launch shapes on the device the emulator models (132 SMs): the warps
/// one SM holds at the launches' configurations (the occupancy calculator's, from the real
/// CUBIN's registers and shared memory) and how full the grids' waves are. Not times: where a
/// kernel holds few warps per SM or fills little of its waves, a GPU hides less latency.
fn print_shapes(e: &gpu::Emulator) -> Result<(), Box<dyn std::error::Error>> {
    let mut shapes = e.launch_shapes()?;
    shapes.sort_by(|a, b| b.waves.cmp(&a.waves).then_with(|| a.kernel.cmp(&b.kernel)));
    println!();
    println!("| kernel | launches | blocks | waves | warps per SM (of 64) | waves filled |");
    println!("|---|---|---|---|---|---|");
    for s in &shapes {
        let warps = if s.warps_min == s.warps_max {
            s.warps_min.to_string()
        } else {
            format!("{}–{}", s.warps_min, s.warps_max)
        };
        println!(
            "| {} | {} | {} | {} | {warps} | {:.1}% |",
            s.kernel,
            s.launches,
            s.blocks,
            s.waves,
            100.0 * s.fill()
        );
    }
    Ok(())
}

/// Forwards the engine's step events ("native prover step", the only ones with a `step` field)
/// to [`steps::on_step`].
struct StepLayer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for StepLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        #[derive(Default)]
        struct Step(Option<String>);
        impl tracing::field::Visit for Step {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "step" {
                    self.0 = Some(value.to_string());
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let mut step = Step::default();
        event.record(&mut step);
        if let Some(step) = step.0 {
            steps::on_step(&step);
        }
    }
}

/// What one step of a proof would take at the least on an H100/H200, worked out from the
/// emulated device's counts of the step (an estimate from counts, not a measurement):
/// - arithmetic or memory, whichever is larger: the field multiplications at `imad_per_mul`
///   32-bit multiply-add slots each on `imad_per_s` slots a second (`../shared/gpu.md`'s floor:
///   132 SMs × 64 a clock × 1.98 GHz), or the field elements loaded and stored (32 B each, before
///   any cache) plus the bytes set and copied on the device, at `memory_bytes_per_s`;
/// - plus the chain of each launch's longest thread at `mul_ns` per dependent multiplication (a
///   Montgomery product is a chain of carry-dependent multiply-adds);
/// - plus `launch_us` per launch and `read_us` per read back (each read waits for the stream);
/// - plus the bytes copied up at `pcie_bytes_per_s` and `copy_us` per copy.
///
/// The host's share (the step's wall time less the emulator's device time, on this machine) is
/// shown beside it, not added: on a GPU the host runs while queued kernels run.
struct Floor {
    imad_per_s: f64,
    imad_per_mul: f64,
    memory_bytes_per_s: f64,
    mul_ns: f64,
    launch_us: f64,
    read_us: f64,
    copy_us: f64,
    pcie_bytes_per_s: f64,
}

impl Floor {
    /// The defaults (H200: 4.8 TB/s of HBM3e; PCIe Gen5 page-locked copies at about 50 GB/s),
    /// each overridable: `FLOOR_MUL_NS`, `FLOOR_MEMORY_GBPS`, `FLOOR_LAUNCH_US`, `FLOOR_READ_US`,
    /// `FLOOR_COPY_US`, `FLOOR_PCIE_GBPS`.
    fn from_env() -> Result<Self, Box<dyn std::error::Error>> {
        let var = |name: &str, default: f64| -> Result<f64, Box<dyn std::error::Error>> {
            match std::env::var(name) {
                Ok(v) => Ok(v.parse().map_err(|e| format!("{name}={v}: {e}"))?),
                Err(_) => Ok(default),
            }
        };
        Ok(Self {
            imad_per_s: 132.0 * 64.0 * 1.98e9,
            imad_per_mul: 264.0,
            memory_bytes_per_s: var("FLOOR_MEMORY_GBPS", 4800.0)? * 1e9,
            mul_ns: var("FLOOR_MUL_NS", 300.0)?,
            launch_us: var("FLOOR_LAUNCH_US", 3.0)?,
            read_us: var("FLOOR_READ_US", 10.0)?,
            copy_us: var("FLOOR_COPY_US", 5.0)?,
            pcie_bytes_per_s: var("FLOOR_PCIE_GBPS", 50.0)? * 1e9,
        })
    }

    /// (arithmetic or memory, chain, launches and reads, copies up) in ms for one step.
    fn parts(&self, d: &steps::Delta) -> [f64; 4] {
        let arithmetic = d.muls as f64 * self.imad_per_mul / self.imad_per_s;
        let memory = (d.elements as f64 * 32.0 + d.device_bytes as f64) / self.memory_bytes_per_s;
        let chain = d.chain as f64 * self.mul_ns * 1e-9;
        let fixed = (d.launches as f64 * self.launch_us + d.reads as f64 * self.read_us) * 1e-6;
        let up =
            d.up_bytes as f64 / self.pcie_bytes_per_s + d.up_copies as f64 * self.copy_us * 1e-6;
        [
            arithmetic.max(memory) * 1e3,
            chain * 1e3,
            fixed * 1e3,
            up * 1e3,
        ]
    }
}

/// The emulated device's counters at each of the engine's steps.
mod steps {
    use std::sync::Mutex;

    /// What the device did during one step.
    #[derive(Clone, Debug, Default)]
    pub struct Delta {
        pub launches: u64,
        pub reads: u64,
        pub up_copies: u64,
        pub up_bytes: u64,
        pub down_bytes: u64,
        /// Bytes set (memsets) and copied (device to device: read and written) on the device.
        pub device_bytes: u64,
        pub muls: u64,
        pub chain: u64,
        pub elements: u64,
        pub device_ns: u64,
    }

    impl Delta {
        fn now(emu: &gpu::Emulator) -> Result<Self, gpu::BackendError> {
            let c = emu.counters()?;
            let m = emu.mul_counts()?;
            Ok(Self {
                launches: c.launches,
                reads: c.dtoh_copies,
                up_copies: c.htod_copies,
                up_bytes: c.htod_bytes,
                down_bytes: c.dtoh_bytes,
                device_bytes: c.memset_bytes + 2 * c.dtod_bytes,
                muls: m.iter().map(|k| k.muls).sum(),
                chain: m.iter().map(|k| k.chain).sum(),
                elements: m.iter().map(|k| k.elements).sum(),
                device_ns: c.device_ns,
            })
        }

        fn since(&self, before: &Self) -> Self {
            Self {
                launches: self.launches - before.launches,
                reads: self.reads - before.reads,
                up_copies: self.up_copies - before.up_copies,
                up_bytes: self.up_bytes - before.up_bytes,
                down_bytes: self.down_bytes - before.down_bytes,
                device_bytes: self.device_bytes - before.device_bytes,
                muls: self.muls - before.muls,
                chain: self.chain - before.chain,
                elements: self.elements - before.elements,
                device_ns: self.device_ns - before.device_ns,
            }
        }

        fn add(&mut self, d: &Self) {
            self.launches += d.launches;
            self.reads += d.reads;
            self.up_copies += d.up_copies;
            self.up_bytes += d.up_bytes;
            self.down_bytes += d.down_bytes;
            self.device_bytes += d.device_bytes;
            self.muls += d.muls;
            self.chain += d.chain;
            self.elements += d.elements;
            self.device_ns += d.device_ns;
        }
    }

    struct State {
        emu: gpu::Emulator,
        last: Delta,
        last_at: std::time::Instant,
        rows: Vec<(String, u64, Delta)>,
        error: Option<String>,
    }

    static STATE: Mutex<Option<State>> = Mutex::new(None);

    fn state() -> std::sync::MutexGuard<'static, Option<State>> {
        STATE.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a proof's table (the emulator's counters now are its zero).
    pub fn begin(emu: &gpu::Emulator) -> Result<(), gpu::BackendError> {
        let last = Delta::now(emu)?;
        let emu = gpu::Emulator::open()
            .ok_or_else(|| gpu::BackendError::Device("the emulator went away".into()))?;
        *state() = Some(State {
            emu,
            last,
            last_at: std::time::Instant::now(),
            rows: Vec::new(),
            error: None,
        });
        Ok(())
    }

    /// One step ended. Its wall time is taken here, from the step before (the first step's
    /// from [`begin`]: it includes the work before the engine starts, the circuit's witness and
    /// the keys), not from the event's `ms`, so that it spans the same stretch as the counts.
    pub fn on_step(step: &str) {
        let mut guard = state();
        let Some(s) = guard.as_mut() else { return };
        match Delta::now(&s.emu) {
            Ok(now) => {
                let d = now.since(&s.last);
                let at = std::time::Instant::now();
                let ms = (at - s.last_at).as_millis() as u64;
                s.rows.push((step.to_string(), ms, d));
                s.last = now;
                s.last_at = at;
            }
            Err(e) => s.error = Some(e.to_string()),
        }
    }

    /// Prints the table of the proof begun last, and ends it.
    pub fn report(floor: &super::Floor) -> Result<(), Box<dyn std::error::Error>> {
        let Some(s) = state().take() else {
            return Ok(());
        };
        if let Some(e) = s.error {
            return Err(format!("reading the emulator's counters at a step: {e}").into());
        }
        println!(
            "| step | wall here (ms) | host here (ms) | launches | reads | up (MiB) | multiplications (M) | chain | elements (M) | estimate on an H200 (ms): arithmetic or memory + chain + launches and reads + copies up = total |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|");
        let mut total = Delta::default();
        let mut total_ms = 0u64;
        let mut total_parts = [0f64; 4];
        let line = |name: &str, ms: u64, d: &Delta, parts: [f64; 4]| {
            let host = (ms as f64 - d.device_ns as f64 / 1e6).max(0.0);
            println!(
                "| {name} | {ms} | {host:.0} | {} | {} | {:.1} | {:.1} | {} | {:.1} | {:.1} + {:.1} + {:.1} + {:.1} = {:.1} |",
                d.launches,
                d.reads,
                d.up_bytes as f64 / (1u64 << 20) as f64,
                d.muls as f64 / 1e6,
                d.chain,
                d.elements as f64 / 1e6,
                parts[0],
                parts[1],
                parts[2],
                parts[3],
                parts.iter().sum::<f64>()
            );
        };
        for (name, ms, d) in &s.rows {
            let parts = floor.parts(d);
            line(name, *ms, d, parts);
            total.add(d);
            total_ms += ms;
            for (t, p) in total_parts.iter_mut().zip(parts) {
                *t += p;
            }
        }
        line("**all steps**", total_ms, &total, total_parts);
        Ok(())
    }
}
