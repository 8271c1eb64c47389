//! A real local Ethereum node for the settlement tests: the coordinator's dev node
//! ([`coordinator::l1::anvil`], anvil from `scripts/ensure-l1`) on a loopback port the OS picks,
//! killed when dropped.

use std::path::PathBuf;

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

    pub fn pid(&self) -> u32 {
        self.node.pid()
    }
}

/// A signer from a hex private key.
pub fn signer(key: &str) -> alloy::signers::local::PrivateKeySigner {
    key.parse().expect("private key")
}
