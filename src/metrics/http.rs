//! The opt-in `/metrics` endpoint, built to live in someone else's process: whatever clients
//! do, it holds a bounded number of connections, buffers and threads, answers the others, and
//! stops within a bounded time.
//!
//! hyper (HTTP/1.1) on a tokio runtime of one thread, owned by the endpoint:
//! - at most `max_connections` connections at once; past it a new one is closed at once and
//!   counted (`mint_http_connections_rejected_total`);
//! - a request's head must arrive within `header_timeout_ms` and fit in [`MAX_HEAD_BYTES`];
//!   a connection serves at most [`MAX_REQUESTS_PER_CONNECTION`] requests and lives at most
//!   [`MAX_CONNECTION_LIFETIME`]; a client that never reads its replies stalls only its own
//!   connection, which that lifetime then ends;
//! - accept errors (EMFILE among them) are counted and retried after a pause, never fatal;
//! - dropping the endpoint stops the runtime, cancelling every connection, within
//!   [`STOP_TIMEOUT`];
//! - optionally HTTPS (rustls) and a bearer token, as Prometheus' exporters configure them, for
//!   scrapes across networks; a request without the token gets 401 and is counted.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{IntCounter, IntCounterVec};
use tokio::sync::{watch, Semaphore};

use crate::config::HttpConfig;
use crate::error::{Error, Result};

/// Renders the exposition text for one scrape.
pub(crate) type Render = Arc<dyn Fn() -> String + Send + Sync>;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The most bytes of a request's head (request line and headers) that are buffered.
pub(crate) const MAX_HEAD_BYTES: usize = 16 << 10;
/// Requests served on one connection before it is closed.
pub(crate) const MAX_REQUESTS_PER_CONNECTION: usize = 1000;
/// The longest one connection lives.
pub(crate) const MAX_CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// The longest dropping the endpoint takes, whatever its clients do.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(1);
/// The pause after a failed accept (EMFILE, ENFILE, ENOBUFS...).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The endpoint's own counters, in the auditor's registry.
#[derive(Clone)]
pub(crate) struct HttpHealth {
    pub requests: IntCounter,
    pub rejected: IntCounter,
    pub errors: IntCounterVec,
}

/// What every connection is served with: limits, and the optional TLS and token.
#[derive(Clone)]
struct Policy {
    max_connections: usize,
    header_timeout: Duration,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// `Bearer <token>`, the whole header value expected.
    authorization: Option<Arc<str>>,
}

impl Policy {
    fn from_config(http: &HttpConfig) -> Result<Policy> {
        let tls = match &http.tls {
            Some(tls) => Some(acceptor(&tls.cert_file, &tls.key_file)?),
            None => None,
        };
        let authorization = match &http.bearer_token_file {
            Some(path) => {
                let token = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
                let token = token.trim();
                if token.is_empty() {
                    return Err(Error::config(
                        "metrics.http.bearer_token_file",
                        format!("{} is empty", path.display()),
                    ));
                }
                Some(Arc::from(format!("Bearer {token}")))
            }
            None => None,
        };
        Ok(Policy {
            max_connections: http.max_connections,
            header_timeout: Duration::from_millis(http.header_timeout_ms),
            tls,
            authorization,
        })
    }

    /// Whether the request carries the expected token (compared in constant time).
    fn admits(&self, request: &Request<Incoming>) -> bool {
        let Some(expected) = &self.authorization else { return true };
        let given = request.headers().get(hyper::header::AUTHORIZATION).map(|v| v.as_bytes()).unwrap_or_default();
        given.len() == expected.len() && given.iter().zip(expected.as_bytes()).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
    }
}

/// A TLS acceptor for the PEM certificate chain and key.
fn acceptor(cert_file: &std::path::Path, key_file: &std::path::Path) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |field: &str, message: String| Error::config(field, message);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect())
        .map_err(|e| bad("metrics.http.tls.cert_file", format!("{}: {e}", cert_file.display())))?;
    if certs.is_empty() {
        return Err(bad("metrics.http.tls.cert_file", format!("{} holds no certificate", cert_file.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| bad("metrics.http.tls.key_file", format!("{}: {e}", key_file.display())))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| bad("metrics.http.tls", format!("the certificate and key do not make a TLS server: {e}")))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A running endpoint; stops when dropped.
pub(crate) struct MetricsServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `listen` (port 0 picks a free port) and serves what `render` returns at `/metrics`.
    pub(crate) fn start(http: &HttpConfig, render: Render, health: HttpHealth) -> Result<MetricsServer> {
        let listen = http.listen.as_str();
        let policy = Policy::from_config(http)?;
        let bad = |message: String| Error::config("metrics.http.listen", message);
        let listener =
            std::net::TcpListener::bind(listen).map_err(|e| bad(format!("cannot listen on {listen}: {e}")))?;
        let addr = listener.local_addr().map_err(|e| bad(e.to_string()))?;
        listener.set_nonblocking(true).map_err(|e| bad(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| Error::io("metrics endpoint runtime", e))?;
        let (stop, stopped) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("mint-metrics-http".into())
            .spawn(move || {
                runtime.block_on(serve(listener, render, policy, health, stopped));
                // Connections still open (clients that never read, never close) are cancelled.
                runtime.shutdown_timeout(STOP_TIMEOUT);
            })
            .map_err(|e| Error::io("metrics thread", e))?;
        Ok(MetricsServer { addr, stop, thread: Some(thread) })
    }

    /// The address actually bound.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    render: Render,
    policy: Policy,
    health: HttpHealth,
    mut stopped: watch::Receiver<bool>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        health.errors.with_label_values(&["accept"]).inc();
        return;
    };
    let permits = Arc::new(Semaphore::new(policy.max_connections));
    loop {
        let accepted = tokio::select! {
            _ = stopped.changed() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of descriptors, or a connection reset before it was accepted: count it,
                // give the host a moment, and keep serving.
                health.errors.with_label_values(&["accept"]).inc();
                tokio::select! {
                    _ = stopped.changed() => return,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            health.rejected.inc();
            drop(stream);
            continue;
        };
        let (render, health, policy, mut stopped) =
            (Arc::clone(&render), health.clone(), policy.clone(), stopped.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let served = async {
                match &policy.tls {
                    None => connection(TokioIo::new(stream), &render, &policy, &health).await,
                    Some(tls) => match tokio::time::timeout(policy.header_timeout, tls.accept(stream)).await {
                        Ok(Ok(stream)) => connection(TokioIo::new(stream), &render, &policy, &health).await,
                        _ => false,
                    },
                }
            };
            let ok = tokio::select! {
                _ = stopped.changed() => return,
                outcome = tokio::time::timeout(MAX_CONNECTION_LIFETIME, served) => outcome.unwrap_or(false),
            };
            if !ok {
                health.errors.with_label_values(&["connection"]).inc();
            }
        });
    }
}

/// Serves one connection's requests; `false` when it ended in an error or a timeout.
async fn connection<IO>(io: TokioIo<IO>, render: &Render, policy: &Policy, health: &HttpHealth) -> bool
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let served = AtomicUsize::new(0);
    let service = hyper::service::service_fn(|request| {
        let n = served.fetch_add(1, Ordering::Relaxed) + 1;
        health.requests.inc();
        let response = if policy.admits(&request) {
            respond(&request, render, n >= MAX_REQUESTS_PER_CONNECTION)
        } else {
            health.errors.with_label_values(&["unauthorized"]).inc();
            unauthorized()
        };
        async move { Ok::<_, Infallible>(response) }
    });
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(policy.header_timeout)
        // A client may shut its side once it has sent its request; answer it all the same.
        .half_close(true)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(io, service)
        .await
        .is_ok()
}

/// The endpoint's request path without its socket, for the fuzz targets (built with
/// `--cfg fuzzing`): one connection's bytes in, the endpoint's reply out, served on the calling
/// thread by the same [`connection`] a socket's connection gets (policy, limits, routes), with
/// none of a socket's scheduling and system calls, so a fuzzer runs it thousands of times a
/// second. The accept loop and its limits are fuzzed through a real socket by the `http` target.
#[cfg(fuzzing)]
pub struct InMemoryEndpoint {
    runtime: tokio::runtime::Runtime,
    render: Render,
    policy: Policy,
    health: HttpHealth,
}

#[cfg(fuzzing)]
impl InMemoryEndpoint {
    pub(crate) fn new(http: &HttpConfig, render: Render, health: HttpHealth) -> Result<InMemoryEndpoint> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| Error::io("metrics endpoint runtime", e))?;
        Ok(InMemoryEndpoint { runtime, render, policy: Policy::from_config(http)?, health })
    }

    /// Opens a connection, sends `request` and shuts the sending side, and returns everything
    /// the endpoint wrote back before it closed the connection.
    pub fn exchange(&self, request: &[u8]) -> Vec<u8> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, server) = tokio::io::duplex(64 << 10);
        let (mut from_server, mut to_server) = tokio::io::split(client);
        self.runtime.block_on(async {
            let served = connection(TokioIo::new(server), &self.render, &self.policy, &self.health);
            // Written and read at once: a client that pipelines requests gets replies while it writes.
            let send = async {
                let _ = to_server.write_all(request).await;
                let _ = to_server.shutdown().await;
            };
            let mut reply = Vec::new();
            let _ = tokio::join!(served, send, from_server.read_to_end(&mut reply));
            reply
        })
    }
}

fn unauthorized() -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header("WWW-Authenticate", "Bearer")
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(b"unauthorized\n")))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn respond(request: &Request<Incoming>, render: &Render, last: bool) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let (status, content_type, body) = match (request.method(), path) {
        (&Method::GET | &Method::HEAD, "/metrics") => (StatusCode::OK, CONTENT_TYPE, render()),
        (&Method::GET, "/") => {
            (StatusCode::OK, "text/plain; charset=utf-8", "mint-audit: metrics at /metrics\n".to_string())
        }
        _ => (StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "not found\n".to_string()),
    };
    let mut response = Response::builder().status(status).header("Content-Type", content_type);
    if last {
        response = response.header("Connection", "close");
    }
    response.body(Full::new(Bytes::from(body))).unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
