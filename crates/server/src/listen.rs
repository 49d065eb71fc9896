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

/// A certificate and key to serve HTTPS with (`citybrain up --tls-cert/--tls-key`).
#[derive(Clone)]
pub struct HttpTls(tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for HttpTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpTls(..)")
    }
}

impl HttpTls {
    /// HTTPS from a PEM certificate chain and its key (see [`tls_identity`]).
    pub fn from_pem_files(cert: &std::path::Path, key: &std::path::Path) -> Result<Self, String> {
        let config = tls_identity(cert, key, b"http/1.1")?;
        Ok(Self(tokio_rustls::TlsAcceptor::from(config)))
    }
}

/// A TLS server identity from a PEM certificate chain and its PEM private key (PKCS#8,
/// PKCS#1 or SEC1), offering `alpn`; shared by the HTTP listener and the Postgres wire.
pub fn tls_identity(
    cert: &std::path::Path,
    key: &std::path::Path,
    alpn: &[u8],
) -> Result<Arc<tokio_rustls::rustls::ServerConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("reading the certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("reading the private key {}: {e}", key.display()))?;
    let mut config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and key do not make a TLS identity: {e}"))?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// Bounds on connections.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Connections open at once; further clients wait to be accepted.
    pub max_connections: usize,
    /// Time to send a request's headers, and to start the next on a kept-alive connection.
    pub header_timeout: Duration,
    /// Requests per second one principal may make, sustained (0: no limit), and how many
    /// above that in a burst.
    pub rate_per_principal: u32,
    pub rate_burst: u32,
    /// Event streams (SSE) open at once.
    pub max_event_streams: usize,
    /// HTTPS instead of plain HTTP.
    pub tls: Option<HttpTls>,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            header_timeout: Duration::from_secs(20),
            // Above what one principal legitimately sends here (the parking guide's
            // benchmark: 6,431 requests/s); a city sets its own.
            rate_per_principal: 10_000,
            rate_burst: 20_000,
            max_event_streams: 1_024,
            tls: None,
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
        let tls = limits.tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection(stream, service, header_timeout, &mut stop).await,
                Some(HttpTls(acceptor)) => {
                    // The handshake gets the same time as a request's headers.
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            connection(stream, service, header_timeout, &mut stop).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(message = "A TLS handshake failed.", %error);
                        }
                        Err(_) => tracing::debug!(message = "A TLS handshake timed out."),
                    }
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

/// Serves one connection (plain or TLS) until it ends, or until shutdown asks it to finish
/// its request in flight.
async fn connection<I>(
    io: I,
    service: TowerToHyperService<Router>,
    header_timeout: Duration,
    stop: &mut watch::Receiver<()>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = stop.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
