//! The regulator's side for real: Debian's Prometheus server scrapes the auditor's built-in
//! endpoint on loopback, and the audited series are read back through Prometheus' own HTTP
//! query API; promtool checks the exposition. The monitoring kit (examples/monitoring) is
//! checked and unit-tested by promtool, and evaluated by a real Prometheus scraping the serving
//! demo: the membership alerts fire on its suspect cohort of members, not on its reference
//! cohort of non-members, and every dashboard query returns data.

mod common;

use std::io::BufRead;
use std::path::Path;
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
    start_prometheus_with(prometheus, dir, "", scrape_configs)
}

/// [`start_prometheus`] with more top-level configuration (`rule_files`), rules evaluated
/// every second.
fn start_prometheus_with(prometheus: &Path, dir: &Path, top_level: &str, scrape_configs: &str) -> (Server, String) {
    let port = free_port();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{top_level}scrape_configs:\n{scrape_configs}"
        ),
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

fn monitoring() -> std::path::PathBuf {
    repo().join("examples/monitoring")
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    if !ready("the alert rules test", &[PROMTOOL]) {
        return;
    }
    let promtool = require("promtool", "prometheus");
    for args in [&["check", "rules", "mint-rules.yml"][..], &["test", "rules", "mint-rules.test.yml"]] {
        let out = run(Command::new(&promtool).args(args).current_dir(monitoring()));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("SUCCESS"), "promtool {args:?}:\n{text}");
    }
}

/// The alerts in `state`, as Prometheus' API lists them.
fn alerts(base: &str) -> Vec<serde_json::Value> {
    let body = ureq::get(&format!("{base}/api/v1/alerts")).call().unwrap().into_body().read_to_string().unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]["alerts"].as_array().cloned().unwrap_or_default()
}

fn alert_on(alerts: &[serde_json::Value], name: &str, cohort: &str) -> Vec<(String, String)> {
    alerts
        .iter()
        .filter(|a| a["labels"]["alertname"] == name && a["labels"]["cohort"] == cohort)
        .map(|a| (a["labels"]["test"].as_str().unwrap_or("").to_string(), a["state"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn the_membership_alerts_fire_on_the_demos_members_only_and_every_dashboard_query_has_data() {
    if !ready("the monitoring kit test", &[PROMETHEUS, CC, PKG_CONFIG]) {
        return;
    }
    let prometheus = require("prometheus", "prometheus");
    let dir = scratch("monitoring");
    let exe = dir.join("serving_demo");
    compile_c(&[&repo().join("examples/serving_demo.c")], &exe, &[]);
    // The demo as shipped: members tagged "suspect", non-members "reference", calibrated head;
    // it keeps its endpoint up while Prometheus scrapes it.
    let (_demo, addr) = start_demo(&exe, &["--linger", "150"]);

    let rules = monitoring().join("mint-rules.yml");
    let (_server, base) = start_prometheus_with(
        &prometheus,
        &dir,
        &format!("rule_files:\n  - {}\n", rules.display()),
        &format!("  - job_name: mint\n    static_configs:\n      - targets: ['{addr}']\n"),
    );
    assert_eq!(wait_for(&base, &dir, "sum(mint_samples_audited_total{job=\"mint\"})"), 1000.0);

    let deadline = Instant::now() + Duration::from_secs(90);
    let firing = loop {
        let now = alerts(&base);
        let on_suspect = alert_on(&now, "MintCohortMembershipEvidence", "suspect");
        let fleet = alert_on(&now, "MintFleetMembershipEvidence", "suspect");
        let firing = |alerts: &[(String, String)]| alerts.iter().filter(|(_, state)| state == "firing").count();
        if firing(&on_suspect) == 2 && firing(&fleet) == 2 {
            break now;
        }
        assert!(Instant::now() < deadline, "the evidence alert never fired on the members: {now:?}");
        std::thread::sleep(Duration::from_millis(500));
    };
    // Both anytime tests found the members, and the member-fraction sequence did.
    let mut tests: Vec<String> =
        alert_on(&firing, "MintCohortMembershipEvidence", "suspect").into_iter().map(|(t, _)| t).collect();
    tests.sort();
    assert_eq!(tests, ["flags", "scores"]);
    assert_eq!(alert_on(&firing, "MintCohortMemberFraction", "suspect").len(), 1, "{firing:?}");
    // One replica: the fleet's average is its e-value, and fires on the members only.
    assert!(!alert_on(&firing, "MintFleetMembershipEvidence", "suspect").is_empty(), "{firing:?}");
    for name in ["MintCohortMembershipEvidence", "MintCohortMemberFraction", "MintFleetMembershipEvidence"] {
        for cohort in ["reference", "default"] {
            assert!(alert_on(&firing, name, cohort).is_empty(), "{name} on the non-members: {firing:?}");
        }
    }
    // A healthy, calibrated demo raises no health alert (MintTargetDown may be pending from
    // before the first scrape, when `up` was absent; it needs five minutes to fire).
    for a in &firing {
        let name = a["labels"]["alertname"].as_str().unwrap();
        let pending_start = name == "MintTargetDown" && a["state"] == "pending";
        let membership = name.starts_with("MintCohort") || name.starts_with("MintFleet");
        assert!(membership || pending_start, "a health alert on a healthy demo: {a}");
    }

    // Every query of the dashboard, with its variables set as Grafana would (those over a range
    // need a few scrapes: wait_for waits for data, and fails naming the query).
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(monitoring().join("grafana-dashboard.json")).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap().replace("$job", "mint").replace("$__rate_interval", "1m");
            eprintln!("panel '{}': {expr} = {}", panel["title"].as_str().unwrap(), wait_for(&base, &dir, &expr));
        }
    }
}

/// Starts the serving demo with `args` after its three files; returns it and its metrics
/// address once it has served and keeps its endpoint up.
fn start_demo(exe: &Path, args: &[&str]) -> (Server, String) {
    let models = repo().join("models/fmnist-memorizing");
    let mut demo = Server(
        Command::new(exe)
            .arg(models.join("auditor.json"))
            .arg(models.join("demo-members-idx3-ubyte"))
            .arg(models.join("demo-non-members-idx3-ubyte"))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = std::io::BufReader::new(demo.0.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first.split("http://").nth(1).and_then(|r| r.strip_suffix("/metrics")).expect(&first).to_string();
    for line in lines.by_ref() {
        if line.unwrap().starts_with("metrics endpoint up") {
            break;
        }
    }
    (demo, addr)
}

/// The fleet of the issue: the demo's 500 members and 500 non-members spread over four
/// replicas (250 requests each, no fixed window ever completes in any of them), scraped by a
/// real Prometheus, beside one process serving the whole stream. Read through the query API,
/// the fleet's summed counts are exactly the single process's (same bins, counts and planned
/// look p-values, bit for bit; the same flag e-value), its evidence finds the members and not
/// the non-members, and a malformed API answer is a clear error.
#[test]
fn a_fleet_of_four_replicas_gives_one_processs_evidence_through_prometheus() {
    if !ready("the fleet evidence test", &[PROMETHEUS, CC, PKG_CONFIG]) {
        return;
    }
    let prometheus = require("prometheus", "prometheus");
    let dir = scratch("fleet");
    let exe = dir.join("serving_demo");
    compile_c(&[&repo().join("examples/serving_demo.c")], &exe, &[]);
    let mut replicas = Vec::new();
    for i in 0..4 {
        replicas.push(start_demo(&exe, &["--linger", "120", "--part", &format!("{i}/4")]));
    }
    let single = start_demo(&exe, &["--linger", "120"]);
    let targets: Vec<String> = replicas.iter().map(|(_, a)| format!("'{a}'")).collect();
    let (_server, base) = start_prometheus(
        &prometheus,
        &dir,
        &format!(
            "  - job_name: mint-fleet\n    static_configs:\n      - targets: [{}]\n  - job_name: mint-single\n    static_configs:\n      - targets: ['{}']\n",
            targets.join(", "),
            single.1
        ),
    );
    // Every replica scraped after serving, twice (so that a range read sees the final counts).
    let deadline = Instant::now() + Duration::from_secs(90);
    while query(&base, "count(count_over_time(mint_samples_audited_total{job=\"mint-fleet\"}[1m]) >= 2)")
        .is_none_or(|(_, n)| n < 4.0)
        || wait_for(&base, &dir, "sum(mint_samples_audited_total{job=\"mint-fleet\"})") < 1000.0
        || wait_for(&base, &dir, "sum(mint_samples_audited_total{job=\"mint-single\"})") < 1000.0
    {
        assert!(Instant::now() < deadline, "the fleet was never scraped whole");
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(2));

    let client = mint_toolkit::fleet::prometheus::Client::new(&base, None, Duration::from_secs(30));
    let end = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let read = |job: &str| {
        let request = mint_toolkit::fleet::Request {
            selector: format!("job=\"{job}\""),
            start: end - 300.0,
            end,
            step: 1.0,
            alpha: 0.01,
            fdr: 0.05,
        };
        mint_toolkit::fleet::read(&client, &base, &request).unwrap()
    };
    let (fleet, one) = (read("mint-fleet"), read("mint-single"));
    assert_eq!((fleet.replicas, one.replicas), (4, 1));
    assert_eq!(fleet.buckets, one.buckets);
    assert_eq!(fleet.calibration, one.calibration);
    for (f, o) in fleet.cohorts.iter().zip(&one.cohorts) {
        assert_eq!((&f.cohort, f.audited, f.flagged, &f.bins), (&o.cohort, o.audited, o.flagged, &o.bins));
        assert_eq!(f.planned_look, o.planned_look, "cohort {}: the planned look differs", f.cohort);
        assert_eq!(f.flags, o.flags, "cohort {}: the flag e-process depends on counts only", f.cohort);
        assert_eq!((f.member_fraction, f.certificate), (o.member_fraction, o.certificate));
    }
    let cohort = |e: &mint_toolkit::formats::fleet::FleetEvidence, name: &str| {
        e.cohorts.iter().find(|c| c.cohort == name).unwrap().clone()
    };
    let (suspect, reference) = (cohort(&fleet, "suspect"), cohort(&fleet, "reference"));
    let undeclared = fleet.cohort("owner-99").unwrap_err().to_string();
    assert!(undeclared.contains("owner-99") && undeclared.contains("suspect"), "{undeclared}");
    for c in [&suspect, &reference] {
        eprintln!(
            "fleet of 4, cohort {}: {} samples, {} flagged; flags e {:?}, scores e {:?}; decision e {:.3e}; share {:?}, certificate {:?}; planned look {:?}",
            c.cohort, c.audited, c.flagged, c.flags, c.scores, c.e_value, c.member_fraction, c.certificate, c.planned_look
        );
    }
    let single_suspect = cohort(&one, "suspect");
    eprintln!("one process, suspect: scores e {:?}, decision e {:.3e}", single_suspect.scores, single_suspect.e_value);
    assert_eq!((suspect.audited, reference.audited), (500, 500));
    // The members are found, the non-members are not, and e-BH counts the suspect cohort. (The
    // demo serves its stream within a scrape interval or two, so the scores e-process bets
    // once or not at all, as scraping falls: the flag e-process carries the evidence here.)
    assert!(suspect.e_value >= 100.0 && suspect.flags.unwrap().e_value >= 100.0, "{suspect:?}");
    assert!(reference.e_value < 100.0, "{reference:?}");
    assert_eq!(fleet.discoveries, ["suspect"]);
    assert!(suspect.planned_look.rank_p_value.unwrap() < 1e-20);

    // Signed and chained as a regulator keeps them: two looks through `mint evidence` appended
    // to a log, which `mint verify` and an independent verifier (Python, DSSE's PAE over
    // `cryptography`'s ed25519) accept, and which neither accepts with a look removed.
    signed_looks_verify_and_a_removed_one_is_found(&base, &dir);

    // A server that is not a Prometheus API: a clear error, naming the query.
    let wrong =
        mint_toolkit::fleet::prometheus::Client::new(&format!("http://{}", single.1), None, Duration::from_secs(10));
    let request = mint_toolkit::fleet::Request {
        selector: "job=\"mint-fleet\"".into(),
        start: end - 300.0,
        end,
        step: 1.0,
        alpha: 0.01,
        fdr: 0.05,
    };
    let err = format!("{:#}", mint_toolkit::fleet::read(&wrong, "wrong", &request).unwrap_err());
    assert!(err.contains("query_range") && err.contains("not the Prometheus API's JSON"), "{err}");
}

fn signed_looks_verify_and_a_removed_one_is_found(base: &str, dir: &std::path::Path) {
    let mint = repo().join("target/debug/mint");
    assert!(mint.is_file(), "{} is built by `cargo test --workspace` (mint-cli's tests)", mint.display());
    let python = repo().join(".venv/bin/python");
    let run = |program: &std::path::Path, args: &[&str]| {
        let out = std::process::Command::new(program).args(args).current_dir(repo()).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    };
    let key = dir.join("regulator.pem");
    let public = dir.join("regulator.pem.pub");
    let log = dir.join("looks.jsonl");
    let (key_s, public_s, log_s) = (key.to_str().unwrap(), public.to_str().unwrap(), log.to_str().unwrap());
    assert_eq!(run(&mint, &["keygen", "--out", key_s]).0, Some(0));
    for _ in 0..3 {
        let (code, text) = run(
            &mint,
            &[
                "evidence",
                "--prometheus",
                base,
                "--selector",
                "job=\"mint-fleet\"",
                "--range",
                "300",
                "--step",
                "1",
                "--signing-key",
                key_s,
                "--attest-log",
                log_s,
                "--expect",
                "suspect=evidence",
            ],
        );
        assert_eq!(code, Some(0), "{text}");
    }
    let (code, text) = run(&mint, &["verify", log_s, "--key", public_s, "--expect-entries", "3"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("holds 3 entries in order") && text.contains("discoveries [suspect]"), "{text}");
    let verifier = repo().join("examples/python/verify_evidence.py");
    let (code, text) = run(&python, &[verifier.to_str().unwrap(), "--key", public_s, log_s]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("3 entries in order"), "{text}");

    // The middle look removed; then the newest (found only against the count seen before).
    let lines: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().map(String::from).collect();
    let cut = dir.join("cut.jsonl");
    let cut_s = cut.to_str().unwrap();
    std::fs::write(&cut, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
    let (code, text) = run(&mint, &["verify", cut_s, "--key", public_s]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("removed or reordered"), "{text}");
    let (code, text) = run(&python, &[verifier.to_str().unwrap(), "--key", public_s, cut_s]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("removed or reordered"), "{text}");
    std::fs::write(&cut, format!("{}\n{}\n", lines[0], lines[1])).unwrap();
    let (code, text) = run(&mint, &["verify", cut_s, "--key", public_s, "--expect-entries", "3"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("its newest were removed"), "{text}");
    // Another key: refused by both.
    let stranger = dir.join("stranger.pem");
    assert_eq!(run(&mint, &["keygen", "--out", stranger.to_str().unwrap()]).0, Some(0));
    let stranger_public = dir.join("stranger.pem.pub");
    let (code, text) = run(&mint, &["verify", log_s, "--key", stranger_public.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{text}");
    let (code, text) = run(&python, &[verifier.to_str().unwrap(), "--key", stranger_public.to_str().unwrap(), log_s]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no signature verifies"), "{text}");
}
