//! The regulator's side for real: Debian's Prometheus server scrapes the auditor's built-in
//! endpoint on loopback, and the audited series are read back through Prometheus' own HTTP
//! query API; promtool checks the exposition.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use mint_audit::{Auditor, DropReason};

/// One instant query; the numeric value of its first series, if any.
fn query(base: &str, promql: &str) -> Option<(serde_json::Value, f64)> {
    let body = ureq::get(&format!("{base}/api/v1/query"))
        .query("query", promql)
        .call()
        .ok()?
        .into_body()
        .read_to_string()
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let first = v["data"]["result"].as_array()?.first()?.clone();
    let value = first["value"][1].as_str()?.parse().ok()?;
    Some((first["metric"].clone(), value))
}

#[test]
fn a_real_prometheus_scrapes_the_audited_series() {
    if !ready("the Prometheus test", &[PROMETHEUS, PROMTOOL]) {
        return;
    }
    let prometheus = require("prometheus", "prometheus");
    let promtool = require("promtool", "prometheus");

    let mut config = shipped_auditor_config();
    config.metrics.http = Some(mint_audit::config::HttpConfig::new("127.0.0.1:0"));
    let auditor = Auditor::new(config).unwrap();
    let addr = auditor.metrics_addr().unwrap();
    let mut data = synthetic_reduced(100, 9);
    auditor.submit(&(0..100).collect::<Vec<_>>(), &reduced_views(&data, 100)).unwrap();
    data[0][0] = f32::NAN;
    assert!(auditor.submit(&(100..200).collect::<Vec<_>>(), &reduced_views(&data, 100)).is_err());
    // Closing scores everything; the endpoint stays up until the auditor is dropped.
    let stats = auditor.close(Duration::from_secs(30)).stats;
    assert_eq!((stats.submitted, stats.audited(), stats.dropped(DropReason::NonFinite)), (200, 199, 1));

    // promtool on what the endpoint serves.
    let body = ureq::get(&format!("http://{addr}/metrics")).call().unwrap().into_body().read_to_string().unwrap();
    let dir = scratch("prometheus");
    std::fs::write(dir.join("exposition.txt"), &body).unwrap();
    let checked = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(dir.join("exposition.txt")).unwrap())
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let (_server, base) = start_prometheus(
        &prometheus,
        &dir,
        &format!("  - job_name: mint\n    static_configs:\n      - targets: ['{addr}']\n"),
    );
    let audited = wait_for(&base, &dir, "sum(mint_samples_audited_total{job=\"mint\"})");
    assert_eq!(audited, 199.0);
    let (_, up) = query(&base, "up{job=\"mint\"}").unwrap();
    assert_eq!(up, 1.0);
    let (_, submitted) = query(&base, "sum(mint_samples_submitted_total)").unwrap();
    let (_, dropped) = query(&base, "sum(mint_samples_dropped_total)").unwrap();
    assert_eq!(submitted, audited + dropped);
    let (_, non_finite) = query(&base, "sum(mint_samples_dropped_total{reason=\"non_finite\"})").unwrap();
    assert_eq!(non_finite, 1.0);
    let (labels, _) = query(&base, "mint_auditor_info").unwrap();
    assert_eq!(labels["model_id"], "fmnist-memorizing");
    assert_eq!(labels["head_sha256"].as_str().unwrap(), auditor.head_sha256());
    let (_, scored) = query(&base, "mint_membership_score_count").unwrap();
    assert_eq!(scored, 199.0);
}

/// Starts Debian's Prometheus on a free loopback port with `scrape_configs` (YAML, indented
/// under the key); returns the server and its base URL.
fn start_prometheus(prometheus: &std::path::Path, dir: &std::path::Path, scrape_configs: &str) -> (Server, String) {
    let port = free_port();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n{scrape_configs}"),
    )
    .unwrap();
    let server = Server(
        Command::new(prometheus)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    (server, format!("http://127.0.0.1:{port}"))
}

/// Queries until `promql` has a value, for up to 90 s.
fn wait_for(base: &str, dir: &std::path::Path, promql: &str) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some((_, v)) = query(base, promql) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never answered {promql}; log: {}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_real_prometheus_scrapes_over_tls_with_a_token_and_an_anonymous_scrape_is_refused() {
    if !ready("the Prometheus TLS test", &[PROMETHEUS]) {
        return;
    }
    let prometheus = require("prometheus", "prometheus");
    let dir = scratch("prometheus-tls");
    let (ca, cert, key) = tls_fixture(&dir);
    let token = dir.join("token");
    std::fs::write(&token, "regulator-token-0451\n").unwrap();

    let mut config = shipped_auditor_config();
    let http = serde_json::json!({"listen": "127.0.0.1:0",
        "tls": {"cert_file": cert, "key_file": key}, "bearer_token_file": token});
    config.metrics.http = Some(serde_json::from_value(http).unwrap());
    let auditor = Auditor::new(config).unwrap();
    let addr = auditor.metrics_addr().unwrap();
    let data = synthetic_reduced(50, 11);
    auditor.submit(&(0..50).collect::<Vec<_>>(), &reduced_views(&data, 50)).unwrap();
    auditor.close(Duration::from_secs(30));

    let job = |name: &str, auth: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: {}\n      server_name: localhost\n{auth}    static_configs:\n      - targets: ['{addr}']\n",
            ca.display()
        )
    };
    let scrape_configs = job("mint_tls", &format!("    authorization:\n      credentials_file: {}\n", token.display()))
        + &job("mint_anonymous", "");
    let (_server, base) = start_prometheus(&prometheus, &dir, &scrape_configs);
    assert_eq!(wait_for(&base, &dir, "sum(mint_samples_submitted_total{job=\"mint_tls\"})"), 50.0);
    assert_eq!(wait_for(&base, &dir, "up{job=\"mint_tls\"}"), 1.0);
    assert_eq!(wait_for(&base, &dir, "up{job=\"mint_anonymous\"}"), 0.0, "an unauthenticated scrape must fail");
    assert!(query(&base, "mint_samples_submitted_total{job=\"mint_anonymous\"}").is_none());
    // The endpoint counted the anonymous job's refusals; the authorised job reads that count.
    let deadline = Instant::now() + Duration::from_secs(30);
    while wait_for(&base, &dir, "mint_http_errors_total{job=\"mint_tls\",kind=\"unauthorized\"}") < 1.0 {
        assert!(Instant::now() < deadline, "refusals never showed in the exposition");
        std::thread::sleep(Duration::from_millis(500));
    }
}
