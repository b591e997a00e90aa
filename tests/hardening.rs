//! Regression tests for the host's safety: bad input refused and counted, a panicking sink
//! contained, close reports exact while submits race the close.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mint_audit::{AuditResult, Auditor, DropReason, Error, Form, Layout, TensorView};

fn auditor_with(edit: impl FnOnce(&mut mint_audit::Config)) -> Auditor {
    let mut config = shipped_auditor_config();
    config.metrics.http = None;
    edit(&mut config);
    Auditor::new(config).unwrap()
}

/// The shipped taps as vendor-reduced vectors, with tap 0 replaced by `map`.
fn with_map<'a>(rest: &'a [Vec<f32>], n: usize, map: TensorView<'a>) -> Vec<TensorView<'a>> {
    let mut views = reduced_views(rest, n);
    views[0] = map;
    views
}

#[test]
fn empty_maps_are_refused_and_counted_not_scored() {
    // The shipped stage1 declares its spatial size; without it, an empty map used to give -inf
    // features that were scored.
    let auditor = auditor_with(|c| c.taps[0].spatial = None);
    let rest = synthetic_reduced(2, 3);
    let empty: Vec<f32> = Vec::new();
    let map = TensorView::map(empty.as_slice(), Layout::Nchw, [2, 16, 0, 0]).unwrap();
    let err = auditor.submit(&[1, 2], &with_map(&rest, 2, map)).unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert!(err.to_string().contains("empty maps"), "{err}");
    let stats = auditor.close(Duration::from_secs(5)).stats;
    assert_eq!((stats.submitted, stats.audited()), (2, 0));
    assert_eq!(stats.dropped(DropReason::InvalidInput), 2);
}

#[test]
fn a_tiny_buffer_cannot_describe_a_huge_map() {
    let auditor = auditor_with(|c| c.taps[0].spatial = None);
    let rest = synthetic_reduced(2, 4);
    let one = [0.5f32];
    // Zero strides: one element stands for [2, 16, 1e5, 1e5].
    let map = TensorView::strided_map(&one[..], [2, 16, 100_000, 100_000], [0, 0, 0, 0]).unwrap();
    let started = Instant::now();
    let err = auditor.submit(&[1, 2], &with_map(&rest, 2, map)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1), "the caller's thread was held");
    assert!(err.to_string().contains("elements per sample"), "{err}");
    // Dimensions whose product wraps are refused when the view is made.
    let e = TensorView::map(&one[..], Layout::Nchw, [1, 1 << 40, 1 << 40, 1 << 40]).unwrap_err();
    assert!(e.to_string().contains("overflows"), "{e}");
    let stats = auditor.close(Duration::from_secs(5)).stats;
    assert_eq!(stats.dropped(DropReason::InvalidInput), 2);
}

#[test]
fn a_panicking_sink_loses_nothing_and_the_worker_goes_on() {
    let mut config = shipped_auditor_config();
    config.metrics.http = None;
    config.batching.max_wait_ms = 0;
    let delivered = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&delivered);
    let auditor = Auditor::with_sink(
        config,
        Arc::new(move |r: &[AuditResult]| {
            counter.fetch_add(r.len(), Ordering::SeqCst);
            panic!("the vendor's sink is broken");
        }),
    )
    .unwrap();
    let data = synthetic_reduced(8, 5);
    for k in 0..10u64 {
        let ids: Vec<u64> = (k * 8..k * 8 + 8).collect();
        auditor.submit(&ids, &reduced_views(&data, 8)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let report = auditor.close(Duration::from_secs(10));
    let s = report.stats;
    assert_eq!(s.submitted, 80);
    assert_eq!(s.audited(), 80, "{s:?}");
    assert_eq!(delivered.load(Ordering::SeqCst), 80, "every batch still reached the sink");
    assert!(auditor.last_worker_error().unwrap().contains("sink panicked"));
}

#[test]
fn close_reports_are_exact_while_eight_threads_submit() {
    for round in 0..5 {
        let auditor = Arc::new(auditor_with(|c| {
            c.queue.capacity = 256;
            c.batching.max_batch = 16;
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let (auditor, stop) = (Arc::clone(&auditor), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let data = synthetic_reduced(4, t);
                    let views = reduced_views(&data, 4);
                    let mut k = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let base = (t << 40) + k * 4;
                        let _ = auditor.submit(&[base, base + 1, base + 2, base + 3], &views);
                        k += 1;
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(30));
        let report = auditor.close(Duration::from_millis(20 * round));
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        let s = report.stats;
        assert_eq!(s.submitted, s.audited() + s.dropped_total(), "round {round}: {s:?}");
        assert!(s.submitted > 0);
        let after = auditor.stats();
        assert_eq!(after.submitted, after.audited() + after.dropped_total(), "after the threads stopped: {after:?}");
    }
}

#[test]
fn vector_taps_still_accept_channel_maxima() {
    // The new map checks apply to maps only.
    let auditor = auditor_with(|_| {});
    let data = synthetic_reduced(3, 6);
    let views = reduced_views(&data, 3);
    assert_eq!(views[0].form(), Form::ChannelMax);
    assert_eq!(auditor.submit(&[7, 8, 9], &views).unwrap().accepted, 3);
}

#[test]
fn closing_at_once_is_quick_even_with_a_slow_sink() {
    let mut config = shipped_auditor_config();
    config.metrics.http = None;
    config.queue.capacity = 10_000;
    config.batching.max_batch = 4;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let auditor = Auditor::with_sink(
        config,
        Arc::new(move |_: &[AuditResult]| {
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(25));
        }),
    )
    .unwrap();
    let data = synthetic_reduced(4, 7);
    for k in 0..200u64 {
        let ids: Vec<u64> = (k * 4..k * 4 + 4).collect();
        auditor.submit(&ids, &reduced_views(&data, 4)).unwrap();
    }
    // 200 queued jobs, each delivered alone to a 25 ms sink, would take 5 s to drop.
    let started = Instant::now();
    let report = auditor.close(Duration::ZERO);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "close(0) took {took:?} ({} sink calls)", calls.load(Ordering::SeqCst));
    assert!(report.abandoned > 0);
    assert_eq!(report.stats.submitted, report.stats.audited() + report.stats.dropped_total());
}

#[test]
fn a_sink_that_closes_its_own_auditor_is_told_why_and_nothing_hangs() {
    use std::sync::{Mutex, OnceLock, Weak};
    let mut config = shipped_auditor_config();
    config.metrics.http = None;
    let me: Arc<OnceLock<Weak<Auditor>>> = Arc::new(OnceLock::new());
    let seen: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let (me_in_sink, seen_in_sink) = (Arc::clone(&me), Arc::clone(&seen));
    let auditor = Arc::new(
        Auditor::with_sink(
            config,
            Arc::new(move |_: &[AuditResult]| {
                let Some(auditor) = me_in_sink.get().and_then(Weak::upgrade) else { return };
                let outcome = auditor.try_close(Duration::from_secs(1));
                *seen_in_sink.lock().unwrap() = Some(match outcome {
                    Err(e) => format!("{:?}: {e}", e.kind()),
                    Ok(_) => "closed".into(),
                });
            }),
        )
        .unwrap(),
    );
    me.set(Arc::downgrade(&auditor)).unwrap();
    let data = synthetic_reduced(4, 8);
    auditor.submit(&[1, 2, 3, 4], &reduced_views(&data, 4)).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().is_none() {
        assert!(Instant::now() < until, "the sink never ran");
        std::thread::sleep(Duration::from_millis(5));
    }
    let message = seen.lock().unwrap().clone().unwrap();
    assert!(message.starts_with("Reentrant") && message.contains("own result callback"), "{message}");
    let report = auditor.close(Duration::from_secs(5));
    assert_eq!(report.stats.submitted, 4);
    assert_eq!(report.stats.audited(), 4);
}

#[test]
fn a_sink_that_does_not_return_holds_neither_close_nor_drop() {
    let mut config = shipped_auditor_config();
    config.metrics.http = None;
    config.workers = 1;
    let (entered, release) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
    // Alive while the sink is: the sink's captures are released only when its worker stops.
    let marker = Arc::new(());
    let held = Arc::downgrade(&marker);
    let (entered_in_sink, release_in_sink) = (Arc::clone(&entered), Arc::clone(&release));
    let auditor = Auditor::with_sink(
        config,
        Arc::new(move |_: &[AuditResult]| {
            let _keep = &marker;
            entered_in_sink.fetch_add(1, Ordering::SeqCst);
            // Until released, or 8 s: without the bound, close's time fails the assertion below.
            let until = Instant::now() + Duration::from_secs(8);
            while !release_in_sink.load(Ordering::SeqCst) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(1));
            }
        }),
    )
    .unwrap();
    let data = synthetic_reduced(4, 9);
    auditor.submit(&[1, 2, 3, 4], &reduced_views(&data, 4)).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while entered.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < until, "the sink never ran");
        std::thread::sleep(Duration::from_millis(1));
    }
    auditor.submit(&[5, 6, 7, 8], &reduced_views(&data, 4)).unwrap(); // queued behind the sink

    let started = Instant::now();
    let report = auditor.close(Duration::from_millis(50));
    let took = started.elapsed();
    // Without the bound, close waits for the sink's 8 s.
    assert!(took < Duration::from_millis(50) + mint_audit::CLOSE_GRACE + Duration::from_secs(2), "{took:?}");
    assert_eq!((report.workers_busy, report.in_flight), (1, 0), "{report:?}");
    assert_eq!(report.stats.submitted, 8);
    assert_eq!(report.stats.audited(), 4, "the batch inside the sink was counted before delivery");
    assert_eq!((report.abandoned, report.stats.dropped(DropReason::Shutdown)), (4, 4));

    let started = Instant::now();
    drop(auditor);
    assert!(started.elapsed() < Duration::from_secs(2), "drop took {:?}", started.elapsed());
    assert!(held.upgrade().is_some(), "the sink was released while it still ran");
    release.store(true, Ordering::SeqCst);
    let until = Instant::now() + Duration::from_secs(10);
    while held.upgrade().is_some() {
        assert!(Instant::now() < until, "the sink was never released");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(entered.load(Ordering::SeqCst), 1, "samples settled by close never reach the sink");
}
