//! Login signatures for the coordinator protocol, bit for bit as Scroll's Go coordinator computes
//! them: RLP of `[challenge, prover_version, prover_name, prover_provider_type, prover_types, vks]`
//! (with `prover_types` as ONE byte string, the way Go encodes a `[]uint8`), keccak256 of that, and
//! a recoverable secp256k1 ECDSA signature over the hash itself (no Ethereum prefix), low-s,
//! `r || s || v` with v ∈ {0, 1}.

use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use sha3::{Digest, Keccak256};

use crate::wire::{LoginMessage, LoginRequest};

/// Why a login request does not verify or a key cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoginError {
    #[error("private key: {0}")]
    Key(String),
    #[error("public_key must be 33-byte compressed secp256k1 hex without 0x: {0}")]
    PublicKey(String),
    #[error("signature must be 0x + 65 bytes hex (r || s || v, v in {{0,1}}): {0}")]
    SignatureFormat(String),
    #[error("signature does not match public_key")]
    Mismatch,
}

/// The RLP encoding the signature covers.
pub fn rlp_encode(message: &LoginMessage) -> Vec<u8> {
    let mut s = rlp::RlpStream::new_list(6);
    s.append(&message.challenge.as_str());
    s.append(&message.prover_version.as_str());
    s.append(&message.prover_name.as_str());
    s.append(&message.prover_provider_type);
    // Go's rlp encodes []uint8 as a byte string, not as a list of integers.
    s.append(&message.prover_types.as_slice());
    s.begin_list(message.vks.len());
    for vk in &message.vks {
        s.append(&vk.as_str());
    }
    s.out().to_vec()
}

/// keccak256(rlp(message)): the 32 bytes that are signed.
pub fn message_hash(message: &LoginMessage) -> [u8; 32] {
    Keccak256::digest(rlp_encode(message)).into()
}

/// A signing key from 32 bytes of hex (with or without `0x`).
pub fn key_from_hex(hex_key: &str) -> Result<SigningKey, LoginError> {
    let bytes = hex::decode(hex_key.trim().trim_start_matches("0x"))
        .map_err(|e| LoginError::Key(e.to_string()))?;
    SigningKey::from_slice(&bytes)
        .map_err(|_| LoginError::Key("not a valid 32-byte secp256k1 secret".into()))
}

/// Compressed public key, lowercase hex, no `0x`.
pub fn public_key_hex(key: &SigningKey) -> String {
    hex::encode(key.verifying_key().to_encoded_point(true).as_bytes())
}

/// The login request body for `message`, signed with `key`.
pub fn sign_login(key: &SigningKey, message: LoginMessage) -> Result<LoginRequest, LoginError> {
    let hash = message_hash(&message);
    let (sig, recid) = key
        .sign_prehash_recoverable(&hash)
        .map_err(|e| LoginError::Key(e.to_string()))?;
    // k256 signs with RFC 6979 and returns low-s signatures already; normalise defensively and
    // flip the recovery parity if s was negated.
    let (sig, recid) = match sig.normalize_s() {
        Some(low) => (
            low,
            RecoveryId::new(!recid.is_y_odd(), recid.is_x_reduced()),
        ),
        None => (sig, recid),
    };
    let mut bytes = sig.to_bytes().to_vec();
    bytes.push(recid.to_byte());
    Ok(LoginRequest {
        message,
        public_key: public_key_hex(key),
        signature: format!("0x{}", hex::encode(bytes)),
    })
}

/// Checks that `request.signature` is `request.public_key`'s signature of the message, as the
/// coordinator does before anything else about a login.
pub fn verify_login(request: &LoginRequest) -> Result<(), LoginError> {
    let pk_bytes =
        hex::decode(&request.public_key).map_err(|e| LoginError::PublicKey(e.to_string()))?;
    if pk_bytes.len() != 33 {
        return Err(LoginError::PublicKey(format!("{} bytes", pk_bytes.len())));
    }
    let claimed = VerifyingKey::from_sec1_bytes(&pk_bytes)
        .map_err(|e| LoginError::PublicKey(e.to_string()))?;
    let sig_hex = request
        .signature
        .strip_prefix("0x")
        .ok_or_else(|| LoginError::SignatureFormat("missing 0x".into()))?;
    let sig = hex::decode(sig_hex).map_err(|e| LoginError::SignatureFormat(e.to_string()))?;
    if sig.len() != 65 || sig[64] > 1 {
        return Err(LoginError::SignatureFormat(format!(
            "{} bytes, v = {:?}",
            sig.len(),
            sig.last()
        )));
    }
    let signature = Signature::from_slice(&sig[..64])
        .map_err(|e| LoginError::SignatureFormat(e.to_string()))?;
    if signature.normalize_s().is_some() {
        return Err(LoginError::SignatureFormat("high-s signature".into()));
    }
    let recid = RecoveryId::from_byte(sig[64])
        .ok_or_else(|| LoginError::SignatureFormat("bad v".into()))?;
    let recovered =
        VerifyingKey::recover_from_prehash(&message_hash(&request.message), &signature, recid)
            .map_err(|_| LoginError::Mismatch)?;
    if recovered == claimed {
        Ok(())
    } else {
        Err(LoginError::Mismatch)
    }
}
