//! `prover`: the node's command line.

/// jemalloc keeps freed pages for reuse: a proof allocates and frees vectors of 2^20 field
/// elements (32 MiB) by the thousand, and glibc's malloc returns each to the kernel and faults
/// in fresh zeroed pages for the next one.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use prover::config::{BackendChoice, EngineChoice, NodeConfig};
use prover::rollup::RollupState;
use prover::wire::{
    BatchConfig, BatchTaskData, ChunkConfig, ProofPayload, Task, TaskType, Transfer,
    HARD_FORK_NAME, TASK_DATA_VERSION,
};
use prover::{CoreConfig, ProvingCore};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

#[derive(Parser)]
#[command(
    name = "prover",
    version,
    about = "GPU-accelerated halo2 prover node (BN254, KZG, SHPLONK)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Dirs {
    /// Configuration file (see config.json); flags and environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory of KZG parameter files `kzg_bn254_{k}.srs` [default: data/params].
    #[arg(long, env = "PROVER_PARAMS_DIR")]
    params_dir: Option<PathBuf>,
    /// Directory of the proving-key cache [default: data/keys].
    #[arg(long, env = "PROVER_KEYS_DIR")]
    keys_dir: Option<PathBuf>,
    /// Free space (MiB) the key and coset caches leave on the keys directory's filesystem: a
    /// cache file that would leave less is not written [default: 2048].
    #[arg(long, env = "PROVER_KEYS_DISK_RESERVE_MIB")]
    keys_disk_reserve_mib: Option<u64>,
}

impl Dirs {
    /// Flag or environment variable, else the config file, else the default; the engine and
    /// backend from `engine` (flags), else the file's `node` section, else the defaults.
    fn resolve(&self, engine: &EngineOpts) -> Result<CoreConfig> {
        let file = self.file()?;
        let from_file = |f: fn(&NodeConfig) -> &PathBuf| file.as_ref().map(|c| f(c).clone());
        let engine_kind = engine
            .engine
            .map(EngineChoice::from)
            .or_else(|| file.as_ref().map(|c| c.node.engine))
            .unwrap_or_default();
        let backend = engine
            .backend
            .map(BackendChoice::from)
            .or_else(|| file.as_ref().map(|c| c.node.backend))
            .unwrap_or_default();
        check_engine_backend(engine_kind, backend)?;
        Ok(CoreConfig {
            engine: engine_kind,
            backend,
            params_dir: self
                .params_dir
                .clone()
                .or_else(|| from_file(|c| &c.prover.params_dir))
                .unwrap_or_else(|| "data/params".into()),
            keys_dir: self
                .keys_dir
                .clone()
                .or_else(|| from_file(|c| &c.prover.keys_dir))
                .unwrap_or_else(|| "data/keys".into()),
            verify_allow: Vec::new(),
            keys_disk_reserve_mib: self
                .keys_disk_reserve_mib
                .or_else(|| file.as_ref().map(|c| c.prover.keys_disk_reserve_mib))
                .unwrap_or(prover::disk::DEFAULT_RESERVE_MIB),
        })
    }

    /// The configuration file, if one was given (parsed only: no environment, no validation).
    fn file(&self) -> Result<Option<NodeConfig>> {
        Ok(self.config.as_deref().map(NodeConfig::read).transpose()?)
    }

    fn core(&self, engine: &EngineOpts) -> Result<ProvingCore> {
        Ok(ProvingCore::new(self.resolve(engine)?))
    }

    /// `--seed`, else the file's `node.seed`.
    fn seed(&self, flag: Option<u64>) -> Result<Option<u64>> {
        Ok(match flag {
            Some(s) => Some(s),
            None => self.file()?.and_then(|c| c.node.seed),
        })
    }
}

/// Proving engine on the command line.
#[derive(Clone, Copy, ValueEnum)]
enum EngineArg {
    /// halo2-axiom's own prover, on the CPU (for cross-checks).
    Reference,
    /// Our prover, every MSM and NTT on the compute backend.
    Native,
}

impl From<EngineArg> for EngineChoice {
    fn from(a: EngineArg) -> Self {
        match a {
            EngineArg::Reference => EngineChoice::Reference,
            EngineArg::Native => EngineChoice::Native,
        }
    }
}

/// Compute backend on the command line.
#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    /// CUDA when usable, else the CPU (with a warning saying why).
    Auto,
    Cpu,
    /// CUDA device 0; an error if there is none.
    Cuda,
}

impl From<BackendArg> for BackendChoice {
    fn from(a: BackendArg) -> Self {
        match a {
            BackendArg::Auto => BackendChoice::Auto,
            BackendArg::Cpu => BackendChoice::Cpu,
            BackendArg::Cuda => BackendChoice::Cuda,
        }
    }
}

#[derive(Args, Clone, Default)]
struct EngineOpts {
    /// Proving engine [default: the config file's node.engine, else native].
    #[arg(long, value_enum)]
    engine: Option<EngineArg>,
    /// Compute backend of the native engine [default: the config file's node.backend, else auto].
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,
}

/// The reference engine proves on the CPU only: asking it for CUDA is a mistake worth reporting.
fn check_engine_backend(engine: EngineChoice, backend: BackendChoice) -> Result<()> {
    if engine == EngineChoice::Reference && backend == BackendChoice::Cuda {
        bail!("--backend cuda needs --engine native (the reference engine proves on the CPU only)");
    }
    Ok(())
}

/// The proof rng: a fixed seed (cross-checks only) or fresh OS randomness.
fn proof_rng(seed: Option<u64>) -> ChaCha20Rng {
    match seed {
        Some(seed) => {
            eprintln!("WARNING: proving with the fixed rng seed {seed}: for cross-checks only, it breaks zero-knowledge across proofs");
            ChaCha20Rng::seed_from_u64(seed)
        }
        None => ChaCha20Rng::from_entropy(),
    }
}

#[derive(Subcommand)]
enum Command {
    /// KZG parameters: generate (development), verify, downsize.
    #[command(subcommand)]
    Params(ParamsCmd),
    /// Make task files (what a coordinator would hand out) for local proving.
    #[command(subcommand)]
    Task(TaskCmd),
    /// Prove a task file and write the proof JSON.
    Prove {
        #[arg(long)]
        task: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        dirs: Dirs,
        #[command(flatten)]
        engine: EngineOpts,
        /// Fixed rng seed (byte-identical proofs, for cross-checks only: it breaks zero-knowledge)
        /// [default: the config file's node.seed, else fresh OS randomness].
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Verify a proof JSON; exit 0 if valid, non-zero with the reason otherwise. Keys come from
    /// the key cache only: a proof for a circuit configuration with no cached keys is refused
    /// ("cannot verify") without generating any, unless --allow-keygen.
    Verify {
        #[arg(long)]
        proof: PathBuf,
        /// Also check that the proof's public inputs are the ones this task expects.
        #[arg(long)]
        task: Option<PathBuf>,
        /// Generate (and cache) the keys of the proof's circuit configuration if the key cache
        /// lacks them. Only for a configuration you trust: the proof names it, and its keygen can
        /// take minutes and gigabytes.
        #[arg(long)]
        allow_keygen: bool,
        #[command(flatten)]
        dirs: Dirs,
    },
    /// Print the coordinator login request body (message, public_key, signature) exactly as the
    /// daemon sends it: an operator's tool to debug logins.
    #[command(group(clap::ArgGroup::new("key").required(true).args(["key_hex", "key_file"])))]
    SignLogin {
        /// The worker's secp256k1 secret key, 32 bytes hex. Other users of the machine can read
        /// a command line (`ps`, shell history): prefer --key-file.
        #[arg(long)]
        key_hex: Option<String>,
        /// A file holding the key as 64 hex digits, as the daemon's `identity_dir/worker-N.key`.
        #[arg(long)]
        key_file: Option<PathBuf>,
        #[arg(long)]
        challenge: String,
        #[arg(long)]
        prover_name: String,
        #[arg(long)]
        prover_version: String,
        /// Task types, comma-separated (1 chunk, 2 batch).
        #[arg(long, value_delimiter = ',', required = true)]
        prover_types: Vec<u8>,
        /// Verifying-key digests, comma-separated.
        #[arg(long, value_delimiter = ',')]
        vks: Vec<String>,
        /// 1 internal, 2 external.
        #[arg(long, default_value_t = 1)]
        provider_type: u8,
    },
    /// Run the prover daemon: log in to the coordinator, pull tasks, prove, submit (until SIGINT or
    /// SIGTERM; exits 0 after a graceful stop). Every key of the file can be overridden by an
    /// environment variable PROVER_<SECTION>_<KEY>.
    Run {
        /// Configuration file (see config.json and the README's configuration table).
        #[arg(long, default_value = "config.json")]
        config: PathBuf,
        /// Overrides node.engine.
        #[arg(long, value_enum)]
        engine: Option<EngineArg>,
        /// Overrides node.backend.
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
        /// Overrides node.seed: one fixed rng seed for every proof (cross-checks only: it breaks
        /// zero-knowledge across tasks).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// End to end on this machine over HTTP: an embedded coordinator and prover workers; dev
    /// params, chained chunk tasks, their proofs, the batch proof that aggregates them, every
    /// proof verified by the coordinator, and a summary table.
    Demo(DemoArgs),
}

#[derive(Subcommand)]
enum ParamsCmd {
    /// Generate parameters. Only insecure development parameters can be generated (`--dev`):
    /// production parameters come from a ceremony and are downsized with `params downsize`.
    Gen {
        #[arg(long)]
        k: u32,
        /// Acknowledge that the secret is public: for development and tests only.
        #[arg(long)]
        dev: bool,
        #[arg(long, default_value_t = params::DEV_SEED_DEFAULT)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a parameter file: structure, points on the curve, pairing consistency, Lagrange basis.
    Verify { file: PathBuf },
    /// Cut a parameter file down to 2^k points (recomputing the Lagrange basis).
    Downsize {
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        k: u32,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args, Clone)]
struct ChunkShape {
    /// log2 rows of the chunk circuit.
    #[arg(long, default_value_t = ChunkConfig::default().k)]
    chunk_k: u32,
    /// Depth of the account tree.
    #[arg(long, default_value_t = ChunkConfig::default().tree_depth)]
    tree_depth: usize,
    /// Transfer slots per chunk.
    #[arg(long, default_value_t = ChunkConfig::default().max_txs)]
    max_txs: usize,
}

impl ChunkShape {
    fn config(&self) -> ChunkConfig {
        ChunkConfig {
            k: self.chunk_k,
            tree_depth: self.tree_depth,
            max_txs: self.max_txs,
        }
    }
}

#[derive(Subcommand)]
enum TaskCmd {
    /// Chained chunk tasks of random transfers from a development genesis (`chunk-{i}.json`).
    Chunks {
        #[arg(long, default_value_t = 2)]
        chunks: usize,
        /// Transfers per chunk (at most max_txs).
        #[arg(long, default_value_t = 3)]
        txs: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[command(flatten)]
        shape: ChunkShape,
        #[arg(long)]
        out_dir: PathBuf,
    },
    /// A batch task aggregating chunk proof files, in chain order.
    Batch {
        /// log2 rows of the batch circuit.
        #[arg(long, default_value_t = 20)]
        k: u32,
        #[arg(long, required = true, num_args = 1..)]
        proofs: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args)]
struct DemoArgs {
    #[arg(long, default_value_t = 2)]
    chunks: usize,
    #[arg(long, default_value_t = 3)]
    txs: usize,
    #[command(flatten)]
    shape: ChunkShape,
    /// log2 rows of the batch circuit.
    #[arg(long, default_value_t = 20)]
    batch_k: u32,
    /// Prove the chunks only.
    #[arg(long)]
    no_batch: bool,
    /// log2 rows of the bundle circuit (one batch per bundle; settled on a local anvil when
    /// `scripts/ensure-l1` has installed anvil and solc).
    #[arg(long, default_value_t = 20)]
    bundle_k: u32,
    /// Stop at the batch: no bundle, no settlement.
    #[arg(long)]
    no_bundle: bool,
    /// Prover workers (one identity each) in the embedded daemon.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Seed of the random transfers.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fixed rng seed of every proof (cross-checks only) [default: fresh OS randomness].
    #[arg(long)]
    proof_seed: Option<u64>,
    #[command(flatten)]
    engine: EngineOpts,
    /// Give up if not every task is verified after this many seconds.
    #[arg(long, default_value_t = 3600)]
    timeout_sec: u64,
    /// Where the verified proofs are written.
    #[arg(long, default_value = "data/demo")]
    work_dir: PathBuf,
    #[command(flatten)]
    dirs: Dirs,
}

mod demo;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own progress; the components' logs stay at warnings unless RUST_LOG says
    // otherwise. Colour only on a terminal, so log files stay plain text.
    let default_filter = match cli.command {
        Command::Demo(_) => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    // Before any field arithmetic: a CPU this build cannot run gets a message, not SIGILL.
    if let Err(e) = gpu::check_host_cpu() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error chain on one line, each cause said once (our error types already include their
/// source in their message), with what to do where we know it.
fn report(e: &anyhow::Error) -> String {
    let hint = e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<params::ParamsError>(),
            Some(params::ParamsError::NotFound { .. } | params::ParamsError::Io { .. })
        )
    });
    let mut out = prover_core::report::causes_once(e.chain());
    if hint {
        out.push_str(
            "; make development parameters with `prover params gen --k K --dev --out \
             DIR/kzg_bn254_K.srs` (insecure; or downsize a ceremony file with `prover params \
             downsize`), or run `prover demo` once",
        );
    }
    out
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Params(cmd) => params_cmd(cmd),
        Command::Task(cmd) => task_cmd(cmd),
        Command::Prove {
            task,
            out,
            dirs,
            engine,
            seed,
        } => {
            let task = read_task(&task)?;
            let core = dirs.core(&engine)?;
            let rng = proof_rng(dirs.seed(seed)?);
            let proof = core.prove_task(&task, rng).context("proving failed")?;
            write_json(&out, &proof)?;
            println!(
                "proved {} task {} in {} ms with engine {} on backend {} -> {}",
                task.kind()?,
                task.task_id,
                proof.meta.prove_ms,
                proof.meta.engine,
                proof.meta.backend,
                out.display()
            );
            Ok(())
        }
        Command::Verify {
            proof,
            task,
            allow_keygen,
            dirs,
        } => {
            let text = std::fs::read_to_string(&proof)
                .with_context(|| format!("reading {}", proof.display()))?;
            let payload = ProofPayload::from_json_str(&text)?;
            let mut config = dirs.resolve(&EngineOpts::default())?;
            if allow_keygen {
                config.verify_allow.push(payload.spec.clone());
            }
            let core = ProvingCore::new(config);
            let verified = core.verify(&payload).map_err(|e| {
                let what = if e.is_rejection() {
                    "proof is INVALID"
                } else {
                    "cannot verify the proof"
                };
                anyhow::Error::new(e).context(what)
            })?;
            if let Some(task) = task {
                let task = read_task(&task)?;
                let expected = prover::core::expected_statement(&task.payload()?)?;
                if expected != verified.statement {
                    bail!("proof is valid but proves a different statement than the task expects");
                }
            }
            println!(
                "proof is VALID: {} (task {})",
                verified.spec.task_type(),
                payload.task_id
            );
            for (i, x) in verified.statement.iter().enumerate() {
                println!("  public input {i}: {x}");
            }
            Ok(())
        }
        Command::SignLogin {
            key_hex,
            key_file,
            challenge,
            prover_name,
            prover_version,
            prover_types,
            vks,
            provider_type,
        } => {
            let key_hex = match (key_hex, key_file) {
                (Some(hex), _) => hex,
                (None, Some(path)) => std::fs::read_to_string(&path)
                    .with_context(|| format!("reading the key file {}", path.display()))?
                    .trim()
                    .to_string(),
                (None, None) => anyhow::bail!("give --key-hex or --key-file"),
            };
            let key = prover::login::key_from_hex(&key_hex)?;
            let message = prover::wire::LoginMessage {
                challenge,
                prover_version,
                prover_name,
                prover_provider_type: provider_type,
                prover_types,
                vks,
            };
            let request = prover::login::sign_login(&key, message)?;
            println!("{}", serde_json::to_string_pretty(&request)?);
            Ok(())
        }
        Command::Run {
            config,
            engine,
            backend,
            seed,
        } => run_daemon(&config, engine, backend, seed),
        Command::Demo(args) => demo::run(demo::DemoPlan {
            core: args.dirs.resolve(&args.engine)?,
            proof_seed: args.proof_seed,
            chunk: args.shape.config(),
            chunks: args.chunks,
            txs: args.txs,
            batch_k: (!args.no_batch).then_some(args.batch_k),
            bundle_k: (!args.no_batch && !args.no_bundle).then_some(args.bundle_k),
            workers: args.workers,
            seed: args.seed,
            timeout: std::time::Duration::from_secs(args.timeout_sec),
            work_dir: args.work_dir,
        }),
    }
}

/// `prover run`: a tokio runtime, SIGINT/SIGTERM → the daemon's cancellation token.
fn run_daemon(
    path: &Path,
    engine: Option<EngineArg>,
    backend: Option<BackendArg>,
    seed: Option<u64>,
) -> Result<()> {
    let mut config = NodeConfig::load(path, std::env::vars())?;
    if let Some(e) = engine {
        config.node.engine = e.into();
    }
    if let Some(b) = backend {
        config.node.backend = b.into();
    }
    if seed.is_some() {
        config.node.seed = seed;
    }
    config.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = runtime.block_on(async {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            match wait_for_signal().await {
                Ok(name) => tracing::info!(signal = name, "stopping: no new tasks; draining"),
                Err(e) => tracing::error!(error = %e, "cannot listen for signals; stopping"),
            }
            signals.cancel();
            // A second signal does not wait for the drain. The stack is consistent at every
            // commit, so the next start resumes from it.
            if let Ok(name) = wait_for_signal().await {
                eprintln!("{name} again: exiting without waiting for the drain");
                std::process::exit(130);
            }
        });
        let core = std::sync::Arc::new(ProvingCore::new(config.core_config()));
        prover::daemon::run(config, core, shutdown).await
    });
    // A proof still running after the drain timeout is abandoned (its task stays in the stack).
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    let summary = result?;
    println!(
        "stopped: pulled {}, proved {}, failed {}, accepted {}, refused {}, left in stack {} (backend {})",
        summary.tasks_pulled,
        summary.tasks_proved,
        summary.tasks_failed,
        summary.submissions_accepted,
        summary.submissions_refused,
        summary.left_in_stack,
        summary.backend
    );
    Ok(())
}

async fn wait_for_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

fn params_cmd(cmd: ParamsCmd) -> Result<()> {
    match cmd {
        ParamsCmd::Gen { k, dev, seed, out } => {
            if !dev {
                bail!("only insecure development parameters can be generated; pass --dev to acknowledge that their secret is public (production parameters come from a ceremony; see `prover params downsize`)");
            }
            eprintln!("WARNING: generating an INSECURE development SRS (k={k}, seed={seed}): its secret is public. Never use it in production.");
            let started = Instant::now();
            let srs = params::dev_setup(k, seed, true)?;
            params::write_file(&srs, &out)?;
            println!(
                "wrote insecure development SRS k={k} to {} in {:.2} s",
                out.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        ParamsCmd::Verify { file } => {
            let report = params::verify_file(&file)
                .with_context(|| format!("{} is NOT a valid SRS", file.display()))?;
            println!(
                "{}: valid KZG BN254 parameters, k={}",
                file.display(),
                report.k
            );
            println!("sha256 {}", report.sha256_hex);
            if let Some(seed) = report.insecure_dev_seed {
                println!("WARNING: this is the INSECURE development SRS (seed {seed}); its secret is public");
            }
            Ok(())
        }
        ParamsCmd::Downsize { from, k, out } => {
            params::downsize_file(&from, k, &out)?;
            println!(
                "wrote k={k} parameters from {} to {}",
                from.display(),
                out.display()
            );
            Ok(())
        }
    }
}

fn task_cmd(cmd: TaskCmd) -> Result<()> {
    match cmd {
        TaskCmd::Chunks {
            chunks,
            txs,
            seed,
            shape,
            out_dir,
        } => {
            let tasks = chunk_tasks(shape.config(), chunks, txs, seed)?;
            std::fs::create_dir_all(&out_dir)
                .with_context(|| format!("creating {}", out_dir.display()))?;
            for (i, task) in tasks.iter().enumerate() {
                let path = out_dir.join(format!("chunk-{i}.json"));
                write_json(&path, task)?;
                println!("{}", path.display());
            }
            Ok(())
        }
        TaskCmd::Batch { k, proofs, out } => {
            let proofs = proofs
                .iter()
                .map(|p| {
                    let text = std::fs::read_to_string(p)
                        .with_context(|| format!("reading {}", p.display()))?;
                    Ok(ProofPayload::from_json_str(&text)?)
                })
                .collect::<Result<Vec<_>>>()?;
            let task = batch_task(k, proofs)?;
            write_json(&out, &task)?;
            println!("{}", out.display());
            Ok(())
        }
    }
}

/// `n` chained chunk tasks of random valid transfers from a development genesis.
fn chunk_tasks(config: ChunkConfig, n: usize, txs: usize, seed: u64) -> Result<Vec<Task>> {
    if txs > config.max_txs {
        bail!("--txs {txs} exceeds --max-txs {}", config.max_txs);
    }
    let accounts = 8u64.min(1u64 << config.tree_depth.min(63));
    let mut state = RollupState::genesis(config.tree_depth, accounts, 1_000_000)?;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut tasks = vec![];
    for i in 0..n {
        let mut transfers = vec![];
        let mut nonces: std::collections::HashMap<u64, u64> = Default::default();
        for _ in 0..txs {
            let from = rng.gen_range(0..accounts);
            let to = rng.gen_range(0..accounts);
            let nonce = *nonces
                .entry(from)
                .or_insert_with(|| state.account(from).map(|a| a.nonce).unwrap_or(0));
            nonces.insert(from, nonce + 1);
            transfers.push(Transfer {
                from,
                to,
                amount: rng.gen_range(1..1000),
                nonce,
            });
        }
        let data = state.apply_chunk(config, &transfers)?;
        tasks.push(Task {
            uuid: format!("local-{seed}-{i}"),
            task_id: format!("chunk-{seed}-{i}"),
            task_type: TaskType::Chunk.as_u8(),
            task_data: serde_json::to_string(&data)?,
            hard_fork_name: HARD_FORK_NAME.into(),
        });
    }
    Ok(tasks)
}

fn batch_task(k: u32, proofs: Vec<ProofPayload>) -> Result<Task> {
    let chunk = match proofs.first().map(|p| &p.spec) {
        Some(prover::wire::CircuitSpec::Chunk { config }) => *config,
        _ => bail!(
            "a batch needs at least one chunk proof, and the first proof is not a chunk proof"
        ),
    };
    let id = proofs
        .iter()
        .map(|p| p.task_id.as_str())
        .collect::<Vec<_>>()
        .join("+");
    let data = BatchTaskData {
        version: TASK_DATA_VERSION,
        config: BatchConfig {
            k,
            num_chunks: proofs.len(),
            chunk,
        },
        chunk_proofs: proofs,
    };
    Ok(Task {
        uuid: format!("local-batch-{id}"),
        task_id: format!("batch-{id}"),
        task_type: TaskType::Batch.as_u8(),
        task_data: serde_json::to_string(&data)?,
        hard_fork_name: HARD_FORK_NAME.into(),
    })
}

fn read_task(path: &Path) -> Result<Task> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading task {}", path.display()))?;
    let task: Task = prover::wire::from_json("task", &text)?;
    Ok(task)
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
