//! The auditor through its Rust API: accounting, back-pressure, shutdown, sampling, endpoint.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use mint_audit::{AuditResult, Auditor, DropReason, Error, Outcome};

type Collected = Arc<Mutex<Vec<AuditResult>>>;

fn auditor_with(edit: impl FnOnce(&mut mint_audit::Config)) -> (Auditor, Collected) {
    let mut config = shipped_auditor_config();
    config.metrics.http = None;
    edit(&mut config);
    let got: Collected = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&got);
    let auditor =
        Auditor::with_sink(config, Arc::new(move |r: &[AuditResult]| sink.lock().unwrap().extend_from_slice(r)))
            .unwrap();
    (auditor, got)
}

/// Every submitted id reaches the sink exactly once, and the counters add up.
fn assert_exact_accounting(auditor: &Auditor, got: &Collected) {
    let stats = auditor.stats();
    assert_eq!(stats.submitted, stats.audited() + stats.dropped_total(), "{stats:?}");
    let results = got.lock().unwrap();
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for r in results.iter() {
        *seen.entry(r.sample_id).or_default() += 1;
    }
    assert!(seen.values().all(|&c| c == 1), "an id reached the sink twice");
    let audited = results.iter().filter(|r| matches!(r.outcome, Outcome::Audited(_))).count() as u64;
    assert_eq!(audited, stats.audited());
    let late_drops = results.iter().filter(|r| matches!(r.outcome, Outcome::Dropped(_))).count() as u64;
    assert_eq!(late_drops, stats.dropped(DropReason::Shutdown) + stats.dropped(DropReason::HeadError));
}

#[test]
fn a_full_queue_drops_and_counts_without_blocking() {
    let (auditor, got) = auditor_with(|c| {
        c.queue.capacity = 100;
        c.batching.max_batch = 8;
    });
    let data = synthetic_reduced(64, 1);
    let mut full = 0;
    for k in 0..50u64 {
        let ids: Vec<u64> = (k * 64..(k + 1) * 64).collect();
        match auditor.submit(&ids, &reduced_views(&data, 64)) {
            Ok(r) => assert_eq!(r.accepted, 64),
            Err(Error::QueueFull { samples, capacity }) => {
                assert_eq!((samples, capacity), (64, 100));
                full += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let report = auditor.close(Duration::from_secs(60));
    assert!(full > 0, "a queue of 100 must refuse some of 50 back-to-back batches of 64");
    assert_eq!(report.stats.dropped(DropReason::QueueFull), full * 64);
    assert_exact_accounting(&auditor, &got);
}

#[test]
fn closing_at_once_abandons_what_is_queued_and_says_so() {
    let (auditor, got) = auditor_with(|c| {
        c.queue.capacity = 100_000;
        c.batching.max_batch = 16;
    });
    let data = synthetic_reduced(500, 2);
    for k in 0..40u64 {
        let ids: Vec<u64> = (k * 500..(k + 1) * 500).collect();
        auditor.submit(&ids, &reduced_views(&data, 500)).unwrap();
    }
    let report = auditor.close(Duration::ZERO);
    assert_eq!(report.stats.submitted, 20_000);
    assert!(report.abandoned > 0, "20,000 queued samples cannot all be scored in no time");
    assert_eq!(report.abandoned, report.stats.dropped(DropReason::Shutdown));
    assert_exact_accounting(&auditor, &got);
    // Closed is closed: later submits are refused and counted.
    let err = auditor.submit(&[1], &reduced_views(&data, 1)).unwrap_err();
    assert!(matches!(err, Error::Closed), "{err}");
    assert_eq!(auditor.stats().dropped(DropReason::Closed), 1);
    // A second close returns the first report.
    assert_eq!(auditor.close(Duration::from_secs(1)), report);
}

#[test]
fn sampling_chooses_the_same_ids_every_time() {
    let (auditor, got) = auditor_with(|c| c.sampling.one_in = 4);
    let data = synthetic_reduced(400, 3);
    let ids: Vec<u64> = (5000..5400).collect();
    let first = auditor.submit(&ids, &reduced_views(&data, 400)).unwrap();
    let second = auditor.submit(&ids, &reduced_views(&data, 400)).unwrap();
    assert_eq!(first.chosen, second.chosen);
    assert!((70..130).contains(&first.chosen), "about 1 in 4 of 400: {}", first.chosen);
    auditor.close(Duration::from_secs(30));
    let stats = auditor.stats();
    assert_eq!(stats.seen, 800);
    assert_eq!(stats.submitted, 2 * first.chosen as u64);
    let results = got.lock().unwrap();
    let mut chosen: Vec<u64> = results.iter().map(|r| r.sample_id).collect();
    chosen.sort();
    chosen.dedup();
    assert_eq!(chosen.len(), first.chosen, "the same ids both times");
}

#[test]
fn malformed_batches_are_errors_and_counted() {
    let (auditor, got) = auditor_with(|_| {});
    let data = synthetic_reduced(4, 4);
    let views = reduced_views(&data, 4);
    let err = auditor.submit(&[1, 2, 3], &views).unwrap_err();
    assert!(err.to_string().contains("3 sample ids"), "{err}");
    let err = auditor.submit(&[1, 2, 3, 4], &views[..4]).unwrap_err();
    assert!(err.to_string().contains("5 taps are configured"), "{err}");
    let mut swapped = views.clone();
    swapped.swap(0, 1);
    let err = auditor.submit(&[1, 2, 3, 4], &swapped).unwrap_err();
    assert!(err.to_string().contains("tap 'stage1'") && err.to_string().contains("expected 16 channels"), "{err}");
    auditor.close(Duration::from_secs(10));
    assert_eq!(auditor.stats().dropped(DropReason::InvalidInput), 3 + 4 + 4);
    assert_exact_accounting(&auditor, &got);
}

#[test]
fn many_threads_submit_at_once_with_exact_accounting() {
    let (auditor, got) = auditor_with(|c| c.workers = 2);
    let auditor = Arc::new(auditor);
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let auditor = Arc::clone(&auditor);
            std::thread::spawn(move || {
                let mut data = synthetic_reduced(32, t);
                for k in 0..40u64 {
                    if k % 7 == 0 {
                        data[2][5] = f32::NAN; // sample 0 of this batch
                    }
                    let ids: Vec<u64> = (0..32).map(|i| t << 32 | k << 8 | i).collect();
                    let outcome = auditor.submit(&ids, &reduced_views(&data, 32));
                    if k % 7 == 0 {
                        assert!(matches!(
                            outcome,
                            Err(Error::NonFinite { rejected: 1, .. }) | Err(Error::QueueFull { .. })
                        ));
                    }
                    data[2][5] = 1.0;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let report = auditor.close(Duration::from_secs(60));
    assert_eq!(report.stats.submitted, 4 * 40 * 32);
    assert_exact_accounting(&auditor, &got);
}

#[test]
fn the_endpoint_serves_the_registry() {
    let (auditor, _) = auditor_with(|c| {
        c.metrics.http = Some(mint_audit::config::HttpConfig::new("127.0.0.1:0"));
    });
    let addr = auditor.metrics_addr().expect("endpoint on");
    assert!(addr.ip().is_loopback());
    let data = synthetic_reduced(10, 5);
    auditor.submit(&(0..10).collect::<Vec<_>>(), &reduced_views(&data, 10)).unwrap();
    auditor.close(Duration::from_secs(10));
    let response = ureq::get(&format!("http://{addr}/metrics")).call().unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers().get("content-type").unwrap().to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let body = response.into_body().read_to_string().unwrap();
    assert!(body.contains("mint_samples_submitted_total{cohort=\"default\"} 10"), "{body}");
    assert!(body.contains("model_id=\"fmnist-memorizing\""));
    assert_eq!(
        ureq::get(&format!("http://{addr}/nope")).call().map(|r| r.status().as_u16()).unwrap_or_else(|e| match e {
            ureq::Error::StatusCode(c) => c,
            other => panic!("{other}"),
        }),
        404
    );
}

#[test]
fn two_auditors_keep_separate_registries() {
    let (a, _) = auditor_with(|_| {});
    let (b, _) = auditor_with(|_| {});
    let data = synthetic_reduced(3, 6);
    a.submit(&[1, 2, 3], &reduced_views(&data, 3)).unwrap();
    a.close(Duration::from_secs(10));
    b.close(Duration::from_secs(10));
    assert!(a.render_metrics().contains("mint_samples_submitted_total{cohort=\"default\"} 3"));
    assert!(b.render_metrics().contains("mint_samples_submitted_total{cohort=\"default\"} 0"));
}

#[test]
fn cohorts_are_counted_apart_and_an_unknown_one_is_refused_and_counted() {
    let (auditor, got) = auditor_with(|c| {
        c.cohorts = vec!["reference".into(), "suspect".into()];
        c.evidence.window = 100;
        c.evidence.min_reference = 100;
    });
    let (reference, suspect) = (auditor.cohort("reference").unwrap(), auditor.cohort("suspect").unwrap());
    assert_eq!((reference.index(), suspect.index()), (1, 2));
    let e = auditor.cohort("owner").unwrap_err().to_string();
    assert!(e.contains("owner") && e.contains("reference, suspect"), "{e}");
    let data = synthetic_reduced(300, 9);
    let views = reduced_views(&data, 300);
    auditor.submit_in(reference, &(0..300).collect::<Vec<_>>(), &views).unwrap();
    // The suspect cohort is scored exactly like the reference: no evidence either way.
    auditor.submit_in(suspect, &(300..600).collect::<Vec<_>>(), &views).unwrap();
    auditor.submit(&(600..650).collect::<Vec<_>>(), &reduced_views(&data, 50)).unwrap();
    let undeclared = mint_audit::Cohort::from_number(3);
    let e = auditor.submit_in(undeclared, &[7, 8], &reduced_views(&data, 2)).unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)) && e.to_string().contains("cohort 3"), "{e}");
    // A number past 16 bits is named as given (it was reported as 65535).
    let far = mint_audit::Cohort::from_number(70_000);
    let e = auditor.submit_in(far, &[9], &reduced_views(&data, 1)).unwrap_err();
    assert!(e.to_string().contains("cohort 70000 is not declared"), "{e}");
    let e = auditor.evidence(far).unwrap_err();
    assert!(e.to_string().contains("cohort 70000"), "{e}");
    auditor.close(Duration::from_secs(60));
    assert_exact_accounting(&auditor, &got);

    let by = |c| auditor.cohort_stats(c).unwrap();
    assert_eq!((by(reference).audited(), by(suspect).audited()), (300, 300));
    let default = by(mint_audit::Cohort::DEFAULT);
    assert_eq!((default.audited(), default.dropped(DropReason::InvalidInput)), (50, 3));
    assert!(auditor.cohort_stats(undeclared).is_err());

    let evidence = auditor.evidence(suspect).unwrap();
    assert_eq!((evidence.audited, evidence.windows), (300, 3));
    let (overall, auc) = evidence.overall_rank.unwrap();
    assert!((auc - 0.5).abs() < 1e-9 && overall.p_value > 0.4, "{overall:?} {auc}");
    let metrics = auditor.render_metrics();
    for series in [
        r#"mint_samples_audited_total{cohort="suspect",verdict="member"}"#,
        r#"mint_samples_dropped_total{cohort="default",reason="invalid_input"} 3"#,
        r#"mint_evidence_windows_total{cohort="suspect",result="quiet",test="rank"} 3"#,
        r#"mint_membership_score_bucket{cohort="reference","#,
    ] {
        assert!(metrics.contains(series), "{series} missing from\n{metrics}");
    }
}

/// An auditor may declare up to 1,024 cohorts (`MAX_COHORTS`, `default` included), each one data owner a regulator
/// follows. What each costs in the scrape is bounded here (docs/evidence.md states it): the
/// series per cohort are its counters, its score histogram and its evidence gauges.
#[test]
fn a_thousand_cohorts_are_declared_scraped_and_tested_apart() {
    let names = |n: usize| (0..n).map(|i| format!("owner-{i:04}")).collect::<Vec<_>>();
    let scrape = |cohorts: Vec<String>| {
        let (auditor, _) = auditor_with(|c| c.cohorts = cohorts);
        (auditor.render_metrics(), auditor)
    };
    let (one, _) = scrape(names(1));
    let (many, auditor) = scrape(names(mint_audit::config::MAX_COHORTS - 1));
    let per_cohort = (many.len() - one.len()) as f64 / (mint_audit::config::MAX_COHORTS - 2) as f64;
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    let series_per_cohort = (series(&many) - series(&one)) as f64 / (mint_audit::config::MAX_COHORTS - 2) as f64;
    eprintln!("per cohort: {per_cohort:.0} bytes of exposition, {series_per_cohort:.1} series");
    assert!(per_cohort < 12_000.0 && series_per_cohort < 80.0, "{per_cohort} bytes, {series_per_cohort} series");
    // The last declared cohort works like the first.
    let last = auditor.cohort("owner-1022").unwrap();
    assert_eq!(last.index(), mint_audit::config::MAX_COHORTS - 1);
    let data = synthetic_reduced(20, 3);
    auditor.submit_in(last, &(0..20).collect::<Vec<_>>(), &reduced_views(&data, 20)).unwrap();
    auditor.close(Duration::from_secs(60));
    assert_eq!(auditor.evidence(last).unwrap().audited, 20);
    // An unknown name, however long, gets a short error.
    let e = auditor.cohort(&"x".repeat(1 << 20)).unwrap_err().to_string();
    assert!(e.len() < 400 && e.contains("1048576 bytes") && e.contains("and 1014 more"), "{}", &e[..e.len().min(400)]);
    // One more is refused, naming the limit.
    let mut config = shipped_auditor_config();
    config.cohorts = names(mint_audit::config::MAX_COHORTS);
    let e = config.validate().unwrap_err().to_string();
    assert!(e.contains("at most 1023 cohorts"), "{e}");
}
