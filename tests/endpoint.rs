//! The built-in `/metrics` endpoint against clients that misbehave: it keeps answering the
//! others, holds bounded resources, and stops in bounded time.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use mint_audit::config::HttpConfig;
use mint_audit::Auditor;

fn auditor(edit: impl FnOnce(&mut HttpConfig)) -> (Auditor, SocketAddr) {
    let mut config = shipped_auditor_config();
    let mut http = HttpConfig::new("127.0.0.1:0");
    edit(&mut http);
    config.metrics.http = Some(http);
    let auditor = Auditor::new(config).unwrap();
    let addr = auditor.metrics_addr().unwrap();
    (auditor, addr)
}

/// Scrapes until one succeeds or `within` passes.
fn scrape_within(addr: SocketAddr, within: Duration) -> Option<String> {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if let Some(text) = scrape(addr) {
            return Some(text);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn value(text: &str, series: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok()).unwrap_or(f64::NAN)
}

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

#[test]
fn a_client_that_never_reads_its_replies_stalls_no_one() {
    let (auditor, addr) = auditor(|_| {});
    let mut greedy = TcpStream::connect(addr).unwrap();
    greedy.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    let request = b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n".repeat(2000);
    let _ = greedy.write_all(&request); // fills both socket buffers, then times out
    assert!(scrape_within(addr, Duration::from_secs(3)).is_some(), "another client was stalled");
    let started = Instant::now();
    drop(auditor);
    assert!(started.elapsed() < Duration::from_secs(4), "free took {:?}", started.elapsed());
    drop(greedy);
}

#[test]
fn an_endless_header_line_is_cut_off_and_buffers_stay_small() {
    let (_auditor, addr) = auditor(|_| {});
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nX-Long: ").unwrap();
    let chunk = vec![b'a'; 64 << 10];
    let mut sent = 0usize;
    // 64 MiB without a newline: the endpoint must give up long before.
    while sent < 64 << 20 {
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(sent < 64 << 20, "the endpoint kept reading an endless header ({sent} bytes)");
    let text = scrape_within(addr, Duration::from_secs(3)).expect("the endpoint still serves");
    assert!(value(&text, "mint_http_errors_total{kind=\"connection\"}") >= 1.0, "the cut connection is counted");
}

#[test]
fn idle_connections_are_bounded_counted_and_timed_out() {
    let baseline_threads = threads();
    let (auditor, addr) = auditor(|h| {
        h.max_connections = 4;
        h.header_timeout_ms = 300;
    });
    let before = open_descriptors();
    // 60 half-open connections that never send a byte.
    let idle: Vec<TcpStream> = (0..60).filter_map(|_| TcpStream::connect(addr).ok()).collect();
    assert!(idle.len() >= 50);
    std::thread::sleep(Duration::from_millis(200));
    // The endpoint holds at most 4 of them (plus the client ends in this process).
    let held = open_descriptors().saturating_sub(before + idle.len());
    assert!(held <= 4 + 1, "the endpoint holds {held} descriptors for idle clients");
    // Their head timeout frees the slots: a real scrape gets through.
    let text = scrape_within(addr, Duration::from_secs(3)).expect("a scrape gets through");
    assert!(value(&text, "mint_http_connections_rejected_total") >= 40.0, "rejections counted");
    assert!(threads() <= baseline_threads + 4, "no thread per connection");
    drop(idle);
    let started = Instant::now();
    drop(auditor);
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// One HTTPS request trusting only `ca`; the response's status line and body.
fn https_get(addr: SocketAddr, ca: &std::path::Path, authorization: Option<&str>) -> std::io::Result<String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    tls.write_all(format!("GET /metrics HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n").as_bytes())?;
    let mut text = String::new();
    match tls.read_to_string(&mut text) {
        Ok(_) => Ok(text),
        // Some servers close without a TLS close_notify; what was read is the answer.
        Err(_) if !text.is_empty() => Ok(text),
        Err(e) => Err(e),
    }
}

#[test]
fn https_with_a_bearer_token_serves_only_who_holds_it() {
    let dir = std::env::temp_dir().join(format!("mint-endpoint-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = tls_fixture(&dir);
    std::fs::write(dir.join("token"), "s3cret-token\n").unwrap();
    let mut config = shipped_auditor_config();
    let json = serde_json::json!({"listen": "127.0.0.1:0",
        "tls": {"cert_file": cert, "key_file": key}, "bearer_token_file": dir.join("token")});
    config.metrics.http = Some(serde_json::from_value(json).unwrap());
    let auditor = Auditor::new(config).unwrap();
    let addr = auditor.metrics_addr().unwrap();

    let ok = https_get(addr, &ca, Some("Bearer s3cret-token")).unwrap();
    assert!(ok.starts_with("HTTP/1.1 200") && ok.contains("mint_samples_submitted_total"), "{ok}");
    let refused = https_get(addr, &ca, None).unwrap();
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let wrong = https_get(addr, &ca, Some("Bearer s3cret-tokeN")).unwrap();
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    // Plain HTTP to the TLS port gets no metrics.
    assert!(scrape(addr).is_none());
    let text = https_get(addr, &ca, Some("Bearer s3cret-token")).unwrap();
    assert!(value(&text, "mint_http_errors_total{kind=\"unauthorized\"}") >= 2.0, "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_certificate_or_token_file_is_a_configuration_error() {
    let mut config = shipped_auditor_config();
    let json = serde_json::json!({"listen": "127.0.0.1:0", "tls": {"cert_file": "/nonexistent.pem", "key_file": "/nonexistent.key"}});
    config.metrics.http = Some(serde_json::from_value(json).unwrap());
    let err = Auditor::new(config).err().unwrap().to_string();
    assert!(err.contains("metrics.http.tls.cert_file") && err.contains("/nonexistent.pem"), "{err}");
}

#[test]
fn a_client_that_shuts_its_side_after_the_request_still_gets_the_answer() {
    // Found by the http fuzz target: hyper closed at the client's EOF before answering.
    let (_auditor, addr) = auditor(|_| {});
    for _ in 0..50 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
    }
}
