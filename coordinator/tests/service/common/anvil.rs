//! A real local Ethereum node for the settlement tests: the coordinator's dev node
//! ([`coordinator::l1::anvil`], anvil from `scripts/ensure-l1`) on a loopback port the OS picks,
//! killed when dropped.

use std::path::PathBuf;
use std::time::{Duration, Instant};

#[allow(unused_imports)] // not every test binary uses every dev account
pub use coordinator::l1::anvil::{DEV_CHAIN_ID as CHAIN_ID, DEV_KEY, DEV_KEY_2};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Solidity compiler of the tests.
pub fn solc() -> coordinator::l1::solc::Solc {
    coordinator::l1::solc::Solc::locate(&repo()).unwrap_or_else(|e| panic!("{e}"))
}

pub struct Anvil {
    node: coordinator::l1::anvil::Anvil,
    pub url: String,
    pub port: u16,
}

impl Anvil {
    /// anvil on a free loopback port with `args` added (automining by default).
    pub fn start(args: &[&str]) -> Anvil {
        Self::start_on(0, args)
    }

    /// anvil on `port` (0: one the OS picks).
    pub fn start_on(port: u16, args: &[&str]) -> Anvil {
        use coordinator::l1::anvil::Anvil as Node;
        let path = Node::locate(&repo()).unwrap_or_else(|e| panic!("{e}"));
        let node = Node::start(&path, port, args).unwrap_or_else(|e| panic!("{e}"));
        Anvil {
            url: node.url().to_string(),
            port: node.port(),
            node,
        }
    }

    /// Stops the node (SIGSTOP: its state is kept, its socket accepts connections and answers
    /// nothing) and returns once every one of its threads is stopped. `kill` returns when the
    /// signal is queued; until the kernel has stopped each thread, a thread already awake (one
    /// woken by a request, say) still answers, and on a loaded machine that lasts long enough
    /// for a whole settlement poll.
    pub fn pause(&self) {
        let pid = self.node.pid();
        signal(pid, "-STOP");
        let tasks = PathBuf::from(format!("/proc/{pid}/task"));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let running: Vec<(String, char)> = std::fs::read_dir(&tasks)
                .unwrap_or_else(|e| panic!("{}: {e}", tasks.display()))
                .filter_map(|t| {
                    let t = t.ok()?;
                    let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
                    // `pid (comm) state …`: the state follows the last ')'.
                    let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
                    let tid = t.file_name().to_string_lossy().into_owned();
                    (state != 'T' && state != 't').then_some((tid, state))
                })
                .collect();
            if running.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "anvil {pid}: threads not stopped 10 s after SIGSTOP: {running:?}"
            );
            std::thread::yield_now();
        }
    }

    /// Lets a node stopped by [`Anvil::pause`] run again.
    pub fn resume(&self) {
        signal(self.node.pid(), "-CONT");
    }
}

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill {sig} {pid}: {e}"));
    assert!(status.success(), "kill {sig} {pid}: {status}");
}

/// A signer from a hex private key.
pub fn signer(key: &str) -> alloy::signers::local::PrivateKeySigner {
    key.parse().expect("private key")
}
