//! A prover's signed login over HTTP (challenge, secp256k1 signature, login token), returning
//! errors instead of panicking: for tests that log in at replicas which may be dead, and for the
//! load example (which includes this file).

use k256::ecdsa::SigningKey;
use prover_core::login::sign_login;
use prover_core::wire::{Envelope, LoginMessage, TokenReply};

/// Logs in at `base` (without `/coordinator/v1`) as a chunk prover with verifying key `vk`;
/// the login token.
pub async fn signed_login(
    http: &reqwest::Client,
    base: &str,
    key: &SigningKey,
    name: &str,
    vk: &str,
) -> Result<String, String> {
    let ch: Envelope<TokenReply> = http
        .get(format!("{base}/coordinator/v1/challenge"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let challenge = ch.data.ok_or(ch.errmsg)?.token;
    let req = sign_login(
        key,
        LoginMessage {
            challenge: challenge.clone(),
            prover_version: "0.1.0".into(),
            prover_name: name.into(),
            prover_provider_type: 1,
            prover_types: vec![1],
            vks: vec![vk.into()],
        },
    )
    .map_err(|e| e.to_string())?;
    let env: Envelope<TokenReply> = http
        .post(format!("{base}/coordinator/v1/login"))
        .bearer_auth(&challenge)
        .json(&req)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    Ok(env.data.ok_or(env.errmsg)?.token)
}
