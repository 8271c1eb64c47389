//! `coordinator`: serve the coordinator API, or talk to a running one through its admin API.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use coordinator::{
    BlockRequest, Coordinator, CoordinatorConfig, EnqueueReply, EnqueueRequest, PruneRequest,
    RequeueRequest, StatusReport,
};
use prover_core::wire::{CircuitSpec, Envelope, Transfer};
use prover_core::{CoreConfig, ProvingCore};

#[derive(Parser)]
#[command(
    name = "coordinator",
    about = "Coordinator of the prover node (Scroll coordinator API v1)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Admin {
    /// Base URL of the coordinator, e.g. http://127.0.0.1:8390
    #[arg(long, env = "COORDINATOR_URL", default_value = "http://127.0.0.1:8390")]
    url: String,
    /// The coordinator's admin_token.
    #[arg(long, env = "COORDINATOR_ADMIN_TOKEN")]
    admin_token: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run the coordinator until SIGINT or SIGTERM.
    Serve {
        #[arg(long, default_value = "coordinator/coordinator.json")]
        config: PathBuf,
    },
    /// Turn transfers into chunk tasks.
    Enqueue {
        #[command(flatten)]
        admin: Admin,
        /// JSON file with a list of transfers [{"from", "to", "amount", "nonce"}, …].
        #[arg(long, conflicts_with = "random")]
        transfers: Option<PathBuf>,
        /// This many random valid transfers.
        #[arg(long)]
        random: Option<usize>,
        /// Seed of --random (default: the time).
        #[arg(long, requires = "random")]
        seed: Option<u64>,
    },
    /// Task counts per type and state, and every task.
    Status {
        #[command(flatten)]
        admin: Admin,
        /// Print the full report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Block a prover's public key.
    Block {
        #[command(flatten)]
        admin: Admin,
        public_key: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Unblock a prover's public key (and reset its invalid-proof count).
    Unblock {
        #[command(flatten)]
        admin: Admin,
        public_key: String,
    },
    /// Put a failed task back to pending (its failure counts and failed provers cleared).
    Requeue {
        #[command(flatten)]
        admin: Admin,
        task_id: String,
    },
    /// Generate the L1 verifier of one of the configured circuits (snark-verifier, for proofs
    /// with the Keccak transcript), compile it and the rollup contract with solc, and write
    /// sources, creation code (hex) and ABIs to `--out`.
    L1Contracts {
        #[arg(long, default_value = "coordinator/coordinator.json")]
        config: PathBuf,
        /// Which configured circuit: chunk, batch or bundle (the one settled on L1).
        #[arg(long, default_value = "batch")]
        circuit: String,
        #[arg(long)]
        out: PathBuf,
        /// solc-js's solc.js or a solc binary (default: $SOLC, else what scripts/ensure-l1
        /// installed).
        #[arg(long)]
        solc: Option<PathBuf>,
        /// Accept a verifier over the EIP-170 code size limit (24,576 bytes), for a chain
        /// without it (a dev chain such as `anvil --code-size-limit`).
        #[arg(long)]
        allow_oversize: bool,
    },
    /// Deploy the contracts written by `l1-contracts` on an L1 node: the verifier, then the
    /// rollup contract starting at the configured genesis state root. Prints the rollup
    /// contract's address (for `settlement.contract`).
    L1Deploy {
        #[arg(long, default_value = "coordinator/coordinator.json")]
        config: PathBuf,
        /// Which configured circuit the verifier is for (chunk, batch or bundle): where its roots
        /// are.
        #[arg(long, default_value = "batch")]
        circuit: String,
        /// The directory `l1-contracts` wrote.
        #[arg(long)]
        contracts: PathBuf,
        #[arg(long)]
        rpc_url: String,
        #[arg(long)]
        chain_id: u64,
        /// File with the deploying account's private key (hex).
        #[arg(long)]
        key_file: PathBuf,
    },
    /// Remove finished tasks (verified chunks already in a batch, verified batches) last changed
    /// more than `--older-than-hours` ago, with their payloads, proofs and assignments.
    Prune {
        #[command(flatten)]
        admin: Admin,
        #[arg(long)]
        older_than_hours: u64,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    // Before any field arithmetic (the verifier's): a message, not SIGILL.
    if let Err(e) = gpu::check_host_cpu() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    if let Err(e) = run(cli).await {
        eprintln!("error: {}", prover_core::report::causes_once(e.chain()));
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve { config } => serve(config).await,
        Command::L1Contracts {
            config,
            circuit,
            out,
            solc,
            allow_oversize,
        } => l1_contracts(config, &circuit, out, solc, allow_oversize).await,
        Command::L1Deploy {
            config,
            circuit,
            contracts,
            rpc_url,
            chain_id,
            key_file,
        } => l1_deploy(config, &circuit, contracts, &rpc_url, chain_id, key_file).await,
        Command::Enqueue {
            admin,
            transfers,
            random,
            seed,
        } => {
            let req = match (transfers, random) {
                (Some(path), None) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let t: Vec<Transfer> = serde_json::from_str(&text).with_context(|| {
                        format!("{} is not a list of transfers", path.display())
                    })?;
                    EnqueueRequest {
                        transfers: Some(t),
                        ..Default::default()
                    }
                }
                (None, Some(n)) => EnqueueRequest {
                    random: Some(n),
                    seed,
                    ..Default::default()
                },
                _ => bail!("give --transfers FILE or --random N"),
            };
            let reply: EnqueueReply = call(&admin, "enqueue", Some(&req)).await?;
            for id in reply.task_ids {
                println!("{id}");
            }
            Ok(())
        }
        Command::Status { admin, json } => {
            let report: StatusReport = call::<_, ()>(&admin, "status", None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_status(&report);
            }
            Ok(())
        }
        Command::Block {
            admin,
            public_key,
            reason,
        } => {
            let req = BlockRequest { public_key, reason };
            let _: serde_json::Value = call_nullable(&admin, "block", Some(&req)).await?;
            println!("blocked {}", req.public_key);
            Ok(())
        }
        Command::Unblock { admin, public_key } => {
            let req = BlockRequest {
                public_key,
                reason: String::new(),
            };
            let v: serde_json::Value = call_nullable(&admin, "unblock", Some(&req)).await?;
            let was = v
                .get("was_blocked")
                .and_then(|b| b.as_bool())
                .unwrap_or(false);
            println!(
                "unblocked {}{}",
                req.public_key,
                if was { "" } else { " (it was not blocked)" }
            );
            Ok(())
        }
        Command::Requeue { admin, task_id } => {
            let req = RequeueRequest { task_id };
            let _: serde_json::Value = call_nullable(&admin, "requeue", Some(&req)).await?;
            println!("requeued {} (pending)", req.task_id);
            Ok(())
        }
        Command::Prune {
            admin,
            older_than_hours,
        } => {
            let req = PruneRequest {
                older_than_sec: older_than_hours.saturating_mul(3600),
            };
            let p: coordinator::Pruned = call(&admin, "prune", Some(&req)).await?;
            let tasks: Vec<String> = p.tasks.iter().map(|(t, n)| format!("{n} {t}")).collect();
            println!(
                "pruned {} task(s) ({}), {} proof(s), {} assignment(s)",
                p.tasks.values().sum::<u64>(),
                if tasks.is_empty() {
                    "none".to_string()
                } else {
                    tasks.join(", ")
                },
                p.proofs,
                p.assignments
            );
            Ok(())
        }
    }
}

/// The configured circuit named `which`.
fn configured_circuit(config: &CoordinatorConfig, which: &str) -> Result<CircuitSpec> {
    match which {
        "chunk" => Ok(CircuitSpec::Chunk {
            config: config.chunk,
        }),
        "batch" => match config.batch {
            Some(b) => Ok(CircuitSpec::Batch { config: b }),
            None => bail!("the configuration has no batch circuit"),
        },
        "bundle" => match config.bundle {
            Some(b) => Ok(CircuitSpec::Bundle { config: b }),
            None => bail!("the configuration has no bundle circuit"),
        },
        other => bail!("unknown circuit {other:?} (expected chunk, batch or bundle)"),
    }
}

async fn l1_contracts(
    path: PathBuf,
    which: &str,
    out: PathBuf,
    solc: Option<PathBuf>,
    allow_oversize: bool,
) -> Result<()> {
    let config = CoordinatorConfig::from_file(&path)?;
    let spec = configured_circuit(&config, which)?;
    let solc = match solc {
        Some(p) => coordinator::l1::solc::Solc::at(p),
        None => coordinator::l1::solc::Solc::locate(
            &std::env::current_dir().context("the current directory")?,
        )?,
    };
    let core = ProvingCore::new(CoreConfig::new(
        config.params_dir.clone(),
        config.keys_dir.clone(),
    ));
    let started = std::time::Instant::now();
    let built = tokio::task::spawn_blocking(move || -> Result<_> {
        let source = core.evm_verifier(&spec)?;
        let limit = (!allow_oversize).then_some(coordinator::l1::contracts::MAX_CODE_SIZE);
        Ok(coordinator::l1::contracts::build(&solc, source, limit)?)
    })
    .await??;
    coordinator::l1::contracts::write(&out, &built)?;
    println!(
        "wrote {} ({}: verifier runtime {} bytes, rollup runtime {} bytes) in {:.1} s",
        out.display(),
        which,
        built.verifier.deployed_size,
        built.rollup.deployed_size,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn l1_deploy(
    path: PathBuf,
    which: &str,
    dir: PathBuf,
    rpc_url: &str,
    chain_id: u64,
    key_file: PathBuf,
) -> Result<()> {
    use coordinator::l1::contracts;
    let config = CoordinatorConfig::from_file(&path)?;
    let spec = configured_circuit(&config, which)?;
    let key = std::fs::read_to_string(&key_file)
        .with_context(|| format!("reading {}", key_file.display()))?;
    let signer: alloy::signers::local::PrivateKeySigner = key
        .trim()
        .parse()
        .with_context(|| format!("{} is not a hex private key", key_file.display()))?;
    let genesis = coordinator::genesis_root(&config)?;
    let l1 = coordinator::l1::chain::L1::connect(rpc_url, chain_id, signer).await?;
    let verifier_code = contracts::read_bytecode(&dir, "Halo2Verifier")?;
    let (verifier, verifier_gas) = l1.deploy(&verifier_code).await?;
    println!("verifier {verifier} ({verifier_gas} gas)");
    let rollup_code = hex::decode(
        std::fs::read_to_string(dir.join("Rollup.bin"))
            .with_context(|| format!("reading {}", dir.join("Rollup.bin").display()))?
            .trim(),
    )
    .context("Rollup.bin is not hex")?;
    let compiled = coordinator::l1::solc::Compiled {
        abi: serde_json::Value::Null,
        bytecode: rollup_code,
        deployed_size: 0,
    };
    let layout = contracts::RootLayout::for_circuit(&spec);
    let code = contracts::rollup_deploy_code(&compiled, verifier, layout, genesis);
    let (rollup, rollup_gas) = l1.deploy(&code).await?;
    println!("rollup {rollup} ({rollup_gas} gas), genesis root {genesis}");
    Ok(())
}

async fn serve(path: PathBuf) -> Result<()> {
    let config = CoordinatorConfig::from_file(&path)?;
    let core = Arc::new(ProvingCore::new(CoreConfig::new(
        config.params_dir.clone(),
        config.keys_dir.clone(),
    )));
    // The handlers first: a signal that arrives once the address is out must stop the
    // coordinator gracefully, not kill it with the default action.
    let mut signals = Signals::new()?;
    let running = Coordinator::start(config, core).await?;
    println!("coordinator listening on {}", running.base_url());
    let name = signals.next().await;
    let grace = running.config().http.shutdown_grace_ms;
    println!(
        "{name}: shutting down (requests in flight get {grace} ms; a second signal exits at once)"
    );
    tokio::select! {
        _ = running.shutdown() => {}
        name = signals.next() => {
            eprintln!("{name} again: exiting without waiting for requests in flight");
            // Every scheduler decision is one store transaction: nothing is lost.
            std::process::exit(130);
        }
    }
    Ok(())
}

/// SIGTERM and SIGINT, installed once so that a second signal is seen as well.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

async fn call_nullable<B: serde::Serialize>(
    admin: &Admin,
    route: &str,
    body: Option<&B>,
) -> Result<serde_json::Value> {
    let env = request::<B, serde_json::Value>(admin, route, body).await?;
    Ok(env.data.unwrap_or(serde_json::Value::Null))
}

async fn call<T: serde::de::DeserializeOwned, B: serde::Serialize>(
    admin: &Admin,
    route: &str,
    body: Option<&B>,
) -> Result<T> {
    let env = request::<B, T>(admin, route, body).await?;
    env.data
        .with_context(|| format!("{route}: the coordinator replied without data"))
}

async fn request<B: serde::Serialize, T: serde::de::DeserializeOwned>(
    admin: &Admin,
    route: &str,
    body: Option<&B>,
) -> Result<Envelope<T>> {
    let url = format!("{}/admin/v1/{route}", admin.url.trim_end_matches('/'));
    let client = reqwest::Client::new();
    let req = match body {
        Some(b) => client.post(&url).json(b),
        None => client.get(&url),
    };
    let resp = req
        .bearer_auth(&admin.admin_token)
        .send()
        .await
        .with_context(|| format!("calling {url}"))?;
    let text = resp
        .text()
        .await
        .with_context(|| format!("reading the reply of {url}"))?;
    let env: Envelope<T> = serde_json::from_str(&text)
        .with_context(|| format!("{url} replied with something that is not an envelope: {text}"))?;
    if env.errcode != 0 {
        bail!("{route}: errcode {}: {}", env.errcode, env.errmsg);
    }
    Ok(env)
}

fn print_status(r: &StatusReport) {
    println!(
        "{:<8} {:>8} {:>8} {:>8} {:>8}",
        "type", "pending", "assigned", "verified", "failed"
    );
    for (kind, states) in &r.counts {
        let g = |s: &str| states.get(s).copied().unwrap_or(0);
        println!(
            "{:<8} {:>8} {:>8} {:>8} {:>8}",
            kind,
            g("pending"),
            g("assigned"),
            g("verified"),
            g("failed")
        );
    }
    println!();
    println!(
        "{:<14} {:<6} {:<9} {:>4} {:>4} {:>5} {:<16} {:>9} {:>9}  result",
        "task", "type", "state", "try", "fail", "unprv", "prover", "prove_ms", "verify_ms"
    );
    let opt = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
    for t in &r.tasks {
        println!(
            "{:<14} {:<6} {:<9} {:>4} {:>4} {:>5} {:<16} {:>9} {:>9}  {}",
            t.task_id,
            t.task_type,
            t.state.name(),
            t.attempts,
            t.failures,
            t.unproven_failures,
            t.prover_name.as_deref().unwrap_or("-"),
            opt(t.prove_ms),
            opt(t.verify_ms),
            t.result.as_deref().unwrap_or("")
        );
    }
    if let Some(l1) = &r.l1 {
        println!();
        println!(
            "L1: {} of {} item(s) finalised; last {} (root {})",
            l1.finalized,
            l1.enqueued,
            l1.last_finalized.as_deref().unwrap_or("-"),
            l1.last_root
                .map(|r| r.to_string())
                .unwrap_or_else(|| "-".into())
        );
        if let Some(cur) = &l1.current {
            println!(
                "    settling {cur}: {}, tx {}, mined in block {}, {} re-send(s), {} reorg(s){}",
                l1.current_state.as_deref().unwrap_or("-"),
                l1.pending_tx
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "-".into()),
                l1.mined_block
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "-".into()),
                l1.resends,
                l1.reorgs,
                l1.note
                    .as_deref()
                    .map(|n| format!("; {n}"))
                    .unwrap_or_default()
            );
        }
    }
    if !r.blocked.is_empty() {
        println!();
        println!("blocked keys:");
        for k in &r.blocked {
            println!("  {k}");
        }
    }
}
