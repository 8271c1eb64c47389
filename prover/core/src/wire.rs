//! The one wire-types module: everything that crosses a process boundary as JSON.
//!
//! The coordinator task envelope (`Task`, Scroll coordinator API v1 shape), the task payloads that
//! travel inside `task_data` (a JSON document inside a string), and the proof payload that travels
//! inside `submit_proof.proof` and is what `prover prove --out` writes. Both the prover and the
//! coordinator use these types; there is no second copy.
//!
//! Versioning: every payload carries `"version"`; a reader refuses a version it does not know with
//! a clear error instead of guessing. Field elements are `0x`-prefixed big-endian hex of the canonical
//! value; binary blobs (proofs, digests) are standard base64, as Scroll does.

use std::fmt;

use base64::Engine as _;
use ff::PrimeField;
use halo2curves::bn256::Fr;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// Version of [`ChunkTaskData`], [`BatchTaskData`] and [`BundleTaskData`] this build reads and writes.
pub const TASK_DATA_VERSION: u32 = 1;
/// Version of [`ProofPayload`] this build reads and writes.
pub const PROOF_VERSION: u32 = 1;
/// The circuit generation name carried in `hard_fork_name`. A task for another generation is refused.
pub const HARD_FORK_NAME: &str = "pnode-v1";

/// Errors decoding wire payloads.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("malformed {what} JSON: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("unsupported {what} version {found} (this build reads version {supported})")]
    Version {
        what: &'static str,
        found: u32,
        supported: u32,
    },
    #[error("unknown task type {0} (known: 1 chunk, 2 batch, 3 bundle)")]
    UnknownTaskType(u8),
    #[error("unsupported hard_fork_name {found:?} (this prover proves {supported:?})")]
    HardFork {
        found: String,
        supported: &'static str,
    },
    #[error("task_type {envelope} in the envelope disagrees with the payload's circuit {payload}")]
    TypeMismatch { envelope: u8, payload: u8 },
}

/// Task types of the coordinator protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskType {
    Chunk,
    Batch,
    Bundle,
}

impl TaskType {
    pub fn as_u8(self) -> u8 {
        match self {
            TaskType::Chunk => 1,
            TaskType::Batch => 2,
            TaskType::Bundle => 3,
        }
    }
    pub fn from_u8(v: u8) -> Result<Self, WireError> {
        match v {
            1 => Ok(TaskType::Chunk),
            2 => Ok(TaskType::Batch),
            3 => Ok(TaskType::Bundle),
            other => Err(WireError::UnknownTaskType(other)),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            TaskType::Chunk => "chunk",
            TaskType::Batch => "batch",
            TaskType::Bundle => "bundle",
        }
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A task as the coordinator hands it out (`get_task` reply `data`), and as `prover prove --task` reads it.
/// Unknown fields are ignored: coordinators of the Scroll family add fields to this reply, and a
/// node that refused them would never store the task it was assigned.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Task {
    /// Assignment id.
    pub uuid: String,
    pub task_id: String,
    /// Raw task type number; decoded with [`Task::kind`] so an unknown type is a clear error.
    pub task_type: u8,
    /// JSON text of [`ChunkTaskData`], [`BatchTaskData`] or [`BundleTaskData`].
    pub task_data: String,
    pub hard_fork_name: String,
}

/// A decoded task payload.
#[derive(Clone, Debug)]
pub enum TaskPayload {
    Chunk(ChunkTaskData),
    Batch(BatchTaskData),
    Bundle(BundleTaskData),
}

impl TaskPayload {
    /// The circuit the payload is for.
    pub fn spec(&self) -> CircuitSpec {
        match self {
            TaskPayload::Chunk(d) => CircuitSpec::Chunk { config: d.config },
            TaskPayload::Batch(d) => CircuitSpec::Batch { config: d.config },
            TaskPayload::Bundle(d) => CircuitSpec::Bundle { config: d.config },
        }
    }
}

impl Task {
    pub fn kind(&self) -> Result<TaskType, WireError> {
        TaskType::from_u8(self.task_type)
    }

    /// Decodes `task_data` according to `task_type`, checking versions and the circuit generation.
    pub fn payload(&self) -> Result<TaskPayload, WireError> {
        if self.hard_fork_name != HARD_FORK_NAME {
            return Err(WireError::HardFork {
                // A name is short; a long one is shown in part (the error reaches logs and the
                // failure report).
                found: self.hard_fork_name.chars().take(64).collect(),
                supported: HARD_FORK_NAME,
            });
        }
        match self.kind()? {
            TaskType::Chunk => {
                let data: ChunkTaskData = from_json("chunk task_data", &self.task_data)?;
                check_version("chunk task_data", data.version, TASK_DATA_VERSION)?;
                Ok(TaskPayload::Chunk(data))
            }
            TaskType::Batch => {
                let data: BatchTaskData = from_json("batch task_data", &self.task_data)?;
                check_version("batch task_data", data.version, TASK_DATA_VERSION)?;
                Ok(TaskPayload::Batch(data))
            }
            TaskType::Bundle => {
                let data: BundleTaskData = from_json("bundle task_data", &self.task_data)?;
                check_version("bundle task_data", data.version, TASK_DATA_VERSION)?;
                Ok(TaskPayload::Bundle(data))
            }
        }
    }
}

/// Parses JSON with the payload name in the error.
pub fn from_json<T: de::DeserializeOwned>(what: &'static str, text: &str) -> Result<T, WireError> {
    serde_json::from_str(text).map_err(|source| WireError::Json { what, source })
}

fn check_version(what: &'static str, found: u32, supported: u32) -> Result<(), WireError> {
    if found == supported {
        Ok(())
    } else {
        Err(WireError::Version {
            what,
            found,
            supported,
        })
    }
}

/// Shape of the chunk circuit. Every field changes the circuit, hence the proving key.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct ChunkConfig {
    /// log2 of the number of rows.
    pub k: u32,
    /// Depth of the account sparse Merkle tree (2^depth accounts).
    pub tree_depth: usize,
    /// Transfers per chunk; shorter lists are padded with no-op transactions.
    pub max_txs: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        Self {
            k: 18,
            tree_depth: 20,
            max_txs: 4,
        }
    }
}

/// Shape of the batch (aggregation) circuit.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// log2 of the number of rows of the aggregation circuit.
    pub k: u32,
    /// Number of chunk proofs aggregated.
    pub num_chunks: usize,
    /// The chunk circuit whose proofs are aggregated.
    pub chunk: ChunkConfig,
}

/// Shape of the bundle circuit: aggregates batch proofs (themselves aggregations) into the proof
/// that is settled on L1, made with the Keccak transcript so that a Solidity verifier can check it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct BundleConfig {
    /// log2 of the number of rows of the aggregation circuit.
    pub k: u32,
    /// Number of batch proofs aggregated.
    pub num_batches: usize,
    /// The batch circuit whose proofs are aggregated.
    pub batch: BatchConfig,
}

/// One transfer of the rollup.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    pub from: u64,
    pub to: u64,
    pub amount: u64,
    pub nonce: u64,
}

/// An account leaf as seen by one transaction, with its Merkle siblings (leaf level first).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccountWitness {
    pub owner: FrHex,
    pub balance: u64,
    pub nonce: u64,
    pub siblings: Vec<FrHex>,
}

/// Witness of one transfer: the sender before it, and the receiver after the sender was updated.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TxWitness {
    pub sender: AccountWitness,
    pub receiver: AccountWitness,
}

/// `task_data` of a chunk task (task type 1).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ChunkTaskData {
    pub version: u32,
    pub config: ChunkConfig,
    pub old_root: FrHex,
    /// The root the coordinator expects after the transfers; the proof's public input must equal it.
    pub new_root: FrHex,
    /// At most `config.max_txs` transfers.
    pub transfers: Vec<Transfer>,
    /// One entry per transfer.
    pub witness: Vec<TxWitness>,
}

/// `task_data` of a batch task (task type 2): the chunk proofs to aggregate, in chain order.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BatchTaskData {
    pub version: u32,
    pub config: BatchConfig,
    pub chunk_proofs: Vec<ProofPayload>,
}

/// `task_data` of a bundle task (task type 3): the batch proofs to aggregate, in chain order.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BundleTaskData {
    pub version: u32,
    pub config: BundleConfig,
    pub batch_proofs: Vec<ProofPayload>,
}

/// Which circuit a proof is for, with its configuration.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "circuit", rename_all = "snake_case", deny_unknown_fields)]
pub enum CircuitSpec {
    Chunk { config: ChunkConfig },
    Batch { config: BatchConfig },
    Bundle { config: BundleConfig },
}

impl CircuitSpec {
    pub fn task_type(&self) -> TaskType {
        match self {
            CircuitSpec::Chunk { .. } => TaskType::Chunk,
            CircuitSpec::Batch { .. } => TaskType::Batch,
            CircuitSpec::Bundle { .. } => TaskType::Bundle,
        }
    }
    pub fn k(&self) -> u32 {
        match self {
            CircuitSpec::Chunk { config } => config.k,
            CircuitSpec::Batch { config } => config.k,
            CircuitSpec::Bundle { config } => config.k,
        }
    }
}

/// A proof as `prover prove --out` writes it and `submit_proof.proof` carries it (as JSON text).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProofPayload {
    pub version: u32,
    pub task_id: String,
    pub spec: CircuitSpec,
    /// base64 of the verifying-key digest (sha256 of the serialized vk); what a prover lists in `vks`.
    pub vk_digest: String,
    /// Public inputs of the single instance column.
    pub instances: Vec<FrHex>,
    /// base64 of the halo2 proof bytes (SHPLONK; Poseidon transcript, Keccak for a bundle).
    pub proof: Base64Bytes,
    /// How the proof was produced (informational; never trusted by a verifier).
    pub meta: ProofMeta,
}

impl ProofPayload {
    pub fn from_json_str(text: &str) -> Result<Self, WireError> {
        let p: ProofPayload = from_json("proof", text)?;
        check_version("proof", p.version, PROOF_VERSION)?;
        Ok(p)
    }
}

/// Informational metadata of a proof.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProofMeta {
    pub engine: String,
    /// The backend that made the proof.
    pub backend: String,
    pub prove_ms: u64,
    /// When a device fault stopped the proof on the configured backend and it was made again on
    /// the CPU backend: that backend and the fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

/// A field element on the wire: `0x` + 64 hex digits, big-endian canonical value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FrHex(pub Fr);

impl From<Fr> for FrHex {
    fn from(v: Fr) -> Self {
        FrHex(v)
    }
}

impl fmt::Display for FrHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut be = self.0.to_repr();
        be.as_mut().reverse();
        write!(f, "0x{}", hex::encode(be.as_ref()))
    }
}

impl std::str::FromStr for FrHex {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let digits = s
            .strip_prefix("0x")
            .ok_or_else(|| format!("field element {s:?} must start with 0x"))?;
        if digits.len() != 64 {
            return Err(format!(
                "field element {s:?} must have 64 hex digits, has {}",
                digits.len()
            ));
        }
        let mut bytes = hex::decode(digits).map_err(|e| format!("field element {s:?}: {e}"))?;
        bytes.reverse();
        let mut repr = <Fr as PrimeField>::Repr::default();
        repr.as_mut().copy_from_slice(&bytes);
        Option::from(Fr::from_repr(repr))
            .map(FrHex)
            .ok_or_else(|| format!("field element {s:?} is not below the BN254 scalar modulus"))
    }
}

impl Serialize for FrHex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FrHex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// Bytes on the wire as standard base64.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Base64Bytes(pub Vec<u8>);

impl fmt::Debug for Base64Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Base64Bytes({} bytes)", self.0.len())
    }
}

impl Serialize for Base64Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Base64Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(Base64Bytes)
            .map_err(|e| de::Error::custom(format!("invalid base64: {e}")))
    }
}

/// The signed part of a coordinator login (`login` request `message`), Scroll coordinator API v1.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LoginMessage {
    /// The challenge JWT from `GET /coordinator/v1/challenge`.
    pub challenge: String,
    pub prover_version: String,
    pub prover_name: String,
    /// 1 internal, 2 external.
    pub prover_provider_type: u8,
    /// Task types this prover takes (1 chunk, 2 batch).
    pub prover_types: Vec<u8>,
    /// base64 verifying-key digests, one per circuit this prover proves.
    pub vks: Vec<String>,
}

/// The body of `POST /coordinator/v1/login`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub message: LoginMessage,
    /// 33-byte compressed secp256k1 public key, lowercase hex without `0x`.
    pub public_key: String,
    /// `0x` + hex of 65 bytes `r || s || v`, v ∈ {0, 1}.
    pub signature: String,
}

// ---------------------------------------------------------------------------------------------
// Coordinator HTTP API v1 (see the README, "Coordinator protocol"): envelope, error codes, bodies.
// Request bodies accept unknown fields (clients of the Scroll family send extra ones) and read
// `null` as the zero value where Go's coordinator does (`null_as_default`); replies are decoded
// leniently for the same reason. Missing required fields are an error (errcode 20001). The
// exception is the login message: its fields are signed, so an unknown one is refused rather
// than ignored (it could only fail the signature check later, less clearly).
// ---------------------------------------------------------------------------------------------

/// Base path of every API route.
pub const API_BASE: &str = "/coordinator/v1";

/// `errcode` values of the reply envelope.
pub mod errcode {
    pub const SUCCESS: i32 = 0;
    pub const INTERNAL: i32 = 500;
    pub const INVALID_PARAMETER: i32 = 20001;
    /// get_task failure: already assigned another task, blocked, internal.
    pub const GET_TASK_FAILURE: i32 = 20002;
    /// Proof handling failure: validation or verification failed.
    pub const PROOF_FAILURE: i32 = 20003;
    /// No task available: normal, poll again later.
    pub const NO_TASK: i32 = 20004;
    pub const JWT: i32 = 50000;
    /// The login token expired: log in again (once), then retry the call.
    pub const JWT_EXPIRED: i32 = 50001;
}

/// Every reply: HTTP 200 with `{"errcode", "errmsg", "data"}`; `data` is `null` on error.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Envelope<T> {
    pub errcode: i32,
    pub errmsg: String,
    pub data: Option<T>,
}

impl<T> Envelope<T> {
    pub fn ok(data: T) -> Self {
        Self {
            errcode: errcode::SUCCESS,
            errmsg: String::new(),
            data: Some(data),
        }
    }
    pub fn err(code: i32, msg: impl Into<String>) -> Self {
        Self {
            errcode: code,
            errmsg: msg.into(),
            data: None,
        }
    }
}

/// `data` of the challenge and login replies.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenReply {
    /// Expiry of `token`, RFC 3339.
    pub time: String,
    /// The JWT (challenge token, or login token to send as `Authorization: Bearer`).
    pub token: String,
}

/// Decodes JSON `null` (or a missing field, with `#[serde(default)]`) as the type's zero value,
/// as Go's `encoding/json` does: Scroll's clients send `"failure_type": null` and
/// `"failure_msg": null` with every successful proof.
pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Body of `POST /coordinator/v1/get_task`. The reply's `data` is a [`Task`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct GetTaskRequest {
    #[serde(deserialize_with = "null_as_default")]
    pub task_types: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prover_height: Option<u64>,
}

/// `status` of a submission.
pub mod proof_status {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
}

/// `failure_type` of a failed submission.
pub mod failure_type {
    pub const UNDEFINED: u8 = 0;
    /// The prover gave up on the task after its attempt cap (it crashed or hung every time).
    pub const PANIC: u8 = 1;
    /// An ordinary proving error (invalid task payload, unsatisfiable witness, ...).
    pub const NO_PANIC: u8 = 2;
}

/// Body of `POST /coordinator/v1/submit_proof`. The reply's `data` is `null`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SubmitProofRequest {
    /// Assignment id from the task.
    pub uuid: String,
    pub task_id: String,
    pub task_type: u8,
    /// [`proof_status::OK`] or [`proof_status::ERROR`].
    pub status: u8,
    /// JSON text of a [`ProofPayload`] (empty when `status` is error).
    #[serde(default, deserialize_with = "null_as_default")]
    pub proof: String,
    /// One of [`failure_type`]; 0 when `status` is ok.
    #[serde(default, deserialize_with = "null_as_default")]
    pub failure_type: u8,
    #[serde(default, deserialize_with = "null_as_default")]
    pub failure_msg: String,
}
