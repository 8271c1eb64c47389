//! The Solidity compiler, run as a child process in its standard-JSON mode: solc-js (the npm
//! `solc` package, `node solc.js --standard-json`, as `scripts/ensure-l1` installs it) or a native
//! `solc` binary.

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use super::L1Error;

/// A compiled contract.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// The ABI, as solc gives it (JSON).
    pub abi: Value,
    /// Creation bytecode (constructor arguments not appended).
    pub bytecode: Vec<u8>,
    /// Runtime bytecode, whose size EIP-170 limits to 24,576 bytes.
    pub deployed_size: usize,
}

/// Where the compiler is.
#[derive(Clone, Debug)]
pub struct Solc {
    path: PathBuf,
}

impl Solc {
    /// The compiler at `path`: a `.js` file is run with `node`, anything else directly.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// `$SOLC` if set, else the project-local solc-js of `scripts/ensure-l1` in `dir` or the
    /// nearest directory above it that has one.
    pub fn locate(dir: &Path) -> Result<Self, L1Error> {
        const LOCAL: &str = ".tools/l1/node_modules/solc/solc.js";
        if let Some(p) = std::env::var_os("SOLC") {
            return Ok(Self::at(p));
        }
        if let Some(found) = dir.ancestors().map(|d| d.join(LOCAL)).find(|p| p.is_file()) {
            return Ok(Self::at(found));
        }
        let local = dir.join(LOCAL);
        Err(L1Error::Tool(format!(
            "no Solidity compiler: set SOLC to solc-js's solc.js or a solc binary, or run \
             scripts/ensure-l1 (it installs solc {} into {})",
            prover_core::evm::SOLC_VERSION,
            local.display()
        )))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Compiles `sources` (file name → Solidity source) and returns every contract by name.
    /// The optimizer runs with `optimizer_runs` when given. Compiler errors are returned with
    /// solc's own formatted messages.
    pub fn compile(
        &self,
        sources: &[(&str, &str)],
        optimizer_runs: Option<u32>,
    ) -> Result<BTreeMap<String, Compiled>, L1Error> {
        let sources: serde_json::Map<String, Value> = sources
            .iter()
            .map(|(name, text)| (name.to_string(), json!({ "content": text })))
            .collect();
        let input = json!({
            "language": "Solidity",
            "sources": sources,
            "settings": {
                "optimizer": { "enabled": optimizer_runs.is_some(), "runs": optimizer_runs.unwrap_or(200) },
                "outputSelection": { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } }
            }
        });
        let mut cmd = if self.path.extension().is_some_and(|e| e == "js") {
            let mut c = Command::new("node");
            c.arg(&self.path);
            c
        } else {
            Command::new(&self.path)
        };
        // Input and output go through files: solc-js reads its stdin with one synchronous read,
        // which fails (EAGAIN) on a pipe that is not yet full, and exits before a pipe has taken
        // all of its output (truncated at 64 KiB); file writes in node are synchronous.
        let io = |what: &str, e: std::io::Error| L1Error::Tool(format!("solc input: {what}: {e}"));
        let mut file = tempfile::tempfile().map_err(|e| io("temporary file", e))?;
        file.write_all(input.to_string().as_bytes())
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(|_| ()))
            .map_err(|e| io("writing", e))?;
        let mut stdout_file = tempfile::tempfile().map_err(|e| io("temporary file", e))?;
        let child_stdout = stdout_file
            .try_clone()
            .map_err(|e| io("temporary file", e))?;
        let out = cmd
            .arg("--standard-json")
            .stdin(Stdio::from(file))
            .stdout(Stdio::from(child_stdout))
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| L1Error::Tool(format!("cannot run solc {}: {e}", self.path.display())))?;
        let mut stdout = String::new();
        stdout_file
            .seek(SeekFrom::Start(0))
            .and_then(|_| std::io::Read::read_to_string(&mut stdout_file, &mut stdout))
            .map_err(|e| io("reading its output", e))?;
        if !out.status.success() {
            return Err(L1Error::Tool(format!(
                "solc {} exited with {}: {}",
                self.path.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        // solc-js may print notes (">>> Cannot retry compilation with SMT …") before the JSON.
        let json_at = stdout
            .lines()
            .scan(0usize, |at, line| {
                let start = *at;
                *at += line.len() + 1;
                Some((start, line))
            })
            .find(|(_, line)| line.starts_with('{'))
            .map_or(0, |(start, _)| start);
        let output: Value = serde_json::from_str(&stdout[json_at..])
            .map_err(|e| L1Error::Tool(format!("solc printed something that is not JSON ({e})")))?;
        let errors: Vec<String> = output["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["severity"] == "error")
            .map(|e| {
                e["formattedMessage"]
                    .as_str()
                    .or(e["message"].as_str())
                    .unwrap_or("unknown error")
                    .trim()
                    .to_string()
            })
            .collect();
        if !errors.is_empty() {
            return Err(L1Error::Compile(errors.join("\n")));
        }
        let mut compiled = BTreeMap::new();
        for file in output["contracts"].as_object().into_iter().flatten() {
            for (name, c) in file.1.as_object().into_iter().flatten() {
                let code = |v: &Value| -> Result<Vec<u8>, L1Error> {
                    hex::decode(v.as_str().unwrap_or_default()).map_err(|e| {
                        L1Error::Compile(format!(
                            "solc gave {name} a bytecode that is not hex: {e}"
                        ))
                    })
                };
                compiled.insert(
                    name.clone(),
                    Compiled {
                        abi: c["abi"].clone(),
                        bytecode: code(&c["evm"]["bytecode"]["object"])?,
                        deployed_size: code(&c["evm"]["deployedBytecode"]["object"])?.len(),
                    },
                );
            }
        }
        Ok(compiled)
    }
}
