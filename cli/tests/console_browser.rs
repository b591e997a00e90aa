//! The console in a real browser: Debian's Chromium, driven through chromedriver (W3C
//! WebDriver), opens the page, uploads the demo's known members and then known non-members
//! through the file input, and reads the verdicts and the set-level evidence from the page.
//! The screenshot of the report in docs/console.png comes from this test
//! (`MINT_UPDATE_DOCS=1` writes it there; otherwise it goes to the test's scratch folder).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Whether the browser is here; CI (`MINT_REQUIRE_TOOLS=1`) fails without it.
fn browser_ready() -> bool {
    if Path::new(CHROMIUM).is_file() && Path::new(CHROMEDRIVER).is_file() {
        return true;
    }
    let message = "the browser test needs Debian's chromium and chromium-driver; `bash scripts/setup.sh` installs them";
    if std::env::var_os("MINT_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
        panic!("{message}");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped: {message}");
    false
}

/// A WebDriver session on a chromedriver of its own; both end when dropped.
struct Browser {
    driver: Child,
    base: String,
}

impl Browser {
    fn start(profile: &Path) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let mut browser = Browser { driver, base: format!("http://127.0.0.1:{port}") };
        wait_for("chromedriver", Duration::from_secs(30), || {
            agent().get(format!("{}/status", browser.base)).call().is_ok_and(|r| r.status() == 200)
        });
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1200,2600",
        ];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args}}}});
        let session = browser.call("POST", "/session", Some(caps));
        let id = session["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {session}")).to_string();
        browser.base = format!("{}/session/{id}", browser.base);
        browser
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let mut response = match method {
            "GET" => agent().get(&url).call(),
            "DELETE" => agent().delete(&url).call(),
            _ => agent().post(&url).send_json(body.unwrap_or(json!({}))),
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status();
        let text = response.body_mut().read_to_string().unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        assert!(status == 200, "{method} {path}: {status} {text}");
        value["value"].clone()
    }

    fn element(&self, css: &str) -> String {
        let found = self.call("POST", "/element", Some(json!({"using": "css selector", "value": css})));
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {found}")).to_string()
    }

    fn script(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", Some(json!({"script": script, "args": []})))
    }

    /// Chooses `files` in the page's file input, as a person picking them would.
    fn choose(&self, files: &[PathBuf]) {
        let input = self.element("#files");
        self.call("POST", &format!("/element/{input}/clear"), None);
        let list: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        self.call("POST", &format!("/element/{input}/value"), Some(json!({"text": list.join("\n")})));
    }

    fn click(&self, css: &str) {
        let e = self.element(css);
        self.call("POST", &format!("/element/{e}/click"), None);
    }

    fn text(&self, css: &str) -> String {
        let e = self.element(css);
        self.call("GET", &format!("/element/{e}/text"), None).as_str().unwrap().to_string()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = agent().delete(&self.base).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn write_files(dir: &Path, files: &[(String, Vec<u8>)]) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    files
        .iter()
        .map(|(name, bytes)| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        })
        .collect()
}

/// Clicks Analyse and waits for the report (or an error) to replace the previous one.
fn analyse(browser: &Browser) -> Value {
    browser.script(
        "delete document.getElementById('report').dataset.outcome; document.getElementById('error').hidden = true;",
    );
    wait_for("the Analyse button", Duration::from_secs(10), || {
        browser.script("return !document.getElementById('analyze').disabled") == json!(true)
    });
    browser.click("#analyze");
    let mut state = Value::Null;
    wait_for("the report", Duration::from_secs(120), || {
        state = browser.script(
            "const r = document.getElementById('report'), e = document.getElementById('error');
             return {outcome: r.dataset.outcome || null, error: e.hidden ? null : e.textContent,
                     busy: !document.getElementById('progress-box').hidden};",
        );
        !state["busy"].as_bool().unwrap() && (state["outcome"].is_string() || state["error"].is_string())
    });
    state
}

#[test]
fn a_person_uploads_members_then_non_members_and_reads_the_verdicts() {
    if !browser_ready() {
        return;
    }
    let dir = scratch("browser");
    let cwd = dir.join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let console = Console::start(&cwd, &["--rate-per-minute", "1000"]);
    let members = write_files(&dir.join("members"), &demo_pngs("members", 30));
    let non_members = write_files(&dir.join("non-members"), &demo_pngs("non-members", 30));
    let notes = write_files(&dir.join("other"), &[("notes.txt".into(), b"not a picture".to_vec())]);

    let browser = Browser::start(&dir.join("profile"));
    browser.call("POST", "/url", Some(json!({"url": format!("{}/", console.url)})));
    wait_for("the model list", Duration::from_secs(30), || {
        browser.script("return !document.getElementById('model').disabled") == json!(true)
    });
    let card = browser.text("#card");
    assert!(card.contains("Images it was trained on") && card.contains("2,000"), "{card}");
    assert!(card.contains("Calibration reproduced here\nyes"), "{card}");

    // Known members: the page says there is strong evidence, with the numbers beside it.
    browser.choose(&members);
    let state = analyse(&browser);
    assert_eq!(state["outcome"], "evidence", "{state}");
    let headline = browser.text("#verdict-headline");
    assert!(headline.starts_with("Strong evidence that this model was trained on these images"), "{headline}");
    let numbers = browser.text("#set-numbers");
    assert!(numbers.contains("Images tested 30"), "{numbers}");
    assert!(numbers.contains("Distribution shift not detected"), "{numbers}");
    // The public default tells flags and the test's decision, no score and no effect size.
    assert!(numbers.contains("chance probability (rank test, p) < 0.01"), "{numbers}");
    assert!(numbers.contains("only whether it is flagged") && !numbers.contains("AUC; 0.5"), "{numbers}");
    assert_eq!(browser.script("return state.bundle.evidence.images.some(i => 'score' in i)"), json!(false));
    assert_eq!(browser.script("return document.querySelectorAll('#images tbody tr').length"), json!(30));
    // The thumbnails come from the browser's own copies of the files, and they load.
    wait_for("the thumbnails", Duration::from_secs(10), || {
        browser.script("return Array.from(document.querySelectorAll('#images img')).every(i => i.complete && i.naturalWidth === 28)")
            == json!(true)
    });
    assert!(browser.text("#caveats").contains("One image says little"));
    let shot = browser.call("GET", "/screenshot", None);
    let png = base64::engine::general_purpose::STANDARD.decode(shot.as_str().unwrap()).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let target = if std::env::var_os("MINT_UPDATE_DOCS").is_some_and(|v| v == "1") {
        repo().join("docs/console.png")
    } else {
        dir.join("console.png")
    };
    std::fs::write(&target, &png).unwrap();

    // The printable report holds the verdict and every fingerprint, and no image.
    let printable = browser.script("return printable(state.bundle)");
    let printable = printable.as_str().unwrap();
    assert!(printable.contains("Strong evidence that this model was trained on these images"));
    let sha = browser.script("return state.bundle.evidence.images[29].sha256");
    assert!(printable.contains(sha.as_str().unwrap()) && !printable.contains("<img"));

    // What the page shows is the signed statement's content, and what it saves is the envelope
    // itself, signed by the key the page names (the console's /api/key).
    let (_, key) = console.get("/api/key");
    let fingerprint =
        serde_json::from_str::<serde_json::Value>(&key).unwrap()["fingerprint"].as_str().unwrap().to_string();
    assert!(browser.text("#signer").starts_with(&fingerprint), "{}", browser.text("#signer"));
    assert_eq!(browser.script("return state.bundle.signer.fingerprint"), json!(fingerprint));
    assert_eq!(browser.script("return state.envelope.payloadType"), json!("application/vnd.in-toto+json"));
    assert_eq!(browser.script("return state.envelope.signatures[0].keyid"), json!(fingerprint));
    assert!(printable.contains(&fingerprint));

    // Known non-members, dropped on the page (a drop event carrying the files, as a drag from
    // a file manager gives) after choosing something else: the drop replaces the choice.
    browser.choose(&non_members);
    browser.script("window.dropped = Array.from(document.getElementById('files').files);");
    browser.choose(&notes);
    browser.script(
        "const dt = new DataTransfer(); window.dropped.forEach(f => dt.items.add(f));
         document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));",
    );
    let chosen = browser.text("#chosen");
    assert!(chosen.starts_with("30 files chosen"), "{chosen}");
    let state = analyse(&browser);
    assert_eq!(state["outcome"], "no_evidence", "{state}");
    let explanation = browser.text("#verdict-explanation");
    assert!(explanation.contains("This does not show they were not used"), "{explanation}");

    // Not an image: the person is told which file and why.
    browser.choose(&notes);
    let state = analyse(&browser);
    let error = state["error"].as_str().unwrap_or_else(|| panic!("{state}"));
    assert!(error.starts_with("notes.txt: this is not an image"), "{error}");

    // The page set no cookie and stored nothing.
    assert_eq!(browser.script("return document.cookie + localStorage.length + sessionStorage.length"), json!("00"));
    assert_eq!(std::fs::read_dir(&cwd).unwrap().count(), 0);
}
