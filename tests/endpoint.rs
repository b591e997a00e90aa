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

/// One scrape on a fresh connection; `None` when refused, cut or late.
fn scrape(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.starts_with("HTTP/1.1 200").then_some(text)
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
