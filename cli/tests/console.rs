//! `mint serve` over HTTP, as a browser or a script would use it: the shipped memorising
//! model's known members give set-level evidence and its non-members do not; the bundle
//! is signed by the console's key and re-verifies with `mint verify-bundle`; bad uploads get clear refusals; the limits hold;
//! nothing is written or logged of the uploads.

mod common;

use std::io::{Read, Write};
use std::process::Command;

use common::*;
use sha2::{Digest, Sha256};

const MODEL: &str = "fmnist-memorizing";

#[test]
fn members_give_evidence_non_members_do_not_and_the_bundle_reverifies() {
    let dir = scratch("http");
    let cwd = dir.join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let console = Console::start(&cwd, &["--max-concurrent", "1", "--rate-per-minute", "1000"]);

    // The page and its parts, with the headers that keep it self-contained.
    let mut page = agent().get(format!("{}/", console.url)).call().unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers().get("content-security-policy").unwrap().to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{csp}");
    assert!(page.headers().get("set-cookie").is_none());
    let html = page.body_mut().read_to_string().unwrap();
    assert!(html.contains("<script src=\"/console.js\"") && !html.contains("http://") && !html.contains("https://"));
    assert_eq!(console.get("/console.js").0, 200);
    assert_eq!(console.get("/console.css").0, 200);
    let (_, models) = console.get("/api/models");
    let models: serde_json::Value = serde_json::from_str(&models).unwrap();
    let card = &models["models"][0]["card"];
    assert_eq!(card["calibration"]["reproduced"], true, "{card}");
    assert_eq!(card["reference"]["samples"], 500);
    assert!(card["measured_here"]["auc"].as_f64().unwrap() > 0.7, "{card}");

    // Known members: decisive set-level evidence.
    let members = demo_pngs("members", 30);
    let (status, bundle) = console.analyze(MODEL, &members);
    assert_eq!(status, 200, "{bundle}");
    let e = &bundle["evidence"];
    assert_eq!(e["verdict"]["outcome"], "evidence", "{}", e["verdict"]);
    assert_eq!(e["set"]["distribution_shift"]["detected"], false);
    assert_eq!(e["images"].as_array().unwrap().len(), 30);
    assert_eq!(e["images"][0]["sha256"], format!("{:x}", Sha256::digest(&members[0].1)));
    // The same images as one IDX file score the same.
    let (status, as_idx) = console.analyze(MODEL, &[("members-idx3-ubyte".into(), demo_idx("members", 30))]);
    assert_eq!(status, 200, "{as_idx}");
    for i in 0..30 {
        assert_eq!(as_idx["evidence"]["images"][i]["flagged"], e["images"][i]["flagged"], "image {i}");
    }
    assert_eq!(as_idx["evidence"]["set"], e["set"]);
    // The public default: flags, no score, p-values in bands.
    assert_eq!(e["disclosure"], "flags");
    assert!(e["images"][0].get("score").is_none() && e["images"][0]["flagged"].is_boolean(), "{}", e["images"][0]);
    assert_eq!(e["set"]["rank_test"]["p_value"], "< 0.01", "{}", e["set"]);

    // Known non-members: no evidence.
    let (status, other) = console.analyze(MODEL, &demo_pngs("non-members", 30));
    assert_eq!(status, 200, "{other}");
    assert_eq!(other["evidence"]["verdict"]["outcome"], "no_evidence", "{}", other["evidence"]["verdict"]);
    assert_eq!(other["evidence"]["set"]["rank_test"]["p_value"], "≥ 0.01");

    // Images unlike the model's domain: the control says the verdict means nothing.
    let bright: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| {
            let img = image::RgbImage::from_fn(64, 48, |x, y| {
                image::Rgb([200 + (x % 50) as u8, 180 + (y % 60) as u8, (i * 20) as u8])
            });
            let mut png = std::io::Cursor::new(Vec::new());
            img.write_to(&mut png, image::ImageFormat::Png).unwrap();
            (format!("holiday-{i}.png"), png.into_inner())
        })
        .collect();
    let (status, shifted) = console.analyze(MODEL, &bright);
    assert_eq!(status, 200, "{shifted}");
    let s = &shifted["evidence"];
    assert_eq!(s["verdict"]["outcome"], "shift", "{}", s["verdict"]);
    assert_eq!(s["images"][0]["note"], "resized from 64×48 to 28×28, converted from colour to grey");

    // The bundle verifies under the console's key and recomputes from the same files, byte for
    // byte; an edited, backdated or re-signed one does not.
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for (name, bytes) in &members {
        std::fs::write(images.join(name), bytes).unwrap();
    }
    let (_, key) = console.get("/api/key");
    let key: serde_json::Value = serde_json::from_str(&key).unwrap();
    let fingerprint = key["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(bundle["signer"]["fingerprint"], fingerprint.as_str());
    assert_eq!(models["signer"]["fingerprint"], fingerprint.as_str());
    let (status, envelope) = console.analyze_signed(MODEL, &members);
    assert_eq!(status, 200);
    assert_eq!(predicate_of(&envelope)["evidence"], bundle["evidence"], "the same images, the same evidence");
    let bundle_path = dir.join("bundle.json");
    std::fs::write(&bundle_path, serde_json::to_string_pretty(&envelope).unwrap()).unwrap();
    let verify = |bundle: &std::path::Path, trust: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mint"))
            .args(["verify-bundle", "--bundle"])
            .arg(bundle)
            .args(trust)
            .args(members.iter().rev().map(|(name, _)| images.join(name)))
            .current_dir(repo())
            .output()
            .unwrap()
    };
    let out = verify(&bundle_path, &["--fingerprint", &fingerprint]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("byte for byte") && stdout.contains(&fingerprint),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The public key as a file does as well; no trusted key at all is refused, naming the signer.
    let public = dir.join("console.pub");
    std::fs::write(&public, key["public_key_pem"].as_str().unwrap()).unwrap();
    assert!(verify(&bundle_path, &["--key", public.to_str().unwrap()]).status.success());
    let out = verify(&bundle_path, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("give the key you trust") && stderr.contains(&fingerprint), "{stderr}");
    // `mint verify` checks the signature alone.
    let out = Command::new(env!("CARGO_BIN_EXE_mint"))
        .args(["verify", "--fingerprint", &fingerprint])
        .arg(&bundle_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("evidence bundle issued"), "{stdout}");
    // The independent verifier (Python over `cryptography`, sharing no code with ours) agrees.
    let independent = |file: &std::path::Path, pin: &str| {
        Command::new(repo().join(".venv/bin/python"))
            .arg(repo().join("examples/python/verify_evidence.py"))
            .args(["--fingerprint", pin])
            .arg(file)
            .output()
            .unwrap()
    };
    let out = independent(&bundle_path, &fingerprint);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let other_key = format!("sha256:{}", "0".repeat(64));
    assert_eq!(independent(&bundle_path, &other_key).status.code(), Some(1));
    // Edited inside the signed payload (a score, the date): the signature fails.
    for (what, edit) in [
        (
            "score",
            Box::new(|p: &mut serde_json::Value| p["evidence"]["images"][3]["score"] = 0.5.into())
                as Box<dyn Fn(&mut serde_json::Value)>,
        ),
        ("date", Box::new(|p: &mut serde_json::Value| p["issued_at"] = "2020-01-01T00:00:00Z".into())),
        ("disclosure", Box::new(|p: &mut serde_json::Value| p["evidence"]["disclosure"] = "scores".into())),
    ] {
        let forged = edit_predicate(&envelope, edit);
        let forged_path = dir.join(format!("forged-{what}.json"));
        std::fs::write(&forged_path, forged.to_string()).unwrap();
        let out = verify(&forged_path, &["--fingerprint", &fingerprint]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{what}: {stdout}");
        assert!(stdout.contains("NOT verified") && stdout.contains("does not verify"), "{what}: {stdout}");
        assert_eq!(independent(&forged_path, &fingerprint).status.code(), Some(1), "{what}");
    }

    // Bad requests, each with words a person understands.
    let (status, r) = console.analyze(MODEL, &[("notes.txt".into(), b"dear regulator".to_vec())]);
    assert_eq!(status, 422);
    assert!(r["error"].as_str().unwrap().starts_with("notes.txt: this is not an image"), "{r}");
    let mut cut = members[0].1.clone();
    cut.truncate(60);
    let (status, r) = console.analyze(MODEL, &[("cut.png".into(), cut)]);
    assert_eq!(status, 422);
    assert!(r["error"].as_str().unwrap().contains("damaged"), "{r}");
    let (status, r) = console.analyze(MODEL, &[]);
    assert_eq!(status, 422);
    assert!(r["error"].as_str().unwrap().starts_with("No images"), "{r}");
    let (status, r) = console.analyze("gpt-17", &members[..1]);
    assert_eq!(status, 404);
    assert!(r["error"].as_str().unwrap().contains("not on this console"));
    let (status, r) = console.post("/api/analyze?model=fmnist-memorizing", "application/json", b"{}".to_vec());
    assert_eq!(status, 400);
    assert!(r["error"].as_str().unwrap().contains("form upload"), "{r}");
    let (status, r) = console.post("/api/analyze", "multipart/form-data; boundary=x", Vec::new());
    assert_eq!(status, 400);
    assert!(r["error"].as_str().unwrap().contains("Choose a model"), "{r}");
    assert_eq!(console.get("/etc/passwd").0, 404);
    assert_eq!(agent().put(format!("{}/", console.url)).send(&b""[..]).unwrap().status().as_u16(), 405);

    // One analysis at a time per client: its concurrent requests are answered, by a result or
    // "under way" (tests/console_availability.rs has several clients).
    let answers: Vec<(u16, serde_json::Value)> = std::thread::scope(|s| {
        let jobs: Vec<_> = (0..4).map(|_| s.spawn(|| console.analyze(MODEL, &members))).collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    assert!(answers.iter().any(|(s, _)| *s == 200));
    for (status, body) in &answers {
        assert!(
            *status == 200 || (*status == 429 && body["error"].as_str().unwrap().contains("analysis under way")),
            "{status}: {body}"
        );
    }

    // Nothing of the uploads was written, and the log holds counts, not names or digests.
    assert_eq!(std::fs::read_dir(&cwd).unwrap().count(), 0, "the console wrote into its working directory");
    let log = console.stderr();
    assert!(log.contains("analysed 30 images"), "{log}");
    for secret in ["members-000", "holiday", "notes.txt", &members[0].0, e["images"][0]["sha256"].as_str().unwrap()] {
        assert!(!log.contains(secret), "the log mentions {secret}:\n{log}");
    }
}

#[test]
fn the_limits_hold_and_say_so() {
    let dir = scratch("limits");
    let console = Console::start(
        &dir,
        &[
            "--max-upload-mib",
            "1",
            "--max-images",
            "5",
            "--max-side",
            "100",
            "--rate-per-minute",
            "4",
            "--min-set",
            "1",
        ],
    );
    let one = demo_pngs("members", 6);
    // Too many images, as files or inside an array file.
    let (status, r) = console.analyze(MODEL, &one);
    assert_eq!(status, 400, "{r}");
    assert!(r["error"].as_str().unwrap().contains("at most 5 per request"), "{r}");
    let (status, r) = console.analyze(MODEL, &[("six-idx3-ubyte".into(), demo_idx("members", 6))]);
    assert_eq!(status, 422, "{r}");
    assert!(r["error"].as_str().unwrap().contains("more images than this request has room for (5)"), "{r}");
    // Too large a picture, and too large an upload.
    let wide = image::GrayImage::new(101, 10);
    let mut png = std::io::Cursor::new(Vec::new());
    wide.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let (status, r) = console.analyze(MODEL, &[("wide.png".into(), png.into_inner())]);
    assert_eq!(status, 422, "{r}");
    assert!(r["error"].as_str().unwrap().contains("too large: at most 100×100 pixels"), "{r}");
    // Refused from its declared length, before any of it is read (the client sends none).
    let mut stream = std::net::TcpStream::connect(console.url.trim_start_matches("http://")).unwrap();
    let head = format!(
        "POST /api/analyze?model={MODEL} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n\
         Content-Length: {}\r\n\r\n",
        2 << 20
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let mut reply = vec![0; 4096];
    let n = stream.read(&mut reply).unwrap();
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("at most 1 MB per request"), "{reply}");
    // Four analyses a minute from one address, then a wait with Retry-After. Every request
    // for an analysis spends one, refused or not: the four above did.
    let (status, retry) = console.retry_after(MODEL, &one[..1]);
    assert_eq!(status, 429);
    assert!(retry.is_some_and(|s| (1..=60).contains(&s)), "{retry:?}");
}

/// What the console tells a stranger (docs/security.md): no answer on fewer than `--min-set`
/// images; at `scores` every number, at `flags` the flags and the test's decision, at `sets`
/// nothing per image;
/// a bundle recomputes at its own level; the daily budget counts new images only and bounds
/// the sets one image is analysed in, whoever asks, with a Retry-After.
#[test]
fn the_console_discloses_what_its_level_allows_within_a_daily_budget() {
    let dir = scratch("disclosure");
    let members = demo_pngs("members", 12);
    let run = |level: &str| {
        std::fs::create_dir_all(dir.join(level)).unwrap();
        let console = Console::start(
            &dir.join(level),
            &[
                "--disclosure",
                level,
                "--rate-per-minute",
                "1000",
                "--daily-images",
                "20",
                "--daily-sets-per-image",
                "3",
            ],
        );
        let (status, bundle) = console.analyze(MODEL, &members);
        assert_eq!(status, 200, "{level}: {bundle}");
        (console, bundle)
    };
    let (_, scores) = run("scores");
    let s = &scores["evidence"];
    assert!(s["images"][0]["score"].is_f64() && s["set"]["rank_test"]["p_value"].is_f64(), "{s}");
    let (_, sets) = run("sets");
    let e = &sets["evidence"];
    assert_eq!(e["images"][0].as_object().unwrap().keys().filter(|k| *k == "score" || *k == "flagged").count(), 0);
    assert!(e["set"]["flagged"].is_null() && e["set"]["rank_test"]["p_value"].is_string(), "{}", e["set"]);
    assert!(!e["verdict"]["explanation"].as_str().unwrap().contains("above the calibrated threshold one by one"));
    assert_eq!(s["verdict"]["outcome"], e["verdict"]["outcome"], "the level changes what is said, not the verdict");

    let (console, flags) = run("flags");
    // Fewer than ten images: refused, saying why.
    let (status, r) = console.analyze(MODEL, &members[..9]);
    assert_eq!(status, 422, "{r}");
    assert!(r["error"].as_str().unwrap().contains("sets of at least 10 images"), "{r}");
    // The bundle recomputes at its own level, byte for byte.
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for (name, bytes) in &members {
        std::fs::write(images.join(name), bytes).unwrap();
    }
    let (_, envelope) = console.analyze_signed(MODEL, &members);
    assert_eq!(predicate_of(&envelope)["evidence"], flags["evidence"]);
    let bundle_path = dir.join("flags-bundle.json");
    std::fs::write(&bundle_path, envelope.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mint"))
        .args(["verify-bundle", "--bundle"])
        .arg(&bundle_path)
        .args(["--fingerprint", flags["signer"]["fingerprint"].as_str().unwrap()])
        .args(members.iter().map(|(name, _)| images.join(name)))
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    // The budget: 12 images spent (the nine refused spent nothing; the same twelve again are
    // free); eight new ones fit, one more does not.
    let more = demo_pngs("non-members", 10);
    let mut set: Vec<_> = members[..2].to_vec();
    set.extend(more[..8].iter().cloned());
    assert_eq!(console.analyze(MODEL, &set).0, 200);
    let mut over: Vec<_> = members[..9].to_vec();
    over.push(more[8].clone());
    let (status, retry) = console.retry_after(MODEL, &over);
    assert_eq!(status, 429);
    assert!(retry.is_some_and(|s| s > 23 * 3600 && s <= 24 * 3600), "{retry:?}");
    let (status, r) = console.analyze(MODEL, &over);
    assert_eq!(status, 429);
    assert!(r["error"].as_str().unwrap().contains("20 images analysed today"), "{r}");
    // Re-encoded as an IDX file, the same pixels are the same images: still free.
    assert_eq!(console.analyze(MODEL, &[("members-idx3-ubyte".into(), demo_idx("members", 12))]).0, 200);
    // members[0] has been in two sets (the twelve, the ten; the IDX's twelve is the first set
    // again): a third is allowed, a fourth is not, whoever asks.
    let addr = console.url.trim_start_matches("http://").to_string();
    let (status, body) = analyze_from(&addr, [127, 0, 0, 7], MODEL, &members[..11]);
    assert_eq!(status, 200, "{body}");
    let (status, body) = analyze_from(&addr, [127, 0, 0, 8], MODEL, &members[..10]);
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("in 3 different sets today"), "{body}");
}

/// `envelope` with its statement's predicate changed by `edit`, the signature kept.
fn edit_predicate(envelope: &serde_json::Value, edit: impl Fn(&mut serde_json::Value)) -> serde_json::Value {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut statement: serde_json::Value =
        serde_json::from_slice(&engine.decode(envelope["payload"].as_str().unwrap()).unwrap()).unwrap();
    edit(&mut statement["predicate"]);
    let mut forged = envelope.clone();
    forged["payload"] = engine.encode(statement.to_string()).into();
    forged
}
