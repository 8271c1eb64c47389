//! `/health` (JSON) and `/metrics` (Prometheus text) on `metrics.listen`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use super::stack::TaskStack;

/// What a worker is doing.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    Idle,
    Proving,
    Submitting,
    Backoff,
}

/// One worker in `/health`.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerStatus {
    pub index: usize,
    /// The backend this worker proves on (`cuda:1 (device name)`, `cpu`).
    pub device: String,
    pub public_key: String,
    pub state: WorkerState,
    pub task_id: Option<String>,
    pub attempt: Option<u32>,
}

/// `/health` body.
#[derive(Clone, Debug, Serialize)]
pub struct Health {
    /// `starting` (keys being prepared), `ok`, or `stopping`.
    pub status: &'static str,
    pub backend: String,
    pub workers: Vec<WorkerStatus>,
    pub stack_len: u64,
}

/// State shared by the workers and the server.
pub struct Shared {
    pub backend: String,
    pub workers: Vec<Mutex<WorkerStatus>>,
    pub status: Mutex<&'static str>,
    pub metrics: Metrics,
    pub stack: TaskStack,
}

impl Shared {
    /// Updates worker `index`'s status.
    pub fn set(
        &self,
        index: usize,
        state: WorkerState,
        task_id: Option<&str>,
        attempt: Option<u32>,
    ) {
        if let Some(w) = self.workers.get(index) {
            let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
            w.state = state;
            w.task_id = task_id.map(str::to_string);
            w.attempt = attempt;
        }
    }

    pub fn set_status(&self, status: &'static str) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = status;
    }
}

/// Binds `listen` and serves until `shutdown`, with the coordinator's hardened server (header
/// and idle timeouts, a connection cap, a bounded stop). Returns the bound address and the
/// server task.
pub async fn serve(
    listen: &str,
    limits: coordinator::serve::HttpLimits,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(shared);
    Ok((
        addr,
        coordinator::serve::spawn(listener, app, limits, shutdown),
    ))
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let stack = shared.stack.clone();
    let stack_len = match tokio::task::spawn_blocking(move || stack.len()).await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            return (StatusCode::SERVICE_UNAVAILABLE, format!("task stack: {e}")).into_response()
        }
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("task stack: {e}"),
            )
                .into_response()
        }
    };
    let workers = shared
        .workers
        .iter()
        .map(|w| w.lock().unwrap_or_else(|p| p.into_inner()).clone())
        .collect();
    let status = *shared.status.lock().unwrap_or_else(|p| p.into_inner());
    Json(Health {
        status,
        backend: shared.backend.clone(),
        workers,
        stack_len,
    })
    .into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    match shared.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
