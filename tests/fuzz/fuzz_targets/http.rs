//! Any bytes sent to the `/metrics` endpoint: the endpoint answers or closes, and always
//! serves the next client. The next client asks for `/` (a fixed line) after every input, and
//! for a whole scrape after every 256th: rendering the registry was most of each execution's
//! time, and `/` goes through the same accept, read, parse and reply.
#![no_main]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;

fn endpoint() -> SocketAddr {
    static AUDITOR: OnceLock<mint_audit::Auditor> = OnceLock::new();
    AUDITOR
        .get_or_init(|| {
            let path =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/fmnist-memorizing/auditor.json");
            let mut config = mint_audit::Config::from_path(&path).unwrap();
            let mut http = mint_audit::config::HttpConfig::new("127.0.0.1:0");
            // Every input ends with the client shutting its side, so no input waits on this;
            // a long one keeps a starved core (long runs beside other work) from failing the probe.
            http.header_timeout_ms = 10_000;
            config.metrics.http = Some(http);
            mint_audit::Auditor::new(config).unwrap()
        })
        .metrics_addr()
        .unwrap()
}

fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(request);
    let _ = s.shutdown(Shutdown::Write);
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    reply
}

fuzz_target!(|data: &[u8]| {
    static INPUTS: AtomicU64 = AtomicU64::new(0);
    let addr = endpoint();
    let _ = exchange(addr, data);
    let probe: &[u8] = if INPUTS.fetch_add(1, Ordering::Relaxed) % 256 == 0 {
        b"GET /metrics HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n"
    } else {
        b"GET / HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n"
    };
    let reply = exchange(addr, probe);
    if !reply.starts_with(b"HTTP/1.1 200") {
        std::thread::sleep(Duration::from_secs(1));
        let scrape = b"GET /metrics HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n";
        let later = String::from_utf8_lossy(&exchange(addr, scrape)).into_owned();
        let health: Vec<&str> = later.lines().filter(|l| l.starts_with("mint_http")).collect();
        eprintln!("the endpoint's health a second later: {health:?}");
    }
    assert!(
        reply.starts_with(b"HTTP/1.1 200"),
        "the endpoint stopped serving after {data:?}: {:?}",
        String::from_utf8_lossy(&reply[..reply.len().min(200)])
    );
});
