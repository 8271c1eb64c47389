//! A local development L1 node: anvil (installed by `scripts/ensure-l1` from npm) on a loopback
//! port, killed when dropped. For the settlement tests and `prover demo`; never for production.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::L1Error;

/// anvil's first dev account (its well-known private key: development chains only).
pub const DEV_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// anvil's second dev account.
pub const DEV_KEY_2: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
/// anvil's chain id.
pub const DEV_CHAIN_ID: u64 = 31337;
/// Runtime code size the dev node accepts: snark-verifier's verifiers of circuits with many
/// columns are over EIP-170's 24,576 bytes.
pub const DEV_CODE_SIZE_LIMIT: usize = 65_536;

const LOCAL: &str = ".tools/l1/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil";

/// A running anvil.
pub struct Anvil {
    child: Child,
    url: String,
    port: u16,
}

impl Anvil {
    /// `$ANVIL` if set, else the project-local anvil of `scripts/ensure-l1` in `dir` or the
    /// nearest directory above it that has one.
    pub fn locate(dir: &Path) -> Result<PathBuf, L1Error> {
        if let Some(p) = std::env::var_os("ANVIL") {
            return Ok(p.into());
        }
        dir.ancestors()
            .map(|d| d.join(LOCAL))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                L1Error::Tool(format!(
                    "anvil is not installed: set ANVIL, or run scripts/ensure-l1 (it installs \
                     anvil into {})",
                    dir.join(LOCAL).display()
                ))
            })
    }

    /// Starts `path` on 127.0.0.1:`port` (0: a port the OS picks), automining unless `args` say
    /// otherwise, and returns once it listens.
    pub fn start(path: &Path, port: u16, args: &[&str]) -> Result<Anvil, L1Error> {
        let limit = DEV_CODE_SIZE_LIMIT.to_string();
        let mut child = Command::new(path)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--code-size-limit", &limit])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| L1Error::Tool(format!("starting anvil {}: {e}", path.display())))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err(L1Error::Tool("anvil's output is not a pipe".into()));
        };
        let mut lines = BufReader::new(stdout).lines();
        let port = loop {
            let line = match lines.next() {
                Some(Ok(l)) => l,
                other => {
                    let _ = child.kill();
                    let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                    let why = match other {
                        Some(Err(e)) => format!("reading its output: {e}"),
                        _ => format!("it exited ({status})"),
                    };
                    return Err(L1Error::Tool(format!(
                        "anvil {} did not start listening: {why}",
                        path.display()
                    )));
                }
            };
            if let Some(addr) = line.strip_prefix("Listening on ") {
                match addr.rsplit(':').next().and_then(|p| p.trim().parse().ok()) {
                    Some(p) => break p,
                    None => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(L1Error::Tool(format!(
                            "anvil listens on {addr:?}, which has no port"
                        )));
                    }
                }
            }
        };
        // Keep draining its output so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Ok(Anvil {
            child,
            url: format!("http://127.0.0.1:{port}"),
            port,
        })
    }

    /// Its JSON-RPC URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.port
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
