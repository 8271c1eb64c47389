//! The HTTP API: `/coordinator/v1/*`, `/health`, `/metrics`, `/admin/v1/*`. Every reply carries
//! the envelope; bad input of any kind is an errcode with a clear errmsg. Final answers are HTTP
//! 200 (as Scroll's coordinator). Transient ones — an internal error, or a submission of the same
//! assignment already being verified — are HTTP 503 with `Retry-After` and errcode 500: a stock
//! client (scroll-proving-sdk retries only on HTTP 5xx and drops its proof on any non-zero errcode
//! in a 200) then keeps its proof and retries, and so does our node.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prover_core::core::expected_statement;
use prover_core::login::verify_login;
use prover_core::wire::{
    errcode, proof_status, CircuitSpec, Envelope, GetTaskRequest, LoginRequest, ProofPayload,
    SubmitProofRequest, TaskPayload, TokenReply, API_BASE,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::auth::{version_ok, ChallengeClaims, LoginClaims, TokenError};
use crate::metrics::Metrics;
use crate::store::{type_name, AssignOutcome, ProverIdentity, SubmitError};
use crate::{
    blocking, now_ms, App, BlockRequest, EnqueueReply, EnqueueRequest, PruneRequest, RequeueRequest,
};

type AppState = State<Arc<App>>;
/// Request bodies are read by the handlers themselves, after the caller is authenticated, with a
/// limit per route: nothing an unauthenticated client sends is buffered.
type Body = axum::body::Body;

/// Body limit of login, get_task and the small admin calls (their bodies are a few hundred
/// bytes); only submit_proof and admin enqueue get `max_body_bytes`.
pub const SMALL_BODY_LIMIT: usize = 64 << 10;

/// Longest `uuid` or `task_id` a submission may carry (bytes): Scroll's are 36 and 66.
pub const MAX_SUBMIT_ID: usize = 256;

/// Longest `prover_name` accepted at login (bytes).
pub const MAX_PROVER_NAME: usize = 128;

/// Longest `failure_msg` stored (bytes); a longer one is truncated.
pub const MAX_FAILURE_MSG: usize = 4096;

/// Most random transfers one admin enqueue may ask for.
pub const MAX_RANDOM_TRANSFERS: usize = 10_000;

pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(&format!("{API_BASE}/challenge"), get(challenge))
        .route(&format!("{API_BASE}/login"), post(login))
        .route(&format!("{API_BASE}/get_task"), post(get_task))
        .route(&format!("{API_BASE}/submit_proof"), post(submit_proof))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/admin/v1/enqueue", post(admin_enqueue))
        .route("/admin/v1/status", get(admin_status))
        .route("/admin/v1/block", post(admin_block))
        .route("/admin/v1/unblock", post(admin_unblock))
        .route("/admin/v1/requeue", post(admin_requeue))
        .route("/admin/v1/prune", post(admin_prune))
        // Only matched routes are timed, so the endpoint label is one of the paths above.
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), timed))
        .fallback(not_found)
        .with_state(app)
}

/// Times a request to a route into `request_seconds`.
async fn timed(
    State(app): AppState,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = Instant::now();
    let endpoint = req.uri().path().to_string();
    let response = next.run(req).await;
    app.metrics
        .observe_request(&endpoint, started.elapsed().as_secs_f64());
    response
}

fn ok<T: Serialize>(data: T) -> Response {
    Json(Envelope::ok(data)).into_response()
}

fn err(code: i32, msg: impl Into<String>) -> Response {
    Json(Envelope::<()>::err(code, msg)).into_response()
}

/// Membership of one item in a set of items in progress (an assignment being submitted, a key
/// sending a large body), until dropped: a second claim of the same item is refused.
struct Member<'a> {
    set: &'a Mutex<HashSet<String>>,
    item: String,
}

impl<'a> Member<'a> {
    fn claim(set: &'a Mutex<HashSet<String>>, item: &str) -> Option<Self> {
        let mut items = set.lock().unwrap_or_else(|p| p.into_inner());
        items.insert(item.to_string()).then(|| Member {
            set,
            item: item.to_string(),
        })
    }
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        let mut items = self.set.lock().unwrap_or_else(|p| p.into_inner());
        items.remove(&self.item);
    }
}

/// Leave to read one `submit_proof` body over [`SMALL_BODY_LIMIT`]: the key's only one at a
/// time, and its bytes out of the coordinator's budget (`large_body_budget_bytes`). Released
/// on drop.
struct LargeBody<'a> {
    _key: Member<'a>,
    _budget: tokio::sync::OwnedSemaphorePermit,
}

impl<'a> LargeBody<'a> {
    /// Leave for up to `bytes`; the reason to retry later when the key is sending one already
    /// or the budget is spent (never waits).
    fn claim(app: &'a App, key: &str, bytes: usize) -> Result<Self, &'static str> {
        let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        let key = Member::claim(&app.large_bodies, key)
            .ok_or("this key is sending another large submission; retry when it is done")?;
        let budget = app
            .large_body_budget
            .clone()
            .try_acquire_many_owned(kib)
            .map_err(|_| {
                "the coordinator is reading as many large submissions as it may; retry later"
            })?;
        Ok(Self {
            _key: key,
            _budget: budget,
        })
    }
}

/// Why a submitted proof was not accepted.
enum Refusal {
    /// The proof is at fault: counted against the prover, errcode 20003.
    Invalid(String),
    /// The coordinator is at fault: nothing recorded, errcode 500 (the prover retries).
    Internal(String),
}

impl From<String> for Refusal {
    fn from(reason: String) -> Self {
        Refusal::Invalid(reason)
    }
}

/// Seconds a client is asked to wait before retrying a transient failure.
const RETRY_AFTER_SEC: u64 = 5;

/// A transient failure: HTTP 503 with `Retry-After` and errcode 500 (see the module doc).
fn retry_later(msg: impl Into<String>) -> Response {
    retry_after(RETRY_AFTER_SEC, msg)
}

/// The same, asking the client to wait `secs` seconds.
fn retry_after(secs: u64, msg: impl Into<String>) -> Response {
    (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, secs.to_string())],
        Json(Envelope::<()>::err(errcode::INTERNAL, msg)),
    )
        .into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!("internal error: {e}");
    retry_later(format!("internal error: {e}"))
}

/// An error reply before a handler's real work (bad body, bad token).
pub(crate) struct ApiError(i32, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        err(self.0, self.1)
    }
}

impl From<ApiError> for Response {
    fn from(e: ApiError) -> Self {
        e.into_response()
    }
}

async fn not_found() -> Response {
    err(errcode::INVALID_PARAMETER, "no such route")
}

/// How far past its limit a body is still read (and thrown away) before the refusal is sent, at
/// most: a client still writing when the server answers and closes sees a broken pipe instead of
/// the reply, so a body a little too large is received whole and gets its clear 20001. The slack
/// is the limit itself up to this (a 64 KiB route reads at most 128 KiB); larger bodies are
/// refused at once (the connection closes under the client).
const OVERSIZE_DRAIN: usize = 256 * 1024;

/// The request's `Content-Length`, when it has a valid one.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// The most [`parse`] reads of a body limited to `limit` (an oversized body is drained up to
/// this, to answer it).
fn read_cap(limit: usize) -> usize {
    limit.saturating_add(limit.min(OVERSIZE_DRAIN))
}

/// Reads and decodes a JSON body of at most `limit` bytes. Call it only once the caller is
/// authenticated. A declared `Content-Length` over the limit by more than the slack (see
/// [`OVERSIZE_DRAIN`]) is refused before anything is read; every failure (too large, unreadable, malformed, missing
/// field) is 20001.
async fn parse<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<T, ApiError> {
    let too_large = || {
        ApiError(
            errcode::INVALID_PARAMETER,
            format!("request body too large (limit {limit} bytes)"),
        )
    };
    let declared = content_length(headers);
    let read_cap = read_cap(limit);
    if declared.is_some_and(|n| n > read_cap as u64) {
        return Err(too_large());
    }
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, read_cap))
        .await
        .map_err(|_| {
            ApiError(
                errcode::INVALID_PARAMETER,
                format!(
                    "request body not received within {} ms",
                    timeout.as_millis()
                ),
            )
        })?;
    let bytes = read.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        {
            too_large()
        } else {
            ApiError(
                errcode::INVALID_PARAMETER,
                format!("cannot read request body: {e}"),
            )
        }
    })?;
    if bytes.len() > limit {
        return Err(too_large());
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError(
            errcode::INVALID_PARAMETER,
            format!("invalid request JSON: {e}"),
        )
    })
}

/// `s` with control characters escaped (`\n`, `\u{1b}`, ...), for logs and stored messages:
/// text from a prover never forges a log line or reaches a terminal raw.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// At most `max` bytes of `s` (cut at a character boundary), saying how long it was.
pub fn truncated(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… (truncated from {} bytes)", &s[..end], s.len())
}

/// A public key as login stores it: trimmed, lower-case hex (a `0x` prefix dropped).
fn normalize_key(key: &str) -> Result<String, ApiError> {
    let k = key.trim();
    let k = k
        .strip_prefix("0x")
        .or_else(|| k.strip_prefix("0X"))
        .unwrap_or(k);
    if k.is_empty() || k.len() > 130 || !k.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError(
            errcode::INVALID_PARAMETER,
            "public_key must be the prover's public key in hex".into(),
        ));
    }
    Ok(k.to_ascii_lowercase())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn token_error(what: &str, e: TokenError) -> ApiError {
    match e {
        TokenError::Expired => ApiError(errcode::JWT_EXPIRED, format!("{what} expired")),
        TokenError::Invalid(m) => ApiError(errcode::JWT, format!("{what}: {m}")),
    }
}

/// The login claims of the request's bearer token.
fn authenticate(app: &App, headers: &HeaderMap) -> Result<LoginClaims, ApiError> {
    let token = bearer(headers).ok_or_else(|| {
        ApiError(
            errcode::JWT,
            "missing Authorization: Bearer <login token>".into(),
        )
    })?;
    app.tokens
        .check::<LoginClaims>(token)
        .map_err(|e| token_error("login token", e))
}

fn rfc3339(sec: u64) -> String {
    chrono::DateTime::from_timestamp(i64::try_from(sec).unwrap_or(i64::MAX), 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

async fn challenge(State(app): AppState) -> Response {
    let now = now_ms() / 1000;
    match app
        .tokens
        .challenge(now, app.config.auth.challenge_expire_sec)
    {
        Ok((token, claims)) => ok(TokenReply {
            time: rfc3339(claims.exp),
            token,
        }),
        Err(e) => internal(e),
    }
}

async fn login(
    State(app): AppState,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Before anything else: a client past its allowance costs no signature check, no write.
    if let Err(wait) = app.login_limit.check(remote.ip()) {
        Metrics::inc(&app.metrics.logins, &[("result", "limited")]);
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return retry_after(
            secs.max(1),
            format!(
                "too many logins from this address ({} a minute); retry in {secs} s",
                app.config.logins_per_minute_per_client
            ),
        );
    }
    let r = login_inner(&app, &headers, body).await;
    let result = if r.is_ok() { "ok" } else { "refused" };
    Metrics::inc(&app.metrics.logins, &[("result", result)]);
    r.unwrap_or_else(|e| e)
}

async fn login_inner(
    app: &Arc<App>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Response> {
    // The challenge token in the header is checked before the body is read.
    let Some(challenge) = bearer(headers) else {
        return Err(err(
            errcode::JWT,
            "missing Authorization: Bearer <challenge token>",
        ));
    };
    let claims: ChallengeClaims = app
        .tokens
        .check(challenge)
        .map_err(|e| token_error("challenge token", e))?;
    let req: LoginRequest = parse(
        headers,
        body,
        SMALL_BODY_LIMIT,
        app.config.http.body_timeout(),
    )
    .await?;
    let m = &req.message;
    if m.challenge != challenge {
        return Err(err(
            errcode::JWT,
            "the Authorization header must be \"Bearer \" + message.challenge",
        ));
    }
    if m.prover_name.len() > MAX_PROVER_NAME || m.prover_name.chars().any(char::is_control) {
        return Err(err(
            errcode::INVALID_PARAMETER,
            format!(
                "prover_name must be at most {MAX_PROVER_NAME} bytes without control characters"
            ),
        ));
    }
    verify_login(&req)
        .map_err(|e| err(errcode::INVALID_PARAMETER, format!("login signature: {e}")))?;
    if crate::auth::version_numbers(&m.prover_version).is_none() {
        return Err(err(
            errcode::INVALID_PARAMETER,
            format!(
                "prover_version {:?}: a version number does not fit in 64 bits",
                printable(&truncated(&m.prover_version, 64))
            ),
        ));
    }
    if !version_ok(&m.prover_version, &app.config.min_prover_version) {
        return Err(err(
            errcode::INVALID_PARAMETER,
            format!(
                "incompatible prover version. please upgrade (minimum {}, got {})",
                app.config.min_prover_version, m.prover_version
            ),
        ));
    }
    let task_types = crate::auth::check_vks(&app.vks, &m.prover_types, &m.vks)
        .map_err(|e| err(errcode::INVALID_PARAMETER, e))?;
    let a = app.clone();
    let nonce = claims.random.clone();
    let fresh = blocking(move || a.store.use_challenge(&nonce, claims.exp * 1000, now_ms()))
        .await
        .map_err(internal)?;
    if !fresh {
        return Err(err(
            errcode::JWT,
            "challenge token already used; get a new challenge",
        ));
    }
    let exp = now_ms() / 1000 + app.config.auth.login_expire_sec;
    let login = LoginClaims {
        // One identity per key, however the hex was cased.
        public_key: req.public_key.to_ascii_lowercase(),
        prover_name: m.prover_name.clone(),
        prover_version: m.prover_version.clone(),
        prover_types: m.prover_types.clone(),
        task_types,
        exp,
    };
    let token = app.tokens.issue(&login).map_err(internal)?;
    tracing::info!(prover = %printable(&m.prover_name), public_key = %printable(&req.public_key), "prover logged in");
    Ok(ok(TokenReply {
        time: rfc3339(exp),
        token,
    }))
}

async fn get_task(State(app): AppState, headers: HeaderMap, body: Body) -> Response {
    let claims = match authenticate(&app, &headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let req: GetTaskRequest = match parse(
        &headers,
        body,
        SMALL_BODY_LIMIT,
        app.config.http.body_timeout(),
    )
    .await
    {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    if req.task_types.is_empty() {
        return err(errcode::INVALID_PARAMETER, "task_types is empty");
    }
    let who = ProverIdentity {
        public_key: claims.public_key,
        prover_name: claims.prover_name,
        // The task types it may be handed (see `auth::check_vks`).
        prover_types: claims.task_types,
    };
    let a = app.clone();
    let r = blocking(move || a.store.assign(&who, &req.task_types, &a.policy, now_ms())).await;
    let (outcome, effects) = match r {
        Ok(v) => v,
        // The store failed (the database away, say): transient, as every storage error.
        Err(e) => return internal(format!("get_task: {e}")),
    };
    if effects.timed_out > 0 {
        app.metrics.timeouts.inc_by(effects.timed_out);
    }
    match outcome {
        AssignOutcome::Task { task, resent } => {
            let kind = type_name(task.task_type);
            let how = if resent { "resent" } else { "new" };
            Metrics::inc(&app.metrics.assignments, &[("type", &kind), ("kind", how)]);
            tracing::info!(task_id = %task.task_id, uuid = %task.uuid, task_type = %kind, resent, "task assigned");
            ok(task)
        }
        AssignOutcome::NoTask => err(errcode::NO_TASK, "no task available"),
        AssignOutcome::Blocked(m) | AssignOutcome::Busy(m) => err(errcode::GET_TASK_FAILURE, m),
    }
}

fn submit_error(e: SubmitError) -> Response {
    let code = match e {
        SubmitError::Mismatch(_) => errcode::INVALID_PARAMETER,
        _ => errcode::PROOF_FAILURE,
    };
    err(code, e.to_string())
}

async fn submit_proof(State(app): AppState, headers: HeaderMap, body: Body) -> Response {
    let (result, response) = submit_inner(&app, &headers, body).await;
    Metrics::inc(&app.metrics.submissions, &[("result", result)]);
    response
}

async fn submit_inner(app: &Arc<App>, headers: &HeaderMap, body: Body) -> (&'static str, Response) {
    let claims = match authenticate(app, headers) {
        Ok(c) => c,
        Err(r) => return ("unauthorized", r.into_response()),
    };
    // A body over the small limit is read only for a key holding a live assignment, one at a
    // time a key, within the budget for large bodies: logging in costs nothing, so any key may
    // send here, and its body is buffered before its uuid can be checked. (A late proof, whose
    // assignment has timed out, is read if it fits the small limit.)
    let declared = content_length(headers);
    let small_limit = SMALL_BODY_LIMIT.min(app.config.max_body_bytes);
    let small = declared.is_some_and(|n| n <= small_limit as u64);
    // Only a body that may be large needs the store's word on the key's assignment (most
    // submissions declare a small one and cost no read here).
    let live = if small {
        None
    } else {
        let key = claims.public_key.clone();
        let a = app.clone();
        match blocking(move || a.store.holds_live_assignment(&key)).await {
            Ok(live) => Some(live),
            Err(e) => return ("internal", internal(e)),
        }
    };
    let (limit, _large) = if live != Some(true) {
        (small_limit, None)
    } else {
        let cap = read_cap(app.config.max_body_bytes);
        let bytes = declared.map_or(cap, |n| usize::try_from(n).unwrap_or(cap).min(cap));
        match LargeBody::claim(app, &claims.public_key, bytes) {
            Ok(leave) => (app.config.max_body_bytes, Some(leave)),
            Err(why) => return ("busy", retry_later(why)),
        }
    };
    let req: SubmitProofRequest =
        match parse(headers, body, limit, app.config.http.body_timeout()).await {
            Ok(r) => r,
            Err(ApiError(code, msg))
                if live == Some(false) && msg.starts_with("request body too large") =>
            {
                let msg = format!(
                    "{msg}: this key holds no live assignment, and a submission over \
                     {small_limit} bytes is read only while its assignment is live"
                );
                return ("bad_request", ApiError(code, msg).into_response());
            }
            Err(r) => return ("bad_request", r.into_response()),
        };
    if req.uuid.len() > MAX_SUBMIT_ID || req.task_id.len() > MAX_SUBMIT_ID {
        return (
            "bad_request",
            err(
                errcode::INVALID_PARAMETER,
                format!("uuid and task_id are at most {MAX_SUBMIT_ID} bytes"),
            ),
        );
    }
    if req.status != proof_status::OK && req.status != proof_status::ERROR {
        return (
            "bad_request",
            err(
                errcode::INVALID_PARAMETER,
                format!("unknown status {}", req.status),
            ),
        );
    }
    let policy = app.policy;
    if req.status == proof_status::ERROR {
        // One transaction: `record_failure` makes the same checks as `submit_context`.
        let Some(_in_flight) = Member::claim(&app.submitting, &req.uuid) else {
            return (
                "busy",
                retry_later(
                    "a submission for this assignment is already being processed; retry later",
                ),
            );
        };
        let a = app.clone();
        let reason = format!(
            "prover reported failure (type {}): {}",
            req.failure_type,
            printable(&truncated(&req.failure_msg, MAX_FAILURE_MSG))
        );
        let key = claims.public_key.clone();
        let task_id = req.task_id.clone();
        let r = blocking(move || {
            a.store.record_failure(
                &key,
                &req.uuid,
                &req.task_id,
                req.task_type,
                &reason,
                false,
                &policy,
                now_ms(),
            )
        })
        .await;
        return match r {
            Ok(Ok(_)) => {
                tracing::warn!(task_id = %printable(&task_id), prover = %printable(&claims.prover_name), "prover reported a failure");
                ("failure_recorded", ok(serde_json::Value::Null))
            }
            Ok(Err(e)) => ("refused", submit_error(e)),
            Err(e) => ("internal", internal(e)),
        };
    }
    let key = claims.public_key.clone();
    let a = app.clone();
    let (uuid, task_id, task_type) = (req.uuid.clone(), req.task_id.clone(), req.task_type);
    let ctx = match blocking(move || a.store.submit_context(&key, &uuid, &task_id, task_type)).await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return ("refused", submit_error(e)),
        Err(e) => return ("internal", internal(e)),
    };
    // One submission per assignment at a time: a duplicate sent while the first is being verified
    // is told to retry (HTTP 503): by then it is "cannot submit proof twice", or accepted.
    let Some(_in_flight) = Member::claim(&app.submitting, &req.uuid) else {
        return (
            "busy",
            retry_later("a submission for this assignment is already being processed; retry later"),
        );
    };
    let _slot = match app.verify_slots.acquire().await {
        Ok(permit) => permit,
        Err(e) => return ("internal", internal(e)),
    };
    let core = app.core.clone();
    let proof_text = req.proof.clone();
    let wire_task = ctx.wire_task.clone();
    let kind = type_name(req.task_type);
    // `Refusal::Internal` is the coordinator's own fault (its stored task, parameters, key cache,
    // a verifier panic): the prover is not blamed, keeps its proof and retries (errcode 500).
    let verdict = tokio::task::spawn_blocking(move || -> Result<(ProofPayload, u64), Refusal> {
        let proof = ProofPayload::from_json_str(&proof_text).map_err(|e| e.to_string())?;
        if proof.task_id != wire_task.task_id {
            return Err(Refusal::Invalid(format!(
                "proof is for task {}, not {}",
                proof.task_id, wire_task.task_id
            )));
        }
        let payload = wire_task
            .payload()
            .map_err(|e| Refusal::Internal(format!("stored task payload: {e}")))?;
        let spec = match &payload {
            TaskPayload::Chunk(d) => CircuitSpec::Chunk { config: d.config },
            TaskPayload::Batch(d) => CircuitSpec::Batch { config: d.config },
            TaskPayload::Bundle(d) => CircuitSpec::Bundle { config: d.config },
        };
        if proof.spec != spec {
            return Err(Refusal::Invalid(format!(
                "proof is for circuit {:?}, the task needs {:?}",
                proof.spec, spec
            )));
        }
        let expected = expected_statement(&payload)
            .map_err(|e| Refusal::Internal(format!("task statement: {e}")))?;
        let started = Instant::now();
        // Parameters, key cache, backend, a circuit without keys: the coordinator's own setup.
        let verified = core.verify(&proof).map_err(|e| {
            if e.is_rejection() {
                Refusal::Invalid(e.to_string())
            } else {
                Refusal::Internal(format!("verifier setup: {e}"))
            }
        })?;
        let verify_ms = started.elapsed().as_millis() as u64;
        if verified.statement != expected {
            return Err(Refusal::Invalid(
                "the proof's public inputs are not the task's statement".into(),
            ));
        }
        Ok((proof, verify_ms))
    })
    .await;
    let verdict = match verdict {
        Ok(v) => v,
        Err(e) => Err(Refusal::Internal(format!("verifier crashed: {e}"))),
    };
    let key = claims.public_key.clone();
    let a = app.clone();
    match verdict {
        Ok((proof, verify_ms)) => {
            app.metrics
                .verify_seconds
                .observe(verify_ms as f64 / 1000.0);
            Metrics::inc(
                &app.metrics.verifications,
                &[("type", &kind), ("result", "valid")],
            );
            let r = blocking(move || {
                a.store.record_verified(
                    &key,
                    &req.uuid,
                    &req.task_id,
                    req.task_type,
                    &proof,
                    verify_ms,
                    &policy,
                    now_ms(),
                )
            })
            .await;
            match r {
                Ok(Ok(effects)) => {
                    tracing::info!(task_id = %ctx.task.task_id, prover = %printable(&claims.prover_name), verify_ms, "proof verified");
                    if let Some(batch) = effects.batch_created {
                        tracing::info!(task_id = %batch, "batch task created");
                    }
                    if let Some(bundle) = effects.bundle_created {
                        tracing::info!(task_id = %bundle, "bundle task created");
                    }
                    if let Some(bundle) = effects.settlement_enqueued {
                        tracing::info!(task_id = %bundle, "verified bundles enqueued for settlement up to this one");
                    }
                    ("verified", ok(serde_json::Value::Null))
                }
                Ok(Err(e)) => ("refused", submit_error(e)),
                Err(e) => ("internal", internal(e)),
            }
        }
        Err(Refusal::Internal(reason)) => {
            Metrics::inc(
                &app.metrics.verifications,
                &[("type", &kind), ("result", "internal_error")],
            );
            ("internal", internal(reason))
        }
        Err(Refusal::Invalid(reason)) => {
            Metrics::inc(
                &app.metrics.verifications,
                &[("type", &kind), ("result", "invalid")],
            );
            let why = format!(
                "invalid proof: {}",
                printable(&truncated(&reason, MAX_FAILURE_MSG))
            );
            let why2 = why.clone();
            let r = blocking(move || {
                a.store.record_failure(
                    &key,
                    &req.uuid,
                    &req.task_id,
                    req.task_type,
                    &why2,
                    true,
                    &policy,
                    now_ms(),
                )
            })
            .await;
            match r {
                Ok(Ok(effects)) => {
                    tracing::warn!(task_id = %ctx.task.task_id, prover = %printable(&claims.prover_name), "{why}");
                    let msg = if effects.blocked {
                        format!(
                            "{why}; prover blocked after {} invalid proofs",
                            policy.max_invalid_proofs
                        )
                    } else {
                        why
                    };
                    ("invalid", err(errcode::PROOF_FAILURE, msg))
                }
                Ok(Err(e)) => ("refused", submit_error(e)),
                Err(e) => ("internal", internal(e)),
            }
        }
    }
}

async fn health(State(app): AppState) -> Response {
    let a = app.clone();
    match blocking(move || a.store.health()).await {
        Ok(tasks) => ok(serde_json::json!({"status": "ok", "tasks": tasks})),
        Err(e) => internal(e),
    }
}

async fn metrics(State(app): AppState) -> Response {
    let a = app.clone();
    let status = match blocking(move || a.report(false)).await {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
    match app.metrics.render(&status) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => internal(e),
    }
}

fn admin(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    if app.config.admin_token.is_empty() {
        return Err(ApiError(
            errcode::JWT,
            "the admin API is disabled (no admin_token configured)".into(),
        ));
    }
    // Compared in constant time (the length may leak; the token's bytes do not).
    let given = bearer(headers).unwrap_or_default().as_bytes();
    if bool::from(subtle::ConstantTimeEq::ct_eq(
        given,
        app.config.admin_token.as_bytes(),
    )) {
        Ok(())
    } else {
        Err(ApiError(
            errcode::JWT,
            "admin routes need Authorization: Bearer <admin token>".into(),
        ))
    }
}

/// An admin call's body, read (up to `limit` bytes) only once the admin token is checked.
async fn admin_body<T: DeserializeOwned>(
    app: &App,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<T, Response> {
    admin(app, headers).map_err(IntoResponse::into_response)?;
    parse(headers, body, limit, app.config.http.body_timeout())
        .await
        .map_err(IntoResponse::into_response)
}

async fn admin_enqueue(State(app): AppState, headers: HeaderMap, body: Body) -> Response {
    let req: EnqueueRequest =
        match admin_body(&app, &headers, body, app.config.max_body_bytes).await {
            Ok(r) => r,
            Err(r) => return r,
        };
    let a = app.clone();
    let r = match (req.transfers, req.random) {
        (Some(t), None) => blocking(move || a.enqueue(t)).await,
        (None, Some(n)) if n > MAX_RANDOM_TRANSFERS => {
            return err(
                errcode::INVALID_PARAMETER,
                format!("random: {n} transfers; at most {MAX_RANDOM_TRANSFERS} per request"),
            )
        }
        (None, Some(n)) => {
            let seed = req.seed.unwrap_or_else(now_ms);
            blocking(move || {
                let t = a.random_transfers(n, seed);
                a.enqueue(t)
            })
            .await
        }
        _ => {
            return err(
                errcode::INVALID_PARAMETER,
                "give exactly one of \"transfers\" or \"random\"",
            )
        }
    };
    match r {
        Ok(task_ids) => ok(EnqueueReply { task_ids }),
        Err(e @ crate::CoordinatorError::InvalidTransfers(_)) => {
            err(errcode::INVALID_PARAMETER, e.to_string())
        }
        Err(e) => internal(e),
    }
}

async fn admin_status(State(app): AppState, headers: HeaderMap) -> Response {
    if let Err(r) = admin(&app, &headers) {
        return r.into_response();
    }
    let a = app.clone();
    match blocking(move || a.report(true)).await {
        Ok(s) => ok(s),
        Err(e) => internal(e),
    }
}

async fn admin_block(State(app): AppState, headers: HeaderMap, body: Body) -> Response {
    let req: BlockRequest = match admin_body(&app, &headers, body, SMALL_BODY_LIMIT).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let key = match normalize_key(&req.public_key) {
        Ok(k) => k,
        Err(r) => return r.into_response(),
    };
    let reason = if req.reason.is_empty() {
        "blocked by the operator".to_string()
    } else {
        printable(&truncated(&req.reason, MAX_FAILURE_MSG))
    };
    let a = app.clone();
    match blocking(move || a.store.block(&key, &reason)).await {
        Ok(()) => ok(serde_json::Value::Null),
        Err(e) => internal(e),
    }
}

async fn admin_unblock(State(app): AppState, headers: HeaderMap, body: Body) -> Response {
    let req: BlockRequest = match admin_body(&app, &headers, body, SMALL_BODY_LIMIT).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let key = match normalize_key(&req.public_key) {
        Ok(k) => k,
        Err(r) => return r.into_response(),
    };
    let a = app.clone();
    match blocking(move || a.store.unblock(&key)).await {
        Ok(was) => ok(serde_json::json!({"was_blocked": was})),
        Err(e) => internal(e),
    }
}

async fn admin_prune(State(app): AppState, headers: HeaderMap, body: Body) -> Response {
    let req: PruneRequest = match admin_body(&app, &headers, body, SMALL_BODY_LIMIT).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let before = now_ms().saturating_sub(req.older_than_sec.saturating_mul(1000));
    let a = app.clone();
    let consumers = app.policy.consumers();
    match blocking(move || a.store.prune(before, consumers)).await {
        Ok(p) => {
            tracing::info!(tasks = ?p.tasks, proofs = p.proofs, assignments = p.assignments, "finished tasks pruned by the operator");
            ok(p)
        }
        Err(e) => internal(e),
    }
}

async fn admin_requeue(State(app): AppState, headers: HeaderMap, body: Body) -> Response {
    let req: RequeueRequest = match admin_body(&app, &headers, body, SMALL_BODY_LIMIT).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let a = app.clone();
    let id = req.task_id.clone();
    match blocking(move || a.store.requeue(&id, now_ms())).await {
        Ok(Ok(())) => {
            tracing::info!(task_id = %printable(&req.task_id), "failed task requeued by the operator");
            ok(serde_json::json!({"task_id": req.task_id, "state": "pending"}))
        }
        Ok(Err(e)) => err(
            errcode::INVALID_PARAMETER,
            printable(&truncated(&e.to_string(), 512)),
        ),
        Err(e) => internal(e),
    }
}
