//! The L1 node, through alloy: one signing account, raw transactions whose nonce and fees the
//! caller chooses (the settlement loop re-sends with the same nonce and a higher fee), receipts,
//! and the rollup contract's calls and errors.

use alloy::eips::eip2718::Encodable2718;
use alloy::eips::BlockId;
use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address, Bytes, TxHash, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::client::RpcClient;
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::SolCall;
use alloy::transports::http::reqwest;
use alloy::transports::TransportError;
use std::time::Duration;

use super::L1Error;

sol! {
    /// The rollup contract's interface (coordinator/contracts/Rollup.sol).
    #[sol(all_derives)]
    interface IRollup {
        function finalize(bytes32 oldRoot, bytes32 newRoot, uint256[] calldata instances, bytes calldata proof) external;
        function root() external view returns (bytes32);
        function finalized() external view returns (uint256);
        function verifier() external view returns (address);
        event Finalized(uint256 indexed index, bytes32 oldRoot, bytes32 newRoot);
        error NotAContract(address verifier);
        error BadLayout();
        error StaleRoot(bytes32 current, bytes32 given);
        error InstanceCount(uint256 expected, uint256 given);
        error RootsNotInInstances();
        error ProofRejected();
    }
}

/// Fees of an EIP-1559 transaction, in wei.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fees {
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
}

/// A signed transaction: its hash and its raw (EIP-2718) bytes.
#[derive(Clone, Debug)]
pub struct Signed {
    pub hash: TxHash,
    pub raw: Vec<u8>,
}

/// One L1 node and the account that signs.
#[derive(Clone)]
pub struct L1 {
    provider: DynProvider,
    wallet: EthereumWallet,
    from: Address,
    chain_id: u64,
}

/// A node's JSON-RPC error as text, with the rollup contract's error decoded when it is one.
pub fn describe(e: TransportError) -> L1Error {
    if let Some(resp) = e.as_error_resp() {
        if let Some(decoded) = resp.as_decoded_interface_error::<IRollup::IRollupErrors>() {
            return L1Error::Revert(format!("{decoded:?}"));
        }
        if resp.as_revert_data().is_some() || resp.message.contains("revert") {
            return L1Error::Revert(resp.message.to_string());
        }
    }
    L1Error::Rpc(e.to_string())
}

impl L1 {
    /// Connects to the node at `rpc_url` and checks its chain id against `chain_id`. Each
    /// request gives up after 10 s (a node that hangs is a node that is down).
    pub async fn connect(
        rpc_url: &str,
        chain_id: u64,
        signer: PrivateKeySigner,
    ) -> Result<Self, L1Error> {
        Self::connect_with_timeout(rpc_url, chain_id, signer, Duration::from_secs(10)).await
    }

    /// [`Self::connect`] with the given per-request timeout.
    pub async fn connect_with_timeout(
        rpc_url: &str,
        chain_id: u64,
        signer: PrivateKeySigner,
        timeout: Duration,
    ) -> Result<Self, L1Error> {
        let url = rpc_url
            .parse()
            .map_err(|e| L1Error::Config(format!("L1 RPC URL {rpc_url:?}: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| L1Error::Config(format!("HTTP client: {e}")))?;
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .connect_client(RpcClient::new_http_with_client(http, url))
            .erased();
        let from = signer.address();
        let l1 = Self {
            provider,
            wallet: EthereumWallet::from(signer),
            from,
            chain_id,
        };
        let found = l1.provider.get_chain_id().await.map_err(describe)?;
        if found != chain_id {
            return Err(L1Error::Config(format!(
                "the L1 node at {rpc_url} is chain {found}, the configuration says {chain_id}"
            )));
        }
        Ok(l1)
    }

    /// The signing account.
    pub fn address(&self) -> Address {
        self.from
    }

    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// The account's next nonce counting mined transactions only.
    pub async fn mined_nonce(&self) -> Result<u64, L1Error> {
        self.provider
            .get_transaction_count(self.from)
            .latest()
            .await
            .map_err(describe)
    }

    pub async fn block_number(&self) -> Result<u64, L1Error> {
        self.provider.get_block_number().await.map_err(describe)
    }

    /// The node's current fee estimate.
    pub async fn fees(&self) -> Result<Fees, L1Error> {
        let est = self
            .provider
            .estimate_eip1559_fees()
            .await
            .map_err(describe)?;
        Ok(Fees {
            max_fee_per_gas: est.max_fee_per_gas,
            max_priority_fee_per_gas: est.max_priority_fee_per_gas,
        })
    }

    /// The gas `input` to `to` takes (a revert is returned as [`L1Error::Revert`], decoded).
    pub async fn estimate_gas(&self, to: Option<Address>, input: &[u8]) -> Result<u64, L1Error> {
        self.provider
            .estimate_gas(self.request(to, input))
            .await
            .map_err(describe)
    }

    /// Runs `input` against `to` at the latest block without sending it.
    pub async fn call(&self, to: Address, input: &[u8]) -> Result<Bytes, L1Error> {
        self.provider
            .call(self.request(Some(to), input))
            .await
            .map_err(describe)
    }

    fn request(&self, to: Option<Address>, input: &[u8]) -> TransactionRequest {
        let req = TransactionRequest::default()
            .with_from(self.from)
            .with_input(Bytes::copy_from_slice(input));
        match to {
            Some(to) => req.with_to(to),
            None => req.into_create(),
        }
    }

    /// Signs an EIP-1559 transaction of `input` to `to` (`None`: a contract creation).
    pub async fn sign(
        &self,
        to: Option<Address>,
        input: &[u8],
        nonce: u64,
        gas_limit: u64,
        fees: Fees,
    ) -> Result<Signed, L1Error> {
        let req = self
            .request(to, input)
            .with_chain_id(self.chain_id)
            .with_nonce(nonce)
            .with_gas_limit(gas_limit)
            .with_max_fee_per_gas(fees.max_fee_per_gas)
            .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas);
        let envelope = req
            .build(&self.wallet)
            .await
            .map_err(|e| L1Error::Sign(e.to_string()))?;
        Ok(Signed {
            hash: *envelope.tx_hash(),
            raw: envelope.encoded_2718(),
        })
    }

    /// Sends a signed transaction. A node that already has it is not an error.
    pub async fn send_raw(&self, signed: &Signed) -> Result<(), L1Error> {
        match self.provider.send_raw_transaction(&signed.raw).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let text = e.to_string().to_ascii_lowercase();
                if text.contains("already known") || text.contains("already imported") {
                    Ok(())
                } else {
                    Err(describe(e))
                }
            }
        }
    }

    pub async fn receipt(&self, hash: TxHash) -> Result<Option<TransactionReceipt>, L1Error> {
        self.provider
            .get_transaction_receipt(hash)
            .await
            .map_err(describe)
    }

    /// The hash of block `number` on the node's canonical chain (`None` if it has no such block).
    pub async fn block_hash(&self, number: u64) -> Result<Option<B256>, L1Error> {
        let block = self
            .provider
            .get_block_by_number(number.into())
            .await
            .map_err(describe)?;
        Ok(block.map(|b| b.header.hash))
    }

    /// Deploys `code` (creation code with constructor arguments) and waits for its receipt by
    /// polling; returns the contract's address and the gas used. For setting up a chain (tests,
    /// the CLI), not for settlement.
    pub async fn deploy(&self, code: &[u8]) -> Result<(Address, u64), L1Error> {
        let gas = self.estimate_gas(None, code).await?;
        let nonce = self
            .provider
            .get_transaction_count(self.from)
            .pending()
            .await
            .map_err(describe)?;
        let signed = self
            .sign(None, code, nonce, gas + gas / 5, self.fees().await?)
            .await?;
        self.send_raw(&signed).await?;
        let receipt = self.wait_receipt(signed.hash).await?;
        if !receipt.status() {
            return Err(L1Error::Revert(format!(
                "the deployment {} reverted",
                signed.hash
            )));
        }
        let address = receipt
            .contract_address
            .ok_or_else(|| L1Error::Rpc("a deployment receipt without an address".into()))?;
        Ok((address, receipt.gas_used))
    }

    /// Polls for a receipt for up to a minute.
    pub async fn wait_receipt(&self, hash: TxHash) -> Result<TransactionReceipt, L1Error> {
        for _ in 0..600 {
            if let Some(r) = self.receipt(hash).await? {
                return Ok(r);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(L1Error::Rpc(format!("no receipt for {hash} after 60 s")))
    }

    /// The rollup contract's finalised root.
    pub async fn rollup_root(&self, rollup: Address) -> Result<B256, L1Error> {
        let out = self
            .call(rollup, &IRollup::rootCall {}.abi_encode())
            .await?;
        IRollup::rootCall::abi_decode_returns(&out)
            .map_err(|e| L1Error::Rpc(format!("root(): {e}")))
    }

    /// The rollup contract's root as of block `number` (state after that block); `None` when the
    /// contract did not exist yet then (the call returns nothing).
    pub async fn rollup_root_at(
        &self,
        rollup: Address,
        number: u64,
    ) -> Result<Option<B256>, L1Error> {
        let out = self
            .provider
            .call(self.request(Some(rollup), &IRollup::rootCall {}.abi_encode()))
            .block(BlockId::number(number))
            .await
            .map_err(describe)?;
        if out.is_empty() {
            return Ok(None);
        }
        IRollup::rootCall::abi_decode_returns(&out)
            .map(Some)
            .map_err(|e| L1Error::Rpc(format!("root() at block {number}: {e}")))
    }

    /// How many finalisations the rollup contract has accepted.
    pub async fn rollup_finalized(&self, rollup: Address) -> Result<u64, L1Error> {
        let out = self
            .call(rollup, &IRollup::finalizedCall {}.abi_encode())
            .await?;
        let n: U256 = IRollup::finalizedCall::abi_decode_returns(&out)
            .map_err(|e| L1Error::Rpc(format!("finalized(): {e}")))?;
        u64::try_from(n).map_err(|_| L1Error::Rpc(format!("finalized() = {n}")))
    }
}

/// Calldata of `Rollup.finalize(oldRoot, newRoot, instances, proof)`.
pub fn finalize_calldata(
    old_root: B256,
    new_root: B256,
    instances: &[B256],
    proof: &[u8],
) -> Vec<u8> {
    IRollup::finalizeCall {
        oldRoot: old_root,
        newRoot: new_root,
        instances: instances.iter().map(|x| U256::from_be_bytes(x.0)).collect(),
        proof: Bytes::copy_from_slice(proof),
    }
    .abi_encode()
}
