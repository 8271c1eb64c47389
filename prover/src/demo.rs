//! `prover demo`: the whole system on one machine, over real HTTP on loopback.
//!
//! An embedded coordinator (temporary redb file, random secret, loopback port) and a prover daemon
//! with `--workers` identities run in this process and talk the coordinator API v1 to each other.
//! The coordinator turns random transfers into chained chunk tasks and, once the chunks are
//! verified, a batch task aggregating them, then a bundle task aggregating the batch; the workers
//! pull, prove and submit; the coordinator verifies every proof before accepting it. When anvil and
//! solc are installed (`scripts/ensure-l1`), a local anvil gets the bundle circuit's Solidity
//! verifier and the rollup contract, and the coordinator's settlement finalises the bundle there.
//! The demo prints each state change, then a summary.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use coordinator::l1::anvil::{Anvil, DEV_CHAIN_ID, DEV_KEY};
use coordinator::l1::chain::L1;
use coordinator::l1::contracts::{self, RootLayout};
use coordinator::l1::solc::Solc;
use coordinator::settle::{SettleState, SettlementConfig};
use coordinator::{Coordinator, CoordinatorConfig, StatusReport, TaskState};
use prover::config::NodeConfig;
use prover::daemon::{self, TaskProver};
use prover::wire::{BatchConfig, BundleConfig, ChunkConfig, CircuitSpec};
use prover::{CoreConfig, ProvingCore};
use tokio_util::sync::CancellationToken;

/// What the demo runs.
pub struct DemoPlan {
    pub core: CoreConfig,
    pub chunk: ChunkConfig,
    pub chunks: usize,
    pub txs: usize,
    /// log2 rows of the batch circuit; `None` proves the chunks only.
    pub batch_k: Option<u32>,
    /// log2 rows of the bundle circuit (one batch per bundle); `None` stops at the batch.
    pub bundle_k: Option<u32>,
    pub workers: usize,
    pub seed: u64,
    /// Fixed rng seed of every proof (`None`: fresh OS randomness).
    pub proof_seed: Option<u64>,
    pub timeout: Duration,
    /// Where the verified proofs are written.
    pub work_dir: PathBuf,
}

pub fn run(plan: DemoPlan) -> Result<()> {
    if plan.chunks == 0 || plan.txs == 0 {
        bail!("--chunks and --txs must be at least 1");
    }
    if plan.txs > plan.chunk.max_txs {
        bail!(
            "--txs {} exceeds --max-txs {}",
            plan.txs,
            plan.chunk.max_txs
        );
    }
    if plan.workers == 0 {
        bail!("--workers must be at least 1");
    }
    let started = Instant::now();
    let mut ks = vec![plan.chunk.k];
    ks.extend(plan.batch_k);
    ks.extend(plan.batch_k.and(plan.bundle_k));
    ks.sort_unstable();
    ks.dedup();
    for k in ks {
        let path = params::ensure_dev(&plan.core.params_dir, k, true)
            .with_context(|| format!("development parameters for k={k}"))?;
        println!("params k={k}: {}", path.display());
    }
    let core = Arc::new(ProvingCore::new(plan.core.clone()));
    // Keys first, timed on their own: generated once per circuit configuration, then cached on
    // disk. The coordinator (vk digests) and the workers (login vks, proving) reuse them.
    let t = Instant::now();
    core.chunk_keys(plan.chunk)?;
    println!(
        "chunk keys ready in {:.1} s (cache: {})",
        t.elapsed().as_secs_f64(),
        plan.core.keys_dir.display()
    );
    let batch = plan.batch_k.map(|k| BatchConfig {
        k,
        num_chunks: plan.chunks,
        chunk: plan.chunk,
    });
    if let Some(batch) = batch {
        let t = Instant::now();
        core.batch_keys(batch)?;
        println!("batch keys ready in {:.1} s", t.elapsed().as_secs_f64());
    }
    let bundle = batch.zip(plan.bundle_k).map(|(batch, k)| BundleConfig {
        k,
        num_batches: 1,
        batch,
    });
    if let Some(bundle) = bundle {
        let t = Instant::now();
        core.bundle_keys(bundle)?;
        println!("bundle keys ready in {:.1} s", t.elapsed().as_secs_f64());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let summary = runtime.block_on(run_system(&plan, core, batch, bundle))?;
    print_summary(&plan, &summary, started.elapsed());
    if summary.all_verified {
        Ok(())
    } else {
        bail!("not every task was verified (see the table above)")
    }
}

struct Outcome {
    report: StatusReport,
    all_verified: bool,
    backend: String,
    coordinator_url: String,
    proofs_written: usize,
    /// What became of the settlement on L1 (`None`: off).
    settled: Option<String>,
}

async fn run_system(
    plan: &DemoPlan,
    core: Arc<ProvingCore>,
    batch: Option<BatchConfig>,
    bundle: Option<BundleConfig>,
) -> Result<Outcome> {
    let tmp = tempfile::Builder::new()
        .prefix("prover-demo-")
        .tempdir()
        .context("creating the demo's temporary directory")?;
    let mut coord_config = CoordinatorConfig::local(
        tmp.path(),
        &plan.core.params_dir,
        &plan.core.keys_dir,
        plan.chunk,
        batch,
    );
    coord_config.bundle = bundle;
    let local = match bundle {
        Some(b) => {
            let genesis = coordinator::genesis_root(&coord_config)?;
            local_l1(&core, b, genesis).await?
        }
        None => None,
    };
    if let Some(l) = &local {
        let key_file = tmp.path().join("l1.key");
        std::fs::write(&key_file, DEV_KEY)
            .with_context(|| format!("writing {}", key_file.display()))?;
        coord_config.settlement = Some(SettlementConfig {
            rpc_url: l.node.url().to_string(),
            chain_id: DEV_CHAIN_ID,
            key_file,
            contract: l.rollup,
            confirmations: 2,
            resend_after_s: 60,
            max_fee_gwei: 500,
            poll_ms: 500,
        });
    }
    let coordinator = Coordinator::start(coord_config, core.clone())
        .await
        .context("starting the embedded coordinator")?;
    let url = coordinator.base_url();
    println!("coordinator: {url} (store {})", tmp.path().display());

    let node = node_config(plan, &url, tmp.path(), batch, bundle)?;
    let shutdown = CancellationToken::new();
    let prover: Arc<dyn TaskProver> = core.clone();
    let daemon = daemon::start(node, prover, shutdown.clone())
        .await
        .context("starting the prover daemon")?;
    println!(
        "prover daemon: {} worker(s), health and metrics on http://{}",
        plan.workers,
        daemon.health_addr()
    );

    let mut ids = vec![];
    for i in 0..plan.chunks {
        let seed = plan.seed.wrapping_add(i as u64);
        ids.extend(coordinator.enqueue_random(plan.txs, seed).await?);
    }
    println!("enqueued {} chunk task(s): {}", ids.len(), ids.join(", "));
    let expected = ids.len() + usize::from(batch.is_some()) + usize::from(bundle.is_some());

    // Follow the coordinator's state until every task is verified, one fails, or time runs out.
    let deadline = Instant::now() + plan.timeout;
    let mut seen: BTreeMap<String, (TaskState, u32)> = BTreeMap::new();
    let report = loop {
        let report = coordinator.status().await?;
        for row in &report.tasks {
            let now = (row.state, row.attempts);
            if seen.get(&row.task_id) != Some(&now) {
                println!(
                    "  [{:>6.1} s] {:<6} {:<24} {:<9} attempt {}{}",
                    plan.timeout.as_secs_f64() - (deadline - Instant::now()).as_secs_f64(),
                    row.task_type,
                    row.task_id,
                    row.state.name(),
                    row.attempts,
                    row.prover_name
                        .as_deref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default()
                );
                seen.insert(row.task_id.clone(), now);
            }
        }
        let verified = report
            .tasks
            .iter()
            .filter(|t| t.state == TaskState::Verified)
            .count();
        let failed = report.tasks.iter().any(|t| t.state == TaskState::Failed);
        if verified >= expected || failed || Instant::now() >= deadline {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut all_verified = report.tasks.len() == expected
        && report.tasks.iter().all(|t| t.state == TaskState::Verified);
    let settled = match (&local, all_verified) {
        (Some(l), true) => {
            let (line, ok) = wait_for_settlement(&coordinator, l, deadline).await?;
            all_verified &= ok;
            Some(line)
        }
        (Some(_), false) => Some("not attempted: not every task was verified".into()),
        (None, _) => None,
    };

    let mut proofs_written = 0;
    std::fs::create_dir_all(&plan.work_dir)
        .with_context(|| format!("creating {}", plan.work_dir.display()))?;
    for row in &report.tasks {
        if let Some(proof) = coordinator.proof(&row.task_id).await? {
            let path = plan.work_dir.join(format!("{}.proof.json", row.task_id));
            let text = serde_json::to_string_pretty(&proof)?;
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            proofs_written += 1;
        }
    }

    let summary = daemon.stop().await.context("stopping the prover daemon")?;
    coordinator.shutdown().await;
    Ok(Outcome {
        report,
        all_verified,
        backend: summary.backend,
        coordinator_url: url,
        proofs_written,
        settled,
    })
}

/// The demo's L1: a local anvil (a block a second, so that confirmations come) with the bundle
/// circuit's Solidity verifier and the rollup contract at the coordinator's genesis root. `None`,
/// saying why, when anvil or solc is not installed.
struct LocalL1 {
    node: Anvil,
    l1: L1,
    rollup: alloy::primitives::Address,
}

async fn local_l1(
    core: &Arc<ProvingCore>,
    bundle: BundleConfig,
    genesis: alloy::primitives::B256,
) -> Result<Option<LocalL1>> {
    let here = std::env::current_dir().context("reading the current directory")?;
    let (anvil, solc) = match (Anvil::locate(&here), Solc::locate(&here)) {
        (Ok(a), Ok(s)) => (a, s),
        (Err(e), _) | (_, Err(e)) => {
            println!("settlement: off ({e})");
            return Ok(None);
        }
    };
    let t = Instant::now();
    let spec = CircuitSpec::Bundle { config: bundle };
    let source = {
        let core = core.clone();
        let spec = spec.clone();
        tokio::task::spawn_blocking(move || core.evm_verifier(&spec))
            .await
            .context("generating the bundle verifier")??
    };
    let built = tokio::task::spawn_blocking(move || contracts::build(&solc, source, None))
        .await
        .context("compiling the contracts")??;
    let node = Anvil::start(&anvil, 0, &["--block-time", "1"])?;
    let signer: alloy::signers::local::PrivateKeySigner =
        DEV_KEY.parse().context("anvil's development key")?;
    let l1 = L1::connect(node.url(), DEV_CHAIN_ID, signer).await?;
    let (verifier, _) = l1.deploy(&built.verifier.bytecode).await?;
    let code = contracts::rollup_deploy_code(
        &built.rollup,
        verifier,
        RootLayout::for_circuit(&spec),
        genesis,
    );
    let (rollup, _) = l1.deploy(&code).await?;
    println!(
        "L1: anvil on {} | bundle verifier {verifier} ({} bytes of runtime code) | rollup {rollup} \
         at the genesis root {genesis} | ready in {:.1} s",
        node.url(),
        built.verifier.deployed_size,
        t.elapsed().as_secs_f64()
    );
    Ok(Some(LocalL1 { node, l1, rollup }))
}

/// Waits until the coordinator's settlement has finalised the bundle (item 0) with its
/// confirmations, and checks the root on chain. Returns the line to print and whether it did.
async fn wait_for_settlement(
    coordinator: &coordinator::RunningCoordinator,
    l: &LocalL1,
    deadline: Instant,
) -> Result<(String, bool)> {
    let started = Instant::now();
    let mut last = None;
    loop {
        let item = coordinator.settlement(0).await?;
        let state = item.as_ref().map(|i| i.state);
        if state != last {
            println!(
                "  L1: bundle settlement {}",
                state
                    .map(|s| format!("{s:?}"))
                    .unwrap_or_else(|| "not enqueued yet".into())
            );
            last = state;
        }
        if let Some(item) = item.filter(|i| i.state == SettleState::Finalized) {
            let root = l.l1.rollup_root(l.rollup).await?;
            let tx = item
                .finalized_by
                .map(|h| h.to_string())
                .unwrap_or_else(|| "another sender's".into());
            let ok = root == item.new_root;
            return Ok((
                format!(
                    "{} finalised on L1 in {:.1} s: rollup root {root} ({}), transaction {tx}{}",
                    item.label,
                    started.elapsed().as_secs_f64(),
                    if ok {
                        "the bundle's new root"
                    } else {
                        "NOT the bundle's new root"
                    },
                    item.mined
                        .map(|m| format!(", block {}", m.block))
                        .unwrap_or_default()
                ),
                ok,
            ));
        }
        if Instant::now() >= deadline {
            return Ok((
                format!("NOT finalised before the timeout (state {last:?})"),
                false,
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The daemon's configuration for the demo: defaults, pointed at the embedded coordinator, with
/// its stack and identities in the temporary directory.
fn node_config(
    plan: &DemoPlan,
    url: &str,
    dir: &std::path::Path,
    batch: Option<BatchConfig>,
    bundle: Option<BundleConfig>,
) -> Result<NodeConfig> {
    let text = serde_json::json!({
        "prover": {
            "params_dir": plan.core.params_dir,
            "keys_dir": plan.core.keys_dir,
        }
    })
    .to_string();
    let mut c = NodeConfig::from_json_str(&text, std::path::Path::new("<demo>"), [])?;
    c.node.name = "demo".into();
    c.node.n_workers = plan.workers;
    c.node.identity_dir = dir.join("identity");
    c.node.db_path = dir.join("prover-stack.redb");
    c.node.task_types = match (batch, bundle) {
        (Some(_), Some(_)) => vec![1, 2, 3],
        (Some(_), None) => vec![1, 2],
        _ => vec![1],
    };
    c.node.engine = plan.core.engine;
    c.node.backend = plan.core.backend;
    c.node.seed = plan.proof_seed;
    c.circuits.chunk_k = plan.chunk.k;
    c.circuits.chunk_tree_depth = plan.chunk.tree_depth;
    c.circuits.chunk_max_txs = plan.chunk.max_txs;
    if let Some(b) = batch {
        c.circuits.batch_k = b.k;
        c.circuits.batch_num_chunks = b.num_chunks;
    }
    if let Some(b) = bundle {
        c.circuits.bundle_k = b.k;
        c.circuits.bundle_num_batches = b.num_batches;
    }
    c.coordinator.base_url = url.to_string();
    c.coordinator.poll_interval_ms = 200;
    c.coordinator.poll_jitter_ms = 100;
    c.metrics.listen = "127.0.0.1:0".into();
    c.validate()?;
    Ok(c)
}

fn print_summary(plan: &DemoPlan, o: &Outcome, elapsed: Duration) {
    println!();
    println!(
        "{:<24} {:<6} {:<9} {:>8} {:>10} {:>10}  {:<8} result",
        "task", "type", "state", "attempts", "prove ms", "verify ms", "prover"
    );
    for t in &o.report.tasks {
        let ms = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        println!(
            "{:<24} {:<6} {:<9} {:>8} {:>10} {:>10}  {:<8} {}",
            t.task_id,
            t.task_type,
            t.state.name(),
            t.attempts,
            ms(t.prove_ms),
            ms(t.verify_ms),
            t.prover_name.as_deref().unwrap_or("-"),
            t.result.as_deref().unwrap_or("-")
        );
    }
    println!();
    println!(
        "coordinator {} | {} worker(s) | engine: {} | backend: {} | chunk k={} depth={} max_txs={}{}",
        o.coordinator_url,
        plan.workers,
        plan.core.engine,
        o.backend,
        plan.chunk.k,
        plan.chunk.tree_depth,
        plan.chunk.max_txs,
        plan.batch_k.map(|k| format!(" | batch k={k}")).unwrap_or_default()
            + &plan
                .batch_k
                .and(plan.bundle_k)
                .map(|k| format!(" | bundle k={k}"))
                .unwrap_or_default()
    );
    if let Some(s) = &o.settled {
        println!("settlement: {s}");
    }
    println!(
        "{} proof(s) written to {} | total {:.1} s (including parameters and keys) | {}",
        o.proofs_written,
        plan.work_dir.display(),
        elapsed.as_secs_f64(),
        if o.all_verified {
            "every task verified"
        } else {
            "NOT every task verified"
        }
    );
}
