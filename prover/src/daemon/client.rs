//! The coordinator client (HTTP API v1, see `protocol.md`): challenge → login, `get_task`,
//! `submit_proof`. Authenticated calls log in on first use and, on errcode 50001 (login token
//! expired) or 50000 (token refused, e.g. the coordinator's secret changed), log in again once and
//! retry the call.
//!
//! Errors are classified for the worker: [`ClientError::is_transient`] (the coordinator could not be
//! reached or answered garbage: retry with backoff, never drop anything) versus refusals with an
//! errcode. [`SubmitOutcome`] separates an accepted submission from a definitive refusal.
//!
//! A client may know several coordinator URLs (replicas sharing one database, see the coordinator
//! README): each call goes to the current one, and when it cannot be reached or answers a transient
//! error (transport, HTTP error, garbage, errcode 50000-range internal error) the call moves on to
//! the next URL at once, at most once round the list; the next call starts where the last one
//! succeeded. Login tokens are accepted by every replica of one coordinator, so the token is kept.
//!
//! The coordinator is not trusted to be well-behaved: a reply larger than the client's limit
//! ([`DEFAULT_MAX_REPLY_BYTES`] unless set) is refused before it is read whole (by its
//! `Content-Length`, or as it arrives), redirects are not followed (a redirect would send the
//! signed login or the bearer token elsewhere), and the `errmsg` of a reply is cut to
//! [`MAX_ERRMSG_CHARS`] characters with its control characters escaped before it is logged or
//! kept.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k256::ecdsa::SigningKey;
use prover_core::wire::{
    errcode, Envelope, GetTaskRequest, LoginMessage, SubmitProofRequest, Task, TokenReply, API_BASE,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Mutex;

/// The largest reply a client reads by default (64 MiB): a task carries its inputs (a batch task
/// its chunk proofs), tens of kilobytes to a few megabytes.
pub const DEFAULT_MAX_REPLY_BYTES: usize = 64 << 20;

/// Characters of a coordinator's `errmsg` kept (the rest is cut, with a note of how much).
pub const MAX_ERRMSG_CHARS: usize = 512;

/// Errors of one coordinator call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("coordinator {url} unreachable: {source}")]
    Transport { url: String, source: reqwest::Error },
    #[error("coordinator {url} answered HTTP {status}")]
    Http { url: String, status: u16 },
    #[error("coordinator {url} sent a reply that is not an API v1 envelope: {reason}")]
    Decode { url: String, reason: String },
    #[error("coordinator refused the login (errcode {errcode}): {errmsg}{hint}")]
    Login {
        errcode: i32,
        errmsg: String,
        hint: &'static str,
    },
    #[error("coordinator refused {call} (errcode {errcode}): {errmsg}")]
    Refused {
        call: &'static str,
        errcode: i32,
        errmsg: String,
    },
    #[error("signing the login: {0}")]
    Sign(#[from] prover_core::login::LoginError),
}

impl ClientError {
    /// True when the coordinator could not be reached or did not answer properly: worth retrying
    /// later with the same request.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ClientError::Transport { .. } | ClientError::Http { .. } | ClientError::Decode { .. }
        ) || matches!(self, ClientError::Refused { errcode, .. } if *errcode == errcode::INTERNAL)
    }
}

/// What the coordinator said to a submission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmitOutcome {
    /// errcode 0.
    Accepted,
    /// The coordinator handled this submission and will never accept it (errcode 20003: already
    /// submitted, task already verified, unknown assignment, invalid proof; or 20001: malformed).
    /// Sending the same body again cannot succeed: the worker deletes it.
    Refused { errcode: i32, errmsg: String },
}

/// Who logs in and what it announces.
#[derive(Clone)]
pub struct LoginInfo {
    pub key: SigningKey,
    pub prover_name: String,
    pub prover_version: String,
    pub provider_type: u8,
    pub prover_types: Vec<u8>,
    pub vks: Vec<String>,
}

/// One worker's connection to the coordinator (one or several replicas of it).
pub struct CoordinatorClient {
    http: reqwest::Client,
    /// API roots (`…/coordinator/v1`), in the order given; never empty.
    bases: Vec<String>,
    /// Index into `bases` of the replica calls go to.
    current: AtomicUsize,
    login: LoginInfo,
    token: Mutex<Option<String>>,
    /// Replies larger than this are refused (a transient error: the call is retried).
    max_reply: usize,
}

impl CoordinatorClient {
    /// `base_url` without `/coordinator/v1`.
    pub fn new(
        base_url: &str,
        request_timeout: Duration,
        login: LoginInfo,
    ) -> Result<Self, ClientError> {
        Self::with_failover(&[base_url], request_timeout, login)
    }

    /// Several base URLs of one coordinator's replicas (the first is used first); see the module
    /// documentation for when a call moves to the next. An empty list means the default URL,
    /// `http://127.0.0.1:8390` (the configuration always gives at least `base_url`).
    pub fn with_failover(
        base_urls: &[impl AsRef<str>],
        request_timeout: Duration,
        login: LoginInfo,
    ) -> Result<Self, ClientError> {
        let mut bases: Vec<String> = base_urls
            .iter()
            .map(|u| format!("{}{API_BASE}", u.as_ref().trim_end_matches('/')))
            .collect();
        if bases.is_empty() {
            bases.push(format!("http://127.0.0.1:8390{API_BASE}"));
        }
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|source| ClientError::Transport {
                url: bases[0].clone(),
                source,
            })?;
        Ok(Self {
            http,
            bases,
            current: AtomicUsize::new(0),
            login,
            token: Mutex::new(None),
            max_reply: DEFAULT_MAX_REPLY_BYTES,
        })
    }

    /// Sets the largest reply this client reads (at least 1 byte).
    pub fn with_max_reply_bytes(mut self, bytes: usize) -> Self {
        self.max_reply = bytes.max(1);
        self
    }

    /// The API root calls go to now.
    pub fn current_url(&self) -> &str {
        &self.bases[self.current.load(Ordering::Relaxed) % self.bases.len()]
    }

    /// Runs `call` against the current replica, then against the next ones while it fails
    /// transiently (at most once round the list). `call` gets the index into `bases` and whether
    /// this is the last try. The last error is returned.
    async fn failover<T, F, Fut>(&self, what: &'static str, call: F) -> Result<T, ClientError>
    where
        F: Fn(usize, bool) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let n = self.bases.len();
        let mut tries = 0;
        loop {
            let i = self.current.load(Ordering::Relaxed) % n;
            match call(i, tries + 1 >= n).await {
                Err(e) if e.is_transient() && tries + 1 < n => {
                    let next = (i + 1) % n;
                    tracing::warn!(call = what, error = %e, next = %self.bases[next], "coordinator replica failed; trying the next one");
                    // Another call may have moved on already; then follow it.
                    let _ = self.current.compare_exchange(
                        i,
                        next,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    /// The task types this client asks for.
    pub fn task_types(&self) -> &[u8] {
        &self.login.prover_types
    }

    /// Challenge, then a signed login (both at one replica); keeps the login token.
    pub async fn login(&self) -> Result<(), ClientError> {
        self.failover("login", |i, _| self.login_at(&self.bases[i]))
            .await
    }

    async fn login_at(&self, base: &str) -> Result<(), ClientError> {
        let url = format!("{base}/challenge");
        let challenge: Envelope<TokenReply> =
            decode(&url, self.http.get(&url).send().await, self.max_reply)?.await?;
        let challenge = match (challenge.errcode, challenge.data) {
            (errcode::SUCCESS, Some(data)) => data.token,
            (code, _) => {
                return Err(ClientError::Refused {
                    call: "challenge",
                    errcode: code,
                    errmsg: challenge.errmsg,
                })
            }
        };
        let message = LoginMessage {
            challenge: challenge.clone(),
            prover_version: self.login.prover_version.clone(),
            prover_name: self.login.prover_name.clone(),
            prover_provider_type: self.login.provider_type,
            prover_types: self.login.prover_types.clone(),
            vks: self.login.vks.clone(),
        };
        let body = prover_core::login::sign_login(&self.login.key, message)?;
        let url = format!("{base}/login");
        let reply: Envelope<TokenReply> = decode(
            &url,
            self.http
                .post(&url)
                .bearer_auth(&challenge)
                .json(&body)
                .send()
                .await,
            self.max_reply,
        )?
        .await?;
        match (reply.errcode, reply.data) {
            (errcode::SUCCESS, Some(data)) => {
                *self.token.lock().await = Some(data.token);
                Ok(())
            }
            (errcode::INTERNAL, _) => Err(ClientError::Refused {
                call: "login",
                errcode: errcode::INTERNAL,
                errmsg: reply.errmsg,
            }),
            (code, _) => {
                let lower = reply.errmsg.to_ascii_lowercase();
                let hint = if lower.contains("version") {
                    " (this prover's version is refused: set coordinator.prover_version or upgrade the prover)"
                } else if lower.contains("vk") {
                    " (the coordinator does not accept this node's verifying keys: check the circuits section and the key cache)"
                } else {
                    ""
                };
                Err(ClientError::Login {
                    errcode: code,
                    errmsg: reply.errmsg,
                    hint,
                })
            }
        }
    }

    /// Pulls one task; `None` when the coordinator has no work (errcode 20004).
    pub async fn get_task(&self) -> Result<Option<Task>, ClientError> {
        let body = GetTaskRequest {
            task_types: self.login.prover_types.clone(),
            prover_height: None,
        };
        let reply: Envelope<Task> = self.call("get_task", &body).await?;
        match (reply.errcode, reply.data) {
            (errcode::SUCCESS, Some(task)) => Ok(Some(task)),
            (errcode::NO_TASK, _) => Ok(None),
            (errcode::SUCCESS, None) => Err(ClientError::Decode {
                url: format!("{}/get_task", self.current_url()),
                reason: "errcode 0 without a task".into(),
            }),
            (code, _) => Err(ClientError::Refused {
                call: "get_task",
                errcode: code,
                errmsg: reply.errmsg,
            }),
        }
    }

    /// Submits a proof or a failure report.
    pub async fn submit_proof(
        &self,
        body: &SubmitProofRequest,
    ) -> Result<SubmitOutcome, ClientError> {
        let reply: Envelope<serde_json::Value> = self.call("submit_proof", body).await?;
        match reply.errcode {
            errcode::SUCCESS => Ok(SubmitOutcome::Accepted),
            code @ (errcode::PROOF_FAILURE | errcode::INVALID_PARAMETER) => {
                Ok(SubmitOutcome::Refused {
                    errcode: code,
                    errmsg: reply.errmsg,
                })
            }
            code => Err(ClientError::Refused {
                call: "submit_proof",
                errcode: code,
                errmsg: reply.errmsg,
            }),
        }
    }

    /// An authenticated POST, with failover: a reply with errcode INTERNAL (the replica's
    /// storage failed) moves on to the next replica too, and is returned as is from the last.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        route: &'static str,
        body: &Req,
    ) -> Result<Envelope<Resp>, ClientError> {
        // All tries but the last turn INTERNAL into an error, so that `failover` moves on; the
        // last returns the envelope for the caller to classify.
        self.failover(route, |i, last| async move {
            let reply = self.call_at(&self.bases[i], route, body).await?;
            if reply.errcode == errcode::INTERNAL && !last {
                return Err(ClientError::Refused {
                    call: route,
                    errcode: reply.errcode,
                    errmsg: reply.errmsg,
                });
            }
            Ok(reply)
        })
        .await
    }

    /// One authenticated POST at one replica: logs in if needed; on 50001/50000 logs in again
    /// once and retries.
    async fn call_at<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        base: &str,
        route: &'static str,
        body: &Req,
    ) -> Result<Envelope<Resp>, ClientError> {
        let mut relogged = false;
        loop {
            let token = self.token_at(base).await?;
            let url = format!("{base}/{route}");
            let reply: Envelope<Resp> = decode(
                &url,
                self.http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(body)
                    .send()
                    .await,
                self.max_reply,
            )?
            .await?;
            if (reply.errcode == errcode::JWT_EXPIRED || reply.errcode == errcode::JWT) && !relogged
            {
                tracing::info!(route, errcode = reply.errcode, errmsg = %reply.errmsg, "login token refused; logging in again");
                relogged = true;
                *self.token.lock().await = None;
                continue;
            }
            return Ok(reply);
        }
    }

    async fn token_at(&self, base: &str) -> Result<String, ClientError> {
        if let Some(t) = self.token.lock().await.clone() {
            return Ok(t);
        }
        self.login_at(base).await?;
        self.token
            .lock()
            .await
            .clone()
            .ok_or_else(|| ClientError::Decode {
                url: format!("{base}/login"),
                reason: "login succeeded without a token".into(),
            })
    }
}

/// Checks the transport result, the HTTP status and the announced length; returns the body
/// decoder, which reads at most `max` bytes and cleans the envelope's `errmsg`.
fn decode<T: DeserializeOwned>(
    url: &str,
    sent: Result<reqwest::Response, reqwest::Error>,
    max: usize,
) -> Result<impl std::future::Future<Output = Result<Envelope<T>, ClientError>>, ClientError> {
    let mut response = sent.map_err(|source| ClientError::Transport {
        url: url.into(),
        source,
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(ClientError::Http {
            url: url.into(),
            status: status.as_u16(),
        });
    }
    let too_large = move |url: &str, what: String| ClientError::Decode {
        url: url.into(),
        reason: format!("{what}, more than this node reads ({max} bytes)"),
    };
    if let Some(len) = response.content_length() {
        if len > max as u64 {
            return Err(too_large(url, format!("the reply announces {len} bytes")));
        }
    }
    let url = url.to_string();
    Ok(async move {
        let mut bytes = Vec::new();
        while let Some(piece) = response
            .chunk()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })?
        {
            if bytes.len() + piece.len() > max {
                return Err(too_large(&url, "the reply is larger".into()));
            }
            bytes.extend_from_slice(&piece);
        }
        let mut envelope: Envelope<T> =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
                url,
                reason: e.to_string(),
            })?;
        envelope.errmsg = remote_text(&envelope.errmsg);
        Ok(envelope)
    })
}

/// A coordinator's free text made safe to log: at most [`MAX_ERRMSG_CHARS`] characters, control
/// characters (line breaks, terminal escapes) written as escapes.
pub fn remote_text(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().take(MAX_ERRMSG_CHARS) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    let total = text.chars().count();
    if total > MAX_ERRMSG_CHARS {
        out.push_str(&format!("… ({} more characters)", total - MAX_ERRMSG_CHARS));
    }
    out
}
