//! Challenge and login tokens (HS256 JWTs) and the login checks that do not need the store.

use base64::Engine as _;
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Claims of a challenge token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChallengeClaims {
    /// 32 random bytes, base64url without padding.
    pub random: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
}

/// Claims of a login token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoginClaims {
    pub public_key: String,
    pub prover_name: String,
    pub prover_version: String,
    /// Prover types declared at login (our addition).
    #[serde(default)]
    pub prover_types: Vec<u8>,
    /// Task types this prover may be handed, from its prover types and vks (our addition; the
    /// scheduler needs them).
    #[serde(default)]
    pub task_types: Vec<u8>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
}

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Issues and checks tokens with one secret.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Tokens {
    pub fn new(secret: &str) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
        }
    }

    pub fn issue<C: Serialize>(&self, claims: &C) -> Result<String, TokenError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| TokenError::Invalid(format!("cannot sign token: {e}")))
    }

    pub fn check<C: DeserializeOwned>(&self, token: &str) -> Result<C, TokenError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        jsonwebtoken::decode::<C>(token, &self.decoding, &v)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid(e.to_string()),
            })
    }

    /// A fresh challenge token and its claims.
    pub fn challenge(
        &self,
        now_sec: u64,
        lifetime_sec: u64,
    ) -> Result<(String, ChallengeClaims), TokenError> {
        let mut b = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut b);
        let claims = ChallengeClaims {
            random: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b),
            exp: now_sec + lifetime_sec,
        };
        Ok((self.issue(&claims)?, claims))
    }
}

/// Leading numeric components of a version string: `v4.4.45-abc` → [4, 4, 45].
/// The numbers of a version string (`v1.2.3-rc1` → 1, 2, 3; a part without digits is 0), or
/// `None` when a number does not fit in 64 bits: an overflowing version is refused, never read
/// as 0.
pub fn version_numbers(v: &str) -> Option<Vec<u64>> {
    let v = v.trim().trim_start_matches('v');
    let core = v.split(['-', '+']).next().unwrap_or("");
    core.split('.')
        .map(|part| {
            let digits: String = part.chars().take_while(|c| c.is_ascii_digit()).collect();
            if digits.is_empty() {
                Some(0)
            } else {
                digits.parse().ok()
            }
        })
        .collect()
}

/// True if `version` is not below `minimum` (an empty minimum accepts everything); false when
/// either has a number that does not fit in 64 bits.
pub fn version_ok(version: &str, minimum: &str) -> bool {
    if minimum.trim().is_empty() {
        return version_numbers(version).is_some();
    }
    let (Some(mut a), Some(mut b)) = (version_numbers(version), version_numbers(minimum)) else {
        return false;
    };
    let n = a.len().max(b.len());
    a.resize(n, 0);
    b.resize(n, 0);
    a >= b
}

/// The verifying keys the coordinator accepts.
#[derive(Clone, Debug)]
pub struct AcceptedVks {
    pub chunk: String,
    /// None when batch creation is disabled.
    pub batch: Option<String>,
    /// None when bundle creation is disabled.
    pub bundle: Option<String>,
}

/// Prover types of the login message, as in Scroll's coordinator today.
pub mod prover_type {
    /// Proves chunk tasks (type 1).
    pub const CHUNK: u8 = 1;
    /// Proves batch tasks (type 2).
    pub const BATCH: u8 = 2;
    /// Scroll's OpenVM prover: takes every task type its `get_task` asks for (chunk, batch,
    /// bundle), provided it has the circuit's key.
    pub const OPENVM: u8 = 3;
}

/// Most `prover_types` a login may declare (there are three).
pub const MAX_PROVER_TYPES: usize = 8;
/// Most `vks` a login may present (a prover holds one or a few keys per type).
pub const MAX_VKS: usize = 16;

/// The vk rule at login; returns the task types this prover may be handed.
///
/// - type 1 (chunk): our chunk vk must be among `vks`;
/// - type 2 (batch): our batch vk must be among `vks` when batch tasks are enabled; otherwise the
///   type is tolerated (a legacy Scroll prover) and brings no tasks;
/// - type 3 (OpenVM, as in Scroll): at least one of our vks must be among `vks`; it may be handed
///   every task type whose vk it presented (bundle tasks, task type 3, only to such a prover).
///
/// A vk we do not know is refused unless the prover declared type 2 with batch disabled or type 3
/// (it may hold keys for circuits we do not serve, as Scroll's coordinator allows for its own).
pub fn check_vks(
    accepted: &AcceptedVks,
    prover_types: &[u8],
    vks: &[String],
) -> Result<Vec<u8>, String> {
    if prover_types.is_empty() {
        return Err("prover_types is empty".into());
    }
    // Bounded before anything is compared: each type looks through the vks.
    if prover_types.len() > MAX_PROVER_TYPES {
        return Err(format!(
            "prover_types has {} entries; at most {MAX_PROVER_TYPES}",
            prover_types.len()
        ));
    }
    if vks.len() > MAX_VKS {
        return Err(format!("vks has {} entries; at most {MAX_VKS}", vks.len()));
    }
    let has = |vk: &String| vks.contains(vk);
    let mut task_types = Vec::new();
    let mut tolerate_unknown = false;
    for t in prover_types {
        match (*t, &accepted.batch) {
            (prover_type::CHUNK, _) => {
                if !has(&accepted.chunk) {
                    return Err(format!(
                        "incompatible vk: prover type 1 (chunk) needs this coordinator's chunk vk {}",
                        accepted.chunk
                    ));
                }
                task_types.push(1);
            }
            (prover_type::BATCH, Some(b)) => {
                if !has(b) {
                    return Err(format!(
                        "incompatible vk: prover type 2 (batch) needs this coordinator's batch vk {b}"
                    ));
                }
                task_types.push(2);
            }
            (prover_type::BATCH, None) => tolerate_unknown = true,
            (prover_type::OPENVM, batch) => {
                tolerate_unknown = true;
                let before = task_types.len();
                if has(&accepted.chunk) {
                    task_types.push(1);
                }
                if batch.as_ref().is_some_and(has) {
                    task_types.push(2);
                }
                if accepted.bundle.as_ref().is_some_and(has) {
                    task_types.push(3);
                }
                if task_types.len() == before {
                    return Err(format!(
                        "incompatible vk: prover type 3 (OpenVM) must present the vk of a circuit \
                         this coordinator serves (chunk {}{}{})",
                        accepted.chunk,
                        batch
                            .as_ref()
                            .map(|b| format!(", batch {b}"))
                            .unwrap_or_default(),
                        accepted
                            .bundle
                            .as_ref()
                            .map(|b| format!(", bundle {b}"))
                            .unwrap_or_default()
                    ));
                }
            }
            (other, _) => {
                return Err(format!(
                    "unknown prover type {other} (1 chunk, 2 batch, 3 OpenVM)"
                ))
            }
        }
    }
    if !tolerate_unknown {
        if let Some(vk) = vks.iter().find(|vk| {
            **vk != accepted.chunk
                && Some(*vk) != accepted.batch.as_ref()
                && Some(*vk) != accepted.bundle.as_ref()
        }) {
            return Err(format!(
                "incompatible vk: {vk} is not a verifying key of this coordinator"
            ));
        }
    }
    task_types.sort_unstable();
    task_types.dedup();
    Ok(task_types)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vks(bundle: bool) -> AcceptedVks {
        AcceptedVks {
            chunk: "chunk-vk".into(),
            batch: Some("batch-vk".into()),
            bundle: bundle.then(|| "bundle-vk".into()),
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn bundle_tasks_go_to_type_3_provers_presenting_the_bundle_vk() {
        let accepted = vks(true);
        assert_eq!(
            check_vks(&accepted, &[3], &strings(&["bundle-vk"])),
            Ok(vec![3])
        );
        assert_eq!(
            check_vks(
                &accepted,
                &[1, 2, 3],
                &strings(&["chunk-vk", "batch-vk", "bundle-vk"])
            ),
            Ok(vec![1, 2, 3])
        );
        // Without the bundle vk, no bundle tasks.
        assert_eq!(
            check_vks(&accepted, &[3], &strings(&["chunk-vk"])),
            Ok(vec![1])
        );
        // A bundle vk presented to a coordinator without bundles is an unknown vk: refused for
        // types 1 and 2, tolerated next to one of ours for type 3.
        let without = vks(false);
        assert!(check_vks(&without, &[1], &strings(&["chunk-vk", "bundle-vk"])).is_err());
        assert_eq!(
            check_vks(&without, &[3], &strings(&["chunk-vk", "bundle-vk"])),
            Ok(vec![1])
        );
        let err = check_vks(&without, &[3], &strings(&["bundle-vk"])).unwrap_err();
        assert!(err.contains("must present the vk"), "{err}");
    }

    #[test]
    fn long_lists_are_refused_before_they_are_compared() {
        let accepted = vks(true);
        let many_vks: Vec<String> = (0..=MAX_VKS).map(|i| format!("vk-{i}")).collect();
        let err = check_vks(&accepted, &[1], &many_vks).unwrap_err();
        assert!(err.contains("at most 16"), "{err}");
        let many_types = vec![1u8; MAX_PROVER_TYPES + 1];
        let err = check_vks(&accepted, &many_types, &strings(&["chunk-vk"])).unwrap_err();
        assert!(err.contains("at most 8"), "{err}");
        // At the limits: accepted, each task type once.
        let types = vec![1u8; MAX_PROVER_TYPES];
        let mut keys: Vec<String> = (1..MAX_VKS).map(|i| format!("vk-{i}")).collect();
        keys.push("chunk-vk".into());
        let err = check_vks(&accepted, &types, &keys).unwrap_err();
        assert!(err.contains("not a verifying key"), "{err}");
        assert_eq!(
            check_vks(&accepted, &types, &strings(&["chunk-vk"])),
            Ok(vec![1])
        );
    }
}
