//! The console stays up for everyone while one client misbehaves (each probe of the attacker's
//! report that shut it, as a regression test, then a bounded load test). Clients are told apart
//! by address: the abusive one is 127.0.0.1, the others 127.0.0.2 and up (all loopback).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

const MODEL: &str = "fmnist-memorizing";
const ABUSER: [u8; 4] = [127, 0, 0, 1];

fn other(i: u8) -> [u8; 4] {
    [127, 0, 0, 2 + i]
}

fn addr(console: &Console) -> String {
    console.url.trim_start_matches("http://").to_string()
}

/// An upload that declares `declared` bytes and sends none of them.
fn silent_upload(addr: &str, source: [u8; 4], declared: usize) -> std::io::Result<TcpStream> {
    let mut stream = connect_from(addr, source)?;
    let head = format!(
        "POST /api/analyze?model={MODEL} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n\
         Content-Length: {declared}\r\n\r\n"
    );
    stream.write_all(head.as_bytes())?;
    Ok(stream)
}

#[test]
fn one_client_cannot_shut_the_console_for_the_others() {
    let dir = scratch("availability");
    let console = Console::start(
        &dir,
        &[
            "--rate-per-minute",
            "1000",
            "--max-concurrent",
            "1",
            "--max-side",
            "2048",
            "--max-megapixels",
            "4",
            "--min-set",
            "1",
        ],
    );
    let addr = addr(&console);
    let small = demo_pngs("members", 4);

    // Probe 1: silent uploads (1 MiB declared, nothing sent) hold no analysis slot: on the
    // one-slot console another client is served at once (it was told "busy" for two minutes).
    let silent: Vec<TcpStream> = (0..2).map(|_| silent_upload(&addr, ABUSER, 1 << 20).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let (status, body) = analyze_from(&addr, other(0), MODEL, &small);
    assert_eq!(status, 200, "{body}");
    // The silent client itself holds one analysis at a time: a second upload of its own waits.
    let (status, body) = analyze_from(&addr, ABUSER, MODEL, &small);
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("analysis under way"), "{body}");
    drop(silent);

    // Probe 2: one client's idle connections. It keeps at most 8 (the others are closed on
    // accept), so with the cap of 64 in all, another client still gets in and is served.
    let mut idle = Vec::new();
    for _ in 0..64 {
        if let Ok(stream) = connect_from(&addr, ABUSER) {
            idle.push(stream);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let open = idle
        .iter_mut()
        .filter_map(|s| {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            // Closed by the console: end of stream; held: the read times out.
            (!matches!(s.read(&mut [0u8; 1]), Ok(0))).then_some(())
        })
        .count();
    // At most 8: one of its earlier connections may still be closing.
    assert!((1..=8).contains(&open), "the console kept {open} connections open for one client");
    let (status, body) = analyze_from(&addr, other(1), MODEL, &small);
    assert_eq!(status, 200, "{body}");
    drop(idle);

    // Probe 3: heavy requests. Over the pixel budget: refused from the images' headers, before
    // any is decoded, in words.
    let heavy: Vec<(String, Vec<u8>)> = (0..3).map(|i| (format!("big-{i}.png"), noise_png(1400, i))).collect();
    let (status, body) = analyze_from(&addr, ABUSER, MODEL, &heavy);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("5.9 million pixels together") && body.contains("at most 4.0 million"), "{body}");
    // Within the budget, a heavy request holds the one slot; the same client's next one is
    // refused, and another client's waits its turn and is served (it was told "busy").
    let within = &heavy[..2];
    std::thread::scope(|scope| {
        let first = scope.spawn(|| analyze_from(&addr, ABUSER, MODEL, within));
        std::thread::sleep(Duration::from_millis(200));
        // (A small one: a refusal comes before the body is read, and a large body still being
        // written would meet a closed connection instead of the answer.)
        let second = scope.spawn(|| analyze_from(&addr, ABUSER, MODEL, &small));
        let waited = scope.spawn(|| analyze_from(&addr, other(2), MODEL, &small));
        let (status, body) = first.join().unwrap();
        assert_eq!(status, 200, "{body}");
        let (status, body) = second.join().unwrap();
        assert_eq!(status, 429, "{body}");
        let (status, body) = waited.join().unwrap();
        assert_eq!(status, 200, "{body}");
    });
}

/// An upload must say its length, and must keep arriving: one that declares 1 MiB and sends
/// nothing is cut after its 10 s of grace (408), and one without a length is refused (411).
#[test]
fn an_upload_without_a_length_or_that_stops_arriving_is_refused() {
    let dir = scratch("body");
    let console = Console::start(&dir, &["--rate-per-minute", "1000", "--min-set", "1"]);
    let addr = addr(&console);
    let answer = |stream: &mut TcpStream| {
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
        String::from_utf8_lossy(&reply).into_owned()
    };
    let started = Instant::now();
    let mut silent = silent_upload(&addr, other(0), 1 << 20).unwrap();
    let reply = answer(&mut silent);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("arrived too slowly"), "{reply}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(9) && waited < Duration::from_secs(40), "{waited:?}");
    let mut chunked = connect_from(&addr, other(1)).unwrap();
    chunked
        .write_all(
            format!(
                "POST /api/analyze?model={MODEL} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n\
                 Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let reply = answer(&mut chunked);
    assert!(reply.starts_with("HTTP/1.1 411"), "{reply}");
    assert!(reply.contains("Content-Length"), "{reply}");
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// `clients` clients, each sending `rounds` small analyses one after the other: the latencies
/// of those answered 200, and how many were not.
fn normal_traffic(addr: &str, clients: u8, rounds: usize) -> (Vec<f64>, usize) {
    let small = demo_pngs("non-members", 4);
    let failed = AtomicUsize::new(0);
    let mut latencies: Vec<f64> = std::thread::scope(|scope| {
        let jobs: Vec<_> = (0..clients)
            .map(|c| {
                let (small, failed) = (&small, &failed);
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    for _ in 0..rounds {
                        let started = Instant::now();
                        let (status, body) = analyze_from(addr, other(c), MODEL, small);
                        if status == 200 {
                            mine.push(started.elapsed().as_secs_f64());
                        } else {
                            eprintln!("normal client {c}: {status} {body}");
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    mine
                })
            })
            .collect();
        jobs.into_iter().flat_map(|j| j.join().unwrap()).collect()
    });
    latencies.sort_by(f64::total_cmp);
    (latencies, failed.into_inner())
}

/// A bounded load test: normal clients' success and latency, alone and beside one client that
/// does everything the attacker's report did at once (silent uploads, idle connections reopened
/// as they close, heavy requests within the limits back to back). Asserts that the normal
/// clients are all served; prints their latencies (the figures docs/security.md gives come
/// from the release build: `cargo test --release -p mint-cli --test console_availability`).
#[test]
fn normal_clients_are_served_beside_an_abusive_one() {
    let dir = scratch("load");
    let console = Console::start(
        &dir,
        &[
            "--rate-per-minute",
            "100000",
            "--max-concurrent",
            "2",
            "--max-side",
            "2048",
            "--max-megapixels",
            "4",
            "--min-set",
            "1",
        ],
    );
    let addr = addr(&console);
    const CLIENTS: u8 = 3;
    const ROUNDS: usize = 12;
    let (alone, failed_alone) = normal_traffic(&addr, CLIENTS, ROUNDS);
    assert_eq!(failed_alone, 0);

    let stop = AtomicBool::new(false);
    let abusive_requests = AtomicUsize::new(0);
    let (loaded, failed) = std::thread::scope(|scope| {
        let (addr, stop, count) = (&addr, &stop, &abusive_requests);
        // Silent uploads, reopened as the console closes them.
        scope.spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let held: Vec<_> = (0..2).filter_map(|_| silent_upload(addr, ABUSER, 1 << 20).ok()).collect();
                count.fetch_add(held.len(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        // Idle connections, as many as it can, reopened every half second.
        scope.spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let held: Vec<_> = (0..64).filter_map(|_| connect_from(addr, ABUSER).ok()).collect();
                count.fetch_add(held.len(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        // Heavy requests within the limits, from two threads, back to back.
        for seed in 0..2 {
            scope.spawn(move || {
                let heavy: Vec<(String, Vec<u8>)> =
                    (0..2).map(|i| (format!("big-{i}.png"), noise_png(1400, seed * 2 + i))).collect();
                while !stop.load(Ordering::Relaxed) {
                    analyze_from(addr, ABUSER, MODEL, &heavy);
                    count.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_secs(1));
        let result = normal_traffic(addr, CLIENTS, ROUNDS);
        stop.store(true, Ordering::Relaxed);
        result
    });
    let total = usize::from(CLIENTS) * ROUNDS;
    let served = loaded.len() as f64 / total as f64;
    let (p50, p95) = (percentile(&alone, 0.5), percentile(&alone, 0.95));
    let (l50, l95) = (percentile(&loaded, 0.5), percentile(&loaded, 0.95));
    println!(
        "normal clients: {CLIENTS} × {ROUNDS} analyses; alone p50 {:.0} ms, p95 {:.0} ms; beside the abusive client \
         ({} of its requests and connections): served {:.1}%, p50 {:.0} ms, p95 {:.0} ms ({:.2}× alone)",
        p50 * 1e3,
        p95 * 1e3,
        abusive_requests.load(Ordering::Relaxed),
        served * 100.0,
        l50 * 1e3,
        l95 * 1e3,
        l95 / p95
    );
    assert!(served >= 0.99, "{failed} of {total} normal requests were not served");
}
