//! Shared setup of the prover's integration tests: a temporary params/keys directory with development
//! parameters, one proving core per test binary, and task builders.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use prover::rollup::RollupState;
use prover::wire::{ChunkConfig, ChunkTaskData, Task, TaskType, Transfer, HARD_FORK_NAME};
use prover::{CoreConfig, ProvingCore};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Small chunk circuit used by most tests (k ≤ 14 keeps CI fast).
pub const SMALL: ChunkConfig = ChunkConfig {
    k: 13,
    tree_depth: 4,
    max_txs: 2,
};

pub struct Env {
    pub dir: ProcessDir,
    pub core: ProvingCore,
}

impl Env {
    pub fn params_dir(&self) -> PathBuf {
        self.dir.path().join("params")
    }
}

/// This test process's directory under the target's tmp directory. The environment lives in a
/// static, which is never dropped, so it cannot remove its directory itself (a `TempDir` there
/// left 1.5 GB of batch keys in /tmp per run): directories of processes that are gone are removed
/// when the next one starts.
pub struct ProcessDir(PathBuf);

impl ProcessDir {
    fn new() -> Self {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        if let Ok(entries) = std::fs::read_dir(&base) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(pid) = name
                    .strip_prefix("prover-env-")
                    .and_then(|p| p.parse::<u32>().ok())
                else {
                    continue;
                };
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = base.join(format!("prover-env-{}", std::process::id()));
        // A directory of a process that had this pid before is stale.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test directory");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

/// One environment per test binary, with dev params for every k in `ks` (made on the first call
/// that asks for them: the modules of one binary share the environment and ask for different ks).
pub fn env(ks: &[u32]) -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    static PARAMS: Mutex<()> = Mutex::new(());
    let env = ENV.get_or_init(|| {
        let dir = ProcessDir::new();
        let core = ProvingCore::new(CoreConfig::new(
            dir.path().join("params"),
            dir.path().join("keys"),
        ));
        Env { dir, core }
    });
    // One writer at a time: two tests must not generate the same file at once.
    let _writing = PARAMS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for &k in ks {
        params::ensure_dev(&env.params_dir(), k, false).expect("dev params");
    }
    env
}

pub fn rng() -> ChaCha20Rng {
    ChaCha20Rng::from_entropy()
}

/// A genesis state of 4 accounts with 1000 each.
pub fn genesis(config: ChunkConfig) -> RollupState {
    RollupState::genesis(config.tree_depth, 4, 1000).expect("genesis")
}

pub fn transfer(from: u64, to: u64, amount: u64, nonce: u64) -> Transfer {
    Transfer {
        from,
        to,
        amount,
        nonce,
    }
}

pub fn chunk_task(id: &str, data: &ChunkTaskData) -> Task {
    Task {
        uuid: format!("u-{id}"),
        task_id: id.to_string(),
        task_type: TaskType::Chunk.as_u8(),
        task_data: serde_json::to_string(data).expect("serialize"),
        hard_fork_name: HARD_FORK_NAME.to_string(),
    }
}
