//! The opt-in `/metrics` endpoint: one small thread serving one registry.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::error::{Error, Result};

/// Renders the exposition text for one scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A running HTTP endpoint; stops when dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `listen` (port 0 picks a free port) and serves what `render` returns at `/metrics`.
    pub fn start(listen: &str, render: Render) -> Result<MetricsServer> {
        let server = tiny_http::Server::http(listen)
            .map_err(|e| Error::config("metrics.http.listen", format!("cannot listen on {listen}: {e}")))?;
        let addr =
            server.server_addr().to_ip().ok_or_else(|| Error::config("metrics.http.listen", "not an IP socket"))?;
        let server = Arc::new(server);
        let serving = Arc::clone(&server);
        let thread = std::thread::Builder::new()
            .name("mint-metrics-http".into())
            .spawn(move || serve(&serving, &*render))
            .map_err(|e| Error::io("metrics thread", e))?;
        Ok(MetricsServer { addr, server, thread: Some(thread) })
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

fn serve(server: &tiny_http::Server, render: &(dyn Fn() -> String + Send + Sync)) {
    // `recv` returns an error once `unblock` is called from `drop`.
    while let Ok(request) = server.recv() {
        let path = request.url().split('?').next().unwrap_or("");
        let response = match (request.method(), path) {
            (tiny_http::Method::Get | tiny_http::Method::Head, "/metrics") => {
                let body = render();
                tiny_http::Response::from_string(body).with_header(header("Content-Type", CONTENT_TYPE))
            }
            (tiny_http::Method::Get, "/") => tiny_http::Response::from_string("mint-audit: metrics at /metrics\n")
                .with_header(header("Content-Type", "text/plain; charset=utf-8")),
            _ => tiny_http::Response::from_string("not found\n").with_status_code(404),
        };
        // A client that hung up is not our problem; keep serving the others.
        let _ = request.respond(response);
    }
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header is valid")
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
