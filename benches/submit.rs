//! Latency of one submit call on the vendor's thread (p50 / p99 / p99.9), while a worker
//! drains the queue on another core.
//!
//!     cargo bench --bench submit
//!
//! Three shapes of call, on the shipped model's five taps: one sample already reduced on the
//! vendor's side (the GPU path: `[1, C]` channel maxima, only the hand-off is paid), a batch of
//! 64 such samples, and one sample of full maps reduced here.

#[path = "support/timing.rs"]
mod timing;

use std::path::Path;
use std::time::{Duration, Instant};

use mint_audit::{Auditor, Config, Form, Layout, TensorView};

const CHANNELS: [usize; 5] = [16, 32, 64, 128, 10];
const SIDES: [usize; 4] = [28, 14, 7, 4];

fn main() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = Config::from_path(repo.join("models/fmnist-memorizing/auditor.json")).unwrap();
    config.metrics.http = None;
    config.queue.capacity = 1 << 20;
    config.batching.max_batch = 256;
    let auditor = Auditor::new(config).unwrap();

    let reduced: Vec<Vec<f32>> =
        CHANNELS.iter().map(|&c| (0..64 * c).map(|i| (i % 97) as f32 / 30.0).collect()).collect();
    let maps: Vec<Vec<f32>> =
        SIDES.iter().zip(CHANNELS).map(|(&s, c)| (0..c * s * s).map(|i| (i % 89) as f32 / 25.0).collect()).collect();
    let reduced_views = |n: usize| -> Vec<TensorView<'_>> {
        reduced
            .iter()
            .zip(CHANNELS)
            .enumerate()
            .map(|(i, (d, c))| {
                TensorView::vectors(&d[..n * c], if i == 4 { Form::Vector } else { Form::ChannelMax }, n, c).unwrap()
            })
            .collect()
    };
    let map_views: Vec<TensorView<'_>> = maps
        .iter()
        .zip(SIDES.iter().zip(CHANNELS))
        .map(|(m, (&s, c))| TensorView::map(m.as_slice(), Layout::Nchw, [1, c, s, s]).unwrap())
        .chain(std::iter::once(TensorView::vectors(&reduced[4][..10], Form::Vector, 1, 10).unwrap()))
        .collect();

    let cases: [(&str, Vec<TensorView<'_>>, usize); 3] = [
        ("1 sample, reduced by the vendor", reduced_views(1), 1),
        ("64 samples, reduced by the vendor", reduced_views(64), 64),
        ("1 sample, full maps (16×28² … 128×4², NCHW f32)", map_views, 1),
    ];
    let mut text = format!(
        "### Submit latency on the vendor's thread (shipped model's taps, head draining on another thread)\n\n\
         CPU: {}; flags: {}.\n\n| call | p50 µs | p99 µs | p99.9 µs | calls | dropped (queue full) |\n|---|---:|---:|---:|---:|---:|\n",
        timing::cpu_name(),
        timing::cpu_flags()
    );
    let mut next_id = 0u64;
    for (name, views, n) in &cases {
        let calls = if *n == 1 { 200_000 } else { 20_000 };
        let mut lat = Vec::with_capacity(calls);
        let mut full = 0usize;
        let mut ids = vec![0u64; *n];
        for k in 0..calls + 1000 {
            for id in ids.iter_mut() {
                *id = next_id;
                next_id += 1;
            }
            let t = Instant::now();
            let r = auditor.submit(&ids, views);
            let dt = t.elapsed();
            if r.is_err() {
                full += 1;
            }
            if k >= 1000 {
                lat.push(dt.as_nanos() as f64 / 1e3);
            }
            // Let the worker keep up: the figure is the call, not a queue growing without end.
            if k % 1000 == 999 {
                while auditor.stats().queue_depth > 4096 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
        lat.sort_by(f64::total_cmp);
        text.push_str(&format!(
            "| {name} | {:.2} | {:.2} | {:.2} | {calls} | {full} |\n",
            timing::percentile(&lat, 0.5),
            timing::percentile(&lat, 0.99),
            timing::percentile(&lat, 0.999),
        ));
    }
    let stats = auditor.close(Duration::from_secs(120)).stats;
    assert_eq!(stats.submitted, stats.audited() + stats.dropped_total());
    timing::write_result("submit", &text);
}
