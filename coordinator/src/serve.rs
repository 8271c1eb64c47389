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
//! - a **cap on open connections per client address** (an IPv4 address or an IPv6 /64): a
//!   connection past it is closed at once, so that one address's idle connections cannot hold
//!   every slot of the cap above for the header timeout, again and again;
//! - a **graceful stop with a deadline**: on shutdown the listener closes, idle connections close,
//!   requests in flight get `grace` to finish, then their connections are dropped.
//!
//! The body-read timeout is applied where bodies are read (the coordinator's `parse`), since only
//! the handler knows a request's body limit and whether its caller is authenticated.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
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
    /// Open connections of one client address (IPv4 address, IPv6 /64) at most; a further one
    /// is closed at once. 0: no such cap (behind a reverse proxy, where every client has the
    /// proxy's address).
    pub max_connections_per_client: usize,
    /// On shutdown, how long requests in flight may take to finish, ms.
    pub shutdown_grace_ms: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout_ms: 10_000,
            body_timeout_ms: 60_000,
            max_connections: 1024,
            max_connections_per_client: 128,
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

/// The part of a client's address the per-client cap counts by: an IPv4 address (also when
/// mapped into IPv6), or an IPv6 address's /64 (one host is commonly given a whole /64).
pub(crate) fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Open connections per client (see [`client_of`]), and whether the client was told of reaching
/// the cap since its count was last zero (one warning per episode, not one per connection).
#[derive(Default)]
struct Clients {
    open: Mutex<HashMap<IpAddr, (usize, bool)>>,
}

/// One open connection of a client; its count goes down when this is dropped.
struct ClientSlot {
    clients: Arc<Clients>,
    client: IpAddr,
}

impl Clients {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (usize, bool)>> {
        // The map is consistent after every statement, so a panic elsewhere leaves it usable.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for one more connection from `ip`, or `None` when its client holds `cap` already
    /// (`cap` 0: no cap).
    fn enter(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<ClientSlot> {
        let client = client_of(ip);
        let mut open = self.lock();
        let (n, warned) = open.entry(client).or_insert((0, false));
        if cap > 0 && *n >= cap {
            if !*warned {
                *warned = true;
                tracing::warn!(
                    %client,
                    cap,
                    "a client reached http.max_connections_per_client; its further \
                     connections are closed until some of its open ones close (behind a \
                     reverse proxy set the cap to 0)"
                );
            }
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            clients: Arc::clone(self),
            client,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.clients.lock();
        if let Some((n, _)) = open.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.client);
            }
        }
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
    let clients = Arc::new(Clients::default());
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
        let Some(slot) = clients.enter(remote.ip(), limits.max_connections_per_client) else {
            // Closed at once: the slot of the overall cap goes back with it.
            tracing::debug!(%remote, "connection over the per-client cap closed");
            continue;
        };
        let router = router.clone();
        let stop = shutdown.clone();
        conns.spawn(async move {
            let _held = (permit, slot);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn a_client_is_an_ipv4_address_or_an_ipv6_slash_64() {
        assert_eq!(client_of(ip("10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(client_of(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(
            client_of(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            client_of(ip("2001:db8:1:2::1")),
            client_of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            client_of(ip("2001:db8:1:2::1")),
            client_of(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn the_per_client_cap_counts_open_connections_and_frees_them_when_closed() {
        let clients = Arc::new(Clients::default());
        let mut a: Vec<ClientSlot> = (0..3)
            .map(|_| clients.enter(ip("10.0.0.1"), 3).expect("within the cap"))
            .collect();
        assert!(clients.enter(ip("10.0.0.1"), 3).is_none(), "past the cap");
        // Another client has its own count; one IPv6 /64 is one client.
        let b = clients.enter(ip("10.0.0.2"), 3).expect("another client");
        let v6: Vec<ClientSlot> = (1..=3)
            .map(|i| {
                clients
                    .enter(ip(&format!("2001:db8::{i}")), 3)
                    .expect("within the cap")
            })
            .collect();
        assert!(clients.enter(ip("2001:db8::ffff"), 3).is_none());
        // A closed connection frees its place; a client with none left is forgotten.
        drop(a.pop());
        let again = clients.enter(ip("10.0.0.1"), 3).expect("a place freed");
        drop(again);
        drop(b);
        drop(v6);
        assert_eq!(
            clients.lock().len(),
            1,
            "only 10.0.0.1 still has connections"
        );
        // Cap 0: no cap.
        let many: Vec<ClientSlot> = (0..1000)
            .map(|_| clients.enter(ip("10.0.0.3"), 0).expect("no cap"))
            .collect();
        assert_eq!(clients.lock()[&ip("10.0.0.3")].0, 1000);
        drop(many);
        assert!(!clients.lock().contains_key(&ip("10.0.0.3")));
    }
}
