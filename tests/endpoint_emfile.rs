//! The `/metrics` endpoint survives running out of file descriptors (EMFILE): accept errors are
//! counted and retried, and it serves again once descriptors are back. Its own test binary,
//! since it lowers the process's descriptor limit.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use mint_audit::config::HttpConfig;
use mint_audit::Auditor;

fn set_soft_limit(n: u64) -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        let old = limit.rlim_cur;
        limit.rlim_cur = n;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        old
    }
}

#[test]
fn running_out_of_descriptors_does_not_kill_the_endpoint() {
    let mut config = shipped_auditor_config();
    config.metrics.http = Some(HttpConfig::new("127.0.0.1:0"));
    let auditor = Auditor::new(config).unwrap();
    let addr = auditor.metrics_addr().unwrap();
    assert!(scrape(addr).is_some());

    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let old = set_soft_limit(open + 6);
    // Clients take the last descriptors; the connections queued behind them cannot be accepted.
    let clients: Vec<TcpStream> = (0..16).filter_map(|_| TcpStream::connect(addr).ok()).collect();
    std::thread::sleep(Duration::from_millis(500));
    drop(clients);
    set_soft_limit(old);

    let until = Instant::now() + Duration::from_secs(5);
    let text = loop {
        if let Some(text) = scrape(addr) {
            break text;
        }
        assert!(Instant::now() < until, "the endpoint did not come back after EMFILE");
        std::thread::sleep(Duration::from_millis(50));
    };
    let accept_errors: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("mint_http_errors_total{kind=\"accept\"}")?.trim().parse().ok())
        .unwrap();
    assert!(accept_errors >= 1.0, "the descriptor shortage is counted:\n{text}");
}
