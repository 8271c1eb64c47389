//! Serving an axum router with limits a hostile or broken client cannot get around, for every
//! HTTP server we run (the coordinator API and the node's `/health` and `/metrics`).
//!
//! `axum::serve` has no timer, so hyper's header-read timeout never fires, and it accepts without
//! bound: slow or silent connections were held for ever and could exhaust the file descriptors.
//! Here each connection is served by hyper's HTTP/1 server with
//! - a **header-read timeout** that also bounds the wait for the next request on a kept-alive
//!   connection (hyper starts it whenever it begins reading a request head), so slowloris and
//!   silent connections are closed;
//! - a **cap on open connections**: when it is reached, accepting pauses until one closes (new
//!   clients wait in the kernel's backlog instead of costing a descriptor each);
//! - a **graceful stop with a deadline**: on shutdown the listener closes, idle connections close,
//!   requests in flight get `grace` to finish, then their connections are dropped.
//!
//! The body-read timeout is applied where bodies are read (the coordinator's `parse`), since only
//! the handler knows a request's body limit and whether its caller is authenticated.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Limits of one HTTP server (config key `http` of the coordinator; the node uses the defaults).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpLimits {
    /// Time a client has to send a request's headers, counted from when the server starts
    /// waiting for them (so also the idle time allowed between requests on one connection), ms.
    pub header_timeout_ms: u64,
    /// Time a client has to send a request's body once its headers are in, ms.
    pub body_timeout_ms: u64,
    /// Open connections at most; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// On shutdown, how long requests in flight may take to finish, ms.
    pub shutdown_grace_ms: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout_ms: 10_000,
            body_timeout_ms: 60_000,
            max_connections: 1024,
            shutdown_grace_ms: 10_000,
        }
    }
}

impl HttpLimits {
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// Zero timeouts or a zero connection cap would make the server useless.
    pub fn validate(&self) -> Result<(), String> {
        if self.header_timeout_ms == 0 || self.body_timeout_ms == 0 {
            return Err("http.header_timeout_ms and http.body_timeout_ms must be positive".into());
        }
        if self.max_connections == 0 {
            return Err("http.max_connections must be positive".into());
        }
        Ok(())
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops as described in the
/// module documentation. Handlers can extract `ConnectInfo<SocketAddr>`. The returned task ends
/// at the latest `limits.shutdown_grace` after the cancellation.
pub fn spawn(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(accept_loop(listener, router, limits, shutdown))
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut conns = JoinSet::new();
    loop {
        // Reap finished connections so the set does not grow with the server's lifetime.
        while conns.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, remote) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: keep serving the
                    // connections we have; back off briefly so the loop does not spin.
                    tracing::warn!(error = %e, "accept failed");
                    drop(permit);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let router = router.clone();
        let stop = shutdown.clone();
        conns.spawn(async move {
            let _permit = permit;
            serve_connection(stream, remote, router, limits, stop).await;
        });
    }
    drop(listener);
    // Idle connections close at once (graceful_shutdown in each); requests in flight get the grace.
    let drained = tokio::time::timeout(limits.shutdown_grace(), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = conns.len(),
            grace_ms = limits.shutdown_grace_ms,
            "requests still in flight after the shutdown grace; closing their connections"
        );
        conns.shutdown().await;
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(remote));
        let router = router.clone();
        async move { Ok::<_, Infallible>(router.oneshot(req).await.unwrap_or_else(|e| match e {})) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout());
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Timeouts, resets and malformed requests: the client's problem, not worth a warning.
        tracing::debug!(%remote, error = %e, "connection closed");
    }
}
