//! A scriptable stand-in for the coordinator's HTTP API v1, for testing the daemon's client logic
//! (retries, re-login, "no work", backoff). It really serves HTTP on loopback, checks the login
//! signature and bearer tokens, and records every call. The real coordinator has its own tests.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prover::wire::{errcode, LoginRequest, Task};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// A scripted reply.
#[derive(Clone, Debug)]
pub enum Reply {
    Envelope {
        errcode: i32,
        errmsg: String,
        data: Value,
    },
    Http(u16),
    /// Any status, headers and body; `chunked`: the body is streamed without a
    /// `Content-Length`, in pieces of 64 KiB.
    Raw {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        chunked: bool,
    },
}

impl Reply {
    pub fn ok(data: Value) -> Self {
        Reply::Envelope {
            errcode: 0,
            errmsg: String::new(),
            data,
        }
    }
    pub fn err(code: i32, msg: &str) -> Self {
        Reply::Envelope {
            errcode: code,
            errmsg: msg.into(),
            data: Value::Null,
        }
    }
    pub fn task(t: &Task) -> Self {
        Reply::ok(serde_json::to_value(t).unwrap())
    }
}

/// One recorded call.
#[derive(Clone, Debug)]
pub struct Call {
    pub route: &'static str,
    pub auth: Option<String>,
    pub body: Value,
    /// The reply errcode (or HTTP status for an HTTP error).
    pub answered: i64,
}

pub struct FakeState {
    script: Mutex<HashMap<&'static str, VecDeque<Reply>>>,
    calls: Mutex<Vec<Call>>,
    tx: mpsc::UnboundedSender<Call>,
    counter: AtomicU64,
    valid_tokens: Mutex<Vec<String>>,
}

pub struct Fake {
    pub addr: SocketAddr,
    pub state: Arc<FakeState>,
    rx: mpsc::UnboundedReceiver<Call>,
}

impl Fake {
    pub async fn start() -> Fake {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(FakeState {
            script: Mutex::new(HashMap::new()),
            calls: Mutex::new(vec![]),
            tx,
            counter: AtomicU64::new(0),
            valid_tokens: Mutex::new(vec![]),
        });
        let app = Router::new()
            .route("/coordinator/v1/challenge", get(challenge))
            .route("/coordinator/v1/login", post(login))
            .route("/coordinator/v1/get_task", post(get_task))
            .route("/coordinator/v1/submit_proof", post(submit_proof))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Fake { addr, state, rx }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues replies for a route (`get_task`, `submit_proof`, `login`, `challenge`); when the
    /// queue is empty: get_task → 20004, submit_proof → 0, login/challenge → success.
    pub fn script(&self, route: &'static str, replies: impl IntoIterator<Item = Reply>) {
        self.state
            .script
            .lock()
            .unwrap()
            .entry(route)
            .or_default()
            .extend(replies);
    }

    /// Invalidates every login token issued so far (as an expiry would).
    pub fn expire_tokens(&self) {
        self.state.valid_tokens.lock().unwrap().clear();
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    pub fn routes(&self) -> Vec<&'static str> {
        self.calls().iter().map(|c| c.route).collect()
    }

    /// Waits (bounded) for the next recorded call on `route`, skipping others.
    pub async fn next(&mut self, route: &str) -> Call {
        let deadline = Duration::from_secs(20);
        tokio::time::timeout(deadline, async {
            loop {
                let call = self.rx.recv().await.expect("fake coordinator stopped");
                if call.route == route {
                    return call;
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no {route} call within {deadline:?}; calls: {:?}",
                self.routes()
            )
        })
    }
}

fn record(state: &FakeState, route: &'static str, headers: &HeaderMap, body: Value, reply: &Reply) {
    let call = Call {
        route,
        auth: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body,
        answered: match reply {
            Reply::Envelope { errcode, .. } => *errcode as i64,
            Reply::Http(s) => *s as i64,
            Reply::Raw { status, .. } => *status as i64,
        },
    };
    state.calls.lock().unwrap().push(call.clone());
    let _ = state.tx.send(call);
}

fn respond(reply: Reply) -> Response {
    match reply {
        Reply::Envelope {
            errcode,
            errmsg,
            data,
        } => Json(json!({"errcode": errcode, "errmsg": errmsg, "data": data})).into_response(),
        Reply::Http(s) => StatusCode::from_u16(s).unwrap().into_response(),
        Reply::Raw {
            status,
            headers,
            body,
            chunked,
        } => {
            let body = if chunked {
                let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
                    body.chunks(64 << 10).map(|c| Ok(c.to_vec())).collect();
                axum::body::Body::from_stream(futures_util::stream::iter(pieces))
            } else {
                axum::body::Body::from(body)
            };
            let mut r = Response::new(body);
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            for (k, v) in headers {
                r.headers_mut().insert(k, v.parse().unwrap());
            }
            r
        }
    }
}

fn scripted(state: &FakeState, route: &'static str) -> Option<Reply> {
    state
        .script
        .lock()
        .unwrap()
        .get_mut(route)
        .and_then(|q| q.pop_front())
}

async fn challenge(State(s): State<Arc<FakeState>>, headers: HeaderMap) -> Response {
    let n = s.counter.fetch_add(1, Ordering::SeqCst);
    let reply = scripted(&s, "challenge").unwrap_or_else(|| {
        Reply::ok(json!({"time": "2030-01-01T00:00:00Z", "token": format!("challenge-{n}")}))
    });
    record(&s, "challenge", &headers, Value::Null, &reply);
    respond(reply)
}

async fn login(
    State(s): State<Arc<FakeState>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let reply = match scripted(&s, "login") {
        Some(r) => r,
        None => {
            let req: LoginRequest = match serde_json::from_value(body.clone()) {
                Ok(r) => r,
                Err(e) => {
                    let r = Reply::err(errcode::INVALID_PARAMETER, &e.to_string());
                    record(&s, "login", &headers, body, &r);
                    return respond(r);
                }
            };
            let auth_ok = headers.get("authorization").and_then(|v| v.to_str().ok())
                == Some(format!("Bearer {}", req.message.challenge).as_str());
            if !auth_ok {
                Reply::err(errcode::JWT, "authorization is not the challenge")
            } else if let Err(e) = prover::login::verify_login(&req) {
                Reply::err(errcode::JWT, &e.to_string())
            } else {
                let n = s.counter.fetch_add(1, Ordering::SeqCst);
                let token = format!("login-{n}");
                s.valid_tokens.lock().unwrap().push(token.clone());
                Reply::ok(json!({"time": "2030-01-01T00:00:00Z", "token": token}))
            }
        }
    };
    record(&s, "login", &headers, body, &reply);
    respond(reply)
}

fn authorized(s: &FakeState, headers: &HeaderMap) -> bool {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(token) = auth.strip_prefix("Bearer ") else {
        return false;
    };
    s.valid_tokens.lock().unwrap().iter().any(|t| t == token)
}

async fn get_task(
    State(s): State<Arc<FakeState>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let reply = if !authorized(&s, &headers) {
        Reply::err(errcode::JWT_EXPIRED, "token is expired")
    } else {
        scripted(&s, "get_task").unwrap_or_else(|| Reply::err(errcode::NO_TASK, "no task"))
    };
    record(&s, "get_task", &headers, body, &reply);
    respond(reply)
}

async fn submit_proof(
    State(s): State<Arc<FakeState>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let reply = if !authorized(&s, &headers) {
        Reply::err(errcode::JWT_EXPIRED, "token is expired")
    } else {
        scripted(&s, "submit_proof").unwrap_or_else(|| Reply::ok(Value::Null))
    };
    record(&s, "submit_proof", &headers, body, &reply);
    respond(reply)
}

/// A node configuration for tests against this fake: everything under `dir`, the CPU backend,
/// fast polls and retries, no drain, `/health` on any free loopback port. Not validated (tests
/// change it first).
pub fn node_config(dir: &std::path::Path, base_url: &str) -> prover::config::NodeConfig {
    let mut c = prover::config::NodeConfig::from_json_str(
        r#"{"prover": {"params_dir": "p", "keys_dir": "k"}}"#,
        std::path::Path::new("test"),
        Vec::<(String, String)>::new(),
    )
    .expect("default configuration");
    c.prover.params_dir = dir.join("params");
    c.prover.keys_dir = dir.join("keys");
    c.node.identity_dir = dir.join("identity");
    c.node.db_path = dir.join("stack.redb");
    c.node.backend = prover::config::BackendChoice::Cpu;
    c.node.drain_timeout_sec = 0;
    c.coordinator.base_url = base_url.into();
    c.coordinator.poll_interval_ms = 20;
    c.coordinator.poll_jitter_ms = 5;
    c.coordinator.retry_initial_ms = 5;
    c.coordinator.retry_max_ms = 20;
    c.metrics.listen = "127.0.0.1:0".into();
    c
}
