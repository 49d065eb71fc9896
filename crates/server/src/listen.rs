//! The accept loop: HTTP/1.1 connections with a bound on how many are open and on how long
//! a client may take to send a request's headers.
//!
//! Key decision: axum's own `serve` sets no header timeout and takes every connection, so
//! 300 clients trickling one byte a minute held every descriptor and `/health` went
//! unanswered (security issue, item 8). Here a connection needs a slot before it is
//! accepted (the rest wait in the kernel's backlog), headers must arrive within
//! `header_timeout` (also the longest a kept-alive connection may sit idle), and bodies
//! are read with their own timeouts in `datasets::read_body_sized`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Semaphore, watch};

/// Bounds on connections.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Connections open at once; further clients wait to be accepted.
    pub max_connections: usize,
    /// Time to send a request's headers, and to start the next on a kept-alive connection.
    pub header_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            header_timeout: Duration::from_secs(20),
        }
    }
}

/// Half the process's descriptor limit (the rest is for data files, logs and SQLite), at
/// most 4,096; 512 where the limit cannot be read.
fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|n| n.parse::<usize>().ok())
        });
    soft.map_or(512, |n| (n / 2).clamp(16, 4_096))
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, asks open
/// connections to finish their request in flight, and returns when they have.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Dropped when shutdown starts; each connection watches it.
    let (stop_tx, stop_rx) = watch::channel(());
    // Each connection holds a clone; all gone means all closed.
    let (closed_tx, closed_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("never closed"),
            () = &mut shutdown => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: wait a little rather than spin.
                    tracing::warn!(message = "Accept failed.", error = %e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let mut stop = stop_rx.clone();
        let closed = closed_rx.clone();
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(slot);
            drop(closed);
        });
    }
    drop(stop_tx);
    drop(closed_rx);
    closed_tx.closed().await;
}
