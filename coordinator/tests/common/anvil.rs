//! A real local Ethereum node for the settlement tests: anvil (from `scripts/ensure-l1`) on a
//! loopback port the OS picks, killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// anvil's first dev account (its well-known private key).
pub const DEV_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// anvil's second dev account.
pub const DEV_KEY_2: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
pub const CHAIN_ID: u64 = 31337;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `$ANVIL`, else the project-local anvil; panics with what to run when there is none.
pub fn anvil_path() -> PathBuf {
    if let Some(p) = std::env::var_os("ANVIL") {
        return p.into();
    }
    let local = repo().join(".tools/l1/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    assert!(
        local.is_file(),
        "anvil is not installed: run scripts/ensure-l1 (it installs anvil and solc into .tools/l1) \
         or set ANVIL"
    );
    local
}

/// The Solidity compiler of the tests.
pub fn solc() -> coordinator::l1::solc::Solc {
    coordinator::l1::solc::Solc::locate(&repo()).unwrap_or_else(|e| panic!("{e}"))
}

pub struct Anvil {
    child: Child,
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
        // The small chunk circuit's verifier is over EIP-170's 24,576 bytes (it has many
        // columns); the tests' chain takes it.
        let mut child = Command::new(anvil_path())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--code-size-limit", "65536"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start anvil");
        let stdout = child.stdout.take().expect("anvil stdout");
        let mut lines = BufReader::new(stdout).lines();
        let port = loop {
            let line = match lines.next() {
                Some(Ok(l)) => l,
                _ => {
                    let _ = child.kill();
                    panic!("anvil exited before it listened");
                }
            };
            if let Some(addr) = line.strip_prefix("Listening on ") {
                break addr
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.trim().parse::<u16>().ok())
                    .expect("anvil's port");
            }
        };
        // Keep draining its output so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Anvil {
            child,
            url: format!("http://127.0.0.1:{port}"),
            port,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A signer from a hex private key.
pub fn signer(key: &str) -> alloy::signers::local::PrivateKeySigner {
    key.parse().expect("private key")
}
