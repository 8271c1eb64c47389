//! A load test of a running coordinator over real HTTP with real signed logins: `get_task` and
//! `submit_proof` latency (p50, p99) and throughput with a given history of finished tasks and
//! a given number of provers polling, on redb or on PostgreSQL.
//!
//! ```text
//! cargo run --release --workspace --example load -- \
//!     --history 100000 --provers 1000 --seconds 20 [--postgres postgresql://…] [--replicas 2]
//! ```
//!
//! - The history (verified chunk tasks, delivered by the provers' own keys, so every key is
//!   proven) and a pool of pending tasks are written through the store's own transactions
//!   before the coordinator starts.
//! - Each prover logs in (challenge, secp256k1 signature, token) and then, until the time is up,
//!   asks for a task and reports it failed (`submit_proof` with status 1: the submission path
//!   without a proof verification, which is CPU time, not the coordinator's cost per request).
//!   After `session_attempts` failures (the coordinator's default unless given) a task is
//!   failed for good; the pool of pending tasks is large enough for the run.
//! - The provers share one HTTP client with a connection pool: the point is the coordinator's
//!   cost per request, and 1,000 sockets would measure the kernel.
//! - With `--postgres URL` (a server, as `scripts/pg-cluster url` prints it) the run creates a
//!   fresh database there, vacuums and checkpoints it after the seeding, and drops it at the
//!   end; redb in a temporary directory without.
//! - The coordinators run in this process on a tokio runtime of their own (two worker threads),
//!   the provers on another, all on the same cores: the figures are the cost per request on one
//!   machine, not a cluster's capacity.
//! - With `--replicas N` (PostgreSQL only), N coordinators share the database and the provers
//!   are spread over them.
//! - With `--replica-cpu C` (Linux, root, the cgroup v1 `cpu` controller) each replica runs on a
//!   runtime of its own whose threads may use C cores' time (a CFS quota), as if each had a
//!   machine of that size: on a small machine this is how to see whether a second replica adds
//!   throughput when the database is not the bottleneck. Threads the replica starts join its
//!   group too (the PostgreSQL client's runtime thread, the blocking pool). The run then prints
//!   the CPU time used by each replica, by PostgreSQL's processes and by the rest of this
//!   process (the provers).
//! - Latency is printed twice: as the provers saw it (from sending a request to reading its
//!   reply, which includes the wait of the provers' own tasks for a core), and as the
//!   coordinators measured it (`coordinator_request_seconds` from their `/metrics`, summed over
//!   the replicas, quantiles interpolated within a bucket as Prometheus does).

mod cgroup;
#[path = "../../tests/service/common/login.rs"]
mod login;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use coordinator::store::{AssignOutcome, Policy, ProverIdentity, Store};
use coordinator::{scheduler, Coordinator, CoordinatorConfig};
use k256::ecdsa::SigningKey;
use prover_core::login::public_key_hex;
use prover_core::rollup::RollupState;
use prover_core::wire::{
    errcode, Base64Bytes, ChunkConfig, CircuitSpec, Envelope, GetTaskRequest, ProofMeta,
    ProofPayload, SubmitProofRequest, Task, Transfer,
};
use prover_core::{CoreConfig, ProvingCore};

const CONFIG: ChunkConfig = ChunkConfig {
    k: 13,
    tree_depth: 4,
    max_txs: 2,
};

#[derive(Parser)]
struct Args {
    /// Verified tasks in the store before the run.
    #[arg(long, default_value_t = 10_000)]
    history: usize,
    /// Provers polling at once.
    #[arg(long, default_value_t = 100)]
    provers: usize,
    /// Length of the measured run.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Pause of each prover after each get_task/submit round (0: back to back, a closed loop
    /// whose latency is mostly queueing; real nodes poll every few seconds).
    #[arg(long, default_value_t = 0)]
    pause_ms: u64,
    /// Pending tasks at the start (default: enough for the run).
    #[arg(long)]
    pending: Option<usize>,
    /// PostgreSQL server URL: the run makes a fresh database there. redb in a temp dir without.
    #[arg(long)]
    postgres: Option<String>,
    /// Attempts per task before it fails (default: the coordinator's). A task's record keeps
    /// the keys that failed it, at most this many proven ones: a cap of 1,000,000 with every
    /// request failing its task makes each pending task at the front of the queue remember
    /// every prover (1,000 keys, ~70 KB of JSON per task read), a state the default never
    /// reaches.
    #[arg(long)]
    session_attempts: Option<u32>,
    /// Coordinator processes sharing the database (PostgreSQL only).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Directory for parameters and keys (dev parameters are made there when missing).
    #[arg(long, default_value = "target/load-env")]
    env_dir: std::path::PathBuf,
    /// Unauthenticated clients at 127.0.0.2 logging in back to back during the run (challenge,
    /// signature, login, with one key), beside the provers at 127.0.0.1.
    #[arg(long, default_value_t = 0)]
    login_flood: usize,
    /// `http.logins_per_minute_per_client` of the coordinators (default: 0, no limit, since all
    /// the provers log in from 127.0.0.1 at the start).
    #[arg(long, default_value_t = 0)]
    login_limit: u32,
    /// New chunk tasks a second during the run, each enqueued through `/admin/v1/enqueue` (as a
    /// sequencer would), the coordinators taken in turn. With `--pending 0` and a `--prove-ms`,
    /// most requests are idle polls, as on a network with more provers than work.
    #[arg(long, default_value_t = 0.0)]
    arrivals: f64,
    /// How long a prover that got a task works on it before reporting it failed (it asks for
    /// nothing meanwhile, as a node proving does).
    #[arg(long, default_value_t = 0)]
    prove_ms: u64,
    /// CPU time each replica may use, in cores (e.g. 0.3), through a cgroup quota on its own
    /// runtime's threads; without it the replicas share one runtime and the machine.
    #[arg(long)]
    replica_cpu: Option<f64>,
    /// `database_pool_size` of each replica (default: the coordinator's).
    #[arg(long)]
    pool: Option<usize>,
}

fn key(i: usize) -> SigningKey {
    let mut secret = [7u8; 32];
    secret[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
    SigningKey::from_slice(&secret).unwrap_or_else(|e| panic!("key {i}: {e}"))
}

fn fake_proof(task_id: &str) -> ProofPayload {
    ProofPayload {
        version: 1,
        task_id: task_id.to_string(),
        spec: CircuitSpec::Chunk { config: CONFIG },
        vk_digest: "history".into(),
        instances: vec![],
        proof: Base64Bytes(vec![0; 32]),
        meta: ProofMeta {
            engine: "history".into(),
            backend: "none".into(),
            prove_ms: 1,
            fallback: None,
        },
    }
}

/// Writes `history` verified tasks (by the provers' keys) and `pending` pending ones.
fn seed(
    store: &Store,
    history: usize,
    pending: usize,
    keys: &[String],
) -> Result<(), Box<dyn std::error::Error>> {
    let policy = Policy {
        chunk_timeout_ms: 3_600_000,
        batch_timeout_ms: 3_600_000,
        bundle_timeout_ms: 3_600_000,
        session_attempts: 5,
        max_invalid_proofs: 1_000_000,
        prover_active_ms: 60_000,
        batch: None,
        bundle: None,
        settle: false,
    };
    let mut state = RollupState::genesis(CONFIG.tree_depth, 8, 1_000_000_000)?;
    let total = history + pending;
    let started = Instant::now();
    let mut done = 0;
    while done < total {
        // History in small transactions: inside one transaction every task it assigns stays in
        // PostgreSQL's pending index (its old row version cannot be pruned before the commit), so
        // each assign would walk all those before it.
        let n = if done < history {
            (history - done).min(200)
        } else {
            (total - done).min(2000)
        };
        let mut chunks = Vec::with_capacity(n);
        for i in done..done + n {
            let t = Transfer {
                from: 0,
                to: 1,
                amount: 1,
                nonce: i as u64,
            };
            chunks.push(state.apply_chunk(CONFIG, &[t])?);
        }
        let accounts: Vec<_> = state.accounts().map(|(i, a)| (*i, *a)).collect();
        let finish = history.saturating_sub(done).min(n);
        store.transaction(|tx| {
            scheduler::enqueue_chunks(tx, &chunks, &accounts, None, 0)?
                .map_err(|e| coordinator::CoordinatorError::store("seed", e))?;
            for j in 0..finish {
                let who = ProverIdentity {
                    public_key: keys[(done + j) % keys.len()].clone(),
                    prover_name: "history".into(),
                    prover_types: vec![1],
                };
                let (outcome, _) = scheduler::assign(tx, &who, &[1], &policy, 1)?;
                let AssignOutcome::Task { task, .. } = outcome else {
                    return Err(coordinator::CoordinatorError::store(
                        "seed",
                        format!("no task: {outcome:?}"),
                    ));
                };
                scheduler::record_verified(
                    tx,
                    &who.public_key,
                    &task.uuid,
                    &task.task_id,
                    1,
                    &fake_proof(&task.task_id),
                    1,
                    &policy,
                    1,
                )?
                .map_err(|e| coordinator::CoordinatorError::store("seed", e))?;
            }
            Ok(())
        })?;
        done += n;
        eprint!(
            "\rseeded {done}/{total} tasks ({:.0} s)",
            started.elapsed().as_secs_f64()
        );
    }
    eprintln!();
    Ok(())
}

struct Prover {
    http: reqwest::Client,
    base: String,
    key: SigningKey,
    name: String,
    vk: String,
    token: String,
}

impl Prover {
    async fn post<T: serde::Serialize>(
        &self,
        path: &str,
        bearer: &str,
        body: &T,
    ) -> Result<Envelope<serde_json::Value>, reqwest::Error> {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(bearer)
            .json(body)
            .send()
            .await?
            .json()
            .await
    }

    async fn login(&mut self) -> Result<(), String> {
        self.token =
            login::signed_login(&self.http, &self.base, &self.key, &self.name, &self.vk).await?;
        Ok(())
    }
}

#[derive(Default)]
struct Samples {
    get_task: Vec<f64>,
    /// The get_tasks that handed out a task (also in `get_task`).
    handed_out: Vec<f64>,
    submit: Vec<f64>,
    no_task: u64,
    errors: u64,
}

/// Cumulative counts of `coordinator_request_seconds` for `endpoint` in a `/metrics` text, by
/// bucket (upper bound in seconds; the last is +Inf), in the text's order.
fn buckets(text: &str, endpoint: &str) -> Vec<(f64, u64)> {
    let label = format!("endpoint=\"{endpoint}\"");
    text.lines()
        .filter(|l| l.starts_with("coordinator_request_seconds_bucket{") && l.contains(&label))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

/// The `q` quantile in ms of cumulative `buckets`, interpolated linearly within its bucket (as
/// Prometheus' `histogram_quantile`).
fn bucket_quantile(buckets: &[(f64, u64)], q: f64) -> f64 {
    let Some(&(_, total)) = buckets.last() else {
        return f64::NAN;
    };
    let rank = q * total as f64;
    let (mut lower, mut below) = (0.0, 0);
    for &(upper, n) in buckets {
        if n as f64 >= rank && n > below {
            if upper.is_infinite() {
                return lower * 1e3;
            }
            return (lower + (upper - lower) * (rank - below as f64) / (n - below) as f64) * 1e3;
        }
        (lower, below) = (upper, n);
    }
    f64::NAN
}

/// The coordinators' own latency of `endpoint` (`/metrics`, summed over `texts`): p50 and p99 in
/// ms.
fn served(texts: &[String], endpoint: &str) -> (f64, f64) {
    let mut sum: Vec<(f64, u64)> = Vec::new();
    for t in texts {
        let b = buckets(t, endpoint);
        if sum.is_empty() {
            sum = b;
        } else {
            for (s, (_, n)) in sum.iter_mut().zip(b) {
                s.1 += n;
            }
        }
    }
    (bucket_quantile(&sum, 0.5), bucket_quantile(&sum, 0.99))
}

fn pct(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// The coordinators' runtimes. Dropped on an error return, in this async `main`, where a
/// runtime's own drop (which waits for its threads) would panic and hide the error: there they
/// are shut down without waiting.
struct Runtimes(Vec<tokio::runtime::Runtime>);

impl Drop for Runtimes {
    fn drop(&mut self) {
        for rt in self.0.drain(..) {
            rt.shutdown_background();
        }
    }
}

/// CPU seconds used so far: per replica group (with its throttled periods), by PostgreSQL's
/// processes, by this whole process.
struct CpuUse {
    replicas: Vec<(f64, u64)>,
    postgres: f64,
    process: f64,
}

fn cpu_use(groups: &[cgroup::CpuGroup]) -> Result<CpuUse, String> {
    let mut replicas = Vec::new();
    for g in groups {
        replicas.push((g.cpu_seconds()?, g.throttled_periods()?));
    }
    Ok(CpuUse {
        replicas,
        postgres: cgroup::cpu_seconds_of("postgres"),
        process: cgroup::own_cpu_seconds(),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.replicas > 1 && args.postgres.is_none() {
        return Err("--replicas needs --postgres (redb is one process's file)".into());
    }
    let failed_groups = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let params_dir = args.env_dir.join("params");
    params::ensure_dev(&params_dir, CONFIG.k, false)?;
    let core = Arc::new(ProvingCore::new(CoreConfig::new(
        params_dir.clone(),
        args.env_dir.join("keys"),
    )));
    let dir = tempfile::tempdir()?;
    let mut config = CoordinatorConfig::local(
        dir.path(),
        params_dir,
        args.env_dir.join("keys"),
        CONFIG,
        None,
    );
    config.database_url = match &args.postgres {
        Some(server) => Some(coordinator::store::pg::create_database(server, "load")?),
        None => None,
    };
    config.http.max_connections = 4096;
    // Every simulated prover connects from 127.0.0.1, as if behind one proxy.
    config.http.max_connections_per_client = 0;
    config.logins_per_minute_per_client = args.login_limit;
    if let Some(n) = args.session_attempts {
        config.session_attempts = n;
    }
    if let Some(n) = args.pool {
        config.database_pool_size = n;
    }
    let keys: Vec<SigningKey> = (0..args.provers).map(key).collect();
    let public: Vec<String> = keys.iter().map(public_key_hex).collect();
    // Enough pending tasks that every request of the run finds one (a generous guess at the
    // throughput), unless given.
    let pending = args
        .pending
        .unwrap_or((args.seconds as usize * 2000).max(args.provers * 4));
    {
        let seed_config = config.clone();
        let public = public.clone();
        let (history, pending) = (args.history, pending);
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            let store = Store::from_config(&seed_config).map_err(|e| e.to_string())?;
            seed(&store, history, pending, &public).map_err(|e| e.to_string())
        })
        .await??;
    }
    if let Some(url) = &config.database_url {
        // The seeding vacuumed, analysed and checkpointed now, not by autovacuum and a
        // checkpoint in the measured run (a history accrues over months, not in a minute).
        let t = Instant::now();
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        let conn = tokio::spawn(conn);
        client.batch_execute("VACUUM ANALYZE").await?;
        client.batch_execute("CHECKPOINT").await?;
        drop(client);
        conn.await??;
        eprintln!(
            "vacuum, analyse and checkpoint after the seeding: {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    // The coordinators run on a runtime of their own, as they would in their own process: on
    // the provers' runtime a request would also wait behind the provers' own tasks. With a CPU
    // allowance, each replica on its own runtime, its threads in its own group.
    let mut groups = Vec::new();
    let mut runtimes = Runtimes(Vec::new());
    let each = args.replica_cpu.is_some();
    for i in 0..if each { args.replicas } else { 1 } {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder
            .worker_threads(2)
            .thread_name(format!("coordinator-{i}"))
            .enable_all();
        if let Some(cores) = args.replica_cpu {
            let group =
                cgroup::CpuGroup::new(&format!("pnode-load-{}-{i}", std::process::id()), cores)?;
            let (tasks, failed) = (group.tasks_file(), failed_groups.clone());
            builder.on_thread_start(move || {
                if let Err(e) = cgroup::join(&tasks) {
                    eprintln!("{e}");
                    failed.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            });
            groups.push(group);
        }
        runtimes.0.push(builder.build()?);
    }
    let mut running = Vec::new();
    for i in 0..args.replicas {
        let (config, core) = (config.clone(), core.clone());
        running.push(
            runtimes.0[i % runtimes.0.len()]
                .spawn(async move { Coordinator::start(config, core).await })
                .await??,
        );
    }
    if failed_groups.load(std::sync::atomic::Ordering::Relaxed) {
        return Err("a replica's thread could not join its CPU group (above)".into());
    }
    let vk = running[0].accepted_vks().chunk;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .build()?;
    let mut provers = Vec::new();
    let login_started = Instant::now();
    for (i, key) in keys.into_iter().enumerate() {
        let mut p = Prover {
            http: http.clone(),
            base: running[i % running.len()].base_url(),
            key,
            name: format!("load-{i}"),
            vk: vk.clone(),
            token: String::new(),
        };
        p.login().await.map_err(|e| format!("login {i}: {e}"))?;
        provers.push(p);
    }
    eprintln!(
        "{} provers logged in ({:.1} s)",
        provers.len(),
        login_started.elapsed().as_secs_f64()
    );
    let cpu_before = cpu_use(&groups)?;
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let pause = Duration::from_millis(args.pause_ms);
    let prove = Duration::from_millis(args.prove_ms);
    let mut handles = Vec::new();
    for (i, p) in provers.into_iter().enumerate() {
        // Spread the first requests over one pause, as independent nodes would be.
        let offset = pause.mul_f64(i as f64 / args.provers.max(1) as f64);
        handles.push(tokio::spawn(async move {
            let mut s = Samples::default();
            let get = GetTaskRequest {
                task_types: vec![1],
                prover_height: None,
            };
            tokio::time::sleep(offset).await;
            while Instant::now() < deadline {
                if !pause.is_zero() && (s.get_task.len() as u64 + s.errors) > 0 {
                    tokio::time::sleep(pause).await;
                }
                let t0 = Instant::now();
                let env = match p.post("/coordinator/v1/get_task", &p.token, &get).await {
                    Ok(e) => e,
                    Err(_) => {
                        s.errors += 1;
                        continue;
                    }
                };
                let took = t0.elapsed().as_secs_f64() * 1e3;
                s.get_task.push(took);
                if env.errcode == errcode::NO_TASK {
                    s.no_task += 1;
                    continue;
                }
                let Some(task) = env
                    .data
                    .and_then(|d| serde_json::from_value::<Task>(d).ok())
                else {
                    s.errors += 1;
                    continue;
                };
                s.handed_out.push(took);
                let req = SubmitProofRequest {
                    uuid: task.uuid.clone(),
                    task_id: task.task_id.clone(),
                    task_type: task.task_type,
                    status: 1,
                    proof: String::new(),
                    failure_type: 2,
                    failure_msg: "load test".into(),
                };
                if !prove.is_zero() {
                    // Work on it; a task still in work at the deadline is left unreported.
                    if Instant::now() + prove >= deadline {
                        break;
                    }
                    tokio::time::sleep(prove).await;
                }
                let t1 = Instant::now();
                match p.post("/coordinator/v1/submit_proof", &p.token, &req).await {
                    Ok(e) if e.errcode == 0 => s.submit.push(t1.elapsed().as_secs_f64() * 1e3),
                    _ => s.errors += 1,
                }
            }
            s
        }));
    }
    // The flood: logins from another address until the deadline; accepted and refused counted.
    let mut flood = Vec::new();
    if args.login_flood > 0 {
        let client = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
            .build()?;
        for i in 0..args.login_flood {
            let (client, base, vk) = (
                client.clone(),
                running[i % running.len()].base_url(),
                vk.clone(),
            );
            flood.push(tokio::spawn(async move {
                let k = key(1_000_000 + i);
                let (mut ok, mut refused) = (0u64, 0u64);
                while Instant::now() < deadline {
                    match login::signed_login(&client, &base, &k, "flood", &vk).await {
                        Ok(_) => ok += 1,
                        Err(_) => refused += 1,
                    }
                }
                (ok, refused)
            }));
        }
    }
    // The arrivals: one chunk task (`max_txs` random transfers) at each tick until the deadline.
    let feeder = (args.arrivals > 0.0).then(|| {
        let (http, token) = (http.clone(), config.admin_token.clone());
        let bases: Vec<String> = running.iter().map(|c| c.base_url()).collect();
        let every = Duration::from_secs_f64(1.0 / args.arrivals);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let (mut latency, mut errors) = (Vec::new(), 0u64);
            let body = serde_json::json!({ "random": CONFIG.max_txs });
            let mut turn = bases.iter().cycle();
            while Instant::now() < deadline {
                tick.tick().await;
                let Some(base) = turn.next() else { break };
                let t0 = Instant::now();
                let r = http
                    .post(format!("{base}/admin/v1/enqueue"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await;
                match r {
                    Ok(r) => match r.json::<Envelope<serde_json::Value>>().await {
                        Ok(e) if e.errcode == 0 => latency.push(t0.elapsed().as_secs_f64() * 1e3),
                        _ => errors += 1,
                    },
                    Err(_) => errors += 1,
                }
            }
            (latency, errors)
        })
    });
    let mut all = Samples::default();
    for h in handles {
        let s = h.await?;
        all.get_task.extend(s.get_task);
        all.handed_out.extend(s.handed_out);
        all.submit.extend(s.submit);
        all.no_task += s.no_task;
        all.errors += s.errors;
    }
    let took = started.elapsed().as_secs_f64();
    let cpu_after = cpu_use(&groups)?;
    if let Some(feeder) = feeder {
        let (mut latency, errors) = feeder.await?;
        println!(
            "arrivals: {} chunk tasks enqueued ({:.1}/s) p50 {:.2} ms p99 {:.2} ms; errors {errors}",
            latency.len(),
            latency.len() as f64 / took,
            pct(&mut latency, 0.5),
            pct(&mut latency, 0.99),
        );
    }
    let (mut flood_ok, mut flood_refused) = (0, 0);
    for h in flood {
        let (ok, refused) = h.await?;
        flood_ok += ok;
        flood_refused += refused;
    }
    if args.login_flood > 0 {
        println!(
            "login flood from 127.0.0.2 ({} clients): {flood_ok} logins accepted ({:.0}/s), {flood_refused} refused ({:.0}/s)",
            args.login_flood,
            flood_ok as f64 / took,
            flood_refused as f64 / took
        );
    }
    let mut texts = Vec::new();
    for c in &running {
        texts.push(
            http.get(format!("{}/metrics", c.base_url()))
                .send()
                .await?
                .text()
                .await?,
        );
    }
    let get_served = served(&texts, "/coordinator/v1/get_task");
    let submit_served = served(&texts, "/coordinator/v1/submit_proof");
    let backend = if args.postgres.is_some() {
        "postgres"
    } else {
        "redb"
    };
    println!(
        "{backend}, {} replica(s), {} finished tasks, {} provers (pause {} ms), {:.1} s: get_task {} ({:.0}/s) p50 {:.2} ms p99 {:.2} ms; submit {} ({:.0}/s) p50 {:.2} ms p99 {:.2} ms; no task {}; errors {}; in the coordinator: get_task p50 {:.2} ms p99 {:.2} ms, submit p50 {:.2} ms p99 {:.2} ms",
        args.replicas,
        args.history,
        args.provers,
        args.pause_ms,
        took,
        all.get_task.len(),
        all.get_task.len() as f64 / took,
        pct(&mut all.get_task, 0.5),
        pct(&mut all.get_task, 0.99),
        all.submit.len(),
        all.submit.len() as f64 / took,
        pct(&mut all.submit, 0.5),
        pct(&mut all.submit, 0.99),
        all.no_task,
        all.errors,
        get_served.0,
        get_served.1,
        submit_served.0,
        submit_served.1,
    );
    println!(
        "get_task that handed out a task: {} p50 {:.2} ms p99 {:.2} ms",
        all.handed_out.len(),
        pct(&mut all.handed_out, 0.5),
        pct(&mut all.handed_out, 0.99),
    );
    if each {
        let cores = |a: f64, b: f64| (b - a) / took;
        let replicas: Vec<String> = cpu_before
            .replicas
            .iter()
            .zip(&cpu_after.replicas)
            .zip(&running)
            .map(|((&(s0, t0), &(s1, t1)), c)| {
                format!(
                    "{} {:.2} cores ({} periods throttled)",
                    c.base_url(),
                    cores(s0, s1),
                    t1 - t0
                )
            })
            .collect();
        let in_replicas: f64 = cpu_after.replicas.iter().map(|r| r.0).sum::<f64>()
            - cpu_before.replicas.iter().map(|r| r.0).sum::<f64>();
        println!(
            "CPU over the run: replicas {}; postgres processes {:.2} cores; the rest of this process (provers) {:.2} cores",
            replicas.join(", "),
            cores(cpu_before.postgres, cpu_after.postgres),
            (cpu_after.process - cpu_before.process - in_replicas) / took,
        );
    }
    for (i, c) in running.into_iter().enumerate() {
        runtimes.0[i % runtimes.0.len()].spawn(c.shutdown()).await?;
    }
    // Their threads gone before the groups are removed (a group's drop moves any left to the
    // root); waiting for them is blocking, so not on this runtime's thread.
    let rts = std::mem::take(&mut runtimes.0);
    tokio::task::spawn_blocking(move || {
        for rt in rts {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    })
    .await?;
    drop(groups);
    if let (Some(server), Some(url)) = (&args.postgres, &config.database_url) {
        // The run's database, from the server's: they are hundreds of MB at 100,000 tasks.
        let name = url.rsplit('/').next().unwrap_or_default();
        let (client, conn) = tokio_postgres::connect(server, tokio_postgres::NoTls).await?;
        let conn = tokio::spawn(conn);
        client
            .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .await?;
        drop(client);
        conn.await??;
    }
    Ok(())
}
