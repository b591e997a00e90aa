//! Any bytes as one connection to the `/metrics` endpoint's request path, in memory: the same
//! connection handling a socket gets (hyper with the endpoint's limits, the bearer-token check,
//! the routes, a real auditor's registry), without the socket's system calls and thread
//! hand-offs, so it runs thousands of times a second, fast enough for the long runs. The
//! endpoint answers with HTTP or closes, and the next connection is served. The first byte picks
//! the endpoint without or with a bearer token; the rest is what the client sends. The `http`
//! target drives the whole endpoint (accept loop and connection limits) through a real socket.
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mint_audit::config::HttpConfig;
use mint_audit::InMemoryEndpoint;

const TOKEN: &str = "fuzz-token";

struct Endpoints {
    _auditor: mint_audit::Auditor,
    open: InMemoryEndpoint,
    with_token: InMemoryEndpoint,
}

fn endpoints() -> &'static Endpoints {
    static ENDPOINTS: OnceLock<Endpoints> = OnceLock::new();
    ENDPOINTS.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/fmnist-memorizing/auditor.json");
        let auditor = mint_audit::Auditor::new(mint_audit::Config::from_path(&path).unwrap()).unwrap();
        let token_file = std::env::temp_dir().join(format!("mint-fuzz-token-{}", std::process::id()));
        std::fs::write(&token_file, TOKEN).unwrap();
        let mut http = HttpConfig::new("127.0.0.1:0");
        http.header_timeout_ms = 10_000; // every input ends with the client's shutdown; no input waits on it
        let open = auditor.in_memory_endpoint(&http).unwrap();
        http.bearer_token_file = Some(token_file.clone());
        let with_token = auditor.in_memory_endpoint(&http).unwrap();
        let _ = std::fs::remove_file(token_file);
        Endpoints { _auditor: auditor, open, with_token }
    })
}

fuzz_target!(|data: &[u8]| {
    static INPUTS: AtomicU64 = AtomicU64::new(0);
    let Some((&pick, request)) = data.split_first() else { return };
    let (endpoint, authorization) = match pick & 1 {
        0 => (&endpoints().open, String::new()),
        _ => (&endpoints().with_token, format!("Authorization: Bearer {TOKEN}\r\n")),
    };
    let reply = endpoint.exchange(request);
    assert!(
        reply.is_empty() || reply.starts_with(b"HTTP/1."),
        "a reply that is not HTTP: {:?}",
        String::from_utf8_lossy(&reply[..reply.len().min(200)])
    );
    // The next client is served: `/` after every input, a whole scrape after every 256th.
    let path = if INPUTS.fetch_add(1, Ordering::Relaxed) % 256 == 0 { "/metrics" } else { "/" };
    let probe = format!("GET {path} HTTP/1.1\r\nHost: f\r\n{authorization}Connection: close\r\n\r\n");
    let answer = endpoint.exchange(probe.as_bytes());
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "the endpoint stopped serving after {data:?}: {:?}",
        String::from_utf8_lossy(&answer[..answer.len().min(200)])
    );
});
